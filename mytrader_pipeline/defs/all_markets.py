"""The all-markets import job: one op per market in one run, markets in parallel (the old all-markets request)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pydantic

from mytrader_pipeline.core.accounting import changed_since_load, loaded_states
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.defs.assets import (
    ImportConfig,
    failed_file_observations,
    file_failures,
    files_failed,
    load_files,
    partition_metadata,
)
from mytrader_pipeline.defs.checks import as_evaluations, check_results
from mytrader_pipeline.defs.executors import celery_queue_tags, step_executor
from mytrader_pipeline.defs.failed_partitions import report_failed_attempts
from mytrader_pipeline.defs.jobs import MARKET_TAG, MAX_RUNTIME_TAG, PRIORITY_TAG
from mytrader_pipeline.defs.partitions import files_partitions_name, register_partitions, unregistered
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.settings import get_settings

ALL_MARKETS_JOB = "import_all_markets"
DEFAULT_GLOBAL_MAX_CONCURRENCY = 8  # the old GlobalMaxConcurrency
MAX_GLOBAL_CONCURRENCY = 64
# The run's max runtime in global SLAs. Its ops make no step retries (a failed market fails its op; run retries
# resume the run), so a healthy run ends within the global SLA; at twice that it is stuck, and run monitoring stops it.
MAX_RUNTIME_GLOBAL_SLAS = 2


def all_markets_max_runtime_seconds(global_sla_minutes: int | None = None) -> int:
    """The all-markets run's max runtime: ``MAX_RUNTIME_GLOBAL_SLAS`` x the global SLA.

    The global SLA is ``global_sla_minutes``, else ``MYTRADER_GLOBAL_SLA_MINUTES`` (what the SLA monitor judges
    against), else 120 minutes.
    """
    minutes = global_sla_minutes or get_settings().global_sla_minutes
    return MAX_RUNTIME_GLOBAL_SLAS * minutes * 60


def market_op_name(market: Market) -> str:
    """The op importing ``market`` inside the all-markets job (e.g. ``import_bist_files``)."""
    return f"import_{market.code.lower()}_files"


def build_market_import_op(market: Market) -> dg.OpDefinition:
    """Registers every file of ``market`` as a partition and loads those new or changed since their last load."""

    @dg.op(
        name=market_op_name(market),
        tags={MARKET_TAG: market.code, **celery_queue_tags(market)},
        description=f"Import {market.code}'s new and changed files; unchanged files are skipped and counted.",
    )
    def _import_market(
        context: dg.OpExecutionContext, config: ImportConfig, warehouse: WarehouseResource, data_root: DataRootResource
    ) -> Iterator[dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckEvaluation | dg.Output]:
        files = [f for f in scan_market(data_root.path, market) if config.selects(f.partition_key)]
        keys = [f.partition_key for f in files]
        new_keys = unregistered(context.instance.get_dynamic_partitions(files_partitions_name(market)), keys)
        register_partitions(context.instance, market, new_keys)
        loaded = {} if config.force else loaded_states(warehouse.engine(), market.code)  # force: loads whole
        fresh = [f for f in files if changed_since_load(loaded.get(f.source_file), f)]
        skipped = len(files) - len(fresh)
        context.log.info(f"{market.code}: {len(fresh)} new or changed file(s) to load, {skipped} unchanged: skipped")
        results, seconds, progress = load_files(context, market, config, warehouse, fresh, loaded)
        failed = file_failures(results)
        done = [r for r in results if r.status == "succeeded"]
        for key, meta in partition_metadata(warehouse.engine(), market, done, {}).items():
            yield dg.AssetMaterialization(asset_key=market.asset_name, partition=key, metadata=meta)
        # The market asset's checks, judged again now that its warehouse state changed (or not: same answer).
        yield from as_evaluations(market, check_results(market, warehouse.engine(), context.run_id, context.instance))
        summary = {
            **progress.summary(seconds, skipped=skipped, failed=len(failed)),
            "files_found": dg.MetadataValue.int(len(files)),
            "files_new": dg.MetadataValue.int(len(new_keys)),
        }
        if failed:  # failed partitions with their class and reason, as the market's own job records them
            asset_key = dg.AssetKey(market.asset_name)
            step_key = context.get_step_execution_context().step.key
            report_failed_attempts(context.instance, context.run_id, context.job_name, step_key, asset_key, failed)
            yield from failed_file_observations(asset_key, market, failed)
            retryable = any(r.error.retryable for r in results if r.error)
            raise files_failed(market, failed, len(fresh), summary, allow_retries=retryable)
        yield dg.Output(None, metadata=summary)

    return _import_market


def build_all_markets_job(registry: MarketRegistry, global_sla_minutes: int | None = None) -> dg.JobDefinition:
    """``import_all_markets``: every market's op in one run, run in parallel by the multiprocess executor.

    Under ``MYTRADER_EXECUTOR=celery`` each op runs on a Celery worker of its market's queue instead.

    Its runs are stopped after ``all_markets_max_runtime_seconds(global_sla_minutes)``.
    """
    graph = dg.GraphDefinition(
        name=ALL_MARKETS_JOB,
        node_defs=[build_market_import_op(m) for m in registry],
        description="Import every market's new and changed files (the old all-markets import).",
    )
    return graph.to_job(
        executor_def=step_executor(dg.multi_or_in_process_executor),
        tags={PRIORITY_TAG: "100", MAX_RUNTIME_TAG: str(all_markets_max_runtime_seconds(global_sla_minutes))},
        config=all_markets_run_config(registry),
    )


def all_markets_run_config(
    registry: MarketRegistry,
    *,
    run_markets_in_parallel: bool = True,
    global_max_concurrency: int | None = None,
    market_configs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run config of ``import_all_markets`` from the old all-markets request's options.

    ``run_markets_in_parallel`` picks the multiprocess (one process per market) or in-process executor;
    ``global_max_concurrency`` caps both the markets at once and each market's file concurrency;
    ``market_configs`` maps market code to ``ImportConfig`` fields (Dagster validates them before the run starts).

    Raises:
        ValueError: for an unknown market code, an option out of its bounds, or a ``global_max_concurrency``
            outside 1..64.
    """
    limit = DEFAULT_GLOBAL_MAX_CONCURRENCY if global_max_concurrency is None else global_max_concurrency
    if not 1 <= limit <= MAX_GLOBAL_CONCURRENCY:
        raise ValueError(f"globalMaxConcurrency must be within 1..{MAX_GLOBAL_CONCURRENCY}, got {limit}")
    overrides = {code.upper(): cfg for code, cfg in (market_configs or {}).items()}
    unknown = sorted(set(overrides) - set(registry.codes))
    if unknown:
        raise ValueError(f"marketConfigs: unknown market(s) {unknown}; known markets: {registry.codes}")
    ops: dict[str, Any] = {}
    for market in registry:
        config = dict(overrides.get(market.code, {}))
        if global_max_concurrency is not None:
            config["max_concurrency"] = min(config.get("max_concurrency") or market.max_concurrency, limit)
        try:
            ImportConfig.model_validate(config)  # the bounds Dagster's config schema does not express
        except pydantic.ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"marketConfigs.{market.code}: {problems}") from exc
        ops[market_op_name(market)] = {"config": config}
    execution = (
        {"multiprocess": {"max_concurrent": min(limit, len(registry))}}
        if run_markets_in_parallel
        else {"in_process": {}}
    )
    return {"ops": ops, "execution": {"config": execution}}
