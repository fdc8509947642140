"""One writer at a time per SQLite database file in this process: file transactions queue here, not on SQLite's lock.

SQLite lets one transaction write at a time. Threads that open write transactions together wait in SQLite's busy
handler, which polls with sleeps of up to 100 ms: the lock sits free between its holder's commit and the next
poll, and every poll costs a wake-up. A Python lock hands the write over the moment the holder commits, while the
other threads keep reading and validating their files. Writers in other processes still wait on SQLite's lock (its
busy timeout); PostgreSQL takes row locks and needs no gate.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import Engine

# Re-entrant: a thread that already writes (an audit row written from inside a load) goes on, to SQLite's own lock.
_gates: dict[str, threading.RLock] = {}
_gates_lock = threading.Lock()


def _gate(engine: Engine) -> threading.RLock | None:
    """The lock of ``engine``'s database file; None for other databases and in-memory SQLite (one per connection)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    key = str(Path(url.database).resolve())  # one file, however its URLs name it
    with _gates_lock:
        return _gates.setdefault(key, threading.RLock())


@contextlib.contextmanager
def sole_writer(engine: Engine) -> Iterator[None]:
    """Hold the write of ``engine``'s SQLite database file for this process's threads; no-op for other databases."""
    gate = _gate(engine)
    if gate is None:
        yield
        return
    with gate:
        yield
