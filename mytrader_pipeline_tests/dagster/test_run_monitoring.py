"""Run monitoring on a real instance with the deployment's run launcher (``MonitoredRunLauncher``).

Dagster's own monitoring functions drive it: a STARTED run whose worker process is gone is failed, one whose worker
runs is left alone; a run over its max runtime is stopped, failed, and dead-lettered as ``max_runtime_exceeded``.
"""

import contextlib
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._daemon.monitoring.run_monitoring import check_run_timeout, monitor_started_run

from mytrader_pipeline.defs.dead_letters import record_run_failure
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.run_launcher import MonitoredRunLauncher, run_worker
from mytrader_pipeline_tests.dagster.test_failure_dlq import NASDAQ, REGISTRY, defs_for, store_for

LAUNCHER = {"module": "mytrader_pipeline.defs.run_launcher", "class": "MonitoredRunLauncher"}  # as in dagster.yaml
LOCAL_SERVER = json.dumps({"host": "localhost", "socket": "/tmp/code-server.sock"})  # what the launcher tags
KEYS = ["A.csv", "B.csv", "C.csv"]
LOGGER = logging.getLogger("run_monitoring_test")


@contextlib.contextmanager
def monitored_instance(**settings: object) -> Iterator[dg.DagsterInstance]:
    """A test instance with the deployment's launcher and run monitoring (no daemon: tests drive the monitoring)."""
    overrides = {"run_launcher": LAUNCHER, "run_monitoring": {"enabled": True}, **settings}
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


def started_run(instance: dg.DagsterInstance, tags: dict[str, str], started_at: float | None = None) -> dg.DagsterRun:
    """A NASDAQ import run over ``KEYS`` in status STARTED (its RUN_START event at ``started_at``, default now)."""
    register_partitions(instance, NASDAQ, KEYS)
    job = defs_for("sqlite://", Path(".")).resolve_job_def(import_job_name(NASDAQ))
    run = instance.create_run_for_job(
        job, run_id=str(uuid.uuid4()), tags={**partition_range_tags(KEYS[0], KEYS[-1]), **tags}
    )
    start = dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name)
    instance.handle_new_event(
        dg.EventLogEntry(
            error_info=None,
            level=logging.DEBUG,
            user_message="",
            run_id=run.run_id,
            timestamp=started_at or time.time(),
            dagster_event=start,
        )
    )
    return instance.get_run_by_id(run.run_id)


def log_worker(instance: dg.DagsterInstance, run: dg.DagsterRun, pid: int) -> None:
    """What a run worker logs first, exactly as Dagster's code server's worker does (dagster/_grpc/impl.py)."""
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))


def monitor(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    """One pass of run monitoring over a STARTED run (dagster/_daemon/monitoring); returns the run's status."""
    record = instance.get_run_record_by_id(run_id)
    assert record is not None
    monitor_started_run(instance, None, record, LOGGER)  # the workspace is only used to resume a run: never here
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def failure_messages(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return "\n".join(r.event_log_entry.dagster_event.message or "" for r in records if r.event_log_entry.dagster_event)


def test_dagsters_default_launcher_cannot_tell_a_dead_worker_and_ours_can() -> None:
    assert not dg.DefaultRunLauncher().supports_check_run_worker_health
    with monitored_instance() as instance:
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_max_resume_run_attempts == 0  # a dead run is failed, then retried


def test_run_monitoring_fails_a_started_run_whose_worker_is_gone_and_leaves_one_whose_worker_runs() -> None:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with monitored_instance() as instance:
            run = started_run(instance, {GRPC_INFO_TAG: LOCAL_SERVER})
            log_worker(instance, run, worker.pid)
            assert run_worker(instance, run.run_id) is not None
            assert monitor(instance, run.run_id) == dg.DagsterRunStatus.STARTED  # alive: left alone

            worker.kill()
            worker.wait()
            assert monitor(instance, run.run_id) == dg.DagsterRunStatus.FAILURE
            message = failure_messages(instance, run.run_id)
    finally:
        worker.kill()
        worker.wait()
    assert f"Detected run worker status NOT_FOUND: 'run worker pid {worker.pid} is gone" in message


@pytest.mark.parametrize(
    ("grpc_info", "log_pid"),
    [(json.dumps({"host": "user-code", "port": 4000}), True), (LOCAL_SERVER, False), (None, True)],
    ids=["worker-on-another-host", "no-pid-logged-yet", "not-launched-by-a-code-server"],
)
def test_a_worker_that_cannot_be_judged_from_here_counts_as_running(grpc_info: str | None, log_pid: bool) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with monitored_instance() as instance:
        run = started_run(instance, {GRPC_INFO_TAG: grpc_info} if grpc_info else {})
        if log_pid:
            log_worker(instance, run, gone.pid)
        # Its max runtime still bounds it; failing a live run would start a second one beside it.
        assert monitor(instance, run.run_id) == dg.DagsterRunStatus.STARTED


def test_a_run_over_its_max_runtime_whose_worker_cannot_be_reached_is_failed_and_dead_lettered(pg_url: str) -> None:
    store = store_for(pg_url)
    with monitored_instance() as instance:
        # Started an hour ago, with a 60 s max runtime; its worker cannot be reached (no code server to ask).
        run = started_run(instance, {GRPC_INFO_TAG: LOCAL_SERVER, "dagster/max_runtime": "60"}, time.time() - 3600)
        record = instance.get_run_record_by_id(run.run_id)
        assert record is not None
        check_run_timeout(instance, record, LOGGER, float(instance.run_monitoring_max_runtime_seconds))
        run = instance.get_run_by_id(run.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE  # forced: the run-failure sensor sees it
        item, created = record_run_failure(instance, REGISTRY, store, run)
    assert created and item is not None
    assert item.error_class == "max_runtime_exceeded" and item.retryable
    assert "stopped by run monitoring after exceeding its max runtime of 60 s" in item.message
    assert item.partition_keys == KEYS  # a stopped run names no failed file: a replay loads its range
    assert item.attempts == 1 and item.run_ids == [run.run_id]


def test_a_failure_seen_before_dagster_tags_it_for_retry_is_left_for_the_retry(pg_url: str) -> None:
    store = store_for(pg_url)
    with monitored_instance(run_retries={"enabled": True, "max_retries": 2}) as instance:
        runs = {}
        for name, tags in {"retried": {}, "no_retries": {"dagster/max_retries": "0"}}.items():
            run = started_run(instance, {GRPC_INFO_TAG: LOCAL_SERVER, **tags})
            instance.report_run_failed(run, "run worker gone")
            failed = instance.get_run_by_id(run.run_id)
            assert failed is not None and "dagster/will_retry" in failed.tags
            # The run-failure sensor may read the run between its failure and Dagster's will_retry tag.
            runs[name] = failed.with_tags({k: v for k, v in failed.tags.items() if k != "dagster/will_retry"})
        assert record_run_failure(instance, REGISTRY, store, runs["retried"]) == (None, False)
        item, created = record_run_failure(instance, REGISTRY, store, runs["no_retries"])
    assert created and item is not None and item.run_id == runs["no_retries"].run_id
    assert store.list().total == 1
