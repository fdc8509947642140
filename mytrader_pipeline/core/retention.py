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

    Kept regardless of age: each file's latest successful load (skipping unchanged files depends on its
    fingerprint, and its rejected rows describe the data now in the table) and the audit of
    ``protected_run_ids`` (the runs of open dead-letter items).
    """
    latest = (
        sa.select(sa.func.max(file_imports.c.id))
        .where(file_imports.c.status == "succeeded")
        .group_by(file_imports.c.market, file_imports.c.source_file)
    )
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
