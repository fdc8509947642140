"""MYTRADER_EXECUTOR=celery on the real RabbitMQ: `mytrader worker` processes run the import steps into PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.reconstruct import ReconstructableRepository
from kombu import Connection

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import DEFAULT_CELERY_BROKER_URL, get_settings
from mytrader_pipeline_tests.integration.test_failure_recovery import FILES, clean_table, table, write_tree

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

READY_TIMEOUT_SECONDS = 120
RUN_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def rabbitmq() -> None:
    """RabbitMQ on 127.0.0.1:5672 (guest/guest), as `.ci/run` starts it."""
    try:
        with Connection(DEFAULT_CELERY_BROKER_URL, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises the transport's own errors
        pytest.fail(f"RabbitMQ is not reachable at {DEFAULT_CELERY_BROKER_URL}: {exc}")


@pytest.fixture
def celery_env(
    pg_url: str, data_root: Path, tmp_path: Path, rabbitmq: None, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The deployment's environment, Celery on: NASDAQ routed to a queue of this test's own (no stray workers)."""
    queue = f"mt_test_{uuid.uuid4().hex[:10]}"
    markets_file = tmp_path / "markets.yaml"
    markets_file.write_text(f"markets:\n  - code: NASDAQ\n    celery_queue: {queue}\n", encoding="utf-8")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {
        "MYTRADER_EXECUTOR": "celery",
        "MYTRADER_MARKETS_FILE": str(markets_file),
        "MYTRADER_DATABASE_URL": pg_url,
        "MYTRADER_DATA_ROOT": str(data_root),
        "DAGSTER_HOME": str(home),
        "MYTRADER_TEST_QUEUE": queue,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    engine = make_engine(pg_url, pool_size=1)
    ensure_schema(engine)
    engine.dispose()
    return env


class Worker:
    """One `mytrader worker` process (its own process group, so SIGKILL takes its pool with it), logging to a file."""

    def __init__(self, name: str, queue: str, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mytrader_pipeline.cli", "worker", "--name", name, "--concurrency", "1",
             "--queue", queue],  # fmt: skip
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while b" ready." not in log_path.read_bytes():
            assert self.process.poll() is None, f"the worker exited: {log_path.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"the worker is not ready: {log_path.read_text(errors='replace')}"
            time.sleep(0.2)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once: nothing of it can ack, report or clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def start_worker(workers: list[Worker], tmp_path: Path) -> Worker:
    name = f"mt{len(workers)}-{uuid.uuid4().hex[:6]}"
    worker = Worker(name, os.environ["MYTRADER_TEST_QUEUE"], tmp_path / f"worker-{name}.log")
    workers.append(worker)
    return worker


def launch_import(instance: dg.DagsterInstance, keys: list[str]) -> subprocess.Popen[bytes]:
    """NASDAQ's import job over ``keys``, as the daemon's run worker executes it: the code location's own job."""
    nasdaq = load_markets(get_settings().markets_file).get("NASDAQ")
    register_partitions(instance, nasdaq, keys)
    recon_job = ReconstructableRepository.for_module(
        "mytrader_pipeline.definitions", "defs", working_directory=os.getcwd()
    ).get_reconstructable_job(import_job_name(nasdaq))
    return dg.execute_job(recon_job, instance=instance, tags=partition_range_tags(keys[0], keys[-1]))


def audit(pg_url: str) -> list[tuple[str, str]]:
    engine = make_engine(pg_url, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_file, status FROM file_imports ORDER BY id")).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def test_an_import_with_the_celery_executor_runs_on_a_worker_and_its_rows_land(
    celery_env: dict[str, str], pg_url: str, data_root: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    write_tree(data_root)
    worker = start_worker(workers, tmp_path)
    with dg.DagsterInstance.get() as instance:
        result = launch_import(instance, FILES)
    assert result.success
    assert len(table(pg_url)) == len(FILES) * 250
    assert sorted(f for f, s in audit(pg_url) if s == "succeeded") == sorted(f"NASDAQ/{f}" for f in FILES)
    log = worker.text()
    assert "nasdaq_prices" in log and "started" in log and "ended: SUCCESS" in log, log  # it logged the task
    assert result.run_id in log
