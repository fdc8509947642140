"""``mytrader dlq`` on a running deployment: the same service layer as the REST API, so a replay's run is launched
on the deployment (not in the CLI's process), linked to the item, and resolved by the deployment's sensor.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest

from mytrader_pipeline.cli import main
from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import DeadLetterItem, DeadLetterStore, FailureRecord
from mytrader_pipeline.service.gateway import DagsterGateway
from mytrader_pipeline_tests.integration.conftest import Deployment, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
WAIT_SECONDS = 240


@pytest.fixture
def store(dagster_deployment: Deployment) -> DeadLetterStore:
    """The dead-letter queue in the deployment's warehouse."""
    engine = make_engine(dagster_deployment.database_url)
    ensure_schema(engine)
    return DeadLetterStore(engine)


@pytest.fixture
def dead_letter(store: DeadLetterStore) -> Callable[[str, str], DeadLetterItem]:
    """Records an open item for one failed file of a market, as the deployment's dead-letter sensor would."""

    def record(market: str, file_name: str) -> DeadLetterItem:
        run_id = str(uuid.uuid4())
        item, created = store.record(
            FailureRecord(
                run_id=run_id,
                job_name=f"import_{market.lower()}",
                market=market,
                partition_keys=[file_name],
                source_files=[f"{market}/{file_name}"],
                failed_files={file_name: "database_connection: server closed the connection"},
                error_class="database_connection",
                message=f"1 of 1 {market} file(s) failed",
                stack_trace="Traceback ...",
                attempts=4,
                retryable=True,
                failed_at=dt.datetime.now(dt.UTC),
                run_ids=[run_id],
                run_config={},
                run_tags={"market": market},
            )
        )
        assert created
        return item

    return record


@pytest.fixture
def cli_env(dagster_deployment: Deployment) -> dict[str, str]:
    """The environment of an operator's shell on the deployment's machine (no local DAGSTER_HOME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_HOME"))}
    return env | {
        "MYTRADER_DATA_ROOT": str(dagster_deployment.data_root),
        "MYTRADER_DATABASE_URL": dagster_deployment.database_url,
        "MYTRADER_DAGSTER_URL": dagster_deployment.url,
    }


def test_replay_launches_the_run_on_the_deployment_links_it_and_the_deployment_resolves_the_item(
    dagster_deployment: Deployment,
    store: DeadLetterStore,
    dead_letter: Callable[[str, str], DeadLetterItem],
    cli_env: dict[str, str],
) -> None:
    file_name = sorted(p.name for p in (dagster_deployment.data_root / "NYSE").glob("*.csv"))[-1]
    item = dead_letter("NYSE", file_name)
    command = [sys.executable, "-m", "mytrader_pipeline.cli", "dlq", "replay", str(item.id), "--wait", "--json"]
    result = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=WAIT_SECONDS + 60)
    assert result.returncode == 0, result.stderr
    replayed = json.loads(result.stdout)
    (run_id,) = replayed["replay_run_ids"]
    (job,) = replayed["replayJobs"]
    assert replayed["id"] == item.id and job["jobId"] == run_id and job["state"] == "Succeeded"
    assert "\r" not in result.stderr and "Succeeded 100%" in result.stderr  # not a terminal: plain lines

    run = DagsterGateway(dagster_deployment.url).run(run_id)  # the deployment has the run: it launched it
    assert run.status == "SUCCESS" and run.job_name == "import_nyse"
    assert run.tags["mytrader/dlq_item"] == str(item.id)
    assert run.tags["dagster/asset_partition_range_start"] == run.tags["dagster/asset_partition_range_end"] == file_name

    deadline = time.monotonic() + WAIT_SECONDS  # dead_letter_resolution_sensor ticks every 30 s
    while store.get(item.id).status != "resolved" and time.monotonic() < deadline:
        time.sleep(1)
    resolved = store.get(item.id)
    assert resolved.status == "resolved" and resolved.resolved_by_run_id == run_id

    again = subprocess.run(command[:-2], env=cli_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 5 and "resolved: only open items can be replayed" in again.stderr


def test_list_show_and_discard_go_through_the_operations_layer_with_the_shared_exit_codes(
    dagster_deployment: Deployment,
    store: DeadLetterStore,
    dead_letter: Callable[[str, str], DeadLetterItem],
    capsys: pytest.CaptureFixture[str],
) -> None:
    item = dead_letter("NASDAQ", "GONE.csv")
    db = ["--database-url", dagster_deployment.database_url]
    capsys.readouterr()
    assert main(["dlq", "list", "--market", "NASDAQ", "--status", "open", "--json", *db]) == 0
    assert item.id in [i["id"] for i in json.loads(capsys.readouterr().out)["items"]]
    assert main(["dlq", "show", str(item.id), "--json", *db]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "open" and shown["stack_trace"] == "Traceback ..."

    unreachable = f"http://127.0.0.1:{free_port()}"
    assert main(["dlq", "replay", str(item.id), "--url", unreachable, *db]) == 3
    assert "unreachable" in capsys.readouterr().err
    assert store.get(item.id).status == "open" and store.get(item.id).replay_run_ids == []  # nothing half-done

    assert main(["dlq", "show", "999999", *db]) == 4
    assert main(["dlq", "discard", str(item.id), "--reason", "symbol delisted", "--by", "ops", "--json", *db]) == 0
    discarded = json.loads(capsys.readouterr().out)
    assert (discarded["status"], discarded["discarded_by"]) == ("discarded", "ops")
    closed = store.get(item.id)
    assert (closed.status, closed.discarded_by, closed.discard_reason) == ("discarded", "ops", "symbol delisted")
    assert main(["dlq", "replay", str(item.id), "--url", dagster_deployment.url, *db]) == 5
