"""The ``mytrader`` process's entry point: the command line, with the process's heap handling (``cli.heap``)."""

from __future__ import annotations

import sys
from typing import NoReturn

from mytrader_pipeline.cli import main
from mytrader_pipeline.cli.heap import enter_process, leave_process


def run() -> NoReturn:
    """The ``mytrader`` script and ``python -m mytrader_pipeline.cli``: ``cli.main``, then exit with its code."""
    enter_process()  # the command line's own imports, made before this runs, are frozen
    code = main()
    leave_process()
    sys.exit(code)
