"""The orchestration area: file sensors, schedules and the all-markets job, with their deployment settings."""

import dataclasses
import zoneinfo

import dagster as dg

from mytrader_pipeline.defs.all_markets import build_all_markets_job
from mytrader_pipeline.defs.schedules import DAILY_IMPORT_CRON, build_daily_import_schedule, build_market_schedule
from mytrader_pipeline.defs.sensors import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_MAX_FILES_PER_RUN,
    build_file_sensor,
    max_files_per_run,
)
from mytrader_pipeline.markets import MarketRegistry
from mytrader_pipeline.settings import Settings, get_settings


@dataclasses.dataclass(frozen=True)
class OrchestrationSettings:
    """How often sensors look, how big their runs get, and when schedules fire."""

    sensor_interval_seconds: int = DEFAULT_INTERVAL_SECONDS
    max_files_per_run: int = DEFAULT_MAX_FILES_PER_RUN
    daily_import_cron: str = DAILY_IMPORT_CRON
    schedule_timezone: str = "UTC"
    file_sensors_running: bool = True

    def __post_init__(self) -> None:
        if self.sensor_interval_seconds < 1 or self.max_files_per_run < 1:
            raise ValueError("sensor interval and max files per run must be positive")
        try:
            zoneinfo.ZoneInfo(self.schedule_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown schedule time zone {self.schedule_timezone!r}") from exc

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "OrchestrationSettings":
        """The orchestration part of ``settings`` (default: ``get_settings()``, read when the code location loads:
        sensor intervals are definitions).

        ``MYTRADER_SENSOR_INTERVAL_SECONDS`` (default 10), ``MYTRADER_MAX_FILES_PER_RUN`` (1024; 128 on Celery),
        ``MYTRADER_DAILY_IMPORT_CRON`` ("0 2 * * *"), ``MYTRADER_SCHEDULE_TIMEZONE`` ("UTC") and
        ``MYTRADER_FILE_SENSORS`` ("on"; "off" starts a new deployment with the file sensors stopped).
        """
        settings = settings or get_settings()
        return cls(
            sensor_interval_seconds=settings.sensor_interval_seconds,
            max_files_per_run=max_files_per_run(settings),
            daily_import_cron=settings.daily_import_cron,
            schedule_timezone=settings.schedule_timezone,
            file_sensors_running=settings.file_sensors,
        )


def build_orchestration_defs(registry: MarketRegistry, settings: OrchestrationSettings | None = None) -> dg.Definitions:
    """One file sensor and one (stopped) schedule per market, the all-markets job and its daily schedule."""
    settings = settings or OrchestrationSettings.from_settings()
    timing = {"cron": settings.daily_import_cron, "timezone": settings.schedule_timezone}
    return dg.Definitions(
        jobs=[build_all_markets_job(registry)],
        sensors=[
            build_file_sensor(
                m,
                interval_seconds=settings.sensor_interval_seconds,
                max_files_per_run=settings.max_files_per_run,
                running=settings.file_sensors_running,
            )
            for m in registry
        ],
        schedules=[
            build_daily_import_schedule(registry, **timing),
            *[build_market_schedule(m, **timing, max_files_per_run=settings.max_files_per_run) for m in registry],
        ],
    )
