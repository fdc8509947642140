"""User schedules: stored in the warehouse, and run by the sensor when their cron tick (in their time zone) is due."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import user_schedules
from mytrader_pipeline.core.request_errors import InvalidRequest, NotFound
from mytrader_pipeline.core.requests import AllMarketsImportRequest
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.schedule_store import ScheduleStore
from mytrader_pipeline.defs.user_schedules import build_user_schedule_sensor
from mytrader_pipeline.markets import load_markets

pytestmark = pytest.mark.postgres


def _evaluate(pg_url: str, root: Path, cursor: str | None) -> dg.SensorResult:
    sensor = build_user_schedule_sensor(load_markets())
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={
                "warehouse": WarehouseResource(database_url=pg_url),
                "data_root": DataRootResource(data_root=str(root)),
            },
        )
        return sensor.evaluate_tick(context)


def test_a_due_schedule_launches_the_all_markets_import_once(
    pg_url: str, pg_engine: sa.Engine, sample_root: Path
) -> None:
    store = ScheduleStore(pg_engine)
    schedule = store.add("0 2 * * *", "Europe/Istanbul", AllMarketsImportRequest(global_max_concurrency=4))
    with pg_engine.begin() as conn:
        conn.execute(
            sa.update(user_schedules)
            .where(user_schedules.c.id == schedule.id)
            .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
        )
    first = _evaluate(pg_url, sample_root, None)
    (request,) = first.run_requests or []
    tick = store.get(schedule.id).latest_due_tick(
        dt.datetime.now(dt.UTC) - dt.timedelta(days=2), dt.datetime.now(dt.UTC)
    )
    assert tick is not None and tick.hour == 2 and tick.utcoffset() == dt.timedelta(hours=3)
    assert request.run_key == f"{schedule.id}:{tick.isoformat()}"
    assert request.job_name in (None, "import_all_markets")
    assert request.tags["mytrader/schedule_id"] == schedule.id
    assert request.run_config["resources"]["data_root"]["config"]["data_root"] == str(sample_root.resolve())
    again = _evaluate(pg_url, sample_root, first.cursor)
    assert not again.run_requests  # the tick was handled; the next one is tomorrow


def test_a_new_schedule_waits_for_its_first_tick(pg_url: str, pg_engine: sa.Engine, sample_root: Path) -> None:
    ScheduleStore(pg_engine).add("0 2 * * *", "UTC", AllMarketsImportRequest())
    assert not _evaluate(pg_url, sample_root, None).run_requests


def test_schedules_are_validated_and_removed(pg_engine: sa.Engine) -> None:
    store = ScheduleStore(pg_engine)
    with pytest.raises(InvalidRequest, match="cronExpression"):
        store.add("61 2 * * *", "UTC", AllMarketsImportRequest())
    with pytest.raises(InvalidRequest, match="timeZone"):
        store.add("0 2 * * *", "Mars/Olympus", AllMarketsImportRequest())
    schedule = store.add("30 1 * * 1-5", "America/New_York", AllMarketsImportRequest(force=True))
    assert [s.id for s in store.list()] == [schedule.id]
    assert store.get(schedule.id).import_request.force is True
    store.remove(schedule.id)
    with pytest.raises(NotFound):
        store.remove(schedule.id)
