"""Health and stats over a real Dagster instance: each health state with its reason; stats of real runs; the asset."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._daemon.types import DaemonHeartbeat

from mytrader_pipeline.core.alerts import AlertStore
from mytrader_pipeline.core.health import Status
from mytrader_pipeline.core.sla import AlertType, Breach, Severity
from mytrader_pipeline.defs.monitoring import MonitoringSettings, build_monitoring_defs, build_stats_asset, stats_for
from mytrader_pipeline.defs.monitoring_sources import collect_health
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.markets import load_markets

REGISTRY = load_markets()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def heartbeat(instance: dg.DagsterInstance, at: dt.datetime) -> None:
    for daemon in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(at.timestamp(), daemon, "test", []))


def alerts(engine: sa.Engine, *severities: Severity) -> None:
    """The monitor's evaluation finding breaches of these severities (and no others)."""
    breaches = [Breach(AlertType.ERROR_RATE, s, f"t:{s}", "failing", 0.5, 0.1, "ratio", once=False) for s in severities]
    AlertStore(engine).sync(breaches, dt.datetime.now(dt.UTC))


def test_each_health_state_is_reached_with_its_reason(
    instance: dg.DagsterInstance, sqlite_engine: sa.Engine, data_root: Path
) -> None:
    defs = build_monitoring_defs(REGISTRY, MonitoringSettings())

    def check() -> tuple[Status, list[str]]:
        report = collect_health(instance, sqlite_engine, data_root, REGISTRY, defs)
        return report.status, report.reasons

    assert check()[0] == Status.UNHEALTHY
    assert check()[1][0].startswith("daemon: no recent heartbeat from ")

    heartbeat(instance, dt.datetime.now(dt.UTC))
    assert check() == (Status.HEALTHY, [])

    alerts(sqlite_engine, Severity.HIGH)
    assert check() == (Status.DEGRADED, ["sla_alerts: active SLA alert(s): 1 high"])

    alerts(sqlite_engine, Severity.HIGH, Severity.CRITICAL)
    assert check() == (Status.UNHEALTHY, ["sla_alerts: active SLA alert(s): 1 critical, 1 high"])

    alerts(sqlite_engine)  # recovered
    assert check() == (Status.HEALTHY, [])

    heartbeat(instance, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))  # the daemon died an hour ago
    assert "daemon: no recent heartbeat from" in " ".join(check()[1])


def test_stats_of_real_runs_and_the_stats_asset(instance: dg.DagsterInstance, sqlite_engine: sa.Engine) -> None:
    @dg.op
    def work() -> None:
        pass

    @dg.op
    def crash() -> None:
        raise RuntimeError("boom")

    @dg.job(name="import_bist")
    def ok_job() -> None:
        work()

    @dg.job(name="import_nyse")
    def bad_job() -> None:
        crash()

    ok_job.execute_in_process(instance=instance)
    bad_job.execute_in_process(instance=instance, raise_on_error=False)
    today = dt.datetime.now(dt.UTC).date()

    stats = stats_for(instance, REGISTRY, sqlite_engine, today, today)
    assert (stats.total_jobs, stats.successful_jobs, stats.failed_jobs) == (2, 1, 1)
    assert stats.success_rate == 0.5 and stats.jobs_by_market == {"BIST": 1, "NYSE": 1}
    assert stats.errors_by_type == {"run_failure": 1}
    assert stats.sla_compliance_rate == 1.0

    asset = build_stats_asset(REGISTRY, MonitoringSettings())
    url = str(sqlite_engine.url)
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    instance.add_dynamic_partitions("sla_monitoring_days", [yesterday])
    result = dg.materialize(
        [asset],
        instance=instance,
        partition_key=yesterday,
        resources={"warehouse": WarehouseResource(database_url=url)},
    )
    [materialization] = result.asset_materializations_for_node(asset.node_def.name)
    assert materialization.metadata["total_jobs"].value == 0
    assert {"success_rate", "jobs_by_market", "errors_by_type", "recent_breaches"} - set(materialization.metadata) == {
        "success_rate"  # no finished job: no rate to plot
    }
