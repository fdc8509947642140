"""``mytrader generate-sample``, ``mytrader run`` (the main job) and ``mytrader db upgrade``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mytrader_pipeline.settings import default_data_root, default_database_url

# Lazy for speed: each command imports what loads SQLAlchemy, polars or Dagster (1-3 s) when it runs, so that
# `mytrader --help` and the other commands need not pay for it.


def _generate_sample(args: argparse.Namespace) -> int:
    from mytrader_pipeline.sampledata import generate_sample

    summary = generate_sample(Path(args.dir), seed=args.seed, scale=args.scale, dirty=args.dirty)
    for market, count in summary.files.items():
        print(f"{market:<8} {count:>5} files {summary.rows[market]:>10,} rows")
    print(f"{'total':<8} {sum(summary.files.values()):>5} files {summary.total_rows:>10,} rows -> {summary.root}")
    if summary.dirty_files:
        print(f"defects written into {len(summary.dirty_files)} file(s): {', '.join(summary.dirty_files)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from mytrader_pipeline.markets import load_markets
    from mytrader_pipeline.runner import run_import

    data_root = Path(args.data_root or os.environ.get("MYTRADER_DATA_ROOT") or default_data_root()).resolve()
    database_url = args.database_url or os.environ.get("MYTRADER_DATABASE_URL") or default_database_url()
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not data_root.is_dir():
        if args.data_root or os.environ.get("MYTRADER_DATA_ROOT"):
            print(f"error: data root {data_root} is not a folder", file=sys.stderr)
            return 2
        from mytrader_pipeline.sampledata import generate_sample

        print(f"no data root configured: generating the sample tree in {data_root}", file=sys.stderr)
        generate_sample(data_root)
    registry = load_markets(os.environ.get("MYTRADER_MARKETS_FILE") or None)
    try:
        markets = registry.select(args.markets)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    echo = (lambda line: print(line, file=sys.stderr)) if not args.json else (lambda _line: None)
    log_level = "DEBUG" if args.verbose else "INFO"
    summaries = run_import(data_root, database_url, registry, markets, force=args.force, log_level=log_level, echo=echo)
    failed = sum(s.files_failed for s in summaries)
    if args.json:
        print(json.dumps({s.market: s.as_json() for s in summaries}, indent=2))
    else:
        print(
            f"{'market':<8} {'files':>6} {'loaded':>6} {'skipped':>7} {'failed':>6} "
            f"{'rows read':>11} {'rows loaded':>11} {'rejected':>9} {'rows/s':>10}"
        )
        for s in summaries:
            print(
                f"{s.market:<8} {s.files:>6} {s.files_loaded:>6} {s.files_skipped:>7} {s.files_failed:>6} "
                f"{s.rows_read:>11,} {s.rows_loaded:>11,} {s.rows_rejected:>9,} {s.rows_per_second:>10,.0f}"
            )
            for source_file, reason in s.failures.items():
                print(f"  FAILED {source_file}: {reason}")
        print(f"warehouse: {database_url.split('@')[-1]}")
    return 1 if failed else 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from mytrader_pipeline.core.db import ensure_schema, make_engine

    url = args.database_url or os.environ.get("MYTRADER_DATABASE_URL") or default_database_url()
    print(f"schema version {ensure_schema(make_engine(url))}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``mytrader`` parser."""
    sample = commands.add_parser("generate-sample", help="write a synthetic Stock_Scrapper data tree")
    sample.add_argument("dir")
    sample.add_argument("--seed", type=int, default=42)
    sample.add_argument("--scale", type=float, default=1.0, help="multiply the number of files per market")
    sample.add_argument("--dirty", action="store_true", help="add realistic defects to some files")
    sample.set_defaults(func=_generate_sample)

    run = commands.add_parser("run", help="import every file of the selected markets through Dagster")
    run.add_argument("--data-root", help="folder with BIST/, Crypto/, NASDAQ/, NYSE/ (env MYTRADER_DATA_ROOT)")
    run.add_argument("--database-url", help="SQLAlchemy URL of the warehouse (env MYTRADER_DATABASE_URL)")
    run.add_argument("--markets", help="comma-separated market codes (default: all)")
    run.add_argument("--force", action="store_true", help="reload files even when unchanged since their last load")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    run.add_argument("--verbose", action="store_true", help="log every Dagster event, not only progress")
    run.set_defaults(func=_run)

    db = commands.add_parser("db", help="warehouse schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create or upgrade the warehouse tables")
    upgrade.add_argument("--database-url")
    upgrade.set_defaults(func=_db_upgrade)
