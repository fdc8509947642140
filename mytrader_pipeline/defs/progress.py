"""Progress of a running import: steady log lines (files, rows, rate, ETA) and per-file observations."""

from __future__ import annotations

import threading
import time

import dagster as dg

from mytrader_pipeline.core.importer import FileResult
from mytrader_pipeline.markets import Market

LOG_EVERY_SECONDS = 5.0


class ProgressReporter:
    """Counts finished files and logs progress at most every few seconds (and for the last file)."""

    def __init__(self, context: dg.AssetExecutionContext | dg.OpExecutionContext, market: Market, total: int) -> None:
        self.context = context
        self.market = market
        self.total = total
        self.files_done = self.files_failed = self.files_cancelled = 0
        self.rows_read = self.rows_loaded = self.rows_rejected = 0
        self.started = time.perf_counter()
        self._last_log = 0.0
        self._lock = threading.Lock()

    def on_result(self, result: FileResult) -> None:
        """Called by the importer as each file finishes (from worker threads)."""
        with self._lock:
            self.files_done += 1
            if result.outcome:
                self.rows_read += result.outcome.rows_read
                self.rows_loaded += result.outcome.rows_loaded
                self.rows_rejected += result.outcome.rows_rejected
            if result.status == "cancelled":  # the run was stopped before the file started or committed
                self.files_cancelled += 1
            elif result.status != "succeeded":
                self.files_failed += 1
                reason = result.error.message if result.error else result.status
                trace = f"\n{result.trace}" if result.trace else ""  # a bug's stack trace, for whoever fixes it
                self.context.log.warning(f"{result.file.source_file}: {result.status}: {reason}{trace}")
            elapsed = time.perf_counter() - self.started
            if self.files_done == self.total or elapsed - self._last_log >= LOG_EVERY_SECONDS:
                self._last_log = elapsed
                rate = self.rows_read / max(elapsed, 1e-6)
                per_file = elapsed / self.files_done
                eta = per_file * (self.total - self.files_done)
                self.context.log.info(
                    f"{self.market.code}: {self.files_done}/{self.total} files "
                    f"({100 * self.files_done / max(self.total, 1):.0f}%), {self.rows_read:,} rows, "
                    f"{rate:,.0f} rows/s, ETA {eta:.0f}s, {self.files_failed} failed"
                    + (f", {self.files_cancelled} cancelled" if self.files_cancelled else "")
                )

    def summary(self, seconds: float, *, skipped: int, failed: int) -> dict[str, dg.MetadataValue]:
        """Run-level metadata, recorded on every partition's materialization (``run_`` keys: the whole run)."""
        return {
            "run_files_loaded": dg.MetadataValue.int(self.files_done - self.files_failed - self.files_cancelled),
            "run_files_skipped_unchanged": dg.MetadataValue.int(skipped),
            "run_files_failed": dg.MetadataValue.int(failed),
            "run_rows_read": dg.MetadataValue.int(self.rows_read),
            "run_rows_loaded": dg.MetadataValue.int(self.rows_loaded),
            "run_rows_rejected": dg.MetadataValue.int(self.rows_rejected),
            "run_seconds": dg.MetadataValue.float(round(seconds, 3)),
            "run_rows_per_second": dg.MetadataValue.float(round(self.rows_read / max(seconds, 1e-6), 1)),
        }
