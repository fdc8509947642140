"""Daily-run benchmark (issue 12): whole ``mytrader run`` commands, process start to exit, into a fresh PostgreSQL.

Run by hand from the project root, never as a test::

    .venv/bin/python benchmarks/bench_append.py [--scale 1.0] [--json out.json]

It generates the clean sample tree in a temporary folder and times, in one run: the initial load; a run over the
unchanged tree (no-op); one new day appended to every file (the scraper's daily rewrite: whole history plus one row);
and the no-op again. It prints each time and its ratio to the initial load (goals: append <= 0.15 x, no-op <= 0.10 x),
checks the appended rows landed, and drops its ``mt_bench_<random>`` database at the end.
"""

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from mytrader_pipeline.sampledata import generate_sample

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
END_DATE = dt.date(2026, 11, 27)
MYTRADER = Path(sys.executable).with_name("mytrader")


def append_one_day(root: Path) -> int:
    """Append to every CSV file a copy of its last row dated one day later; returns the files changed."""
    changed = 0
    for path in sorted(root.glob("*/*.csv")):
        data = path.read_bytes()
        last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
        fields = last.split(",")
        fields[1] = str(dt.date.fromisoformat(fields[1]) + dt.timedelta(days=1))
        path.write_bytes(data + (",".join(fields) + "\n").encode())
        changed += 1
    return changed


def timed_run(url: str, root: Path, work: Path) -> tuple[float, dict[str, object]]:
    """One whole ``mytrader run --json`` command: wall seconds and its summary."""
    project = str(Path(__file__).resolve().parents[1])  # this checkout's code, whatever the venv was installed from
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home"), "PYTHONPATH": project}
    command = [str(MYTRADER), "run", "--database-url", url, "--data-root", str(root), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mytrader run failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def rows_read(summary: dict[str, object]) -> int:
    markets = summary.get("markets", summary)
    assert isinstance(markets, dict)
    return sum(int(m.get("rows_read", 0)) for m in markets.values() if isinstance(m, dict))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its report."""
    parser = argparse.ArgumentParser(description="Daily-run benchmark: initial load, no-op, one day appended.")
    parser.add_argument("--scale", type=float, default=1.0, help="sample tree scale (1.0 = ~1.1M rows)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL URL allowed to create databases")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mt_bench_append_"))
    name = f"mt_bench_{secrets.token_hex(4)}"
    url = args.admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        root = work / "DATA"
        generate_sample(root, seed=42, scale=args.scale, end_date=END_DATE)
        (work / "dagster_home").mkdir()
        results: dict[str, dict[str, float | int]] = {}
        for label in ("initial", "no-op", "append", "no-op after append"):
            if label == "append":
                append_one_day(root)
            seconds, summary = timed_run(url, root, work)
            results[label] = {"seconds": round(seconds, 2), "rows_read": rows_read(summary)}
            print(f"{label:<20} {seconds:7.2f} s  rows read {results[label]['rows_read']:>9}", flush=True)
        with psycopg.connect(url) as conn:
            new_rows = conn.execute(
                "SELECT count(*) FROM historical_market_data WHERE trade_date > %s", (END_DATE,)
            ).fetchone()
        initial = float(results["initial"]["seconds"])
        report = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "scale": args.scale,
            "results": results,
            "appended_rows_in_warehouse": new_rows[0] if new_rows else 0,
            "append_ratio": round(float(results["append"]["seconds"]) / initial, 3),
            "noop_ratio": round(float(results["no-op"]["seconds"]) / initial, 3),
        }
        print(
            f"append {report['append_ratio']:.3f} x initial (goal <= 0.15), "
            f"no-op {report['noop_ratio']:.3f} x initial (goal <= 0.10); "
            f"{report['appended_rows_in_warehouse']} appended rows in the warehouse"
        )
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
