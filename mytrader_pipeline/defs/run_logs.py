"""Where ``mytrader run``'s Dagster logs go: progress lines to the console, every event to a file per run."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg


class _ProgressHandler(logging.Handler):
    """Prints the asset's own progress lines (``BIST: 3/10 files ...``) and retry decisions, nothing else."""

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        if meta.get("dagster_event") is not None:
            return  # Dagster's own events (step failures with their stack traces) go to the run's log file
        message = str(meta.get("orig_message", record.getMessage()))
        # Per-file failures are printed once each when the market is done; of the warnings, only a retry decision
        # (``attempt N of M: ...; retrying in Xs``, from policies.retry_or_fail) is worth seeing as it happens.
        if record.levelno == logging.INFO or (record.levelno == logging.WARNING and message.startswith("attempt ")):
            print(message, file=sys.stderr, flush=True)


@dg.logger(description="mytrader run's console: progress and retries only; the full log goes to the run's log file")
def progress_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """A logger that prints progress lines to stderr (see ``_ProgressHandler``)."""
    log = logging.Logger(f"mytrader.run.{init_context.run_id}", logging.INFO)
    log.addHandler(_ProgressHandler())
    return log


@dg.logger(description="mytrader run --json's console: nothing; the full log goes to the run's log file")
def silent_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """A logger that prints nothing."""
    log = logging.Logger(f"mytrader.run.{init_context.run_id}", logging.CRITICAL)
    log.addHandler(logging.NullHandler())
    return log


def write_run_log(
    instance: dg.DagsterInstance, run_id: str, folder: Path, events: Sequence[dg.EventLogEntry] | None = None
) -> Path:
    """Write every event of the run, with the stack traces of its errors, to ``<folder>/<run id>.log``.

    ``events``: the run's events in the order they were stored, when the caller has them (``mytrader run``'s event
    log keeps them: ``KeptOpenSqliteEventLogStorage.stored_events``); else they are read back from ``instance``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.log"
    lines: list[str] = []
    for entry in instance.all_logs(run_id) if events is None else events:
        when = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).isoformat(timespec="milliseconds")
        event = entry.dagster_event
        kind = event.event_type_value if event else "LOG"
        lines.append(f"{when} {logging.getLevelName(entry.level)} {entry.step_key or '-'} {kind} {entry.user_message}")
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None:
            lines.append(error.to_string().rstrip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
