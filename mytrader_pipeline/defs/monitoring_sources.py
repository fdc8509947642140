"""What the monitor reads from Dagster, as plain records for ``core.sla``, ``core.stats`` and ``core.health``."""

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.alerts import AlertStore
from mytrader_pipeline.core.clock import as_utc
from mytrader_pipeline.core.health import (
    Check,
    HealthReport,
    Status,
    alerts_check,
    combine,
    daemon_check,
    data_root_check,
    dead_letter_check,
    guarded,
    instigators_check,
    open_dead_letters,
    warehouse_check,
)
from mytrader_pipeline.core.runs import RUNNING_STATES, WAITING_STATES
from mytrader_pipeline.core.sla import MarketProgress, RunInfo
from mytrader_pipeline.core.stats import audit_by_run
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, market_op_name
from mytrader_pipeline.defs.failed_runs import run_markets
from mytrader_pipeline.defs.jobs import MARKET_TAG
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.run_coordinator import REFUSED_TAG
from mytrader_pipeline.markets import MarketRegistry

NOT_FINISHED = [dg.DagsterRunStatus(s) for s in sorted(WAITING_STATES | RUNNING_STATES)]


def _at(timestamp: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC) if timestamp else None


def _sla_override(run: dg.DagsterRun, asset_name: str) -> int | None:
    ops = (run.run_config or {}).get("ops") or {}
    value = ((ops.get(asset_name) or {}).get("config") or {}).get("sla_target_minutes")
    return int(value) if isinstance(value, int) and value > 0 else None


def _error_class(run: dg.DagsterRun) -> str | None:
    return "canceled" if run.status == dg.DagsterRunStatus.CANCELED else None


def run_info(instance: dg.DagsterInstance, registry: MarketRegistry, record: dg.RunRecord) -> RunInfo | None:
    """The plain record of an import run (a market's job, a run of markets' assets, e.g. the UI's Materialize over one
    market or several, or the all-markets job); None for other jobs and for runs the coordinator refused."""
    run = record.dagster_run
    if REFUSED_TAG in run.tags:
        return None
    # A run over several markets: the market whose rules the run coordinator put on it (its tag) first.
    tag = run.tags.get(MARKET_TAG)
    markets = [] if run.job_name == ALL_MARKETS_JOB else sorted(run_markets(registry, run), key=lambda m: m.code != tag)
    market = markets[0] if markets else None
    started, ended = _at(record.start_time), _at(record.end_time)
    created = as_utc(record.create_timestamp)
    common: dict[str, Any] = {
        "run_id": run.run_id,
        "job_name": run.job_name,
        "status": run.status.value,
        "created_at": created,
        "started_at": started,
        "ended_at": ended,
        "will_retry": run.tags.get("dagster/will_retry") == "true",
        "retry_number": int(run.tags.get("dagster/retry_number", "0") or 0),
        "error_class": _error_class(run),
    }
    if market is not None:
        done = {m.code: ended for m in markets} if run.status == dg.DagsterRunStatus.SUCCESS and ended else {}
        return RunInfo(
            markets=tuple(m.code for m in markets),
            sla_minutes=_sla_override(run, market.asset_name),
            succeeded_at=done,
            **common,
        )
    if run.job_name != ALL_MARKETS_JOB:
        return None
    ops = {market_op_name(m): m.code for m in registry}
    done = {}
    if started is not None:
        for step in instance.get_run_step_stats(run.run_id):
            if step.step_key in ops and step.status is not None and step.status.value == "SUCCESS" and step.end_time:
                done[ops[step.step_key]] = _at(step.end_time)
    return RunInfo(markets=tuple(registry.codes), all_markets=True, succeeded_at=done, **common)


def import_runs(
    instance: dg.DagsterInstance,
    registry: MarketRegistry,
    since: dt.datetime,
    until: dt.datetime | None = None,
    engine: Engine | None = None,
) -> list[RunInfo]:
    """Import runs created in ``[since, until)`` plus any not finished, with their audit when ``engine`` is given."""
    records = {
        r.dagster_run.run_id: r
        for r in [
            *instance.get_run_records(dg.RunsFilter(created_after=since, created_before=until)),
            *instance.get_run_records(dg.RunsFilter(statuses=NOT_FINISHED)),
        ]
    }
    runs = [info for record in records.values() if (info := run_info(instance, registry, record)) is not None]
    if engine is not None and runs:
        audit = audit_by_run(engine, [r.run_id for r in runs])
        runs = [dataclasses.replace(r, audit=audit.get(r.run_id, {})) for r in runs]
    return sorted(runs, key=lambda r: r.created_at)


def latest_loads(instance: dg.DagsterInstance, asset_key: dg.AssetKey, since: dt.datetime) -> dict[str, dt.datetime]:
    """Partition -> its latest materialization at or after ``since``."""
    loads: dict[str, dt.datetime] = {}
    cursor: str | None = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, after_timestamp=since.timestamp()),
            limit=1000,
            cursor=cursor,
        )
        for record in result.records:
            if record.partition_key is not None:
                at = dt.datetime.fromtimestamp(record.timestamp, dt.UTC)
                loads[record.partition_key] = max(at, loads.get(record.partition_key, at))
        if not result.has_more:
            return loads
        cursor = result.cursor


def market_progress(
    instance: dg.DagsterInstance, registry: MarketRegistry, tick: dt.datetime, runs: Sequence[RunInfo]
) -> dict[str, MarketProgress]:
    """Per market: its known files, their loads since ``tick``, and all-markets steps since then that processed all."""
    progress: dict[str, MarketProgress] = {}
    for market in registry:
        name = files_partitions(market).name
        assert name is not None
        scans = tuple(
            at
            for r in runs
            if r.all_markets and r.started_at and r.started_at >= tick
            for code, at in r.succeeded_at.items()
            if code == market.code
        )
        progress[market.code] = MarketProgress(
            market=market.code,
            known_partitions=tuple(instance.get_dynamic_partitions(name)),
            loaded_at=latest_loads(instance, dg.AssetKey(market.asset_name), tick),
            full_scans=scans,
        )
    return progress


# -- health ------------------------------------------------------------------------------------------------------
def dagster_storage_check(instance: dg.DagsterInstance) -> Check:
    """Dagster's run storage answers."""
    instance.get_run_records(limit=1)
    return Check("dagster_storage", Status.HEALTHY, f"reachable ({type(instance.run_storage).__name__})")


def daemon_statuses(instance: dg.DagsterInstance) -> Check:
    """Each daemon the instance needs has a fresh heartbeat."""
    required = instance.get_required_daemon_types()
    statuses = {name: status.healthy for name, status in instance.get_daemon_statuses(required).items()}
    return daemon_check(statuses, required=bool(required))


def instigators_running(
    instance: dg.DagsterInstance,
    sensors: Iterable[dg.SensorDefinition],
    schedules: Iterable[dg.ScheduleDefinition],
) -> Check:
    """Sensors and schedules on by default (or switched on) are running; switched off ones are reported."""
    states = {s.instigator_name: s.status.value for s in instance.all_instigator_state()}
    expected: dict[str, bool] = {}
    for name, default_on in [
        *[(s.name, s.default_status == dg.DefaultSensorStatus.RUNNING) for s in sensors],
        *[(s.name, s.default_status == dg.DefaultScheduleStatus.RUNNING) for s in schedules],
    ]:
        state = states.get(name)
        if state == "RUNNING" or (default_on and state != "STOPPED"):
            expected[name] = True
        elif default_on:
            expected[name] = False
    return instigators_check(expected)


def collect_health(
    instance: dg.DagsterInstance | None,
    engine: Engine,
    data_root: Path | None,
    registry: MarketRegistry,
    defs: dg.Definitions | None = None,
    now: dt.datetime | None = None,
) -> HealthReport:
    """Every health check, combined: warehouse, Dagster storage, daemons, sensors and schedules, data root,
    open dead-letter items and active SLA alerts."""
    checks = [warehouse_check(engine)]
    if instance is None:
        checks.append(Check("dagster_storage", Status.UNHEALTHY, "no Dagster instance (DAGSTER_HOME)"))
    else:
        checks.append(guarded("dagster_storage", dagster_storage_check, instance))
        checks.append(guarded("daemon", daemon_statuses, instance))
        if defs is not None:
            checks.append(
                guarded("sensors_schedules", instigators_running, instance, defs.sensors or [], defs.schedules or [])
            )
    checks.append(data_root_check(data_root, [m.folder for m in registry]))
    if checks[0].status == Status.HEALTHY:
        checks.append(guarded("dead_letters", lambda: dead_letter_check(open_dead_letters(engine))))
        checks.append(guarded("sla_alerts", lambda: alerts_check(_active_by_severity(engine))))
    return combine(checks, now)


def _active_by_severity(engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    if not sa.inspect(engine).has_table("sla_alerts"):
        return counts
    for alert in AlertStore(engine).list(active_only=True, limit=10_000):
        counts[alert.severity] = counts.get(alert.severity, 0) + 1
    return counts
