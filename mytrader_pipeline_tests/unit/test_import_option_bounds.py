"""The import options' bounds: the REST bodies, the import requests and the CLI flags accept exactly what the job's
config accepts, so a request that is accepted never fails its run on an option out of range.
"""

from __future__ import annotations

import pydantic
import pytest

from mytrader_pipeline.api.models import AllMarketsImportBody, MarketImportBody
from mytrader_pipeline.cli import main
from mytrader_pipeline.core.limits import (
    BATCH_SIZE,
    GLOBAL_MAX_CONCURRENCY,
    MAX_CONCURRENCY,
    SLA_TARGET_MINUTES,
    Bounds,
)
from mytrader_pipeline.core.request_errors import InvalidRequest
from mytrader_pipeline.core.requests import AllMarketsImportRequest, MarketImportRequest, parse_hms
from mytrader_pipeline.defs.all_markets import all_markets_run_config
from mytrader_pipeline.defs.assets import ImportConfig
from mytrader_pipeline.defs.planning import import_config_for
from mytrader_pipeline.markets import load_markets

# (job config field, REST field, CLI flag, bounds)
MARKET_OPTIONS = [
    ("batch_size", "batchSize", "--batch-size", BATCH_SIZE),
    ("max_concurrency", "maxConcurrency", "--max-concurrency", MAX_CONCURRENCY),
]
SLA_EDGES = {  # slaTarget (HH:MM:SS) -> accepted; the job takes it as whole minutes, rounded up
    "00:00:00": False,
    "00:00:01": True,
    "1.00:00:00": True,
    "1.00:00:01": False,
}


def _edges(low: int, high: int) -> list[tuple[int, bool]]:
    return [(low - 1, False), (low, True), (high, True), (high + 1, False)]


@pytest.mark.parametrize(
    ("field", "bounds"),
    [("batch_size", BATCH_SIZE), ("max_concurrency", MAX_CONCURRENCY), ("sla_target_minutes", SLA_TARGET_MINUTES)],
)
def test_the_shared_bounds_are_exactly_the_job_configs(field: str, bounds: Bounds) -> None:
    for value, accepted in _edges(bounds.low, bounds.high):
        if accepted:
            ImportConfig.model_validate({field: value})
        else:
            with pytest.raises(pydantic.ValidationError):
                ImportConfig.model_validate({field: value})


def test_the_global_concurrency_bounds_are_exactly_the_all_markets_jobs() -> None:
    registry = load_markets()
    for value, accepted in _edges(GLOBAL_MAX_CONCURRENCY.low, GLOBAL_MAX_CONCURRENCY.high):
        if accepted:
            all_markets_run_config(registry, global_max_concurrency=value)
        else:
            with pytest.raises(ValueError, match="globalMaxConcurrency"):
                all_markets_run_config(registry, global_max_concurrency=value)


@pytest.mark.parametrize(("config_field", "rest_field", "flag", "bounds"), MARKET_OPTIONS)
def test_rest_bodies_and_ops_requests_refuse_what_the_job_refuses_naming_the_field(
    config_field: str, rest_field: str, flag: str, bounds: Bounds
) -> None:
    for value, accepted in _edges(bounds.low, bounds.high):
        if accepted:
            request = MarketImportBody.model_validate({rest_field: value}).to_request("BIST")
            ImportConfig.model_validate(import_config_for(request))  # what the run gets passes the job's config
            continue
        with pytest.raises(pydantic.ValidationError) as rest:
            MarketImportBody.model_validate({rest_field: value})
        assert [e["loc"] for e in rest.value.errors()] == [(rest_field,)]
        with pytest.raises(pydantic.ValidationError) as nested:
            AllMarketsImportBody.model_validate({"marketConfigs": {"BIST": {rest_field: value}}})
        assert [e["loc"] for e in nested.value.errors()] == [("marketConfigs", "BIST", rest_field)]
        with pytest.raises(InvalidRequest, match=rest_field):
            MarketImportRequest(market="BIST", **{config_field: value})


@pytest.mark.parametrize(("sla_target", "accepted"), SLA_EDGES.items())
def test_sla_targets_are_refused_outside_the_jobs_minutes(sla_target: str, accepted: bool) -> None:
    if accepted:
        request = MarketImportBody(slaTarget=sla_target).to_request("BIST")
        ImportConfig.model_validate(import_config_for(request))
        return
    with pytest.raises(pydantic.ValidationError) as rest:
        MarketImportBody(slaTarget=sla_target)
    (error,) = rest.value.errors()
    assert error["loc"] == ("slaTarget",) and "1..1440 minutes" in error["msg"]
    with pytest.raises(InvalidRequest, match="slaTarget"):
        MarketImportRequest(market="BIST", sla_target=parse_hms(sla_target, "slaTarget"))


@pytest.mark.parametrize(("value", "accepted"), _edges(GLOBAL_MAX_CONCURRENCY.low, GLOBAL_MAX_CONCURRENCY.high))
def test_global_max_concurrency_is_refused_outside_the_all_markets_jobs_bounds(value: int, accepted: bool) -> None:
    if accepted:
        assert AllMarketsImportBody(globalMaxConcurrency=value).to_request().global_max_concurrency == value
        return
    with pytest.raises(pydantic.ValidationError) as rest:
        AllMarketsImportBody(globalMaxConcurrency=value)
    assert [e["loc"] for e in rest.value.errors()] == [("globalMaxConcurrency",)]
    with pytest.raises(InvalidRequest, match="globalMaxConcurrency"):
        AllMarketsImportRequest(global_max_concurrency=value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["import", "BIST", "--batch-size", "99"], "'--batch-size': 99 is outside 100..100000"),
        (["import", "BIST", "--batch-size", "100001"], "'--batch-size': 100001 is outside 100..100000"),
        (["import", "BIST", "--batch-size", "lots"], "'--batch-size': 'lots' is not a whole number"),
        (["import", "BIST", "--max-concurrency", "0"], "'--max-concurrency': 0 is outside 1..32"),
        (["import", "BIST", "--max-concurrency", "33"], "'--max-concurrency': 33 is outside 1..32"),
        (["import", "BIST", "--sla-target", "00:00:00"], "'--sla-target': 00:00:00 is outside 1..1440 minutes"),
        (["import", "BIST", "--sla-target", "1.00:00:01"], "'--sla-target': 1.00:00:01 is outside 1..1440"),
        (["import", "BIST", "--sla-target", "45m"], "'--sla-target': '45m' is not a duration"),
        (["import-all", "--global-max-concurrency", "0"], "'--global-max-concurrency': 0 is outside 1..64"),
        (["import-all", "--global-max-concurrency", "65"], "'--global-max-concurrency': 65 is outside 1..64"),
        (["schedules", "add", "--cron", "0 2 * * *", "--global-max-concurrency", "65"], "65 is outside 1..64"),
    ],
)
def test_cli_flags_out_of_range_exit_2_naming_the_flag_before_contacting_anything(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--url", "http://127.0.0.1:9"]) == 2  # nothing listens there: the flags are refused first
    assert message in capsys.readouterr().err
