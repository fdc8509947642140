"""Issue 12's table in one run: whole ``mytrader run`` commands, process start to exit, as ratios measured together.

Run by hand from the project root, never as a test::

    .venv/bin/python benchmarks/bench_issue12.py [--scale 1.0] [--scale-ratio 1,10] [--no-table] [--json out.json]

With ``--scale S`` (the table) it generates the clean sample tree and measures, each a whole command through
``measured.py`` (wall, CPU and peak RSS of the process and its children):

1. the initial load: ``mytrader run --data-root TREE --database-url <fresh PostgreSQL database> --json`` with a
   fresh Dagster home;
2. ``psql \\copy`` of the same rows (exported from step 1) into a fresh table identical to ``historical_market_data``;
3. a no-op: the same command again over the unchanged tree;
4. one new day appended to every file (``bench_append.append_one_day``), then the same command; the new rows must be
   in the warehouse;
5. the SQLite quickstart: ``mytrader run --data-root TREE --json`` with no database URL and no Dagster home, in an
   empty working folder.

With ``--scale-ratio A,B`` it also times the initial load (step 1, fresh database and home) at scale A and at scale
B, and reports B's time over A's against linear scaling (goal: at most 1.05 x B/A). Scale 10 is about 11M rows and
0.7 GiB of CSV in the temporary folder, deleted at the end. Goals are issue 12's; see benchmarks/README.md.

Before each timed step the files just written are flushed (``os.sync``), so the kernel's writeback of a fresh tree
or export does not compete with the step for the disk, and the project's bytecode is compiled once before the first
timed command, as an installed package's is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from bench_append import append_one_day
from bench_command import PROJECT, command_env, reference_copy
from bench_ingest import ADMIN_URL, Databases, databases, export_rows, log
from measured import GIB, MIB, run_measured, scale_ratio

from mytrader_pipeline.sampledata import generate_sample

# Issue 12's goals: initial load >= 0.7 x \copy's rows/s; append and no-op as fractions of the initial load's time;
# scale B in at most 1.05 x B/A the time of scale A; peak RSS of every command at most 1 GiB.
GOALS = {"vs_copy": 0.7, "append": 0.15, "noop": 0.10, "sqlite_rows_per_second": 50_000, "of_linear": 1.05}


def settle() -> None:
    """Before a timed step: the files just written (a generated tree, an export) are flushed to the disk first, so
    the kernel's writeback of them does not compete with the step for the disk the database writes to."""
    os.sync()


def compile_bytecode(env: dict[str, str]) -> None:
    """The project's bytecode compiled once, untimed, where the commands look for it (as an installed package has
    it from its installation): no timed command compiles modules."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PROJECT / "mytrader_pipeline")], env=env, check=True)


def mytrader(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """One whole ``mytrader <args> --json`` command, measured: its figures and summed JSON summary."""
    settle()
    measured = run_measured([sys.executable, "-m", "mytrader_pipeline.cli", *args, "--json"], cwd=cwd, env=env)
    if measured.exit_code:
        raise RuntimeError(f"mytrader {' '.join(args)} exited {measured.exit_code}: {measured.stderr[-3000:]}")
    markets = json.loads(measured.stdout)
    rows = sum(m["rows_read"] for m in markets.values())
    return {
        **measured.figures(),
        "rows_read": rows,
        "rows_loaded": sum(m["rows_loaded"] for m in markets.values()),
        "files_loaded": sum(m["files_loaded"] for m in markets.values()),
        "rows_per_second": rows / measured.seconds,
    }


def generate(root: Path, scale: float) -> int:
    """The clean sample tree (seed 42) at ``scale``; its rows."""
    log(f"generating the sample tree (seed 42, scale {scale}) in {root}")
    return generate_sample(root, seed=42, scale=scale).total_rows


def initial_load(tree: Path, work: Path, dbs: Databases, label: str) -> tuple[str, dict[str, Any]]:
    """The initial load into a fresh database with a fresh Dagster home: (database URL, figures)."""
    url = dbs.create(label)
    log(f"mytrader run into a fresh PostgreSQL database ({label})")
    run = ["run", "--data-root", str(tree), "--database-url", url]
    figures = mytrader(run, work, command_env(work / f"dh_{label}"))
    log(f"  {figures['seconds']:.1f} s, {figures['rows_per_second']:,.0f} rows/s, {figures['peak_rss_mib']:.0f} MiB")
    return url, figures


def table(args: argparse.Namespace, work: Path, dbs: Databases) -> dict[str, Any]:
    """Steps 1 to 5 at ``args.scale``; the databases are the caller's to drop."""
    tree = work / "tree"
    rows = generate(tree, args.scale)
    compile_bytecode(command_env(None))
    url, initial = initial_load(tree, work, dbs, "command")
    home = command_env(None) | {"DAGSTER_HOME": str(work / "dh_command")}  # the initial load's Dagster home

    csv_path = work / "normalized.csv"
    export_rows(url, csv_path)
    settle()
    reference = reference_copy(dbs, csv_path, initial["rows_loaded"])
    csv_path.unlink()

    run = ["run", "--data-root", str(tree), "--database-url", url]
    log("no-op: the same command over the unchanged tree")
    noop = mytrader(run, work, home)
    files = append_one_day(tree)
    log(f"one day appended to each of {files} files")
    append = mytrader(run, work, home)
    with psycopg.connect(url) as conn:
        total = conn.execute("SELECT count(*) FROM historical_market_data").fetchone()[0]
    if total != initial["rows_loaded"] + files:
        raise RuntimeError(f"{total} rows after the append, expected {initial['rows_loaded']} + {files}")
    dbs.drop(url)

    quickstart = work / "quickstart"
    quickstart.mkdir()
    log("SQLite quickstart: mytrader run without --database-url")
    sqlite = mytrader(["run", "--data-root", str(tree)], quickstart, command_env(None))
    shutil.rmtree(tree)
    return {
        "scale": args.scale,
        "rows": rows,
        "files": files,
        "initial": initial,
        "copy": reference,
        "noop": noop,
        "append": append,
        "sqlite": sqlite,
        "ratios": {
            "vs_copy": initial["rows_per_second"] / reference["rows_per_second"],
            "append": append["seconds"] / initial["seconds"],
            "noop": noop["seconds"] / initial["seconds"],
        },
        "peak_rss_mib": max(m["peak_rss_mib"] for m in (initial, noop, append, sqlite)),
    }


def ratio(scales: tuple[float, float], work: Path, dbs: Databases) -> dict[str, Any]:
    """The initial load at both scales, each into a fresh database and home, and the time ratio."""
    loads = []
    for i, scale in enumerate(scales):
        tree = work / f"tree_{i}"
        rows = generate(tree, scale)
        compile_bytecode(command_env(None))
        url, figures = initial_load(tree, work, dbs, f"scale{i}")
        dbs.drop(url)
        shutil.rmtree(tree)
        loads.append({"scale": scale, "rows": rows, **figures})
    return {"loads": loads, **scale_ratio(loads[0]["seconds"], loads[1]["seconds"], *scales)}


def measure(args: argparse.Namespace, work: Path, dbs: Databases) -> dict[str, Any]:
    """Everything asked for, with the date, the machine and the load average around it."""
    load_before = os.getloadavg()[0]
    with psycopg.connect(args.admin_url) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "postgres": postgres,
    }
    if not args.no_table:
        results["table"] = table(args, work, dbs)
    if args.scale_ratio:
        results["scale_ratio"] = ratio(args.scale_ratio, work, dbs)
    results["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return results


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _goal(name: str, measured: str, goal: str, ok: bool) -> str:
    return f"{name:<44}{measured:>10}{goal:>10}  {_verdict(ok)}"


def report(r: dict[str, Any]) -> str:
    """The tables printed at the end."""
    lines = [
        f"issue 12 benchmark  {r['date']}  {r['cores']} cores  Python {r['python']}  PostgreSQL {r['postgres']}  "
        f"load avg {r['load_average_1min'][0]} -> {r['load_average_1min'][1]}"
    ]
    if "table" in r:
        t, q = r["table"], r["table"]["ratios"]
        lines += [
            f"scale {t['scale']}: {t['rows']:,} rows, {t['files']} files",
            f"{'what':<44}{'seconds':>9}{'rows/s':>10}{'CPU s':>8}{'peak RSS MiB':>14}",
        ]
        for name, key in (
            ("initial load (mytrader run, PostgreSQL)", "initial"),
            ("psql \\copy, same rows, identical table", "copy"),
            ("no-op", "noop"),
            ("one day appended to every file", "append"),
            ("SQLite quickstart", "sqlite"),
        ):
            m = t[key]
            cpu = f"{m['cpu_seconds']:.1f}" if "cpu_seconds" in m else ""
            peak = f"{m['peak_rss_mib']:.0f}" if "peak_rss_mib" in m else ""
            lines.append(f"{name:<44}{m['seconds']:>9.1f}{m['rows_per_second']:>10,.0f}{cpu:>8}{peak:>14}")
        sqlite, rss = t["sqlite"]["rows_per_second"], t["peak_rss_mib"]
        lines += [
            f"{'goal':<44}{'measured':>10}{'goal':>10}",
            _goal("initial load / \\copy (rows/s)", f"{q['vs_copy']:.2f}", ">= 0.7", q["vs_copy"] >= GOALS["vs_copy"]),
            _goal("append / initial (time)", f"{q['append']:.3f}", "<= 0.15", q["append"] <= GOALS["append"]),
            _goal("no-op / initial (time)", f"{q['noop']:.3f}", "<= 0.10", q["noop"] <= GOALS["noop"]),
            _goal("SQLite quickstart rows/s", f"{sqlite:,.0f}", ">= 50k", sqlite >= GOALS["sqlite_rows_per_second"]),
            _goal("peak RSS of any command (MiB)", f"{rss:.0f}", "<= 1024", rss * MIB <= GIB),
        ]
    if "scale_ratio" in r:
        s = r["scale_ratio"]
        a, b = s["loads"]
        for load in (a, b):
            lines.append(
                f"initial load at scale {load['scale']}: {load['rows']:,} rows in {load['seconds']:.1f} s "
                f"({load['rows_per_second']:,.0f} rows/s), peak RSS {load['peak_rss_mib']:.0f} MiB"
            )
        rss_ok = max(a["peak_rss_mib"], b["peak_rss_mib"]) * MIB <= GIB
        lines.append(
            f"scale {b['scale']} / scale {a['scale']}: {s['ratio']:.2f} x = {s['of_linear']:.3f} of linear "
            f"(goal <= 1.05): {_verdict(s['of_linear'] <= GOALS['of_linear'])}; peak RSS <= 1 GiB: {_verdict(rss_ok)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark once and print the tables (and --json)."""
    parser = argparse.ArgumentParser(description="Issue 12's table: whole mytrader commands, as ratios, in one run.")
    parser.add_argument("--scale", type=float, default=1.0, help="sample tree scale of the table (1.0 = ~1.1M rows)")
    parser.add_argument(
        "--scale-ratio",
        type=lambda text: tuple(float(part) for part in text.split(",", 1)),
        help="A,B: also time the initial load at scales A and B (e.g. 1,10)",
    )
    parser.add_argument("--no-table", action="store_true", help="only the --scale-ratio part")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL URL allowed to create databases")
    args = parser.parse_args(argv)
    if args.no_table and not args.scale_ratio:
        parser.error("--no-table needs --scale-ratio")
    work = Path(tempfile.mkdtemp(prefix="mt_bench_i12_"))
    try:
        with databases(args.admin_url) as dbs:
            results = measure(args, work, dbs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
