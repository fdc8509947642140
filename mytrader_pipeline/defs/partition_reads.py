"""Dynamic partitions read once per step: an event log storage mixin, and the context a step holds it with.

Dagster reads a dynamic partitions definition's keys from the event log storage for each
``context.add_asset_metadata(partition_key=...)``, to check the key is in the run's range: a query of every key per
file, so a run's cost grew with the square of its files (PostgreSQL's storage also opens a connection per query: 4.6 s
of a BIST initial load's 16 s on 2 cores, issue 12). Within ``partitions_read_once`` a storage with this mixin reads
each definition's keys once, until this process adds or deletes one. A run's own partitions do not change while it
executes (they are registered before it starts); a key another process adds meanwhile is not in the run's range.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg

_LOCK = threading.Lock()  # the readers' count of every storage (entered once per step: never contended for long)


@dataclasses.dataclass
class _PartitionCache:
    """Dynamic partitions' keys read once: as read, and as sets."""

    keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    sets: dict[str, set[str]] = dataclasses.field(default_factory=dict)


class PartitionsReadOnce:
    """Mixin over an event log storage (put it first among the bases): the dynamic partitions' reads, cached within
    ``partitions_read_once`` (steps on threads of one process may hold it at once; the cache lives while any does).
    """

    _partition_cache: _PartitionCache | None = None
    _partition_readers: int = 0

    @contextmanager
    def partitions_read_once(self) -> Iterator[None]:
        """Within: each dynamic partitions definition's keys are read once (until this process changes them)."""
        with _LOCK:
            if not self._partition_readers:
                self._partition_cache = _PartitionCache()
            self._partition_readers += 1
        try:
            yield
        finally:
            with _LOCK:
                self._partition_readers -= 1
                if not self._partition_readers:
                    self._partition_cache = None

    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        """The definition's keys, read once within ``partitions_read_once``."""
        cache = self._partition_cache  # read once: another step's thread may end the caching meanwhile
        if cache is None:
            return self._storage().get_dynamic_partitions(partitions_def_name)
        keys = cache.keys.get(partitions_def_name)
        if keys is None:
            keys = cache.keys[partitions_def_name] = list(self._storage().get_dynamic_partitions(partitions_def_name))
        return keys

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        """Dagster's, from the keys read once within ``partitions_read_once`` (it asks once per file's metadata)."""
        cache = self._partition_cache
        if cache is None:
            return self._storage().has_dynamic_partition(partitions_def_name, partition_key)
        keys = cache.sets.get(partitions_def_name)
        if keys is None:
            keys = cache.sets[partitions_def_name] = set(self.get_dynamic_partitions(partitions_def_name))
        return partition_key in keys

    def add_dynamic_partitions(self, partitions_def_name: str, partition_keys: Sequence[str]) -> None:
        """Dagster's, forgetting the keys read."""
        self._forget_partitions(partitions_def_name)
        self._storage().add_dynamic_partitions(partitions_def_name, partition_keys)

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        """Dagster's, forgetting the keys read."""
        self._forget_partitions(partitions_def_name)
        self._storage().delete_dynamic_partition(partitions_def_name, partition_key)

    def _forget_partitions(self, partitions_def_name: str) -> None:
        cache = self._partition_cache
        if cache is not None:
            cache.keys.pop(partitions_def_name, None)
            cache.sets.pop(partitions_def_name, None)

    def _storage(self) -> Any:
        """The storage this mixin is over (the next class in the method resolution order)."""
        return super()


def partitions_read_once(instance: dg.DagsterInstance) -> contextlib.AbstractContextManager[None]:
    """Within: ``instance``'s dynamic partitions read once, if its event log storage can (else nothing changes)."""
    storage = instance.event_log_storage
    if isinstance(storage, PartitionsReadOnce):
        return storage.partitions_read_once()
    return contextlib.nullcontext()
