"""Request bodies of the REST API (camelCase in JSON, like the old system's), and their conversion to requests."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, field_validator

from mytrader_pipeline.core.limits import (
    BATCH_SIZE,
    GLOBAL_MAX_CONCURRENCY,
    MAX_CONCURRENCY,
    SLA_TARGET_MINUTES,
    BackoffMultiplier,
    BatchSize,
    GlobalMaxConcurrency,
    MaxConcurrency,
    MaxRetries,
)
from mytrader_pipeline.core.request_errors import InvalidRequest
from mytrader_pipeline.core.requests import AllMarketsImportRequest, MarketImportRequest, check_sla_target, parse_hms
from mytrader_pipeline.core.wire import CamelModel
from mytrader_pipeline.defs.schedule_store import validate_cron, validate_time_zone
from mytrader_pipeline.service.models import RetryPolicy

TIME_SPAN = r"^(\d{1,3}\.)?([01]?\d|2[0-3]):[0-5]\d:[0-5]\d$"
TimeSpan = Annotated[str, Field(pattern=TIME_SPAN, description="A duration, HH:MM:SS", examples=["00:45:00"])]
FileName = Annotated[str, Field(min_length=1, max_length=255, description="A file name or glob, e.g. THYAO.csv")]


class Body(CamelModel):
    """Common settings: camelCase names (snake_case accepted too), unknown fields ignored (old clients send more)."""

    model_config = ConfigDict(extra="ignore")


class MarketImportBody(Body):
    """``POST /markets/{market}/import``: import one market's files."""

    market: str | None = Field(default=None, max_length=32, description="Ignored when it matches the URL's market")
    data_path: str | None = Field(
        default=None, max_length=4096, description="The market's folder, inside the data root"
    )
    batch_size: BatchSize | None = Field(default=None, description=f"{BATCH_SIZE}; default: the market's batch_size")
    sla_target: TimeSpan | None = Field(
        default=None,
        description=f"HH:MM:SS, {SLA_TARGET_MINUTES} once rounded up to minutes; default: the market's SLA",
    )
    max_concurrency: MaxConcurrency | None = Field(
        default=None, description=f"{MAX_CONCURRENCY}; default: the market's max_concurrency"
    )
    enable_duplicate_cleanup: bool = True
    include_files: list[FileName] = Field(default_factory=list, max_length=10_000)
    exclude_files: list[FileName] = Field(default_factory=list, max_length=10_000)
    force: bool = Field(default=False, description="Reload files whose content is unchanged since their last load")

    @field_validator("sla_target")
    @classmethod
    def _sla_within_the_job_bounds(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_sla_target(parse_hms(value, "slaTarget"), "slaTarget")
            except InvalidRequest as exc:
                raise ValueError(exc.message) from exc
        return value

    def to_request(self, market: str) -> MarketImportRequest:
        """The service layer's request for ``market`` (the URL's)."""
        return MarketImportRequest(
            market=market,
            data_path=self.data_path,
            batch_size=self.batch_size,
            sla_target=parse_hms(self.sla_target, "slaTarget") if self.sla_target else None,
            max_concurrency=self.max_concurrency,
            enable_duplicate_cleanup=self.enable_duplicate_cleanup,
            include_files=tuple(self.include_files),
            exclude_files=tuple(self.exclude_files),
            force=self.force,
        )


class MarketConfigBody(MarketImportBody):
    """A per-market override inside an all-markets request."""


class AllMarketsImportBody(Body):
    """``POST /all-markets/import``: import every market."""

    stock_scrapper_data_path: str | None = Field(default=None, max_length=4096, description="Inside the data root")
    run_markets_in_parallel: bool = True
    global_max_concurrency: GlobalMaxConcurrency | None = Field(
        default=None, description=f"{GLOBAL_MAX_CONCURRENCY}; default 8"
    )
    global_sla_target: TimeSpan | None = None
    market_configs: dict[Annotated[str, Field(max_length=32)], MarketConfigBody] = Field(default_factory=dict)
    force: bool = False

    def to_request(self) -> AllMarketsImportRequest:
        """The service layer's request."""
        sla = self.global_sla_target
        return AllMarketsImportRequest(
            stock_scrapper_data_path=self.stock_scrapper_data_path,
            run_markets_in_parallel=self.run_markets_in_parallel,
            global_max_concurrency=self.global_max_concurrency,
            global_sla_target=parse_hms(sla, "globalSlaTarget") if sla else None,
            market_configs={code: cfg.to_request(cfg.market or code) for code, cfg in self.market_configs.items()},
            force=self.force,
        )


class RetryBody(Body):
    """``POST /jobs/{jobId}/retry``: the retry policy of the re-executed job."""

    max_retries: MaxRetries = 3
    initial_delay: TimeSpan = "00:01:00"
    backoff_multiplier: BackoffMultiplier = 2.0

    def to_policy(self) -> RetryPolicy:
        """The service layer's retry policy."""
        return RetryPolicy(
            max_retries=self.max_retries,
            initial_delay=parse_hms(self.initial_delay, "initialDelay"),
            backoff_multiplier=self.backoff_multiplier,
        )


class ScheduleBody(Body):
    """``POST /schedules/all-markets``: a recurring all-markets import."""

    import_request: AllMarketsImportBody = Field(default_factory=AllMarketsImportBody)
    cron_expression: str = Field(min_length=9, max_length=120, examples=["0 2 * * *"])
    time_zone: str = Field(default="UTC", min_length=1, max_length=64, examples=["UTC", "Europe/Istanbul"])

    @field_validator("cron_expression")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            validate_cron(value)
        except InvalidRequest as exc:
            raise ValueError(exc.message) from exc
        return value.strip()

    @field_validator("time_zone")
    @classmethod
    def _valid_time_zone(cls, value: str) -> str:
        try:
            validate_time_zone(value)
        except InvalidRequest as exc:
            raise ValueError(exc.message) from exc
        return value


class DiscardBody(Body):
    """``POST /dead-letter-queue/{id}/discard``: why the item is dropped."""

    reason: str = Field(min_length=1, max_length=2000)
    discarded_by: str = Field(default="api", min_length=1, max_length=100)
