"""The dead-letter queue through the REST API: list, show, replay (runs launched on the deployment), discard."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
import requests

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import DeadLetterStore, FailureRecord
from mytrader_pipeline.service.gateway import DagsterGateway
from mytrader_pipeline_tests.integration.conftest import Deployment
from mytrader_pipeline_tests.integration.test_api import AUTH, P, api  # noqa: F401 - the shared API fixture

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _record(deployment: Deployment, file_name: str) -> int:
    engine = make_engine(deployment.database_url)
    ensure_schema(engine)
    now = dt.datetime.now(dt.UTC)
    run_id = str(uuid.uuid4())
    item, _ = DeadLetterStore(engine).record(
        FailureRecord(
            run_id=run_id,
            job_name="import_nasdaq",
            market="NASDAQ",
            partition_keys=[file_name],
            source_files=[f"NASDAQ/{file_name}"],
            failed_files={file_name: "database_connection: server closed the connection"},
            error_class="database_connection",
            message="1 of 1 NASDAQ file(s) failed",
            stack_trace="Traceback ...",
            attempts=4,
            retryable=True,
            failed_at=now,
            run_ids=[run_id],
            run_config={},
            run_tags={"market": "NASDAQ"},
        )
    )
    return item.id


def test_list_show_and_discard_an_item(api: str, dagster_deployment: Deployment) -> None:  # noqa: F811
    item_id = _record(dagster_deployment, "NOPE.csv")
    page = requests.get(f"{api}{P}/dead-letter-queue", params={"page": 1, "pageSize": 10}, timeout=30).json()
    assert item_id in [i["id"] for i in page["items"]] and page["pageSize"] == 10
    listed = next(i for i in page["items"] if i["id"] == item_id)
    assert (listed["jobName"], listed["runId"], listed["errorClass"]) == (
        "import_nasdaq",
        listed["runIds"][0],
        "database_connection",
    )
    assert "stackTrace" not in listed and "run_id" not in listed
    shown = requests.get(f"{api}{P}/dead-letter-queue/{item_id}", timeout=30).json()
    assert shown["status"] == "open" and shown["stackTrace"] == "Traceback ..."
    assert requests.get(f"{api}{P}/dead-letter-queue/999999", timeout=30).status_code == 404
    by_market = requests.get(f"{api}{P}/dead-letter-queue", params={"market": "nasdaq"}, timeout=30).json()
    assert item_id in [i["id"] for i in by_market["items"]]
    assert requests.get(f"{api}{P}/dead-letter-queue", params={"market": "ALL"}, timeout=30).json()["total"] == 0
    unknown = requests.get(f"{api}{P}/dead-letter-queue", params={"market": "LSE"}, timeout=30)
    assert unknown.status_code == 400 and "unknown market 'LSE'" in unknown.json()["detail"]
    garbage = requests.get(f"{api}{P}/dead-letter-queue", params={"market": "A\x00"}, timeout=30)
    assert garbage.status_code == 422 and garbage.json()["detail"][0]["loc"] == ["query", "market"]
    discarded = requests.post(
        f"{api}{P}/dead-letter-queue/{item_id}/discard",
        json={"reason": "symbol delisted", "discardedBy": "ops"},
        headers=AUTH,
        timeout=30,
    )
    assert discarded.status_code == 200
    assert discarded.json()["discardReason"] == "symbol delisted" and discarded.json()["discardedBy"] == "ops"
    again = requests.post(f"{api}{P}/dead-letter-queue/{item_id}/replay", headers=AUTH, timeout=30)
    assert again.status_code == 409


def test_replay_launches_the_failed_partition_on_the_deployment(api: str, dagster_deployment: Deployment) -> None:  # noqa: F811
    file_name = sorted(p.name for p in (dagster_deployment.data_root / "NASDAQ").glob("*.csv"))[0]
    item_id = _record(dagster_deployment, file_name)
    response = requests.post(f"{api}{P}/dead-letter-queue/{item_id}/replay", headers=AUTH, timeout=60)
    assert response.status_code == 202, response.text
    item = response.json()
    assert item["status"] == "replayed" and len(item["replayRunIds"]) == 1
    gateway = DagsterGateway(dagster_deployment.url)
    run_id = item["replayRunIds"][0]
    deadline = time.monotonic() + 240
    while gateway.run(run_id).status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
        time.sleep(1)
    run = gateway.run(run_id)
    assert run.status == "SUCCESS"
    assert run.tags["dagster/asset_partition_range_start"] == run.tags["dagster/asset_partition_range_end"] == file_name
