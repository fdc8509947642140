"""Where ``mytrader run``'s time goes around the loader: cProfile of ``runner.run_import`` in process.

Run by hand from the project root, never as a test::

    .venv/bin/python benchmarks/profile_run.py [--scale 0.25] [--warehouse postgres|sqlite] [--top 25]

It generates the clean sample tree in a temporary folder, then profiles, in one process with a fresh SQLite Dagster
instance (the default of ``mytrader run``): the initial load and one new day appended to every file. For each it
prints the wall clock, the cumulative seconds of the parts that matter (Dagster's event writes, planned events at
run creation, the importer) with their call counts, and the top functions by cumulative time. The PostgreSQL
warehouse is a fresh ``mt_prof_<random>`` database, dropped at the end.
"""

import argparse
import cProfile
import pstats
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg
from psycopg import sql

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.defs.event_log import kept_open_instance
from mytrader_pipeline.local_runs import run_import
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.sampledata import generate_sample

sys.path.insert(0, str(Path(__file__).parent))
from bench_append import ADMIN_URL, END_DATE, append_one_day

# (label, file name fragment, function name): the parts of a run whose cumulative time is reported
PARTS = [
    ("event writes (store_event)", "event_log", "store_event"),
    ("event batches (store_event_batch)", "event_log", "store_event_batch"),
    ("planned events at run creation", "run_domain.py", "_log_asset_planned_events"),
    ("importer (read, validate, load)", "importer.py", "run"),
    ("partition registration", "partitions.py", "register_partitions"),
    ("run log files", "run_logs.py", "write_run_log"),
    ("execute_in_process", "job_definition.py", "execute_in_process"),
]


def parts(stats: pstats.Stats) -> list[tuple[str, float, int]]:
    """Each part's cumulative seconds and calls (outermost frames only: recursion is not counted twice)."""
    found: list[tuple[str, float, int]] = []
    table = stats.stats  # type: ignore[attr-defined]
    for label, fragment, name in PARTS:
        seconds, calls = 0.0, 0
        for (file, _line, func), (_cc, nc, _tt, ct, _callers) in table.items():
            if func == name and fragment in file:
                seconds, calls = seconds + ct, calls + nc
        found.append((label, seconds, calls))
    return found


def profile_run(
    label: str, root: Path, url: str, instance: dg.DagsterInstance, top: int, logs: Path, dump: Path | None = None
) -> None:
    """Profile one ``run_import`` over the tree and print its parts (and save the profile in ``dump``, if given)."""
    registry = load_markets()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    summaries = run_import(
        root, url, registry, registry.select(None), log_level=None, progress=False, instance=instance, logs_dir=logs
    )
    profiler.disable()
    wall = time.perf_counter() - started
    rows = sum(s.rows_read for s in summaries)
    loaded = sum(s.files_loaded for s in summaries)
    print(f"\n== {label}: {wall:.2f} s wall, {loaded} files loaded, {rows} rows read")
    stats = pstats.Stats(profiler)
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        stats.dump_stats(dump / f"{label}.prof")
    for name, seconds, calls in parts(stats):
        print(f"  {name:<38} {seconds:8.2f} s  {calls:>7} calls")
    if top:
        stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    """Generate the tree, profile the initial load and the append, clean up."""
    parser = argparse.ArgumentParser(description="cProfile of mytrader run's initial load and daily append.")
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--warehouse", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--instance",
        choices=("kept-open", "stock"),
        default="kept-open",
        help="mytrader run's local instance (kept-open event log) or Dagster's stock SQLite one",
    )
    parser.add_argument("--top", type=int, default=0, help="also print the top N functions by cumulative time")
    parser.add_argument("--dump", type=Path, help="save each profile here (<label>.prof, for pstats or snakeviz)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mt_prof_run_"))
    name = f"mt_prof_{secrets.token_hex(4)}"
    if args.warehouse == "postgres":
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    else:
        url = f"sqlite:///{work / 'warehouse.db'}"
    try:
        root = work / "DATA"
        generate_sample(root, seed=42, scale=args.scale, end_date=END_DATE)
        ensure_schema(make_engine(url))
        (work / "dagster_home").mkdir()
        home = work / "dagster_home"
        opened = kept_open_instance(home) if args.instance == "kept-open" else dg.DagsterInstance.from_config(str(home))
        with opened as instance:
            profile_run("initial", root, url, instance, args.top, work / "logs", args.dump)
            append_one_day(root)
            profile_run("append", root, url, instance, args.top, work / "logs", args.dump)
    finally:
        if args.warehouse == "postgres":
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
