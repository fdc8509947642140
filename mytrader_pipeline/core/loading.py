"""Atomic, idempotent per-file writes: PostgreSQL COPY fast path and a generic SQLAlchemy path, with the audit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
from collections.abc import Callable, Iterable
from typing import Any

import polars as pl
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from mytrader_pipeline.core import pgbinary
from mytrader_pipeline.core.appending import AppendRefused, LoadedState
from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.db import (
    KEY_COLUMNS,
    VALUE_COLUMNS,
    file_imports,
    historical_market_data,
    is_postgres,
    rejected_rows,
)
from mytrader_pipeline.core.errors import Classified
from mytrader_pipeline.core.parsing import FileMeta
from mytrader_pipeline.core.validation import ValidatedChunk
from mytrader_pipeline.core.write_gate import sole_writer
from mytrader_pipeline.markets import Market

TABLE_COLUMNS: tuple[str, ...] = tuple(c.name for c in historical_market_data.columns)
# The fast path's COPY leaves ingested_at to the column's server default: one less column to encode and parse.
COPY_COLUMNS: tuple[str, ...] = tuple(c for c in TABLE_COLUMNS if c != "ingested_at")
COPY_TYPES: tuple[str, ...] = tuple(pgbinary.pg_type(historical_market_data.c[c]) for c in COPY_COLUMNS)
REJECTED_COLUMNS: tuple[str, ...] = tuple(c.name for c in rejected_rows.columns if c.name != "id")
_STAGE = "mytrader_stage_prices"
_COPY_SLICE_ROWS = 65_536  # rows encoded at once for binary COPY (about 16 MiB of a wide BIST slice)
FILE_LOCK_CLASS = 7_318_202  # pg_advisory_xact_lock(class, hashtext(file)): one load of a file at a time


def upsert_statement(dialect: str, rows: sa.Select[Any] | None = None) -> sa.Insert:
    """The one upsert rule of ``historical_market_data``, for ``dialect`` (``postgresql`` or ``sqlite``).

    A row new to its key (market, symbol, timeframe, day) is inserted; one already stored replaces it when it comes
    from a source of higher priority (a lower number), or of the same priority with other values (a corrected
    file), and is otherwise left alone, so an identical reload writes nothing. The rows are the statement's
    parameters, or ``rows`` (``INSERT ... SELECT``, the fast path's staged rows) when given.
    """
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"no upsert for the {dialect!r} dialect; use PostgreSQL or SQLite")
    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(historical_market_data)
    if rows is not None:
        insert = insert.from_select(list(TABLE_COLUMNS), rows)
    table, new = historical_market_data.c, insert.excluded
    changed = sa.or_(*[table[c].is_distinct_from(new[c]) for c in VALUE_COLUMNS])
    return insert.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={c: new[c] for c in TABLE_COLUMNS if c not in KEY_COLUMNS},
        where=sa.or_(
            new.source_priority < table.source_priority,
            sa.and_(new.source_priority == table.source_priority, changed),
        ),
    )


class LoadStopped(Exception):
    """The run was stopped while the file loaded: its transaction was rolled back instead of committed."""


@dataclasses.dataclass(frozen=True)
class FileTarget:
    """Which file is loaded, for which market, by which run."""

    market: Market
    partition_key: str
    source_file: str  # path relative to the data root, e.g. "BIST/THYAO.csv"
    run_id: str


@dataclasses.dataclass
class LoadOutcome:
    """What one file's load did. ``rows_read == rows_loaded + rows_rejected`` always holds."""

    file_import_id: int
    rows_read: int = 0
    rows_loaded: int = 0  # accepted rows handed to the upsert
    rows_written: int = 0  # of those, rows inserted or changed (0 on an identical reload)
    rows_rejected: int = 0
    date_min: dt.date | None = None
    date_max: dt.date | None = None
    quality_score: float | None = None
    mode: str = "full"  # "append": the counts are the new lines' (``core.accounting.file_figures`` sums the file's)
    extends_import_id: int | None = None  # the import an append continues


def with_provenance(frame: pl.DataFrame, target: FileTarget, ingested_at: dt.datetime | None) -> pl.DataFrame:
    """The table's columns for ``frame``; without ``ingested_at`` when it is None (the server's default fills it)."""
    market = target.market
    provenance = [
        pl.lit(market.code).alias("market"),
        pl.lit(market.timeframe).alias("timeframe"),
        pl.lit(market.currency).alias("currency"),
        pl.lit(market.data_source).alias("data_source"),
        pl.lit(market.source_priority, pl.Int16).alias("source_priority"),
        pl.lit(target.source_file).alias("source_file"),
        pl.lit(target.run_id).alias("run_id"),
    ]
    if ingested_at is None:
        return frame.rename({"line_no": "source_line"}).with_columns(provenance).select(COPY_COLUMNS)
    provenance.append(pl.lit(ingested_at).alias("ingested_at"))
    return frame.rename({"line_no": "source_line"}).with_columns(provenance).select(TABLE_COLUMNS)


def _printable(text: pl.Expr) -> pl.Expr:
    """``text`` with each NUL written as the four characters ``\\x00``: PostgreSQL text cannot hold NUL."""
    return text.str.replace_all("\x00", "\\x00", literal=True)


def rejections_frame(frame: pl.DataFrame, target: FileTarget, import_id: int, at: dt.datetime) -> pl.DataFrame:
    return frame.select(
        pl.lit(import_id, pl.Int64).alias("file_import_id"),
        pl.lit(target.market.code).alias("market"),
        pl.lit(target.source_file).alias("source_file"),
        pl.col("line_no").alias("line_number"),
        pl.col("column").alias("column_name"),
        pl.col("check").alias("check_name"),
        _printable(pl.col("reason")).alias("reason"),
        _printable(pl.col("raw")).alias("raw_line"),
        pl.lit(target.run_id).alias("run_id"),
        pl.lit(at).alias("rejected_at"),
    )


class Warehouse:
    """Writes files into the warehouse, one transaction per file, and keeps the import audit."""

    def __init__(self, engine: Engine, *, synchronous_commit: bool = False) -> None:
        """``synchronous_commit=False`` (PostgreSQL) lets a file's commit return before its WAL reaches the disk.

        Each file stays atomic and its audit row commits with it: a crash of the database server can lose only
        the last moments' files whole (rows and audit row together), and the next import loads them again, because
        the audit no longer shows them. A crash of the loader loses nothing that was committed.
        """
        self.engine = engine
        self.fast_path = is_postgres(engine)
        self.synchronous_commit = synchronous_commit

    # -- public ----------------------------------------------------------------------------------------------
    def load_file(
        self,
        target: FileTarget,
        meta: FileMeta,
        chunks: Iterable[ValidatedChunk],
        started_at: dt.datetime,
        should_stop: Callable[[], bool] | None = None,
        previous: LoadedState | None = None,
    ) -> LoadOutcome:
        """Load a file's validated chunks atomically: its rows, its rejections and its audit row, or nothing.

        A full load replaces the file's rejected rows with its own. When ``meta.appended`` (the chunks are the lines
        after what ``previous`` loaded), the load is an append: the earlier rejected rows stay (they are still the
        file's), and its audit row has ``load_mode='append'``, the counts of the new lines and ``extends_import_id``.
        ``AppendRefused`` (nothing written) when another load of the file committed since ``previous``.

        ``chunks`` may be a generator that reads the file lazily; ``meta`` is complete once it is exhausted.
        ``should_stop`` is asked inside the transaction, after the last write and right before COMMIT: if it says
        the run is being stopped, the file is rolled back whole and ``LoadStopped`` raised, so no file commits after
        a stop was seen, however long its load took (a file held on a lock across the stop included).
        """
        ingested_at = utc_now()
        # SQLite: one file transaction at a time in this process, handed over at each commit (core.write_gate).
        with sole_writer(self.engine), self.engine.connect() as conn, conn.begin():
            if self.fast_path and not self.synchronous_commit:
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            if self.fast_path:
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:c, hashtext(:f))"),
                    {"c": FILE_LOCK_CLASS, "f": f"{target.market.code}/{target.source_file}"},
                )
            import_id = self._open_audit(conn, target, started_at)
            outcome = LoadOutcome(file_import_id=import_id)
            writer = _writer(conn, target, fast_path=self.fast_path)
            quality_sum = 0.0
            for chunk in chunks:
                if chunk.rejected.height:
                    writer.write_rejected(rejections_frame(chunk.rejected, target, import_id, ingested_at))
                if chunk.accepted.height:
                    rows = with_provenance(chunk.accepted, target, None if self.fast_path else ingested_at)
                    outcome.rows_written += writer.write_rows(rows)
                    del rows
                quality_sum += tally(outcome, chunk)
                del chunk  # free it before the generator reads the next one (bounded memory when streaming)
            outcome.rows_written += writer.finish()
            extends = self._extends(conn, target, meta, previous)
            if extends is None:
                conn.execute(
                    sa.delete(rejected_rows).where(
                        rejected_rows.c.market == target.market.code,
                        rejected_rows.c.source_file == target.source_file,
                        rejected_rows.c.file_import_id != import_id,
                    )
                )
            finish_outcome(outcome, quality_sum, extends)
            conn.execute(
                sa.update(file_imports)
                .where(file_imports.c.id == import_id)
                .values(**audit_values(meta, outcome, started_at))
            )
            if should_stop is not None and should_stop():
                raise LoadStopped(f"{target.source_file}: the run was stopped before the file's commit")
        return outcome

    def record_failure(
        self,
        target: FileTarget,
        meta: FileMeta | None,
        error: Classified,
        started_at: dt.datetime,
    ) -> int:
        """Record a failed load in the audit (its data was rolled back); returns the audit row id."""
        now = utc_now()
        with sole_writer(self.engine), self.engine.begin() as conn:
            return int(
                conn.execute(
                    sa.insert(file_imports)
                    .values(
                        **self._identity(target),
                        fingerprint=meta.sha256 if meta and meta.sha256 else None,
                        size_bytes=meta.size if meta else None,
                        file_format=meta.format.value if meta and meta.format else None,
                        encoding=meta.encoding if meta else None,
                        status="failed",
                        error_class=error.error_class.value,
                        error_message=error.message[:4000],
                        started_at=started_at,
                        finished_at=now,
                        duration_seconds=(now - started_at).total_seconds(),
                    )
                    .returning(file_imports.c.id)
                ).scalar_one()
            )

    # -- audit -----------------------------------------------------------------------------------------------
    @staticmethod
    def _extends(conn: Connection, target: FileTarget, meta: FileMeta, previous: LoadedState | None) -> int | None:
        """The import an append continues (None for a full load); refused unless it is still the file's latest."""
        if not meta.appended:
            return None
        assert previous is not None
        latest = conn.execute(
            sa.select(sa.func.max(file_imports.c.id)).where(
                file_imports.c.market == target.market.code,
                file_imports.c.source_file == target.source_file,
                file_imports.c.status == "succeeded",
            )
        ).scalar_one()
        if latest != previous.import_id:
            raise AppendRefused(
                f"{target.source_file}: loaded again (import {latest}) since import {previous.import_id}"
            )
        return previous.import_id

    @staticmethod
    def _identity(target: FileTarget) -> dict[str, Any]:
        return {
            "market": target.market.code,
            "partition_key": target.partition_key,
            "source_file": target.source_file,
            "run_id": target.run_id,
        }

    def _open_audit(self, conn: Connection, target: FileTarget, started_at: dt.datetime) -> int:
        # Inserted first so rejected rows can reference it; nobody sees it before the file's commit.
        stmt = (
            sa.insert(file_imports)
            .values(**self._identity(target), status="loading", started_at=started_at, finished_at=started_at)
            .returning(file_imports.c.id)
        )
        return int(conn.execute(stmt).scalar_one())


def tally_figures() -> list[pl.Expr]:
    """What a load's figures take from its accepted rows: the earliest and latest trade date and the sum of the rows'
    quality (``lo``, ``hi``, ``q``), over a chunk (``tally``) or per file of a group (``core.group_loading``)."""
    return [
        pl.col("trade_date").min().alias("lo"),
        pl.col("trade_date").max().alias("hi"),
        pl.col("quality_score").cast(pl.Float64).sum().alias("q"),
    ]


def tally(outcome: LoadOutcome, chunk: ValidatedChunk) -> float:
    """Add ``chunk``'s rows and trade-date range to ``outcome``; returns the sum of its accepted rows' quality."""
    quality = 0.0
    if chunk.accepted.height:
        lo, hi, quality = chunk.accepted.select(tally_figures()).row(0)
        outcome.date_min = min(filter(None, (outcome.date_min, lo)), default=None)
        outcome.date_max = max(filter(None, (outcome.date_max, hi)), default=None)
    outcome.rows_loaded += chunk.accepted.height
    outcome.rows_rejected += chunk.rejected.height
    return quality or 0.0


def finish_outcome(outcome: LoadOutcome, quality_sum: float, extends: int | None) -> None:
    """Set the totals of a file's tallied load: rows read, quality averaged over every row read, its mode."""
    outcome.extends_import_id = extends
    outcome.mode = "full" if extends is None else "append"
    outcome.rows_read = outcome.rows_loaded + outcome.rows_rejected
    if outcome.rows_read:
        # Row quality averaged over every row read: rejected rows count as 0.
        outcome.quality_score = round(quality_sum / outcome.rows_read, 2)


def audit_values(meta: FileMeta, outcome: LoadOutcome, started_at: dt.datetime) -> dict[str, Any]:
    """The columns of a succeeded load's audit row (``file_imports``), set when it commits."""
    finished = utc_now()
    seconds = max((finished - started_at).total_seconds(), 1e-6)
    return {
        "fingerprint": meta.sha256,
        "size_bytes": meta.size,
        "file_format": meta.format.value if meta.format else None,
        "encoding": meta.encoding,
        "rows_read": outcome.rows_read,
        "rows_loaded": outcome.rows_loaded,
        "rows_written": outcome.rows_written,
        "rows_rejected": outcome.rows_rejected,
        "date_min": outcome.date_min,
        "date_max": outcome.date_max,
        "quality_score": outcome.quality_score,
        "duration_seconds": seconds,
        "rows_per_second": outcome.rows_read / seconds,
        "status": "succeeded",
        "finished_at": finished,
        "line_count": meta.line_count,
        "ends_with_newline": meta.ends_with_newline,
        "load_mode": outcome.mode,
        "extends_import_id": outcome.extends_import_id,
        "date_format": meta.date_format,
        "decimal_comma": meta.decimal_comma,
    }


def _csv_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.f%z")
    return buffer.getvalue()


class PostgresWriter:
    """COPY straight into the table for symbols the warehouse has never seen; else COPY to a stage, then upsert."""

    def __init__(self, conn: Connection, target: FileTarget) -> None:
        self.conn = conn
        self.target = target
        self.raw = conn.connection.driver_connection  # psycopg.Connection
        self.fresh: dict[str, bool] = {}
        self.staged = False

    def _copy(self, table: str, columns: tuple[str, ...], frame: pl.DataFrame) -> None:
        """COPY ``frame`` into ``table``: prices in binary (cheap for the server to parse), the rest as CSV."""
        cols = ", ".join(columns)
        binary = columns == COPY_COLUMNS
        fmt = "binary" if binary else "csv"
        with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT {fmt})") as copy:
            if not binary:
                copy.write(_csv_bytes(frame))
                return
            copy.write(pgbinary.HEADER)
            for piece in frame.iter_slices(_COPY_SLICE_ROWS):  # binary rows are wide: encode a slice at a time
                for buffer in pgbinary.encode_rows(piece, COPY_TYPES):
                    copy.write(buffer)
            copy.write(pgbinary.TRAILER)

    def write_rejected(self, frame: pl.DataFrame) -> None:
        self._copy(rejected_rows.name, REJECTED_COLUMNS, frame)

    def all_unseen(self, symbols: list[str]) -> bool:
        """Whether the warehouse holds no row of any of ``symbols`` (for this market): their rows may be COPYed."""
        unknown = [s for s in symbols if s not in self.fresh]
        if unknown:
            with self.raw.cursor() as cur:
                # One index probe per symbol (LATERAL ... LIMIT 1): a semi-join form lets the planner, with no
                # statistics for rows COPYed in this transaction, read every row of the market instead.
                cur.execute(
                    "SELECT s FROM unnest(%s::text[]) AS s, LATERAL (SELECT 1 FROM historical_market_data h"
                    " WHERE h.market = %s AND h.symbol = s AND h.timeframe = %s LIMIT 1) AS found",
                    (unknown, self.target.market.code, self.target.market.timeframe),
                    # Never a prepared (generic) plan: one made while the table was empty scans it whole later.
                    prepare=False,
                )
                present = {row[0] for row in cur.fetchall()}
            self.fresh.update({s: s not in present for s in unknown})
        return all(self.fresh[s] for s in symbols)

    def copy_fresh(self, frame: pl.DataFrame) -> bool:
        """COPY rows of symbols new to the warehouse straight into it; False (nothing written) when another run's
        first load of one of them won the race meanwhile: stage them for the upsert instead."""
        savepoint = self.conn.begin_nested()
        try:
            self._copy(historical_market_data.name, COPY_COLUMNS, frame)
            savepoint.commit()
            return True
        except Exception as exc:
            savepoint.rollback()
            if not isinstance(exc, psycopg.errors.UniqueViolation):
                raise
        self.fresh.update({s: False for s in frame.get_column("symbol").unique().to_list()})
        return False

    def stage(self, frame: pl.DataFrame) -> None:
        """COPY rows into the transaction's stage, for ``staged_upsert``."""
        if not self.staged:
            self.conn.exec_driver_sql(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE historical_market_data INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            )
            self.staged = True
        self._copy(_STAGE, COPY_COLUMNS, frame)

    @staticmethod
    def staged_upsert() -> sa.Insert:
        """The upsert of every staged row into the table."""
        stage = sa.table(_STAGE, *(sa.column(c) for c in TABLE_COLUMNS))
        return upsert_statement("postgresql", sa.select(*stage.c))

    def write_rows(self, frame: pl.DataFrame) -> int:
        if self.all_unseen(frame.get_column("symbol").unique().to_list()) and self.copy_fresh(frame):
            return frame.height
        self.stage(frame)
        return 0

    def finish(self) -> int:
        if not self.staged:
            return 0
        # SQLAlchemy keeps an INSERT's rowcount only when asked: rows inserted or changed, 0 on an identical reload.
        result = self.conn.execute(self.staged_upsert().execution_options(preserve_rowcount=True))
        return int(result.rowcount)


def _writer(conn: Connection, target: FileTarget, *, fast_path: bool) -> _Writer:
    """The writer of a file's rows for ``conn``: COPY on PostgreSQL, sqlite3's executemany on SQLite, else generic."""
    if fast_path:
        return PostgresWriter(conn, target)
    if conn.dialect.name == "sqlite":
        return _SqliteWriter(conn, target)
    return _GenericWriter(conn, target)


class _GenericWriter:
    """Batched SQLAlchemy upserts (PostgreSQL without the fast path; rejected rows on SQLite)."""

    def __init__(self, conn: Connection, target: FileTarget) -> None:
        self.conn = conn
        self.target = target
        self.batch_size = target.market.batch_size
        self.upsert = upsert_statement(conn.dialect.name)

    def write_rejected(self, frame: pl.DataFrame) -> None:
        for batch in frame.iter_slices(self.batch_size):
            self.conn.execute(sa.insert(rejected_rows), batch.to_dicts())

    def write_rows(self, frame: pl.DataFrame) -> int:
        written = 0
        for batch in frame.iter_slices(self.batch_size):
            result = self.conn.execute(self.upsert, batch.to_dicts())
            written += max(int(result.rowcount), 0)
        return written

    def finish(self) -> int:
        return 0


@functools.cache
def _sqlite_upsert_sql(columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    """The upsert rule compiled once per column set for SQLite, its ``?`` parameters in ``columns`` order.

    A table column left out takes its default in the row inserted and in ``excluded`` (NULL: every column that
    can be left out is nullable without a default), exactly as if NULL were bound for it.
    """
    compiled = upsert_statement("sqlite").compile(dialect=sqlite.dialect(), column_keys=list(columns))
    if list(compiled.positiontup or ()) != list(columns):
        raise RuntimeError(f"the SQLite upsert's parameters are not {columns}: {compiled.positiontup}")
    return str(compiled)


def _sqlite_values(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` as SQLAlchemy stores it in SQLite (dates and timestamps as its ISO text), without all-NULL columns.

    Columns that hold only NULL (BIST's fifteen extra columns in every other market's files) are left to the
    insert's NULL default: a third fewer values to build and bind per row there, and the same rows stored.
    """
    frame = frame.with_columns(
        pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S%.6f"),
    )
    nulls = frame.null_count().row(0)
    return frame.select([name for name, count in zip(frame.columns, nulls, strict=True) if count < frame.height])


class _SqliteWriter(_GenericWriter):
    """Prepared batch upserts straight through sqlite3 (one ``executemany`` per batch), in the file's transaction.

    The same upsert rule as the other writers, compiled once; SQLAlchemy's per-row parameter handling took most of
    the embedded quickstart's time.
    """

    def __init__(self, conn: Connection, target: FileTarget) -> None:
        super().__init__(conn, target)
        self.cursor = conn.connection.driver_connection.cursor()  # sqlite3.Cursor, on the transaction's connection

    def write_rows(self, frame: pl.DataFrame) -> int:
        written = 0
        values = _sqlite_values(frame)
        upsert = _sqlite_upsert_sql(tuple(values.columns))
        for batch in values.iter_slices(self.batch_size):
            self.cursor.executemany(upsert, batch.rows())  # tuples made in Rust, not one by one
            written += max(self.cursor.rowcount, 0)
        return written

    def finish(self) -> int:
        self.cursor.close()
        return 0


_Writer = PostgresWriter | _GenericWriter
