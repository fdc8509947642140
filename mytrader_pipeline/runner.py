"""The main job run in-process through Dagster: register each market's files as partitions and materialize them."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from mytrader_pipeline.core.accounting import changed_since_load, loaded_states
from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.discovery import MarketFile, UnloadableEntry, scan_market_entries
from mytrader_pipeline.core.errors import ErrorClass, FileFailure, classify
from mytrader_pipeline.core.loading import FileTarget, Warehouse
from mytrader_pipeline.core.ranges import plan_ranges
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.event_log import KeptOpenSqliteEventLogStorage, batched_event_writes, kept_open_instance
from mytrader_pipeline.defs.failed_partitions import mark_unmaterialized_failed
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.run_logs import progress_console_logger, silent_console_logger, write_run_log
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.settings import default_dagster_home, get_settings, state_dir

# Failures that are bugs, not the data's fault: the line on stderr points to the stack trace in the run's log.
BUG_CLASSES = frozenset({ErrorClass.UNEXPECTED, ErrorClass.LIBRARY_PANIC})


@dataclasses.dataclass(frozen=True)
class RunFailure:
    """Why one file (or entry of a market folder) was not loaded, as its last attempt ended, and the run's log."""

    failure: FileFailure
    log_file: Path | None = None  # the run's log, for a failure that is a bug (its stack trace is there)

    def line(self, source_file: str) -> str:
        """``BIST/X.csv: unknown_format: <reason>``, plus where the stack trace is for a bug."""
        bug = self.failure.error_class in BUG_CLASSES
        where = f" (stack trace in {self.log_file})" if self.log_file and bug else ""
        return f"{source_file}: {self.failure}{where}"


@dataclasses.dataclass
class MarketRunSummary:
    """What one market's import did, per file (the last attempt of each file decides), from the audit of its runs."""

    market: str
    files: int = 0  # *.csv entries of the market's folder, loadable or not
    files_loaded: int = 0
    files_failed: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    run_ids: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, RunFailure] = dataclasses.field(default_factory=dict)

    @property
    def files_skipped(self) -> int:
        """Files left alone because their content is unchanged since their last load."""
        return self.files - self.files_loaded - self.files_failed

    @property
    def failures(self) -> dict[str, str]:
        """``class: reason`` of each failed file, by its path under the data root."""
        return {source: str(f.failure) for source, f in sorted(self.failed.items())}

    @property
    def rows_per_second(self) -> float:
        """Rows read per wall-clock second of the market's runs."""
        return self.rows_read / self.seconds if self.seconds else 0.0

    def failure_lines(self) -> list[str]:
        """One line per failed file, as ``mytrader run`` prints them."""
        return [failure.line(source) for source, failure in sorted(self.failed.items())]

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
    """The instance at ``DAGSTER_HOME``, else a persistent one in the local state folder.

    A home without a ``dagster.yaml`` (the quickstart's) gets Dagster's default SQLite storage with an event log that
    keeps its databases open (``defs.event_log``): each event is a commit, not a new connection and fsyncs.
    """
    home = get_settings().dagster_home or default_dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        return kept_open_instance(home.resolve())
    if get_settings().dagster_home:
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.from_config(str(home))


def _reason(source_file: str, message: str | None) -> str:
    """The audit's message without the file's path it starts with (the line names the file already)."""
    message = " ".join((message or "").split())
    found = re.match(rf"^{re.escape(source_file)}(?::(\d+))?(?: column (\S+))?: (.*)$", message)
    if not found:
        return message
    line, column, rest = found.groups()
    where = ", ".join(part for part in (line and f"line {line}", column and f"column {column}") if part)
    return f"{where}: {rest}" if where else rest


def _unhandled_failure(result: dg.ExecuteInProcessResult) -> RunFailure | None:
    """Why a failed run's files went untried: set unless the step decided about each file (naming ``failed_files``)."""
    if result.success:
        return None
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        user = data.user_failure_data
        metadata = user.metadata if user else {}
        if "failed_files" in metadata:
            return None
        found = FileFailure.from_json({k: v.value for k, v in metadata.items() if k in ("error_class", "message")})
        message = found.message or (user.description if user else None) or (data.error and data.error.message)
        message = " ".join((message or "the step failed").split())
        return RunFailure(FileFailure(found.error_class or ErrorClass.UNEXPECTED, message))
    return RunFailure(FileFailure(ErrorClass.UNEXPECTED, "the run failed before its step started"))


@dataclasses.dataclass
class _RangeRun:
    """One Dagster run over a contiguous range of a market's files."""

    run_id: str
    files: list[MarketFile]
    log_file: Path
    unhandled: RunFailure | None  # set when the run failed without a verdict per file


def _summarize(engine: sa.Engine, summary: MarketRunSummary, runs: list[_RangeRun]) -> None:
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


def changed_files(engine: sa.Engine, market: Market, files: list[MarketFile]) -> list[MarketFile]:
    """The files whose content differs from their latest succeeded load (or that never loaded): at most one hash each.

    Unchanged files never reach Dagster, so a run over them costs one read per file and no run, step or event. The
    files are hashed on two threads (reading and hashing release the GIL): most of a no-op's own time.
    """
    loaded = loaded_states(engine, market.code)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"hash-{market.code}") as pool:
        changed = list(pool.map(lambda f: changed_since_load(loaded.get(f.source_file), f), files))
    return [f for f, c in zip(files, changed, strict=True) if c]


def _record_unloadable(warehouse: Warehouse, market: Market, entries: list[UnloadableEntry], run_id: str) -> None:
    """Write a failed audit row for each entry that cannot be loaded (it never reaches Dagster)."""
    for entry in entries:
        target = FileTarget(market, entry.name, entry.source_file, run_id)
        warehouse.record_failure(target, None, classify(entry.error), utc_now())


def run_import(
    data_root: Path,
    database_url: str,
    registry: MarketRegistry,
    markets: list[Market],
    *,
    force: bool = False,
    log_level: str | None = "INFO",
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = lambda _line: None,
    progress: bool = True,
    on_market: Callable[[MarketRunSummary], None] = lambda _summary: None,
    logs_dir: Path | None = None,
) -> list[MarketRunSummary]:
    """Materialize every file partition of ``markets`` in-process through Dagster; one summary per market.

    ``log_level`` is the level of Dagster's console logger (every event, step failures with stack traces); None
    replaces it: with ``progress``, only the asset's progress lines and retry decisions, else nothing. Every run's
    full log is written to ``logs_dir`` (default: ``.mytrader/logs``) as ``<run id>.log``. ``on_market`` is called
    with each market's summary as soon as it is done.
    """
    warehouse = WarehouseResource(database_url=database_url)
    defs: dg.Definitions | None = None  # built for the first market with a file to load: a no-op builds none
    instance = instance or local_instance()
    logs_dir = logs_dir or state_dir() / "logs"
    scan_run_id = f"scan-{uuid.uuid4()}"  # the audit rows of entries that cannot be loaded
    summaries: list[MarketRunSummary] = []
    for market in markets:
        summary = MarketRunSummary(market.code)
        entries = scan_market_entries(data_root, market)
        files = entries.files
        summary.files = len(files) + len(entries.unloadable)
        if entries.unloadable:
            _record_unloadable(warehouse.warehouse(), market, entries.unloadable, scan_run_id)
            for entry in entries.unloadable:
                summary.failed[entry.source_file] = RunFailure(FileFailure(entry.error.error_class, entry.error.reason))
        if not files and not entries.unloadable:
            echo(f"{market.code}: no files in {market.directory(data_root)}")
        runs: list[_RangeRun] = []
        started = time.perf_counter()
        if files:
            all_keys = register_partitions(instance, market, [f.partition_key for f in files])
            by_key = {f.partition_key: f for f in files}
            changed = {f.partition_key for f in (files if force else changed_files(warehouse.engine(), market, files))}
            ranges = plan_ranges(all_keys, changed, present=by_key)  # only ranges with a changed file to load
            if ranges and defs is None:
                overrides = {"warehouse": warehouse, "data_root": DataRootResource(data_root=str(data_root))}
                defs = build_defs(registry, resource_overrides=overrides)
            job = defs.resolve_job_def(import_job_name(market)) if defs is not None else None
            run_config: dict[str, object] = {"ops": {market.asset_name: {"config": {"force": force}}}}
            if log_level is None and job is not None:
                quiet = progress_console_logger if progress else silent_console_logger
                job = job.with_logger_defs({"console": quiet})
                run_config["loggers"] = {"console": {}}  # named, else Dagster adds its default console logger
            else:
                run_config["loggers"] = {"console": {"config": {"log_level": log_level}}}
            storage = instance.event_log_storage
            kept_open = storage if isinstance(storage, KeptOpenSqliteEventLogStorage) else None
            for keys in ranges:
                assert job is not None
                with (
                    kept_open.partitions_read_once() if kept_open else contextlib.nullcontext(),
                    batched_event_writes() if kept_open else contextlib.nullcontext(),
                ):
                    result = job.execute_in_process(
                        instance=instance,
                        run_config=run_config,
                        tags=partition_range_tags(keys[0], keys[-1]),
                        raise_on_error=False,
                    )
                mark_unmaterialized_failed(instance, result, dg.AssetKey(market.asset_name), keys)
                events = None
                if kept_open:
                    kept_open.close_run_shard(result.run_id)  # its file as Dagster leaves it, for its watchers
                    events = kept_open.stored_events(result.run_id)  # not read back from the file
                log_file = write_run_log(instance, result.run_id, logs_dir, events)
                in_range = [by_key[k] for k in keys]
                runs.append(_RangeRun(result.run_id, in_range, log_file, _unhandled_failure(result)))
                summary.run_ids.append(result.run_id)
        summary.seconds = time.perf_counter() - started
        _summarize(warehouse.engine(), summary, runs)
        summary.files_failed = len(summary.failed)
        summaries.append(summary)
        on_market(summary)
    return summaries
