"""Benchmark: the orchestrated loads (dagster dev: daemon, sensors, queued runs) against the whole command.

Run from the repository root: ``.venv/bin/python benchmarks/bench_orchestration.py [--scale 1.0]
[--baseline command|in-process] [--interval S] [--clock landing|launch]``. It generates the seed-scale tree, warms the
bytecode (as an installed package has it) and loads the tree once without a daemon into a fresh PostgreSQL database:
by default the whole ``mytrader run`` command, process start to exit, with a fresh Dagster home (issue 12's
baseline); with ``--baseline in-process``, ``runner.run_import`` in this process (issue 3's). Then it starts
``dagster dev`` with deploy/dagster.yaml on another fresh database. With ``--clock landing`` (the default) the
deployment starts on an empty data root; once its file sensors have ticked and no run is in flight, the tree lands
(one rename per market folder) and the clock runs from there, as for the daily append; with ``--clock launch`` the
tree is in place and the clock runs from the deployment's launch. The initial load is done when every file has a
succeeded audit row and every partition is materialized with no run in flight (what the UI shows). The machine's CPU
(/proc/stat, all processes) is reported for the command and for the orchestrated load. Then it changes one file and
times until its new rows are in the warehouse; and finally it appends one day to every file (the scraper's daily
rewrite) and times from the files landing until every file's succeeded audit row is of its new content (its SHA-256).
Targets: orchestrated <= 1.2 x the command (issue 12; 1.3 x in-process, issue 3); change-to-rows < 60 s; daily
append of the whole tree in the warehouse < 60 s after the files land (issue 12).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import psycopg
import sqlalchemy as sa
from bench_append import append_one_day
from bench_command import command_env, run_command
from bench_issue12 import compile_bytecode, settle
from dagster._core.scheduler.instigation import InstigatorType

from mytrader_pipeline.core.accounting import file_sha256
from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.defs.sensors import DEFAULT_INTERVAL_SECONDS, file_sensor_name
from mytrader_pipeline.local_runs import run_import
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.sampledata import generate_sample

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("MYTRADER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database() -> tuple[str, str]:
    """A fresh PostgreSQL database: (name, SQLAlchemy URL)."""
    name = f"mt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.5) -> float:
    """Seconds until ``condition`` holds; raises after ``timeout``."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if condition():
            return time.perf_counter() - started
        time.sleep(poll)
    raise TimeoutError(f"condition not met after {timeout}s")


def succeeded(engine: sa.Engine) -> list[str]:
    query = sa.select(file_imports.c.source_file).where(file_imports.c.status == "succeeded")
    try:
        with engine.connect() as conn:
            return [r.source_file for r in conn.execute(query.order_by(file_imports.c.id))]
    except sa.exc.ProgrammingError:
        return []  # the schema is created by the first run


def loaded_fingerprints(engine: sa.Engine) -> dict[str, str]:
    """source_file -> fingerprint (SHA-256) of its latest succeeded load."""
    query = sa.select(file_imports.c.source_file, file_imports.c.fingerprint).where(
        file_imports.c.status == "succeeded"
    )
    with engine.connect() as conn:
        return {r.source_file: r.fingerprint for r in conn.execute(query.order_by(file_imports.c.id))}


def cpu_seconds() -> tuple[float, float]:
    """The machine's (busy, idle including I/O wait) CPU seconds so far, all cores (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / ticks, idle / ticks


def warm_up(work: Path) -> None:
    """Untimed: the bytecode of everything the command and the deployment import, where their processes look for it
    (as an installed package has it), and one small command run, so neither timed side compiles modules."""
    env = command_env(None)
    compile_bytecode(env)
    modules = "dagster._cli, dagster._daemon.cli, dagster_webserver.cli, dagster_postgres"
    modules += ", mytrader_pipeline.definitions"
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True)
    tiny = work / "warm_up"
    generate_sample(tiny / "DATA", seed=1, scale=0.01)
    whole_command(tiny / "DATA", tiny)
    shutil.rmtree(tiny)


def whole_command(root: Path, work: Path) -> tuple[float, int]:
    """Seconds of the whole ``mytrader run`` command (start to exit, fresh Dagster home) into a fresh database."""
    name, url = create_database()
    settle()
    try:
        busy, idle = cpu_seconds()
        figures = run_command(["run", "--data-root", str(root), "--database-url", url], work, command_env(work / "dh"))
        busy_after, idle_after = cpu_seconds()
        print(f"  command: machine CPU busy {busy_after - busy:.1f} s, idle {idle_after - idle:.1f} s (all cores)")
        return figures["seconds"], figures["rows"]
    finally:
        drop_database(name)


def in_process(root: Path) -> tuple[float, int]:
    """Seconds to load the tree through Dagster in process (PostgreSQL instance and warehouse); rows read."""
    name, url = create_database()
    try:
        storage = {"postgres": {"postgres_url": url.replace("postgresql://", "postgresql+psycopg2://", 1)}}
        registry = load_markets()
        with dg.instance_for_test(overrides={"storage": storage}) as instance:
            started = time.perf_counter()
            summaries = run_import(root, url, registry, list(registry), instance=instance, log_level="WARNING")
            seconds = time.perf_counter() - started
        return seconds, sum(s.rows_read for s in summaries)
    finally:
        drop_database(name)


def orchestrated(
    root: Path,
    work: Path,
    interval: int,
    port: int = 0,
    clock: str = "landing",
    max_files_per_run: int | None = None,
    instance_yaml: Path | None = None,
    profile: Path | None = None,
) -> dict[str, float]:
    """The tree loaded by `dagster dev`, then one changed file's latency to the warehouse, then a daily append.

    ``clock``: ``landing`` starts the deployment on an empty data root, waits until its file sensors have ticked
    and no run is in flight, then moves the tree in (one rename per market folder) and times from there, as the
    daily append is timed; ``launch`` starts the deployment with the tree in place and times from its launch.
    The initial load is done when every file has a succeeded audit row (the warehouse) and when every partition
    is materialized and every run has ended (what the UI shows); the figure compared with the command is the
    later of the two.
    """
    name, url = create_database()
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(instance_yaml or REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    data_root = work / "landing" if clock == "landing" else root
    data_root.mkdir(exist_ok=True)
    # the command's environment (bytecode as an installed package has it), with the deployment's settings
    env = {k: v for k, v in command_env(None).items() if not k.startswith("DAGSTER_")} | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": name,
        "MYTRADER_DATA_ROOT": str(data_root),
        "MYTRADER_DATABASE_URL": url,
        "MYTRADER_SENSOR_INTERVAL_SECONDS": str(interval),
    }
    if max_files_per_run:
        env["MYTRADER_MAX_FILES_PER_RUN"] = str(max_files_per_run)
    if not port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    total = len(list(root.glob("*/*.csv")))
    log = (work / "dagster-dev.log").open("wb")
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO_ROOT / "workspace.yaml")]
    settle()
    process = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started, started_at = time.perf_counter(), time.time()
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
    try:
        figures: dict[str, float] = {}
        if clock == "landing":
            figures["deployment_ready_seconds"] = wait_for(deployment_idle, timeout=600)
            busy, _ = cpu_seconds()
            time.sleep(IDLE_SAMPLE_SECONDS)  # what the deployment's processes (and the machine) burn doing nothing
            figures["idle_cores_busy"] = (cpu_seconds()[0] - busy) / IDLE_SAMPLE_SECONDS
            started, started_at = time.perf_counter(), time.time()
            busy, idle = cpu_seconds()
            if profile:  # every process of the deployment, sampled from the landing for a minute (py-spy, by hand)
                spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(process.pid)]
                spy += ["--subprocesses", "--nonblocking", "-r", "50", "-f", "raw", "-d", "60", "-o", str(profile)]
                subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for folder in sorted(root.iterdir()):
                folder.rename(data_root / folder.name)
        warehouse = wait_for(lambda: len(set(succeeded(engine))) == total, timeout=1800)
        wait_for(lambda: all_materialized(total), timeout=600)
        shown = time.perf_counter() - started
        if clock == "landing":
            busy_after, idle_after = cpu_seconds()
            figures |= {"orchestrated_cpu_busy": busy_after - busy, "orchestrated_cpu_idle": idle_after - idle}
        with engine.connect() as conn:
            span = conn.execute(
                sa.select(sa.func.max(file_imports.c.finished_at) - sa.func.min(file_imports.c.started_at))
            ).scalar_one()
        figures |= {
            "orchestrated_seconds": max(warehouse, shown),
            "orchestrated_seconds_to_warehouse": warehouse,
            "orchestrated_runs": float(sensor_runs()),
            "orchestrated_seconds_first_file_start_to_last_file_end": span.total_seconds(),
            **run_timeline(started_at),
        }
        nyse = sorted((data_root / "NYSE").glob("*.csv"))[0]
        before = len(succeeded(engine))
        lines = nyse.read_text().splitlines(keepends=True)
        nyse.write_text("".join(lines[:-1]))  # new content: one day fewer
        figures["change_to_rows_seconds"] = wait_for(lambda: len(succeeded(engine)) > before, timeout=300)
        assert succeeded(engine)[before:] == [f"NYSE/{nyse.name}"]
        figures.update(daily_append(data_root, engine))
        return figures
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        engine.dispose()
        drop_database(name)


IDLE_SAMPLE_SECONDS = 10
FILE_SENSORS = {file_sensor_name(m) for m in load_markets()}
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def deployment_idle() -> bool:
    """Whether every file sensor has ticked and no run is queued or running (the instance of ``DAGSTER_HOME``)."""
    try:
        with dg.DagsterInstance.get() as instance:
            ticked = {
                state.instigator_name
                for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                if instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            }
            return ticked >= FILE_SENSORS and not instance.get_runs_count(dg.RunsFilter(statuses=_IN_FLIGHT))
    except Exception:  # the instance's schema is created as the deployment starts
        return False


def all_materialized(total: int) -> bool:
    """Whether every file's partition is materialized and no run is queued or running: what the UI shows."""
    with dg.DagsterInstance.get() as instance:
        if instance.get_runs_count(dg.RunsFilter(statuses=_IN_FLIGHT)):
            return False
        keys = [dg.AssetKey(m.asset_name) for m in load_markets()]
        return sum(len(instance.get_materialized_partitions(key)) for key in keys) >= total


def daily_append(root: Path, engine: sa.Engine) -> dict[str, float]:
    """One day appended to every file, as the scraper lands it; seconds until each file's new content is loaded."""
    runs_before = sensor_runs()
    landed, landed_at = time.perf_counter(), time.time()
    files = append_one_day(root)
    expected = {f"{path.parent.name}/{path.name}": file_sha256(path) for path in root.glob("*/*.csv")}

    def all_loaded() -> bool:
        loaded = loaded_fingerprints(engine)
        return all(loaded.get(source) == sha for source, sha in expected.items())

    wait_for(all_loaded, timeout=900, poll=1.0)
    seconds = time.perf_counter() - landed
    new_content = file_imports.c.fingerprint.in_(list(expected.values()))
    with engine.connect() as conn:
        modes = dict(
            conn.execute(
                sa.select(file_imports.c.load_mode, sa.func.count())
                .where(new_content)
                .group_by(file_imports.c.load_mode)
            ).all()
        )
        span = sa.select(sa.func.min(file_imports.c.started_at), sa.func.max(file_imports.c.finished_at))
        first_start, last_end = conn.execute(span.where(new_content)).one()
    return {
        "daily_append_files": float(files),
        "daily_append_seconds": seconds,
        # where the time went: waiting for the sensor tick, the run's queue and worker start, then loading the files
        "daily_append_landed_to_first_file_start": first_start.timestamp() - landed_at,
        "daily_append_first_file_start_to_last_file_end": (last_end - first_start).total_seconds(),
        "daily_append_runs": float(sensor_runs() - runs_before),
        "daily_append_loaded_as_append": float(modes.get("append", 0)),
    }


def run_timeline(since: float) -> dict[str, float]:
    """Seconds from ``since`` (epoch) to the sensor runs' first creation, first start and last end."""
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={"mytrader/trigger": "file_sensor"}))
    created = [r.create_timestamp.timestamp() for r in records]
    started = [r.start_time for r in records if r.start_time]
    ended = [r.end_time for r in records if r.end_time]
    return {
        "first_run_created": min(created) - since,
        "first_run_started": min(started) - since,
        "last_run_started": max(started) - since,
        "last_run_ended": max(ended) - since,
    }


def sensor_runs() -> int:
    """Runs the file sensors have launched so far (the instance of ``DAGSTER_HOME``)."""
    with dg.DagsterInstance.get() as instance:
        return len(instance.get_run_records(filters=dg.RunsFilter(tags={"mytrader/trigger": "file_sensor"})))


def main() -> None:
    """Run both loads on one generated tree and print the figures (and a JSON line)."""
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--interval", type=int, default=DEFAULT_INTERVAL_SECONDS, help="sensor interval in seconds")
    parser.add_argument("--baseline", choices=["command", "in-process"], default="command")
    parser.add_argument("--port", type=int, default=0, help="the web server's port (default: any free one)")
    parser.add_argument("--log", type=Path, help="keep dagster dev's output in this file")
    parser.add_argument("--max-files-per-run", type=int, help="the deployment's MYTRADER_MAX_FILES_PER_RUN")
    parser.add_argument("--instance-yaml", type=Path, help="the deployment's dagster.yaml (default: deploy/'s)")
    parser.add_argument("--profile", type=Path, help="py-spy every deployment process for 60 s from the landing")
    parser.add_argument(
        "--clock",
        choices=["landing", "launch"],
        default="landing",
        help="time the initial load from the tree landing in a running deployment (default) or from its launch",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_orchestration_"))
    try:
        root = work / "DATA"
        generate_sample(root, seed=args.seed, scale=args.scale)
        files = len(list(root.glob("*/*.csv")))
        warm_up(work)
        seconds, rows = whole_command(root, work) if args.baseline == "command" else in_process(root)
        print(f"tree: {files} files, {rows:,} rows")
        print(f"{args.baseline + ' (baseline):':<27}{seconds:7.1f} s  ({rows / seconds:,.0f} rows/s)")
        figures = orchestrated(
            root, work, args.interval, args.port, args.clock, args.max_files_per_run, args.instance_yaml, args.profile
        )
        total = figures["orchestrated_seconds"]
        loading = figures["orchestrated_seconds_first_file_start_to_last_file_end"]
        if "deployment_ready_seconds" in figures:
            print(
                f"deployment started, sensors ticked, idle: {figures['deployment_ready_seconds']:.1f} s; idle, it "
                f"keeps {figures['idle_cores_busy']:.2f} cores busy"
            )
        print(
            f"orchestrated (from {args.clock}): {total:7.1f} s  ratio {total / seconds:.2f} x (goal <= 1.2)  "
            f"({int(figures['orchestrated_runs'])} runs; rows all in the warehouse at "
            f"{figures['orchestrated_seconds_to_warehouse']:.1f} s; first file start -> last file end {loading:.1f} s)"
        )
        if "orchestrated_cpu_busy" in figures:
            print(
                f"  machine CPU busy {figures['orchestrated_cpu_busy']:.1f} s, "
                f"idle {figures['orchestrated_cpu_idle']:.1f} s (all cores)"
            )
        timeline = "first run created {first_run_created:.1f} s, first started {first_run_started:.1f} s, "
        timeline += "last started {last_run_started:.1f} s, last ended {last_run_ended:.1f} s"
        print(f"  from {args.clock}: " + timeline.format(**figures))
        latency = figures["change_to_rows_seconds"]
        print(f"change one file -> rows:  {latency:7.1f} s  (sensor interval {args.interval} s)")
        append = figures["daily_append_seconds"]
        print(
            f"one day appended to all {files} files -> all loaded: {append:.1f} s (goal < 60 s; "
            f"{int(figures['daily_append_runs'])} runs, "
            f"{int(figures['daily_append_loaded_as_append'])} files as appends)"
        )
        print(
            f"  landed -> first file started {figures['daily_append_landed_to_first_file_start']:.1f} s, "
            f"first file start -> last file end {figures['daily_append_first_file_start_to_last_file_end']:.1f} s"
        )
        baseline = {"baseline": args.baseline, "baseline_seconds": seconds, "interval": args.interval}
        baseline["clock"] = args.clock
        print(json.dumps({"files": files, "rows": rows, **baseline, **figures}))
    finally:
        if args.log and (work / "dagster-dev.log").exists():
            shutil.copy(work / "dagster-dev.log", args.log)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
