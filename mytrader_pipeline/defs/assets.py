"""One prices asset per market, partitioned by file: a thin shell over ``core.importer``."""

import dataclasses
import fnmatch
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import Engine

from mytrader_pipeline.core import limits
from mytrader_pipeline.core.accounting import (
    LatestLoad,
    RejectedRow,
    changed_since_load,
    latest_loads,
    loaded_states,
    rejected_samples,
)
from mytrader_pipeline.core.appending import LoadedState
from mytrader_pipeline.core.clock import as_utc, utc_now
from mytrader_pipeline.core.discovery import MarketFile, file_path, market_file
from mytrader_pipeline.core.errors import DataPathError, FileFailure, classify
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import FileTarget
from mytrader_pipeline.defs.checks import check_results, check_specs
from mytrader_pipeline.defs.event_batching import batched_event_writes
from mytrader_pipeline.defs.executors import celery_queue_tags
from mytrader_pipeline.defs.jobs import MARKET_TAG, market_pool
from mytrader_pipeline.defs.partition_reads import partitions_read_once
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.policies import StopWhenCanceled, backfill_policy, retry_or_fail, with_retry_policy
from mytrader_pipeline.defs.progress import ProgressReporter
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import Market


class ImportConfig(dg.Config):
    """Run options of a market import."""

    force: bool = Field(default=False, description="Reload files whose content is unchanged since their last load.")
    max_concurrency: limits.MaxConcurrency | None = Field(
        default=None,
        description="Files loaded at once; default: the market's max_concurrency.",
    )
    batch_size: limits.BatchSize | None = Field(
        default=None,
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
    sla_target_minutes: limits.SlaTargetMinutes | None = Field(
        default=None,
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


def file_failures(results: Sequence[FileResult]) -> dict[str, FileFailure]:
    """Each file of ``results`` that did not load, by partition key: its error, else its status (cancelled)."""
    failures = {r.file.partition_key: FileFailure.of(r.error) for r in results if r.error}
    return failures | {
        r.file.partition_key: FileFailure(None, r.status) for r in results if r.status != "succeeded" and not r.error
    }


def files_failed(
    market: Market, failures: dict[str, FileFailure], total: int, summary: dict[str, Any], *, allow_retries: bool
) -> dg.Failure:
    """The step failure naming every file of ``total`` that failed; ``failed_files`` carries each one's class and
    message as data, which the dead-letter queue reads."""
    return dg.Failure(
        description=f"{len(failures)} of {total} {market.code} file(s) failed: "
        + "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:10]),
        metadata={
            **summary,
            "failed_files": dg.MetadataValue.json({key: failure.as_json() for key, failure in failures.items()}),
        },
        allow_retries=allow_retries,
    )


def failed_file_observations(
    asset_key: dg.AssetKey, market: Market, failures: Mapping[str, FileFailure]
) -> list[dg.AssetObservation]:
    """Each failed file's error class and reason, on its partition.

    Dagster marks the partition failed itself (planned in a run that failed, not materialized); its open-source
    storage keeps no ``ASSET_FAILED_TO_MATERIALIZE`` event to say why, so this observation does: the partition's
    events in the UI show it next to the failed attempt.
    """
    return [
        dg.AssetObservation(
            asset_key=asset_key,
            partition=key,
            description=f"{file_path(market.folder, key)} failed to load: {failure}",
            metadata={
                "load_status": dg.MetadataValue.text("failed"),
                "error_class": dg.MetadataValue.text(failure.error_class.value if failure.error_class else "none"),
                "reason": dg.MetadataValue.text(failure.message),
                "retryable": dg.MetadataValue.bool(bool(failure.error_class and failure.error_class.retryable)),
                "source_file": dg.MetadataValue.path(file_path(market.folder, key)),
            },
        )
        for key, failure in failures.items()
    ]


def load_files(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    market: Market,
    config: ImportConfig,
    warehouse: WarehouseResource,
    files: list[MarketFile],
    loaded: Mapping[str, LoadedState] | None = None,
) -> tuple[list[FileResult], float, ProgressReporter]:
    """Load ``files`` with the run's options, logging progress and starting no file once the run is stopped.

    ``loaded``: what earlier loads read of each file (``core.accounting.loaded_states``), so a file that only grew
    loads as an append; without it every file loads whole.

    Returns each file's result, the seconds it took, and the progress reporter (for the step's summary).
    """
    options = ImportOptions(concurrency=config.max_concurrency or market.max_concurrency)
    importer = MarketImporter(warehouse.warehouse(), config.applied_to(market), context.run_id, options)
    progress = ProgressReporter(context, market, total=len(files))
    started = time.perf_counter()
    results = importer.run(files, on_result=progress.on_result, should_stop=StopWhenCanceled(context), loaded=loaded)
    return results, time.perf_counter() - started, progress


def carried_forward_metadata(load: LatestLoad, skipped: str) -> dict[str, dg.MetadataValue]:
    """A skipped file's partition metadata: its current figures (as ``file_metadata`` names them), carried.

    The row figures are the file's chain's (its latest full load and the appends since), as a full reload would
    count them; ``file_import_id``, timing and run are its latest load's.
    """
    meta: dict[str, dg.MetadataValue] = {
        "skipped": dg.MetadataValue.text(skipped),
        "source_file": dg.MetadataValue.path(load.source_file),
        "rows_read": dg.MetadataValue.int(load.rows_read),
        "rows_loaded": dg.MetadataValue.int(load.rows_loaded),
        "rows_written": dg.MetadataValue.int(load.rows_written),
        "rows_rejected": dg.MetadataValue.int(load.rows_rejected),
        "rejected_rate": dg.MetadataValue.float(load.rejected_rate),
        "seconds": dg.MetadataValue.float(round(load.duration_seconds or 0.0, 3)),
        "rows_per_second": dg.MetadataValue.float(round(load.rows_per_second or 0.0, 1)),
        "quality_score": dg.MetadataValue.float(load.quality_score or 0.0),
        "file_import_id": dg.MetadataValue.int(load.file_import_id),
        "load_mode": dg.MetadataValue.text(load.load_mode),
        "loads_in_chain": dg.MetadataValue.int(load.loads),
        "loaded_by_run": dg.MetadataValue.text(load.run_id),
        "loaded_at": dg.MetadataValue.timestamp(as_utc(load.finished_at)),
    }
    if load.fingerprint:
        meta["fingerprint"] = dg.MetadataValue.text(load.fingerprint)
    if load.date_min and load.date_max:
        meta["date_range"] = dg.MetadataValue.text(f"{load.date_min} .. {load.date_max}")
    return meta


REJECTED_ROWS_SHOWN = 20
REJECTED_ROWS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("line", "int", description="Line number in the file (the header is line 1)."),
        dg.TableColumn("column", "string", description="The column at fault, when one is."),
        dg.TableColumn("check", "string", description="The rule the row broke."),
        dg.TableColumn("reason", "string"),
        dg.TableColumn("raw_line", "string", description="The line as read (long lines cut)."),
    ]
)
_RAW_SHOWN = 500  # characters of a raw line in the table (the whole line stays in rejected_rows)


def rejected_rows_metadata(rows: list[RejectedRow]) -> dict[str, dg.MetadataValue]:
    """The first rejected rows of a load as a table (all of them are in the ``rejected_rows`` table)."""
    records = [
        dg.TableRecord(
            {
                "line": row.line_number,
                "column": row.column_name or "",
                "check": row.check_name,
                "reason": row.reason[:_RAW_SHOWN],
                "raw_line": row.raw_line[:_RAW_SHOWN],
            }
        )
        for row in rows[:REJECTED_ROWS_SHOWN]
    ]
    return {"rejected_rows": dg.MetadataValue.table(records, schema=REJECTED_ROWS_SCHEMA)}


def partition_metadata(
    engine: Engine,
    market: Market,
    done: list[FileResult],
    carried: Mapping[MarketFile, tuple[LatestLoad, str]],
) -> dict[str, dict[str, dg.MetadataValue]]:
    """partition key -> its materialization's metadata: loaded files' figures, skipped files' carried forward.

    Each load with rejected rows gets a table of its first rejected rows, read for all of them in one query.
    """
    metadata: dict[str, dict[str, dg.MetadataValue]] = {}
    # partition key -> (file_import_id, source_file, first import whose rejections it shows, rows rejected)
    imports: dict[str, tuple[int, str, int, int]] = {}
    for result in done:  # a load shows its own rejected rows (an append's: those of its new lines)
        assert result.outcome is not None
        metadata[result.file.partition_key] = file_metadata(result)
        own = result.outcome.file_import_id
        imports[result.file.partition_key] = (own, result.file.source_file, own, result.outcome.rows_rejected)
    for file, (load, reason) in carried.items():  # a skipped file shows its current chain's, as its figures count
        metadata[file.partition_key] = carried_forward_metadata(load, reason)
        imports[file.partition_key] = (load.file_import_id, load.source_file, load.first_import_id, load.rows_rejected)
    wanted = {import_id: (source, first) for import_id, source, first, rejected in imports.values() if rejected}
    samples = rejected_samples(engine, market.code, wanted, limit=REJECTED_ROWS_SHOWN)
    for key, (import_id, _, _, _) in imports.items():
        if samples.get(import_id):
            metadata[key] |= rejected_rows_metadata(samples[import_id])
    return metadata


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
        backfill_policy=backfill_policy(market),
        group_name="prices",
        kinds={"polars", "postgres"},
        tags={MARKET_TAG: market.code},
        pool=market_pool(market),
        op_tags=celery_queue_tags(market),
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
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetMaterialization | dg.AssetObservation]:
        files, missing = _resolve(context, data_root, market)
        excluded = [f for f in files if not config.selects(f.partition_key)]
        files = [f for f in files if config.selects(f.partition_key)]
        engine = warehouse.engine()
        for key, exc in missing.items():
            context.log.error(str(FileFailure(exc.error_class, str(exc))))
            target = FileTarget(market, key, file_path(market.folder, key), context.run_id)
            warehouse.warehouse().record_failure(target, None, classify(exc), utc_now())
        skipped: list[MarketFile] = []
        loaded = {} if config.force else loaded_states(engine, market.code)  # force: every file loads whole
        if not config.force:
            changed = [changed_since_load(loaded.get(f.source_file), f) for f in files]
            skipped = [f for f, c in zip(files, changed, strict=True) if not c]
            files = [f for f, c in zip(files, changed, strict=True) if c]
        if skipped:
            context.log.info(f"{len(skipped)} file(s) unchanged since their last load: skipped (force=True reloads)")
        # One query for the figures carried forward: each skipped file's chain (its latest full load and appends).
        previous = latest_loads(engine, market.code) if skipped or excluded else {}
        results, seconds, progress = load_files(context, market, config, warehouse, files, loaded)
        sla_minutes = config.sla_target_minutes or market.sla_minutes
        if seconds > sla_minutes * 60:
            context.log.warning(f"{market.code}: the run took {seconds / 60:.1f} min, over its {sla_minutes} min SLA")

        done = [r for r in results if r.status == "succeeded"]
        failed = [r for r in results if r.status != "succeeded"]
        carried = {
            file: (previous[file.source_file], reason)
            for files_of, reason in ((skipped, "unchanged"), (excluded, "excluded"))
            for file in files_of
            if file.source_file in previous
        }
        metadata = partition_metadata(engine, market, done, carried)
        for file in excluded:  # never loaded: nothing to carry forward
            metadata.setdefault(file.partition_key, {"skipped": dg.MetadataValue.text("excluded")})
        # Dagster reads the run's partitions for each file's metadata and materialization: read once here; and the
        # files' materializations are stored as one batch (one transaction), not one transaction per file.
        with partitions_read_once(context.instance), batched_event_writes():
            for key, meta in metadata.items():
                context.add_asset_metadata(meta, partition_key=key)
            yield from check_results(market, engine, context.run_id, context.instance)
            summary = progress.summary(seconds, skipped=len(skipped), failed=len(failed) + len(missing))
            if not failed and not missing:
                yield dg.MaterializeResult(metadata=summary)
                return
            # Partial success: record what did load, then fail the run naming every file that did not.
            for key, meta in metadata.items():
                yield dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=meta)
            errors = file_failures(failed)
            errors |= {key: FileFailure(exc.error_class, str(exc)) for key, exc in missing.items()}
            yield from failed_file_observations(context.asset_key, market, errors)
            classes = [r.error for r in failed if r.error] + [classify(exc) for exc in missing.values()]
            total = len(context.partition_keys)
            failure = files_failed(market, errors, total, summary, allow_retries=any(c.retryable for c in classes))
            raise retry_or_fail(context, market, classes, failure)

    return _market_prices
