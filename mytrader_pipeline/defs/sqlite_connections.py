"""How ``mytrader run``'s local SQLite storages open their databases: kept open, committing without an fsync."""

from __future__ import annotations

import sqlalchemy as sa

# Dagster's storage classes are not in its public API; dagster is pinned (pyproject.toml).
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS


def _synchronous_normal(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def kept_engine(conn_string: str) -> sa.Engine:
    """An engine whose connection to ``conn_string`` stays open between uses, with ``synchronous=NORMAL``.

    Dagster's SQLite storages open, commit and close a database for each operation; closing the last connection to
    a WAL database checkpoints it, several fsyncs each time. Kept open, a commit appends to the WAL without an fsync
    (as the warehouse's own SQLite does, ``core.db.make_engine``): an OS crash can lose the last commits, never
    corrupt the database. Up to five threads use it at once (a run's importer threads ask for the run's status).
    """
    engine = sa.create_engine(
        conn_string,
        pool_size=1,
        max_overflow=4,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )
    sa.event.listen(engine, "connect", _synchronous_normal)
    return engine
