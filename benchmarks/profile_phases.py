"""Where the loader's time and memory go: read vs type vs validate vs COPY encoding vs COPY vs upsert vs audit.

Run by hand (it creates and drops its own database)::

    .venv/bin/python benchmarks/profile_phases.py TREE [--markets BIST] [--chunk-mib 32] [--group-mib 16]

It runs ``MarketImporter`` at concurrency 1 (one worker thread, so phases never overlap) with timers wrapped around
the core functions of each phase, and samples the process RSS every few milliseconds to attribute its peak to the
phase that was running. Exclusive time: a phase nested in another (encoding inside COPY) is not counted twice.
"""

import argparse
import functools
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mytrader_pipeline.core import importer, loading, parsing
from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.markets import load_markets

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import ADMIN_URL, databases


class Phases:
    """Exclusive wall time and peak RSS per named phase (single worker thread)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak: dict[str, int] = defaultdict(int)
        self.stack: list[list[Any]] = []  # [name, started, child seconds]
        self.stop = threading.Event()

    def enter(self, name: str) -> None:
        """Start timing ``name`` (nested inside the current phase)."""
        self.stack.append([name, time.perf_counter(), 0.0])

    def leave(self) -> None:
        """Stop timing the current phase."""
        name, started, children = self.stack.pop()
        elapsed = time.perf_counter() - started
        self.seconds[name] += elapsed - children
        if self.stack:
            self.stack[-1][2] += elapsed

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` timed as phase ``name``."""

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(name)
            try:
                return func(*args, **kwargs)
            finally:
                self.leave()

        return timed

    def wrap_generator(self, name: str, func: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        """A generator function whose every step is timed as phase ``name``."""

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            inner = func(*args, **kwargs)
            while True:
                self.enter(name)
                try:
                    item = next(inner)
                except StopIteration:
                    return
                finally:
                    self.leave()
                yield item

        return timed

    def sample(self) -> None:
        """Record the RSS against the running phase until stopped (runs in its own thread)."""
        status = Path("/proc/self/status")
        while not self.stop.wait(0.005):
            rss = next(
                int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if line.startswith("VmRSS")
            )
            name = self.stack[-1][0] if self.stack else "other"
            self.peak[name] = max(self.peak[name], rss)


def instrument(phases: Phases) -> None:
    """Wrap the core functions of every phase (module attributes, so the importer's own calls are timed)."""
    parsing.CsvFileReader.raw_chunks = phases.wrap_generator(
        "read + split (polars read_csv)", parsing.CsvFileReader.raw_chunks
    )
    parsing.CsvFileReader.read_small = phases.wrap("read + split (polars read_csv)", parsing.CsvFileReader.read_small)
    importer.parse_tails = phases.wrap("read + split (polars read_csv)", importer.parse_tails)
    typed = phases.wrap("type (parse numbers, dates)", parsing.type_chunks)
    parsing.type_chunks = importer.type_chunks = typed
    importer.validate_chunks = phases.wrap("validate (pandera)", importer.validate_chunks)
    loading.with_provenance = phases.wrap("provenance columns", loading.with_provenance)
    loading._csv_bytes = phases.wrap("encode CSV for COPY (rejected rows)", loading._csv_bytes)
    loading.pgbinary.encode_rows = phases.wrap("encode binary COPY", loading.pgbinary.encode_rows)
    writer = loading.PostgresWriter
    writer._copy = phases.wrap("COPY (server)", writer._copy)
    writer.all_unseen = phases.wrap("symbol lookup", writer.all_unseen)
    writer.finish = phases.wrap("upsert from stage", writer.finish)
    warehouse = loading.Warehouse
    warehouse._open_audit = phases.wrap("audit + rejected cleanup", warehouse._open_audit)
    loading.audit_values = phases.wrap("audit + rejected cleanup", loading.audit_values)
    warehouse.load_file = phases.wrap("load_file other (commit, stats)", warehouse.load_file)


def main(argv: list[str] | None = None) -> int:
    """Load the tree once (and again, the no-op reload, with --reload) and print the phase table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--markets", default="", help="comma-separated market codes; default: all")
    parser.add_argument("--chunk-mib", type=float, default=parsing.DEFAULT_CHUNK_BYTES / 2**20)
    parser.add_argument("--group-mib", type=float, default=importer.GROUP_BYTES / 2**20)
    parser.add_argument("--reload", action="store_true", help="profile a second, no-op pass instead of the first")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args(argv)
    wanted = {m.strip().upper() for m in args.markets.split(",") if m.strip()}
    options = importer.ImportOptions(
        concurrency=1, chunk_bytes=int(args.chunk_mib * 2**20), group_bytes=int(args.group_mib * 2**20)
    )
    with databases(args.admin_url) as dbs:
        engine = make_engine(dbs.create("profile"))
        ensure_schema(engine)
        warehouse = loading.Warehouse(engine)
        markets = [m for m in load_markets() if not wanted or m.code in wanted]
        files = {m.code: scan_market(args.root, m) for m in markets}
        if args.reload:
            for market in markets:
                importer.MarketImporter(warehouse, market, "warmup", options).run(files[market.code])
        phases = Phases()
        instrument(phases)
        sampler = threading.Thread(target=phases.sample, daemon=True)
        sampler.start()
        rows = failed = 0
        started = time.perf_counter()
        for market in markets:
            results = importer.MarketImporter(warehouse, market, uuid.uuid4().hex, options).run(files[market.code])
            rows += sum(r.rows_read for r in results)
            failed += sum(r.status != "succeeded" for r in results)
        total = time.perf_counter() - started
        phases.stop.set()
        sampler.join()
        engine.dispose()
    if failed:
        print(f"{failed} files failed to load: the figures below are not a load's", file=sys.stderr)
    print(f"{rows:,} rows in {total:.2f} s = {rows / total:,.0f} rows/s (concurrency 1, chunk {args.chunk_mib} MiB)")
    print(f"{'phase':<36}{'seconds':>9}{'share':>8}{'peak RSS MiB':>14}")
    timed = sum(phases.seconds.values())
    for name, seconds in sorted(phases.seconds.items(), key=lambda kv: -kv[1]):
        print(f"{name:<36}{seconds:>9.2f}{seconds / total:>8.0%}{phases.peak.get(name, 0) / 2**20:>14,.0f}")
    print(f"{'untimed (importer, threads)':<36}{total - timed:>9.2f}{(total - timed) / total:>8.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
