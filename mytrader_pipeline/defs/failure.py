"""Failure handling in Dagster, assembled: the dead-letter sensors, the retention job and its daily schedule.

- ``dead_letter_sensor`` (run failure): records each failed import run (a market's, the UI's ``__ASSET_JOB`` on
  one market or several: one item per market, from the assets and partitions the run planned; or the all-markets
  run's as one item of market ``ALL``) once in ``dead_letter_queue``, on the active item already holding its files
  if there is one; runs that Dagster's run retries will re-execute (tag
  ``dagster/will_retry=true``) are left alone, so only the last failure of a run group lands there. A run that run
  monitoring stopped for its max runtime is ``max_runtime_exceeded``.
- ``dead_letter_resolution_sensor`` (run success): takes a successful replay run's files off its item, and resolves
  the item once every run of the replay succeeded.
- Both, after any import run ends: resolve the items whose files have all loaded since they failed, however the
  loads were launched (``DeadLetterStore.resolve_loaded``).
- ``history_retention_job`` + ``history_retention_schedule``: delete Dagster runs (with their event logs) and our
  audit older than the window, keeping what open dead-letter items and partition status still need.

The pieces live in one module per concept: ``failed_runs`` (what a failed run says), ``failure_records`` (its
dead-letter records), ``dead_letters`` (record and resolve items), ``replay`` (replay an item) and ``retention``.
"""

import dagster as dg

from mytrader_pipeline.core.dlq import DeadLetterStore
from mytrader_pipeline.defs.dead_letters import record_run_failures, resolve_loaded_items, resolve_replay
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.defs.retention import build_retention_job, build_retention_schedule
from mytrader_pipeline.markets import MarketRegistry


def build_failure_defs(registry: MarketRegistry) -> dg.Definitions:
    """The dead-letter sensors, the retention job and its daily schedule."""

    @dg.run_failure_sensor(  # every job of the code location: the market imports and import_all_markets
        name="dead_letter_sensor",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records each failed import run (after Dagster's own run retries) in the dead-letter queue: "
        "per-market imports and the all-markets import (one item of market ALL, keyed by file path).",
    )
    def _dead_letter_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
        store = DeadLetterStore(warehouse.engine())
        run = context.dagster_run
        recorded = record_run_failures(context.instance, registry, store, run, context.failure_event.message)
        if not recorded:
            context.log.info(f"run {run.run_id}: not recorded (to be retried by Dagster, refused, or not an import)")
        for item, created in recorded:
            if created:
                why = f"{item.market} ({item.error_class}): {item.message}"
                context.log.warning(f"run {run.run_id}: dead-letter item {item.id} of {why}")
        for resolved in resolve_loaded_items(registry, store, run):
            context.log.info(f"dead-letter item {resolved.id} resolved: its files have loaded since they failed")

    @dg.run_status_sensor(
        name="dead_letter_resolution_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,  # every job of the code location: __ASSET_JOB runs load files too
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Resolves the dead-letter items whose files have all loaded since they failed, however the "
        "load was launched (a replay, a UI re-execution or Materialize, a sensor, a schedule, the CLI).",
    )
    def _resolution_sensor(context: dg.RunStatusSensorContext, warehouse: WarehouseResource) -> None:
        store = DeadLetterStore(warehouse.engine())
        run = context.dagster_run
        item = resolve_replay(context.instance, registry, store, run)
        if item is not None:
            context.log.info(f"dead-letter item {item.id} resolved by its replay run {run.run_id}")
        for resolved in resolve_loaded_items(registry, store, run):
            context.log.info(f"dead-letter item {resolved.id} resolved by run {resolved.resolved_by_run_id}")

    job = build_retention_job(registry)
    return dg.Definitions(
        jobs=[job],
        sensors=[_dead_letter_sensor, _resolution_sensor],
        schedules=[build_retention_schedule(job)],
    )
