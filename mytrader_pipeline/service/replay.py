"""The deployment's dynamic partitions over GraphQL: a ``defs.partitions.PartitionStore`` for registrations."""

from __future__ import annotations

from mytrader_pipeline.defs.jobs import import_job_name
from mytrader_pipeline.defs.partitions import files_partitions_name
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.service.gateway import DagsterGateway


class DeploymentPartitions:
    """The two dynamic-partition calls a registration makes on an instance, made on the deployment instead."""

    def __init__(self, gateway: DagsterGateway, registry: MarketRegistry) -> None:
        self.gateway = gateway
        self.registry = registry

    def _market(self, partitions_def: str) -> Market:
        return next(m for m in self.registry if files_partitions_name(m) == partitions_def)

    def get_dynamic_partitions(self, partitions_def: str) -> list[str]:
        """The partition keys of ``partitions_def`` in the deployment."""
        return self.gateway.partition_keys(self._market(partitions_def).asset_name)

    def add_dynamic_partitions(self, partitions_def: str, keys: list[str]) -> None:
        """Add ``keys`` to ``partitions_def`` in the deployment (through its market's import job's repository)."""
        selector = self.gateway.repository_of_job(import_job_name(self._market(partitions_def)))
        for key in keys:
            self.gateway.add_partition(selector, partitions_def, key)
