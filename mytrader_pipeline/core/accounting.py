"""The import audit read back: each file's latest load and what its loads read so far, its current figures
(latest full load and the appends since), its rejected rows, and the invariants every load satisfies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Collection, Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.appending import LoadedState
from mytrader_pipeline.core.db import file_imports, historical_market_data, rejected_rows
from mytrader_pipeline.core.discovery import MarketFile

# The check name pandera gives a future-dated row (today decides it: a later full reload may accept the row).
FUTURE_DATE_CHECK = "less_than_or_equal_to"


def file_sha256(path: Path) -> str:
    """The content fingerprint recorded in the audit (SHA-256 of the file's bytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed_since_load(state: LoadedState | None, file: MarketFile) -> bool:
    """Whether ``file``'s content differs from what its loads so far read (True for a file never loaded).

    A file of another size than the bytes loaded has changed without reading it (the daily append grows every
    file); one of the same size is hashed and compared with the recorded fingerprint.
    """
    if state is None or state.sha256 is None:
        return True
    if state.size is not None and state.size != file.size:
        return True
    return state.sha256 != file_sha256(file.path)


def last_loaded_fingerprints(engine: Engine, market: str) -> dict[str, str]:
    """source_file -> fingerprint of its latest succeeded import, for one market."""
    return {source_file: load.fingerprint or "" for source_file, load in latest_loads(engine, market).items()}


@dataclasses.dataclass(frozen=True)
class LatestLoad:
    """A file's current state in the warehouse: its latest succeeded import and the chain that import ends.

    The chain is the file's latest full load and the appends since (``core.appending``). The row figures
    (``rows_*``, ``date_min``/``date_max``, ``quality_score``) are the chain's, what a full reload of the file's
    current content would count, so a file with one bad appended line does not read 100% rejected; the rest
    (fingerprint, timing, run) are the latest import's.
    """

    file_import_id: int  # the latest succeeded import
    source_file: str
    partition_key: str
    fingerprint: str | None
    rows_read: int
    rows_loaded: int
    rows_written: int
    rows_rejected: int
    date_min: dt.date | None
    date_max: dt.date | None
    quality_score: float | None
    duration_seconds: float | None
    rows_per_second: float | None
    run_id: str
    finished_at: dt.datetime
    load_mode: str  # the latest import's: full | append
    loads: int  # imports in the chain: 1 (the full load) + the appends since
    first_import_id: int  # the chain's full load

    @property
    def rejected_rate(self) -> float:
        """Share of the rows read that were rejected (0 for a file of no rows)."""
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


def latest_loads(engine: Engine, market: str) -> dict[str, LatestLoad]:
    """source_file -> its current state (``LatestLoad``), for every file of ``market`` the audit knows (one query)."""
    chain = current_chain(market).subquery()
    c = chain.c
    sums = (
        sa.select(
            c.source_file,
            sa.func.max(c.id).label("latest"),
            sa.func.min(c.id).label("first_import_id"),
            sa.func.count().label("loads"),
            sa.func.sum(c.rows_read).label("rows_read"),
            sa.func.sum(c.rows_loaded).label("rows_loaded"),
            sa.func.sum(c.rows_written).label("rows_written"),
            sa.func.sum(c.rows_rejected).label("rows_rejected"),
            sa.func.min(c.date_min).label("date_min"),
            sa.func.max(c.date_max).label("date_max"),
            # Row quality averaged over every row read, as each load averages it.
            (sa.func.sum(c.quality_score * c.rows_read) / sa.func.nullif(sa.func.sum(c.rows_read), 0)).label(
                "quality_score"
            ),
        )
        .group_by(c.source_file)
        .subquery()
    )
    t = file_imports.c
    query = sa.select(
        t.id.label("file_import_id"),
        t.source_file,
        t.partition_key,
        t.fingerprint,
        t.duration_seconds,
        t.rows_per_second,
        t.run_id,
        t.finished_at,
        sa.func.coalesce(t.load_mode, "full").label("load_mode"),
        *[sums.c[name] for name in ("first_import_id", "loads", "rows_read", "rows_loaded", "rows_written")],
        *[sums.c[name] for name in ("rows_rejected", "date_min", "date_max", "quality_score")],
    ).join(sums, sums.c.latest == t.id)
    with engine.connect() as conn:
        loads: dict[str, LatestLoad] = {}
        for row in conn.execute(query):
            values = dict(row._mapping)
            for name in ("first_import_id", "loads", "rows_read", "rows_loaded", "rows_written", "rows_rejected"):
                values[name] = int(values[name] or 0)
            if values["quality_score"] is not None:
                values["quality_score"] = round(float(values["quality_score"]), 2)
            loads[row.source_file] = LatestLoad(**values)
        return loads


@dataclasses.dataclass(frozen=True)
class RejectedRow:
    """One stored rejected row, as shown beside its load."""

    line_number: int
    column_name: str | None
    check_name: str
    reason: str
    raw_line: str


def rejected_samples(
    engine: Engine, market: str, imports: Mapping[int, tuple[str, int]], limit: int = 20
) -> dict[int, list[RejectedRow]]:
    """file_import_id -> the first ``limit`` rejected rows (by line) of the loads it ends, in one query.

    ``imports`` maps each file_import_id to its source_file (one import per file) and the first import whose
    rejections count with it: the import itself for one load's own rows, or its chain's full load
    (``LatestLoad.first_import_id``) for the file's current rows.
    """
    if not imports:
        return {}
    r = rejected_rows.c
    by_source = {source: import_id for import_id, (source, _) in imports.items()}
    rank = sa.func.row_number().over(partition_by=r.source_file, order_by=(r.line_number, r.id)).label("rank")
    ranked = (
        sa.select(r.source_file, r.line_number, r.column_name, r.check_name, r.reason, r.raw_line, rank)
        .where(
            r.market == market,  # with source_file: the (market, source_file) index narrows the scan
            r.source_file.in_(list(by_source)),
            sa.or_(
                *[
                    sa.and_(r.source_file == source, r.file_import_id.between(first, import_id))
                    for import_id, (source, first) in imports.items()
                ]
            ),
        )
        .subquery()
    )
    query = sa.select(ranked).where(ranked.c.rank <= limit).order_by(ranked.c.source_file, ranked.c.rank)
    samples: dict[int, list[RejectedRow]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            samples.setdefault(by_source[row.source_file], []).append(
                RejectedRow(row.line_number, row.column_name, row.check_name, row.reason, row.raw_line)
            )
    return samples


def current_chain(market: str) -> sa.Select:
    """The succeeded imports of ``market`` that make each file's current chain: its latest full load and the
    appends after it (the loads whose rows and rejected rows the warehouse holds now); ``file_imports``' columns.

    One pass over the market's audit rows, each file's chain start a window over its rows: a join of the rows with a
    per-file aggregate of them is planned as a nested loop when the table's statistics lag (just loaded, not yet
    analysed), which recomputes the aggregate for every row and grows with the square of the history.
    """
    c = file_imports.c
    full = sa.or_(c.load_mode.is_(None), c.load_mode != "append")
    start = sa.func.max(c.id).filter(full).over(partition_by=c.source_file)
    ranked = (
        sa.select(file_imports, start.label("chain_start"))
        .where(c.market == market, c.status == "succeeded")
        .subquery("ranked")
    )
    return sa.select(*[ranked.c[column.name] for column in file_imports.columns]).where(
        ranked.c.id >= ranked.c.chain_start
    )


def loaded_states(engine: Engine, market: str) -> dict[str, LoadedState]:
    """source_file -> what its loads read so far (``LoadedState``), for every file of ``market`` that loaded."""
    chain = current_chain(market).subquery()
    summary = sa.select(
        chain.c.source_file,
        sa.func.max(chain.c.id).label("latest"),
        sa.func.max(chain.c.date_max).label("date_max"),
    ).group_by(chain.c.source_file)
    future = (
        sa.select(rejected_rows.c.source_file)
        .where(rejected_rows.c.market == market, rejected_rows.c.check_name == FUTURE_DATE_CHECK)
        .distinct()
    )
    with engine.connect() as conn:
        latest = {row.source_file: (row.latest, row.date_max) for row in conn.execute(summary)}
        futures = set(conn.execute(future).scalars())
        rows = conn.execute(sa.select(file_imports).where(file_imports.c.id.in_([v[0] for v in latest.values()])))
        states: dict[str, LoadedState] = {}
        for row in rows:
            states[row.source_file] = LoadedState(
                import_id=row.id,
                sha256=row.fingerprint,
                size=row.size_bytes,
                line_count=row.line_count,
                ends_with_newline=row.ends_with_newline,
                encoding=row.encoding,
                file_format=row.file_format,
                date_max=latest[row.source_file][1],
                future_rejections=row.source_file in futures,
                date_format=row.date_format,
                decimal_comma=row.decimal_comma,
            )
    return states


@dataclasses.dataclass(frozen=True)
class FileFigures:
    """A file's figures as its current content stands: summed over its latest full load and the appends since."""

    source_file: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    loads: int  # imports in the chain: 1 (the full load) + the appends since
    first_import_id: int  # the full load
    latest_import_id: int

    @property
    def rejected_rate(self) -> float:
        """Rejected rows over rows read (0.0 for no rows)."""
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


def file_figures(engine: Engine, market: str, source_files: Collection[str] | None = None) -> dict[str, FileFigures]:
    """source_file -> the file's current figures (``FileFigures``), for files of ``market`` (default: all).

    A file's current figures are what a full reload of its current content would count: the sums of rows read,
    loaded and rejected over the chain of succeeded imports since its latest full load (that full load, then each
    append, which counts only its new lines). ``rows_read == rows_loaded + rows_rejected`` holds for the sums as for
    each import, and the file's rejected rows now in ``rejected_rows`` are exactly ``rows_rejected`` rows (a full load
    replaces them, an append adds its own). They are ``latest_loads``' figures.
    """
    wanted = None if source_files is None else set(source_files)
    return {
        source: FileFigures(
            source,
            load.rows_read,
            load.rows_loaded,
            load.rows_rejected,
            load.loads,
            load.first_import_id,
            load.file_import_id,
        )
        for source, load in latest_loads(engine, market).items()
        if wanted is None or source in wanted
    }


@dataclasses.dataclass(frozen=True)
class AccountingIssue:
    """A succeeded import whose counts do not add up."""

    file_import_id: int
    source_file: str
    detail: str


def accounting_issues(engine: Engine, run_id: str) -> list[AccountingIssue]:
    """Succeeded imports of ``run_id`` where read != loaded + rejected or the rejected rows are not all stored."""
    stored = (
        sa.select(rejected_rows.c.file_import_id, sa.func.count().label("n"))
        .group_by(rejected_rows.c.file_import_id)
        .subquery()
    )
    query = (
        sa.select(
            file_imports.c.id,
            file_imports.c.source_file,
            file_imports.c.rows_read,
            file_imports.c.rows_loaded,
            file_imports.c.rows_rejected,
            sa.func.coalesce(stored.c.n, 0).label("stored"),
        )
        .outerjoin(stored, stored.c.file_import_id == file_imports.c.id)
        .where(file_imports.c.run_id == run_id, file_imports.c.status == "succeeded")
    )
    issues: list[AccountingIssue] = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            if row.rows_read != row.rows_loaded + row.rows_rejected:
                issues.append(AccountingIssue(row.id, row.source_file, "rows read != rows loaded + rows rejected"))
            if row.stored != row.rows_rejected:
                issues.append(
                    AccountingIssue(row.id, row.source_file, f"{row.rows_rejected} rejected but {row.stored} stored")
                )
    return issues


def ohlc_violations(engine: Engine, market: str) -> dict[str, int]:
    """source_file -> warehouse rows of ``market`` whose high/low do not bound open and close (should be none).

    Over the market's whole table, not one run's files: the check reports what the warehouse holds now.
    """
    t = historical_market_data.c
    bad = sa.or_(t.high < t.low, t.high < t.open, t.high < t.close, t.low > t.open, t.low > t.close, t.close <= 0)
    query = sa.select(t.source_file, sa.func.count()).where(t.market == market, bad).group_by(t.source_file)
    with engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query)}
