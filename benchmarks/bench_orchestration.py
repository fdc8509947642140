"""Benchmark: in-process loader vs the orchestrated initial load (dagster dev: daemon, sensors, queued runs).

Run from the repository root: ``.venv/bin/python benchmarks/bench_orchestration.py [--scale 1.0]``. It generates the
seed-scale tree, loads it once in process (``runner.run_import``) into a fresh PostgreSQL database, then starts
``dagster dev`` with deploy/dagster.yaml on another fresh database with the tree already in the data root and
times until every partition is materialized. Finally it changes one file and times until its new rows are in the
warehouse (the default sensor interval is 30 s). Targets: orchestrated <= 1.3 x in-process; change-to-rows < 60 s.
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

from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.runner import run_import
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


def orchestrated(root: Path, work: Path, interval: int) -> dict[str, float]:
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
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_run_records(filters=dg.RunsFilter(tags={"mytrader/trigger": "file_sensor"}))
        with engine.connect() as conn:
            span = conn.execute(
                sa.select(sa.func.max(file_imports.c.finished_at) - sa.func.min(file_imports.c.started_at))
            ).scalar_one()
        figures = {
            "orchestrated_seconds_from_launch": initial,
            "orchestrated_runs": float(len(runs)),
            "orchestrated_seconds_first_file_start_to_last_file_end": span.total_seconds(),
        }
        nyse = sorted((root / "NYSE").glob("*.csv"))[0]
        before = len(succeeded(engine))
        lines = nyse.read_text().splitlines(keepends=True)
        nyse.write_text("".join(lines[:-1]))  # new content: one day fewer
        figures["change_to_rows_seconds"] = wait_for(lambda: len(succeeded(engine)) > before, timeout=300)
        assert succeeded(engine)[before:] == [f"NYSE/{nyse.name}"]
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


def main() -> None:
    """Run both loads on one generated tree and print the figures (and a JSON line)."""
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--interval", type=int, default=30, help="sensor interval in seconds (default 30)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_orchestration_"))
    try:
        root = work / "DATA"
        generate_sample(root, seed=args.seed, scale=args.scale)
        files = len(list(root.glob("*/*.csv")))
        seconds, rows = in_process(root)
        print(f"tree: {files} files, {rows:,} rows")
        print(f"in-process loader:        {seconds:7.1f} s  ({rows / seconds:,.0f} rows/s)")
        figures = orchestrated(root, work, args.interval)
        launch = figures["orchestrated_seconds_from_launch"]
        loading = figures["orchestrated_seconds_first_file_start_to_last_file_end"]
        print(
            f"orchestrated (from launch): {launch:7.1f} s  ratio {launch / seconds:.2f} x  "
            f"({int(figures['orchestrated_runs'])} runs; first file start -> last file end {loading:.1f} s)"
        )
        latency = figures["change_to_rows_seconds"]
        print(f"change one file -> rows:  {latency:7.1f} s  (sensor interval {args.interval} s)")
        print(json.dumps({"files": files, "rows": rows, "in_process_seconds": seconds, **figures}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
