"""One prices asset per market, partitioned by file: a thin shell over ``core.importer``."""

import dataclasses
import datetime as dt
import fnmatch
import time
from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from mytrader_pipeline.core import limits
from mytrader_pipeline.core.accounting import file_sha256, loaded_states
from mytrader_pipeline.core.discovery import MarketFile, file_path, market_file
from mytrader_pipeline.core.errors import DataPathError, classify
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import FileTarget
from mytrader_pipeline.defs.checks import check_results, check_specs
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.policies import StopWhenCanceled, retry_or_fail, with_retry_policy
from mytrader_pipeline.defs.progress import ProgressReporter
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import Market


class ImportConfig(dg.Config):
    """Run options of a market import."""

    force: bool = Field(default=False, description="Reload files whose content is unchanged since their last load.")
    max_concurrency: int | None = Field(
        default=None,
        ge=limits.MAX_CONCURRENCY.low,
        le=limits.MAX_CONCURRENCY.high,
        description="Files loaded at once; default: the market's max_concurrency.",
    )
    batch_size: int | None = Field(
        default=None,
        ge=limits.BATCH_SIZE.low,
        le=limits.BATCH_SIZE.high,
        description="Rows per database batch; default: the market's batch_size.",
    )
    include_files: list[str] | None = Field(
        default=None, description="Only files whose name matches one of these globs (e.g. ['A*.csv']); default all."
    )
    exclude_files: list[str] | None = Field(default=None, description="Skip files whose name matches these globs.")
    enable_duplicate_cleanup: bool = Field(
        default=True,
        description="Accepted for the old API; duplicates are always resolved: a date repeated in a file is "
        "rejected, and the warehouse's unique key with the source-priority rule keeps one row per symbol and day.",
    )
    sla_target_minutes: int | None = Field(
        default=None,
        ge=limits.SLA_TARGET_MINUTES.low,
        le=limits.SLA_TARGET_MINUTES.high,
        description="Warn when the run takes longer; default: the market's SLA.",
    )

    def selects(self, file_name: str) -> bool:
        """Whether ``include_files``/``exclude_files`` let this run load ``file_name``."""
        included = not self.include_files or any(fnmatch.fnmatchcase(file_name, p) for p in self.include_files)
        return included and not any(fnmatch.fnmatchcase(file_name, p) for p in self.exclude_files or ())

    def applied_to(self, market: Market) -> Market:
        """``market`` with this run's overrides of its settings."""
        return dataclasses.replace(market, batch_size=self.batch_size) if self.batch_size else market


def file_metadata(result: FileResult) -> dict[str, dg.MetadataValue]:
    """What a partition's materialization records about its file's load."""
    outcome = result.outcome
    assert outcome is not None
    meta: dict[str, dg.MetadataValue] = {
        "source_file": dg.MetadataValue.path(result.file.source_file),
        "rows_read": dg.MetadataValue.int(outcome.rows_read),
        "rows_loaded": dg.MetadataValue.int(outcome.rows_loaded),
        "rows_written": dg.MetadataValue.int(outcome.rows_written),
        "rows_rejected": dg.MetadataValue.int(outcome.rows_rejected),
        "rejected_rate": dg.MetadataValue.float(
            outcome.rows_rejected / outcome.rows_read if outcome.rows_read else 0.0
        ),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(round(outcome.rows_read / max(result.seconds, 1e-6), 1)),
        "quality_score": dg.MetadataValue.float(outcome.quality_score or 0.0),
        "file_import_id": dg.MetadataValue.int(outcome.file_import_id),
        "load_mode": dg.MetadataValue.text(outcome.mode),
    }
    if result.meta and result.meta.sha256:
        meta["fingerprint"] = dg.MetadataValue.text(result.meta.sha256)
    if outcome.date_min and outcome.date_max:
        meta["date_range"] = dg.MetadataValue.text(f"{outcome.date_min} .. {outcome.date_max}")
    return meta


def _resolve(
    context: dg.AssetExecutionContext, data_root: DataRootResource, market: Market
) -> tuple[list[MarketFile], dict[str, DataPathError]]:
    """The files behind this run's partition keys, and the keys that have no usable file."""
    files: list[MarketFile] = []
    missing: dict[str, DataPathError] = {}
    for key in context.partition_keys:
        try:
            files.append(market_file(data_root.path, market, key))
        except DataPathError as exc:
            missing[key] = exc
    return files, missing


def build_market_asset(market: Market) -> dg.AssetsDefinition:
    """The ``<code>_prices`` asset of ``market``: each partition is one CSV file loaded into the warehouse."""

    @dg.asset(
        name=market.asset_name,
        partitions_def=files_partitions(market),
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="prices",
        kinds={"polars", "postgres"},
        tags={"market": market.code},
        check_specs=check_specs(market),
        description=f"Daily prices of {market.code} ({market.currency}) from {market.folder}/*.csv, one partition "
        f"per file; source priority {market.source_priority}, SLA {market.sla_minutes} min.",
        metadata={"market": market.code, "folder": market.folder, "source_priority": market.source_priority},
    )
    @with_retry_policy(market)
    def _market_prices(
        context: dg.AssetExecutionContext,
        config: ImportConfig,
        warehouse: WarehouseResource,
        data_root: DataRootResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetMaterialization]:
        files, missing = _resolve(context, data_root, market)
        excluded = [f for f in files if not config.selects(f.partition_key)]
        files = [f for f in files if config.selects(f.partition_key)]
        engine = warehouse.engine()
        for key, exc in missing.items():
            context.log.error(f"{exc.error_class.value}: {exc}")
            target = FileTarget(market, key, file_path(market.folder, key), context.run_id)
            warehouse.warehouse().record_failure(target, None, classify(exc), dt.datetime.now(dt.UTC))
        skipped: list[MarketFile] = []
        loaded = {} if config.force else loaded_states(engine, market.code)  # force: every file loads whole
        if not config.force:
            fresh = [
                f for f in files if f.source_file not in loaded or loaded[f.source_file].sha256 != file_sha256(f.path)
            ]
            skipped = [f for f in files if f not in fresh]
            files = fresh
        if skipped:
            context.log.info(f"{len(skipped)} file(s) unchanged since their last load: skipped (force=True reloads)")
        options = ImportOptions(concurrency=config.max_concurrency or market.max_concurrency)
        importer = MarketImporter(warehouse.warehouse(), config.applied_to(market), context.run_id, options)
        progress = ProgressReporter(context, market, total=len(files))
        started = time.perf_counter()
        results = importer.run(
            files, on_result=progress.on_result, should_stop=StopWhenCanceled(context), loaded=loaded
        )
        seconds = time.perf_counter() - started
        sla_minutes = config.sla_target_minutes or market.sla_minutes
        if seconds > sla_minutes * 60:
            context.log.warning(f"{market.code}: the run took {seconds / 60:.1f} min, over its {sla_minutes} min SLA")

        done = [r for r in results if r.status == "succeeded"]
        failed = [r for r in results if r.status != "succeeded"]
        for result in done:
            context.add_asset_metadata(file_metadata(result), partition_key=result.file.partition_key)
        for file in skipped:
            context.add_asset_metadata(
                {"skipped": dg.MetadataValue.text("unchanged")}, partition_key=file.partition_key
            )
        for file in excluded:
            context.add_asset_metadata({"skipped": dg.MetadataValue.text("excluded")}, partition_key=file.partition_key)
        yield from check_results(market, engine, context.run_id, done)
        summary = progress.summary(seconds, skipped=len(skipped), failed=len(failed) + len(missing))
        if not failed and not missing:
            yield dg.MaterializeResult(metadata=summary)
            return
        # Partial success: record what did load, then fail the run naming every file that did not.
        for result in done:
            yield dg.AssetMaterialization(
                asset_key=context.asset_key, partition=result.file.partition_key, metadata=file_metadata(result)
            )
        for file in [*skipped, *excluded]:
            yield dg.AssetMaterialization(asset_key=context.asset_key, partition=file.partition_key)
        errors = {r.file.partition_key: f"{r.error.error_class.value}: {r.error.message}" for r in failed if r.error}
        errors |= {r.file.partition_key: "cancelled" for r in failed if r.error is None}
        errors |= {key: f"{exc.error_class.value}: {exc}" for key, exc in missing.items()}
        classes = [r.error for r in failed if r.error] + [classify(exc) for exc in missing.values()]
        failure = dg.Failure(
            description=f"{len(errors)} of {len(context.partition_keys)} {market.code} file(s) failed: "
            + "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:10]),
            metadata={**summary, "failed_files": dg.MetadataValue.json(errors)},
            allow_retries=any(c.retryable for c in classes),
        )
        raise retry_or_fail(context, market, classes, failure)

    return _market_prices
