"""The service layer's outputs: retry policy and job status (with the old API's field names)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from mytrader_pipeline.core.requests import format_hms


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a retried job is retried again if it fails (the old ``RetryRequest``)."""

    max_retries: int = 3
    initial_delay: dt.timedelta = dt.timedelta(minutes=1)
    backoff_multiplier: float = 2.0


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

    def as_api(self) -> dict[str, Any]:
        """The old API's ``BatchJobStatus`` JSON (camelCase names), plus file counts."""

        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "jobId": self.job_id,
            "jobType": self.job_type,
            "state": self.state,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at),
            "progressPercentage": round(self.progress_percentage, 1),
            "currentOperation": self.current_operation,
            "recordsProcessed": self.records_processed,
            "recordsTotal": self.records_total,
            "processingRate": round(self.processing_rate, 1),
            "errorMessage": self.error_message,
            "retryCount": self.retry_count,
            "slaTarget": format_hms(self.sla_target),
            "isSlaBreached": self.is_sla_breached,
            "childJobIds": self.child_job_ids,
            "parentJobId": self.parent_job_id,
            "market": self.market,
            "filesProcessed": self.files_done,
            "filesTotal": self.files_total,
            "filesFailed": self.files_failed,
            "recordsRejected": self.records_rejected,
        }
