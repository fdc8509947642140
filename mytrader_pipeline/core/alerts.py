"""SLA alerts: the ``sla_alerts`` store (each breach alerts once, resolutions recorded) and their notification.

The monitor hands ``AlertStore.sync`` every breach holding now; the store raises the new ones, refreshes the open
ones and resolves those no longer breached. Uniqueness lives in the database (``dedupe_key``, and one open alert per
scope), so a restarted or re-evaluated sensor cannot alert twice. New and resolved alerts are logged as one JSON
line each and, when a webhook URL is configured, posted as Slack-compatible JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy.engine import Connection, Engine

from mytrader_pipeline.core.clock import as_utc
from mytrader_pipeline.core.db import sla_alerts
from mytrader_pipeline.core.sla import Breach
from mytrader_pipeline.core.wire import Timestamp

logger = logging.getLogger("mytrader.sla")
SEVERITY_ICON = {"medium": ":warning:", "high": ":rotating_light:", "critical": ":fire:"}


class Alert(BaseModel):
    """One stored alert: the one declaration of its fields (the REST answer, ``AlertResponse``, derives from it)."""

    model_config = ConfigDict(frozen=True)

    id: int
    dedupe_key: str
    scope: str
    alert_type: str
    severity: str
    market: str | None
    run_id: str | None
    measured_value: float
    threshold: float
    unit: str
    message: str
    first_seen: Timestamp
    last_seen: Timestamp
    resolved_at: Timestamp | None
    resolution: str | None
    notified_at: Timestamp | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def active(self) -> bool:
        """Not resolved yet."""
        return self.resolved_at is None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case names (ISO timestamps), ``active`` included."""
        return self.model_dump(mode="json")


@dataclasses.dataclass(frozen=True)
class SyncResult:
    """What one evaluation changed."""

    raised: list[Alert]
    resolved: list[Alert]
    still_open: list[Alert]


def _alert(row: sa.Row[Any]) -> Alert:
    data = dict(row._mapping)
    for name in ("first_seen", "last_seen", "resolved_at", "notified_at"):
        data[name] = as_utc(data[name])
    return Alert(**data)


class AlertStore:
    """The ``sla_alerts`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _active(self, conn: Connection) -> dict[str, Alert]:
        rows = conn.execute(sa.select(sla_alerts).where(sla_alerts.c.resolved_at.is_(None)))
        return {alert.scope: alert for alert in map(_alert, rows)}

    def _get(self, conn: Connection, alert_id: int) -> Alert:
        return _alert(conn.execute(sa.select(sla_alerts).where(sla_alerts.c.id == alert_id)).one())

    def sync(self, breaches: Sequence[Breach], now: dt.datetime) -> SyncResult:
        """Record the breaches holding at ``now``: raise new ones once, refresh open ones, resolve the rest.

        An event breach (``once``) whose alert exists, open or resolved, is never raised again; a condition breach
        opens a new alert only when none of its scope is open. A breach found after the fact (not ``ongoing``) is
        raised already resolved at its end. Open alerts whose scope is not breached any more are resolved at ``now``.
        """
        raised: list[Alert] = []
        resolved: list[Alert] = []
        with self.engine.begin() as conn:
            active = self._active(conn)
            seen: set[str] = set()
            for breach in breaches:
                seen.add(breach.scope)
                current = active.get(breach.scope)
                if current is not None:
                    values: dict[str, Any] = {"last_seen": now, "measured_value": breach.measured}
                    values["message"] = breach.message
                    if not breach.ongoing:
                        values |= {"resolved_at": breach.ended_at or now, "resolution": "breach ended"}
                    conn.execute(sa.update(sla_alerts).where(sla_alerts.c.id == current.id).values(**values))
                    if not breach.ongoing:
                        resolved.append(self._get(conn, current.id))
                    continue
                if (
                    breach.once
                    and conn.execute(sa.select(sla_alerts.c.id).where(sla_alerts.c.dedupe_key == breach.scope)).first()
                ):
                    continue
                key = breach.scope if breach.once else f"{breach.scope}@{now:%Y-%m-%dT%H:%M:%S.%fZ}"
                after_fact = not breach.ongoing
                alert_id = conn.execute(
                    sa.insert(sla_alerts)
                    .values(
                        dedupe_key=key,
                        scope=breach.scope,
                        alert_type=breach.alert_type.value,
                        severity=breach.severity.value,
                        market=breach.market,
                        run_id=breach.run_id,
                        measured_value=breach.measured,
                        threshold=breach.threshold,
                        unit=breach.unit,
                        message=breach.message,
                        first_seen=now,
                        last_seen=now,
                        resolved_at=(breach.ended_at or now) if after_fact else None,
                        resolution="found after the breach ended" if after_fact else None,
                    )
                    .returning(sla_alerts.c.id)
                ).scalar_one()
                raised.append(self._get(conn, alert_id))
            for scope, alert in active.items():
                if scope in seen:
                    continue
                conn.execute(
                    sa.update(sla_alerts)
                    .where(sla_alerts.c.id == alert.id)
                    .values(resolved_at=now, last_seen=now, resolution="no longer breached")
                )
                resolved.append(self._get(conn, alert.id))
            still_open = list(self._active(conn).values())
        return SyncResult(raised=raised, resolved=resolved, still_open=still_open)

    def mark_notified(self, alert_id: int, at: dt.datetime) -> None:
        """Record that the webhook accepted the alert."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(sla_alerts).where(sla_alerts.c.id == alert_id).values(notified_at=at))

    def list(
        self,
        *,
        active_only: bool = False,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, newest first: all, or only open ones; optionally first seen in ``[since, until)``."""
        query = sa.select(sla_alerts).order_by(sla_alerts.c.first_seen.desc(), sla_alerts.c.id.desc()).limit(limit)
        if active_only:
            query = query.where(sla_alerts.c.resolved_at.is_(None))
        if since is not None:
            query = query.where(sla_alerts.c.first_seen >= since)
        if until is not None:
            query = query.where(sla_alerts.c.first_seen < until)
        with self.engine.connect() as conn:
            return [_alert(row) for row in conn.execute(query)]

    def count_by_type(self, since: dt.datetime, until: dt.datetime) -> dict[str, int]:
        """Alerts first seen in ``[since, until)`` per alert type."""
        query = (
            sa.select(sla_alerts.c.alert_type, sa.func.count())
            .where(sla_alerts.c.first_seen >= since, sla_alerts.c.first_seen < until)
            .group_by(sla_alerts.c.alert_type)
        )
        with self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query)}


def log_line(alert: Alert, event: str) -> str:
    """The structured log line of an alert event (``raised`` or ``resolved``): one JSON object."""
    return json.dumps({"event": f"sla_alert_{event}", **alert.as_json()}, sort_keys=True)


def slack_payload(alert: Alert, event: str) -> dict[str, Any]:
    """Slack-compatible webhook JSON (``text`` is what Slack, Mattermost and Teams connectors show)."""
    icon = ":white_check_mark:" if event == "resolved" else SEVERITY_ICON.get(alert.severity, "")
    head = f"{icon} SLA {alert.severity.upper()} {alert.alert_type}" + (" resolved" if event == "resolved" else "")
    where = " ".join(
        p for p in (alert.market and f"market {alert.market}", alert.run_id and f"run {alert.run_id}") if p
    )
    text = f"{head}: {alert.message}" + (f" ({where})" if where else "")
    return {
        "text": text,
        "attachments": [
            {
                "color": "good" if event == "resolved" else ("danger" if alert.severity != "medium" else "warning"),
                "fields": [
                    {"title": "measured", "value": f"{alert.measured_value:g} {alert.unit}", "short": True},
                    {"title": "threshold", "value": f"{alert.threshold:g} {alert.unit}", "short": True},
                ],
                "footer": f"mytrader sla_alerts #{alert.id} ({alert.dedupe_key})",
            }
        ],
    }


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
    """POST ``payload`` as JSON to ``url``.

    Raises:
        OSError: when the request fails or the endpoint answers with an error status.
    """
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status >= 400:
            raise OSError(f"webhook answered HTTP {response.status}")


Poster = Callable[[str, dict[str, Any]], None]


def notify(
    store: AlertStore,
    result: SyncResult,
    *,
    webhook_url: str | None,
    now: dt.datetime,
    log: Callable[[str], None] | None = None,
    poster: Poster = post_webhook,
) -> list[str]:
    """Log every raised and resolved alert and post them to the webhook; returns webhook errors (never raises)."""
    errors: list[str] = []
    emit = log or logger.warning
    for event, alerts in (("raised", result.raised), ("resolved", result.resolved)):
        for alert in alerts:
            emit(log_line(alert, event))
            if not webhook_url:
                continue
            try:
                poster(webhook_url, slack_payload(alert, event))
            except (OSError, urllib.error.URLError, ValueError) as exc:
                errors.append(f"alert {alert.id}: webhook failed: {exc}")
                continue
            if event == "raised":
                store.mark_notified(alert.id, now)
    return errors
