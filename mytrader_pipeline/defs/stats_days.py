"""The days of ``sla_monitoring_stats``: partitions from the deployment's first day on, and the sensor refreshing them.

The days are dynamic partitions (``sla_monitoring_days``), added by ``sla_monitoring_stats_sensor`` as they come:
a new deployment has today's partition at the sensor's first tick and none before it, and the set lives in the
Dagster instance, so it is the same after any reload of the code location. Each tick (hourly) materializes today's
partial day; the first tick after midnight materializes yesterday's final figures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import dagster as dg

from mytrader_pipeline.core.clock import utc_now

STATS_DAYS = "sla_monitoring_days"
STATS_SENSOR = "sla_monitoring_stats_sensor"
STATS_INTERVAL_SECONDS = 3600  # how stale today's partial partition may get
Clock = Callable[[], dt.datetime]


def stats_days_partitions() -> dg.DynamicPartitionsDefinition:
    """One partition per UTC day (``2026-12-01``), added by the stats sensor from the deployment's first day."""
    return dg.DynamicPartitionsDefinition(name=STATS_DAYS)


def stats_run_requests(
    known: Sequence[str], now: dt.datetime, materialized: Sequence[str] = ()
) -> tuple[list[str], list[dg.RunRequest]]:
    """The days to add and the runs to request at ``now``: today (once per hour), yesterday's final figures (once).

    ``materialized``: days with a materialization from before the days were dynamic (a deployment upgraded from
    the fixed daily partitions), added on the first tick so their plots stay visible.
    """
    now = now.astimezone(dt.UTC)
    today = now.date()
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    older = sorted(k for k in materialized if _is_day(k) and k < today.isoformat()) if not known else []
    new = older + ([today.isoformat()] if today.isoformat() not in known else [])
    requests = [dg.RunRequest(partition_key=today.isoformat(), run_key=f"{STATS_DAYS}:{today}:{now:%H}")]
    if yesterday in {*known, *new}:  # never a day before the deployment's first
        requests.append(dg.RunRequest(partition_key=yesterday, run_key=f"{STATS_DAYS}:{yesterday}:final"))
    return new, requests


def _is_day(key: str) -> bool:
    try:
        dt.date.fromisoformat(key)
    except ValueError:
        return False
    return True


def build_stats_sensor(
    job: dg.UnresolvedAssetJobDefinition, asset_key: dg.AssetKey, clock: Clock = utc_now
) -> dg.SensorDefinition:
    """``sla_monitoring_stats_sensor``: adds today's day partition and materializes it every hour."""

    @dg.sensor(
        name=STATS_SENSOR,
        job=job,
        minimum_interval_seconds=STATS_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Hourly: adds today's sla_monitoring_stats partition (from the deployment's first day on) and "
        "materializes today's figures so far; after midnight, yesterday's final figures once.",
    )
    def _stats_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        known = context.instance.get_dynamic_partitions(STATS_DAYS)
        materialized = [] if known else sorted(context.instance.get_materialized_partitions(asset_key))
        new, requests = stats_run_requests(known, clock(), materialized)
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(STATS_DAYS, new)] if new else [],
        )

    return _stats_sensor
