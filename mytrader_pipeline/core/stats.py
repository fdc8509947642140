"""Monitoring statistics over a date range (the old system's fields), from plain run records and the audit."""

from __future__ import annotations

import collections
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.alerts import Alert
from mytrader_pipeline.core.clock import as_utc
from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.sla import ALL_MARKETS, MarketAudit, RunInfo, SlaThresholds, is_sla_breached
from mytrader_pipeline.markets import MarketRegistry

RUN_FAILURE = "run_failure"  # errors of failed runs that named no failed file (crash, timeout, setup)


class MonitoringStats(BaseModel):
    """Job statistics for ``[start, end]`` (dates, UTC, inclusive).

    The one declaration of their fields: the REST answer, ``MonitoringStatsResponse``, derives from it.
    """

    model_config = ConfigDict(frozen=True)

    start_date: dt.date
    end_date: dt.date
    total_jobs: int
    successful_jobs: int
    failed_jobs: int
    retrying_jobs: int
    canceled_jobs: int
    running_jobs: int
    sla_breached_jobs: int
    success_rate: float | None  # successful / finished
    sla_compliance_rate: float | None  # within SLA / judged (finished, or running already over)
    average_duration_seconds: float | None
    p95_duration_seconds: float | None
    records_processed: int
    average_processing_rate: float | None  # records / processing seconds (audit wall time per run and market)
    jobs_by_market: dict[str, int]
    errors_by_type: dict[str, int]
    recent_breaches: list[Alert]  # newest first

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case names (ISO dates; each breach as ``Alert.as_json`` gives it)."""
        return self.model_dump(mode="json")


def date_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[start 00:00, end + 1 day 00:00)`` in UTC.

    Raises:
        ValueError: when ``end`` is before ``start``.
    """
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return dt.datetime.combine(start, dt.time(), dt.UTC), dt.datetime.combine(
        end + dt.timedelta(days=1), dt.time(), dt.UTC
    )


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile by the nearest-rank method (the smallest value with 95% at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def markets_counted(run: RunInfo) -> list[str]:
    """The markets a run counts as a job of in ``jobs_by_market``: each market it loaded files of (the audit, so a
    run over several markets, such as the all-markets job or a Materialize over several assets, counts under each),
    else each market it was to load (``ALL`` for the all-markets job)."""
    if run.audit:
        return sorted(run.audit)
    return [ALL_MARKETS] if run.all_markets else list(run.markets)


def audit_by_run(engine: Engine, run_ids: Iterable[str]) -> dict[str, dict[str, MarketAudit]]:
    """Per run and market: files, failures, rows read and rejected, first start and last end, from the audit."""
    ids = sorted(set(run_ids))
    out: dict[str, dict[str, MarketAudit]] = collections.defaultdict(dict)
    c = file_imports.c
    for offset in range(0, len(ids), 500):
        query = (
            sa.select(
                c.run_id,
                c.market,
                sa.func.count(),
                sa.func.sum(sa.case((c.status != "succeeded", 1), else_=0)),
                sa.func.coalesce(sa.func.sum(c.rows_read), 0),
                sa.func.coalesce(sa.func.sum(c.rows_rejected), 0),
                sa.func.min(c.started_at),
                sa.func.max(c.finished_at),
            )
            .where(c.run_id.in_(ids[offset : offset + 500]))
            .group_by(c.run_id, c.market)
        )
        with engine.connect() as conn:
            for run_id, market, files, failed, read, rejected, first, last in conn.execute(query):
                out[run_id][market] = MarketAudit(
                    int(files), int(failed or 0), int(read), int(rejected), as_utc(first), as_utc(last)
                )
    return dict(out)


def file_errors_by_type(engine: Engine, run_ids: Iterable[str]) -> dict[str, int]:
    """Failed file loads of these runs per error class."""
    ids = sorted(set(run_ids))
    counts: collections.Counter[str] = collections.Counter()
    c = file_imports.c
    for offset in range(0, len(ids), 500):
        query = (
            sa.select(c.error_class, sa.func.count())
            .where(c.run_id.in_(ids[offset : offset + 500]), c.status != "succeeded")
            .group_by(c.error_class)
        )
        with engine.connect() as conn:
            counts.update({str(k or "unexpected"): int(n) for k, n in conn.execute(query)})
    return dict(counts)


def compute_stats(
    runs: Sequence[RunInfo],
    start: dt.date,
    end: dt.date,
    registry: MarketRegistry,
    *,
    now: dt.datetime,
    file_errors: dict[str, int] | None = None,
    breaches: Sequence[Alert] = (),
    thresholds: SlaThresholds | None = None,
    recent_limit: int = 20,
) -> MonitoringStats:
    """Statistics of the import runs created in ``[start, end]``.

    Args:
        runs: import runs (others in the list outside the range are ignored).
        start: first day (UTC).
        end: last day (UTC), inclusive.
        registry: the markets (their SLA targets judge each run).
        now: the time running runs are judged at.
        file_errors: failed file loads per error class (``file_errors_by_type``); failed runs that name no failed
            file add to ``run_failure`` (or their own ``error_class``).
        breaches: SLA alerts first seen in the range, newest first; the first ``recent_limit`` are reported.
        thresholds: the SLA limits (the global SLA of all-markets runs).
    """
    limits = thresholds or SlaThresholds()
    lower, upper = date_bounds(start, end)
    selected = [r for r in runs if lower <= r.created_at < upper]
    finished = [r for r in selected if r.finished]
    successful = sum(r.status == "SUCCESS" for r in selected)
    retrying = [r for r in selected if r.will_retry or (not r.finished and r.retry_number > 0)]
    failed = sum(r.status == "FAILURE" and not r.will_retry for r in selected)
    durations = [d for r in finished if (d := r.duration_seconds(now)) is not None]
    breached = sum(is_sla_breached(r, now, registry, limits) for r in selected)
    judged = sum(
        1 for r in selected if (r.finished and r.started_at is not None) or is_sla_breached(r, now, registry, limits)
    )
    audits = [a for r in selected for a in r.audit.values()]
    records = sum(a.rows_read for a in audits)
    seconds = sum(a.processing_seconds for a in audits)
    errors: collections.Counter[str] = collections.Counter(file_errors or {})
    for run in selected:
        if run.status == "FAILURE" and not any(a.files_failed for a in run.audit.values()):
            errors[run.error_class or RUN_FAILURE] += 1
    return MonitoringStats(
        start_date=start,
        end_date=end,
        total_jobs=len(selected),
        successful_jobs=successful,
        failed_jobs=failed,
        retrying_jobs=len(retrying),
        canceled_jobs=sum(r.status == "CANCELED" for r in selected),
        running_jobs=sum(not r.finished for r in selected),
        sla_breached_jobs=breached,
        success_rate=successful / len(finished) if finished else None,
        sla_compliance_rate=(judged - breached) / judged if judged else None,
        average_duration_seconds=sum(durations) / len(durations) if durations else None,
        p95_duration_seconds=p95(durations),
        records_processed=records,
        average_processing_rate=records / seconds if seconds else None,
        jobs_by_market=dict(sorted(collections.Counter(m for r in selected for m in markets_counted(r)).items())),
        errors_by_type=dict(sorted(errors.items())),
        recent_breaches=list(breaches)[:recent_limit],
    )
