"""The Dagster side of ``mytrader run``: its local instance, and the markets' changed files materialized in-process."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import dagster as dg
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager  # not re-exported at the top level

from mytrader_pipeline.core.discovery import MarketFile
from mytrader_pipeline.core.errors import ErrorClass, FileFailure
from mytrader_pipeline.core.ranges import plan_ranges
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.event_log import KeptOpenSqliteEventLogStorage, kept_open_instance
from mytrader_pipeline.defs.failed_partitions import mark_unmaterialized_failed
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partition_reads import partitions_read_once
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.policies import STOP_REQUESTS
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.run_logs import progress_console_logger, silent_console_logger, write_run_log
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.run_summary import MarketRunSummary, RangeRun, RunFailure
from mytrader_pipeline.runner import MarketPlan, finish_market, plan_import
from mytrader_pipeline.settings import default_dagster_home, get_settings, state_dir


def local_instance() -> dg.DagsterInstance:
    """The instance at ``DAGSTER_HOME``, else a persistent one in the local state folder.

    A home without a ``dagster.yaml`` (the quickstart's) gets Dagster's default SQLite storage with a run storage
    and an event log that keep their databases open (``defs.run_storage``, ``defs.event_log``): each event is a
    commit, not a new connection and fsyncs.
    """
    home = get_settings().dagster_home or default_dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        return kept_open_instance(home.resolve())
    if get_settings().dagster_home:
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.from_config(str(home))


def _unhandled_failure(result: dg.ExecuteInProcessResult) -> RunFailure | None:
    """Why a failed run's files went untried: set unless the step decided about each file (naming ``failed_files``)."""
    if result.success:
        return None
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        user = data.user_failure_data
        metadata = user.metadata if user else {}
        if "failed_files" in metadata:
            return None
        found = FileFailure.from_json({k: v.value for k, v in metadata.items() if k in ("error_class", "message")})
        message = found.message or (user.description if user else None) or (data.error and data.error.message)
        message = " ".join((message or "the step failed").split())
        return RunFailure(FileFailure(found.error_class or ErrorClass.UNEXPECTED, message))
    return RunFailure(FileFailure(ErrorClass.UNEXPECTED, "the run failed before its step started"))


# Markets run side by side on threads when a run has this much to parse: one market's native work (parsing, typing,
# COPY and the database's side of it) then overlaps another's, and the Dagster bookkeeping between its files. A daily
# append parses a line per file, and threads would only contend for the interpreter: its markets run one by one.
MARKETS_AT_ONCE = 2
PARALLEL_PARSE_BYTES = 64 * 1024 * 1024


_STOPPED = "Stopped by the user (mytrader run interrupted)"


def _end_stopped(instance: dg.DagsterInstance, run_id: str, *, succeeded: bool) -> None:
    """A run asked to stop that did not load all its files ends cancelled (Dagster's in-process execution ends it
    failed), and none is left cancelling (a stop that came as the run ended)."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status == dg.DagsterRunStatus.CANCELED:
        return
    if run.status == dg.DagsterRunStatus.CANCELING or not succeeded:
        instance.report_run_canceled(run, message=_STOPPED)


@dataclasses.dataclass
class LocalRuns:
    """Materializes markets' files through Dagster in this process, on ``instance`` (default: ``local_instance``).

    ``log_level`` is the level of Dagster's console logger (every event, step failures with stack traces); None
    replaces it: with ``progress``, only the asset's progress lines and retry decisions, else nothing. Every run's
    full log is written to ``logs_dir`` as ``<run id>.log``.
    """

    data_root: Path
    database_url: str
    registry: MarketRegistry
    logs_dir: Path
    force: bool = False
    log_level: str | None = "INFO"
    progress: bool = True
    instance: dg.DagsterInstance | None = None
    parallel_parse_bytes: int = PARALLEL_PARSE_BYTES  # markets run side by side when there is more to parse
    _defs: dg.Definitions | None = dataclasses.field(default=None, init=False)  # built for the first market to load
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, init=False)
    _running: set[str] = dataclasses.field(default_factory=set, init=False)  # ids of the runs executing now
    _stopping: bool = dataclasses.field(default=False, init=False)  # ``stop`` was called: start no run

    def __post_init__(self) -> None:
        self.instance = self.instance or local_instance()

    @property
    def side_by_side(self) -> bool:
        """Whether markets may run at once: not on an instance that captures each step's stdout and stderr (it
        redirects the whole process's for the step's duration)."""
        assert self.instance is not None
        return isinstance(self.instance.compute_log_manager, NoOpComputeLogManager)

    def _definitions(self) -> dg.Definitions:
        with self._lock:
            if self._defs is None:
                overrides = {
                    "warehouse": WarehouseResource(database_url=self.database_url),
                    "data_root": DataRootResource(data_root=str(self.data_root)),
                }
                self._defs = build_defs(self.registry, resource_overrides=overrides)
            return self._defs

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        with self._lock:
            return self._stopping

    def stop(self) -> None:
        """Ask every run executing now to stop: it starts and commits no more files (``defs.policies``'s
        ``StopWhenCanceled``, through ``STOP_REQUESTS``), and ends cancelled. No run starts after this."""
        instance = self.instance
        assert instance is not None
        with self._lock:
            self._stopping = True
            running = list(self._running)
            for run_id in running:
                STOP_REQUESTS.add(run_id)
        for run_id in running:  # what the UI shows meanwhile; a run not started yet is marked when it ends
            run = instance.get_run_by_id(run_id)
            if run is not None and run.status == dg.DagsterRunStatus.STARTED:
                instance.report_run_canceling(run, message=_STOPPED)

    def run(self, market: Market, files: list[MarketFile], changed: set[str]) -> list[RangeRun]:
        """``files`` registered as partitions of ``market``'s asset, then one run per contiguous range of its
        partitions holding a ``changed`` file; each run's outcome. Markets may run at once, on threads."""
        instance = self.instance
        assert instance is not None
        all_keys = register_partitions(instance, market, [f.partition_key for f in files])
        by_key = {f.partition_key: f for f in files}
        ranges = plan_ranges(all_keys, changed, present=by_key)  # only ranges with a changed file to load
        if not ranges:
            return []
        job = self._definitions().resolve_job_def(import_job_name(market))
        run_config: dict[str, object] = {"ops": {market.asset_name: {"config": {"force": self.force}}}}
        if self.log_level is None:
            quiet = progress_console_logger if self.progress else silent_console_logger
            job = job.with_logger_defs({"console": quiet})
            run_config["loggers"] = {"console": {}}  # named, else Dagster adds its default console logger
        else:
            run_config["loggers"] = {"console": {"config": {"log_level": self.log_level}}}
        storage = instance.event_log_storage
        kept_open = storage if isinstance(storage, KeptOpenSqliteEventLogStorage) else None
        runs: list[RangeRun] = []
        for keys in ranges:
            run_id = str(uuid.uuid4())
            with self._lock:
                if self._stopping:
                    break
                self._running.add(run_id)
            try:
                with partitions_read_once(instance):
                    result = job.execute_in_process(
                        instance=instance,
                        run_config=run_config,
                        tags=partition_range_tags(keys[0], keys[-1]),
                        run_id=run_id,
                        raise_on_error=False,
                    )
            finally:
                with self._lock:
                    self._running.discard(run_id)
                    stopped = run_id in STOP_REQUESTS
                    STOP_REQUESTS.discard(run_id)
            if stopped:
                _end_stopped(instance, run_id, succeeded=result.success)
            mark_unmaterialized_failed(instance, result, dg.AssetKey(market.asset_name), keys)
            events = None
            if kept_open:
                kept_open.close_run_shard(result.run_id)  # its file as Dagster leaves it, for its watchers
                events = kept_open.stored_events(result.run_id)  # not read back from the file
            log_file = write_run_log(instance, result.run_id, self.logs_dir, events)
            runs.append(RangeRun(result.run_id, [by_key[k] for k in keys], log_file, _unhandled_failure(result)))
        return runs


def run_planned(
    plans: list[MarketPlan],
    runs: LocalRuns,
    on_market: Callable[[MarketRunSummary], None] = lambda _summary: None,
) -> list[MarketRunSummary]:
    """Each market of ``plans`` through ``runs``: its files registered, its changed ones loaded; one summary each (in
    the order of ``plans``), passed to ``on_market`` as soon as the market is done.

    Markets run ``MARKETS_AT_ONCE`` at a time, in the order of ``plans`` (the markets' scheduling priority), when
    there is more than ``runs.parallel_parse_bytes`` to parse and ``runs`` allows it; else one by one. Either way
    they run on worker threads and this thread waits, so a signal handler can ``runs.stop()`` them (the CLI's
    Ctrl-C); after a stop no other market starts, and the summaries say what loaded. Should this thread be
    interrupted by an exception instead, the runs are stopped and awaited, and the exception goes on.
    """

    def one(plan: MarketPlan) -> MarketRunSummary:
        started = time.perf_counter()
        done = runs.run(plan.market, plan.files, plan.changed) if plan.files else []
        return finish_market(runs.database_url, plan, done, time.perf_counter() - started)

    side_by_side = runs.side_by_side and sum(p.parse_bytes for p in plans) > runs.parallel_parse_bytes
    found: dict[int, MarketRunSummary] = {}
    pool = ThreadPoolExecutor(max_workers=MARKETS_AT_ONCE if side_by_side else 1, thread_name_prefix="market")
    try:
        pending: dict[Future[MarketRunSummary], int] = {pool.submit(one, plan): i for i, plan in enumerate(plans)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                found[index] = future.result()
                on_market(found[index])
    except BaseException:
        runs.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [found[i] for i in range(len(plans))]


def run_import(
    data_root: Path,
    database_url: str,
    registry: MarketRegistry,
    markets: list[Market],
    *,
    force: bool = False,
    log_level: str | None = "INFO",
    instance: dg.DagsterInstance | None = None,
    progress: bool = True,
    logs_dir: Path | None = None,
) -> list[MarketRunSummary]:
    """``plan_import`` then ``run_planned``: every changed file of ``markets`` materialized; one summary per market.

    Run logs go to ``logs_dir`` (default: ``.mytrader/logs``); see ``LocalRuns`` for the rest.
    """
    plans = plan_import(data_root, database_url, markets, force=force)
    runs = LocalRuns(
        data_root, database_url, registry, logs_dir or state_dir() / "logs", force=force, log_level=log_level,
        progress=progress, instance=instance,
    )  # fmt: skip
    return run_planned(plans, runs)
