"""The REST API over a running deployment: old endpoints and field names, bearer token, confinement, validation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import uvicorn

from mytrader_pipeline.api.app import create_app
from mytrader_pipeline.api.settings import ApiSettings
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline_tests.integration.conftest import Deployment, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
P = "/api/batch-processing"
STATUS_FIELDS = {
    "jobId", "jobType", "state", "createdAt", "startedAt", "completedAt", "progressPercentage", "currentOperation",
    "recordsProcessed", "recordsTotal", "processingRate", "errorMessage", "retryCount", "slaTarget", "isSlaBreached",
    "childJobIds", "parentJobId",
}  # fmt: skip


def serve(settings: ApiSettings) -> Iterator[str]:
    """Run the app with uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def service_settings(deployment: Deployment, data_root: Path | None = None) -> ServiceSettings:
    return ServiceSettings(
        dagster_url=deployment.url,
        data_root=data_root or deployment.data_root,
        database_url=deployment.database_url,
        dagster_home=deployment.dagster_home,
    )


@pytest.fixture(scope="module")
def api(dagster_deployment: Deployment) -> Iterator[str]:
    yield from serve(ApiSettings(api_token=TOKEN, service=service_settings(dagster_deployment)))


@pytest.fixture(scope="module")
def api_without_token(dagster_deployment: Deployment) -> Iterator[str]:
    yield from serve(ApiSettings(api_token=None, service=service_settings(dagster_deployment)))


MUTATING = [
    ("post", f"{P}/markets/BIST/import", {}),
    ("post", f"{P}/all-markets/import", {}),
    ("post", f"{P}/jobs/x/cancel", None),
    ("post", f"{P}/jobs/x/retry", {}),
    ("post", f"{P}/schedules/all-markets", {"cronExpression": "0 2 * * *", "timeZone": "UTC"}),
    ("delete", f"{P}/schedules/x", None),
    ("post", f"{P}/dead-letter-queue/1/replay", None),
    ("post", f"{P}/dead-letter-queue/1/discard", {"reason": "r"}),
]


@pytest.mark.parametrize(("method", "path", "body"), MUTATING)
def test_every_mutating_call_needs_the_bearer_token(api: str, method: str, path: str, body: object) -> None:
    assert requests.request(method, api + path, json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.request(method, api + path, json=body, headers=wrong, timeout=30).status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), MUTATING)
def test_without_a_configured_token_mutating_calls_are_refused(
    api_without_token: str, method: str, path: str, body: object
) -> None:
    response = requests.request(method, api_without_token + path, json=body, headers=AUTH, timeout=30)
    assert response.status_code == 503
    assert "MYTRADER_API_TOKEN" in response.json()["detail"]


def test_market_import_returns_a_job_whose_status_has_the_old_field_names(api: str) -> None:
    response = requests.post(
        f"{api}{P}/markets/CRYPTO/import",
        json={"market": "CRYPTO", "batchSize": 1500, "slaTarget": "00:20:00", "maxConcurrency": 2, "force": True},
        headers=AUTH,
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = requests.get(f"{api}{P}/jobs/{job_id}/status", timeout=30).json()
        if status["state"] in ("Succeeded", "Failed", "Cancelled"):
            break
        time.sleep(1)
    assert set(status) >= STATUS_FIELDS
    assert status["state"] == "Succeeded", status["errorMessage"]
    assert status["jobId"] == job_id and status["slaTarget"] == "00:20:00" and status["progressPercentage"] == 100
    assert status["recordsProcessed"] > 0 and status["isSlaBreached"] is False
    conflict = requests.post(f"{api}{P}/jobs/{job_id}/cancel", headers=AUTH, timeout=30)
    assert conflict.status_code == 409


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"{P}/markets/BIST/import", {"dataPath": "../../../etc/BIST"}, "dataPath"),
        (f"{P}/markets/BIST/import", {"dataPath": "/etc"}, "dataPath"),
        (f"{P}/all-markets/import", {"stockScrapperDataPath": "/"}, "stockScrapperDataPath"),
        (f"{P}/all-markets/import", {"stockScrapperDataPath": "BIST/../../.."}, "stockScrapperDataPath"),
    ],
)
def test_paths_outside_the_data_root_get_400(api: str, path: str, body: dict[str, str], field: str) -> None:
    response = requests.post(api + path, json=body, headers=AUTH, timeout=30)
    assert response.status_code == 400
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"{P}/markets/BIST/import", {"batchSize": "lots"}, "batchSize"),
        (f"{P}/markets/BIST/import", {"slaTarget": "45 minutes"}, "slaTarget"),
        (f"{P}/markets/BIST/import", {"maxConcurrency": 0}, "maxConcurrency"),
        (f"{P}/all-markets/import", {"globalSlaTarget": "2h"}, "globalSlaTarget"),
        # Out of the import job's config bounds: refused here rather than failing the run.
        (f"{P}/markets/BIST/import", {"batchSize": 1}, "batchSize"),
        (f"{P}/markets/BIST/import", {"batchSize": 99}, "batchSize"),
        (f"{P}/markets/BIST/import", {"batchSize": 100_001}, "batchSize"),
        (f"{P}/markets/BIST/import", {"maxConcurrency": 33}, "maxConcurrency"),
        (f"{P}/markets/BIST/import", {"slaTarget": "00:00:00"}, "slaTarget"),
        (f"{P}/markets/BIST/import", {"slaTarget": "1.00:00:01"}, "slaTarget"),
        (f"{P}/all-markets/import", {"globalMaxConcurrency": 0}, "globalMaxConcurrency"),
        (f"{P}/all-markets/import", {"globalMaxConcurrency": 65}, "globalMaxConcurrency"),
        (f"{P}/all-markets/import", {"marketConfigs": {"NYSE": {"batchSize": 50}}}, "batchSize"),
        (f"{P}/all-markets/import", {"marketConfigs": {"NYSE": {"maxConcurrency": 0}}}, "maxConcurrency"),
        (
            f"{P}/schedules/all-markets",
            {"cronExpression": "0 2 * * *", "importRequest": {"globalMaxConcurrency": 65}},
            "globalMaxConcurrency",
        ),
        (f"{P}/jobs/abc/retry", {"maxRetries": -1}, "maxRetries"),
        (f"{P}/schedules/all-markets", {"cronExpression": "every night at two"}, "cronExpression"),
        (f"{P}/schedules/all-markets", {"cronExpression": "0 2 * * *", "timeZone": "Mars/Olympus"}, "timeZone"),
    ],
)
def test_bad_bodies_get_422_naming_the_field(api: str, path: str, body: dict[str, object], field: str) -> None:
    response = requests.post(api + path, json=body, headers=AUTH, timeout=30)
    assert response.status_code == 422
    assert any(field in error["loc"] for error in response.json()["detail"]), response.json()


def test_unknown_market_and_unknown_job(api: str) -> None:
    response = requests.post(f"{api}{P}/markets/LSE/import", json={}, headers=AUTH, timeout=30)
    assert response.status_code == 400 and "unknown market" in response.json()["detail"]
    assert requests.get(f"{api}{P}/jobs/no-such-job/status", timeout=30).status_code == 404


def test_schedules_are_added_listed_and_removed(api: str) -> None:
    body = {
        "importRequest": {"runMarketsInParallel": True, "globalSlaTarget": "02:00:00"},
        "cronExpression": "0 2 * * *",
        "timeZone": "Europe/Istanbul",
    }
    created = requests.post(f"{api}{P}/schedules/all-markets", json=body, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["cronExpression"] == "0 2 * * *" and schedule["timeZone"] == "Europe/Istanbul"
    assert schedule["nextExecution"].endswith("+03:00")
    listed = requests.get(f"{api}{P}/schedules", timeout=30).json()
    assert schedule["recurringJobId"] in [s["recurringJobId"] for s in listed]
    url = f"{api}{P}/schedules/{schedule['recurringJobId']}"
    assert requests.delete(url, headers=AUTH, timeout=30).status_code == 204
    assert requests.delete(url, headers=AUTH, timeout=30).status_code == 404


def test_the_openapi_document_describes_the_old_endpoints_and_the_bearer_scheme(api: str) -> None:
    document = requests.get(f"{api}/openapi.json", timeout=30).json()
    for path in (
        "/markets/{market}/import",
        "/all-markets/import",
        "/jobs/{jobId}/status",
        "/jobs/{jobId}/cancel",
        "/jobs/{jobId}/retry",
        "/monitoring/stats",
        "/dead-letter-queue",
        "/health",
        "/schedules/all-markets",
        "/schedules/{recurringJobId}",
    ):
        assert P + path in document["paths"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():  # every answer with a body has a schema, in camelCase
        for method, operation in operations.items():
            answers = [code for code in operation["responses"] if code.startswith("2")]
            assert answers, f"{method} {path}"
            for code in set(answers) - {"204"}:
                assert operation["responses"][code]["content"]["application/json"]["schema"], f"{method} {path}"
    schemas = document["components"]["schemas"]
    assert "recordsProcessed" in schemas["JobStatusResponse"]["properties"]
    assert {"dedupeKey", "runId", "measuredValue"} <= set(schemas["AlertResponse"]["properties"])
    assert {"runId", "jobName", "replayRunIds", "stackTrace"} <= set(schemas["DeadLetterItemResponse"]["properties"])
    assert "503" in document["paths"][P + "/health"]["get"]["responses"]


def test_monitoring_stats_use_the_old_field_names_and_health_reports_every_check(api: str) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    response = requests.get(f"{api}{P}/monitoring/stats", params={"startDate": today, "endDate": today}, timeout=60)
    assert response.status_code == 200, response.text
    stats = response.json()
    for field in ("totalJobs", "successfulJobs", "failedJobs", "slaBreachedJobs", "successRate", "jobsByMarket"):
        assert field in stats
    assert "recentBreaches" in stats and not any("_" in key for key in stats)
    bad = requests.get(f"{api}{P}/monitoring/stats", params={"startDate": "yesterday"}, timeout=30)
    assert bad.status_code == 422
    health = requests.get(f"{api}{P}/health", timeout=60)
    report = health.json()
    assert report["status"] in ("healthy", "degraded", "unhealthy")
    assert health.status_code == (503 if report["status"] == "unhealthy" else 200)
    assert {"warehouse", "dagster_storage", "daemon", "data_root"} <= {c["name"] for c in report["checks"]}
    assert "checkedAt" in report and "checked_at" not in report
