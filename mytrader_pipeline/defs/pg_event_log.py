"""The deployment's event log: Dagster's PostgreSQL event log storage, its connections kept and its partitions read
once per step.

``deploy/dagster.yaml`` names it as its ``event_log_storage`` (with Dagster's PostgreSQL run and schedule storages);
the tables, and what the web server and the daemon read, are Dagster's own. Two changes:

- Dagster's storage opens a new PostgreSQL connection for every event it stores or query it makes (a ``NullPool``,
  so that an instance holds no connection between uses). A run over 110 files stores 110 planned materializations
  when it is created: 1.0-1.3 s that way on an idle 2-core machine, 0.25 s on a kept connection, and about 4 s while
  other runs load. Each process's instance keeps two connections here (more while its threads write at once, closed
  after use), checked before use, so a restarted server costs a reconnect, not an error.
- An import step reads its dynamic partitions once (``defs.partition_reads``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

from mytrader_pipeline.defs.partition_reads import PartitionsReadOnce

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider

KEPT_CONNECTIONS = 2  # per process's instance (a stored event may query while it writes)
EXTRA_CONNECTIONS = 8  # more while its threads use them at once, closed after use


class KeptOpenPostgresEventLogStorage(PartitionsReadOnce, PostgresEventLogStorage):
    """``PostgresEventLogStorage`` on kept connections, whose dynamic partitions a step reads once."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
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
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> KeptOpenPostgresEventLogStorage:
        """As Dagster's, building this class (Dagster's builds its own whatever the class configured)."""
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        """Dagster's, and the kept connections closed."""
        super().dispose()
        self._engine.dispose()
