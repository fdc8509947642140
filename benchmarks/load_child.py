"""Child process of the ingest benchmark: runs our loader (core, no Dagster) once and prints one JSON line.

Run in its own process so its peak memory (VmHWM) is the loader's alone. Usage:
``python benchmarks/load_child.py ROOT URL --concurrency N [--markets BIST,CRYPTO] [--profile out.prof]``.
"""

import argparse
import cProfile
import json
import resource
import sys
import time
import uuid
from pathlib import Path

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.importer import GROUP_BYTES, FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.markets import load_markets


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_tree(
    root: Path, url: str, concurrency: int, markets: list[str] | None, group_bytes: int = GROUP_BYTES
) -> dict[str, object]:
    """Load every file of the chosen markets (one market after the other) and sum what happened.

    Schema creation is done before the clock starts; the clock covers discovery, read, validate, upsert and audit.
    """
    engine = make_engine(url)
    ensure_schema(engine)
    warehouse = Warehouse(engine)
    run_id = f"bench-{uuid.uuid4().hex[:12]}"
    options = ImportOptions(concurrency=concurrency, group_bytes=group_bytes)
    results: list[FileResult] = []
    per_market: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for market in load_markets():
        if markets and market.code not in markets:
            continue
        t0 = time.perf_counter()
        files = scan_market(root, market)
        mine = MarketImporter(warehouse, market, run_id, options).run(files)
        results += mine
        per_market[market.code] = {
            "files": len(files),
            "rows_read": sum(r.rows_read for r in mine),
            "seconds": time.perf_counter() - t0,
        }
    seconds = time.perf_counter() - started
    engine.dispose()
    outcomes = [r.outcome for r in results if r.outcome]
    return {
        "concurrency": concurrency,
        "files": len(results),
        "failed": [
            f"{r.file.source_file}: {r.error.message if r.error else r.status}"
            for r in results
            if r.status != "succeeded"
        ],
        "rows_read": sum(o.rows_read for o in outcomes),
        "rows_loaded": sum(o.rows_loaded for o in outcomes),
        "rows_written": sum(o.rows_written for o in outcomes),
        "rows_rejected": sum(o.rows_rejected for o in outcomes),
        "seconds": seconds,
        "per_market": per_market,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load, print the JSON summary (with this process's peak RSS) on stdout."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--markets", default="", help="comma-separated market codes; default: all")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the load here")
    parser.add_argument("--group-mib", type=float, help="small files are validated in groups of this size")
    args = parser.parse_args(argv)
    group_bytes = int(args.group_mib * 1024**2) if args.group_mib else GROUP_BYTES
    markets = [m.strip().upper() for m in args.markets.split(",") if m.strip()] or None
    if args.profile:
        profiler = cProfile.Profile()
        summary = profiler.runcall(load_tree, args.root, args.url, args.concurrency, markets, group_bytes)
        profiler.dump_stats(args.profile)
    else:
        summary = load_tree(args.root, args.url, args.concurrency, markets, group_bytes)
    summary["peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
