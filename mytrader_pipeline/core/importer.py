"""Importing a market's files: read, validate in batches, load each atomically, with bounded concurrency."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from mytrader_pipeline.core.appending import AppendRefused, LoadedState, bytes_to_parse
from mytrader_pipeline.core.discovery import MarketFile
from mytrader_pipeline.core.errors import Classified, ErrorClass, IngestError, classify
from mytrader_pipeline.core.fingerprints import assert_read_whole
from mytrader_pipeline.core.group_loading import GroupItem, accepted_rows, load_group
from mytrader_pipeline.core.load_slots import machine_slot
from mytrader_pipeline.core.loading import FileTarget, LoadOutcome, LoadStopped, Warehouse
from mytrader_pipeline.core.parsing import (
    DEFAULT_CHUNK_BYTES,
    CsvFileReader,
    FileMeta,
    PendingTail,
    RawChunk,
    parse_tails,
    type_chunks,
)
from mytrader_pipeline.core.validation import ValidatedChunk, validate_chunks
from mytrader_pipeline.markets import Market

# What stops the process rather than fails a file: re-raised wherever a file's failure is contained.
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)
# Failures that are bugs (ours or a library's): their stack trace goes with the result, to be logged.
_BUGS = frozenset({ErrorClass.UNEXPECTED, ErrorClass.LIBRARY_PANIC})

# Small files are validated together until a group reaches this many bytes (pandera's per-call cost dominates
# small files); a file larger than one chunk is streamed chunk by chunk instead, in bounded memory. A group in
# flight costs about 10-12 x its bytes (raw lines, text columns, typed and validated frames, COPY encoding), and up
# to `concurrency` groups are in flight: at 16 MiB, 500 NASDAQ files at concurrency 4 peaked at 913 MiB in the
# loader alone (1,070 MiB for the whole command at scale 10), at 8 MiB 540 MiB, and no slower.
GROUP_BYTES = 8 * 1024 * 1024
FILE_BYTES = 4096  # what opening a file costs, counted as bytes to parse, when grouping appends
# Reading and hashing a byte costs about this fraction of parsing one: an append reads its file's loaded bytes
# (to check them) and parses only its new lines, so its share of a group counts both.
READ_COST_DIVISOR = 25
# Below this much to parse a group's fixed cost (a pandera call, a typing pass, a transaction) outweighs spreading
# its files over more workers: a daily run's small markets load their appends in one group, not one per worker.
MIN_GROUP_BYTES = 2 * 1024 * 1024
# Groups (or streamed files) in flight at once in this process when importers run side by side (``mytrader run``
# imports markets on threads), and on this machine when processes do (a deployment's runs: ``core.load_slots``): a
# group costs about 10-12 x its bytes and keeps a core busy, so sharing the default concurrency keeps the peak where
# one market's import puts it. An importer configured for more files at once still gets them.
GROUPS_IN_FLIGHT = 4


class _InFlight:
    """The groups being loaded in this process, by every importer: a slot waits while ``limit`` are."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.count = 0

    @contextlib.contextmanager
    def slot(self, limit: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.count < limit)
            self.count += 1
        try:
            yield
        finally:
            with self._changed:
                self.count -= 1
                self._changed.notify_all()


IN_FLIGHT = _InFlight()


@dataclasses.dataclass
class FileResult:
    """How one file's import ended."""

    file: MarketFile
    status: str  # "succeeded" | "failed" | "cancelled"
    seconds: float
    outcome: LoadOutcome | None = None
    error: Classified | None = None
    meta: FileMeta | None = None
    trace: str | None = None  # the stack trace of a failure that is a bug (unexpected, library_panic)

    @property
    def rows_read(self) -> int:
        """Rows read from the file (0 when it failed before loading)."""
        return self.outcome.rows_read if self.outcome else 0


@dataclasses.dataclass
class ImportOptions:
    """Knobs for one import."""

    concurrency: int = 2
    today: dt.date | None = None  # latest trade date accepted; default: today (UTC)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    group_bytes: int = GROUP_BYTES


@dataclasses.dataclass
class _ReadFile:
    """A small file read into raw chunks, waiting to be typed and validated with its group."""

    file: MarketFile
    meta: FileMeta
    raws: list[RawChunk]
    started: dt.datetime
    t0: float


ResultCallback = Callable[[FileResult], None]
StopCheck = Callable[[], bool]


def _group(
    files: list[MarketFile], options: ImportOptions, loaded: Mapping[str, LoadedState]
) -> list[list[MarketFile]]:
    """Small files in groups of about ``group_bytes`` to parse; each large file alone (it is streamed).

    A file that may be an append counts the bytes after its loaded ones, plus what opening it and reading its loaded
    bytes cost (``FILE_BYTES``, ``READ_COST_DIVISOR``), not its size: a daily run's hundreds of one-line tails are
    validated together, in a few calls instead of one per few files. Groups are made small enough that every worker
    gets one, unless that would make them smaller than ``MIN_GROUP_BYTES`` (never larger than ``group_bytes``).
    """

    def cost(file: MarketFile) -> int:
        parse = bytes_to_parse(loaded.get(file.source_file), file.size)
        return file.size if parse == file.size else parse + FILE_BYTES + file.size // READ_COST_DIVISOR

    costs = {file.partition_key: cost(file) for file in files if file.size <= options.chunk_bytes}
    spread = sum(costs.values()) // max(1, options.concurrency)
    target = min(options.group_bytes, max(MIN_GROUP_BYTES, spread))
    groups: list[list[MarketFile]] = []
    current: list[MarketFile] = []
    size = 0
    for file in files:
        if file.partition_key not in costs:
            groups.append([file])
            continue
        current.append(file)
        size += costs[file.partition_key]
        if size >= target:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _earliest_dates(files: list[list[ValidatedChunk]]) -> list[dt.date | None]:
    """Each file's earliest accepted trade date (None without accepted rows): one polars pass for them all."""
    rows = accepted_rows(files, "_file")
    if rows is None:
        return [None] * len(files)
    found = dict(rows.group_by("_file").agg(pl.col("trade_date").min()).iter_rows())
    return [found.get(n) for n in range(len(files))]


def _repeats_a_loaded_date(earliest: dt.date | None, previous: LoadedState) -> bool:
    """Whether an append whose earliest new accepted row is dated ``earliest`` might repeat a date its file's
    earlier loads accepted (on or before their latest): then it must load whole (``AppendRefused``)."""
    return earliest is not None and previous.date_max is not None and earliest <= previous.date_max


class MarketImporter:
    """Imports files of one market into a warehouse."""

    def __init__(self, warehouse: Warehouse, market: Market, run_id: str, options: ImportOptions | None = None) -> None:
        self.warehouse = warehouse
        self.market = market
        self.run_id = run_id
        self.options = options or ImportOptions()
        self.today = self.options.today or dt.datetime.now(dt.UTC).date()
        self._lock = threading.Lock()
        self._loaded: Mapping[str, LoadedState] = {}

    def run(
        self,
        files: list[MarketFile],
        on_result: ResultCallback | None = None,
        should_stop: StopCheck | None = None,
        loaded: Mapping[str, LoadedState] | None = None,
    ) -> list[FileResult]:
        """Import ``files``; returns one result per file in input order. Never raises for a file's failure.

        ``loaded``: what earlier loads read of each file (by source file, ``core.accounting.loaded_states``); a file
        that starts with exactly those bytes loads only its new lines, as an append (``core.appending``).
        """
        results: dict[str, FileResult] = {}
        self._loaded = loaded or {}

        def report(result: FileResult) -> None:
            with self._lock:
                results[result.file.partition_key] = result
            if on_result:
                on_result(result)

        def work(group: list[MarketFile]) -> None:
            limit = max(GROUPS_IN_FLIGHT, self.options.concurrency)
            with IN_FLIGHT.slot(limit), machine_slot(limit, scope):
                load(group)

        def load(group: list[MarketFile]) -> None:
            started, t0 = dt.datetime.now(dt.UTC), time.perf_counter()
            try:
                if should_stop and should_stop():
                    for file in group:
                        report(FileResult(file, "cancelled", 0.0))
                    return
                if len(group) == 1 and group[0].size > self.options.chunk_bytes:
                    report(self._streamed(group[0], should_stop))
                else:
                    self._load_group(group, report, should_stop)
            except _FATAL:
                raise
            except BaseException as exc:  # a bug outside any one file's handling: the group's unfinished files fail
                for file in group:
                    with self._lock:
                        done = file.partition_key in results
                    if not done:
                        report(self._fail(file, None, exc, started, t0))

        scope = self.warehouse.engine.url.render_as_string(hide_password=True)  # the loads into this database
        groups = _group(files, self.options, self._loaded)
        workers = max(1, min(self.options.concurrency, len(groups)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"import-{self.market.code}") as pool:
            for future in [pool.submit(work, group) for group in groups]:
                future.result()
        return [results[f.partition_key] for f in files]

    # -- internals ---------------------------------------------------------------------------------------------
    def _target(self, file: MarketFile) -> FileTarget:
        return FileTarget(self.market, file.partition_key, file.source_file, self.run_id)

    def _reader(self, file: MarketFile, *, resume: bool = True) -> CsvFileReader:
        state = self._loaded.get(file.source_file) if resume else None
        return CsvFileReader(
            file.path,
            file.source_file,
            date_format=self.market.date_format,
            chunk_bytes=self.options.chunk_bytes,
            resume=state if state is not None and state.resumable(file.size) else None,
        )

    def _fail(
        self, file: MarketFile, meta: FileMeta | None, exc: BaseException, started: dt.datetime, t0: float
    ) -> FileResult:
        error = classify(exc)
        trace = "".join(traceback.format_exception(exc)) if error.error_class in _BUGS else None
        try:
            self.warehouse.record_failure(self._target(file), meta, error, started)
        except _FATAL:
            raise
        except BaseException as audit_exc:  # the database may be what failed; the result still says why
            error = Classified(error.error_class, f"{error.message} (audit not written: {classify(audit_exc).message})")
        return FileResult(file, "failed", time.perf_counter() - t0, error=error, meta=meta, trace=trace)

    def _load(
        self,
        file: MarketFile,
        meta: FileMeta,
        chunks: Iterator[ValidatedChunk] | list[ValidatedChunk],
        started: dt.datetime,
        t0: float,
        should_stop: StopCheck | None = None,
    ) -> FileResult:
        previous = self._loaded.get(file.source_file)
        try:
            target, checked = self._target(file), self._checked(file, meta, chunks)
            outcome = self.warehouse.load_file(
                target, meta, checked, started, should_stop=should_stop, previous=previous
            )
        except AppendRefused:  # rolled back: the file's new lines could read otherwise within the whole file
            return self._streamed(file, should_stop, resume=False, started=started, t0=t0)
        except LoadStopped:  # the run was stopped before the file's commit: rolled back whole, cancelled not failed
            return FileResult(file, "cancelled", time.perf_counter() - t0, meta=meta)
        except _FATAL:
            raise
        except BaseException as exc:  # native panics included: this file fails, its transaction rolled back
            return self._fail(file, meta, exc, started, t0)
        return FileResult(file, "succeeded", time.perf_counter() - t0, outcome=outcome, meta=meta)

    def _checked(
        self, file: MarketFile, meta: FileMeta, chunks: Iterator[ValidatedChunk] | list[ValidatedChunk]
    ) -> Iterator[ValidatedChunk]:
        """Pass chunks through, then refuse a file with no data rows or with every row rejected.

        An append's new lines are checked against what the file's earlier loads accepted instead: they must all be
        dated after it (else ``AppendRefused``: one might repeat an earlier date, and the file is loaded whole).
        """
        read = loaded = 0
        for chunk in chunks:
            if meta.appended:
                previous = self._loaded[file.source_file]
                if _repeats_a_loaded_date(chunk.accepted.get_column("trade_date").min(), previous):
                    raise AppendRefused(f"{file.source_file}: a new line is dated on or before {previous.date_max}")
            read += chunk.rows_read
            loaded += chunk.accepted.height
            yield chunk
        if meta.appended:
            return  # the earlier lines hold rows, and accepted ones
        if read == 0:
            raise IngestError(file.source_file, "has a header but no data rows", error_class=ErrorClass.EMPTY_FILE)
        if loaded == 0:
            raise IngestError(
                file.source_file,
                f"every one of its {read} rows was rejected (see the reasons by loading with a fixed file)",
                error_class=ErrorClass.ALL_ROWS_REJECTED,
            )

    def _load_group(self, group: list[MarketFile], report: ResultCallback, should_stop: StopCheck | None) -> None:
        """Read small files, then type and validate them all in one pass each, then load each file."""
        read: list[_ReadFile] = []
        tails: list[tuple[_ReadFile, PendingTail]] = []  # appends whose new lines are parsed together
        for file in group:
            started, t0 = dt.datetime.now(dt.UTC), time.perf_counter()
            reader = self._reader(file)
            try:
                try:
                    raws = reader.read_small()
                except AppendRefused:
                    reader = self._reader(file, resume=False)
                    raws = reader.read_small()
                assert_read_whole(file, reader.meta.size)
            except _FATAL:
                raise
            except BaseException as exc:
                report(self._fail(file, reader.meta, exc, started, t0))
                continue
            item = _ReadFile(file, reader.meta, [] if isinstance(raws, PendingTail) else raws, started, t0)
            read.append(item)
            if isinstance(raws, PendingTail):
                tails.append((item, raws))
        read = self._parse_tails(read, tails, report)
        validated = list(self._validated(read, report))
        if len(validated) > 1 and self.warehouse.fast_path:
            validated = self._load_together(validated, report, should_stop)
        for item, chunks in validated:
            if should_stop and should_stop():
                report(FileResult(item.file, "cancelled", time.perf_counter() - item.t0, meta=item.meta))
                continue
            report(self._load(item.file, item.meta, chunks, item.started, item.t0, should_stop))

    def _parse_tails(
        self, read: list[_ReadFile], tails: list[tuple[_ReadFile, PendingTail]], report: ResultCallback
    ) -> list[_ReadFile]:
        """``read`` with each pending tail parsed into its file's raw chunk, many in one call (``parse_tails``); when
        that fails, each alone, so a tail that cannot be parsed fails its own file only (dropped from the list)."""
        if not tails:
            return read
        try:
            for (item, _), chunk in zip(tails, parse_tails([tail for _, tail in tails]), strict=True):
                item.raws = [chunk]
            return read
        except _FATAL:
            raise
        except BaseException:
            pass
        failed: set[int] = set()
        for item, tail in tails:
            try:
                item.raws = [tail.parse()]
            except _FATAL:
                raise
            except BaseException as exc:
                report(self._fail(item.file, item.meta, exc, item.started, item.t0))
                failed.add(id(item))
        return [item for item in read if id(item) not in failed]

    def _load_together(
        self,
        validated: list[tuple[_ReadFile, list[ValidatedChunk]]],
        report: ResultCallback,
        should_stop: StopCheck | None,
    ) -> list[tuple[_ReadFile, list[ValidatedChunk]]]:
        """Load a group's appends in one transaction (``core.group_loading``); returns the files left to load alone.

        Only appends go together: a few new lines each, where a file's own transaction costs more than its rows.
        Full loads keep a transaction each, so a stopped run keeps every file it committed before the stop. A file
        that ``_checked`` refuses (an append that must load whole) is left to load alone, where it meets the same
        verdict. When the group fails as a whole, nothing was written and every file loads alone: the group is only
        a cheaper way to the result each file's own load gives.
        """
        if should_stop and should_stop():
            return validated  # each is reported cancelled
        together: list[tuple[_ReadFile, list[ValidatedChunk]]] = []
        alone: list[tuple[_ReadFile, list[ValidatedChunk]]] = []
        earliest = iter(_earliest_dates([chunks for item, chunks in validated if item.meta.appended]))
        for item, chunks in validated:
            if not item.meta.appended:
                alone.append((item, chunks))
                continue
            if _repeats_a_loaded_date(next(earliest), self._loaded[item.file.source_file]):
                alone.append((item, chunks))  # ``_checked`` refuses it alone, and it loads whole
                continue
            together.append((item, chunks))
        if len(together) < 2:
            return validated
        items = [
            GroupItem(self._target(i.file), i.meta, chunks, i.started, self._loaded[i.file.source_file])
            for i, chunks in together
        ]
        try:
            outcomes = load_group(self.warehouse, items, should_stop)
        except LoadStopped:
            for item, _ in together:
                report(FileResult(item.file, "cancelled", time.perf_counter() - item.t0, meta=item.meta))
            return alone
        except _FATAL:
            raise
        except BaseException:
            return validated
        for (item, _), outcome in zip(together, outcomes, strict=True):
            report(FileResult(item.file, "succeeded", time.perf_counter() - item.t0, outcome=outcome, meta=item.meta))
        return alone

    def _validated(
        self, read: list[_ReadFile], report: ResultCallback
    ) -> Iterator[tuple[_ReadFile, list[ValidatedChunk]]]:
        """Each file with its validated chunks: typed and validated in one batch, else file by file.

        When the batch fails (a panic or a bug on one file's data), every file is typed and validated again alone,
        so only the file at fault fails and its neighbours still load.
        """
        flat = [raw for item in read for raw in item.raws]
        try:
            files = [n for n, item in enumerate(read) for _ in item.raws]  # a file's chunks: one set of dates
            validated = iter(validate_chunks(type_chunks(flat), today=self.today, files=files))
            batch = [(item, [next(validated) for _ in item.raws]) for item in read]
        except _FATAL:
            raise
        except BaseException as exc:
            if len(read) == 1:
                item = read[0]
                report(self._fail(item.file, item.meta, exc, item.started, item.t0))
                return
            batch = None
        if batch is not None:
            # Memory stays one group deep: the raw text goes once typed, and each file's frames once it is loaded.
            del flat, validated
            for item in read:
                item.raws = []
            batch.reverse()
            while batch:
                yield batch.pop()
            return
        for item in read:
            try:
                chunks = validate_chunks(type_chunks(item.raws), today=self.today, files=[0] * len(item.raws))
            except _FATAL:
                raise
            except BaseException as exc:
                report(self._fail(item.file, item.meta, exc, item.started, item.t0))
                continue
            yield item, chunks

    def _streamed(
        self,
        file: MarketFile,
        should_stop: StopCheck | None,
        *,
        resume: bool = True,
        started: dt.datetime | None = None,
        t0: float | None = None,
    ) -> FileResult:
        """Load one file read chunk by chunk (a large file, or one whose append was refused)."""
        started, t0 = started or dt.datetime.now(dt.UTC), t0 if t0 is not None else time.perf_counter()
        reader = self._reader(file, resume=resume)

        def validated() -> Iterator[ValidatedChunk]:
            seen: pl.DataFrame | None = None
            for chunk in reader.chunks():
                (result,) = validate_chunks([chunk], today=self.today, seen_keys=[seen])
                del chunk
                keys = result.accepted.select("symbol", "trade_date")
                seen = keys if seen is None else pl.concat([seen, keys])
                yield result
                del result  # free this chunk before the next one is read: memory stays one chunk deep
            assert_read_whole(file, reader.meta.size)  # raised inside the file's transaction: nothing commits

        return self._load(file, reader.meta, validated(), started, t0, should_stop)
