"""The service layer against a running ``dagster dev``: import, progress, all markets, cancel, retry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import make_engine
from mytrader_pipeline.core.request_errors import InvalidRequest, NotFound
from mytrader_pipeline.core.requests import AllMarketsImportRequest, MarketImportRequest
from mytrader_pipeline.service.models import JobStatus, RetryPolicy
from mytrader_pipeline.service.operations import Operations
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline_tests.integration.conftest import Deployment

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
WAIT_SECONDS = 240


@pytest.fixture(scope="module")
def ops(dagster_deployment: Deployment) -> Operations:
    return Operations(
        ServiceSettings(
            dagster_url=dagster_deployment.url,
            data_root=dagster_deployment.data_root,
            database_url=dagster_deployment.database_url,
        )
    )


def wait_finished(get_status: Callable[[], JobStatus]) -> JobStatus:
    """Poll until the job ends (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        status = get_status()
        if status.finished:
            return status
        time.sleep(1)
    raise AssertionError(f"job not finished after {WAIT_SECONDS}s: {status}")


def files(root: Path, folder: str) -> int:
    return len(list((root / folder).glob("*.csv")))


def test_import_market_runs_on_the_deployment_and_reports_progress_from_events_and_audit(
    ops: Operations, dagster_deployment: Deployment
) -> None:
    job_id = ops.import_market(MarketImportRequest(market="NYSE", force=True))
    status = wait_finished(lambda: ops.status(job_id))
    assert status.state == "Succeeded", status.error_message
    assert status.job_type == "MarketImport" and status.market == "NYSE"
    assert status.files_total == status.files_done == files(dagster_deployment.data_root, "NYSE")
    assert status.progress_percentage == 100.0
    assert status.records_processed > 0 and status.records_total == status.records_processed
    assert status.started_at and status.completed_at and status.completed_at >= status.started_at
    assert status.processing_rate > 0 and status.sla_target is not None and not status.is_sla_breached
    engine = make_engine(dagster_deployment.database_url)
    with engine.connect() as conn:
        loaded = conn.execute(
            sa.text("SELECT coalesce(sum(rows_read), 0) FROM file_imports WHERE run_id = :r"), {"r": job_id}
        ).scalar_one()
    assert loaded == status.records_processed
    api = status.as_api()
    assert api["jobId"] == job_id and api["state"] == "Succeeded" and api["slaTarget"] == "00:25:00"


def test_import_all_markets_is_one_run_whose_progress_sums_every_market(
    ops: Operations, dagster_deployment: Deployment
) -> None:
    job_id = ops.import_all_markets(AllMarketsImportRequest(global_max_concurrency=2, force=True))
    status = wait_finished(lambda: ops.status(job_id))
    assert status.state == "Succeeded", status.error_message
    assert status.job_type == "AllMarketsImport" and status.market is None
    root = dagster_deployment.data_root
    assert status.files_total == status.files_done == sum(files(root, f) for f in ("BIST", "Crypto", "NASDAQ", "NYSE"))
    assert status.progress_percentage == 100.0 and status.records_processed > 0
    assert status.sla_target is not None and status.sla_target.total_seconds() == 7200


def test_cancel_a_queued_import_then_retry_it_from_its_failure(ops: Operations) -> None:
    job_id = ops.import_market(MarketImportRequest(market="BIST", force=True))
    cancelled = ops.cancel(job_id)
    assert cancelled.state in ("Cancelling", "Cancelled")
    assert wait_finished(lambda: ops.status(job_id)).state == "Cancelled"
    (retry_id,) = ops.retry(job_id, RetryPolicy(max_retries=1))
    retried = wait_finished(lambda: ops.status(retry_id))
    assert retried.state == "Succeeded", retried.error_message
    assert retried.job_type == "Retry" and retried.market == "BIST"
    original = ops.status(job_id)
    assert original.retry_count == 1 and original.child_job_ids == [retry_id]


def test_unknown_jobs_and_bad_requests_are_refused_clearly(ops: Operations) -> None:
    with pytest.raises(NotFound):
        ops.status("0b0b0b0b-0000-0000-0000-000000000000")
    with pytest.raises(InvalidRequest, match="dataPath"):
        ops.import_market(MarketImportRequest(market="BIST", data_path="../../etc"))
    with pytest.raises(InvalidRequest, match="unknown market"):
        ops.import_market(MarketImportRequest(market="LSE"))
    with pytest.raises(InvalidRequest, match="no BIST file"):
        ops.import_market(MarketImportRequest(market="BIST", include_files=("NOPE*.csv",)))


def test_cli_import_waits_with_plain_progress_lines_and_prints_json(dagster_deployment: Deployment) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_HOME"))}
    env |= {
        "MYTRADER_DATA_ROOT": str(dagster_deployment.data_root),
        "MYTRADER_DATABASE_URL": dagster_deployment.database_url,
    }
    command = [sys.executable, "-m", "mytrader_pipeline.cli", "import", "CRYPTO", "--force", "--wait", "--json"]
    result = subprocess.run(
        [*command, "--url", dagster_deployment.url], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "Succeeded" and status["filesProcessed"] == status["filesTotal"] == 1
    assert "\r" not in result.stderr and "Succeeded 100%" in result.stderr  # not a terminal: plain lines
    missing = subprocess.run(
        [sys.executable, "-m", "mytrader_pipeline.cli", "status", "no-such-run", "--url", dagster_deployment.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 4 and "no run with id" in missing.stderr
