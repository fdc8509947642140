"""The SQLite event log of ``mytrader run``'s local Dagster instance: Dagster's own, with its databases kept open.

Dagster's ``SqliteEventLogStorage`` creates an engine, opens the shard's database, commits and closes it again for
every event; closing the last connection to a WAL database checkpoints it, so each event costs several fsyncs (about
0.1 s on a 2-core machine's disk: most of a daily append run, issue 12). This subclass keeps one connection per
shard open (the index and the runs being written: ``mytrader run`` runs markets side by side) with
``synchronous=NORMAL``: a commit appends to the WAL without an fsync, as the warehouse's own SQLite does
(``core.db.make_engine``). The files, their schema and what other processes (``dagster dev``) read are unchanged; an
OS crash can lose the last events, never corrupt the log. A run's database is closed (checkpointed, on a thread of
its own) in ``close_run_shard``, when its run is done, and in ``dispose`` (which waits for it), so a watcher of its
file (the UI's live run view) sees its events at the latest then; a run's database opened only to be read is closed
when another run's opens.

It also stores a run's planned materializations as one event over the run's partition range (Dagster's
``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``), instead of one event per file (a failed run's files then get
their own: ``defs.failed_partitions.mark_unmaterialized_failed``), and a step's materializations of its partitions as
one batch (one transaction per database, as Dagster's PostgreSQL storage writes a batch), within
``batched_event_writes``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from alembic.script import ScriptDirectory

# Dagster's storage classes are not in its public API; dagster is pinned (pyproject.toml), and
# dagster/test_event_log.py checks this subclass against the installed version.
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
from dagster._core.storage.sql import get_alembic_config
from dagster._serdes import ConfigurableClassData

from mytrader_pipeline.defs.partition_reads import PartitionsReadOnce
from mytrader_pipeline.defs.run_storage import KeptOpenSqliteRunStorage
from mytrader_pipeline.defs.sqlite_connections import kept_engine

_BATCHED_TYPES = frozenset({DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION})
_OPEN_RUNS = 8  # run databases kept open at most (runs written at once, then the latest ones)
_KEPT_RUNS = 16  # runs whose events ``stored_events`` can still hand out (a run's are handed out when it ends)


# alembic's own version table, as its ``stamp`` creates it
_ALEMBIC_VERSION = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


@functools.cache
def _head_revision() -> str:
    """The schema revision Dagster stamps on a new event log database (read from its alembic scripts, once)."""
    script = ScriptDirectory.from_config(get_alembic_config(sqlite_event_log.__file__))
    return str(script.as_revision_number("head"))


def _stamped(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return sa.inspect(conn).has_table("alembic_version") and bool(
            conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar()
        )


class KeptOpenSqliteEventLogStorage(PartitionsReadOnce, SqliteEventLogStorage):
    """``SqliteEventLogStorage`` whose index and current run databases stay open between events."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: dict[str, sa.Engine] = {}
        self._engines_lock = threading.Lock()
        self._tables: set[str] = set()  # tables known to exist in the index (a table is never dropped)
        self._stored: dict[str, list[EventLogEntry]] = {}  # recent runs' events, as stored (``stored_events``)
        self._dropped: set[str] = set()  # runs whose events were dropped from ``_stored`` (too many runs at once)
        self._writing: dict[str, None] = {}  # runs whose databases this storage wrote and has not closed, oldest first
        self._closing: list[threading.Thread] = []  # run databases being closed (``_close_in_background``)
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> KeptOpenSqliteEventLogStorage:
        """This class (Dagster's returns its own class whatever the subclass)."""
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        """One planned event per run over its partition range (the run's tags), not one per partition."""
        return True

    def _engine(self, shard: str) -> sa.Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is None:
                if shard != INDEX_SHARD_NAME:  # close other runs' databases opened only to be read, and the oldest
                    written = [s for s in self._writing if s in self._engines and s != shard]
                    kept = set(written[-(_OPEN_RUNS - 1) :])
                    for other in [s for s in self._engines if s != INDEX_SHARD_NAME and s not in kept]:
                        self._close_in_background(self._engines.pop(other))
                        self._writing.pop(other, None)
                engine = self._engines[shard] = kept_engine(self.conn_string_for_shard(shard))
            return engine

    def _initdb(self, engine: sa.Engine, for_index_shard: bool = False) -> None:
        """Dagster's, without reading its alembic scripts for every run (about 0.1 s each).

        A database stamped with a revision is left as it is (Dagster's does nothing more); a new run's database gets
        what Dagster's gives it, its tables, WAL and the head revision's stamp, with that revision read once per
        process. The index, a database holding tables but no stamp, and any error go through Dagster's own.
        """
        if _stamped(engine):
            return
        if for_index_shard:
            super()._initdb(engine, for_index_shard=True)
            return
        try:
            with engine.connect() as conn:
                if sa.inspect(conn).get_table_names():
                    raise sa.exc.InvalidRequestError("tables without a stamp")
                SqlEventLogStorageMetadata.create_all(conn)
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                _ALEMBIC_VERSION.create(conn)
                conn.execute(_ALEMBIC_VERSION.insert().values(version_num=_head_revision()))
                conn.commit()
        except sa.exc.SQLAlchemyError:
            super()._initdb(engine, for_index_shard=False)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        # As Dagster's own (one connection at a time, a new shard's tables created first), on a kept engine.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Whether the index has ``table_name``, asked on the kept connection (Dagster's opens a new one each time)."""
        if table_name not in self._tables:  # not through _connect: Dagster asks while it holds a connection
            with self._engine(INDEX_SHARD_NAME).connect() as conn:
                if sa.inspect(conn).has_table(table_name):
                    self._tables.add(table_name)
        return table_name in self._tables

    def store_event(self, event: EventLogEntry) -> None:
        """Dagster's, keeping the event for ``stored_events``."""
        self._kept_for(event.run_id)
        super().store_event(event)
        self._keep(event.run_id, [event])

    def _kept_for(self, run_id: str) -> None:
        """Mark ``run_id`` as being written (its database stays open) and make room for its events as stored: the
        events of the ``_KEPT_RUNS`` latest runs are kept, until ``stored_events`` hands them out; a run whose
        events had to be dropped is never kept again (``stored_events`` says None: read them back)."""
        with self._engines_lock:
            self._writing[run_id] = None
            if run_id not in self._stored and run_id not in self._dropped:
                self._stored[run_id] = []
                while len(self._stored) > _KEPT_RUNS:
                    oldest = next(iter(self._stored))
                    del self._stored[oldest]
                    self._dropped.add(oldest)

    def _keep(self, run_id: str, events: Sequence[EventLogEntry]) -> None:
        with self._engines_lock:
            kept = self._stored.get(run_id)
            if kept is not None:
                kept.extend(events)

    def stored_events(self, run_id: str) -> list[EventLogEntry] | None:
        """The events of ``run_id`` this storage stored, in order (as ``all_logs`` would read them back), and
        forgets them; None if it did not store that run's events, or a later run's since."""
        with self._engines_lock:
            self._dropped.discard(run_id)
            return self._stored.pop(run_id, None)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A step's materializations (or observations) of many partitions: one transaction in the run's database
        and one in the index, the asset's latest-event row from the last of them (as Dagster's PostgreSQL storage
        stores a batch). Anything else is stored event by event."""
        kinds = {
            (e.run_id, e.dagster_event_type, e.dagster_event.asset_key if e.dagster_event else None) for e in events
        }
        if len(events) < 2 or len(kinds) != 1 or next(iter(kinds))[1] not in _BATCHED_TYPES:
            super().store_event_batch(events)
            return
        self._kept_for(events[0].run_id)
        # One statement for many rows (executemany), compiled once: Dagster's ``prepare_insert_event_batch`` is a
        # single INSERT with a VALUES list of every row, compiled anew for each batch (a third of its cost).
        rows = [self._event_to_row(event) for event in events]
        table = SqlEventLogStorageTable
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(table.insert(), rows)
        with self.index_transaction() as conn:
            returning = table.insert().returning(table.c.id, sort_by_parameter_order=True)
            ids = [int(row[0]) for row in conn.execute(returning, rows)]  # in the order of ``events``
            self._store_asset_event_tags(conn, events, ids)
            self._store_asset_event(conn, events[-1], ids[-1])
        self._keep(events[0].run_id, events)

    def close_run_shard(self, run_id: str) -> None:
        """Close (and so checkpoint) the database of ``run_id``'s events, if it is open, without waiting for it."""
        with self._db_lock, self._engines_lock:
            self._writing.pop(run_id, None)
            engine = self._engines.pop(run_id, None)
            if engine is not None:
                self._close_in_background(engine)

    def _close_in_background(self, engine: sa.Engine) -> None:
        """Dispose of a run database's engine on a thread of its own: the close checkpoints the WAL into the file
        (its fsyncs took about 0.2 s a run), which need not hold up the next run. ``dispose`` waits for it."""
        self._closing = [thread for thread in self._closing if thread.is_alive()]
        thread = threading.Thread(target=engine.dispose, name="close-run-db", daemon=False)
        thread.start()
        self._closing.append(thread)

    def dispose(self) -> None:
        """Close every kept database (and wait for those closing), then Dagster's own clean-up."""
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
            self._writing.clear()
            for thread in self._closing:
                thread.join()
            self._closing.clear()
        super().dispose()


def kept_open_instance(home: Path) -> dg.DagsterInstance:
    """Dagster's default instance at ``home`` (SQLite storage in its ``history/``) with this event log and
    ``KeptOpenSqliteRunStorage``, and no capture of the steps' stdout and stderr.

    Capturing a step's output redirects the process's own stdout and stderr to a file for the step's duration (and
    starts ``tail`` processes to mirror it back): it cannot be done for runs side by side on threads, as ``mytrader
    run`` runs markets. Our steps print nothing that is not also an event of the run (and in its log file).

    For a home without a ``dagster.yaml``: one that has its own configuration should be opened as it says.
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    overrides = {
        "run_storage": {
            "module": KeptOpenSqliteRunStorage.__module__,
            "class": KeptOpenSqliteRunStorage.__name__,
            "config": {"base_dir": str(home / "history")},
        },
        "event_log_storage": {
            "module": __name__,
            "class": KeptOpenSqliteEventLogStorage.__name__,
            "config": {"base_dir": str(home / "history" / "runs")},
        },
        "compute_logs": {"module": NoOpComputeLogManager.__module__, "class": NoOpComputeLogManager.__name__},
    }
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=overrides))
