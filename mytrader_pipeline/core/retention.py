"""History retention of our audit: delete import audit older than a window, keeping what is still needed."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import file_imports, rejected_rows

DEFAULT_RETENTION_DAYS = 30


def cutoff_for(days: int, now: dt.datetime | None = None) -> dt.datetime:
    """The instant before which history is deleted: ``days`` days before ``now``."""
    if days < 1:
        raise ValueError("retention must keep at least one day")
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)


@dataclasses.dataclass(frozen=True)
class AuditPurge:
    """What an audit purge deleted."""

    cutoff: dt.datetime
    file_imports_deleted: int
    rejected_rows_deleted: int
    kept_latest_loads: int  # old audit rows kept: a file's latest successful load (its change detection needs it)
    kept_for_dead_letters: int  # old audit rows kept: runs that active dead-letter items point to


def purge_audit(engine: Engine, cutoff: dt.datetime, protected_run_ids: Collection[str] = ()) -> AuditPurge:
    """Delete ``file_imports`` rows finished before ``cutoff`` and their rejected rows, in one transaction.

    Kept regardless of age: each file's latest successful load and, when that is an append, the loads it continues
    back to the file's latest full load (skipping unchanged files and appending depend on them, and their rejected
    rows describe the data now in the table) and the audit of
    ``protected_run_ids`` (the runs of open dead-letter items).
    """
    c = file_imports.c
    succeeded = c.status == "succeeded"
    start = (
        sa.select(c.market, c.source_file, sa.func.max(c.id).label("start"))
        .where(succeeded, sa.or_(c.load_mode.is_(None), c.load_mode != "append"))
        .group_by(c.market, c.source_file)
        .subquery()
    )
    # A file's current chain: its latest full load and the appends since (their rejected rows are the file's now).
    chain = (
        sa.select(c.id)
        .join(start, sa.and_(start.c.market == c.market, start.c.source_file == c.source_file, c.id >= start.c.start))
        .where(succeeded)
    )
    latest = sa.union(sa.select(sa.func.max(c.id)).where(succeeded).group_by(c.market, c.source_file), chain)
    old = file_imports.c.finished_at < cutoff
    protected = list(protected_run_ids)
    is_protected = file_imports.c.run_id.in_(protected) if protected else sa.false()
    doomed = sa.select(file_imports.c.id).where(old, file_imports.c.id.not_in(latest), sa.not_(is_protected))
    count = sa.select(sa.func.count()).select_from(file_imports)
    with engine.begin() as conn:
        kept_latest = conn.execute(count.where(old, file_imports.c.id.in_(latest))).scalar_one()
        kept_dlq = conn.execute(count.where(old, file_imports.c.id.not_in(latest), is_protected)).scalar_one()
        rejected = conn.execute(sa.delete(rejected_rows).where(rejected_rows.c.file_import_id.in_(doomed))).rowcount
        imports = conn.execute(sa.delete(file_imports).where(file_imports.c.id.in_(doomed))).rowcount
    return AuditPurge(cutoff, int(imports), int(rejected), int(kept_latest), int(kept_dlq))
