"""Sensors that run the all-markets import on the schedules users add at run time (CLI / REST API).

Dagster schedules are code-defined, so user schedules live in the warehouse (``user_schedules``) and one sensor per
market evaluates them: when a schedule's cron tick falls due, each market's sensor requests that market's run of the
all-markets job ``<schedule id>-<tick>``, with a run key made of the schedule id, the tick and the market.
"""

import datetime as dt
import json

import dagster as dg

from mytrader_pipeline.defs.jobs import import_job_name
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import Market, MarketRegistry
from mytrader_pipeline.ops.errors import InvalidRequest
from mytrader_pipeline.ops.planning import SCHEDULE_TAG, plan_all_markets
from mytrader_pipeline.ops.schedules import ScheduleStore


def tick_job_id(schedule_id: str, tick: dt.datetime) -> str:
    """The all-markets job id of one tick of a schedule (deterministic: every market's sensor finds the same)."""
    return f"{schedule_id}-{tick.astimezone(dt.UTC):%Y%m%dT%H%MZ}"


def user_schedule_sensor_name(market: Market) -> str:
    """The sensor running ``market``'s part of user-scheduled all-markets imports."""
    return f"{market.code.lower()}_user_schedules_sensor"


def build_user_schedule_sensor(registry: MarketRegistry, market: Market) -> dg.SensorDefinition:
    """Launches ``market``'s run of the all-markets import when a stored schedule's tick falls due."""

    @dg.sensor(
        name=user_schedule_sensor_name(market),
        job_name=import_job_name(market),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Runs {market.code}'s part of the all-markets imports scheduled with `mytrader schedules add` "
        "or POST /api/batch-processing/schedules/all-markets (cron + time zone, stored in user_schedules).",
    )
    def _user_schedules_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource, data_root: DataRootResource
    ) -> dg.SensorResult:
        now = dt.datetime.now(dt.UTC)
        last = dt.datetime.fromisoformat(json.loads(context.cursor)["at"]) if context.cursor else None
        partitions_def = files_partitions(market).name
        assert partitions_def is not None
        requests: list[dg.RunRequest] = []
        new_keys: list[str] = []
        for schedule in ScheduleStore(warehouse.engine()).list():
            tick = schedule.latest_due_tick(max(schedule.created_at, last) if last else schedule.created_at, now)
            if tick is None:
                continue
            known = [*context.instance.get_dynamic_partitions(partitions_def), *new_keys]
            job_id = tick_job_id(schedule.id, tick)
            try:
                plans = plan_all_markets(
                    registry,
                    data_root.path,
                    schedule.import_request,
                    {market.code: known},
                    job_id,
                    extra_tags={SCHEDULE_TAG: schedule.id},
                    only=[market.code],
                )
            except InvalidRequest as exc:
                context.log.warning(f"{job_id}: no {market.code} run: {exc}")
                continue
            for plan in plans:
                context.log.info(f"{job_id}: {market.code} run over {len(plan.partition_keys)} file(s)")
                new_keys.extend(plan.new_keys)
                requests.append(
                    dg.RunRequest(
                        run_key=f"{schedule.id}:{tick.isoformat()}:{market.code}",
                        run_config=plan.run_config,
                        tags=plan.tags,
                    )
                )
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=(
                [dg.AddDynamicPartitionsRequest(partitions_def_name=partitions_def, partition_keys=new_keys)]
                if new_keys
                else []
            ),
            cursor=json.dumps({"at": now.isoformat()}),
        )

    return _user_schedules_sensor


def build_interface_defs(registry: MarketRegistry) -> dg.Definitions:
    """The interfaces area's definitions: one user-schedule sensor per market."""
    return dg.Definitions(sensors=[build_user_schedule_sensor(registry, m) for m in registry])
