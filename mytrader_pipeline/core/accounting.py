"""The import audit read back: each file's latest load, its rejected rows, and the invariants every load satisfies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import file_imports, historical_market_data, rejected_rows


def file_sha256(path: Path) -> str:
    """The content fingerprint recorded in the audit (SHA-256 of the file's bytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def last_loaded_fingerprints(engine: Engine, market: str) -> dict[str, str]:
    """source_file -> fingerprint of its latest succeeded import, for one market."""
    return {source_file: load.fingerprint or "" for source_file, load in latest_loads(engine, market).items()}


@dataclasses.dataclass(frozen=True)
class LatestLoad:
    """A file's latest succeeded import: what the warehouse holds of it now, with the figures of that load."""

    file_import_id: int
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

    @property
    def rejected_rate(self) -> float:
        """Share of the rows read that were rejected (0 for a file of no rows)."""
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


def latest_loads(engine: Engine, market: str) -> dict[str, LatestLoad]:
    """source_file -> its latest succeeded import, for every file of ``market`` the audit knows (one query)."""
    t = file_imports.c
    latest = (
        sa.select(sa.func.max(t.id).label("id"))
        .where(t.market == market, t.status == "succeeded")
        .group_by(t.source_file)
        .subquery()
    )
    names = [f.name for f in dataclasses.fields(LatestLoad) if f.name != "file_import_id"]
    query = sa.select(t.id.label("file_import_id"), *[t[name] for name in names]).join(latest, latest.c.id == t.id)
    with engine.connect() as conn:
        return {row.source_file: LatestLoad(**row._mapping) for row in conn.execute(query)}


@dataclasses.dataclass(frozen=True)
class RejectedRow:
    """One stored rejected row, as shown beside its load."""

    line_number: int
    column_name: str | None
    check_name: str
    reason: str
    raw_line: str


def rejected_samples(
    engine: Engine, market: str, imports: Mapping[int, str], limit: int = 20
) -> dict[int, list[RejectedRow]]:
    """file_import_id -> the first ``limit`` rejected rows of each import (by line), in one query.

    ``imports`` maps each file_import_id to its source_file (so the ``(market, source_file)`` index narrows the scan).
    """
    if not imports:
        return {}
    r = rejected_rows.c
    rank = sa.func.row_number().over(partition_by=r.file_import_id, order_by=(r.line_number, r.id)).label("rank")
    ranked = (
        sa.select(r.file_import_id, r.line_number, r.column_name, r.check_name, r.reason, r.raw_line, rank)
        .where(
            r.market == market,  # with source_file: the (market, source_file) index narrows the scan
            r.source_file.in_(set(imports.values())),
            r.file_import_id.in_(list(imports)),
        )
        .subquery()
    )
    query = sa.select(ranked).where(ranked.c.rank <= limit).order_by(ranked.c.file_import_id, ranked.c.rank)
    samples: dict[int, list[RejectedRow]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            samples.setdefault(row.file_import_id, []).append(
                RejectedRow(row.line_number, row.column_name, row.check_name, row.reason, row.raw_line)
            )
    return samples


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
