"""sla_monitoring_stats plots from day one: a new deployment has today's partition at the sensor's first tick, none
before it, and the days stay the same across reloads of the code location."""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from mytrader_pipeline.defs.monitoring import STATS_ASSET, MonitoringSettings, build_monitoring_defs
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.defs.stats_days import STATS_DAYS, STATS_SENSOR, stats_run_requests
from mytrader_pipeline.markets import load_markets

REGISTRY = load_markets()
STATS_KEY = dg.AssetKey(STATS_ASSET)


def deployment(engine: sa.Engine, now: dt.datetime) -> dg.Definitions:
    """The monitoring definitions as a code location loaded at ``now`` builds them."""
    monitoring = build_monitoring_defs(REGISTRY, MonitoringSettings(), clock=lambda: now)
    resources = dg.Definitions(resources={"warehouse": WarehouseResource(database_url=str(engine.url))})
    return dg.Definitions.merge(monitoring, resources)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[str]:
    """One tick of the stats sensor, carried out as the daemon would; returns the partitions its runs materialized."""
    sensor = defs.resolve_sensor_def(STATS_SENSOR)
    # With the instance's ref, as the daemon builds it: run requests may name the partitions the tick adds.
    context = dg.build_sensor_context(instance=instance, definitions=defs, instance_ref=instance.get_ref())
    result = sensor.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    job = defs.resolve_job_def("sla_monitoring_stats_job")
    done = []
    for run in result.run_requests or []:
        assert run.partition_key is not None
        job.execute_in_process(instance=instance, partition_key=run.partition_key)
        done.append(run.partition_key)
    return done


def test_a_new_deployment_plots_today_at_the_first_tick_and_no_day_before(sqlite_engine: sa.Engine) -> None:
    first = dt.datetime(2026, 12, 1, 6, 30, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        assert tick(deployment(sqlite_engine, first), instance) == ["2026-12-01"]
        assert instance.get_dynamic_partitions(STATS_DAYS) == ["2026-12-01"]
        assert instance.get_materialized_partitions(STATS_KEY) == {"2026-12-01"}

        # A reload of the code location (new definitions) sees the same days: they live in the instance.
        reloaded = deployment(sqlite_engine, first + dt.timedelta(minutes=20))
        partitions_def = reloaded.resolve_assets_def(STATS_ASSET).partitions_def
        assert partitions_def is not None
        assert partitions_def.get_partition_keys(dynamic_partitions_store=instance) == ["2026-12-01"]

        # The next day: its partition is added, yesterday gets its final figures; no gap, nothing before day one.
        next_day = deployment(sqlite_engine, dt.datetime(2026, 12, 2, 0, 10, tzinfo=dt.UTC))
        assert tick(next_day, instance) == ["2026-12-02", "2026-12-01"]
        assert instance.get_dynamic_partitions(STATS_DAYS) == ["2026-12-01", "2026-12-02"]
        assert instance.get_materialized_partitions(STATS_KEY) == {"2026-12-01", "2026-12-02"}


def test_today_is_refreshed_once_an_hour_and_yesterday_finalised_once() -> None:
    at = dt.datetime(2026, 12, 2, 9, 5, tzinfo=dt.UTC)
    new, runs = stats_run_requests(["2026-12-01", "2026-12-02"], at)
    assert new == []
    assert [(r.partition_key, r.run_key) for r in runs] == [
        ("2026-12-02", f"{STATS_DAYS}:2026-12-02:09"),
        ("2026-12-01", f"{STATS_DAYS}:2026-12-01:final"),  # the same run key every tick: one run
    ]
    _, later = stats_run_requests(["2026-12-01", "2026-12-02"], at + dt.timedelta(minutes=40))
    assert later[0].run_key == runs[0].run_key  # same hour: the daemon skips the duplicate run key


def test_an_upgraded_deployment_keeps_the_days_it_had_plotted() -> None:
    at = dt.datetime(2026, 12, 2, 9, 5, tzinfo=dt.UTC)
    new, runs = stats_run_requests([], at, materialized=["2026-11-30", "2026-12-01", "not-a-day"])
    assert new == ["2026-11-30", "2026-12-01", "2026-12-02"]
    assert [r.partition_key for r in runs] == ["2026-12-02", "2026-12-01"]
