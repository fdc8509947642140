"""SLA rules: deadlines from the registry and the schedule, and which breaches hold at a given time."""

import dataclasses
import datetime as dt

import pytest

from mytrader_pipeline.core.sla import (
    AlertType,
    DailySchedule,
    MarketAudit,
    MarketProgress,
    RunInfo,
    Severity,
    SlaThresholds,
    evaluate,
)
from mytrader_pipeline.markets import MarketRegistry, load_markets

REGISTRY = load_markets()
DAILY = DailySchedule.from_cron("0 2 * * *")
DAY = dt.datetime(2025, 3, 10, tzinfo=dt.UTC)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return DAY.replace(hour=hour, minute=minute)


def only(code: str, **changes: int) -> MarketRegistry:
    return MarketRegistry((dataclasses.replace(REGISTRY.get(code), **changes),))


def loaded(code: str, when: dt.datetime, files: tuple[str, ...] = ("A.csv",)) -> dict[str, MarketProgress]:
    return {code: MarketProgress(code, files, dict.fromkeys(files, when))}


def test_deadlines_are_schedule_time_plus_each_market_sla() -> None:
    crons = {m.code: DAILY.deadline_cron(m.sla_minutes) for m in REGISTRY}
    assert crons == {"BIST": "45 2 * * *", "CRYPTO": "20 2 * * *", "NASDAQ": "25 2 * * *", "NYSE": "25 2 * * *"}


def test_deadline_cron_wraps_past_midnight_onto_the_next_weekday() -> None:
    assert DailySchedule.from_cron("50 23 * * 1-5").deadline_cron(25) == "15 0 * * 2,3,4,5,6"


@pytest.mark.parametrize("cron", ["*/5 * * * *", "0 2 1 * *", "0 2 * *"])
def test_only_fixed_time_daily_crons_have_deadlines(cron: str) -> None:
    with pytest.raises(ValueError):
        DailySchedule.from_cron(cron)


def test_last_tick_is_today_after_the_schedule_and_yesterday_before_it() -> None:
    assert DAILY.last_tick(at(2, 0)) == at(2, 0)
    assert DAILY.last_tick(at(1, 59)) == at(2, 0) - dt.timedelta(days=1)
    weekdays = DailySchedule.from_cron("0 2 * * 1-5")  # 2025-03-10 is a Monday
    assert weekdays.last_tick(at(1)) == at(2) - dt.timedelta(days=3)


def test_a_running_run_over_its_sla_is_a_breach_while_it_runs() -> None:
    run = RunInfo("r1", "import_crypto", "STARTED", ("CRYPTO",), at(2), started_at=at(2))
    registry = only("CRYPTO")
    assert evaluate(at(2, 19), registry, DAILY, [run], loaded("CRYPTO", at(2, 5))) == []

    [breach] = evaluate(at(2, 21), registry, DAILY, [run], loaded("CRYPTO", at(2, 5)))
    assert (breach.alert_type, breach.severity, breach.run_id, breach.ongoing) == (
        AlertType.RUN_DURATION,
        Severity.HIGH,
        "r1",
        True,
    )
    assert (breach.measured, breach.threshold) == (21.0, 20.0)


def test_a_run_config_sla_target_overrides_the_market() -> None:
    run = RunInfo("r1", "import_crypto", "STARTED", ("CRYPTO",), at(2), started_at=at(2), sla_minutes=5)
    [breach] = evaluate(at(2, 6), only("CRYPTO"), DAILY, [run], loaded("CRYPTO", at(2, 1)))
    assert breach.threshold == 5.0


def test_a_market_with_no_run_misses_its_deadline() -> None:
    registry = only("BIST")
    assert evaluate(at(2, 44), registry, DAILY, [], {}) == []
    [breach] = evaluate(at(2, 46), registry, DAILY, [], {})
    assert breach.alert_type == AlertType.MARKET_DEADLINE
    assert breach.scope == "market_deadline:BIST:2025-03-10T02:00Z"
    assert "no file loaded since" in breach.message and breach.ongoing


def test_a_market_with_a_file_not_reloaded_since_the_schedule_is_late() -> None:
    progress = {"BIST": MarketProgress("BIST", ("A.csv", "B.csv"), {"A.csv": at(2, 10)})}
    [breach] = evaluate(at(3), only("BIST"), DAILY, [], progress)
    assert "1 file(s) not loaded" in breach.message


def test_a_market_loaded_late_is_a_breach_that_ended_when_it_loaded() -> None:
    [breach] = evaluate(at(3), only("BIST"), DAILY, [], loaded("BIST", at(2, 50)))
    assert (breach.ongoing, breach.ended_at, breach.measured) == (False, at(2, 50), 50.0)


def test_a_successful_all_markets_step_since_the_schedule_loads_the_market() -> None:
    progress = {"BIST": MarketProgress("BIST", ("A.csv",), {}, full_scans=(at(2, 30),))}
    assert evaluate(at(3), only("BIST"), DAILY, [], progress) == []


def test_the_all_markets_run_over_two_hours_breaches_the_global_sla() -> None:
    run = RunInfo("all", "import_all_markets", "STARTED", tuple(REGISTRY.codes), at(2), at(2), all_markets=True)
    progress = {m.code: MarketProgress(m.code, (), {}, full_scans=(at(2, 10),)) for m in REGISTRY}
    [breach] = evaluate(at(4, 1), REGISTRY, DAILY, [run], progress)
    assert (breach.alert_type, breach.threshold, breach.market) == (AlertType.GLOBAL_DURATION, 120.0, "ALL")


def test_window_rules_error_rate_processing_rate_and_compliance() -> None:
    audit = {"NYSE": MarketAudit(10, 0, 20_000, 3_000, at(3), at(3, 1))}  # 333 rows/s, 15% rejected
    runs = [
        RunInfo("ok", "import_nyse", "SUCCESS", ("NYSE",), at(3), at(3), at(3, 1), audit=audit),
        RunInfo("bad", "import_nyse", "FAILURE", ("NYSE",), at(3), at(3), at(3, 40)),  # failed and over SLA
    ]
    breaches = evaluate(at(4), only("NYSE"), DAILY, runs, loaded("NYSE", at(2, 5)), SlaThresholds(min_runs_for_rates=2))
    by_scope = {b.scope: b for b in breaches}
    assert set(by_scope) == {
        "run_duration:bad",
        "error_rate:runs",
        "error_rate:rows",
        "processing_rate:NYSE",
        "sla_compliance:all",
    }
    assert by_scope["error_rate:runs"].measured == 0.5
    assert by_scope["error_rate:rows"].measured == 0.15
    assert by_scope["processing_rate:NYSE"].severity == Severity.MEDIUM
    assert round(by_scope["processing_rate:NYSE"].measured) == 333
    assert by_scope["sla_compliance:all"].severity == Severity.CRITICAL
    assert not any(b.once for b in breaches if b.alert_type != AlertType.RUN_DURATION)


def test_rates_over_too_few_runs_are_not_judged() -> None:
    run = RunInfo("bad", "import_nyse", "FAILURE", ("NYSE",), at(3), at(3), at(3, 40))
    assert [b.scope for b in evaluate(at(4), only("NYSE"), DAILY, [run], loaded("NYSE", at(2, 5)))] == [
        "run_duration:bad"
    ]


def test_runs_outside_the_window_are_not_judged() -> None:
    old = RunInfo(
        "old", "import_nyse", "FAILURE", ("NYSE",), at(3) - dt.timedelta(days=2), ended_at=at(3) - dt.timedelta(days=2)
    )
    limits = SlaThresholds(window=dt.timedelta(hours=24))
    assert evaluate(at(4), only("NYSE"), DAILY, [old], loaded("NYSE", at(2, 5)), limits) == []
