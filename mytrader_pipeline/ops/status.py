"""A job's status and progress, read from its Dagster run(s), their events and the warehouse's import audit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.defs.jobs import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from mytrader_pipeline.ops.gateway import RunEvent, RunInfo
from mytrader_pipeline.ops.models import JobStatus, parse_hms
from mytrader_pipeline.ops.planning import JOB_TYPE_TAG, MARKET_TAG, PARENT_JOB_TAG, SLA_TARGET_TAG

# The line defs/progress.py logs as files finish: "BIST: 3/10 files (30%), 12,345 rows, 6,789 rows/s, ETA 4s, 0 failed"
PROGRESS_RE = re.compile(
    r"^(?P<market>[A-Z0-9_]+): (?P<done>\d+)/(?P<total>\d+) files \(\d+%\), (?P<rows>[\d,]+) rows, "
    r"(?P<rate>[\d,.]+) rows/s, ETA \d+s, (?P<failed>\d+) failed"
)
RETRY_NUMBER_TAG = "dagster/retry_number"
GLOBAL_SLA = dt.timedelta(hours=2)  # the old GlobalSlaTarget of the all-markets import

STATES = {
    "QUEUED": "Queued",
    "NOT_STARTED": "Queued",
    "STARTING": "Running",
    "STARTED": "Running",
    "SUCCESS": "Succeeded",
    "FAILURE": "Failed",
    "CANCELING": "Cancelling",
    "CANCELED": "Cancelled",
}
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@dataclasses.dataclass
class Progress:
    """What a run's events say about its progress."""

    files_done: int = 0
    files_total: int | None = None
    files_failed: int = 0
    rows: int = 0
    last_line: str | None = None
    error: str | None = None


@dataclasses.dataclass
class Audit:
    """What the warehouse's ``file_imports`` rows of the run(s) say."""

    files_done: int = 0
    files_failed: int = 0
    rows_read: int = 0
    rows_rejected: int = 0


def progress_from_events(events: Iterable[RunEvent]) -> Progress:
    """The latest progress line of the run's log, and the first failure's error message."""
    progress = Progress()
    for event in events:
        match = PROGRESS_RE.match(event.message)
        if match:
            progress.files_done = int(match["done"])
            progress.files_total = int(match["total"])
            progress.files_failed = int(match["failed"])
            progress.rows = int(match["rows"].replace(",", ""))
            progress.last_line = event.message
        elif event.kind in ("ExecutionStepFailureEvent", "RunFailureEvent") and progress.error is None:
            progress.error = event.error or event.message
    return progress


def audit_of_runs(engine: Engine | None, run_ids: Sequence[str]) -> Audit:
    """Files and rows recorded in ``file_imports`` for ``run_ids`` (empty without a warehouse)."""
    audit = Audit()
    if engine is None or not run_ids:
        return audit
    query = (
        sa.select(
            file_imports.c.status,
            sa.func.count().label("files"),
            sa.func.coalesce(sa.func.sum(file_imports.c.rows_read), 0).label("rows_read"),
            sa.func.coalesce(sa.func.sum(file_imports.c.rows_rejected), 0).label("rows_rejected"),
        )
        .where(file_imports.c.run_id.in_(list(run_ids)))
        .group_by(file_imports.c.status)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            if row.status == "succeeded":
                audit.files_done += int(row.files)
                audit.rows_read += int(row.rows_read)
                audit.rows_rejected += int(row.rows_rejected)
            else:
                audit.files_failed += int(row.files)
    return audit


def range_size(run: RunInfo, partition_keys: Sequence[str]) -> int | None:
    """How many partitions (files) the run's partition range covers, when it has one."""
    first, last = run.tags.get(PARTITION_RANGE_START_TAG), run.tags.get(PARTITION_RANGE_END_TAG)
    if first is None or last is None or first not in partition_keys or last not in partition_keys:
        return None
    return partition_keys.index(last) - partition_keys.index(first) + 1


def _sla(value: str | None, default: dt.timedelta | None) -> dt.timedelta | None:
    if not value:
        return default
    try:
        return parse_hms(value, "slaTarget")
    except ValueError:
        return default


def _elapsed(started: dt.datetime | None, ended: dt.datetime | None, now: dt.datetime) -> float:
    if started is None:
        return 0.0
    return max(((ended or now) - started).total_seconds(), 0.0)


def run_status(
    run: RunInfo,
    progress: Progress,
    audit: Audit,
    *,
    files_total: int | None,
    retries: Sequence[RunInfo],
    default_sla: dt.timedelta | None,
    now: dt.datetime | None = None,
) -> JobStatus:
    """The status of one run; ``retries``: later runs of its run group (re-executions and automatic retries)."""
    now = now or dt.datetime.now(dt.UTC)
    state = STATES.get(run.status, run.status.title())
    if run.status == "FAILURE" and any(r.status not in FINISHED for r in retries):
        state = "Retrying"
    files_done = max(progress.files_done, audit.files_done + audit.files_failed)
    total = progress.files_total or files_total
    if run.status == "SUCCESS":
        percent = 100.0
    elif total:
        percent = min(100.0 * files_done / total, 100.0)
    else:
        percent = 0.0
    records = max(progress.rows, audit.rows_read)
    seconds = _elapsed(run.started_at, run.ended_at, now)
    sla = _sla(run.tags.get(SLA_TARGET_TAG), default_sla)
    job_type = run.tags.get(JOB_TYPE_TAG) or ("Retry" if run.parent_run_id else "MarketImport")
    if run.parent_run_id and run.tags.get(RETRY_NUMBER_TAG):
        job_type = "Retry"
    operation = progress.last_line or {
        "Queued": "waiting in the run queue",
        "Running": f"{run.job_name}: starting",
        "Succeeded": "completed",
    }.get(state, state.lower())
    return JobStatus(
        job_id=run.run_id,
        job_type=job_type,
        state=state,
        created_at=run.created_at,
        started_at=run.started_at,
        completed_at=run.ended_at if run.status in FINISHED else None,
        progress_percentage=percent,
        current_operation=operation,
        files_done=files_done,
        files_total=total,
        files_failed=max(progress.files_failed, audit.files_failed),
        records_processed=records,
        records_total=records if run.status in FINISHED else None,
        processing_rate=records / seconds if seconds else 0.0,
        error_message=progress.error if run.status in ("FAILURE", "CANCELED") or progress.error else None,
        retry_count=len(retries),
        sla_target=sla,
        is_sla_breached=bool(sla and run.started_at and seconds > sla.total_seconds()),
        child_job_ids=[],
        parent_job_id=run.tags.get(PARENT_JOB_TAG),
        market=run.tags.get(MARKET_TAG),
        records_rejected=audit.rows_rejected,
    )


def parent_status(job_id: str, children: Sequence[JobStatus], runs: Sequence[RunInfo], now: dt.datetime) -> JobStatus:
    """The all-markets job ``job_id``: its children's statuses (one per market, latest attempt) combined."""
    states = {c.state for c in children}
    if states & {"Running", "Cancelling"}:
        state = "Running"
    elif states & {"Queued", "Retrying"}:
        state = "Running" if states & {"Succeeded", "Failed", "Running"} else "Queued"
        state = "Retrying" if "Retrying" in states else state
    elif "Failed" in states:
        state = "Failed"
    elif "Cancelled" in states:
        state = "Cancelled"
    else:
        state = "Succeeded"
    finished = state in ("Succeeded", "Failed", "Cancelled")
    started = [c.started_at for c in children if c.started_at]
    ended = [c.completed_at for c in children if c.completed_at]
    totals = [c.files_total for c in children]
    files_total = sum(t for t in totals if t) if all(totals) else None
    files_done = sum(c.files_done for c in children)
    records = sum(c.records_processed for c in children)
    first_start = min(started) if started else None
    last_end = max(ended) if finished and ended else None
    seconds = _elapsed(first_start, last_end, now)
    sla = _sla(runs[0].tags.get("mytrader/global_sla_target") if runs else None, GLOBAL_SLA)
    errors = [f"{c.market}: {c.error_message}" for c in children if c.error_message]
    running = [c.current_operation for c in children if c.state == "Running" and c.current_operation]
    if state == "Succeeded":
        percent = 100.0
    elif files_total:
        percent = min(100.0 * files_done / files_total, 100.0)
    else:
        percent = sum(c.progress_percentage for c in children) / max(len(children), 1)
    return JobStatus(
        job_id=job_id,
        job_type="AllMarketsImport",
        state=state,
        created_at=min(c.created_at for c in children),
        started_at=first_start,
        completed_at=last_end,
        progress_percentage=percent,
        current_operation="; ".join(running) or state.lower(),
        files_done=files_done,
        files_total=files_total,
        files_failed=sum(c.files_failed for c in children),
        records_processed=records,
        records_total=records if finished else None,
        processing_rate=records / seconds if seconds else 0.0,
        error_message="; ".join(errors) or None,
        retry_count=sum(c.retry_count for c in children),
        sla_target=sla,
        is_sla_breached=bool(sla and first_start and seconds > sla.total_seconds()),
        child_job_ids=[c.job_id for c in children],
        parent_job_id=None,
        market=None,
        records_rejected=sum(c.records_rejected for c in children),
    )
