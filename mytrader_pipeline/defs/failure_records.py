"""From a failed import run to its dead-letter records (FailureRecord), one per market it failed."""

import collections
import dataclasses
import datetime as dt

import dagster as dg

from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.discovery import file_path
from mytrader_pipeline.core.dlq import ALL_MARKETS, DLQ_ITEM_TAG, FailureRecord, failed_keys
from mytrader_pipeline.core.errors import ErrorClass, FileFailure
from mytrader_pipeline.defs.all_markets import market_op_name
from mytrader_pipeline.defs.assets import ImportConfig
from mytrader_pipeline.defs.failed_runs import (
    StepFailures,
    max_runtime_stop,
    planned_partition_keys,
    run_attempts,
    run_markets,
    run_partition_keys,
    step_failure_details,
    succeeded_steps,
)
from mytrader_pipeline.defs.partitions import files_partitions_name
from mytrader_pipeline.markets import Market, MarketRegistry


def _failure_record(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    market_code: str,
    folder: str | None,
    keys: list[str],
    failed_files: dict[str, FileFailure],
    details: StepFailures,
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
        attempts=run_attempts(instance, run_ids),
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
    details = step_failure_details(instance, run.run_id)
    if len(markets) == 1:  # one market: every step's failures are its own (whatever its ops are named)
        market = markets[0]
        failed_files = {k: v for files in details.files_by_step.values() for k, v in files.items()}
        keys = _keys_of(instance, run, market, planned_partition_keys(instance, run))
        return [
            _failure_record(instance, run, market.code, market.folder, keys, failed_files, details, failure_message)
        ]
    planned = planned_partition_keys(instance, run)
    succeeded = succeeded_steps(instance, run.run_id)
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
    details = step_failure_details(instance, run.run_id)
    succeeded = succeeded_steps(instance, run.run_id)
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
