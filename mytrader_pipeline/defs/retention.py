"""History retention: delete Dagster runs and import audit older than the window (job and schedule)."""

import datetime as dt
from typing import Any

import dagster as dg
from pydantic import Field

from mytrader_pipeline.core.dlq import DeadLetterStore
from mytrader_pipeline.core.retention import DEFAULT_RETENTION_DAYS, cutoff_for, purge_audit
from mytrader_pipeline.core.runs import FINISHED_STATES
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.markets import MarketRegistry


class RetentionConfig(dg.Config):
    """How much history the retention job keeps."""

    days: int = Field(default=DEFAULT_RETENTION_DAYS, ge=1, description="Delete runs and audit older than this.")


def partition_status_run_ids(instance: dg.DagsterInstance, registry: MarketRegistry) -> set[str]:
    """Runs holding the latest materialization of some partition: deleting them would show loaded files missing."""
    run_ids: set[str] = set()
    for market in registry:
        key = dg.AssetKey(market.asset_name)
        ids = list(instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION).values())
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, storage_ids=batch), limit=len(batch)
            ).records
            run_ids.update(r.run_id for r in records)
    return run_ids


def purge_history(
    instance: dg.DagsterInstance,
    registry: MarketRegistry,
    store: DeadLetterStore,
    days: int,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Delete finished Dagster runs (and event logs) and our audit older than ``days``; returns what it did.

    Kept: runs and audit of active dead-letter items, runs holding a partition's latest materialization, each
    file's latest successful load in the audit, and anything still running. Dead-letter items are never purged.
    """
    cutoff = cutoff_for(days, now)
    protected = store.protected_run_ids()
    needed = protected | partition_status_run_ids(instance, registry)
    old = instance.get_run_records(
        dg.RunsFilter(created_before=cutoff, statuses=[dg.DagsterRunStatus(s) for s in sorted(FINISHED_STATES)])
    )
    doomed = [r.dagster_run.run_id for r in old if r.dagster_run.run_id not in needed]
    for run_id in doomed:
        instance.delete_run(run_id)
    audit = purge_audit(store.engine, cutoff, protected)
    return {
        "cutoff": cutoff.isoformat(),
        "runs_deleted": len(doomed),
        "runs_kept": len(old) - len(doomed),
        "file_imports_deleted": audit.file_imports_deleted,
        "rejected_rows_deleted": audit.rejected_rows_deleted,
        "file_imports_kept_latest_load": audit.kept_latest_loads,
        "file_imports_kept_for_dead_letters": audit.kept_for_dead_letters,
    }


def build_retention_job(registry: MarketRegistry) -> dg.JobDefinition:
    """``history_retention_job``: one op deleting history older than the configured window."""

    @dg.op(name="purge_history", description="Delete Dagster runs and import audit older than the window.")
    def _purge(context: dg.OpExecutionContext, config: RetentionConfig, warehouse: WarehouseResource) -> None:
        report = purge_history(context.instance, registry, DeadLetterStore(warehouse.engine()), config.days)
        context.log.info(
            f"retention ({config.days} days, before {report['cutoff']}): deleted {report['runs_deleted']} runs, "
            f"{report['file_imports_deleted']} audit rows, {report['rejected_rows_deleted']} rejected rows"
        )
        context.add_output_metadata({k: v for k, v in report.items() if k != "cutoff"})

    @dg.job(name="history_retention_job", tags={"mytrader/area": "failure_handling"})
    def _job() -> None:
        _purge()

    return _job


def build_retention_schedule(job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """``history_retention_schedule``: run the retention job daily at 03:15 UTC, once per day (its run key)."""

    @dg.schedule(
        name="history_retention_schedule",
        job=job,
        cron_schedule="15 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily: delete Dagster runs and import audit older than 30 days (job config: days).",
    )
    def _retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = context.scheduled_execution_time.date().isoformat()
        return dg.RunRequest(run_key=f"history-retention-{day}", tags={"mytrader/retention_day": day})

    return _retention_schedule
