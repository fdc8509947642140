"""A run that loads several markets counts in the stats as a job of each market it loaded, from the audit."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from mytrader_pipeline.defs.jobs import partition_range_tags
from mytrader_pipeline.defs.monitoring import stats_for
from mytrader_pipeline.defs.monitoring_sources import import_runs
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.run_coordinator import rule_tags
from mytrader_pipeline_tests.dagster.test_all_markets_dlq import good, run_all_markets
from mytrader_pipeline_tests.dagster.test_failure_dlq import REGISTRY, defs_for, store_for

pytestmark = pytest.mark.postgres
BIST, NASDAQ, NYSE = REGISTRY.get("BIST"), REGISTRY.get("NASDAQ"), REGISTRY.get("NYSE")


def day_of(instance: dg.DagsterInstance, run_id: str) -> dt.date:
    """The UTC day the run was created on: the day whose stats hold it."""
    record = instance.get_run_record_by_id(run_id)
    assert record is not None
    return record.create_timestamp.astimezone(dt.UTC).date()


def test_a_materialize_over_two_markets_counts_as_a_job_of_each(pg_url: str, data_root: Path) -> None:
    defs = defs_for(pg_url, data_root)
    engine = store_for(pg_url).engine
    for market in (BIST, NASDAQ):
        (data_root / market.folder / "AAA.csv").write_text(good("AAA"), encoding="utf-8")
    # What the run coordinator puts on the UI's Materialize over both assets: the strictest market's tag (BIST).
    tags = {**partition_range_tags("AAA.csv", "AAA.csv"), **rule_tags([BIST, NASDAQ])}
    assert tags["market"] == "BIST"
    with dg.instance_for_test() as instance:
        for market in (BIST, NASDAQ):
            register_partitions(instance, market, ["AAA.csv"])
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(BIST.asset_name), dg.AssetKey(NASDAQ.asset_name)],
            tags=tags,
        )
        assert result.success

        day = day_of(instance, result.run_id)
        stats = stats_for(instance, REGISTRY, engine, day, day)
        [info] = import_runs(instance, REGISTRY, since=dt.datetime.combine(day, dt.time(), dt.UTC))

    assert (stats.total_jobs, stats.successful_jobs) == (1, 1)  # one run ...
    assert stats.jobs_by_market == {"BIST": 1, "NASDAQ": 1}  # ... that loaded both markets
    assert stats.records_processed == 4  # two rows per file
    # The run keeps the rules of its tagged market: judged by BIST's SLA, its alerts name BIST.
    assert info.markets == ("BIST", "NASDAQ") and info.market == "BIST"


def test_an_all_markets_run_counts_as_a_job_of_each_market_it_loaded(pg_url: str, data_root: Path) -> None:
    defs = defs_for(pg_url, data_root)
    engine = store_for(pg_url).engine
    (data_root / NASDAQ.folder / "AAPL.csv").write_text(good("AAPL"), encoding="utf-8")
    (data_root / NYSE.folder / "IBM.csv").write_text(good("IBM"), encoding="utf-8")
    with dg.instance_for_test() as instance:
        result = run_all_markets(defs, instance)
        assert result.success

        day = day_of(instance, result.run_id)
        stats = stats_for(instance, REGISTRY, engine, day, day)

    assert stats.total_jobs == 1
    assert stats.jobs_by_market == {"NASDAQ": 1, "NYSE": 1}  # BIST and Crypto had no file: nothing loaded there
    assert stats.records_processed == 4
