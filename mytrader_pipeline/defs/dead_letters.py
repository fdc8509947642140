"""Dead-lettering failed import runs and resolving their items (by replay, or once their files have loaded)."""

import dataclasses

import dagster as dg

from mytrader_pipeline.core.discovery import file_path
from mytrader_pipeline.core.dlq import (
    ALL_MARKETS,
    DLQ_ITEM_TAG,
    DeadLetterItem,
    DeadLetterStore,
    FailureRecord,
    ItemNotFound,
    keys_of_item,
)
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB
from mytrader_pipeline.defs.failed_runs import market_of_run, run_markets, run_partition_keys, will_be_retried
from mytrader_pipeline.defs.failure_records import all_markets_failure_record, failure_records
from mytrader_pipeline.defs.run_coordinator import REFUSED_TAG
from mytrader_pipeline.markets import MarketRegistry


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
