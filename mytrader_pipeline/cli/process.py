"""The ``mytrader`` process: its entry point, and its heap kept out of the cyclic garbage collector's way.

A command imports Dagster, polars, pandera and SQLAlchemy: about a million objects that live as long as the
process. Python's cyclic collector traverses every tracked object at each full collection, and allocations trigger
collections as these imports proceed and as a run makes its events: 0.6 s of a 4.5 s daily run was spent finding
nothing to free. So the process imports with the collector paused, then freezes what the imports made
(``gc.freeze``: out of every later collection, still freed by reference counting), and collects only what the
command itself makes. Only the process's own entry point does this; ``cli.main`` called in another process (the
tests) leaves that process's collector alone.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import NoReturn

_ENTRY = False  # set by ``run``: this process is a ``mytrader`` command


@contextlib.contextmanager
def heavy_imports() -> Iterator[None]:
    """Imports inside this block run with the collector paused, and what they made is frozen after (in a
    ``mytrader`` process; elsewhere the block changes nothing)."""
    if not _ENTRY or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def run() -> NoReturn:
    """The process's entry point (the ``mytrader`` script, ``python -m mytrader_pipeline.cli``): ``cli.main``, then
    exit with its code.

    Before exiting, every object alive is frozen too: the interpreter's shutdown otherwise collects across all of
    them, about a second of a daily run spent finding nothing worth freeing (the process ends anyway).
    """
    from mytrader_pipeline.cli import main  # this package's own module, not a heavy import

    global _ENTRY
    _ENTRY = True
    gc.freeze()  # the command line's own imports (this package's), made before this runs
    code = main()
    gc.freeze()
    sys.exit(code)
