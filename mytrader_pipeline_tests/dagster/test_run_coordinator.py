"""The deployment's run coordinator on a real instance: any run of a market's asset gets the market's rules.

Runs are created the way Dagster's launch paths create them (``create_run_for_job`` over the code location's jobs,
including ``__ASSET_JOB``, which the UI's Materialize button and GraphQL backfills run) and submitted through the
instance's configured coordinator, as the web server and the backfill daemon submit them.
"""

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext

from mytrader_pipeline.core.db import ensure_schema
from mytrader_pipeline.core.dlq import DeadLetterStore
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB
from mytrader_pipeline.defs.dead_letters import record_run_failure
from mytrader_pipeline.defs.jobs import (
    MARKET_TAG,
    MAX_RUNTIME_TAG,
    PRIORITY_TAG,
    import_job_name,
    market_pool,
    market_run_tags,
    partition_range_tags,
)
from mytrader_pipeline.defs.monitoring_sources import import_runs
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.run_coordinator import (
    MARKETS_TAG,
    MAX_RETRIES_TAG,
    REFUSED_TAG,
    MarketRunCoordinator,
    refuse_stranded_runs,
)
from mytrader_pipeline.markets import load_markets

REGISTRY = load_markets()
BIST, CRYPTO, NYSE = REGISTRY.get("BIST"), REGISTRY.get("CRYPTO"), REGISTRY.get("NYSE")
COORDINATOR = {"module": "mytrader_pipeline.defs.run_coordinator", "class": "MarketRunCoordinator"}  # as dagster.yaml
ASSET_JOB = "__ASSET_JOB"
DEFS = build_defs(
    REGISTRY,
    resource_overrides={
        "warehouse": WarehouseResource(database_url="sqlite://"),
        "data_root": DataRootResource(data_root="."),
    },
)


def an_hour_ago() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    overrides = {"run_coordinator": COORDINATOR, "concurrency": {"pools": {"granularity": "run"}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        assert isinstance(instance.run_coordinator, MarketRunCoordinator)
        register_partitions(instance, BIST, ["A.csv", "B.csv", "C.csv"])
        yield instance


def submit(
    instance: dg.DagsterInstance,
    job_name: str,
    tags: dict[str, str] | None = None,
    assets: list[str] | None = None,
) -> dg.DagsterRun:
    """Create a run of ``job_name`` (over ``assets``) with ``tags`` and submit it to the instance's coordinator."""
    job = DEFS.resolve_implicit_global_asset_job_def() if job_name == ASSET_JOB else DEFS.resolve_job_def(job_name)
    selection = frozenset(dg.AssetKey(a) for a in assets) if assets else None
    if selection:
        job = job.get_subset(asset_selection=selection)
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("mytrader_pipeline"), "__repo__"), job_name
    )
    run = instance.create_run_for_job(
        job,
        run_id=str(uuid.uuid4()),
        tags={**job.tags, **(tags or {})},
        asset_selection=selection,
        remote_job_origin=origin,
    )
    submitted = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
    assert submitted.run_id == run.run_id
    stored = instance.get_run_by_id(run.run_id)
    assert stored is not None
    return stored


def test_a_materialize_run_of_one_market_gets_its_tags_and_pool_and_is_queued(instance: dg.DagsterInstance) -> None:
    run = submit(instance, ASSET_JOB, partition_range_tags("A.csv", "B.csv"), assets=[BIST.asset_name])

    assert run.status == dg.DagsterRunStatus.QUEUED
    assert {k: run.tags[k] for k in (MARKET_TAG, PRIORITY_TAG, MAX_RUNTIME_TAG)} == market_run_tags(BIST)
    assert run.run_op_concurrency is not None and run.run_op_concurrency.all_pools == {market_pool(BIST)}
    for market in REGISTRY:  # the pool limits come from the registry, set before the first run is queued
        assert instance.event_log_storage.get_concurrency_info(market_pool(market)).slot_count == market.max_concurrency


def test_tags_a_run_already_has_are_kept(instance: dg.DagsterInstance) -> None:
    run = submit(instance, ASSET_JOB, {PRIORITY_TAG: "500", "dagster/partition": "C.csv"}, assets=[BIST.asset_name])

    assert run.tags[PRIORITY_TAG] == "500"  # the user's priority wins
    assert run.tags[MARKET_TAG] == "BIST" and run.tags[MAX_RUNTIME_TAG] == str(BIST.max_runtime_seconds)


def test_the_import_jobs_runs_keep_their_own_tags(instance: dg.DagsterInstance) -> None:
    run = submit(instance, import_job_name(BIST), partition_range_tags("A.csv", "C.csv"))

    assert run.status == dg.DagsterRunStatus.QUEUED
    assert {k: run.tags[k] for k in (MARKET_TAG, PRIORITY_TAG, MAX_RUNTIME_TAG)} == market_run_tags(BIST)


def test_a_run_over_several_markets_gets_the_strictest_rules_and_every_markets_pool(
    instance: dg.DagsterInstance,
) -> None:
    run = submit(instance, ASSET_JOB, assets=[CRYPTO.asset_name, NYSE.asset_name, BIST.asset_name])

    # BIST allows the fewest runs at once (3); NYSE has the lowest priority; the shortest max runtime wins.
    assert run.tags[MARKET_TAG] == "BIST"
    assert run.tags[PRIORITY_TAG] == market_run_tags(NYSE)[PRIORITY_TAG]
    runtimes = [BIST.max_runtime_seconds, CRYPTO.max_runtime_seconds, NYSE.max_runtime_seconds]
    assert run.tags[MAX_RUNTIME_TAG] == str(min(runtimes))
    assert run.tags[MARKETS_TAG] == "BIST,CRYPTO,NYSE"
    assert run.run_op_concurrency is not None
    assert run.run_op_concurrency.all_pools == {market_pool(m) for m in (BIST, CRYPTO, NYSE)}


def test_a_run_of_no_market_asset_is_left_alone(instance: dg.DagsterInstance) -> None:
    run = submit(instance, ALL_MARKETS_JOB)

    assert run.status == dg.DagsterRunStatus.QUEUED
    assert MARKET_TAG not in run.tags and REFUSED_TAG not in run.tags
    assert run.tags[PRIORITY_TAG] == "100"  # its job's own


def test_a_run_naming_a_file_its_market_lacks_is_refused_at_submit(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    run = submit(instance, ASSET_JOB, {"dagster/partition": "NOPE.csv"}, assets=[BIST.asset_name])

    assert_refused_once(instance, run, tmp_path)


def test_a_launch_dagster_could_not_plan_leaves_a_run_the_guard_fails_once(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # What GraphQL launchRun over a range with an unknown end does: Dagster stores the run, then fails planning it.
    with pytest.raises(dg.DagsterInvalidInvocationError, match=r"NOPE\.csv"):
        submit(instance, ASSET_JOB, partition_range_tags("A.csv", "NOPE.csv"), assets=[BIST.asset_name])
    [stranded] = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.NOT_STARTED]))

    assert refuse_stranded_runs(instance, REGISTRY, older_than_seconds=0) == [stranded.run_id]
    assert refuse_stranded_runs(instance, REGISTRY, older_than_seconds=0) == []  # once
    run = instance.get_run_by_id(stranded.run_id)
    assert run is not None and run.tags[MARKET_TAG] == "BIST"
    assert_refused_once(instance, run, tmp_path)


def assert_refused_once(instance: dg.DagsterInstance, run: dg.DagsterRun, tmp_path: Path) -> None:
    """Failed with a message naming the file, never queued or retried, no dead-letter item, not in the stats."""
    assert run.status == dg.DagsterRunStatus.FAILURE  # never queued: nothing for run monitoring to time out
    assert run.tags[MAX_RETRIES_TAG] == "0"  # nor for run retries to re-create
    failure = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert len(failure) == 1
    message = failure[0].event_log_entry.dagster_event.message or ""  # type: ignore[union-attr]
    assert "BIST has no file 'NOPE.csv'" in message and "Nothing was queued" in message
    assert run.tags[REFUSED_TAG] == message
    assert instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])) == []

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    ensure_schema(engine)
    store = DeadLetterStore(engine)
    assert record_run_failure(instance, REGISTRY, store, run) == (None, False)  # no dead-letter item
    assert store.active_items() == []
    assert import_runs(instance, REGISTRY, since=an_hour_ago()) == []  # not an import in the stats


def test_materialize_runs_count_in_the_stats_as_their_markets_imports(instance: dg.DagsterInstance) -> None:
    run = submit(instance, ASSET_JOB, partition_range_tags("A.csv", "B.csv"), assets=[BIST.asset_name])

    [info] = import_runs(instance, REGISTRY, since=an_hour_ago())
    assert info.run_id == run.run_id and info.markets == ("BIST",)
