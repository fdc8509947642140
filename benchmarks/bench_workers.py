"""Benchmark (issue 13): the whole tree's load in-process (the default) against 1 and 2 Celery workers, in one run.

Run from the repository root, with RabbitMQ at MYTRADER_CELERY_BROKER_URL (default amqp://guest:guest@127.0.0.1:5672//):
``.venv/bin/python benchmarks/bench_workers.py [--scale 3] [--rounds 1] [--json out.json]``.

It generates the sample tree at ``--scale``, then loads it three times, each time into a fresh PostgreSQL warehouse
with a fresh Dagster instance, through the code location's own ``import_all_markets`` job (one step per market,
``execute_job`` as the daemon's run worker does):

1. ``default``: ``MYTRADER_EXECUTOR`` unset, the multiprocess executor (one process per market, on this machine);
2. ``celery-1``: ``MYTRADER_EXECUTOR=celery``, one ``mytrader worker --concurrency 1``;
3. ``celery-2``: the same with two such workers.

Every market's ``celery_queue`` is a queue of this run's own, so no other worker takes its steps. The workers are
started and ready before the clock starts (a deployment keeps them running); the clock covers the run, from launch
to its end, so it includes each step's fixed cost on a worker (fork, code and definitions load, resources). With
``--rounds N`` it does this N times, rotating the order, and keeps each configuration's best time (the machine is
shared: other work only slows a load down). It prints seconds, rows/s and each configuration's time as a ratio to
the default's, measured in the same run. On a
machine whose cores the workers share with the database and the run, expect no speed-up: the figure is the engine's
overhead; workers pay off when they are other machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
import sqlalchemy as sa
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from kombu import Connection, Exchange, Queue

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, all_markets_run_config
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.sampledata import generate_sample
from mytrader_pipeline.settings import DEFAULT_CELERY_BROKER_URL, get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("MYTRADER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
READY_TIMEOUT_SECONDS = 180
QUIET = {"log_level": "WARNING"}  # the run's console log: its events are not what is measured


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database with the warehouse schema, dropped after: its SQLAlchemy URL."""
    name = f"mt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        engine = make_engine(url, pool_size=1)
        ensure_schema(engine)
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Worker:
    """One ``mytrader worker --concurrency 1`` process on ``queue``, ready when constructed."""

    def __init__(self, name: str, queue: str, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        command = [sys.executable, "-m", "mytrader_pipeline.cli", "worker", "--name", name, "--concurrency", "1"]
        self.process = subprocess.Popen(
            [*command, "--queue", queue],
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while b" ready." not in log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=30)
        self.log.close()


def load_once(root: Path, work: Path, label: str, workers: int, queue: str) -> dict[str, object]:
    """Seconds and rows of one whole-tree load with ``workers`` Celery workers (0: the default executor)."""
    home = work / f"home-{label}"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    with fresh_database() as url:
        os.environ.update({"MYTRADER_DATABASE_URL": url, "MYTRADER_DATA_ROOT": str(root), "DAGSTER_HOME": str(home)})
        if workers:
            os.environ["MYTRADER_EXECUTOR"] = "celery"
        else:
            os.environ.pop("MYTRADER_EXECUTOR", None)
        get_settings.cache_clear()
        ReconstructableJob.get_definition.cache_clear()  # the job is loaded afresh with this environment
        ReconstructableJob.get_repository_definition.cache_clear()
        started: list[Worker] = []
        try:
            for n in range(workers):
                started.append(Worker(f"bench{n}-{uuid.uuid4().hex[:6]}", queue, work / f"{label}-worker{n}.log"))
            registry = load_markets(get_settings().markets_file)
            job = ReconstructableRepository.for_module(
                "mytrader_pipeline.definitions", "defs", working_directory=str(REPO_ROOT)
            ).get_reconstructable_job(ALL_MARKETS_JOB)
            with dg.DagsterInstance.get() as instance:
                clock = time.perf_counter()
                run_config = {**all_markets_run_config(registry), "loggers": {"console": {"config": QUIET}}}
                result = dg.execute_job(job, instance=instance, run_config=run_config)
                seconds = time.perf_counter() - clock
        finally:
            for worker in started:
                worker.stop()
        if not result.success:
            raise RuntimeError(f"{label}: the run failed (logs in {work})")
        engine = make_engine(url, pool_size=1)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM historical_market_data")).scalar_one()
        engine.dispose()
    return {"label": label, "workers": workers, "seconds": round(seconds, 2), "rows": rows}


CONFIGURATIONS = (("default", 0), ("celery-1", 1), ("celery-2", 2))  # label, workers (0: the default executor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=3.0, help="sample tree scale (default 3: ~3.4M rows)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds, each in a rotated order; the best time of each is kept"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # Dagster's beta and preview warnings, once per definitions load

    broker = os.environ.get("MYTRADER_CELERY_BROKER_URL", DEFAULT_CELERY_BROKER_URL)
    queue = f"mt_bench_{uuid.uuid4().hex[:10]}"
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="mt_bench_workers_") as tmp:
        work = Path(tmp)
        root = work / "DATA"
        summary = generate_sample(root, seed=args.seed, scale=args.scale)
        markets_file = work / "markets.yaml"
        markets_file.write_text(f"defaults:\n  celery_queue: {queue}\n", encoding="utf-8")
        os.environ["MYTRADER_MARKETS_FILE"] = str(markets_file)
        load = os.getloadavg()[0]
        print(f"tree: scale {args.scale}, {summary.total_rows:,} rows; load average {load:.2f}", flush=True)
        try:
            for round_number in range(args.rounds):
                shift = round_number % len(CONFIGURATIONS)  # so no configuration always runs first
                for label, workers in CONFIGURATIONS[shift:] + CONFIGURATIONS[:shift]:
                    run = load_once(root, work, f"{label}-r{round_number}", workers, queue)
                    runs.append({**run, "label": label, "round": round_number, "load": round(os.getloadavg()[0], 2)})
                    print(json.dumps(runs[-1]), flush=True)
        finally:
            with Connection(broker, connect_timeout=5) as conn:
                Queue(queue, Exchange(queue, type="direct")).bind(conn.default_channel).delete()
    if len({r["rows"] for r in runs}) != 1:
        raise RuntimeError(f"the loads differ: {runs}")
    best = {label: min(float(str(r["seconds"])) for r in runs if r["label"] == label) for label, _ in CONFIGURATIONS}
    rows = int(str(runs[0]["rows"]))
    print(f"\n{'configuration':<14}{'best s':>9}{'rows/s':>10}{'x default':>11}")
    for label, seconds in best.items():
        print(f"{label:<14}{seconds:>9.1f}{rows / seconds:>10,.0f}{seconds / best['default']:>11.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        figures = {"scale": args.scale, "rows": rows, "best_seconds": best, "runs": runs}
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
