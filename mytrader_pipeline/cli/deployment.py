"""``mytrader instance-config``: the deployment's ``dagster.yaml``, generated from the market registry."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mytrader_pipeline.instance_config import render_dev_instance_config, render_instance_config
from mytrader_pipeline.markets import load_markets


def _instance_config(args: argparse.Namespace) -> int:
    render = render_dev_instance_config if args.dev else render_instance_config
    text = render(load_markets(os.environ.get("MYTRADER_MARKETS_FILE") or None))
    if args.check:
        path = Path(args.check)
        if not path.is_file() or path.read_text("utf-8") != text:
            print(f"{path} is out of date: run `mytrader instance-config --write {path}`", file=sys.stderr)
            return 1
        return 0
    if args.write:
        Path(args.write).write_text(text, "utf-8")
        print(f"wrote {args.write}", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``mytrader`` parser."""
    config = commands.add_parser(
        "instance-config", help="print dagster.yaml (PostgreSQL storage, run queue limits from the market registry)"
    )
    target = config.add_mutually_exclusive_group()
    target.add_argument(
        "--write", metavar="FILE", help="write it to FILE (e.g. $DAGSTER_HOME/dagster.yaml or deploy/dagster.yaml)"
    )
    config.add_argument(
        "--dev",
        action="store_true",
        help="the checkout's own dagster.yaml for `dagster dev` (embedded storage in ./.mytrader) instead",
    )
    target.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from what would be generated")
    config.set_defaults(func=_instance_config)
