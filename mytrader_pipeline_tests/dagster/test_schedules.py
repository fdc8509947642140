"""Schedules: the nightly all-markets import (on, 02:00 UTC) and per-market schedules (off), time zone configurable."""

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, market_op_name
from mytrader_pipeline.defs.orchestration import OrchestrationSettings, build_orchestration_defs
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.schedules import build_market_schedule
from mytrader_pipeline.markets import Market, load_markets
from mytrader_pipeline.settings import Settings

pytestmark = pytest.mark.postgres
REGISTRY = load_markets()
NYSE = REGISTRY.get("NYSE")


@pytest.fixture
def pg_instance(pg_url: str) -> Iterator[dg.DagsterInstance]:
    storage = {"postgres": {"postgres_url": pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)}}
    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        yield instance


def _schedules(settings: OrchestrationSettings) -> dict[str, dg.ScheduleDefinition]:
    return {s.name: s for s in build_orchestration_defs(REGISTRY, settings).schedules or []}


def test_daily_import_runs_all_markets_at_two_utc_and_market_schedules_are_off() -> None:
    schedules = _schedules(OrchestrationSettings())
    daily = schedules["daily_import_schedule"]
    assert (daily.cron_schedule, daily.execution_timezone, daily.job_name) == ("0 2 * * *", "UTC", ALL_MARKETS_JOB)
    assert daily.default_status == dg.DefaultScheduleStatus.RUNNING
    for market in REGISTRY:
        schedule = schedules[f"{market.code.lower()}_import_schedule"]
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
        assert schedule.job_name == f"import_{market.code.lower()}"


def test_time_zone_and_cron_come_from_settings() -> None:
    settings = OrchestrationSettings.from_settings(
        Settings(schedule_timezone="Europe/Istanbul", daily_import_cron="30 1 * * 1-5")
    )
    daily = _schedules(settings)["daily_import_schedule"]
    assert (daily.cron_schedule, daily.execution_timezone) == ("30 1 * * 1-5", "Europe/Istanbul")
    with pytest.raises(ValueError, match="time zone"):
        OrchestrationSettings(schedule_timezone="Mars/Olympus")


def test_daily_tick_requests_one_all_markets_run_with_a_deterministic_key() -> None:
    daily = _schedules(OrchestrationSettings())["daily_import_schedule"]
    when = dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)
    requests = daily.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when)).run_requests or []
    again = daily.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when)).run_requests or []
    assert len(requests) == 1 and requests[0].run_key == again[0].run_key == f"daily_import:{when.isoformat()}"
    config = requests[0].run_config
    assert set(config["ops"]) == {market_op_name(m) for m in REGISTRY}
    assert config["execution"]["config"]["multiprocess"]["max_concurrent"] == len(REGISTRY)


def test_scheduled_all_markets_run_loads_new_or_changed_files_and_counts_the_skipped(
    pg_instance: dg.DagsterInstance, pg_url: str, sample_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "DATA"
    shutil.copytree(sample_root, root)
    defs = build_defs(
        REGISTRY,
        resource_overrides={
            "warehouse": WarehouseResource(database_url=pg_url),
            "data_root": DataRootResource(data_root=str(root)),
        },
    )
    job = defs.resolve_job_def(ALL_MARKETS_JOB)
    in_process = {"execution": {"config": {"in_process": {}}}}
    first = job.execute_in_process(instance=pg_instance, run_config=in_process)
    nyse_files = sorted(p.name for p in (root / "NYSE").glob("*.csv"))
    assert pg_instance.get_dynamic_partitions(files_partitions(NYSE).name or "") == nyse_files
    assert pg_instance.get_materialized_partitions(dg.AssetKey(NYSE.asset_name)) == set(nyse_files)
    meta = _output_metadata(first, NYSE)
    assert meta["run_files_loaded"] == len(nyse_files) and meta["run_files_skipped_unchanged"] == 0
    nyse_checks = {c.check_name for c in first.get_asset_check_evaluations() if c.asset_key.path == [NYSE.asset_name]}
    assert nyse_checks == {"rejected_rate", "ohlc_consistency", "accounting"}  # the asset's checks, judged again

    changed = root / "NYSE" / nyse_files[0]
    changed.write_text("".join(changed.read_text().splitlines(keepends=True)[:-1]))
    second = job.execute_in_process(instance=pg_instance, run_config=in_process)
    meta = _output_metadata(second, NYSE)
    assert meta["run_files_loaded"] == 1 and meta["run_files_skipped_unchanged"] == len(nyse_files) - 1


def _output_metadata(result: dg.ExecuteInProcessResult, market: Market) -> dict[str, object]:
    """The metadata of ``market``'s op output in the all-markets run (the run's counts for that market)."""
    [output] = [e for e in result.events_for_node(market_op_name(market)) if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def test_market_schedule_registers_files_and_requests_bounded_ranges(
    pg_instance: dg.DagsterInstance, sample_root: Path
) -> None:
    schedule = build_market_schedule(NYSE, max_files_per_run=2)
    context = dg.build_schedule_context(
        instance=pg_instance,
        resources={"data_root": DataRootResource(data_root=str(sample_root))},
        scheduled_execution_time=dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC),
    )
    requests = schedule.evaluate_tick(context).run_requests or []
    files = sorted(p.name for p in (sample_root / "NYSE").glob("*.csv"))
    assert pg_instance.get_dynamic_partitions(files_partitions(NYSE).name or "") == files
    assert len(requests) == -(-len(files) // 2)
    assert requests[0].tags["dagster/asset_partition_range_start"] == files[0]
    assert requests[-1].tags["dagster/asset_partition_range_end"] == files[-1]
