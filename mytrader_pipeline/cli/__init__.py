"""The ``mytrader`` command: one module per group of subcommands, each with a ``register(commands)``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from mytrader_pipeline.cli import deployment, dlq, ingest, jobs, monitoring

# Each module adds its subcommands; a new group of commands is a new module listed here.
COMMAND_MODULES = [ingest, jobs, deployment, dlq, monitoring]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mytrader``."""
    parser = argparse.ArgumentParser(prog="mytrader", description="MyTrader market-data batch ingest.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mytrader`` command."""
    warnings.filterwarnings("ignore", module="dagster")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
