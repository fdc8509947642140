"""Import jobs: one per market (partitioned by file), named ``import_<code>``."""

from __future__ import annotations

import dagster as dg

from mytrader_pipeline.defs.executors import step_executor
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.sla_check import sla_check_key
from mytrader_pipeline.markets import Market

# Dagster's documented run tags for a single run over a range of partitions (a single-run backfill).
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
# The run queue dequeues higher values first (QueuedRunCoordinator); untagged runs have 0.
PRIORITY_TAG = "dagster/priority"
MARKET_TAG = "market"  # the run queue limits concurrent runs per value of this tag (dagster.yaml)
# Run monitoring stops (terminates, then fails) a run that has been running longer than this many seconds.
MAX_RUNTIME_TAG = "dagster/max_runtime"


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run materialize partitions ``first`` through ``last``."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}


def import_job_name(market: Market) -> str:
    """The job that imports ``market``'s files (e.g. ``import_bist``)."""
    return f"import_{market.code.lower()}"


def run_priority(market: Market) -> int:
    """The queue priority of ``market``'s runs: the lower its ``schedule_priority``, the sooner (BIST first)."""
    return max(100 - market.schedule_priority, 1)


def market_pool(market: Market) -> str:
    """The Dagster pool of ``market``'s prices asset (e.g. ``market/BIST``): at most its ``max_concurrency`` runs
    hold it at once, whichever job or launch they come from (limits set by ``defs/run_coordinator.py``)."""
    return f"market/{market.code}"


def market_run_tags(market: Market) -> dict[str, str]:
    """Tags on every run of ``market``'s import: the queue's per-market limit, its priority and its max runtime."""
    return {
        MARKET_TAG: market.code,
        PRIORITY_TAG: str(run_priority(market)),
        MAX_RUNTIME_TAG: str(market.max_runtime_seconds),
    }


def build_import_job(market: Market) -> dg.UnresolvedAssetJobDefinition:
    """A job materializing ``market``'s prices asset for the partitions (files) it is given.

    Its one step runs in the run's worker process (in-process executor): the step dies with its worker, so a worker
    killed or failed by run monitoring leaves no orphaned step process loading on beside the retry, and a run saves
    the second process start. Under ``MYTRADER_EXECUTOR=celery`` the step runs on a Celery worker of the market's
    queue instead (``defs/executors.py``).
    """
    return dg.define_asset_job(
        name=import_job_name(market),
        # The sla check reports the SLA monitor's state (its sensor and on demand), not something a load changes.
        selection=dg.AssetSelection.assets(market.asset_name) - dg.AssetSelection.checks(sla_check_key(market)),
        partitions_def=files_partitions(market),
        tags=market_run_tags(market),
        description=f"Import {market.code} files into the warehouse.",
        executor_def=step_executor(dg.in_process_executor),
    )
