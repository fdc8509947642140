"""A failed all-markets run lands in the dead-letter queue as one item of market ALL, and its replay loads the rest."""

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.dlq import ALL_MARKETS, DeadLetterStore
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, market_op_name
from mytrader_pipeline.defs.dead_letters import record_run_failure
from mytrader_pipeline.defs.jobs import import_job_name
from mytrader_pipeline.defs.replay import in_process_launcher, replay_item
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline_tests.dagster.test_failure_dlq import BROKEN, GOOD_ROWS, HEADER, REGISTRY, defs_for, store_for

pytestmark = pytest.mark.postgres
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
NASDAQ, NYSE = REGISTRY.get("NASDAQ"), REGISTRY.get("NYSE")


def good(symbol: str) -> str:
    return HEADER + GOOD_ROWS.replace("X,", f"{symbol},")


def run_all_markets(defs: dg.Definitions, instance: dg.DagsterInstance, **op_config: Any) -> dg.ExecuteInProcessResult:
    ops = {market_op_name(m): {"config": op_config} for m in REGISTRY}
    return defs.resolve_job_def(ALL_MARKETS_JOB).execute_in_process(
        instance=instance, run_config={**IN_PROCESS, "ops": ops}, raise_on_error=False
    )


def rows(store: DeadLetterStore, symbol: str) -> int:
    with store.engine.connect() as conn:
        query = "SELECT count(*) FROM historical_market_data WHERE symbol = :s"
        return int(conn.execute(sa.text(query), {"s": symbol}).scalar_one())


def test_a_failed_all_markets_run_is_one_item_naming_each_failed_file_by_path(pg_url: str, data_root: Path) -> None:
    (data_root / "NASDAQ" / "AAPL.csv").write_text(good("AAPL"), encoding="utf-8")
    (data_root / "NASDAQ" / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    (data_root / "NYSE" / "EMPTY.csv").write_bytes(BROKEN["empty_file"] or b"")
    (data_root / "NYSE" / "IBM.csv").write_text(good("IBM"), encoding="utf-8")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        result = run_all_markets(defs, instance)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        item, created = record_run_failure(instance, REGISTRY, store, run)
        assert record_run_failure(instance, REGISTRY, store, run)[1] is False  # once
        # Each failed file's class and reason is on its partition, as a market's own import records it.
        seen = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("nasdaq_prices"), asset_partitions=["BAD.csv"]), 1
        ).records
        assert [r.asset_observation.metadata["error_class"].value for r in seen if r.asset_observation] == [
            "unknown_format"
        ]
    assert created and item is not None
    assert (item.market, item.job_name, item.status) == (ALL_MARKETS, ALL_MARKETS_JOB, "open")
    assert item.partition_keys == ["NASDAQ/BAD.csv", "NYSE/EMPTY.csv"]  # the loaded files are not in it
    assert item.source_files == item.partition_keys
    assert item.failed_files["NASDAQ/BAD.csv"].startswith("unknown_format: ")
    assert item.failed_files["NYSE/EMPTY.csv"].startswith("empty_file: ")
    assert item.retryable is False and item.run_ids == [result.run_id]
    assert rows(store, "AAPL") == 2 and rows(store, "IBM") == 2


def test_replaying_an_all_markets_item_runs_each_market_import_on_its_failed_files(
    pg_url: str, data_root: Path
) -> None:
    (data_root / "NASDAQ" / "AAPL.csv").write_text(good("AAPL"), encoding="utf-8")
    (data_root / "NASDAQ" / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    (data_root / "NYSE" / "EMPTY.csv").write_bytes(BROKEN["empty_file"] or b"")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        result = run_all_markets(defs, instance, batch_size=500)
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        item, _ = record_run_failure(instance, REGISTRY, store, run)
        assert item is not None
        launch = in_process_launcher(defs, instance, REGISTRY, store)

        # Only NASDAQ's file is fixed: the NYSE run fails again and reopens the item, which still names it by path.
        (data_root / "NASDAQ" / "BAD.csv").write_text(good("BAD"), encoding="utf-8")
        reopened = replay_item(instance, REGISTRY, store, item.id, launch)
        replays = [instance.get_run_by_id(r) for r in reopened.replay_run_ids]
        assert sorted(r.job_name for r in replays if r) == [import_job_name(NASDAQ), import_job_name(NYSE)]
        assert reopened.status == "open" and reopened.attempts == 2
        assert sorted(reopened.failed_files) == ["NYSE/EMPTY.csv"]  # NASDAQ/BAD.csv loaded in the replay
        assert rows(store, "BAD") == 2

        (data_root / "NYSE" / "EMPTY.csv").write_text(good("EMPTY"), encoding="utf-8")
        resolved = replay_item(instance, REGISTRY, store, item.id, launch)
        (last,) = resolved.replay_run_ids
        last_run = instance.get_run_by_id(last)
    assert resolved.status == "resolved" and resolved.resolved_by_run_id == last
    assert last_run is not None and last_run.job_name == import_job_name(NYSE)
    assert last_run.run_config == {"ops": {NYSE.asset_name: {"config": {"batch_size": 500}}}}  # the run's options
    assert rows(store, "EMPTY") == 2


def test_the_dead_letter_sensor_watches_the_all_markets_job(pg_url: str, data_root: Path) -> None:
    (data_root / "NASDAQ" / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)
    sensor = defs.resolve_sensor_def("dead_letter_sensor")
    store = store_for(pg_url)

    def tick(instance: dg.DagsterInstance, cursor: str | None) -> Any:
        context = dg.build_sensor_context(
            instance=instance,
            definitions=defs,
            cursor=cursor,
            resources={"warehouse": WarehouseResource(database_url=pg_url)},
        )
        return sensor.evaluate_tick(context)

    with dg.instance_for_test() as instance:
        first = tick(instance, None)
        result = run_all_markets(defs, instance)
        assert not result.success
        tick(instance, first.cursor)
    (item,) = store.list().items
    assert (item.market, item.run_id, item.partition_keys) == (ALL_MARKETS, result.run_id, ["NASDAQ/BAD.csv"])
