"""The operations layer: every operation the CLI and the REST API offer, over one running Dagster deployment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB
from mytrader_pipeline.markets import MarketRegistry, load_markets
from mytrader_pipeline.ops.errors import Conflict, DeploymentUnavailable
from mytrader_pipeline.ops.gateway import DagsterGateway, RunInfo
from mytrader_pipeline.ops.models import AllMarketsImportRequest, JobStatus, MarketImportRequest, RetryPolicy
from mytrader_pipeline.ops.planning import (
    JOB_TYPE_TAG,
    RETRY_OF_TAG,
    PlannedRun,
    plan_all_markets,
    plan_market_import,
)
from mytrader_pipeline.ops.schedules import ScheduleStore, UserSchedule
from mytrader_pipeline.ops.status import (
    FINISHED,
    audit_of_runs,
    progress_from_events,
    range_size,
    run_status,
)

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
ROOT_RUN_TAG = "dagster/root_run_id"


@dataclasses.dataclass(frozen=True)
class OpsSettings:
    """Where the operations act: the deployment's web server, the data root, the warehouse, the market registry."""

    dagster_url: str = DEFAULT_DAGSTER_URL
    data_root: Path | None = None
    database_url: str | None = None
    markets_file: str | None = None
    dagster_home: Path | None = None  # the deployment's instance, read by monitoring (stats, health)

    @classmethod
    def from_env(cls, dagster_url: str | None = None) -> OpsSettings:
        """Settings from ``MYTRADER_DAGSTER_URL``, ``_DATA_ROOT``, ``_DATABASE_URL`` and ``_MARKETS_FILE``."""
        root = os.environ.get("MYTRADER_DATA_ROOT")
        return cls(
            dagster_url=dagster_url or os.environ.get("MYTRADER_DAGSTER_URL") or DEFAULT_DAGSTER_URL,
            data_root=Path(root).expanduser().resolve() if root else None,
            database_url=os.environ.get("MYTRADER_DATABASE_URL") or None,
            markets_file=os.environ.get("MYTRADER_MARKETS_FILE") or None,
            dagster_home=Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else None,
        )


class Operations:
    """Import, follow, cancel, retry and schedule jobs; monitoring, dead-letter queue and health."""

    def __init__(self, settings: OpsSettings, registry: MarketRegistry | None = None) -> None:
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
        if plan.new_keys and plan.partitions_def:
            selector = self.gateway.repository_of_job(plan.job_name)
            for key in plan.new_keys:
                self.gateway.add_partition(selector, plan.partitions_def, key)
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
        market_code = run.tags.get("market")
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
        active = [r for r in runs if r.status not in FINISHED]
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

    # -- monitoring, dead-letter queue, health (implemented by core.stats, core.dlq, core.health) ---------------

    def stats(self, start: dt.date, end: dt.date) -> dict[str, Any]:
        """Monitoring statistics over ``[start, end]`` (the old ``BatchMonitoringStats``)."""
        from mytrader_pipeline.ops import delegates

        return delegates.stats(self, start, end)

    def dlq_list(
        self, page: int = 1, page_size: int = 50, market: str | None = None, status: str | None = None
    ) -> dict[str, Any]:
        """A page of dead-letter items."""
        from mytrader_pipeline.ops import delegates

        return delegates.dlq_list(self, page, page_size, market, status)

    def dlq_show(self, item_id: int) -> dict[str, Any]:
        """One dead-letter item in full."""
        from mytrader_pipeline.ops import delegates

        return delegates.dlq_show(self, item_id)

    def dlq_replay(self, item_id: int) -> dict[str, Any]:
        """Re-execute only an item's failed partitions on the deployment; returns the item with the new runs linked.

        The deployment's ``dead_letter_resolution_sensor`` resolves the item when they all succeed, and its
        ``dead_letter_sensor`` reopens it when one fails.
        """
        from mytrader_pipeline.ops import delegates

        return delegates.dlq_replay(self, item_id)

    def dlq_discard(self, item_id: int, reason: str, by: str) -> dict[str, Any]:
        """Discard an item, recording who and why."""
        from mytrader_pipeline.ops import delegates

        return delegates.dlq_discard(self, item_id, reason, by)

    def health(self) -> dict[str, Any]:
        """Healthy, degraded or unhealthy, with reasons."""
        from mytrader_pipeline.ops import delegates

        return delegates.health(self)
