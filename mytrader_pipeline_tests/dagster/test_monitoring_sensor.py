"""The SLA monitor sensor on a PostgreSQL-backed instance with small SLA targets: alerts once, resolves on recovery."""

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.sensor_definition import SensorExecutionData

from mytrader_pipeline.core.alerts import Alert, AlertStore
from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.defs.monitoring import MonitoringSettings, build_sla_monitor_sensor
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.markets import MarketRegistry, load_markets

pytestmark = pytest.mark.postgres
SHIPPED = load_markets()


def registry_of(code: str, sla_minutes: int = 1) -> MarketRegistry:
    return MarketRegistry((dataclasses.replace(SHIPPED.get(code), sla_minutes=sla_minutes),))


def cron_at(moment: dt.datetime) -> str:
    return f"{moment.minute} {moment.hour} * * *"


@pytest.fixture
def pg_instance(pg_url: str) -> Iterator[dg.DagsterInstance]:
    storage = {"postgres": {"postgres_url": pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)}}
    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        yield instance


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(pg_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


def durations(engine: sa.Engine) -> list[Alert]:
    return [a for a in AlertStore(engine).list() if a.alert_type == "run_duration"]


def evaluate(
    instance: dg.DagsterInstance, pg_url: str, registry: MarketRegistry, cron: str, now: dt.datetime, cursor: str | None
) -> SensorExecutionData:
    """One tick of a freshly built sensor (as after a restart) at ``now``."""
    sensor = build_sla_monitor_sensor(registry, MonitoringSettings(schedule_cron=cron), clock=lambda: now)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"warehouse": WarehouseResource(database_url=pg_url)}
    )
    return sensor.evaluate_tick(context)


def observations(data: SensorExecutionData) -> list[dg.AssetObservation]:
    """The tick's completeness observations (its other asset events are the sla checks, tested on their own)."""
    return [e for e in data.asset_events if isinstance(e, dg.AssetObservation)]


def test_a_slow_run_alerts_once_while_running_and_resolves_when_it_ends(
    pg_instance: dg.DagsterInstance, pg_url: str, engine: sa.Engine
) -> None:
    gate = threading.Event()

    @dg.op
    def wait_for_gate() -> None:
        gate.wait(60)

    @dg.job(name="import_crypto")  # the CRYPTO import job's name: the monitor judges it by CRYPTO's SLA
    def slow_import() -> None:
        wait_for_gate()

    worker = threading.Thread(target=lambda: slow_import.execute_in_process(instance=pg_instance))
    worker.start()
    try:
        while not pg_instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            gate.wait(0.05)
        [record] = pg_instance.get_run_records(dg.RunsFilter(job_name="import_crypto"))
        started = dt.datetime.fromtimestamp(record.start_time or 0, dt.UTC)
        registry = registry_of("CRYPTO", sla_minutes=1)
        cron = cron_at(started)  # the market's deadline also passes: that alert is the other test's subject
        later = started + dt.timedelta(minutes=2)

        first = evaluate(pg_instance, pg_url, registry, cron, later, None)
        again = evaluate(pg_instance, pg_url, registry, cron, later + dt.timedelta(minutes=5), first.cursor)

        [alert] = durations(engine)
        assert (alert.alert_type, alert.run_id, alert.market, alert.active) == (
            "run_duration",
            record.dagster_run.run_id,
            "CRYPTO",
            True,
        )
        assert "still running" in alert.message and alert.threshold == 1.0
        assert alert.last_seen > alert.first_seen  # seen again, not raised again
    finally:
        gate.set()
        worker.join()

    evaluate(pg_instance, pg_url, registry, cron, later + dt.timedelta(minutes=10), again.cursor)
    [alert] = durations(engine)  # the run ended (the test's clock runs ahead of its real few seconds): resolved
    assert not alert.active and alert.resolved_at == later + dt.timedelta(minutes=10)


def test_a_market_with_no_run_alerts_once_and_a_load_resolves_it(
    pg_instance: dg.DagsterInstance, pg_url: str, engine: sa.Engine
) -> None:
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    registry = registry_of("BIST", sla_minutes=1)
    cron = cron_at(now - dt.timedelta(minutes=10))  # scheduled 10 min ago, deadline 9 min ago, nothing ran

    first = evaluate(pg_instance, pg_url, registry, cron, now, None)
    second = evaluate(pg_instance, pg_url, registry, cron, now + dt.timedelta(minutes=5), first.cursor)

    [alert] = AlertStore(engine).list()
    assert (alert.alert_type, alert.market, alert.severity, alert.active) == ("market_deadline", "BIST", "high", True)
    assert "no file loaded since" in alert.message
    [observation] = observations(first)
    assert observation.metadata["complete_since_schedule"].value is False
    assert second.asset_events == []  # unchanged completeness is not observed again

    bist = registry.get("BIST")
    pg_instance.add_dynamic_partitions(files_partitions(bist).name or "", ["A.csv"])
    pg_instance.report_runless_asset_event(dg.AssetMaterialization(bist.asset_name, partition="A.csv"))
    third = evaluate(pg_instance, pg_url, registry, cron, now + dt.timedelta(minutes=10), second.cursor)

    [alert] = AlertStore(engine).list()
    assert not alert.active and alert.resolution == "breach ended"
    assert [e.metadata["complete_since_schedule"].value for e in observations(third)] == [True]
    evaluate(pg_instance, pg_url, registry, cron, now + dt.timedelta(minutes=15), third.cursor)
    assert len(AlertStore(engine).list()) == 1
