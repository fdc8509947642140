"""The ``sla`` asset check of each market's prices asset: the SLA monitor's state for the market, nothing else.

The check fails while ``sla_alerts`` holds an active alert of the market (a late deadline, a run over its SLA, a
slow processing rate), with the alert's severity (medium: WARN; high, critical: ERROR), its reason and since when;
it passes when there is none. The SLA monitor sensor reports it each time a market's set of active alerts changes;
executing the check (the UI's *Execute*) evaluates the same state on demand.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

from mytrader_pipeline.core.alerts import Alert, AlertStore
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.markets import Market, MarketRegistry

SLA_CHECK = "sla"
_ACTIVE_ALERTS_READ = 10_000  # every active alert, in practice: one open alert per scope


def sla_check_key(market: Market) -> dg.AssetCheckKey:
    """The key of ``market``'s ``sla`` check."""
    return dg.AssetCheckKey(dg.AssetKey(market.asset_name), SLA_CHECK)


def market_alerts(alerts: Iterable[Alert], market: Market) -> list[Alert]:
    """The active alerts of ``market``, oldest first (alerts of all markets, or of none, are not one market's)."""
    return sorted((a for a in alerts if a.active and a.market == market.code), key=lambda a: (a.first_seen, a.id))


def sla_state(alerts: list[Alert]) -> str:
    """What the check's result depends on: which alerts are active, with their severities (a sensor cursor value)."""
    return ",".join(f"{a.id}:{a.severity}" for a in alerts) or "none"


def _severity(alerts: list[Alert]) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.WARN if all(a.severity == "medium" for a in alerts) else dg.AssetCheckSeverity.ERROR


def _outcome(alerts: list[Alert]) -> dict[str, Any]:
    """The check's result as keyword arguments common to ``AssetCheckResult`` and ``AssetCheckEvaluation``."""
    if not alerts:
        return {
            "passed": True,
            "description": "No active SLA breach.",
            "metadata": {"active_breaches": 0},
        }
    worst = max(alerts, key=lambda a: (a.severity != "medium", a.severity == "critical", -a.id))
    since = min(a.first_seen for a in alerts)
    return {
        "passed": False,
        "severity": _severity(alerts),
        "description": f"SLA breached: {worst.message}",
        "metadata": {
            "active_breaches": len(alerts),
            "reason": worst.message,
            "alert_type": worst.alert_type,
            "alert_severity": worst.severity,
            "since": dg.MetadataValue.timestamp(since),
            "alerts": dg.MetadataValue.json(
                [
                    {
                        "id": a.id,
                        "alert_type": a.alert_type,
                        "severity": a.severity,
                        "message": a.message,
                        "first_seen": a.first_seen.isoformat(),
                    }
                    for a in alerts
                ]
            ),
        },
    }


def sla_evaluation(market: Market, alerts: list[Alert]) -> dg.AssetCheckEvaluation:
    """The ``sla`` check's evaluation for ``market`` given its active alerts, as the SLA monitor reports it."""
    return dg.AssetCheckEvaluation(asset_key=dg.AssetKey(market.asset_name), check_name=SLA_CHECK, **_outcome(alerts))


def build_sla_check(market: Market) -> dg.AssetChecksDefinition:
    """``market``'s ``sla`` check, evaluated on demand from the alerts the SLA monitor stored."""

    @dg.asset_check(
        asset=market.asset_name,
        name=SLA_CHECK,
        blocking=False,
        description=f"No active SLA alert for {market.code} (deadline: the nightly schedule + {market.sla_minutes} "
        "min; runs within their SLA): the SLA monitor's state, reported by the sensor when it changes.",
    )
    def _sla(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        active = AlertStore(warehouse.engine()).list(active_only=True, limit=_ACTIVE_ALERTS_READ)
        return dg.AssetCheckResult(**_outcome(market_alerts(active, market)))

    return _sla


def build_sla_checks(registry: MarketRegistry) -> list[dg.AssetChecksDefinition]:
    """One ``sla`` check per market."""
    return [build_sla_check(m) for m in registry]
