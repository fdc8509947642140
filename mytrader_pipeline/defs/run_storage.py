"""The SQLite run storage of ``mytrader run``'s local Dagster instance: Dagster's own, with its database kept open."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

# Dagster's storage classes are not in its public API; dagster is pinned (pyproject.toml), and
# dagster/test_event_log.py checks this subclass against the installed version.
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._serdes import ConfigurableClassData

from mytrader_pipeline.defs.sqlite_connections import kept_engine


class KeptOpenSqliteRunStorage(SqliteRunStorage):
    """``SqliteRunStorage`` on one kept-open engine (``kept_engine``), not a new engine and connection per query.

    A run reads and writes the run storage about forty times (its creation, start, each status check of its
    importer, its end), each a new connection whose close checkpointed the database: about 0.1 s of a daily run per
    market on a 2-core machine. The file and its schema are Dagster's, as ``dagster dev`` reads them.
    """

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(conn_string, inst_data)
        self._kept = kept_engine(conn_string)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> KeptOpenSqliteRunStorage:
        """This class (Dagster's returns its own class whatever the subclass)."""
        return cls.from_local(inst_data=inst_data, **config_value)

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A transaction on the kept engine (Dagster's creates an engine, connects and disposes of both)."""
        with self._kept.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        """Close the kept database, then Dagster's own clean-up."""
        self._kept.dispose()
        super().dispose()
