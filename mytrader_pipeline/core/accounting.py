"""The import audit read back: what each file's loads read so far, its current figures, and the invariants every
load must satisfy."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.appending import LoadedState
from mytrader_pipeline.core.db import file_imports, historical_market_data, rejected_rows

# The check name pandera gives a future-dated row (today decides it: a later full reload may accept the row).
FUTURE_DATE_CHECK = "less_than_or_equal_to"


def file_sha256(path: Path) -> str:
    """The content fingerprint recorded in the audit (SHA-256 of the file's bytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def last_loaded_fingerprints(engine: Engine, market: str) -> dict[str, str]:
    """source_file -> fingerprint of its latest succeeded import, for one market."""
    latest = (
        sa.select(file_imports.c.source_file, sa.func.max(file_imports.c.id).label("id"))
        .where(file_imports.c.market == market, file_imports.c.status == "succeeded")
        .group_by(file_imports.c.source_file)
        .subquery()
    )
    query = sa.select(file_imports.c.source_file, file_imports.c.fingerprint).join(
        latest, latest.c.id == file_imports.c.id
    )
    with engine.connect() as conn:
        return {row.source_file: row.fingerprint for row in conn.execute(query)}


def _chain_start(market: str) -> sa.Subquery:
    """Per file of ``market``: the id of its latest succeeded full load (where its current chain of loads starts)."""
    c = file_imports.c
    full = sa.or_(c.load_mode.is_(None), c.load_mode != "append")
    return (
        sa.select(c.source_file, sa.func.max(c.id).label("start"))
        .where(c.market == market, c.status == "succeeded", full)
        .group_by(c.source_file)
        .subquery()
    )


def _chain_rows(market: str) -> sa.Select:
    """The succeeded imports of ``market`` that make each file's current chain: its latest full load and the
    appends after it."""
    start = _chain_start(market)
    c = file_imports.c
    return (
        sa.select(file_imports)
        .join(start, sa.and_(start.c.source_file == c.source_file, c.id >= start.c.start))
        .where(c.market == market, c.status == "succeeded")
    )


def loaded_states(engine: Engine, market: str) -> dict[str, LoadedState]:
    """source_file -> what its loads read so far (``LoadedState``), for every file of ``market`` that loaded."""
    chain = _chain_rows(market).subquery()
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
    replaces them, an append adds its own). Checks and UI metadata use these rather than an append's own counts,
    whose rejected rate is that of a few new lines.
    """
    chain = _chain_rows(market).subquery()
    query = sa.select(
        chain.c.source_file,
        sa.func.sum(chain.c.rows_read).label("rows_read"),
        sa.func.sum(chain.c.rows_loaded).label("rows_loaded"),
        sa.func.sum(chain.c.rows_rejected).label("rows_rejected"),
        sa.func.count().label("loads"),
        sa.func.min(chain.c.id).label("first"),
        sa.func.max(chain.c.id).label("latest"),
    ).group_by(chain.c.source_file)
    if source_files is not None:
        query = query.where(chain.c.source_file.in_(list(source_files)))
    with engine.connect() as conn:
        return {
            row.source_file: FileFigures(
                row.source_file,
                int(row.rows_read),
                int(row.rows_loaded),
                int(row.rows_rejected),
                int(row.loads),
                int(row.first),
                int(row.latest),
            )
            for row in conn.execute(query)
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


def ohlc_violations(engine: Engine, market: str, source_files: list[str]) -> int:
    """Warehouse rows from ``source_files`` whose high/low do not bound open and close (should be 0)."""
    if not source_files:
        return 0
    t = historical_market_data.c
    bad = sa.or_(t.high < t.low, t.high < t.open, t.high < t.close, t.low > t.open, t.low > t.close, t.close <= 0)
    query = sa.select(sa.func.count()).where(t.market == market, t.source_file.in_(source_files), bad)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
