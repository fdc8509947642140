"""What a failed run says: the markets and partitions it was to load, its step failures, retries and stops."""

import dataclasses
import re
from collections.abc import Sequence

import dagster as dg
from dagster._core.events import RunFailureReason  # not re-exported at the top level
from dagster._core.execution.retries import auto_reexecution_should_retry_run

from mytrader_pipeline.core.errors import FileFailure
from mytrader_pipeline.core.ranges import keys_in_range
from mytrader_pipeline.defs.jobs import MARKET_TAG, PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, import_job_name
from mytrader_pipeline.defs.partitions import files_partitions_name
from mytrader_pipeline.defs.run_coordinator import markets_of_run
from mytrader_pipeline.markets import Market, MarketRegistry

WILL_RETRY_TAG = "dagster/will_retry"
FAILURE_REASON_TAG = "dagster/failure_reason"
PARTITION_TAG = "dagster/partition"
# What run monitoring logs when it stops a run over its max runtime (dagster/_daemon/monitoring/run_monitoring.py): a
# RUN_CANCELING event "Canceling due to exceeding maximum runtime of N seconds.", then the RUN_FAILURE "Exceeded
# maximum runtime of N seconds." (or, when the worker could not be reached, a forced failure). The run ends FAILURE.
MAX_RUNTIME_STOP = re.compile(r"exceed(?:ed|ing) maximum runtime of (\d+) seconds", re.IGNORECASE)


def market_of_run(registry: MarketRegistry, run: dg.DagsterRun) -> Market | None:
    """The market an import run loads (by job name, else its ``market`` tag); None for other jobs."""
    by_job = {import_job_name(m): m for m in registry}
    if run.job_name in by_job:
        return by_job[run.job_name]
    code = run.tags.get(MARKET_TAG)
    if code and code.upper() in registry.codes:
        return registry.get(code)
    # A run of the UI's __ASSET_JOB (Materialize, a backfill, their re-executions) names only its assets.
    by_asset = {dg.AssetKey(m.asset_name): m for m in registry}
    codes = {by_asset[k].code for k in run.asset_selection or () if k in by_asset}
    return registry.get(codes.pop()) if len(codes) == 1 else None


def run_markets(registry: MarketRegistry, run: dg.DagsterRun) -> list[Market]:
    """Every market a run loads: the markets of the assets it targets (a market's job, the UI's ``__ASSET_JOB`` over
    one market or several), else its import job or ``market`` tag. The tag alone would name one market of several
    (the run coordinator puts the strictest's on a run over several)."""
    found = markets_of_run(registry, run)
    if found:
        return found
    market = market_of_run(registry, run)
    return [market] if market is not None else []


def planned_partition_keys(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[dg.AssetKey, list[str]]:
    """asset key -> the partitions Dagster planned to materialize in ``run`` (its ASSET_MATERIALIZATION_PLANNED
    events, written when the run was created): what each asset of a run over several was asked to load."""
    records = instance.get_records_for_run(
        run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=None
    ).records
    planned: dict[dg.AssetKey, list[str]] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.asset_materialization_planned_data if event else None
        if data is None:
            continue
        keys = planned.setdefault(data.asset_key, [])
        if data.partition is not None:
            keys.append(data.partition)
        elif data.partitions_subset is not None:
            keys.extend(data.partitions_subset.get_partition_keys())
    return {k: list(dict.fromkeys(v)) for k, v in planned.items()}


def run_partition_keys(instance: dg.DagsterInstance, market: Market, run: dg.DagsterRun) -> list[str]:
    """The partitions (file names) a run was asked to load: its partition tag or its partition range."""
    if PARTITION_TAG in run.tags:
        return [run.tags[PARTITION_TAG]]
    first, last = run.tags.get(PARTITION_RANGE_START_TAG), run.tags.get(PARTITION_RANGE_END_TAG)
    if not first or not last:
        return []
    return keys_in_range(instance.get_dynamic_partitions(files_partitions_name(market)), first, last)


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterEvent]:
    records = instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]


def max_runtime_stop(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The max runtime (seconds) run monitoring stopped this run for; None if it was not stopped for that."""
    kinds = {dg.DagsterEventType.RUN_CANCELING, dg.DagsterEventType.RUN_FAILURE}
    for record in instance.get_records_for_run(run_id=run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        match = MAX_RUNTIME_STOP.search(event.message or "") if event else None
        if match:
            return int(match.group(1))
    return None


def run_attempts(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> int:
    """Attempts made: each run of the group once, plus each step retry within them."""
    retries = sum(
        len(instance.get_records_for_run(run_id=r, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records)
        for r in run_ids
    )
    return len(run_ids) + retries


@dataclasses.dataclass
class StepFailures:
    """What a run's step failures say: failed files (partition key -> reason) by step, messages, stack traces."""

    files_by_step: dict[str, dict[str, FileFailure]] = dataclasses.field(default_factory=dict)
    messages: list[str] = dataclasses.field(default_factory=list)
    traces: list[str] = dataclasses.field(default_factory=list)
    steps: set[str] = dataclasses.field(default_factory=set)
    by_step: dict[str, "StepFailures"] = dataclasses.field(default_factory=dict)

    def of_step(self, step: str) -> "StepFailures":
        """What ``step``'s failures say (nothing if it did not fail)."""
        return self.by_step.get(step) or StepFailures()


def step_failure_details(instance: dg.DagsterInstance, run_id: str) -> StepFailures:
    found = StepFailures()
    for event in _step_failures(instance, run_id):
        data = event.step_failure_data
        step = event.step_key or ""
        for into in (found, found.by_step.setdefault(step, StepFailures())):
            into.steps.add(step)
            if data.user_failure_data is not None:
                meta = data.user_failure_data.metadata.get("failed_files")
                if meta is not None and isinstance(meta.value, dict):
                    failures = {str(k): FileFailure.from_json(v) for k, v in meta.value.items()}
                    into.files_by_step.setdefault(step, {}).update(failures)
                into.messages.append(data.user_failure_data.description or "")
            elif data.error is not None:
                into.messages.append(data.error.message.strip())
            if data.error is not None:
                into.traces.append(data.error.to_string())
    return found


def succeeded_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
    return {r.event_log_entry.dagster_event.step_key or "" for r in records if r.event_log_entry.dagster_event}


def will_be_retried(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether Dagster's run retries will re-execute this failed run.

    Dagster tags the run (``dagster/will_retry``) just after storing its failure, so a sensor can see the failure
    before the tag: then decide the way Dagster does.
    """
    tag = run.tags.get(WILL_RETRY_TAG)
    if tag is not None:
        return tag == "true"
    if not instance.run_retries_enabled:
        return False
    reason = run.tags.get(FAILURE_REASON_TAG)
    return bool(auto_reexecution_should_retry_run(instance, run, RunFailureReason(reason) if reason else None))
