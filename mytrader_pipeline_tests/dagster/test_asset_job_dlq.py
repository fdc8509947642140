"""A failed run of the UI's ``__ASSET_JOB`` (Materialize, a backfill) is dead-lettered per market and file, like the
markets' own ``import_<code>`` runs, whether it spans one market's asset or several."""

from pathlib import Path

import dagster as dg
import pytest

from mytrader_pipeline.core.dlq import DeadLetterStore
from mytrader_pipeline.defs.dead_letters import record_run_failure, record_run_failures, resolve_loaded_items
from mytrader_pipeline.defs.jobs import partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline_tests.dagster.test_failure_dlq import GOOD_ROWS, HEADER, REGISTRY, defs_for, store_for

BIST, NASDAQ = REGISTRY.get("BIST"), REGISTRY.get("NASDAQ")


def write_good(root: Path, folder: str, key: str) -> None:
    symbol = key.removesuffix(".csv")
    (root / folder / key).write_text(HEADER + GOOD_ROWS.replace("X,", f"{symbol},"), encoding="utf-8")


def materialize(
    defs: dg.Definitions, instance: dg.DagsterInstance, markets: list[str], first: str, last: str
) -> dg.DagsterRun:
    """What the UI's Materialize (or a single-run backfill) launches: ``__ASSET_JOB`` over the markets' assets."""
    chosen = [REGISTRY.get(code) for code in markets]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(m.asset_name) for m in chosen],
        tags=partition_range_tags(first, last),
        raise_on_error=False,
    )
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.job_name == "__ASSET_JOB"
    return run


@pytest.fixture
def store(pg_url: str) -> DeadLetterStore:
    return store_for(pg_url)


def test_a_run_over_two_markets_with_a_missing_file_in_each_leaves_one_item_per_market(
    pg_url: str, data_root: Path, store: DeadLetterStore
) -> None:
    defs = defs_for(pg_url, data_root)
    for market in (BIST, NASDAQ):
        write_good(data_root, market.folder, "AAA.csv")  # AAA loads, GONE is a partition without its file
    with dg.instance_for_test() as instance:
        for market in (BIST, NASDAQ):
            register_partitions(instance, market, ["AAA.csv", "GONE.csv"])
        run = materialize(defs, instance, ["BIST", "NASDAQ"], "AAA.csv", "GONE.csv")
        assert run.status == dg.DagsterRunStatus.FAILURE

        recorded = record_run_failures(instance, REGISTRY, store, run)
        assert [created for _, created in recorded] == [True, True]
        assert [created for _, created in record_run_failures(instance, REGISTRY, store, run)] == [False, False]

        items = {item.market: item for item in store.list(status="open").items}
        assert set(items) == {"BIST", "NASDAQ"}
        for market in (BIST, NASDAQ):
            item = items[market.code]
            assert item.run_id == run.run_id and item.job_name == "__ASSET_JOB"
            assert item.partition_keys == ["GONE.csv"]  # AAA.csv loaded: only the missing file is dead-lettered
            assert item.source_files == [f"{market.folder}/GONE.csv"]
            assert item.error_class == "file_missing" and item.retryable is False
            assert item.failed_files["GONE.csv"].startswith("file_missing: ")
            assert market.code in item.message  # the market's own step's failure, not the other market's

        # The files appear; a Materialize over both markets loads them and resolves both items.
        for market in (BIST, NASDAQ):
            write_good(data_root, market.folder, "GONE.csv")
        again = materialize(defs, instance, ["BIST", "NASDAQ"], "AAA.csv", "GONE.csv")
        assert again.status == dg.DagsterRunStatus.SUCCESS
        resolved = resolve_loaded_items(REGISTRY, store, again)
    assert {item.market for item in resolved} == {"BIST", "NASDAQ"}
    assert store.list(status="open").total == 0


def test_a_run_of_one_market_s_asset_is_dead_lettered_as_its_import_would_be(
    pg_url: str, data_root: Path, store: DeadLetterStore
) -> None:
    defs = defs_for(pg_url, data_root)
    write_good(data_root, NASDAQ.folder, "AAA.csv")
    with dg.instance_for_test() as instance:
        register_partitions(instance, NASDAQ, ["AAA.csv", "GONE.csv"])
        run = materialize(defs, instance, ["NASDAQ"], "AAA.csv", "GONE.csv")
        item, created = record_run_failure(instance, REGISTRY, store, run)
    assert created and item is not None
    assert (item.market, item.partition_keys, item.error_class) == ("NASDAQ", ["GONE.csv"], "file_missing")
