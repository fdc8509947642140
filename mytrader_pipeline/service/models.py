"""The service layer's outputs: retry policy and job status (the old API's ``BatchJobStatus``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from mytrader_pipeline.core.limits import MAX_RETRIES
from mytrader_pipeline.core.requests import check_bounds, format_hms
from mytrader_pipeline.core.responses import JobStatusResponse


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a retried job is retried again if it fails (the old ``RetryRequest``)."""

    max_retries: int = 3
    initial_delay: dt.timedelta = dt.timedelta(minutes=1)
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        """Refuse a ``maxRetries`` outside ``core.limits.MAX_RETRIES`` (what the REST body's type allows)."""
        check_bounds(self.max_retries, MAX_RETRIES, "maxRetries")


@dataclasses.dataclass
class JobStatus:
    """A job's state and progress (the old ``BatchJobStatus``): a Dagster run, or an all-markets parent of runs."""

    job_id: str
    job_type: str  # MarketImport | AllMarketsImport | Retry | Scheduled
    state: str  # Queued | Running | Succeeded | Failed | Retrying | Cancelling | Cancelled
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    progress_percentage: float
    current_operation: str | None
    files_done: int
    files_total: int | None
    files_failed: int
    records_processed: int
    records_total: int | None
    processing_rate: float
    error_message: str | None
    retry_count: int
    sla_target: dt.timedelta | None
    is_sla_breached: bool
    child_job_ids: list[str]
    parent_job_id: str | None
    market: str | None = None
    records_rejected: int = 0

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final state."""
        return self.state in ("Succeeded", "Failed", "Cancelled")

    def response(self) -> JobStatusResponse:
        """The old API's ``BatchJobStatus`` model, plus file counts."""
        return JobStatusResponse(
            job_id=self.job_id,
            job_type=self.job_type,
            state=self.state,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            progress_percentage=round(self.progress_percentage, 1),
            current_operation=self.current_operation,
            records_processed=self.records_processed,
            records_total=self.records_total,
            processing_rate=round(self.processing_rate, 1),
            error_message=self.error_message,
            retry_count=self.retry_count,
            sla_target=format_hms(self.sla_target),
            is_sla_breached=self.is_sla_breached,
            child_job_ids=self.child_job_ids,
            parent_job_id=self.parent_job_id,
            market=self.market,
            files_processed=self.files_done,
            files_total=self.files_total,
            files_failed=self.files_failed,
            records_rejected=self.records_rejected,
        )

    def as_api(self) -> dict[str, Any]:
        """The old API's ``BatchJobStatus`` JSON (camelCase names), plus file counts."""
        return self.response().as_json()
