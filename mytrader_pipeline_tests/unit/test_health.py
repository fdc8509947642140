"""Health: each check's states and reasons, and how they combine into healthy, degraded or unhealthy."""

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from mytrader_pipeline.core.alerts import AlertStore
from mytrader_pipeline.core.db import make_engine
from mytrader_pipeline.core.health import (
    Check,
    Status,
    alerts_check,
    combine,
    daemon_check,
    data_root_check,
    dead_letter_check,
    instigators_check,
    open_dead_letters,
    warehouse_check,
)
from mytrader_pipeline.core.sla import AlertType, Breach, Severity

FOLDERS = ["BIST", "Crypto", "NASDAQ", "NYSE"]


def test_all_checks_passing_is_healthy_without_reasons(sqlite_engine: sa.Engine, data_root: Path) -> None:
    report = combine([warehouse_check(sqlite_engine), data_root_check(data_root, FOLDERS), dead_letter_check(0)])
    assert report.status == Status.HEALTHY and report.reasons == []
    assert report.as_json()["status"] == "healthy"


def test_a_degrading_check_makes_it_degraded_with_its_reason(sqlite_engine: sa.Engine, data_root: Path) -> None:
    report = combine([warehouse_check(sqlite_engine), dead_letter_check(2), instigators_check({"a": True, "b": False})])
    assert report.status == Status.DEGRADED
    assert report.reasons == ["dead_letters: 2 open dead-letter item(s)", "sensors_schedules: stopped: b"]


def test_any_unhealthy_check_wins(tmp_path: Path) -> None:
    unreachable = make_engine("postgresql://postgres@127.0.0.1:1/none")
    report = combine([warehouse_check(unreachable), dead_letter_check(1)])
    assert report.status == Status.UNHEALTHY
    assert report.reasons[0].startswith("warehouse: not reachable")


def test_data_root_states(tmp_path: Path, data_root: Path) -> None:
    assert data_root_check(None, FOLDERS).status == Status.UNHEALTHY
    assert data_root_check(tmp_path / "absent", FOLDERS).status == Status.UNHEALTHY
    (data_root / "NYSE").rmdir()
    check = data_root_check(data_root, FOLDERS)
    assert (check.status, check.reason) == (Status.DEGRADED, "market folder(s) missing or unreadable: NYSE")


def test_daemon_states() -> None:
    assert daemon_check({"SENSOR": True, "SCHEDULER": True}).status == Status.HEALTHY
    stale = daemon_check({"SENSOR": False, "SCHEDULER": True})
    assert (stale.status, stale.reason) == (Status.UNHEALTHY, "no recent heartbeat from SENSOR")
    assert daemon_check({}, required=False).status == Status.HEALTHY


def test_alert_states_critical_is_unhealthy() -> None:
    assert alerts_check({}).status == Status.HEALTHY
    assert alerts_check({"high": 1}).status == Status.DEGRADED
    critical = alerts_check({"critical": 1, "high": 2})
    assert (critical.status, critical.reason) == (Status.UNHEALTHY, "active SLA alert(s): 1 critical, 2 high")


def test_open_dead_letters_counted_when_the_queue_exists(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    assert open_dead_letters(sqlite_engine) == 0
    bare = sa.create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    assert open_dead_letters(bare) is None
    assert dead_letter_check(None).status == Status.HEALTHY


def test_active_alerts_are_visible_to_health(sqlite_engine: sa.Engine) -> None:
    breach = Breach(
        AlertType.SLA_COMPLIANCE, Severity.CRITICAL, "sla_compliance:all", "low", 0.5, 0.8, "ratio", once=False
    )
    AlertStore(sqlite_engine).sync([breach], dt.datetime.now(dt.UTC))
    [alert] = AlertStore(sqlite_engine).list(active_only=True)
    assert alerts_check({alert.severity: 1}).status == Status.UNHEALTHY
    assert combine([Check("x", Status.HEALTHY, "ok"), alerts_check({alert.severity: 1})]).status == Status.UNHEALTHY
