"""A job's status and progress, read from its Dagster run(s), their events and the warehouse's import audit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.requests import parse_hms
from mytrader_pipeline.core.runs import FINISHED_STATES
from mytrader_pipeline.defs.jobs import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from mytrader_pipeline.defs.planning import GLOBAL_SLA, JOB_TYPE_TAG, MARKET_TAG, SLA_TARGET_TAG
from mytrader_pipeline.service.gateway import RunEvent, RunInfo
from mytrader_pipeline.service.models import JobStatus

# The line defs/progress.py logs as files finish: "BIST: 3/10 files (30%), 12,345 rows, 6,789 rows/s, ETA 4s, 0 failed"
PROGRESS_RE = re.compile(
    r"^(?P<market>[A-Z0-9_]+): (?P<done>\d+)/(?P<total>\d+) files \(\d+%\), (?P<rows>[\d,]+) rows, "
    r"(?P<rate>[\d,.]+) rows/s, ETA \d+s, (?P<failed>\d+) failed"
)
# What the all-markets job logs per market before loading: "BIST: 4 new or changed file(s) to load, 2 unchanged: ..."
PLANNED_RE = re.compile(r"^(?P<market>[A-Z0-9_]+): (?P<fresh>\d+) new or changed file\(s\) to load")
RETRY_NUMBER_TAG = "dagster/retry_number"

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


@dataclasses.dataclass
class MarketProgress:
    """One market's latest progress line in a run."""

    files_done: int = 0
    files_total: int | None = None
    files_failed: int = 0
    rows: int = 0


@dataclasses.dataclass
class Progress:
    """What a run's events say about its progress (summed over the markets it imports)."""

    markets: dict[str, MarketProgress] = dataclasses.field(default_factory=dict)
    last_line: str | None = None
    error: str | None = None

    @property
    def files_done(self) -> int:
        """Files finished, over every market of the run."""
        return sum(m.files_done for m in self.markets.values())

    @property
    def files_failed(self) -> int:
        """Files failed, over every market of the run."""
        return sum(m.files_failed for m in self.markets.values())

    @property
    def rows(self) -> int:
        """Rows read, over every market of the run."""
        return sum(m.rows for m in self.markets.values())

    def files_total(self, expected_markets: int) -> int | None:
        """Files the run loads, once every one of its ``expected_markets`` has said how many."""
        totals = [m.files_total for m in self.markets.values() if m.files_total is not None]
        return sum(totals) if len(totals) >= expected_markets else None


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
        planned = PLANNED_RE.match(event.message)
        if planned:
            progress.markets.setdefault(planned["market"], MarketProgress()).files_total = int(planned["fresh"])
            progress.last_line = event.message
            continue
        match = PROGRESS_RE.match(event.message)
        if match:
            market = progress.markets.setdefault(match["market"], MarketProgress())
            market.files_done = int(match["done"])
            market.files_total = int(match["total"])
            market.files_failed = int(match["failed"])
            market.rows = int(match["rows"].replace(",", ""))
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
    expected_markets: int = 1,
    retries: Sequence[RunInfo],
    default_sla: dt.timedelta | None,
    now: dt.datetime | None = None,
) -> JobStatus:
    """The status of one run; ``retries``: later runs of its run group (re-executions and automatic retries)."""
    now = now or dt.datetime.now(dt.UTC)
    state = STATES.get(run.status, run.status.title())
    if run.status == "FAILURE" and any(r.status not in FINISHED_STATES for r in retries):
        state = "Retrying"
    files_done = max(progress.files_done, audit.files_done + audit.files_failed)
    total = progress.files_total(expected_markets) if progress.markets else None
    total = total if total is not None else files_total
    if run.status == "SUCCESS":
        percent = 100.0
    elif total:
        percent = min(100.0 * files_done / total, 100.0)
    else:
        percent = 0.0
    records = max(progress.rows, audit.rows_read)
    seconds = _elapsed(run.started_at, run.ended_at, now)
    sla = _sla(run.tags.get(SLA_TARGET_TAG), default_sla or (GLOBAL_SLA if expected_markets > 1 else None))
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
        completed_at=run.ended_at if run.status in FINISHED_STATES else None,
        progress_percentage=percent,
        current_operation=operation,
        files_done=files_done,
        files_total=total,
        files_failed=max(progress.files_failed, audit.files_failed),
        records_processed=records,
        records_total=records if run.status in FINISHED_STATES else None,
        processing_rate=records / seconds if seconds else 0.0,
        error_message=progress.error if run.status in ("FAILURE", "CANCELED") or progress.error else None,
        retry_count=len(retries),
        sla_target=sla,
        is_sla_breached=bool(sla and run.started_at and seconds > sla.total_seconds()),
        child_job_ids=[],
        parent_job_id=run.parent_run_id,
        market=run.tags.get(MARKET_TAG),
        records_rejected=audit.rows_rejected,
    )
