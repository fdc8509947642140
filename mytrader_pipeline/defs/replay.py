"""Replay of a dead-letter item: re-execute only its failed partitions, one run per contiguous range."""

import uuid
from collections.abc import Callable
from typing import Any

import dagster as dg

from mytrader_pipeline.core.discovery import split_file_path
from mytrader_pipeline.core.dlq import (
    ACTIVE,
    ALL_MARKETS,
    DeadLetterItem,
    DeadLetterStore,
    InvalidTransition,
    failed_keys,
    replay_run_config,
    replay_tags,
)
from mytrader_pipeline.core.ranges import plan_ranges
from mytrader_pipeline.defs.all_markets import market_op_name
from mytrader_pipeline.defs.dead_letters import record_run_failures, resolve_loaded_items, resolve_replay
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.markets import Market, MarketRegistry

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
