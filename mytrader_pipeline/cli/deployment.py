"""``mytrader instance-config``: the deployment's ``dagster.yaml``, generated from the market registry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mytrader_pipeline.instance_config import render_instance_config
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import get_settings


def _instance_config(args: argparse.Namespace) -> int:
    text = render_instance_config(load_markets(get_settings().markets_file))
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
    target.add_argument("--write", metavar="FILE", help="write it to FILE (e.g. dagster.yaml or $DAGSTER_HOME/...)")
    target.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from what would be generated")
    config.set_defaults(func=_instance_config)
