"""The sensor that runs the all-markets import on the schedules users add at run time (CLI / REST API).

Dagster schedules are code-defined, so user schedules live in the warehouse (``user_schedules``) and this sensor
evaluates them: when a schedule's cron tick (in its time zone) falls due, it requests a run of the all-markets job
with the schedule's stored request and the run key ``<schedule id>:<tick>``.
"""

import datetime as dt
import json

import dagster as dg

from mytrader_pipeline.core.request_errors import InvalidRequest
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB
from mytrader_pipeline.defs.planning import SCHEDULE_TAG, plan_all_markets
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.schedule_store import ScheduleStore
from mytrader_pipeline.markets import MarketRegistry

SENSOR_NAME = "user_schedules_sensor"


def build_user_schedule_sensor(registry: MarketRegistry) -> dg.SensorDefinition:
    """Launches the all-markets import when a stored schedule's tick falls due (no catch-up of older ticks)."""

    @dg.sensor(
        name=SENSOR_NAME,
        job_name=ALL_MARKETS_JOB,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs the all-markets imports scheduled with `mytrader schedules add` or "
        "POST /api/batch-processing/schedules/all-markets (cron + time zone, stored in user_schedules).",
    )
    def user_schedules_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource, data_root: DataRootResource
    ) -> dg.SensorResult:
        now = dt.datetime.now(dt.UTC)
        last = dt.datetime.fromisoformat(json.loads(context.cursor)["at"]) if context.cursor else None
        requests: list[dg.RunRequest] = []
        for schedule in ScheduleStore(warehouse.engine()).list():
            tick = schedule.latest_due_tick(max(schedule.created_at, last) if last else schedule.created_at, now)
            if tick is None:
                continue
            try:
                plan = plan_all_markets(
                    registry, data_root.path, schedule.import_request, extra_tags={SCHEDULE_TAG: schedule.id}
                )
            except InvalidRequest as exc:
                context.log.warning(f"schedule {schedule.id} due at {tick.isoformat()}: not launched: {exc}")
                continue
            context.log.info(f"schedule {schedule.id} due at {tick.isoformat()}: launching the all-markets import")
            requests.append(
                dg.RunRequest(
                    run_key=f"{schedule.id}:{tick.isoformat()}",
                    run_config=plan.run_config,
                    tags={**plan.tags, "mytrader/scheduled_for": tick.isoformat()},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps({"at": now.isoformat()}))

    return user_schedules_sensor


def build_interface_defs(registry: MarketRegistry) -> dg.Definitions:
    """The interfaces area's definitions: the user-schedule sensor."""
    return dg.Definitions(sensors=[build_user_schedule_sensor(registry)])
