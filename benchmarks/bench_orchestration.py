"""Benchmark: the orchestrated loads (dagster dev: daemon, sensors, queued runs) against a load without a daemon.

Run from the repository root: ``.venv/bin/python benchmarks/bench_orchestration.py [--scale 1.0]
[--baseline command|in-process] [--interval S]``. It generates the seed-scale tree and loads it once without a
daemon into a fresh PostgreSQL database: by default the whole ``mytrader run`` command, process start to exit, with
a fresh Dagster home (issue 12's baseline); with ``--baseline in-process``, ``runner.run_import`` in this process
(issue 3's). Then it starts ``dagster dev`` with deploy/dagster.yaml on another fresh database with the tree already
in the data root and times until every partition is materialized. Then it changes one file and times until its new
rows are in the warehouse; and finally it appends one day to every file (the scraper's daily rewrite) and times from
the files landing until every file's succeeded audit row is of its new content (its SHA-256).
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

from mytrader_pipeline.core.accounting import file_sha256
from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.defs.sensors import DEFAULT_INTERVAL_SECONDS
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


def whole_command(root: Path, work: Path) -> tuple[float, int]:
    """Seconds of the whole ``mytrader run`` command (start to exit, fresh Dagster home) into a fresh database."""
    name, url = create_database()
    try:
        figures = run_command(["run", "--data-root", str(root), "--database-url", url], work, command_env(work / "dh"))
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


def orchestrated(root: Path, work: Path, interval: int, port: int = 0) -> dict[str, float]:
    """The tree loaded by `dagster dev` from launch, then one changed file's latency to the warehouse."""
    name, url = create_database()
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_"))} | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": name,
        "MYTRADER_DATA_ROOT": str(root),
        "MYTRADER_DATABASE_URL": url,
        "MYTRADER_SENSOR_INTERVAL_SECONDS": str(interval),
    }
    if not port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    total = len(list(root.glob("*/*.csv")))
    log = (work / "dagster-dev.log").open("wb")
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO_ROOT / "workspace.yaml")]
    process = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        initial = wait_for(lambda: len(set(succeeded(engine))) == total, timeout=1800)
        os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
        runs = sensor_runs()
        with engine.connect() as conn:
            span = conn.execute(
                sa.select(sa.func.max(file_imports.c.finished_at) - sa.func.min(file_imports.c.started_at))
            ).scalar_one()
        figures = {
            "orchestrated_seconds_from_launch": initial,
            "orchestrated_runs": float(runs),
            "orchestrated_seconds_first_file_start_to_last_file_end": span.total_seconds(),
        }
        nyse = sorted((root / "NYSE").glob("*.csv"))[0]
        before = len(succeeded(engine))
        lines = nyse.read_text().splitlines(keepends=True)
        nyse.write_text("".join(lines[:-1]))  # new content: one day fewer
        figures["change_to_rows_seconds"] = wait_for(lambda: len(succeeded(engine)) > before, timeout=300)
        assert succeeded(engine)[before:] == [f"NYSE/{nyse.name}"]
        figures.update(daily_append(root, engine))
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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_orchestration_"))
    try:
        root = work / "DATA"
        generate_sample(root, seed=args.seed, scale=args.scale)
        files = len(list(root.glob("*/*.csv")))
        seconds, rows = whole_command(root, work) if args.baseline == "command" else in_process(root)
        print(f"tree: {files} files, {rows:,} rows")
        print(f"{args.baseline + ' (baseline):':<27}{seconds:7.1f} s  ({rows / seconds:,.0f} rows/s)")
        figures = orchestrated(root, work, args.interval, args.port)
        launch = figures["orchestrated_seconds_from_launch"]
        loading = figures["orchestrated_seconds_first_file_start_to_last_file_end"]
        print(
            f"orchestrated (from launch): {launch:7.1f} s  ratio {launch / seconds:.2f} x  "
            f"({int(figures['orchestrated_runs'])} runs; first file start -> last file end {loading:.1f} s)"
        )
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
        print(json.dumps({"files": files, "rows": rows, **baseline, **figures}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
