"""On a running deployment, the UI's *Re-execute* (GraphQL ``launchRunReexecution``) follows the dead-letter item:
re-executed while the file is still bad, the same item counts a second attempt; re-executed once the file is fixed,
the item is resolved by the deployment's own sensors, and health no longer counts it."""

from __future__ import annotations

import pytest

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import DeadLetterItem, DeadLetterStore
from mytrader_pipeline.defs.jobs import partition_range_tags
from mytrader_pipeline.service.gateway import DagsterGateway
from mytrader_pipeline_tests.dagster.test_failure_dlq import GOOD_ROWS, HEADER
from mytrader_pipeline_tests.integration.conftest import Deployment
from mytrader_pipeline_tests.integration.deployment_client import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
WAIT_SECONDS = 240  # runs start through the queue; the dead-letter sensors tick every 30 s


def _finished(gateway: DagsterGateway, run_id: str) -> str:
    def status() -> str | None:
        found = gateway.run(run_id).status
        return found if found in {"SUCCESS", "FAILURE"} else None

    return wait_for(f"end of run {run_id}", status, WAIT_SECONDS)


def _items_of(store: DeadLetterStore, key: str) -> list[DeadLetterItem]:
    return [i for i in store.list(market="NASDAQ", page_size=1000).items if key in i.partition_keys]


def test_ui_reexecution_updates_the_files_item_then_resolves_it_once_the_file_is_fixed(
    dagster_deployment: Deployment,
) -> None:
    engine = make_engine(dagster_deployment.database_url)
    ensure_schema(engine)
    store = DeadLetterStore(engine)
    gateway = DagsterGateway(dagster_deployment.url)
    key = "REEXEC.csv"
    path = dagster_deployment.data_root / "NASDAQ" / key
    path.write_text("foo,bar,baz\n1,2,3\n", encoding="utf-8")  # unknown_format: not retryable
    gateway.add_partition(gateway.repository_of_job("import_nasdaq"), "nasdaq_files", key)

    first = gateway.launch("import_nasdaq", {}, partition_range_tags(key, key))
    assert _finished(gateway, first) == "FAILURE"
    item = wait_for("dead-letter item", lambda: store.find_by_run(first), WAIT_SECONDS)
    assert (item.status, item.attempts) == ("open", 1)

    second = gateway.reexecute(first)  # what the UI's "Re-execute from failure" calls
    assert _finished(gateway, second) == "FAILURE"
    again = wait_for("second attempt", lambda: i if (i := store.get(item.id)).attempts == 2 else None, WAIT_SECONDS)
    assert again.run_ids == [first, second] and again.status == "open"
    assert [i.id for i in _items_of(store, key)] == [item.id]  # no second item for the same file

    path.write_text(HEADER + GOOD_ROWS.replace("X,", "REEXEC,"), encoding="utf-8")  # fixed
    third = gateway.reexecute(second)
    assert _finished(gateway, third) == "SUCCESS"
    resolved = wait_for(
        "resolution", lambda: i if (i := store.get(item.id)).status == "resolved" else None, WAIT_SECONDS
    )
    assert resolved.resolved_by_run_id == third and resolved.attempts == 2
    assert [i.id for i in _items_of(store, key)] == [item.id]
    assert not [i for i in store.active_items() if key in i.partition_keys]  # health counts it no more
