"""Batched event writes: a step's per-partition asset events handed to the event log storage in batches.

Dagster buffers them and calls the storage's ``store_event_batch`` (one transaction for a batch: PostgreSQL's storage
writes it as one INSERT, ``defs.event_log`` as one per database) only while ``DAGSTER_EVENT_BATCH_SIZE`` is set; it
reads the variable at each event. Without it, a run over a market's files writes one event, one transaction and one
NOTIFY per file: for BIST's 110 files about 3 s of a deployment's initial load (2 cores).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Dagster buffers a step's per-partition asset events and hands them to ``store_event_batch`` when this is set.
EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"


class _SharedSetting:
    """An environment variable set while any of the contexts asking for it is open (runs on threads open them at
    once), and restored when the last is left. Each context asks for the same value."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._depth = 0
        self._before: str | None = None

    @contextmanager
    def held(self, value: str) -> Iterator[None]:
        with self._lock:
            if not self._depth:
                self._before = os.environ.get(self.name)
                os.environ[self.name] = value
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if not self._depth:
                    if self._before is None:
                        os.environ.pop(self.name, None)
                    else:
                        os.environ[self.name] = self._before


_EVENT_BATCHING = _SharedSetting(EVENT_BATCH_SIZE_ENV)


def batched_event_writes(size: int = 1000) -> contextlib.AbstractContextManager[None]:
    """Within: Dagster hands a step's per-partition asset events to the storage in batches of up to ``size``.

    Dagster reads the setting from the environment at each event; it is restored on the way out of the last such
    context open.
    """
    return _EVENT_BATCHING.held(str(size))
