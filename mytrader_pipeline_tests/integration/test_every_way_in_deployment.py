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
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import DeadLetterStore
from mytrader_pipeline.defs.jobs import MARKET_TAG, partition_range_tags
from mytrader_pipeline.defs.run_coordinator import MAX_RETRIES_TAG, REFUSED_TAG
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.dagster.test_failure_dlq import GOOD_ROWS, HEADER
from mytrader_pipeline_tests.integration.conftest import Deployment, RestartableDeployment
from mytrader_pipeline_tests.integration.deployment_client import (
    ASSET_JOB,
    all_finished,
    assert_ran_one_at_a_time_in_market_pool,
    free_port,
    launch_partition_backfill,
    post_graphql,
    stop_process,
    wait_for,
    wait_ready,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WAIT_SECONDS = 300  # bound of every wait (a busy 2-core machine starts runs slowly)
FILES = ["A.csv", "B.csv", "C.csv", "D.csv"]
REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "mytrader_pipeline.definitions"}

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
    """What the asset page's Materialize button sends for ``keys`` of ``nasdaq_prices`` (to the web server at
    ``url``, the deployment's by default)."""
    return launch_partition_backfill(url or deployment.url, "nasdaq_prices", keys)


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
            return all_finished([r for b in (first, second) for r in backfill_runs(instance, b["backfillId"])], 2)

        runs = wait_for("both Materialize runs to finish", finished, WAIT_SECONDS)
        assert all(run.job_name == ASSET_JOB for run in runs)
        # The override's limit (1), not the shipped one (4): set on the pool by the coordinator from the registry.
        records = assert_ran_one_at_a_time_in_market_pool(instance, runs, load_markets().get("NASDAQ"), limit=1)
        assert all(r.dagster_run.tags[MARKET_TAG] == "NASDAQ" for r in records)

    engine = make_engine(deployment.database_url, pool_size=1)
    with engine.connect() as conn:
        loaded = conn.execute(sa.text("SELECT count(DISTINCT source_file) FROM file_imports")).scalar()
    assert loaded == len(FILES)


def test_a_launch_naming_files_the_market_lacks_fails_once_without_retries_or_dead_letters(
    nasdaq_one_at_a_time: tuple[RestartableDeployment, Deployment],
) -> None:
    deployment_control, deployment = nasdaq_one_at_a_time
    selector = {**REPOSITORY, "jobName": ASSET_JOB, "assetSelection": [{"path": ["nasdaq_prices"]}]}
    for tags in (partition_range_tags("A.csv", "NOPE.csv"), {"dagster/partition": "NOPE.csv"}):
        metadata = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        # Dagster answers the range with an error (it stores the run, then cannot plan it); the single key it queues.
        post_graphql(deployment.url, LAUNCH_RUN, {"params": {"selector": selector, "executionMetadata": metadata}})
    backfill = materialize(deployment, ["NOPE.csv"])  # the button's mutation refuses unknown keys itself
    assert backfill["__typename"] in {"PartitionKeysNotFoundError", "PythonError"}, backfill

    with deployment_control.instance() as instance:

        def refused() -> list[dg.DagsterRun] | None:
            runs = list(instance.get_runs(dg.RunsFilter(job_name=ASSET_JOB)))
            done = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            return runs if len(runs) == 2 and len(done) == 2 else None

        runs = wait_for("both bad launches to fail", refused, 150)  # before run monitoring's 180 s
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
        wait_ready(url, process, log_path)
        refused = materialize(deployment, FILES[:1], url=url)
        assert refused["__typename"] == "UnauthorizedError", refused
        runs = post_graphql(url, "{ runsOrError { __typename } }").json()
        assert runs["data"]["runsOrError"]["__typename"] == "Runs"  # it still shows everything
        assert materialize(deployment, FILES[:1])["__typename"] == "LaunchBackfillSuccess"  # the operators' one does
    finally:
        stop_process(process)
