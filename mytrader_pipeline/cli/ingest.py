"""``mytrader generate-sample``, ``mytrader run`` (the main job) and ``mytrader db upgrade``."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from mytrader_pipeline.cli.common import database_url_option, print_table
from mytrader_pipeline.cli.heap import heavy_imports
from mytrader_pipeline.settings import default_data_root, default_database_url, get_settings, state_dir

# Lazy for speed: each command imports what loads SQLAlchemy, polars or Dagster (1-3 s) when it runs, so that
# `mytrader --help` and the other commands need not pay for it.


@click.command("generate-sample")
@click.argument("dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the random generator.")
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply the number of files per market.")
@click.option("--dirty", is_flag=True, help="Add realistic defects to some files.")
def generate_sample_command(dir: Path, seed: int, scale: float, dirty: bool) -> int:
    """Write a synthetic Stock_Scrapper data tree into DIR."""
    from mytrader_pipeline.sampledata import generate_sample

    summary = generate_sample(dir, seed=seed, scale=scale, dirty=dirty)
    rows = [(market, count, f"{summary.rows[market]:,}") for market, count in summary.files.items()]
    rows.append(("total", sum(summary.files.values()), f"{summary.total_rows:,}"))
    print_table([("market", "left"), ("files", "right"), ("rows", "right")], rows)
    print(f"written to {summary.root}")
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


INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


@click.command("run")
@click.option("--data-root", metavar="DIR", help="Folder with BIST/, Crypto/, NASDAQ/, NYSE/ (env MYTRADER_DATA_ROOT).")
@database_url_option()
@click.option("--markets", metavar="BIST,...", help="Comma-separated market codes (default: all).")
@click.option("--force", is_flag=True, help="Reload files even when unchanged since their last load.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--verbose",
    is_flag=True,
    help="Print every Dagster event and stack trace, not only progress and one line per failed file.",
)
def run_command(
    data_root: str | None, database_url: str | None, markets: str | None, force: bool, as_json: bool, verbose: bool
) -> int:
    """Import every file of the selected markets, here.

    The quickstart's main job: through Dagster, in this process. Exit 1 if any file failed, 3 if the warehouse
    cannot be used.
    """
    from mytrader_pipeline.markets import load_markets

    root = Path(data_root or get_settings().data_root or default_data_root()).resolve()
    database_url = database_url or get_settings().database_url or default_database_url()
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not root.is_dir() and (data_root or get_settings().data_root):
        print(f"error: data root {root} is not a folder", file=sys.stderr)
        return 2
    registry = load_markets(get_settings().markets_file)
    try:
        selected = registry.select(markets)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if not _check_warehouse(database_url, verbose):  # before importing Dagster: it takes seconds
        return 3
    with heavy_imports():
        from mytrader_pipeline.run_summary import MarketRunSummary
        from mytrader_pipeline.runner import plan_import, report_unchanged

    # polars (imported with the runner) takes over SIGINT: it swallows Ctrl-C unless a query is running, and then
    # fails that query. Python's own handler again: Ctrl-C interrupts the command (``_stop_on_interrupt`` below).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if not root.is_dir():
        from mytrader_pipeline.sampledata import generate_sample

        print(f"no data root configured: generating the sample tree in {root}", file=sys.stderr)
        generate_sample(root)

    def print_failures(summary: MarketRunSummary) -> None:
        for line in summary.failure_lines():
            print(line, file=sys.stderr, flush=True)

    echo = (lambda line: print(line, file=sys.stderr)) if not as_json else (lambda _line: None)
    plans = plan_import(root, database_url, selected, force=force, echo=echo)
    if any(plan.changed for plan in plans):  # Dagster (seconds of imports) only when there is something to load
        with heavy_imports():
            from mytrader_pipeline.local_runs import LocalRuns, run_planned

        runs = LocalRuns(
            root, database_url, registry, state_dir() / "logs", force=force, log_level="DEBUG" if verbose else None,
            progress=not as_json,
        )  # fmt: skip
        with _stop_on_interrupt(runs.stop, lambda: runs.stopping):
            summaries = run_planned(plans, runs, on_market=print_failures)
        stopped = runs.stopping
    else:
        summaries, stopped = report_unchanged(database_url, plans, on_market=print_failures), False
    failed = sum(s.files_failed for s in summaries)
    if as_json:
        print(json.dumps({s.market: s.as_json() for s in summaries}, indent=2))
    else:
        headers = ["market", "files", "loaded", "skipped", "failed", "rows read", "rows loaded", "rejected", "rows/s"]
        print_table(
            [(h, "left" if h == "market" else "right") for h in headers],
            [
                (
                    s.market,
                    s.files,
                    s.files_loaded,
                    s.files_skipped,
                    s.files_failed,
                    f"{s.rows_read:,}",
                    f"{s.rows_loaded:,}",
                    f"{s.rows_rejected:,}",
                    f"{s.rows_per_second:,.0f}",
                )
                for s in summaries
            ],
        )
        print(f"warehouse: {_shown_url(database_url)}")
    if stopped:
        print("mytrader: stopped by Ctrl-C; a run again loads the rest", file=sys.stderr)
        return INTERRUPTED
    return 1 if failed else 0


@contextlib.contextmanager
def _stop_on_interrupt(stop: Callable[[], None], stopping: Callable[[], bool]) -> Iterator[None]:
    """Within: Ctrl-C calls ``stop`` (the runs load no further file: the files being loaded commit or roll back, no
    other market starts, the runs end cancelled); pressed again, it says it is stopping. Abandoning the files in
    flight (and leaving the runs unfinished for the UI) takes a harder signal: Ctrl-\\ or kill."""

    def on_interrupt(_signum: int, _frame: object) -> None:
        if stopping():
            print("mytrader: still stopping: the files being loaded finish or roll back", file=sys.stderr, flush=True)
            return
        print(
            "mytrader: stopping: the files being loaded finish or roll back, nothing else starts",
            file=sys.stderr,
            flush=True,
        )
        stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@click.group("db")
def db_group() -> None:
    """Warehouse schema."""


@db_group.command("upgrade")
@database_url_option()
def db_upgrade_command(database_url: str | None) -> int:
    """Create or upgrade the warehouse tables."""
    from mytrader_pipeline.core.db import ensure_schema, make_engine

    url = database_url or get_settings().database_url or default_database_url()
    print(f"schema version {ensure_schema(make_engine(url))}")
    return 0


def register(group: click.Group) -> None:
    """Add this module's commands to the ``mytrader`` group."""
    for command in (generate_sample_command, run_command, db_group):
        group.add_command(command)
