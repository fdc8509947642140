"""Loads in flight on this machine: slots every loading process shares (a lock file each), so runs side by side do
not oversubscribe the cores.

A deployment runs each market's import in a worker process of its own; each process keeps up to
``importer.GROUPS_IN_FLIGHT`` groups in flight. Four market runs at once on 2 cores were 16 groups (and their
PostgreSQL backends) thrashing, and a run starting late got little of the CPU for its own start: at scale 3 the
deployment loaded at about 85k rows/s where ``mytrader run`` (one process, four groups in flight) loads at 100-107k.
A group takes one of the machine's slots for its load: slot ``i`` is held by an exclusive ``flock`` on
``<temp dir>/mytrader-load-slots-<uid>/<scope digest>/slot-<i>``, which the kernel releases when the holder's file is
closed or its process dies, so a killed worker never keeps one. A process allowed ``limit`` groups tries slots
``0 .. limit-1``. The scope is the warehouse: the loads into one database share slots (a deployment's runs, and a
``mytrader run`` beside them); two deployments on one machine, or two test databases, do not wait for each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

POLL_SECONDS = 0.02  # a waiting group looks for a free slot this often (a group's load takes 0.1-2 s)


def slots_dir(scope: str) -> Path:
    """Where this machine's slots for ``scope`` (a warehouse) are: this user's (another user's is another
    deployment), under a digest of the scope (it may name a database and its user)."""
    digest = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mytrader-load-slots-{os.getuid()}" / digest


@contextlib.contextmanager
def machine_slot(limit: int, scope: str, directory: Path | None = None) -> Iterator[int]:
    """Within: one of the machine's first ``limit`` slots of ``scope`` is held (in ``directory`` if given); waits
    while all are. Yields the slot's number."""
    folder = directory or slots_dir(scope)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    while True:
        for number in range(limit):
            fd = os.open(folder / f"slot-{number}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield number
                return
            finally:
                os.close(fd)  # closing the file releases its lock
        time.sleep(POLL_SECONDS)
