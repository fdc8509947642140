"""The monitoring area: freshness policies per market, the SLA monitor sensor, and the daily stats asset.

- Freshness: each market's prices must be materialized between the nightly schedule and schedule + its SLA
  (BIST 02:45, CRYPTO 02:20, NASDAQ and NYSE 02:25 UTC with the shipped registry). Dagster judges freshness per
  asset, so the monitor also checks completeness: every file known to the market loaded since the schedule time.
- ``sla_monitor_sensor`` (every 5 minutes by default): evaluates ``core.sla`` breaches, stores each alert once in
  ``sla_alerts``, logs it, posts it to the webhook, resolves it on recovery, and records each market's completeness
  as an observation of its asset when it changes, and each market's active alerts as its ``sla`` asset check
  (``defs.sla_check``) when they change: the UI shows the monitor's truth.
- ``sla_monitoring_stats``: one partition per UTC day, from the deployment's first day on, whose materialization
  metadata are the day's statistics (Dagster plots them over time); ``sla_monitoring_stats_sensor``
  (``defs.stats_days``) adds each day and materializes today hourly, yesterday's final figures after midnight.
"""

import dataclasses
import datetime as dt
import json
import warnings
from collections.abc import Callable

import dagster as dg
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.alerts import AlertStore, notify
from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.sla import DailySchedule, SlaThresholds, evaluate
from mytrader_pipeline.core.stats import MonitoringStats, compute_stats, date_bounds, file_errors_by_type
from mytrader_pipeline.defs.monitoring_sources import import_runs, market_progress
from mytrader_pipeline.defs.orchestration import OrchestrationSettings
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.defs.sla_check import build_sla_checks, market_alerts, sla_evaluation, sla_state
from mytrader_pipeline.defs.stats_days import build_stats_sensor, stats_days_partitions
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.settings import Settings, get_settings

SLA_MONITOR_SENSOR = "sla_monitor_sensor"
STATS_ASSET = "sla_monitoring_stats"
DEFAULT_INTERVAL_SECONDS = 300  # the old SlaMonitoring CheckInterval
Clock = Callable[[], dt.datetime]


@dataclasses.dataclass(frozen=True)
class MonitoringSettings:
    """How often the monitor looks, what it judges against, when the nightly import starts, where alerts go."""

    interval_seconds: int = DEFAULT_INTERVAL_SECONDS
    thresholds: SlaThresholds = dataclasses.field(default_factory=SlaThresholds)
    schedule_cron: str = "0 2 * * *"
    schedule_timezone: str = "UTC"
    webhook_url: str | None = None

    @property
    def schedule(self) -> DailySchedule:
        """The nightly import's schedule, whose ticks start each day's deadlines."""
        return DailySchedule.from_cron(self.schedule_cron, self.schedule_timezone)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "MonitoringSettings":
        """The monitoring part of ``settings`` (default: ``get_settings()``, read when the code location loads).

        ``MYTRADER_SLA_INTERVAL_SECONDS`` (300), ``MYTRADER_SLA_WINDOW_HOURS`` (24, error rate, processing rate and
        compliance window), ``MYTRADER_GLOBAL_SLA_MINUTES`` (120), ``MYTRADER_ALERT_WEBHOOK_URL`` (unset: no post);
        the schedule is the orchestration's (``MYTRADER_DAILY_IMPORT_CRON``, ``MYTRADER_SCHEDULE_TIMEZONE``).
        """
        settings = settings or get_settings()
        orchestration = OrchestrationSettings.from_settings(settings)
        thresholds = SlaThresholds(
            global_sla_minutes=settings.global_sla_minutes, window=dt.timedelta(hours=settings.sla_window_hours)
        )
        return cls(
            interval_seconds=settings.sla_interval_seconds,
            thresholds=thresholds,
            schedule_cron=orchestration.daily_import_cron,
            schedule_timezone=orchestration.schedule_timezone,
            webhook_url=settings.alert_webhook_url,
        )


# -- freshness ---------------------------------------------------------------------------------------------------
def freshness_policy(market: Market, schedule: DailySchedule) -> dg.FreshnessPolicy:
    """Loaded between the schedule's tick and tick + the market's SLA (e.g. BIST: deadline ``45 2 * * *``)."""
    return dg.FreshnessPolicy.cron(
        deadline_cron=schedule.deadline_cron(market.sla_minutes),
        lower_bound_delta=dt.timedelta(minutes=market.sla_minutes),
        timezone=schedule.timezone,
    )


def with_freshness_policies(
    defs: dg.Definitions, registry: MarketRegistry, settings: MonitoringSettings | None = None
) -> dg.Definitions:
    """``defs`` with each market's prices asset given its freshness policy (applied once, at the root)."""
    schedule = (settings or MonitoringSettings.from_settings()).schedule
    policies = {dg.AssetKey(m.asset_name): freshness_policy(m, schedule) for m in registry}

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        policy = policies.get(spec.key)
        return dg.apply_freshness_policy(spec, policy) if policy else spec

    with warnings.catch_warnings():  # map_asset_specs is marked preview
        warnings.simplefilter("ignore")
        return defs.map_asset_specs(func=apply)


# -- the SLA monitor ---------------------------------------------------------------------------------------------
def build_sla_monitor_sensor(
    registry: MarketRegistry, settings: MonitoringSettings, clock: Clock = utc_now
) -> dg.SensorDefinition:
    """``sla_monitor_sensor``: one evaluation of every SLA rule per tick; alerts stored once, resolutions recorded."""
    schedule = settings.schedule
    limits = settings.thresholds

    @dg.sensor(
        name=SLA_MONITOR_SENSOR,
        minimum_interval_seconds=settings.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="SLA monitor: runs over their SLA (while running), markets late for their deadline, the "
        "all-markets import over the global SLA, error rate, processing rate and compliance; alerts in sla_alerts.",
    )
    def _sla_monitor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
        now = clock()
        engine = warehouse.engine()
        tick = schedule.last_tick(now)
        runs = import_runs(context.instance, registry, min(now - limits.window, tick), engine=engine)
        progress = market_progress(context.instance, registry, tick, runs)
        store = AlertStore(engine)
        result = store.sync(evaluate(now, registry, schedule, runs, progress, limits), now)
        for error in notify(store, result, webhook_url=settings.webhook_url, now=now, log=context.log.warning):
            context.log.error(error)
        previous = json.loads(context.cursor) if context.cursor else {}
        state: dict[str, str] = {}
        events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = []
        for market in registry:
            alerts = market_alerts(result.still_open, market)
            state[f"sla:{market.code}"] = sla_state(alerts)
            if state[f"sla:{market.code}"] != previous.get(f"sla:{market.code}"):
                events.append(sla_evaluation(market, alerts))
            missing = progress[market.code].missing()
            complete_at = progress[market.code].complete_at()
            state[market.code] = f"{tick.isoformat()}|{complete_at is not None}|{len(missing)}"
            if state[market.code] != previous.get(market.code):
                events.append(
                    dg.AssetObservation(
                        asset_key=market.asset_name,
                        metadata={
                            "complete_since_schedule": complete_at is not None,
                            "files_missing": len(missing),
                            "missing_sample": dg.MetadataValue.json(missing[:20]),
                            "schedule_tick": tick.isoformat(),
                            "deadline": (tick + dt.timedelta(minutes=market.sla_minutes)).isoformat(),
                        },
                    )
                )
        context.log.info(
            f"{len(result.raised)} alert(s) raised, {len(result.resolved)} resolved, {len(result.still_open)} open"
        )
        return dg.SensorResult(asset_events=events, cursor=json.dumps(state, sort_keys=True))

    return _sla_monitor


# -- statistics --------------------------------------------------------------------------------------------------
def stats_for(
    instance: dg.DagsterInstance,
    registry: MarketRegistry,
    engine: Engine,
    start: dt.date,
    end: dt.date,
    thresholds: SlaThresholds | None = None,
    now: dt.datetime | None = None,
) -> MonitoringStats:
    """Monitoring statistics of the import runs created in ``[start, end]`` (UTC days, inclusive)."""
    lower, upper = date_bounds(start, end)
    runs = [r for r in import_runs(instance, registry, lower, upper, engine=engine) if r.created_at < upper]
    alerts = AlertStore(engine).list(since=lower, until=upper, limit=20)
    return compute_stats(
        runs,
        start,
        end,
        registry,
        now=now or utc_now(),
        file_errors=file_errors_by_type(engine, [r.run_id for r in runs]),
        breaches=alerts,
        thresholds=thresholds,
    )


def stats_metadata(stats: MonitoringStats) -> dict[str, dg.MetadataValue]:
    """The stats as materialization metadata: numbers (plotted by Dagster) and JSON breakdowns."""
    numbers = {
        "total_jobs": stats.total_jobs,
        "successful_jobs": stats.successful_jobs,
        "failed_jobs": stats.failed_jobs,
        "retrying_jobs": stats.retrying_jobs,
        "sla_breached_jobs": stats.sla_breached_jobs,
        "records_processed": stats.records_processed,
    }
    rates = {
        "success_rate": stats.success_rate,
        "sla_compliance_rate": stats.sla_compliance_rate,
        "average_duration_seconds": stats.average_duration_seconds,
        "p95_duration_seconds": stats.p95_duration_seconds,
        "average_processing_rate": stats.average_processing_rate,
    }
    return {
        **{k: dg.MetadataValue.int(v) for k, v in numbers.items()},
        **{k: dg.MetadataValue.float(round(v, 4)) for k, v in rates.items() if v is not None},
        "jobs_by_market": dg.MetadataValue.json(stats.jobs_by_market),
        "errors_by_type": dg.MetadataValue.json(stats.errors_by_type),
        "recent_breaches": dg.MetadataValue.json([alert.as_json() for alert in stats.recent_breaches]),
    }


def build_stats_asset(registry: MarketRegistry, settings: MonitoringSettings) -> dg.AssetsDefinition:
    """``sla_monitoring_stats``: one partition per UTC day (``defs.stats_days``), its metadata the day's statistics."""

    @dg.asset(
        name=STATS_ASSET,
        partitions_def=stats_days_partitions(),
        group_name="monitoring",
        kinds={"postgres"},
        description="Daily import statistics (old monitoring fields): jobs, success and SLA compliance rates, "
        "durations, records and rates, jobs by market, errors by type, breaches. See the Plots tab.",
    )
    def _stats(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        stats = stats_for(context.instance, registry, warehouse.engine(), day, day, settings.thresholds)
        return dg.MaterializeResult(metadata=stats_metadata(stats))

    return _stats


def build_monitoring_defs(
    registry: MarketRegistry, settings: MonitoringSettings | None = None, clock: Clock = utc_now
) -> dg.Definitions:
    """The SLA monitor sensor, each market's ``sla`` check, the stats asset with its job and its days' sensor."""
    settings = settings or MonitoringSettings.from_settings()
    stats = build_stats_asset(registry, settings)
    # one step: run in the run's worker process, not in a second one the multiprocess executor would start (a
    # process start is about 2 s of CPU, taken from the loads the hourly refresh runs beside)
    job = dg.define_asset_job(
        "sla_monitoring_stats_job",
        selection=[stats],
        partitions_def=stats.partitions_def,
        executor_def=dg.in_process_executor,
    )
    return dg.Definitions(
        assets=[stats],
        asset_checks=build_sla_checks(registry),
        jobs=[job],
        sensors=[build_sla_monitor_sensor(registry, settings, clock), build_stats_sensor(job, stats.key, clock)],
    )
