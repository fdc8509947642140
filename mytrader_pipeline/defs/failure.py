"""Failure handling in Dagster: the dead-letter sensors, replay of an item, and the daily history retention job.

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
"""

import collections
import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
from dagster._core.events import RunFailureReason  # not re-exported at the top level
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from pydantic import Field

from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.discovery import file_path, split_file_path
from mytrader_pipeline.core.dlq import (
    ACTIVE,
    ALL_MARKETS,
    DLQ_ITEM_TAG,
    DeadLetterItem,
    DeadLetterStore,
    FailureRecord,
    InvalidTransition,
    ItemNotFound,
    failed_keys,
    keys_of_item,
    replay_run_config,
    replay_tags,
)
from mytrader_pipeline.core.errors import ErrorClass, FileFailure
from mytrader_pipeline.core.ranges import keys_in_range, plan_ranges
from mytrader_pipeline.core.retention import DEFAULT_RETENTION_DAYS, cutoff_for, purge_audit
from mytrader_pipeline.core.runs import FINISHED_STATES
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, market_op_name
from mytrader_pipeline.defs.assets import ImportConfig
from mytrader_pipeline.defs.jobs import (
    MARKET_TAG,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    import_job_name,
    partition_range_tags,
)
from mytrader_pipeline.defs.partitions import files_partitions_name, register_partitions
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.defs.run_coordinator import REFUSED_TAG, markets_of_run
from mytrader_pipeline.markets import Market, MarketRegistry

WILL_RETRY_TAG = "dagster/will_retry"
FAILURE_REASON_TAG = "dagster/failure_reason"
PARTITION_TAG = "dagster/partition"
# What run monitoring logs when it stops a run over its max runtime (dagster/_daemon/monitoring/run_monitoring.py): a
# RUN_CANCELING event "Canceling due to exceeding maximum runtime of N seconds.", then the RUN_FAILURE "Exceeded
# maximum runtime of N seconds." (or, when the worker could not be reached, a forced failure). The run ends FAILURE.
MAX_RUNTIME_STOP = re.compile(r"exceed(?:ed|ing) maximum runtime of (\d+) seconds", re.IGNORECASE)


# -- from a failed run to a dead-letter record ------------------------------------------------------------------
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


def _attempts(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> int:
    """Attempts made: each run of the group once, plus each step retry within them."""
    retries = sum(
        len(instance.get_records_for_run(run_id=r, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records)
        for r in run_ids
    )
    return len(run_ids) + retries


@dataclasses.dataclass
class _StepFailures:
    """What a run's step failures say: failed files (partition key -> reason) by step, messages, stack traces."""

    files_by_step: dict[str, dict[str, FileFailure]] = dataclasses.field(default_factory=dict)
    messages: list[str] = dataclasses.field(default_factory=list)
    traces: list[str] = dataclasses.field(default_factory=list)
    steps: set[str] = dataclasses.field(default_factory=set)
    by_step: dict[str, "_StepFailures"] = dataclasses.field(default_factory=dict)

    def of_step(self, step: str) -> "_StepFailures":
        """What ``step``'s failures say (nothing if it did not fail)."""
        return self.by_step.get(step) or _StepFailures()


def _step_failure_details(instance: dg.DagsterInstance, run_id: str) -> _StepFailures:
    found = _StepFailures()
    for event in _step_failures(instance, run_id):
        data = event.step_failure_data
        step = event.step_key or ""
        for into in (found, found.by_step.setdefault(step, _StepFailures())):
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


def _succeeded_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
    return {r.event_log_entry.dagster_event.step_key or "" for r in records if r.event_log_entry.dagster_event}


def _failure_record(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    market_code: str,
    folder: str | None,
    keys: list[str],
    failed_files: dict[str, FileFailure],
    details: _StepFailures,
    failure_message: str | None,
) -> FailureRecord:
    """The record of a failed run loading ``keys``, of which ``failed_files`` named their failure.

    ``folder``: the market folder the keys (file names) are in; None when the keys are already paths (all markets).
    """
    classes = [f.error_class.value for f in failed_files.values() if f.error_class is not None]
    # No failed file named: the run died, timed out or failed outside the files (retryable: nothing to fix in data).
    error_class = collections.Counter(classes).most_common(1)[0][0] if classes else ErrorClass.UNEXPECTED.value
    message = next((m for m in details.messages if m), None) or failure_message or "run failed"
    max_runtime = max_runtime_stop(instance, run.run_id)
    if max_runtime is not None:  # stopped from outside: whatever its files reported, that is why it failed
        classes = [ErrorClass.MAX_RUNTIME_EXCEEDED.value]
        error_class = classes[0]
        message = (
            f"stopped by run monitoring after exceeding its max runtime of {max_runtime} s (tag dagster/max_runtime); "
            f"files committed before the stop stay loaded, a replay loads the rest. {message}"
        )
    _, group = instance.get_run_group(run.run_id) or (run.run_id, [run])
    run_ids = [r.run_id for r in sorted(group, key=lambda r: r.run_id == run.run_id)]
    partitions = failed_keys(failed_files, keys) if keys else sorted(failed_files)
    replay_of = run.tags.get(DLQ_ITEM_TAG)
    return FailureRecord(
        run_id=run.run_id,
        job_name=run.job_name,
        market=market_code,
        partition_keys=partitions,
        source_files=[file_path(folder, k) for k in partitions] if folder else list(partitions),
        failed_files={k: str(f) for k, f in failed_files.items()},
        error_class=error_class,
        message=message[:4000],
        stack_trace="\n".join(details.traces)[:20000] or None,
        attempts=_attempts(instance, run_ids),
        retryable=all(ErrorClass(c).retryable for c in classes) if classes else True,
        failed_at=_ended_at(instance, run),
        run_ids=run_ids,
        run_config=dict(run.run_config),
        run_tags=dict(run.tags),
        replay_of=int(replay_of) if replay_of and replay_of.isdigit() else None,
        attempted_keys=list(keys),
    )


def _ended_at(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dt.datetime:
    """When the run ended (else now): a load finishing after it, even before the sensor's tick, comes after it."""
    record = instance.get_run_record_by_id(run.run_id)
    end = record.end_time if record is not None else None
    return dt.datetime.fromtimestamp(end, tz=dt.UTC) if end else utc_now()


def failure_record(
    instance: dg.DagsterInstance, registry: MarketRegistry, run: dg.DagsterRun, failure_message: str | None
) -> FailureRecord | None:
    """What a failed market import run leaves for a person: failed files, error class, reason, trace, attempts,
    params. None for a run that is not a market import; the first market's for a run over several
    (``failure_records`` has them all)."""
    records = failure_records(instance, registry, run, failure_message)
    return records[0] if records else None


def failure_records(
    instance: dg.DagsterInstance, registry: MarketRegistry, run: dg.DagsterRun, failure_message: str | None
) -> list[FailureRecord]:
    """A failed import run's records, one per market it loads whose files did not all load (none for other runs).

    A run over several markets' assets (the UI's Materialize or a backfill over them) is judged market by market,
    as if each had run its own ``import_<code>``: the market's step (its asset's op) names its failed files; a
    market whose step failed without naming any, or never finished, is recorded whole (every file the run planned
    for it); a market whose step succeeded is not recorded.
    """
    markets = run_markets(registry, run)
    if not markets:
        return []
    details = _step_failure_details(instance, run.run_id)
    if len(markets) == 1:  # one market: every step's failures are its own (whatever its ops are named)
        market = markets[0]
        failed_files = {k: v for files in details.files_by_step.values() for k, v in files.items()}
        keys = _keys_of(instance, run, market, planned_partition_keys(instance, run))
        return [
            _failure_record(instance, run, market.code, market.folder, keys, failed_files, details, failure_message)
        ]
    planned = planned_partition_keys(instance, run)
    succeeded = _succeeded_steps(instance, run.run_id)
    records = []
    for market in markets:
        step = market.asset_name  # the op of the market's prices asset
        if step in succeeded or (run.step_keys_to_execute is not None and step not in run.step_keys_to_execute):
            continue
        own = details.of_step(step)
        failed_files = dict(own.files_by_step.get(step, {}))
        keys = _keys_of(instance, run, market, planned)
        if not failed_files and not own.messages:  # it never ran, or stopped: the run's own failure says why
            own = dataclasses.replace(own, messages=[failure_message or "its step did not finish"])
        records.append(
            _failure_record(instance, run, market.code, market.folder, keys, failed_files, own, failure_message)
        )
    return records


def _keys_of(
    instance: dg.DagsterInstance, run: dg.DagsterRun, market: Market, planned: dict[dg.AssetKey, list[str]]
) -> list[str]:
    """The files ``run`` was to load of ``market``: its planned partitions (in the market's partition order), else
    its partition tags."""
    keys = planned.get(dg.AssetKey(market.asset_name))
    if not keys:
        return run_partition_keys(instance, market, run)
    order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(files_partitions_name(market)))}
    return sorted(keys, key=lambda k: (order.get(k, len(order)), k))


def all_markets_failure_record(
    instance: dg.DagsterInstance, registry: MarketRegistry, run: dg.DagsterRun, failure_message: str | None
) -> FailureRecord:
    """A failed ``import_all_markets`` run as one item of market ``ALL``, keyed by file path (``BIST/X.csv``).

    Each market op that failed names its failed files; a market whose op failed without naming any, or never
    finished (the run died or was stopped), is replayed whole: every file of it the run's options select.
    """
    details = _step_failure_details(instance, run.run_id)
    records = instance.get_records_for_run(run_id=run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
    succeeded = {r.event_log_entry.dagster_event.step_key for r in records if r.event_log_entry.dagster_event}
    ops_config = run.run_config.get("ops", {}) if isinstance(run.run_config, dict) else {}
    failed_files: dict[str, FileFailure] = {}
    for market in registry:
        op = market_op_name(market)
        if op in succeeded or (run.step_keys_to_execute is not None and op not in run.step_keys_to_execute):
            continue
        named = details.files_by_step.get(op, {})
        if not named:  # (the reason is no error class: the classes come from the files that named one)
            config = ImportConfig.model_validate((ops_config.get(op) or {}).get("config") or {})
            why = "its op failed before naming a file" if op in details.steps else "its op did not finish"
            keys = instance.get_dynamic_partitions(files_partitions_name(market))
            named = {k: FileFailure(None, f"not loaded: {why}") for k in keys if config.selects(k)}
        failed_files.update({file_path(market.folder, k): v for k, v in sorted(named.items())})
    keys = list(failed_files)
    return _failure_record(instance, run, ALL_MARKETS, None, keys, failed_files, details, failure_message)


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


def record_run_failure(
    instance: dg.DagsterInstance,
    registry: MarketRegistry,
    store: DeadLetterStore,
    run: dg.DagsterRun,
    failure_message: str | None = None,
) -> tuple[DeadLetterItem | None, bool]:
    """Record a failed run in the dead-letter queue, once; skip runs Dagster will retry, non-import runs, and runs
    the run coordinator refused (they loaded nothing, and a replay would be refused the same way).

    Returns the first market's item of a run over several markets (``record_run_failures`` returns them all)."""
    recorded = record_run_failures(instance, registry, store, run, failure_message)
    return recorded[0] if recorded else (None, False)


def record_run_failures(
    instance: dg.DagsterInstance,
    registry: MarketRegistry,
    store: DeadLetterStore,
    run: dg.DagsterRun,
    failure_message: str | None = None,
) -> list[tuple[DeadLetterItem, bool]]:
    """Record a failed run in the dead-letter queue, once per market it failed (each item and whether this call
    changed it); nothing for runs Dagster will retry, non-import runs and runs the run coordinator refused."""
    if REFUSED_TAG in run.tags or will_be_retried(instance, run):
        return []
    if run.job_name == ALL_MARKETS_JOB:
        return [store.record(all_markets_failure_record(instance, registry, run, failure_message))]
    records = failure_records(instance, registry, run, failure_message)
    return [store.record(in_item_keys(store, registry, record)) for record in records]


def in_item_keys(store: DeadLetterStore, registry: MarketRegistry, record: FailureRecord) -> FailureRecord:
    """A failed replay run's record in the keys of the item it replayed: an all-markets item names files by path."""
    if record.replay_of is None:
        return record
    try:
        item = store.get(record.replay_of)
    except ItemNotFound:
        return record
    if item.market != ALL_MARKETS:
        return record
    folder = registry.get(record.market).folder
    return dataclasses.replace(
        record,
        partition_keys=keys_of_item(item.market, folder, record.partition_keys),
        failed_files={file_path(folder, k): v for k, v in record.failed_files.items()},
        attempted_keys=keys_of_item(item.market, folder, record.attempted_keys),
    )


def resolve_replay(
    instance: dg.DagsterInstance, registry: MarketRegistry, store: DeadLetterStore, run: dg.DagsterRun
) -> DeadLetterItem | None:
    """A replay run succeeded: its files leave the item; the item resolves when every run of its replay succeeded."""
    raw = run.tags.get(DLQ_ITEM_TAG)
    if not raw or not raw.isdigit() or run.status != dg.DagsterRunStatus.SUCCESS:
        return None
    try:
        item = store.get(int(raw))
    except ItemNotFound:
        return None
    market = market_of_run(registry, run)
    if market is not None:
        keys = run_partition_keys(instance, market, run)
        store.settle_replay_run(item.id, run.run_id, keys_of_item(item.market, market.folder, keys))
    succeeded = {
        r.run_id
        for r in instance.get_runs(dg.RunsFilter(run_ids=item.replay_run_ids or [run.run_id]))
        if r.status == dg.DagsterRunStatus.SUCCESS
    }
    return store.resolve_if_replayed(item.id, run.run_id, succeeded)


def resolve_loaded_items(registry: MarketRegistry, store: DeadLetterStore, run: dg.DagsterRun) -> list[DeadLetterItem]:
    """After an import run ended (well or not), resolve the items whose files have all loaded since they failed.

    Any import counts: the market jobs, ``import_all_markets``, the UI's ``__ASSET_JOB`` and re-executions of any
    of them. A failed run may have loaded some files, so this runs after failures as well as successes.
    """
    if run.job_name == ALL_MARKETS_JOB:
        return store.resolve_loaded()
    return [item for market in run_markets(registry, run) for item in store.resolve_loaded(market.code)]


# -- replay ------------------------------------------------------------------------------------------------------
Launch = Callable[[str, dict[str, Any], dict[str, str], str], str]  # (job, run config, tags, run id) -> run id


def replay_item(
    instance: dg.DagsterInstance,
    registry: MarketRegistry,
    store: DeadLetterStore,
    item_id: int,
    launch: Launch,
) -> DeadLetterItem:
    """Re-execute only an item's failed partitions (one run per contiguous range) and link the new runs.

    The runs are linked to the item before ``launch`` starts them (in-process, or through a deployment), so even a
    run that succeeds at once finds its item; a launcher that cannot choose the run id returns the one it got. A
    launch that raises (the deployment unreachable, say) unlinks the runs that never started, so the item is not
    left "replayed" by runs that do not exist (``DeadLetterStore.undo_replay``), and the error propagates.
    """
    item = store.get(item_id)
    if item.status not in ACTIVE:
        raise InvalidTransition(f"item {item_id} is {item.status}: only open items can be replayed")
    keys = failed_keys(item.failed_files, item.partition_keys)
    if item.market == ALL_MARKETS:  # keys are paths (BIST/X.csv): each market's files go to its own import job
        paths = [split_file_path(k) for k in keys]
        work = [
            (m, [name for folder, name in paths if folder == m.folder], market_replay_config(item, m)) for m in registry
        ]
    else:
        work = [(registry.get(item.market), keys, replay_run_config(item))]
    launches: list[tuple[Market, list[str], dict[str, Any]]] = []
    for market, market_keys, run_config in work:
        if not market_keys:
            continue
        known = register_partitions(instance, market, market_keys)
        launches += [(market, keys, run_config) for keys in plan_ranges(known, market_keys)]
    planned = [str(uuid.uuid4()) for _ in launches]  # Dagster run ids are UUID4s
    store.mark_replayed(item_id, planned)
    started: list[str] = []
    try:
        for (market, keys, run_config), run_id in zip(launches, planned, strict=True):
            tags = {**replay_tags(item), **partition_range_tags(keys[0], keys[-1])}
            started.append(launch(import_job_name(market), run_config, tags, run_id))
    except BaseException:
        store.undo_replay(item, planned, started)
        raise
    if started != planned:
        store.mark_replayed(item_id, started)
    return store.get(item_id)


def market_replay_config(item: DeadLetterItem, market: Market) -> dict[str, Any]:
    """Run config of ``market``'s import job replaying its part of an all-markets item: the options its op had."""
    ops = item.run_config.get("ops") or {}
    config = (ops.get(market_op_name(market)) or {}).get("config") or {}
    return {"ops": {market.asset_name: {"config": dict(config)}}}


def in_process_launcher(
    defs: dg.Definitions, instance: dg.DagsterInstance, registry: MarketRegistry, store: DeadLetterStore
) -> Launch:
    """A ``Launch`` running the job in this process, then doing what the two sensors would do with its outcome."""

    def launch(job_name: str, run_config: dict[str, Any], tags: dict[str, str], run_id: str) -> str:
        result = defs.resolve_job_def(job_name).execute_in_process(
            run_config=run_config, instance=instance, tags=tags, run_id=run_id, raise_on_error=False
        )
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        if result.success:
            resolve_replay(instance, registry, store, run)
        else:
            record_run_failures(instance, registry, store, run)
        resolve_loaded_items(registry, store, run)
        return result.run_id

    return launch


# -- history retention -------------------------------------------------------------------------------------------
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


# -- sensors and definitions -------------------------------------------------------------------------------------
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

    return dg.Definitions(
        jobs=[job], sensors=[_dead_letter_sensor, _resolution_sensor], schedules=[_retention_schedule]
    )
