"""The deployment's storages: Dagster's PostgreSQL run, event log and schedule storages on kept connections, the event
log also reading an import step's dynamic partitions once.

``deploy/dagster.yaml`` names them; the tables, and what the web server, the daemon and the run workers read and
write, are Dagster's own. Two changes:

- Dagster's storages open a new PostgreSQL connection for every statement they run (a ``NullPool``, so that an
  instance holds no connection between uses). A run created over 110 files stores 110 planned materializations:
  1.0-1.3 s that way on an idle 2-core machine, 0.25 s on a kept connection, about 4 s while other runs load; a
  sensor tick's state updates open a connection for each table check. Each process's instance keeps two
  connections per storage here (more while its threads use them at once, closed after use), checked before use, so a
  restarted server costs a reconnect, not an error.
- An import step reads its dynamic partitions once (``defs.partition_reads``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from dagster._serdes import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

from mytrader_pipeline.defs.partition_reads import PartitionsReadOnce

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider

KEPT_CONNECTIONS = 2  # per storage of a process's instance (a stored event may query while it writes)
EXTRA_CONNECTIONS = 8  # more while its threads use them at once, closed after use


class _KeptConnections:
    """Mixin over a Dagster PostgreSQL storage (put it before the storage among the bases): its engine keeps
    ``KEPT_CONNECTIONS`` connections instead of opening one per statement."""

    postgres_url: str
    _engine: Any
    _token_provider: PgTokenProvider | None

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)  # type: ignore[call-arg]
        self._engine.dispose()
        self._engine = create_pg_engine(
            postgres_url,
            token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=KEPT_CONNECTIONS,
            max_overflow=EXTRA_CONNECTIONS,
            pool_pre_ping=True,
        )

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> Self:
        """As Dagster's, building this class (Dagster's builds its own whatever the class configured)."""
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        """Dagster's, and the kept connections closed."""
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()


class KeptOpenPostgresRunStorage(_KeptConnections, PostgresRunStorage):
    """``PostgresRunStorage`` on kept connections."""


class KeptOpenPostgresScheduleStorage(_KeptConnections, PostgresScheduleStorage):
    """``PostgresScheduleStorage`` on kept connections (sensor ticks, cursors, partitions' backfills)."""


class KeptOpenPostgresEventLogStorage(_KeptConnections, PartitionsReadOnce, PostgresEventLogStorage):
    """``PostgresEventLogStorage`` on kept connections, whose dynamic partitions a step reads once."""
