"""Every way in is the same pipeline, on a real deployment (``dagster dev``, the shipped instance config on PostgreSQL).

The UI's Materialize button on partitions of a market asset calls GraphQL ``launchPartitionBackfill``; these tests
call that mutation as the button does (``test_ui_truth_deployment.py`` drives the dialog itself in Chromium) and see
the run carry the market's tags and pool and obey its limit. A ``launchRun`` naming files the market lacks fails once.
A second web server started ``--read-only`` beside the operators' refuses launches.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import DeadLetterStore
from mytrader_pipeline.defs.jobs import MARKET_TAG, market_pool, market_run_tags, partition_range_tags
from mytrader_pipeline.defs.run_coordinator import MAX_RETRIES_TAG, REFUSED_TAG
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.dagster.test_failure_dlq import GOOD_ROWS, HEADER
from mytrader_pipeline_tests.integration.conftest import (
    Deployment,
    RestartableDeployment,
    _stop,
    _wait_ready,
    free_port,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WAIT_SECONDS = 300  # bound of every wait (a busy 2-core machine starts runs slowly)
FILES = ["A.csv", "B.csv", "C.csv", "D.csv"]
REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "mytrader_pipeline.definitions"}
ASSET_JOB = "__ASSET_JOB"
T = TypeVar("T")

BACKFILL = """
mutation Materialize($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""


def wait_for(what: str, probe: Callable[[], T | None], seconds: float = WAIT_SECONDS) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def nasdaq_one_at_a_time(
    restartable_deployment: RestartableDeployment, tmp_path: Path
) -> Iterator[tuple[RestartableDeployment, Deployment]]:
    """The deployment with NASDAQ limited to one run at a time (a registry override), four NASDAQ files registered."""
    override = tmp_path / "markets.yaml"
    override.write_text("markets:\n  - code: NASDAQ\n    max_concurrency: 1\n", encoding="utf-8")
    restartable_deployment.env["MYTRADER_MARKETS_FILE"] = str(override)
    for name in FILES:
        (restartable_deployment.data_root / "NASDAQ" / name).write_text(
            HEADER + GOOD_ROWS.replace("X,", f"{name[0]},"), encoding="utf-8"
        )
    with restartable_deployment.instance() as instance:
        instance.add_dynamic_partitions("nasdaq_files", FILES)
    deployment = restartable_deployment.start()
    yield restartable_deployment, deployment


def materialize(deployment: Deployment, keys: list[str], url: str | None = None) -> dict[str, str]:
    """What the asset page's Materialize button sends for ``keys`` of ``nasdaq_prices``."""
    params = {"partitionNames": keys, "assetSelection": [{"path": ["nasdaq_prices"]}], "fromFailure": False}
    if url is None:
        return deployment.graphql(BACKFILL, {"params": params})["launchPartitionBackfill"]  # type: ignore[return-value]
    response = requests.post(f"{url}/graphql", json={"query": BACKFILL, "variables": {"params": params}}, timeout=30)
    return response.json()["data"]["launchPartitionBackfill"]


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def test_materialize_runs_carry_the_markets_tags_and_pool_and_obey_its_limit(
    nasdaq_one_at_a_time: tuple[RestartableDeployment, Deployment],
) -> None:
    deployment_control, deployment = nasdaq_one_at_a_time
    first = materialize(deployment, FILES[:2])
    second = materialize(deployment, FILES[2:])
    assert first["__typename"] == second["__typename"] == "LaunchBackfillSuccess", (first, second)

    with deployment_control.instance() as instance:

        def finished() -> list[dg.DagsterRun] | None:
            runs = [r for b in (first, second) for r in backfill_runs(instance, b["backfillId"])]
            return runs if len(runs) == 2 and all(r.is_finished for r in runs) else None

        runs = wait_for("both Materialize runs to finish", finished)
        nasdaq = load_markets().get("NASDAQ")
        for run in runs:
            assert run.job_name == ASSET_JOB and run.status == dg.DagsterRunStatus.SUCCESS
            assert {k: run.tags[k] for k in market_run_tags(nasdaq)} == market_run_tags(nasdaq)
            assert run.run_op_concurrency is not None and run.run_op_concurrency.all_pools == {market_pool(nasdaq)}
        # The override's limit (1), not the shipped one (4): set on the pool by the coordinator from the registry.
        assert instance.event_log_storage.get_concurrency_info(market_pool(nasdaq)).slot_count == 1
        records = sorted(instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs])), key=start)
        assert records[0].end_time is not None and records[1].start_time is not None
        assert records[1].start_time >= records[0].end_time  # one NASDAQ run at a time
        assert all(r.dagster_run.tags[MARKET_TAG] == "NASDAQ" for r in records)

    engine = make_engine(deployment.database_url, pool_size=1)
    with engine.connect() as conn:
        loaded = conn.execute(sa.text("SELECT count(DISTINCT source_file) FROM file_imports")).scalar()
    assert loaded == len(FILES)


def start(record: dg.RunRecord) -> float:
    return record.start_time or 0.0


def test_a_launch_naming_files_the_market_lacks_fails_once_without_retries_or_dead_letters(
    nasdaq_one_at_a_time: tuple[RestartableDeployment, Deployment],
) -> None:
    deployment_control, deployment = nasdaq_one_at_a_time
    selector = {**REPOSITORY, "jobName": ASSET_JOB, "assetSelection": [{"path": ["nasdaq_prices"]}]}
    for tags in (partition_range_tags("A.csv", "NOPE.csv"), {"dagster/partition": "NOPE.csv"}):
        metadata = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        # Dagster answers the range with an error (it stores the run, then cannot plan it); the single key it queues.
        requests.post(
            f"{deployment.url}/graphql",
            json={"query": LAUNCH_RUN, "variables": {"params": {"selector": selector, "executionMetadata": metadata}}},
            timeout=30,
        )
    backfill = materialize(deployment, ["NOPE.csv"])  # the button's mutation refuses unknown keys itself
    assert backfill["__typename"] in {"PartitionKeysNotFoundError", "PythonError"}, backfill

    with deployment_control.instance() as instance:

        def refused() -> list[dg.DagsterRun] | None:
            runs = list(instance.get_runs(dg.RunsFilter(job_name=ASSET_JOB)))
            done = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            return runs if len(runs) == 2 and len(done) == 2 else None

        runs = wait_for("both bad launches to fail", refused, seconds=150)  # before run monitoring's 180 s
        for run in runs:
            assert run.tags[REFUSED_TAG].startswith("refused: NASDAQ has no file 'NOPE.csv'")
            assert run.tags[MAX_RETRIES_TAG] == "0"
        time.sleep(40)  # a dead-letter sensor tick (30 s) and a run-retry pass later: still only these two runs
        assert len(instance.get_runs(dg.RunsFilter(job_name=ASSET_JOB))) == 2

    engine = make_engine(deployment.database_url, pool_size=1)
    ensure_schema(engine)
    assert DeadLetterStore(engine).active_items() == []


def test_a_read_only_web_server_beside_the_operators_refuses_launches(
    nasdaq_one_at_a_time: tuple[RestartableDeployment, Deployment], tmp_path: Path
) -> None:
    deployment_control, deployment = nasdaq_one_at_a_time
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    webserver = Path(sys.executable).with_name("dagster-webserver")
    command = [str(webserver), "--read-only", "-m", "mytrader_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)]
    log_path = tmp_path / "read-only.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=deployment_control.base,
            env={**deployment_control.env, "PATH": os.environ.get("PATH", "")},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, process, log_path)
        refused = materialize(deployment, FILES[:1], url=url)
        assert refused["__typename"] == "UnauthorizedError", refused
        runs = requests.post(f"{url}/graphql", json={"query": "{ runsOrError { __typename } }"}, timeout=30).json()
        assert runs["data"]["runsOrError"]["__typename"] == "Runs"  # it still shows everything
        assert materialize(deployment, FILES[:1])["__typename"] == "LaunchBackfillSuccess"  # the operators' one does
    finally:
        _stop(process)
