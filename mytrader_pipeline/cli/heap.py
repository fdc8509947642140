"""The ``mytrader`` process's heap, kept out of the cyclic garbage collector's way.

A command imports Dagster, polars, pandera and SQLAlchemy: about a million objects that live as long as the
process. Python's cyclic collector traverses every tracked object at each full collection, and allocations trigger
collections as these imports proceed and as a run makes its events: 0.6 s of a 4.7 s daily run was spent finding
nothing to free. So the process imports with the collector paused, then freezes what the imports made
(``gc.freeze``: out of every later collection, still freed by reference counting), and collects only what the
command itself makes. Only the process's own entry point (``cli.process``) turns this on; ``cli.main`` called in
another process (the tests) leaves that process's collector alone.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_process = {"entry": False}  # set by ``enter_process``: this process is a ``mytrader`` command


def enter_process() -> None:
    """This process is a ``mytrader`` command: ``heavy_imports`` takes effect, and what is alive now is frozen."""
    _process["entry"] = True
    gc.freeze()


def leave_process() -> None:
    """Freeze everything before the interpreter exits: its shutdown otherwise collects across all of it, about a
    second of a daily run spent finding nothing worth freeing (the process ends anyway)."""
    gc.freeze()


@contextlib.contextmanager
def heavy_imports() -> Iterator[None]:
    """Imports inside this block run with the collector paused, and what they made is frozen after (in a
    ``mytrader`` process; elsewhere the block changes nothing)."""
    if not _process["entry"] or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
