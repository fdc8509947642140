"""The main job run in-process through Dagster: register each market's files as partitions and materialize them."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.settings import default_dagster_home


@dataclasses.dataclass
class MarketRunSummary:
    """What one market's import did, from the audit of its runs."""

    market: str
    files: int = 0  # files found in the market's folder
    files_loaded: int = 0
    files_failed: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    run_ids: list[str] = dataclasses.field(default_factory=list)
    failures: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def files_skipped(self) -> int:
        """Files left alone because their content is unchanged since their last load."""
        return max(self.files - self.files_loaded - self.files_failed, 0)

    @property
    def rows_per_second(self) -> float:
        """Rows read per wall-clock second of the market's runs."""
        return self.rows_read / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, object]:
        """The ``--json`` shape of ``mytrader run``."""
        return {
            "files": self.files,
            "files_loaded": self.files_loaded,
            "files_skipped": self.files_skipped,
            "files_failed": self.files_failed,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "failures": self.failures,
        }


def local_instance() -> dg.DagsterInstance:
    """The instance at ``DAGSTER_HOME``, else a persistent one in the local state folder."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    home = default_dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.from_config(str(home))


def contiguous_ranges(all_keys: list[str], wanted: set[str]) -> list[tuple[str, str]]:
    """Split ``wanted`` into (first, last) ranges of consecutive keys in ``all_keys`` order."""
    ranges: list[tuple[str, str]] = []
    start: str | None = None
    previous: str | None = None
    for key in all_keys:
        if key in wanted:
            start = start or key
            previous = key
        elif start is not None and previous is not None:
            ranges.append((start, previous))
            start = None
    if start is not None and previous is not None:
        ranges.append((start, previous))
    return ranges


def register_partitions(instance: dg.DagsterInstance, market: Market, keys: list[str]) -> list[str]:
    """Add partitions for ``keys`` not yet known; returns all of the market's partition keys in order."""
    name = files_partitions(market).name
    assert name is not None
    known = set(instance.get_dynamic_partitions(name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(name, new)
    return list(instance.get_dynamic_partitions(name))


def _summarize(engine: sa.Engine, summary: MarketRunSummary) -> None:
    query = sa.select(file_imports).where(file_imports.c.run_id.in_(summary.run_ids))
    with engine.connect() as conn:
        for row in conn.execute(query):
            if row.status == "succeeded":
                summary.files_loaded += 1
                summary.rows_read += row.rows_read
                summary.rows_loaded += row.rows_loaded
                summary.rows_rejected += row.rows_rejected
            else:
                summary.files_failed += 1
                summary.failures[row.source_file] = f"{row.error_class}: {row.error_message}"


def run_import(
    data_root: Path,
    database_url: str,
    registry: MarketRegistry,
    markets: list[Market],
    *,
    force: bool = False,
    log_level: str = "INFO",
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> list[MarketRunSummary]:
    """Materialize every file partition of ``markets`` in-process through Dagster; one summary per market."""
    warehouse = WarehouseResource(database_url=database_url)
    defs = build_defs(
        registry,
        resource_overrides={"warehouse": warehouse, "data_root": DataRootResource(data_root=str(data_root))},
    )
    instance = instance or local_instance()
    summaries: list[MarketRunSummary] = []
    for market in markets:
        summary = MarketRunSummary(market.code)
        files = scan_market(data_root, market)
        if not files:
            echo(f"{market.code}: no files in {market.directory(data_root)}")
            summaries.append(summary)
            continue
        summary.files = len(files)
        all_keys = register_partitions(instance, market, [f.partition_key for f in files])
        job = defs.resolve_job_def(import_job_name(market))
        started = time.perf_counter()
        for first, last in contiguous_ranges(all_keys, {f.partition_key for f in files}):
            result = job.execute_in_process(
                instance=instance,
                run_config={
                    "ops": {market.asset_name: {"config": {"force": force}}},
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                },
                tags=partition_range_tags(first, last),
                raise_on_error=False,
            )
            summary.run_ids.append(result.run_id)
            if not result.success:
                echo(f"{market.code}: run {result.run_id} failed")
        summary.seconds = time.perf_counter() - started
        _summarize(warehouse.engine(), summary)
        summaries.append(summary)
    return summaries
