"""Appends to several files of one market loaded in one PostgreSQL transaction: one COPY, one upsert, one audit write.

A daily run appends a line or two to each of hundreds of files; loaded one transaction per file, each costs a dozen
round trips to the database whatever its size. Here a group of appends shares them: every file still gets its own
audit row, rows, rejected rows and counts, exactly as ``Warehouse.load_file`` would write them for the append, and the
group commits or rolls back as a whole (so each file's load stays atomic). ``GroupRefused`` (or any error) means
nothing was written: the caller then loads the files one by one, which decides each file's own fate. Full loads are
not grouped (each keeps its transaction, so a stopped run keeps the files it committed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mytrader_pipeline.core.appending import LoadedState
from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.core.db import file_imports, historical_market_data
from mytrader_pipeline.core.loading import (
    FILE_LOCK_CLASS,
    FileTarget,
    LoadOutcome,
    LoadStopped,
    PostgresWriter,
    Warehouse,
    audit_values,
    finish_outcome,
    rejections_frame,
    tally,
    with_provenance,
)
from mytrader_pipeline.core.parsing import FileMeta
from mytrader_pipeline.core.validation import ValidatedChunk


class GroupRefused(Exception):
    """The group cannot load as one transaction (nothing was written): load its files one by one."""


@dataclasses.dataclass
class GroupItem:
    """One append of a group: where it goes, what was read of it, its validated chunks, what its loads so far read."""

    target: FileTarget
    meta: FileMeta  # ``meta.appended``: the chunks are the lines after what ``previous`` loaded
    chunks: list[ValidatedChunk]
    started_at: dt.datetime
    previous: LoadedState


def _lock_files(conn: Connection, items: list[GroupItem]) -> None:
    """``Warehouse.load_file``'s per-file advisory locks, taken in one sorted order (no deadlock between groups)."""
    names = sorted(f"{item.target.market.code}/{item.target.source_file}" for item in items)
    conn.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(:c, hashtext(f))"
            " FROM (SELECT f FROM unnest(CAST(:files AS text[])) AS f ORDER BY f) AS sorted"
        ),
        {"c": FILE_LOCK_CLASS, "files": names},
    )


def _open_audits(conn: Connection, items: list[GroupItem]) -> list[int]:
    """Each file's ``loading`` audit row (nobody sees them before the commit); their ids, in ``items`` order."""
    rows = [
        {
            "market": item.target.market.code,
            "partition_key": item.target.partition_key,
            "source_file": item.target.source_file,
            "run_id": item.target.run_id,
            "status": "loading",
            "started_at": item.started_at,
            "finished_at": item.started_at,
        }
        for item in items
    ]
    returning = sa.insert(file_imports).returning(file_imports.c.id, sort_by_parameter_order=True)
    return [int(row[0]) for row in conn.execute(returning, rows)]


def _extends(conn: Connection, items: list[GroupItem]) -> list[int]:
    """The import each append continues; refused unless it is still the file's latest succeeded one."""
    query = (
        sa.select(file_imports.c.source_file, sa.func.max(file_imports.c.id))
        .where(
            file_imports.c.market == items[0].target.market.code,
            file_imports.c.source_file.in_([item.target.source_file for item in items]),
            file_imports.c.status == "succeeded",
        )
        .group_by(file_imports.c.source_file)
    )
    latest = {source: int(import_id) for source, import_id in conn.execute(query)}
    for item in items:
        if latest.get(item.target.source_file) != item.previous.import_id:
            raise GroupRefused(f"{item.target.source_file}: loaded again since import {item.previous.import_id}")
    return [item.previous.import_id for item in items]


def _write_rows(conn: Connection, writer: PostgresWriter, frames: list[tuple[int, pl.DataFrame]]) -> dict[int, int]:
    """Rows written per item: files of symbols new to the warehouse by direct COPY, the others through the upsert."""
    symbols = {n: f.get_column("symbol").unique().to_list() for n, f in frames}
    writer.all_unseen([s for names in symbols.values() for s in names])  # one probe for the group's symbols
    fresh = [(n, f) for n, f in frames if writer.all_unseen(symbols[n])]  # answered from what it learnt
    written: dict[int, int] = {}
    if fresh and writer.copy_fresh(pl.concat([f for _, f in fresh])):
        written = {n: f.height for n, f in fresh}
    staged = [(n, f) for n, f in frames if n not in written]
    if not staged:
        return written
    writer.stage(pl.concat([f for _, f in staged]))
    changed = writer.staged_upsert().returning(historical_market_data.c.source_file).cte("changed")
    query = sa.select(changed.c.source_file, sa.func.count()).group_by(changed.c.source_file)
    counts = {source: int(count) for source, count in conn.execute(query)}
    return written | {n: int(counts.get(f.get_column("source_file")[0], 0)) for n, f in staged}


def load_group(
    warehouse: Warehouse, items: list[GroupItem], should_stop: Callable[[], bool] | None = None
) -> list[LoadOutcome]:
    """Load ``items`` (appends to files of one market, on PostgreSQL) in one transaction; their outcomes, in order.

    An append keeps its file's earlier rejected rows (they are still the file's), as ``Warehouse.load_file`` does.

    Raises ``GroupRefused`` or the database's error with nothing written, and ``LoadStopped`` (rolled back) when
    ``should_stop`` says the run is being stopped right before the commit, as ``Warehouse.load_file`` does.
    """
    if not warehouse.fast_path or len({item.target.market.code for item in items}) > 1:
        raise GroupRefused("a group loads the files of one market into PostgreSQL")
    if not all(item.meta.appended for item in items):
        raise GroupRefused("only appends are loaded in a group")
    ingested_at = utc_now()
    with warehouse.engine.connect() as conn, conn.begin():
        if not warehouse.synchronous_commit:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        _lock_files(conn, items)
        extends = _extends(conn, items)
        ids = _open_audits(conn, items)
        outcomes = [LoadOutcome(file_import_id=import_id) for import_id in ids]
        writer = PostgresWriter(conn, items[0].target)
        rejected: list[pl.DataFrame] = []
        frames: list[tuple[int, pl.DataFrame]] = []
        quality: list[float] = []
        for n, (item, import_id, outcome) in enumerate(zip(items, ids, outcomes, strict=True)):
            accepted = [c.accepted for c in item.chunks if c.accepted.height]
            rejected += [
                rejections_frame(c.rejected, item.target, import_id, ingested_at)
                for c in item.chunks
                if c.rejected.height
            ]
            if accepted:
                frames.append((n, with_provenance(pl.concat(accepted), item.target, None)))
            quality.append(sum(tally(outcome, chunk) for chunk in item.chunks))
        if rejected:
            writer.write_rejected(pl.concat(rejected))
        for n, count in _write_rows(conn, writer, frames).items():
            outcomes[n].rows_written = count
        values: list[dict[str, Any]] = []
        for item, import_id, outcome, q, e in zip(items, ids, outcomes, quality, extends, strict=True):
            finish_outcome(outcome, q, e)
            values.append({"audit_id": import_id, **audit_values(item.meta, outcome, item.started_at)})
        columns = [c for c in values[0] if c != "audit_id"]
        update = (
            sa.update(file_imports)
            .where(file_imports.c.id == sa.bindparam("audit_id"))
            .values({c: sa.bindparam(f"v_{c}", type_=file_imports.c[c].type) for c in columns})
        )
        conn.execute(update, [{k if k == "audit_id" else f"v_{k}": v for k, v in row.items()} for row in values])
        if should_stop is not None and should_stop():
            raise LoadStopped("the run was stopped before the group's commit")
    return outcomes
