"""The REST models: camelCase out (dead-letter items, alerts, statuses, stats), camelCase or snake_case in, and
the import options' bounds declared once and enforced with the same messages everywhere."""

from __future__ import annotations

import datetime as dt

import pydantic
import pytest
import sqlalchemy as sa

from mytrader_pipeline.api.models import AllMarketsImportBody, DiscardBody, MarketImportBody, RetryBody, ScheduleBody
from mytrader_pipeline.core.alerts import AlertStore
from mytrader_pipeline.core.dlq import DeadLetterStore, FailureRecord
from mytrader_pipeline.core.health import combine, dead_letter_check
from mytrader_pipeline.core.limits import BATCH_SIZE, MAX_RETRIES, BatchSize, GlobalMaxConcurrency, MaxRetries
from mytrader_pipeline.core.request_errors import InvalidRequest
from mytrader_pipeline.core.responses import (
    DeadLetterItemResponse,
    DeadLetterPage,
    JobAccepted,
    MonitoringStatsResponse,
)
from mytrader_pipeline.core.sla import AlertType, Breach, Severity
from mytrader_pipeline.core.stats import MonitoringStats
from mytrader_pipeline.service.models import JobStatus, RetryPolicy

T0 = dt.datetime(2025, 3, 10, 3, tzinfo=dt.UTC)


def _snake_free(data: object) -> bool:
    """No key at any depth has an underscore."""
    if isinstance(data, dict):
        return all("_" not in key and _snake_free(value) for key, value in data.items())
    if isinstance(data, list):
        return all(_snake_free(value) for value in data)
    return True


def _failure(run_id: str = "r1") -> FailureRecord:
    return FailureRecord(
        run_id=run_id,
        job_name="import_nasdaq",
        market="NASDAQ",
        partition_keys=["A.csv"],
        source_files=["NASDAQ/A.csv"],
        failed_files={"A.csv": "database_connection: gone"},
        error_class="database_connection",
        message="1 of 1 NASDAQ file(s) failed",
        stack_trace="Traceback ...",
        attempts=2,
        retryable=True,
        failed_at=T0,
        run_ids=[run_id],
        run_config={"ops": {"some_op": {"config": {"batch_size": 500}}}},
        run_tags={"market": "NASDAQ"},
    )


def test_dead_letter_items_and_pages_answer_in_camel_case(pg_engine: sa.Engine) -> None:
    store = DeadLetterStore(pg_engine)
    item, _ = store.record(_failure())
    full = DeadLetterItemResponse.model_validate(item).as_json()
    assert (full["runId"], full["jobName"], full["stackTrace"], full["partitionKeys"]) == (
        "r1",
        "import_nasdaq",
        "Traceback ...",
        ["A.csv"],
    )
    assert full["firstFailureAt"] == T0.isoformat()  # the timestamps' form is unchanged: "+00:00"
    assert full["runConfig"] == {"ops": {"some_op": {"config": {"batch_size": 500}}}}  # stored data is not renamed
    assert _snake_free({k: v for k, v in full.items() if k not in ("runConfig", "runTags", "failedFiles")})
    page = DeadLetterPage.model_validate(store.list(page=1, page_size=10)).as_json()
    assert page["pageSize"] == 10 and page["total"] >= 1
    listed = next(i for i in page["items"] if i["id"] == item.id)
    assert "stackTrace" not in listed and "runConfig" not in listed and listed["runId"] == "r1"
    assert _snake_free(page)


def test_stats_and_their_recent_breaches_answer_in_camel_case(any_engine: sa.Engine) -> None:
    breach = Breach(
        AlertType.RUN_DURATION, Severity.HIGH, "run_duration:r1", "slow", 21.0, 20.0, "minutes", "BIST", "r1"
    )
    AlertStore(any_engine).sync([breach], T0)
    [alert] = AlertStore(any_engine).list()
    stats = MonitoringStats(
        start_date=T0.date(), end_date=T0.date(), total_jobs=1, successful_jobs=0, failed_jobs=0, retrying_jobs=0,
        canceled_jobs=0, running_jobs=1, sla_breached_jobs=1, success_rate=None, sla_compliance_rate=0.0,
        average_duration_seconds=None, p95_duration_seconds=None, records_processed=0, average_processing_rate=None,
        jobs_by_market={"BIST": 1}, errors_by_type={"run_failure": 0}, recent_breaches=[alert],
    )  # fmt: skip
    response = MonitoringStatsResponse.model_validate(stats)
    out = response.as_json()
    assert (out["startDate"], out["slaComplianceRate"], out["p95DurationSeconds"]) == ("2025-03-10", 0.0, None)
    assert out["jobsByMarket"] == {"BIST": 1} and out["errorsByType"] == {"run_failure": 0}  # keys are data
    [recent] = out["recentBreaches"]
    assert (recent["dedupeKey"], recent["runId"], recent["alertType"], recent["active"]) == (
        "run_duration:r1",
        "r1",
        "run_duration",
        True,
    )
    assert recent["firstSeen"] == T0.isoformat()
    assert MonitoringStatsResponse.model_validate(out) == response  # camelCase reads back
    assert stats.as_json()["recent_breaches"] == [alert.as_json()]  # `mytrader stats --json`: snake_case


def test_job_status_health_and_accepted_answers_are_camel_case() -> None:
    status = JobStatus(
        job_id="r1", job_type="MarketImport", state="Running", created_at=T0, started_at=T0, completed_at=None,
        progress_percentage=12.345, current_operation="BIST: 1/8 files", files_done=1, files_total=8, files_failed=0,
        records_processed=10, records_total=None, processing_rate=1.25, error_message=None, retry_count=0,
        sla_target=dt.timedelta(minutes=20), is_sla_breached=False, child_job_ids=[], parent_job_id=None,
    )  # fmt: skip
    out = status.as_api()
    assert (out["jobId"], out["progressPercentage"], out["slaTarget"], out["filesProcessed"]) == (
        "r1",
        12.3,
        "00:20:00",
        1,
    )
    assert out["createdAt"] == T0.isoformat() and out["completedAt"] is None and _snake_free(out)
    report = combine([dead_letter_check(2)], now=T0).response().as_json()
    assert report["checkedAt"] == T0.isoformat() and report["checks"][0]["name"] == "dead_letters"
    accepted = JobAccepted(job_id="r1", status_url="/x").as_json()
    assert accepted == {"jobId": "r1", "market": None, "statusUrl": "/x"}


def test_bodies_accept_camel_case_and_snake_case() -> None:
    camel = MarketImportBody.model_validate({"batchSize": 500, "includeFiles": ["A*.csv"], "slaTarget": "00:30:00"})
    snake = MarketImportBody.model_validate({"batch_size": 500, "include_files": ["A*.csv"], "sla_target": "00:30:00"})
    assert camel == snake and camel.to_request("BIST").batch_size == 500
    body = AllMarketsImportBody.model_validate({"globalMaxConcurrency": 4, "marketConfigs": {"BIST": {"force": True}}})
    request = body.to_request()
    assert request.global_max_concurrency == 4 and request.market_configs["BIST"].force
    assert RetryBody.model_validate({"maxRetries": 5, "initialDelay": "00:02:00"}).to_policy().max_retries == 5
    schedule = ScheduleBody.model_validate({"cronExpression": "0 2 * * *", "timeZone": "Europe/Istanbul"})
    assert (schedule.cron_expression, schedule.time_zone) == ("0 2 * * *", "Europe/Istanbul")
    assert DiscardBody.model_validate({"reason": "gone", "discardedBy": "ops"}).discarded_by == "ops"
    assert MarketImportBody.model_validate({"somethingOld": 1}) == MarketImportBody()  # old clients send more


def test_the_bodies_json_schema_names_fields_in_camel_case_with_their_bounds() -> None:
    schema = MarketImportBody.model_json_schema(by_alias=True)["properties"]
    batch = next(s for s in schema["batchSize"]["anyOf"] if s.get("type") == "integer")
    assert (batch["minimum"], batch["maximum"]) == (BATCH_SIZE.low, BATCH_SIZE.high)
    assert "batch_size" not in schema and "includeFiles" in schema
    retry = RetryBody.model_json_schema(by_alias=True)["properties"]["maxRetries"]
    assert (retry["minimum"], retry["maximum"]) == (MAX_RETRIES.low, MAX_RETRIES.high)


@pytest.mark.parametrize(
    ("constrained", "value", "message"),
    [
        (BatchSize, 99, "Input should be greater than or equal to 100"),
        (BatchSize, 100_001, "Input should be less than or equal to 100000"),
        (GlobalMaxConcurrency, 0, "Input should be greater than or equal to 1"),
        (MaxRetries, 11, "Input should be less than or equal to 10"),
    ],
)
def test_the_constrained_types_refuse_out_of_bounds_values_with_pydantics_message(
    constrained: object, value: int, message: str
) -> None:
    adapter = pydantic.TypeAdapter(constrained)
    with pytest.raises(pydantic.ValidationError) as refused:
        adapter.validate_python(value)
    assert refused.value.errors()[0]["msg"] == message
    with pytest.raises(pydantic.ValidationError) as body:
        MarketImportBody.model_validate({"batchSize": 99})
    assert [(e["loc"], e["msg"]) for e in body.value.errors()] == [
        (("batchSize",), "Input should be greater than or equal to 100")
    ]


def test_the_retry_policy_refuses_what_the_retry_body_refuses() -> None:
    assert RetryPolicy(max_retries=MAX_RETRIES.high).max_retries == MAX_RETRIES.high
    with pytest.raises(InvalidRequest, match=r"maxRetries: 11 is outside 0\.\.10 retries"):
        RetryPolicy(max_retries=MAX_RETRIES.high + 1)  # the CLI's --max-retries builds one: exit 2, bad request
    with pytest.raises(pydantic.ValidationError):
        RetryBody.model_validate({"maxRetries": MAX_RETRIES.high + 1})
