"""Run policies of the market assets, defined once and derived from the registry: retries, cancellation, backfills.

Retries: Dagster's ``RetryPolicy`` cannot express the policy (its exponential backoff waits ``(2**n - 1) * delay``,
i.e. 1, 3, 7 ... minutes, with no cap), so the asset asks for each retry itself with ``dg.RetryRequested`` and the
delay of ``core.retry.BackoffSchedule`` (1, 2, 4 ... minutes, capped at 30, with jitter; per market). Step retries
happen inside the run; run-level retries (``run_retries`` in dagster.yaml) are for crashed runs only.
"""

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg
import sqlalchemy as sa

# Dagster's run storage classes and tables are not in its public API; dagster is pinned (pyproject.toml).
from dagster._core.storage.runs.schema import RunsTable
from dagster._core.storage.runs.sql_run_storage import SqlRunStorage

from mytrader_pipeline.core.errors import Classified, classify
from mytrader_pipeline.core.retry import BackoffSchedule, RetryDecision, decide
from mytrader_pipeline.defs.executors import uses_celery
from mytrader_pipeline.defs.sensors import max_files_per_run
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.settings import Settings, get_settings

AssetBody = Callable[..., Iterator[Any]]
# A run is stopped by cancelling it (CANCELING, then CANCELED) or by run monitoring, which fails a run over its max
# runtime (FAILURE) after asking its worker to terminate: either way its step must start no new file.
STOPPING = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)


def retry_policy_name(market: Market) -> str:
    """The name of ``market``'s retry policy (e.g. ``bist_retry_policy``)."""
    return f"{market.code.lower()}_retry_policy"


def retry_schedule_for(market: Market) -> BackoffSchedule:
    """``market``'s retry schedule, from the registry."""
    return BackoffSchedule.for_market(market)


def retry_policies(registry: MarketRegistry) -> dict[str, BackoffSchedule]:
    """Every market's retry policy by name."""
    return {retry_policy_name(m): retry_schedule_for(m) for m in registry}


def backfill_policy(market: Market, settings: Settings | None = None) -> dg.BackfillPolicy:
    """How an asset backfill of ``market`` (launched from the UI or ``launch_backfill``) is cut into runs.

    Each run of the market asset is one step, so one run executes on one Celery worker: a backfill in a single run
    would load on one worker while the others idle. ``backfill_files_per_run`` set: runs of that many files.
    Unset: one run (today's behaviour, the cheapest on one machine, where runs share the same cores), or, under
    ``MYTRADER_EXECUTOR=celery``, runs of ``MYTRADER_MAX_FILES_PER_RUN`` files, the cut the sensor and the schedule
    already use, so the run queue hands them to every free worker. Read when the code location loads.
    """
    chosen = settings or get_settings()
    per_run = market.backfill_files_per_run
    if per_run is None and uses_celery(chosen):
        per_run = max_files_per_run(chosen)
    return dg.BackfillPolicy.single_run() if per_run is None else dg.BackfillPolicy.multi_run(per_run)


def retry_or_fail(
    context: dg.AssetExecutionContext, market: Market, errors: Sequence[Classified], failure: Exception
) -> Exception:
    """The exception that ends this attempt: a ``RetryRequested`` with the backoff delay, or ``failure`` itself.

    Logs ``attempt N of M: reason`` either way.
    """
    schedule = retry_schedule_for(market)
    decision: RetryDecision = decide(errors, context.retry_number, schedule)
    if decision.retry:
        context.log.warning(decision.log_line)
        retry = dg.RetryRequested(max_retries=schedule.max_retries, seconds_to_wait=decision.delay_seconds)
        retry.__cause__ = failure
        return retry
    context.log.error(decision.log_line)
    if isinstance(failure, dg.Failure):
        failure.allow_retries = False
    return failure


def with_retry_policy(market: Market) -> Callable[[AssetBody], AssetBody]:
    """Apply ``market``'s retry policy to any exception of the asset's body not already handled by it.

    (The warehouse unreachable at start, say: it is classified and retried like a failed file.) Placed under
    ``@dg.asset``; the signature is kept, so Dagster still sees the body's context, config and resources.
    """

    def decorate(body: AssetBody) -> AssetBody:
        @functools.wraps(body)
        def wrapper(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from body(context, *args, **kwargs)
            except (dg.Failure, dg.RetryRequested, dg.DagsterExecutionInterruptedError):
                raise
            except Exception as exc:
                classified = classify(exc)
                failure = dg.Failure(
                    description=str(classified),
                    metadata={"error_class": classified.error_class.value, "message": classified.message},
                )
                raise retry_or_fail(context, market, [classified], failure) from exc

        return wrapper

    return decorate


class StopRequests:
    """Runs of this process asked to stop in this process (``mytrader run``'s Ctrl-C), by run id: known before the
    run is created, so a stop cannot be lost to a race with the run's start writing its status."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, run_id: str) -> None:
        with self._lock:
            self._ids.add(run_id)

    def discard(self, run_id: str) -> None:
        with self._lock:
            self._ids.discard(run_id)

    def __contains__(self, run_id: object) -> bool:
        with self._lock:
            return run_id in self._ids


STOP_REQUESTS = StopRequests()


class StopWhenCanceled:
    """``should_stop`` of the importer: true once the run is being cancelled, cancelled or failed, or was asked to
    stop in this process (``STOP_REQUESTS``).

    Every call reads the run's status afresh from the instance (a cached answer would let files start or commit after
    the stop for as long as it is kept); once true it stays true. The importer asks before each file starts and, in
    the file's transaction, right before its COMMIT: a run cancelled, or failed by run monitoring for its max runtime,
    starts no new file and commits no file after the stop was recorded.
    """

    def __init__(self, context: dg.AssetExecutionContext | dg.OpExecutionContext) -> None:
        self.instance = context.instance
        self.run_id = context.run_id
        self._stop = False
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            if not self._stop and self.run_id in STOP_REQUESTS:
                self._stop = True
            if not self._stop:
                status = self._status()
                self._stop = status is not None and status in STOPPING
            return self._stop

    def _status(self) -> dg.DagsterRunStatus | None:
        """The run's status as stored now: its column alone from a SQL run storage (the importer asks twice per file;
        a whole run record is deserialized tags, config and all), else from the run record."""
        storage = self.instance.run_storage
        if isinstance(storage, SqlRunStorage):
            row = storage.fetchone(sa.select(RunsTable.c.status).where(RunsTable.c.run_id == self.run_id))
            return None if row is None else dg.DagsterRunStatus(row["status"])
        run = self.instance.get_run_by_id(self.run_id)
        return run.status if run is not None else None
