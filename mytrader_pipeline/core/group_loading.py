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
    tally_figures,
    with_provenance,
)
from mytrader_pipeline.core.parsing import FileMeta, row_owners
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


_ITEM = "_item"  # a row's item: its index in the group


def accepted_rows(files: list[list[ValidatedChunk]], owner: str = _ITEM) -> pl.DataFrame | None:
    """Every file's accepted rows (``files``: each file's validated chunks) in one frame, each row with its file's
    index in ``files`` (column ``owner``); None when there are none.

    A group's hundreds of appends are a row or two each: one frame, and a few polars calls for the whole group.
    """
    frames = [chunk.accepted for chunks in files for chunk in chunks if chunk.accepted.height]
    if not frames:
        return None
    owners = [n for n, chunks in enumerate(files) for chunk in chunks if chunk.accepted.height]
    heights = [frame.height for frame in frames]
    return pl.concat(frames, how="vertical").with_columns(row_owners(owner, owners, heights))


def _tally(items: list[GroupItem], outcomes: list[LoadOutcome], rows: pl.DataFrame | None) -> list[float]:
    """Each item's counts and dates on its outcome, as ``loading.tally`` sets them chunk by chunk; each item's sum of
    its accepted rows' quality."""
    for item, outcome in zip(items, outcomes, strict=True):
        outcome.rows_loaded = sum(chunk.accepted.height for chunk in item.chunks)
        outcome.rows_rejected = sum(chunk.rejected.height for chunk in item.chunks)
    quality = [0.0] * len(items)
    if rows is None:
        return quality
    for n, lo, hi, q in rows.group_by(_ITEM).agg(tally_figures()).iter_rows():
        outcomes[n].date_min, outcomes[n].date_max, quality[n] = lo, hi, q or 0.0
    return quality


def _provenance(rows: pl.DataFrame, items: list[GroupItem]) -> pl.DataFrame:
    """``rows`` (with ``_ITEM``) in the table's COPY layout: each row's provenance is its item's file's."""
    sources = pl.Series("source_file", [item.target.source_file for item in items]).gather(rows.get_column(_ITEM))
    return with_provenance(rows.drop(_ITEM), items[0].target, None).with_columns(sources)


def _write_rows(
    conn: Connection, writer: PostgresWriter, rows: pl.DataFrame, items: list[GroupItem], heights: list[int]
) -> dict[int, int]:
    """Rows written per item (``rows``: every item's accepted rows, with ``_ITEM``; ``heights``: each item's count
    of them): items whose symbols are all new to the warehouse by direct COPY, the others through the upsert."""
    by_item = rows.group_by(_ITEM, maintain_order=True).agg(pl.col("symbol").unique())
    symbols: dict[int, list[str]] = dict(by_item.iter_rows())
    writer.all_unseen([s for names in symbols.values() for s in names])  # one probe for the group's symbols
    fresh = [n for n, names in symbols.items() if writer.all_unseen(names)]  # answered from what it learnt
    written: dict[int, int] = {}
    if fresh and writer.copy_fresh(_provenance(rows.filter(pl.col(_ITEM).is_in(fresh)), items)):
        written = {n: heights[n] for n in fresh}
    staged = [n for n in symbols if n not in written]
    if not staged:
        return written
    writer.stage(_provenance(rows.filter(pl.col(_ITEM).is_in(staged)), items))
    changed = writer.staged_upsert().returning(historical_market_data.c.source_file).cte("changed")
    query = sa.select(changed.c.source_file, sa.func.count()).group_by(changed.c.source_file)
    counts = {source: int(count) for source, count in conn.execute(query)}
    return written | {n: counts.get(items[n].target.source_file, 0) for n in staged}


def load_group(
    warehouse: Warehouse, items: list[GroupItem], should_stop: Callable[[], bool] | None = None
) -> list[LoadOutcome]:
    """Load ``items`` (appends to files of one market, on PostgreSQL) in one transaction; their outcomes, in order.

    An append keeps its file's earlier rejected rows (they are still the file's), as ``Warehouse.load_file`` does.

    Raises ``GroupRefused`` or the database's error with nothing written, and ``LoadStopped`` (rolled back) when
    ``should_stop`` says the run is being stopped right before the commit, as ``Warehouse.load_file`` does.
    """
    if not warehouse.fast_path or len({(item.target.market.code, item.target.run_id) for item in items}) > 1:
        raise GroupRefused("a group loads the files of one market, for one run, into PostgreSQL")
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
        rejected = [
            rejections_frame(chunk.rejected, item.target, import_id, ingested_at)
            for item, import_id in zip(items, ids, strict=True)
            for chunk in item.chunks
            if chunk.rejected.height
        ]
        rows = accepted_rows([item.chunks for item in items])
        quality = _tally(items, outcomes, rows)
        if rejected:
            writer.write_rejected(pl.concat(rejected))
        if rows is not None:
            heights = [outcome.rows_loaded for outcome in outcomes]
            for n, count in _write_rows(conn, writer, rows, items, heights).items():
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
