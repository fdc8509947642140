"""MYTRADER_EXECUTOR=celery on the real RabbitMQ and Redis: `mytrader worker` processes run the import steps."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import celery.worker.state
import dagster as dg
import psycopg
import pytest
import redis
import sqlalchemy as sa
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from kombu import Connection, Exchange, Queue

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.defs.celery_worker import worker_app
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.defs.visibility_heartbeat import VisibilityHeartbeat
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import DEFAULT_CELERY_BROKER_URL, get_settings
from mytrader_pipeline_tests.conftest import PG_ADMIN_URL
from mytrader_pipeline_tests.dagster.test_failure_dlq import HEADER, defs_for, run_keys, store_for
from mytrader_pipeline_tests.integration.held_loads import held_in_flight, waiting_loads
from mytrader_pipeline_tests.integration.test_failure_recovery import FILES, table, write_tree

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

READY_TIMEOUT_SECONDS = 120
REDIS_URL = "redis://127.0.0.1:6379/7"  # a database index of these tests' own
# broker name -> (MYTRADER_CELERY_BROKER_URL, MYTRADER_CELERY_BACKEND_URL)
BROKERS = {"rabbitmq": (DEFAULT_CELERY_BROKER_URL, "rpc://"), "redis": (REDIS_URL, REDIS_URL)}
RUN_TIMEOUT_SECONDS = 300
WORKER = [sys.executable, "-m", "mytrader_pipeline.cli", "worker"]


def reachable(url: str) -> None:
    """Fail the test, naming the broker, unless ``url`` answers (`.ci/run` starts RabbitMQ and Redis)."""
    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises the transport's own errors
        pytest.fail(f"the broker is not reachable at {url}: {exc}")


@pytest.fixture(scope="module")
def celery_queue() -> Iterator[str]:
    """A Celery queue of this module's own (no other worker takes its steps), deleted from both brokers after."""
    queue = f"mt_test_{uuid.uuid4().hex[:10]}"
    yield queue
    for url, _ in BROKERS.values():
        try:
            with Connection(url, connect_timeout=5) as conn:
                Queue(queue, Exchange(queue, type="direct")).bind(conn.default_channel).delete()
                if url.startswith("redis://"):  # kombu keeps a queue's bindings in keys of their own there
                    client = conn.default_channel.client
                    client.delete(*(client.keys(f"_kombu.binding*{queue}") or [f"_kombu.binding.{queue}"]))
        except Exception:  # a broker this run never used (or is down): nothing of ours on it to delete
            pass


@pytest.fixture
def broker() -> str:
    """The broker of the test: RabbitMQ unless a test parametrizes ``broker``."""
    return "rabbitmq"


@pytest.fixture
def celery_env(
    pg_url: str, data_root: Path, tmp_path: Path, celery_queue: str, broker: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The deployment's environment, Celery on: NASDAQ routed to a queue of this module's own (no stray workers)."""
    queue = celery_queue
    broker_url, backend_url = BROKERS[broker]
    reachable(broker_url)
    markets_file = tmp_path / "markets.yaml"
    markets_file.write_text(f"markets:\n  - code: NASDAQ\n    celery_queue: {queue}\n", encoding="utf-8")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {
        "MYTRADER_EXECUTOR": "celery",
        "MYTRADER_CELERY_BROKER_URL": broker_url,
        "MYTRADER_CELERY_BACKEND_URL": backend_url,
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
            [*WORKER, "--name", name, "--concurrency", "1", "--queue", queue],
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


def launch_import(instance: dg.DagsterInstance, keys: list[str]) -> dg.JobExecutionResult:
    """NASDAQ's import job over ``keys``, as the daemon's run worker executes it: the code location's own job.

    Loaded afresh with this test's environment (Dagster keeps the last job it loaded, with its broker and queue).
    """
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
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


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_an_import_with_the_celery_executor_runs_on_a_worker_and_its_rows_land(
    broker: str, celery_env: dict[str, str], pg_url: str, data_root: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    write_tree(data_root)
    worker = start_worker(workers, tmp_path)
    with dg.DagsterInstance.get() as instance:
        result = launch_import(instance, FILES)
    assert result.success
    assert len(table(pg_url)) == len(FILES) * 250
    assert sorted(f for f, s in audit(pg_url) if s == "succeeded") == sorted(f"NASDAQ/{f}" for f in FILES)
    log = worker.text()
    assert f"run {result.run_id}, step(s) nasdaq_prices: started" in log, log  # it logged the task
    assert f"run {result.run_id}, step(s) nasdaq_prices: ended SUCCESS" in log, log


BIG_FILES = [f"B{i:02d}.csv" for i in range(24)]
BIG_ROWS = 15_000


BIG_START = dt.date(1960, 1, 1)  # each big file's first day


def write_big_tree(root: Path) -> None:
    """Enough NASDAQ rows (360,000 in 24 files) that a worker is still loading when it is killed."""
    start = BIG_START
    for name in BIG_FILES:
        symbol = name.removesuffix(".csv")
        lines = [
            f"{symbol},{start + dt.timedelta(days=d)},{10 + d % 7},{12 + d % 7},{9 + d % 7},{11 + d % 7},11,{100 + d}"
            for d in range(BIG_ROWS)
        ]
        (root / "NASDAQ" / name).write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def clean_pg_url(pg_available: None) -> Iterator[str]:
    """A second fresh database, for the clean load to compare with."""
    name = f"mt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for_a_committed_file(run: concurrent.futures.Future[Any], pg_url: str, worker: Worker) -> float:
    """Wait until a file of the run has committed; returns the run's deadline (``RUN_TIMEOUT_SECONDS`` from now)."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while not any(s == "succeeded" for _, s in audit(pg_url)):
        assert not run.done(), run.result()
        assert time.monotonic() < deadline, worker.text()
        time.sleep(0.05)
    return deadline


@pytest.fixture
def short_visibility_on_redis(
    broker: str, celery_env: dict[str, str], request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the Redis broker: a Redis of the test's own and a 10 s visibility timeout.

    A killed worker's step comes back once it has gone unconfirmed that long. Asked for before ``workers``, so the
    Redis outlives the workers.
    """
    if broker == "redis":
        use_private_redis(monkeypatch, request.getfixturevalue("private_redis"), visibility_timeout=10)


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_a_worker_killed_with_sigkill_mid_run_has_its_step_redone_and_the_table_equals_a_clean_load(
    broker: str,
    celery_env: dict[str, str],
    short_visibility_on_redis: None,
    pg_url: str,
    clean_pg_url: str,
    data_root: Path,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    write_big_tree(data_root)
    with dg.instance_for_test() as scratch:  # the clean load: in-process, undisturbed, its own warehouse
        assert run_keys(defs_for(clean_pg_url, data_root), scratch, BIG_FILES).success
    expected = table(clean_pg_url)
    assert len(expected) == len(BIG_FILES) * BIG_ROWS

    first = start_worker(workers, tmp_path)
    with dg.DagsterInstance.get() as instance, concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(launch_import, instance, BIG_FILES)
        wait_for_a_committed_file(run, pg_url, first)  # the step is running
        first.kill()
        partial = audit(pg_url)
        assert 0 < len([s for _, s in partial if s == "succeeded"]) < len(BIG_FILES), "killed too late to tell"
        assert first.process.returncode == -signal.SIGKILL

        second = start_worker(workers, tmp_path)  # the restarted worker: the broker hands it the unacked step
        result = run.result(timeout=RUN_TIMEOUT_SECONDS)
    assert result.success, second.text()
    assert f"run {result.run_id}, step(s) nasdaq_prices: ended SUCCESS" in second.text()
    assert table(pg_url) == expected  # nothing missing, nothing twice
    loaded = sorted({f for f, s in audit(pg_url) if s == "succeeded"})
    assert loaded == sorted(f"NASDAQ/{f}" for f in BIG_FILES)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def restart_rabbitmq() -> None:
    """Stop RabbitMQ's application (every connection drops; durable queues and persistent messages stay), start it.

    Always started again, whatever happens: other tests (and other people's workers) share this broker.
    """
    try:
        rabbitmqctl("stop_app")
        time.sleep(2)  # long enough for every client to notice its connection gone
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")


def queue_messages(queue: str) -> int:
    """Messages in ``queue`` on RabbitMQ, waiting or delivered and not yet acknowledged."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    for line in out.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return 0


def rows_by_file(pg_url: str) -> dict[str, int]:
    engine = make_engine(pg_url, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_file, count(*) FROM historical_market_data GROUP BY 1")).all()
    engine.dispose()
    return {r[0]: r[1] for r in rows}


def dead_letter_ticks(instance: dg.DagsterInstance, pg_url: str, data_root: Path) -> Callable[..., Any]:
    """A tick of the dead-letter sensor, as the daemon runs it: ``tick(cursor=None)`` evaluates it once."""
    defs = defs_for(pg_url, data_root)
    sensor = defs.resolve_sensor_def("dead_letter_sensor")
    resources = {"warehouse": WarehouseResource(database_url=pg_url)}

    def tick(cursor: str | None = None) -> Any:
        context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor, resources=resources)
        return sensor.evaluate_tick(context)

    return tick


def assert_each_file_loaded_whole_or_dead_lettered(pg_url: str, run_status: dg.DagsterRunStatus) -> None:
    """Never half-recorded: each big file loaded whole (a succeeded audit), or absent and in the dead-letter queue."""
    statuses = {f: s for f, s in audit(pg_url)}  # each file's latest load
    assert set(statuses.values()) <= {"succeeded", "failed"}
    loaded = rows_by_file(pg_url)
    store = store_for(pg_url)
    dead = {f for item in store.list(page_size=1000).items if item.status == "open" for f in item.source_files}
    for name in BIG_FILES:
        file = f"NASDAQ/{name}"
        if statuses.get(file) == "succeeded":
            assert loaded.get(file) == BIG_ROWS, file  # loaded whole
        else:
            assert file not in loaded, file  # nothing of it in the table
            assert file in dead, (file, statuses.get(file), run_status)  # and the dead-letter queue holds it
    if run_status == dg.DagsterRunStatus.FAILURE:
        assert dead or len(loaded) == len(BIG_FILES)


def test_rabbitmq_restarted_mid_load_leaves_each_file_loaded_whole_or_failed_and_dead_lettered(
    celery_env: dict[str, str], pg_url: str, data_root: Path, workers: list[Worker], tmp_path: Path
) -> None:
    write_big_tree(data_root)
    worker = start_worker(workers, tmp_path)
    with dg.DagsterInstance.get() as instance, concurrent.futures.ThreadPoolExecutor(1) as pool:
        tick = dead_letter_ticks(instance, pg_url, data_root)
        cursor = tick().cursor  # the sensor is watching before the run starts
        # The last file's load is held mid-file while RabbitMQ restarts, so the restart comes mid-load however fast
        # the other files load.
        with held_in_flight(pg_url, BIG_FILES[-1], BIG_START):
            run = pool.submit(launch_import, instance, BIG_FILES)
            deadline = wait_for_a_committed_file(run, pg_url, worker)  # the step is loading
            restart_rabbitmq()
            assert len([s for _, s in audit(pg_url) if s == "succeeded"]) < len(BIG_FILES), "restarted too late"
        result = run.result(timeout=RUN_TIMEOUT_SECONDS)
        # The worker's step outlives a run that lost its broker, and the step's message, unacknowledged when the
        # connection dropped, comes back to the worker: wait until it is back on the broker, its queue is empty and
        # every step the worker started has ended.
        queue = os.environ["MYTRADER_TEST_QUEUE"]
        while (
            worker.text().count("Connected to amqp") < 2
            or queue_messages(queue) != 0
            or worker.text().count(": started") > worker.text().count(": ended")
        ):
            assert time.monotonic() < deadline, worker.text()
            time.sleep(0.2)
        tick(cursor)
        run_status = instance.get_run_by_id(result.run_id).status
        # The step ran once: a step that comes back after its run ended is dropped, not run a second time.
        assert len(instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)) == 1
    print(f"run {result.run_id}: {run_status}; worker log:\n{worker.text()}")
    assert_each_file_loaded_whole_or_dead_lettered(pg_url, run_status)


class PrivateRedis:
    """A redis-server of this test's own (the machine's is shared), keeping nothing on disk, as the machine's."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port, self.log_path = port, log_path
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            try:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.ensure_connection(max_retries=1)
                return
            except Exception:  # not listening yet
                assert self.process.poll() is None, self.log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, self.log_path.read_text(errors="replace")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def restart(self) -> None:
        """Stop the server (every connection drops, every queued message and result is lost), then start it again."""
        self.stop()
        time.sleep(2)  # long enough for every client to notice its connection gone
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = PrivateRedis(port, tmp_path / "redis.log")
    yield server
    server.stop()


def use_private_redis(
    monkeypatch: pytest.MonkeyPatch, server: PrivateRedis, visibility_timeout: int | None = None
) -> None:
    """Make ``server`` the broker and result backend of the runs and of the workers started after this.

    A test with a short ``visibility_timeout`` needs a Redis of its own: its workers' restore sweeps would otherwise
    hand out again the steps that other sessions' workers are running on the shared Redis, all keyed in one
    ``unacked_index`` per database.
    """
    monkeypatch.setenv("MYTRADER_CELERY_BROKER_URL", server.url)
    monkeypatch.setenv("MYTRADER_CELERY_BACKEND_URL", server.url)
    if visibility_timeout is not None:
        monkeypatch.setenv("MYTRADER_CELERY_VISIBILITY_TIMEOUT", str(visibility_timeout))
    get_settings.cache_clear()


def test_redis_restarted_mid_load_leaves_each_file_loaded_whole_or_failed_and_dead_lettered(
    celery_env: dict[str, str],
    private_redis: PrivateRedis,
    pg_url: str,
    data_root: Path,
    workers: list[Worker],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Redis as broker and result backend, restarted empty mid-load: the step's message and any result are lost.
    use_private_redis(monkeypatch, private_redis)
    write_big_tree(data_root)
    worker = start_worker(workers, tmp_path)
    with dg.DagsterInstance.get() as instance, concurrent.futures.ThreadPoolExecutor(1) as pool:
        tick = dead_letter_ticks(instance, pg_url, data_root)
        cursor = tick().cursor
        with held_in_flight(pg_url, BIG_FILES[-1], BIG_START):  # the restart comes mid-load, however fast the rest
            run = pool.submit(launch_import, instance, BIG_FILES)
            deadline = wait_for_a_committed_file(run, pg_url, worker)
            private_redis.restart()
            assert len([s for _, s in audit(pg_url) if s == "succeeded"]) < len(BIG_FILES), "restarted too late"
        result = run.result(timeout=RUN_TIMEOUT_SECONDS)
        while worker.text().count(": started") > worker.text().count(": ended"):  # the worker's step is over
            assert time.monotonic() < deadline, worker.text()
            time.sleep(0.2)
        tick(cursor)
        run_status = instance.get_run_by_id(result.run_id).status
        assert len(instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)) == 1  # ran once
    print(f"run {result.run_id}: {run_status}; worker log:\n{worker.text()}")
    assert_each_file_loaded_whole_or_dead_lettered(pg_url, run_status)


def test_a_step_running_longer_than_the_visibility_timeout_on_redis_runs_once_with_two_workers_listening(
    celery_env: dict[str, str],
    private_redis: PrivateRedis,
    pg_url: str,
    data_root: Path,
    workers: list[Worker],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the workers' visibility heartbeat, any worker's restore sweep (every 10 s) would put the step back in
    # its queue once it had run 4 s, and the idle worker would start it a second time while the first still runs it.
    timeout = 4
    use_private_redis(monkeypatch, private_redis, visibility_timeout=timeout)
    write_tree(data_root)
    both = [start_worker(workers, tmp_path), start_worker(workers, tmp_path)]
    with dg.DagsterInstance.get() as instance, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with held_in_flight(pg_url, FILES[-1], dt.date(2020, 1, 1)):  # the step stays in flight as long as held
            run = pool.submit(launch_import, instance, FILES)
            deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
            while not waiting_loads(pg_url):  # the step is loading the held file
                assert not run.done(), run.result()
                assert time.monotonic() < deadline, [w.text() for w in both]
                time.sleep(0.05)
            time.sleep(5 * timeout)  # the step runs 5 timeouts, through two restore sweeps of each worker at least
            assert waiting_loads(pg_url) == 1, [w.text() for w in both]  # still in flight, and in one step only
        result = run.result(timeout=RUN_TIMEOUT_SECONDS)
        assert len(instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)) == 1
    assert result.success, [w.text() for w in both]
    started = [w.text().count(f"run {result.run_id}, step(s) nasdaq_prices: started") for w in both]
    assert sorted(started) == [0, 1], [w.text() for w in both]  # one worker ran it; the other never started it
    assert sorted(audit(pg_url)) == sorted((f"NASDAQ/{f}", "succeeded") for f in FILES)  # each file loaded once


def test_the_visibility_heartbeat_confirms_the_held_steps_under_kombus_keys_and_outlives_a_redis_restart(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_private_redis(monkeypatch, private_redis, visibility_timeout=4)  # a confirmation every second
    app = worker_app(("dagster",))
    prefix = "mt_prefix:"
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "global_keyprefix": prefix}
    index = f"{prefix}unacked_index"  # where kombu's QoS.append keeps a delivered message's time, as below
    raw = redis.Redis.from_url(private_redis.url)
    with app.connection_for_read() as connection, connection.SimpleQueue("mt_heartbeat_test") as queue:
        queue.put({"step": "held"})
        message = queue.get(timeout=10)  # delivered, not acknowledged: kombu has it in the unacked index
        tag = message.delivery_tag
        assert raw.zscore(index, tag) is not None
        raw.zadd(index, {tag: 0})  # as if it had been handed out long ago
        # The worker's table of held requests: this message, and one already acknowledged (not in the index).
        monkeypatch.setitem(celery.worker.state.requests, "held", SimpleNamespace(message=message))
        gone = SimpleNamespace(delivery_tag="acknowledged-already")
        monkeypatch.setitem(celery.worker.state.requests, "acked", SimpleNamespace(message=gone))

        def confirmed_since(moment: float) -> None:
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while (raw.zscore(index, tag) or 0) < moment:
                assert time.monotonic() < deadline, "the held message was not confirmed"
                time.sleep(0.1)

        heartbeat = VisibilityHeartbeat(SimpleNamespace(app=app))
        heartbeat.start(SimpleNamespace(app=app))
        try:
            confirmed_since(time.time() - 1)
            assert raw.zscore(index, "acknowledged-already") is None  # never put back in the index
            private_redis.restart()  # the heartbeat's connection drops (and the index with Redis's data)
            raw.zadd(index, {tag: 0})
            confirmed_since(time.time() - 1)  # it went on after the errors
        finally:
            heartbeat.stop(SimpleNamespace(app=app))
