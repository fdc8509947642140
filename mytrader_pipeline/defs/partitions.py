"""Dynamic partitions: one per CSV file of a market, keyed by file name, and the one way to register them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import dagster as dg

from mytrader_pipeline.markets import Market


class PartitionStore(Protocol):
    """Where dynamic partitions live: a ``dg.DagsterInstance``, or a deployment reached over GraphQL."""

    def get_dynamic_partitions(self, partitions_def_name: str, /) -> Sequence[str]:
        """The partition keys of ``partitions_def_name``, in the order they were added."""
        ...

    def add_dynamic_partitions(self, partitions_def_name: str, partition_keys: list[str], /) -> None:
        """Add ``partition_keys`` to ``partitions_def_name``."""
        ...


def files_partitions(market: Market) -> dg.DynamicPartitionsDefinition:
    """The partitions of ``market``'s asset (e.g. ``bist_files``), one per file name."""
    return dg.DynamicPartitionsDefinition(name=files_partitions_name(market))


def files_partitions_name(market: Market) -> str:
    """The name of ``market``'s files partitions (e.g. ``bist_files``)."""
    return f"{market.code.lower()}_files"


def unregistered(known: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The ``keys`` not among ``known`` partitions, in their order (what a registration adds)."""
    seen = set(known)
    return [k for k in keys if k not in seen]


def register_partitions(store: PartitionStore, market: Market, keys: Sequence[str]) -> list[str]:
    """Add partitions for ``keys`` not yet known; returns all of the market's partition keys in order.

    File sensors register theirs through ``dg.AddDynamicPartitionsRequest`` in their result instead (with
    ``unregistered``), so the partitions and the tick's run requests are committed together.
    """
    name = files_partitions_name(market)
    known = list(store.get_dynamic_partitions(name))
    new = unregistered(known, keys)
    if not new:
        return known
    store.add_dynamic_partitions(name, new)
    return list(store.get_dynamic_partitions(name))
