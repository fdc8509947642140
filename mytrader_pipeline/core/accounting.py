"""The import audit read back: last loaded fingerprints, and the invariants every load must satisfy."""

from __future__ import annotations

import dataclasses
import hashlib
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
