"""``mytrader generate-sample``, ``mytrader run`` (the main job) and ``mytrader db upgrade``."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from mytrader_pipeline.settings import default_data_root, default_database_url, get_settings

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


def _shown_url(url: str) -> str:
    """``url`` without its password, fit for a message."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url.split("@")[-1]


def _check_warehouse(database_url: str, verbose: bool) -> bool:
    """Whether the warehouse can be used; if not, say why in one line (``--verbose``: with the stack trace)."""
    from mytrader_pipeline.core.db import check_database
    from mytrader_pipeline.core.errors import classify

    try:
        check_database(database_url)
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's own words, without SQLAlchemy's wrapping
        reason = " ".join(str(cause).split()) or type(cause).__name__
        if verbose:
            traceback.print_exc()
        print(
            f"mytrader: cannot use the database {_shown_url(database_url)}: {classify(exc).error_class.value}: "
            f"{reason}",
            file=sys.stderr,
        )
        return False
    return True


def _run(args: argparse.Namespace) -> int:
    from mytrader_pipeline.markets import load_markets

    data_root = Path(args.data_root or get_settings().data_root or default_data_root()).resolve()
    database_url = args.database_url or get_settings().database_url or default_database_url()
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not data_root.is_dir() and (args.data_root or get_settings().data_root):
        print(f"error: data root {data_root} is not a folder", file=sys.stderr)
        return 2
    registry = load_markets(get_settings().markets_file)
    try:
        markets = registry.select(args.markets)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if not _check_warehouse(database_url, args.verbose):  # before importing Dagster: it takes seconds
        return 3
    from mytrader_pipeline.runner import MarketRunSummary, run_import

    if not data_root.is_dir():
        from mytrader_pipeline.sampledata import generate_sample

        print(f"no data root configured: generating the sample tree in {data_root}", file=sys.stderr)
        generate_sample(data_root)

    def print_failures(summary: MarketRunSummary) -> None:
        for line in summary.failure_lines():
            print(line, file=sys.stderr, flush=True)

    echo = (lambda line: print(line, file=sys.stderr)) if not args.json else (lambda _line: None)
    summaries = run_import(
        data_root,
        database_url,
        registry,
        markets,
        force=args.force,
        log_level="DEBUG" if args.verbose else None,
        echo=echo,
        progress=not args.json,
        on_market=print_failures,
    )
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
        print(f"warehouse: {_shown_url(database_url)}")
    return 1 if failed else 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from mytrader_pipeline.core.db import ensure_schema, make_engine

    url = args.database_url or get_settings().database_url or default_database_url()
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
    run.add_argument(
        "--verbose",
        action="store_true",
        help="print every Dagster event and stack trace, not only progress and one line per failed file",
    )
    run.set_defaults(func=_run)

    db = commands.add_parser("db", help="warehouse schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create or upgrade the warehouse tables")
    upgrade.add_argument("--database-url")
    upgrade.set_defaults(func=_db_upgrade)
