"""The health check: individual checks (database, data root, daemons, instigators, dead letters, alerts) combined
into healthy, degraded or unhealthy, with the reasons."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.responses import HealthResponse


class Status(enum.StrEnum):
    """Ordered from good to bad."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def rank(self) -> int:
        """0 healthy, 1 degraded, 2 unhealthy."""
        return list(Status).index(self)


@dataclasses.dataclass(frozen=True)
class Check:
    """One check's outcome; ``reason`` says what is wrong (or what was verified)."""

    name: str
    status: Status
    reason: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class HealthReport:
    """The worst status among the checks, the reasons of those not healthy, and every check."""

    status: Status
    reasons: list[str]
    checks: list[Check]
    checked_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "status": self.status.value,
            "reasons": self.reasons,
            "checked_at": self.checked_at.isoformat(),
            "checks": [
                {"name": c.name, "status": c.status.value, "reason": c.reason, "details": dict(c.details)}
                for c in self.checks
            ],
        }

    def response(self) -> HealthResponse:
        """The report as the REST API answers it."""
        return HealthResponse.model_validate(self.as_json())


def combine(checks: Sequence[Check], now: dt.datetime | None = None) -> HealthReport:
    """Unhealthy if any check is, else degraded if any is, else healthy; reasons of the failing checks."""
    worst = max((c.status for c in checks), key=lambda s: s.rank, default=Status.HEALTHY)
    reasons = [f"{c.name}: {c.reason}" for c in checks if c.status != Status.HEALTHY]
    return HealthReport(worst, reasons, list(checks), now or dt.datetime.now(dt.UTC))


def guarded(name: str, probe: Any, *args: Any) -> Check:
    """Run ``probe(*args)``; an exception makes the check unhealthy with the error as the reason."""
    try:
        return probe(*args)
    except Exception as exc:
        return Check(name, Status.UNHEALTHY, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")


def warehouse_check(engine: Engine) -> Check:
    """The warehouse database answers a query."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        return Check("warehouse", Status.UNHEALTHY, f"not reachable: {str(exc).splitlines()[0][:300]}")
    return Check("warehouse", Status.HEALTHY, f"reachable ({engine.dialect.name})")


def data_root_check(root: Path | None, market_folders: Sequence[str]) -> Check:
    """The data root is a readable folder; a missing market folder degrades (that market cannot load)."""
    if root is None:
        return Check("data_root", Status.UNHEALTHY, "no data root configured (MYTRADER_DATA_ROOT)")
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        return Check("data_root", Status.UNHEALTHY, f"{root} is not a readable folder")
    missing = [f for f in market_folders if not (root / f).is_dir() or not os.access(root / f, os.R_OK | os.X_OK)]
    if missing:
        return Check("data_root", Status.DEGRADED, f"market folder(s) missing or unreadable: {', '.join(missing)}")
    return Check("data_root", Status.HEALTHY, f"{root} readable")


def daemon_check(statuses: Mapping[str, bool | None], required: bool = True) -> Check:
    """Every required daemon sent a recent heartbeat (``statuses``: daemon type -> healthy; None: not required)."""
    if not required:
        return Check("daemon", Status.HEALTHY, "no daemon needed by this instance")
    stale = sorted(name for name, healthy in statuses.items() if healthy is False)
    if stale:
        return Check("daemon", Status.UNHEALTHY, f"no recent heartbeat from {', '.join(stale)}", {"stale": stale})
    return Check("daemon", Status.HEALTHY, f"{len(statuses)} daemon(s) heartbeating")


def instigators_check(expected_running: Mapping[str, bool]) -> Check:
    """Sensors and schedules meant to run are running (``expected_running``: name -> running now)."""
    stopped = sorted(name for name, running in expected_running.items() if not running)
    if stopped:
        return Check("sensors_schedules", Status.DEGRADED, f"stopped: {', '.join(stopped)}", {"stopped": stopped})
    return Check("sensors_schedules", Status.HEALTHY, f"{len(expected_running)} running")


def dead_letter_check(open_items: int | None) -> Check:
    """Open dead-letter items need a person: degraded while any is open (None: no queue in this deployment)."""
    if open_items is None:
        return Check("dead_letters", Status.HEALTHY, "no dead-letter queue in this warehouse")
    if open_items:
        return Check("dead_letters", Status.DEGRADED, f"{open_items} open dead-letter item(s)", {"open": open_items})
    return Check("dead_letters", Status.HEALTHY, "no open dead-letter item")


def alerts_check(active_by_severity: Mapping[str, int]) -> Check:
    """Open SLA alerts: a critical one (compliance under its floor) is unhealthy, others degrade."""
    total = sum(active_by_severity.values())
    if not total:
        return Check("sla_alerts", Status.HEALTHY, "no active SLA alert")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(active_by_severity.items()) if n)
    status = Status.UNHEALTHY if active_by_severity.get("critical") else Status.DEGRADED
    return Check("sla_alerts", status, f"active SLA alert(s): {summary}", dict(active_by_severity))


def open_dead_letters(engine: Engine) -> int | None:
    """Open (or replayed, not yet resolved) dead-letter items; None when the warehouse has no queue table."""
    if not sa.inspect(engine).has_table("dead_letter_queue"):
        return None
    query = sa.text("SELECT count(*) FROM dead_letter_queue WHERE status IN ('open', 'replayed')")
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
