"""The service layer: every operation the CLI and the REST API offer, over one running Dagster deployment."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import ALL_MARKETS, DeadLetterError, DeadLetterStore, InvalidTransition, ItemNotFound
from mytrader_pipeline.core.limits import REJECTED_ROWS_DEFAULT
from mytrader_pipeline.core.rejects import list_rejected_rows
from mytrader_pipeline.core.request_errors import Conflict, DeploymentUnavailable, InvalidRequest, NotFound
from mytrader_pipeline.core.requests import AllMarketsImportRequest, MarketImportRequest
from mytrader_pipeline.core.responses import (
    DeadLetterItemResponse,
    DeadLetterPage,
    HealthResponse,
    MonitoringStatsResponse,
    RejectedRowsResponse,
)
from mytrader_pipeline.core.runs import FINISHED_STATES
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB
from mytrader_pipeline.defs.jobs import MARKET_TAG
from mytrader_pipeline.defs.monitoring import stats_for
from mytrader_pipeline.defs.monitoring_sources import collect_health
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.planning import JOB_TYPE_TAG, RETRY_OF_TAG, PlannedRun, plan_all_markets, plan_market_import
from mytrader_pipeline.defs.replay import replay_item
from mytrader_pipeline.defs.schedule_store import ScheduleStore, UserSchedule
from mytrader_pipeline.markets import MarketRegistry, load_markets
from mytrader_pipeline.service.gateway import DagsterGateway, RunInfo
from mytrader_pipeline.service.models import JobStatus, RetryPolicy
from mytrader_pipeline.service.replay import DeploymentPartitions
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline.service.status import audit_of_runs, progress_from_events, range_size, run_status

ROOT_RUN_TAG = "dagster/root_run_id"
T = TypeVar("T")


class Operations:
    """Import, follow, cancel, retry and schedule jobs; monitoring, dead-letter queue and health."""

    def __init__(self, settings: ServiceSettings, registry: MarketRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or load_markets(settings.markets_file)
        self.gateway = DagsterGateway(settings.dagster_url)

    # -- configuration -----------------------------------------------------------------------------------------

    @property
    def data_root(self) -> Path:
        """The configured data root; every path in a request must resolve inside it."""
        if self.settings.data_root is None:
            raise DeploymentUnavailable("no data root configured: set MYTRADER_DATA_ROOT")
        return self.settings.data_root

    @functools.cached_property
    def engine(self) -> Engine:
        """The warehouse (audit, schedules, dead-letter queue, alerts)."""
        if not self.settings.database_url:
            raise DeploymentUnavailable("no warehouse configured: set MYTRADER_DATABASE_URL")
        return make_engine(self.settings.database_url, pool_size=2)

    @functools.cached_property
    def ready_engine(self) -> Engine:
        """``engine`` with the warehouse schema created or upgraded (checked once; retried after a failure)."""
        ensure_schema(self.engine)
        return self.engine

    def _engine_or_none(self) -> Engine | None:
        return self.engine if self.settings.database_url else None

    # -- imports -----------------------------------------------------------------------------------------------

    def _launch(self, plan: PlannedRun) -> str:
        if plan.new_keys and plan.market is not None:
            register_partitions(DeploymentPartitions(self.gateway, self.registry), plan.market, plan.new_keys)
        return self.gateway.launch(plan.job_name, plan.run_config, plan.tags)

    def _known_keys(self, market_code: str) -> list[str]:
        return self.gateway.partition_keys(self.registry.get(market_code).asset_name)

    def import_market(self, request: MarketImportRequest, *, extra_tags: dict[str, str] | None = None) -> str:
        """Launch the import of one market's files; returns the job id (the Dagster run id)."""
        code = self.registry.get(request.market).code if request.market.upper() in self.registry.codes else ""
        known = self._known_keys(code) if code else []
        plan = plan_market_import(self.registry, self.data_root, request, known, extra_tags=extra_tags)
        return self._launch(plan)

    def import_all_markets(self, request: AllMarketsImportRequest, *, extra_tags: dict[str, str] | None = None) -> str:
        """Launch the all-markets job (one op per market, in one run); returns the job id (its run id)."""
        return self._launch(plan_all_markets(self.registry, self.data_root, request, extra_tags=extra_tags))

    # -- status, cancel, retry ---------------------------------------------------------------------------------

    def _run_status(self, run: RunInfo, now: dt.datetime) -> JobStatus:
        root = run.root_run_id or run.run_id
        group = self.gateway.runs(tags={ROOT_RUN_TAG: root})
        retries = [r for r in group if r.created_at > run.created_at]
        progress = progress_from_events(self.gateway.events(run.run_id))
        audit = audit_of_runs(self._engine_or_none(), [run.run_id])
        market_code = run.tags.get(MARKET_TAG)
        market = self.registry.get(market_code) if market_code in self.registry.codes else None
        total = range_size(run, self.gateway.partition_keys(market.asset_name)) if market else None
        default_sla = dt.timedelta(minutes=market.sla_minutes) if market else None
        expected = len(self.registry) if run.job_name == ALL_MARKETS_JOB else 1
        return run_status(
            run,
            progress,
            audit,
            files_total=total,
            expected_markets=expected,
            retries=retries,
            default_sla=default_sla,
            now=now,
        )

    def status(self, job_id: str) -> JobStatus:
        """The state and progress of a job (a Dagster run id); its children are its re-executions."""
        run = self.gateway.run(job_id)
        status = self._run_status(run, dt.datetime.now(dt.UTC))
        status.child_job_ids = [r.run_id for r in self.gateway.runs(tags={RETRY_OF_TAG: run.run_id})]
        return status

    def cancel(self, job_id: str) -> JobStatus:
        """Stop a queued or running job."""
        runs = [self.gateway.run(job_id)]
        active = [r for r in runs if r.status not in FINISHED_STATES]
        if not active:
            raise Conflict(f"job {job_id} has already finished")
        for run in active:
            if run.status != "CANCELING":
                self.gateway.terminate(run.run_id)
        return self.status(job_id)

    def retry(self, job_id: str, policy: RetryPolicy | None = None) -> list[str]:
        """Re-execute a failed or cancelled job from its failure (in the all-markets job: the markets that failed).

        Returns the new run ids. ``policy.max_retries`` becomes the new run's automatic run retries
        (``dagster/max_retries``); the delays are recorded on the run as ``mytrader/retry_*`` tags.
        """
        policy = policy or RetryPolicy()
        runs = [self.gateway.run(job_id)]
        retryable = [r for r in runs if r.status in ("FAILURE", "CANCELED")]
        if not retryable:
            states = ", ".join(sorted({r.status.lower() for r in runs}))
            raise Conflict(f"job {job_id} has nothing to retry (state: {states}); only failed or cancelled jobs are")
        tags = {
            "dagster/max_retries": str(policy.max_retries),
            "mytrader/retry_initial_delay": str(int(policy.initial_delay.total_seconds())),
            "mytrader/retry_backoff_multiplier": str(policy.backoff_multiplier),
        }
        return [
            self.gateway.reexecute(r.run_id, tags={**tags, RETRY_OF_TAG: r.run_id, JOB_TYPE_TAG: "Retry"})
            for r in retryable
        ]

    # -- schedules ---------------------------------------------------------------------------------------------

    @functools.cached_property
    def schedules(self) -> ScheduleStore:
        """The stored schedules of the all-markets import."""
        return ScheduleStore(self.engine)

    def add_schedule(self, request: AllMarketsImportRequest, cron_expression: str, time_zone: str) -> UserSchedule:
        """Store a recurring all-markets import (its paths are checked now, against the data root)."""
        plan_all_markets(self.registry, self.data_root, request)
        return self.schedules.add(cron_expression, time_zone, request)

    def list_schedules(self) -> list[UserSchedule]:
        """Every stored schedule."""
        return self.schedules.list()

    def remove_schedule(self, schedule_id: str) -> None:
        """Delete a stored schedule (``NotFound`` if there is none)."""
        self.schedules.remove(schedule_id)

    # -- monitoring, dead-letter queue, health (core.stats, core.dlq, core.health, read through defs/) ------------

    def _instance(self) -> dg.DagsterInstance:
        """The deployment's Dagster instance (its ``DAGSTER_HOME``): monitoring reads runs and daemon state from it."""
        home = self.settings.dagster_home
        if home is None:
            raise DeploymentUnavailable(
                "monitoring reads the deployment's Dagster instance: set DAGSTER_HOME to the deployment's home"
            )
        return dg.DagsterInstance.from_config(str(home))

    def stats(self, start: dt.date, end: dt.date) -> MonitoringStatsResponse:
        """Monitoring statistics over ``[start, end]`` (the old ``BatchMonitoringStats``)."""
        ensure_schema(self.engine)
        with self._instance() as instance:
            return MonitoringStatsResponse.model_validate(stats_for(instance, self.registry, self.engine, start, end))

    def _dead_letters(self, call: Callable[[DeadLetterStore], T]) -> T:
        """``call(store)`` with the dead-letter queue's errors translated into refused requests."""
        try:
            return call(DeadLetterStore(self.ready_engine))
        except ItemNotFound as exc:
            raise NotFound(str(exc)) from exc
        except InvalidTransition as exc:
            raise Conflict(str(exc)) from exc
        except DeadLetterError as exc:
            raise InvalidRequest(str(exc)) from exc
        except sa.exc.OperationalError as exc:
            raise DeploymentUnavailable(f"the warehouse cannot be reached: {exc.orig or exc}") from exc

    def dlq_list(
        self, page: int = 1, page_size: int = 50, market: str | None = None, status: str | None = None
    ) -> DeadLetterPage:
        """A page of dead-letter items, newest first; ``market`` is a registry code or ALL.

        Raises:
            InvalidRequest: for a market that is neither (named in the message, never passed to the database).
        """
        known = [*self.registry.codes, ALL_MARKETS]
        if market is not None and market.upper() not in known:
            raise InvalidRequest(f"market: unknown market {market!r}; one of {', '.join(known)}")
        return DeadLetterPage.model_validate(
            self._dead_letters(lambda store: store.list(page=page, page_size=page_size, market=market, status=status))
        )

    def dlq_show(self, item_id: int) -> DeadLetterItemResponse:
        """One dead-letter item in full, with its stack trace."""
        return DeadLetterItemResponse.model_validate(self._dead_letters(lambda store: store.get(item_id)))

    def dlq_replay(self, item_id: int) -> DeadLetterItemResponse:
        """Re-execute only an item's failed partitions on the deployment; returns the item with the new runs linked.

        The runs are launched over GraphQL (``defs.replay.replay_item``). The deployment's
        ``dead_letter_resolution_sensor`` resolves the item when they all succeed, and its ``dead_letter_sensor``
        reopens it when one fails.
        """

        def launch(job_name: str, run_config: dict[str, Any], tags: dict[str, str], _run_id: str) -> str:
            return self.gateway.launch(job_name, run_config, tags)  # GraphQL cannot choose the id: return the one given

        partitions = DeploymentPartitions(self.gateway, self.registry)
        return DeadLetterItemResponse.model_validate(
            self._dead_letters(
                lambda store: replay_item(partitions, self.registry, store, item_id, launch)  # type: ignore[arg-type]
            )
        )

    def dlq_discard(self, item_id: int, reason: str, by: str) -> DeadLetterItemResponse:
        """Discard an item, recording who and why."""
        return DeadLetterItemResponse.model_validate(
            self._dead_letters(lambda store: store.discard(item_id, reason, by))
        )

    def rejected_rows(
        self, market: str, file: str | None = None, limit: int = REJECTED_ROWS_DEFAULT
    ) -> RejectedRowsResponse:
        """The rejected rows of a market's current loads (of one file), newest load first (``core.rejects``)."""
        try:
            return list_rejected_rows(self.ready_engine, self.registry, market, file, limit)
        except sa.exc.OperationalError as exc:
            raise DeploymentUnavailable(f"the warehouse cannot be reached: {exc.orig or exc}") from exc

    def health(self) -> HealthResponse:
        """Healthy, degraded or unhealthy, with reasons (``defs.monitoring_sources.collect_health``)."""
        instance = self._instance() if self.settings.dagster_home else None
        try:
            report = collect_health(
                instance, self.engine, self.settings.data_root, self.registry, build_defs(self.registry)
            )
        finally:
            if instance is not None:
                instance.dispose()
        return report.response()
