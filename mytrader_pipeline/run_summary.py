"""What ``mytrader run`` reports: each market's summary, each failed file's reason, each Dagster run it made."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mytrader_pipeline.core.discovery import MarketFile
from mytrader_pipeline.core.errors import ErrorClass, FileFailure

# Failures that are bugs, not the data's fault: the line on stderr points to the stack trace in the run's log.
BUG_CLASSES = frozenset({ErrorClass.UNEXPECTED, ErrorClass.LIBRARY_PANIC})


@dataclasses.dataclass(frozen=True)
class RunFailure:
    """Why one file (or entry of a market folder) was not loaded, as its last attempt ended, and the run's log."""

    failure: FileFailure
    log_file: Path | None = None  # the run's log, for a failure that is a bug (its stack trace is there)

    def line(self, source_file: str) -> str:
        """``BIST/X.csv: unknown_format: <reason>``, plus where the stack trace is for a bug."""
        bug = self.failure.error_class in BUG_CLASSES
        where = f" (stack trace in {self.log_file})" if self.log_file and bug else ""
        return f"{source_file}: {self.failure}{where}"


@dataclasses.dataclass
class MarketRunSummary:
    """What one market's import did, per file (the last attempt of each file decides), from the audit of its runs."""

    market: str
    files: int = 0  # *.csv entries of the market's folder, loadable or not
    files_loaded: int = 0
    files_failed: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    run_ids: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, RunFailure] = dataclasses.field(default_factory=dict)

    @property
    def files_skipped(self) -> int:
        """Files left alone because their content is unchanged since their last load."""
        return self.files - self.files_loaded - self.files_failed

    @property
    def failures(self) -> dict[str, str]:
        """``class: reason`` of each failed file, by its path under the data root."""
        return {source: str(f.failure) for source, f in sorted(self.failed.items())}

    @property
    def rows_per_second(self) -> float:
        """Rows read per wall-clock second of the market's runs."""
        return self.rows_read / self.seconds if self.seconds else 0.0

    def failure_lines(self) -> list[str]:
        """One line per failed file, as ``mytrader run`` prints them."""
        return [failure.line(source) for source, failure in sorted(self.failed.items())]

    def as_json(self) -> dict[str, object]:
        """The ``--json`` shape of ``mytrader run``."""
        return {
            "files": self.files,
            "files_loaded": self.files_loaded,
            "files_skipped": self.files_skipped,
            "files_failed": self.files_failed,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "failures": self.failures,
        }


@dataclasses.dataclass
class RangeRun:
    """One Dagster run over a contiguous range of a market's files."""

    run_id: str
    files: list[MarketFile]
    log_file: Path
    unhandled: RunFailure | None  # set when the run failed without a verdict per file
