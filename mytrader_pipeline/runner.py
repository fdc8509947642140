"""``mytrader run`` before and after Dagster: each market's changed files found, then each market's outcome summarized.

No Dagster here: a run over unchanged files (``report_unchanged``) needs none, and ``mytrader run`` imports
``local_runs`` (the Dagster side, seconds of imports) only when some file is to be loaded.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from mytrader_pipeline.core.accounting import changed_since_load, loaded_states
from mytrader_pipeline.core.appending import LoadedState, bytes_to_parse
from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.db import file_imports, shared_engine
from mytrader_pipeline.core.discovery import MarketFile, UnloadableEntry, scan_market_entries
from mytrader_pipeline.core.errors import ErrorClass, FileFailure, classify
from mytrader_pipeline.core.loading import FileTarget, Warehouse
from mytrader_pipeline.markets import Market
from mytrader_pipeline.run_summary import MarketRunSummary, RangeRun, RunFailure


def _reason(source_file: str, message: str | None) -> str:
    """The audit's message without the file's path it starts with (the line names the file already)."""
    message = " ".join((message or "").split())
    found = re.match(rf"^{re.escape(source_file)}(?::(\d+))?(?: column (\S+))?: (.*)$", message)
    if not found:
        return message
    line, column, rest = found.groups()
    where = ", ".join(part for part in (line and f"line {line}", column and f"column {column}") if part)
    return f"{where}: {rest}" if where else rest


def _summarize(engine: sa.Engine, summary: MarketRunSummary, runs: list[RangeRun]) -> None:
    """Count each file once, as the last of its audit rows in these runs says; a file with none was skipped."""
    logs = {run.run_id: run.log_file for run in runs}
    query = (
        sa.select(file_imports)
        .where(file_imports.c.run_id.in_(list(logs)), file_imports.c.market == summary.market)
        .order_by(file_imports.c.id)
    )
    with engine.connect() as conn:
        last = {row.source_file: row for row in conn.execute(query)}  # later attempts overwrite earlier ones
    for run in runs:
        for file in run.files:
            row = last.get(file.source_file)
            if row is None:
                if run.unhandled is not None:
                    summary.failed[file.source_file] = dataclasses.replace(run.unhandled, log_file=run.log_file)
                continue
            if row.status == "succeeded":
                summary.files_loaded += 1
                summary.rows_read += row.rows_read
                summary.rows_loaded += row.rows_loaded
                summary.rows_rejected += row.rows_rejected
            else:
                failure = FileFailure.from_json(
                    {"error_class": row.error_class, "message": _reason(file.source_file, row.error_message)}
                )
                summary.failed[file.source_file] = RunFailure(
                    dataclasses.replace(failure, error_class=failure.error_class or ErrorClass.UNEXPECTED),
                    logs.get(row.run_id),
                )


def changed_files(loaded: Mapping[str, LoadedState], market: Market, files: list[MarketFile]) -> list[MarketFile]:
    """The files whose content differs from their latest succeeded load (``loaded``, by source file), or that never
    loaded: at most one hash each.

    Unchanged files never reach Dagster, so a run over them costs one read per file and no run, step or event. The
    files are hashed on two threads (reading and hashing release the GIL): most of a no-op's own time.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"hash-{market.code}") as pool:
        changed = list(pool.map(lambda f: changed_since_load(loaded.get(f.source_file), f), files))
    return [f for f, c in zip(files, changed, strict=True) if c]


def _record_unloadable(warehouse: Warehouse, market: Market, entries: list[UnloadableEntry], run_id: str) -> None:
    """Write a failed audit row for each entry that cannot be loaded (it never reaches Dagster)."""
    for entry in entries:
        target = FileTarget(market, entry.name, entry.source_file, run_id)
        warehouse.record_failure(target, None, classify(entry.error), utc_now())


@dataclasses.dataclass
class MarketPlan:
    """What ``plan_import`` found of one market before any run: its summary so far, files, and the changed ones."""

    market: Market
    summary: MarketRunSummary
    files: list[MarketFile]
    changed: set[str]  # partition keys of the files to load
    seconds: float  # of the scan and the comparison
    parse_bytes: int = 0  # about what loading the changed files parses (an append: only its new bytes)


def plan_import(
    data_root: Path,
    database_url: str,
    markets: list[Market],
    *,
    force: bool = False,
    echo: Callable[[str], None] = lambda _line: None,
) -> list[MarketPlan]:
    """Scan each market's folder and compare its files with their last loads: what a run has to load (no Dagster).

    Entries that cannot be loaded (not a regular file, outside the data root...) get their failed audit row here;
    ``force`` counts every file as changed.
    """
    engine = shared_engine(database_url)
    warehouse = Warehouse(engine)
    scan_run_id = f"scan-{uuid.uuid4()}"  # the audit rows of entries that cannot be loaded
    plans: list[MarketPlan] = []
    for market in markets:
        started = time.perf_counter()
        summary = MarketRunSummary(market.code)
        entries = scan_market_entries(data_root, market)
        files = entries.files
        summary.files = len(files) + len(entries.unloadable)
        if entries.unloadable:
            _record_unloadable(warehouse, market, entries.unloadable, scan_run_id)
            for entry in entries.unloadable:
                summary.failed[entry.source_file] = RunFailure(FileFailure(entry.error.error_class, entry.error.reason))
        if not files and not entries.unloadable:
            echo(f"{market.code}: no files in {market.directory(data_root)}")
        loaded = {} if force else loaded_states(engine, market.code)
        to_load = files if force else changed_files(loaded, market, files)
        parse = sum(bytes_to_parse(loaded.get(f.source_file), f.size) for f in to_load)
        changed = {f.partition_key for f in to_load}
        plans.append(MarketPlan(market, summary, files, changed, time.perf_counter() - started, parse))
    return plans


def finish_market(database_url: str, plan: MarketPlan, runs: list[RangeRun], seconds: float) -> MarketRunSummary:
    """``plan``'s summary completed with its runs' outcomes (from the audit) and the seconds they took."""
    summary = plan.summary
    summary.seconds = plan.seconds + seconds
    summary.run_ids = [run.run_id for run in runs]
    _summarize(shared_engine(database_url), summary, runs)
    summary.files_failed = len(summary.failed)
    return summary


def report_unchanged(
    database_url: str,
    plans: list[MarketPlan],
    on_market: Callable[[MarketRunSummary], None] = lambda _summary: None,
) -> list[MarketRunSummary]:
    """The summaries of a run that has nothing to load (no plan has a changed file): no Dagster run, no import."""
    assert not any(plan.changed for plan in plans), "changed files are loaded through local_runs.run_planned"
    summaries = [finish_market(database_url, plan, [], 0.0) for plan in plans]
    for summary in summaries:
        on_market(summary)
    return summaries
