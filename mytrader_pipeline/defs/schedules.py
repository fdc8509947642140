"""Schedules: the nightly all-markets import (on by default) and one schedule per market (off by default)."""

import dagster as dg

from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.ranges import plan_ranges
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, all_markets_run_config
from mytrader_pipeline.defs.jobs import import_job_name, market_run_tags, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import DataRootResource
from mytrader_pipeline.defs.sensors import DEFAULT_MAX_FILES_PER_RUN
from mytrader_pipeline.markets import Market, MarketRegistry

DAILY_IMPORT_CRON = "0 2 * * *"  # the old system's recurring all-markets import
SCHEDULE_TAG = "mytrader/schedule"


def market_schedule_name(market: Market) -> str:
    """The schedule importing ``market`` alone (e.g. ``bist_import_schedule``)."""
    return f"{market.code.lower()}_import_schedule"


def build_daily_import_schedule(
    registry: MarketRegistry, *, cron: str = DAILY_IMPORT_CRON, timezone: str = "UTC"
) -> dg.ScheduleDefinition:
    """``daily_import_schedule``: one ``import_all_markets`` run per tick, every market's new and changed files."""

    @dg.schedule(
        name="daily_import_schedule",
        cron_schedule=cron,
        execution_timezone=timezone,
        job_name=ALL_MARKETS_JOB,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"All markets at '{cron}' ({timezone}): new or changed files load, unchanged ones are skipped.",
    )
    def _daily_import(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=f"daily_import:{context.scheduled_execution_time.isoformat()}",
            run_config=all_markets_run_config(registry),
            tags={SCHEDULE_TAG: "daily_import_schedule"},
        )

    return _daily_import


def build_market_schedule(
    market: Market,
    *,
    cron: str = DAILY_IMPORT_CRON,
    timezone: str = "UTC",
    max_files_per_run: int = DEFAULT_MAX_FILES_PER_RUN,
) -> dg.ScheduleDefinition:
    """``<code>_import_schedule`` (off by default): registers the market's files and runs its import job over them.

    Files unchanged since their last load are skipped by the asset, so a tick costs little when nothing changed.
    """

    @dg.schedule(
        name=market_schedule_name(market),
        cron_schedule=cron,
        execution_timezone=timezone,
        job_name=import_job_name(market),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"{market.code} alone at '{cron}' ({timezone}); turn on to give it its own time.",
    )
    def _market_import(
        context: dg.ScheduleEvaluationContext, data_root: DataRootResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        present = [f.partition_key for f in scan_market(data_root.path, market)]
        if not present:
            return dg.SkipReason(f"no file in {market.directory(data_root.path)}")
        order = register_partitions(context.instance, market, present)
        stamp = context.scheduled_execution_time.isoformat()
        return [
            dg.RunRequest(
                run_key=f"{market_schedule_name(market)}:{stamp}:{keys[0]}..{keys[-1]}",
                tags={
                    **market_run_tags(market),
                    **partition_range_tags(keys[0], keys[-1]),
                    SCHEDULE_TAG: market_schedule_name(market),
                },
            )
            for keys in plan_ranges(order, present, present, max_files_per_run)
        ]

    return _market_import
