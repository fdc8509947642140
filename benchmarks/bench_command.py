"""Whole-command benchmark (issue 12): ``mytrader run`` as a user runs it, start to exit, against ``psql \\copy``.

Run by hand from the project root, never as a test::

    .venv/bin/python benchmarks/bench_command.py [--scale 1.0] [--json out.json] [--only sqlite] [--tree DIR]

In one run it generates the clean sample tree, then times (wall clock of each process, start to exit):

1. ``mytrader run --data-root TREE --database-url <fresh PostgreSQL database> --json`` with a fresh Dagster home;
2. ``psql -c "\\copy ... FROM file CSV"`` of the same rows (exported from step 1) into a fresh table identical to
   ``historical_market_data`` (same key), in another fresh database;
3. the embedded SQLite quickstart: ``mytrader run --data-root TREE --json`` with no ``--database-url`` and no
   ``DAGSTER_HOME``, in an empty working folder (so ``./.mytrader/warehouse.db`` and ``./.mytrader/dagster_home``).

It prints rows/s of each and the ratio command / ``\\copy``. ``--only sqlite`` times the SQLite quickstart alone
(no PostgreSQL needed); ``--tree DIR`` loads an existing sample tree instead of generating one (the same tree for a
before/after pair). See benchmarks/README.md for the latest figures.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from bench_ingest import ADMIN_URL, Databases, copy_reference, databases, export_rows, log

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.sampledata import generate_sample

PROJECT = Path(__file__).resolve().parent.parent
PYCACHE = Path(tempfile.gettempdir()) / "mytrader-bench-pycache"  # the commands' bytecode (PYTHONPYCACHEPREFIX)


def run_command(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``mytrader <args> --json`` in ``cwd``; returns its summed JSON summary, wall and CPU seconds."""
    cmd = [sys.executable, "-m", "mytrader_pipeline.cli", *args, "--json"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"mytrader {' '.join(args)} exited {code}: {stderr[-3000:]}")
    markets = json.loads(stdout)
    rows = sum(m["rows_read"] for m in markets.values())
    return {
        "rows": rows,
        "rows_loaded": sum(m["rows_loaded"] for m in markets.values()),
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def command_env(dagster_home: Path | None) -> dict[str, str]:
    """The environment of a ``mytrader`` child: this checkout's code first, no inherited warehouse or home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYTRADER_") and k != "DAGSTER_HOME"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    # As an installed package runs: its modules' bytecode compiled once, not at every start (a sandbox that sets
    # PYTHONDONTWRITEBYTECODE would have every command compile the project's ~100 modules again: ~0.4 s each).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if dagster_home is not None:
        dagster_home.mkdir(parents=True)
        env["DAGSTER_HOME"] = str(dagster_home)
    return env


def sample_tree(args: argparse.Namespace, work: Path) -> tuple[Path, int, int]:
    """The tree to load (``--tree``, or generated at ``--scale`` in ``work``), its rows and files."""
    if args.tree is not None:
        files = sorted(args.tree.rglob("*.csv"))
        rows = sum(max(sum(1 for _ in f.open("rb")) - 1, 0) for f in files)  # data lines: the header excluded
        return args.tree, rows, len(files)
    tree = work / "tree"
    log(f"generating the sample tree (seed 42, scale {args.scale}) in {tree}")
    summary = generate_sample(tree, seed=42, scale=args.scale)
    return tree, summary.total_rows, sum(summary.files.values())


def quickstart(tree: Path, work: Path) -> dict[str, Any]:
    """The embedded SQLite quickstart: ``mytrader run`` without ``--database-url``, in an empty folder."""
    quickstart_dir = work / "quickstart"
    quickstart_dir.mkdir()
    log("SQLite quickstart: mytrader run without --database-url")
    lite = run_command(["run", "--data-root", str(tree)], quickstart_dir, command_env(None))
    log(f"  {lite['rows_per_second']:,.0f} rows/s in {lite['seconds']:.1f} s")
    return lite


def header(args: argparse.Namespace, rows: int, files: int, load_before: float) -> dict[str, Any]:
    """What every result records: when, what tree, which machine and how loaded it was."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "scale": args.scale if args.tree is None else str(args.tree),
        "rows": rows,
        "files": files,
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def measure_sqlite(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The SQLite quickstart alone (``--only sqlite``)."""
    load_before = os.getloadavg()[0]
    tree, rows, files = sample_tree(args, work)
    lite = quickstart(tree, work)
    return {**header(args, rows, files, load_before), "command_sqlite": lite}


def reference_copy(dbs: Databases, csv_path: Path, rows_loaded: int) -> dict[str, Any]:
    """``psql \\copy`` of the command's rows (``csv_path``) into a table identical to ``historical_market_data``.

    The table is in a fresh database, dropped once the copy is timed.

    Raises:
        RuntimeError: when the copy did not load the ``rows_loaded`` rows the command loaded.
    """
    reference_url = dbs.create("ref")
    engine = make_engine(reference_url)
    ensure_schema(engine)
    engine.dispose()
    log("psql \\copy of the same rows into an identical table")
    reference = copy_reference(reference_url, csv_path, "ref_copy")
    dbs.drop(reference_url)
    if reference["rows"] != rows_loaded:
        raise RuntimeError(f"\\copy loaded {reference['rows']} rows, the command {rows_loaded}")
    return reference


def measure(args: argparse.Namespace, work: Path, dbs: Databases) -> dict[str, Any]:
    """The three measurements, in a scratch folder and with databases the caller drops."""
    load_before = os.getloadavg()[0]
    tree, rows, files = sample_tree(args, work)
    with psycopg.connect(args.admin_url) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0].split()[0]

    url = dbs.create("command")
    log("mytrader run into a fresh PostgreSQL database")
    pg = run_command(["run", "--data-root", str(tree), "--database-url", url], work, command_env(work / "dh_pg"))
    log(f"  {pg['rows_per_second']:,.0f} rows/s in {pg['seconds']:.1f} s")

    csv_path = work / "normalized.csv"
    export_rows(url, csv_path)
    dbs.drop(url)
    reference = reference_copy(dbs, csv_path, pg["rows_loaded"])
    log(f"  {reference['rows_per_second']:,.0f} rows/s in {reference['seconds']:.1f} s")
    csv_path.unlink()

    lite = quickstart(tree, work)
    return {
        **header(args, rows, files, load_before),
        "postgres": postgres,
        "command_postgresql": pg,
        "reference": reference,
        "command_sqlite": lite,
        "ratio_command_vs_copy": pg["rows_per_second"] / reference["rows_per_second"],
        "ratio_sqlite_vs_copy": lite["rows_per_second"] / reference["rows_per_second"],
    }


def report_sqlite(r: dict[str, Any]) -> str:
    """The table printed at the end of ``--only sqlite``."""
    m = r["command_sqlite"]
    return "\n".join(
        [
            f"SQLite quickstart benchmark  {r['date']}  scale {r['scale']}  rows {r['rows']:,}  files {r['files']}  "
            f"cores {r['cores']}  load avg {r['load_average_1min'][0]} -> {r['load_average_1min'][1]}",
            f"{'what':<52}{'rows':>11}{'seconds':>9}{'rows/s':>10}{'CPU s':>8}",
            f"{'mytrader run, SQLite quickstart (whole command)':<52}{m['rows']:>11,}{m['seconds']:>9.1f}"
            f"{m['rows_per_second']:>10,.0f}{m['cpu_seconds']:>8.1f}",
            f"SQLite quickstart = {m['rows_per_second']:,.0f} rows/s   (target >= 50,000)",
        ]
    )


def report(r: dict[str, Any]) -> str:
    """The table printed at the end."""
    lines = [
        f"command benchmark  {r['date']}  scale {r['scale']}  rows {r['rows']:,}  files {r['files']}  "
        f"cores {r['cores']}  PostgreSQL {r['postgres']}  load avg {r['load_average_1min'][0]} -> "
        f"{r['load_average_1min'][1]}",
        f"{'what':<52}{'rows':>11}{'seconds':>9}{'rows/s':>10}{'CPU s':>8}",
    ]
    for name, key in (
        ("mytrader run, PostgreSQL (whole command)", "command_postgresql"),
        ("psql \\copy, same rows, identical table", "reference"),
        ("mytrader run, SQLite quickstart (whole command)", "command_sqlite"),
    ):
        m = r[key]
        cpu = f"{m['cpu_seconds']:.1f}" if "cpu_seconds" in m else ""
        lines.append(f"{name:<52}{m['rows']:>11,}{m['seconds']:>9.1f}{m['rows_per_second']:>10,.0f}{cpu:>8}")
    lines += [
        f"command / \\copy = {r['ratio_command_vs_copy']:.2f}   (issue 12 target >= 0.7 at scale 3)",
        f"SQLite quickstart = {r['command_sqlite']['rows_per_second']:,.0f} rows/s   (target >= 50,000);"
        f" / \\copy = {r['ratio_sqlite_vs_copy']:.2f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark once and print the table (and --json)."""
    parser = argparse.ArgumentParser(description="Whole `mytrader run` vs psql \\copy, and the SQLite quickstart.")
    parser.add_argument("--scale", type=float, default=1.0, help="sample tree scale (1.0 = ~1.1M rows)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL URL allowed to create databases")
    parser.add_argument("--only", choices=["sqlite"], help="time only this command (sqlite: the quickstart)")
    parser.add_argument("--tree", type=Path, help="load this sample tree instead of generating one")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mt_bench_cmd_"))
    try:
        if args.only == "sqlite":
            results = measure_sqlite(args, work)
        else:
            with databases(args.admin_url) as dbs:
                results = measure(args, work, dbs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report_sqlite(results) if args.only == "sqlite" else report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
