"""The deployment's event log: Dagster's PostgreSQL event log storage, reading dynamic partitions once per step.

``deploy/dagster.yaml`` names it as its ``event_log_storage`` (with Dagster's PostgreSQL run and schedule storages);
the tables, and what the web server and the daemon read, are Dagster's own. See ``defs.partition_reads``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from mytrader_pipeline.defs.partition_reads import PartitionsReadOnce


class PartitionReadingPostgresEventLogStorage(PartitionsReadOnce, PostgresEventLogStorage):
    """``PostgresEventLogStorage`` whose dynamic partitions a step reads once (``partitions_read_once``)."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PartitionReadingPostgresEventLogStorage:
        """As Dagster's, building this class (Dagster's builds its own whatever the class configured)."""
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
