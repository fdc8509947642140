"""The JSON shapes the REST API answers (and the CLI's ``--json`` prints): pydantic models, camelCase on the wire."""

from __future__ import annotations

from typing import Any

from mytrader_pipeline.core.alerts import Alert
from mytrader_pipeline.core.dlq import DeadLetterItem, ItemSummary
from mytrader_pipeline.core.stats import MonitoringStats
from mytrader_pipeline.core.wire import CamelModel, Timestamp


class JobAccepted(CamelModel):
    """A job was started: its id and where to follow it."""

    job_id: str
    market: str | None = None
    status_url: str


class RetryAccepted(CamelModel):
    """A failed or cancelled job was re-executed: the runs that do it."""

    job_id: str
    retry_job_ids: list[str]


class JobStatusResponse(CamelModel):
    """A job's state and progress (the old ``BatchJobStatus``), plus file counts."""

    job_id: str
    job_type: str
    state: str
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    progress_percentage: float
    current_operation: str | None
    records_processed: int
    records_total: int | None
    processing_rate: float
    error_message: str | None
    retry_count: int
    sla_target: str | None
    is_sla_breached: bool
    child_job_ids: list[str]
    parent_job_id: str | None
    market: str | None
    files_processed: int
    files_total: int | None
    files_failed: int
    records_rejected: int


class AlertResponse(CamelModel, Alert):
    """One stored SLA alert (``recentBreaches`` of the statistics): ``Alert``'s fields, camelCase on the wire."""


# The docstrings of the models below are their OpenAPI descriptions: their fields are declared in the domain models.
class MonitoringStatsResponse(CamelModel, MonitoringStats):
    """Job statistics over a date range (the old ``BatchMonitoringStats``)."""

    recent_breaches: list[AlertResponse]  # the alerts camelCase too


class DeadLetterSummary(CamelModel, ItemSummary):
    """A failed work item as pages list it (no stack trace, run config, tags or per-file errors)."""


class DeadLetterItemResponse(CamelModel, DeadLetterItem):
    """A failed work item in full."""


class DeadLetterPage(CamelModel):
    """One page of failed work items, newest first."""

    items: list[DeadLetterSummary]
    total: int
    page: int
    page_size: int


class RejectedRowResponse(CamelModel):
    """One rejected row of a file's load: where it was (file, load, line, column), which check refused it and why."""

    source_file: str
    partition_key: str
    file_import_id: int
    run_id: str
    loaded_at: Timestamp
    line_number: int
    column_name: str | None
    check_name: str
    reason: str
    raw_line: str


class RejectedRowsResponse(CamelModel):
    """Rejected rows of a market (or of one of its files), newest load first, at most ``limit`` of ``total``."""

    market: str
    file: str | None
    limit: int
    total: int
    rows: list[RejectedRowResponse]


class HealthCheckResponse(CamelModel):
    """One health check's outcome; ``details`` are the check's own (their keys are not renamed)."""

    name: str
    status: str
    reason: str
    details: dict[str, Any]


class HealthResponse(CamelModel):
    """Healthy, degraded or unhealthy, the reasons of the failing checks, and every check."""

    status: str
    reasons: list[str]
    checked_at: Timestamp
    checks: list[HealthCheckResponse]


class ScheduleResponse(CamelModel):
    """A recurring all-markets import (the old recurring job)."""

    recurring_job_id: str
    cron_expression: str
    time_zone: str
    import_request: dict[str, Any]
    created_at: Timestamp
    next_execution: Timestamp
