"""The sla asset check tells what the SLA monitor holds: failing during a market's breach, passing after it."""

import dataclasses
import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest

from mytrader_pipeline.core.alerts import AlertStore
from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.sla import AlertType, Breach, Severity
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.monitoring import MonitoringSettings, build_sla_monitor_sensor
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline.defs.sla_check import build_sla_check, sla_check_key
from mytrader_pipeline.markets import MarketRegistry, load_markets
from mytrader_pipeline.settings import Settings

pytestmark = pytest.mark.postgres
BIST = dataclasses.replace(load_markets().get("BIST"), sla_minutes=1)
REGISTRY = MarketRegistry((BIST,))
KEY = sla_check_key(BIST)


@pytest.fixture
def pg_instance(pg_url: str) -> Iterator[dg.DagsterInstance]:
    storage = {"postgres": {"postgres_url": pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)}}
    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        yield instance


def tick(
    instance: dg.DagsterInstance, pg_url: str, cron: str, now: dt.datetime, cursor: str | None
) -> tuple[str | None, list[dg.AssetCheckEvaluation]]:
    """One tick of the SLA monitor at ``now``, its asset events recorded as the sensor daemon records them.

    Returns the new cursor and the check evaluations the tick reported.
    """
    sensor = build_sla_monitor_sensor(REGISTRY, MonitoringSettings(schedule_cron=cron), clock=lambda: now)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"warehouse": WarehouseResource(database_url=pg_url)}
    )
    data = sensor.evaluate_tick(context)
    for event in data.asset_events:
        instance.report_runless_asset_event(event)
    return data.cursor, [e for e in data.asset_events if isinstance(e, dg.AssetCheckEvaluation)]


def latest_evaluation(instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    """The latest evaluation of BIST's sla check recorded on the instance: what the UI shows."""
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([KEY])[KEY]
    assert record.event is not None and record.event.dagster_event is not None
    evaluation = record.event.dagster_event.event_specific_data
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    return evaluation


def execute_check(instance: dg.DagsterInstance, pg_url: str) -> dg.AssetCheckEvaluation:
    """Execute the check on demand (the UI's Execute), as its own run."""
    result = dg.materialize(
        [build_sla_check(BIST)],
        resources={"warehouse": WarehouseResource(database_url=pg_url)},
        instance=instance,
        selection=dg.AssetSelection.checks(KEY),
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_the_sla_check_fails_during_a_breach_and_passes_after_it(pg_instance: dg.DagsterInstance, pg_url: str) -> None:
    engine = make_engine(pg_url)
    ensure_schema(engine)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    cron = f"{(now - dt.timedelta(minutes=10)).minute} {(now - dt.timedelta(minutes=10)).hour} * * *"

    cursor, reported = tick(pg_instance, pg_url, cron, now, None)  # scheduled 10 min ago, 1 min SLA, nothing loaded
    [alert] = AlertStore(engine).list(active_only=True)
    [failing] = reported
    assert latest_evaluation(pg_instance) == failing
    assert (failing.check_name, failing.passed, failing.severity) == ("sla", False, dg.AssetCheckSeverity.ERROR)
    assert failing.metadata["reason"].value == alert.message and "no file loaded since" in alert.message
    assert failing.metadata["since"].value == alert.first_seen.timestamp()
    on_demand = execute_check(pg_instance, pg_url)
    assert (on_demand.passed, on_demand.metadata["reason"].value) == (False, alert.message)

    cursor, reported = tick(pg_instance, pg_url, cron, now + dt.timedelta(minutes=5), cursor)
    assert reported == []  # the same breach: reported once, not every tick

    pg_instance.add_dynamic_partitions(files_partitions(BIST).name or "", ["A.csv"])
    pg_instance.report_runless_asset_event(dg.AssetMaterialization(BIST.asset_name, partition="A.csv"))
    _, reported = tick(pg_instance, pg_url, cron, now + dt.timedelta(minutes=10), cursor)
    assert AlertStore(engine).list(active_only=True) == []
    assert [e.passed for e in reported] == [True]
    assert latest_evaluation(pg_instance).passed is True
    assert execute_check(pg_instance, pg_url).passed is True
    engine.dispose()


def test_a_medium_alert_fails_the_check_as_a_warning(pg_instance: dg.DagsterInstance, pg_url: str) -> None:
    engine = make_engine(pg_url)
    ensure_schema(engine)
    now = dt.datetime.now(dt.UTC)
    store = AlertStore(engine)
    message = "BIST processed 120 records/s in the last 24 h (< 500)"
    rate = Breach(
        AlertType.PROCESSING_RATE, Severity.MEDIUM, "processing_rate:BIST", message, 120.0, 500.0, "records/s"
    )
    store.sync([dataclasses.replace(rate, market="BIST", once=False)], now)
    evaluation = execute_check(pg_instance, pg_url)
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert evaluation.metadata["alert_type"].value == "processing_rate"
    engine.dispose()


def test_the_freshness_deadlines_are_the_sla_monitors_deadlines() -> None:
    """One source: each market's freshness deadline falls exactly at the SLA monitor's deadline (tick + SLA)."""
    settings = MonitoringSettings.from_settings(Settings())
    schedule = settings.schedule
    with dg.instance_for_test():  # loading definitions reads the current instance's state (not a closed one's)
        graph = build_defs().resolve_asset_graph()
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
    for market in load_markets():
        policy = graph.get(dg.AssetKey(market.asset_name)).freshness_policy
        deadline = schedule.last_tick(now) + dt.timedelta(minutes=market.sla_minutes)  # what the monitor judges
        minute, hour = (int(f) for f in policy.deadline_cron.split()[:2])  # type: ignore[union-attr]
        assert (deadline.hour, deadline.minute) == (hour, minute), market.code
        assert policy.lower_bound_delta == dt.timedelta(minutes=market.sla_minutes)  # type: ignore[union-attr]
    assert sla_check_key(BIST) in graph.asset_check_keys
