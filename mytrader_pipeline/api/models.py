"""Request bodies of the REST API, with the old system's JSON field names, and their conversion to import requests."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mytrader_pipeline.core.limits import BATCH_SIZE, GLOBAL_MAX_CONCURRENCY, MAX_CONCURRENCY, SLA_TARGET_MINUTES
from mytrader_pipeline.core.request_errors import InvalidRequest
from mytrader_pipeline.core.requests import AllMarketsImportRequest, MarketImportRequest, check_sla_target, parse_hms
from mytrader_pipeline.defs.schedule_store import validate_cron, validate_time_zone
from mytrader_pipeline.service.models import RetryPolicy

TIME_SPAN = r"^(\d{1,3}\.)?([01]?\d|2[0-3]):[0-5]\d:[0-5]\d$"
TimeSpan = Annotated[str, Field(pattern=TIME_SPAN, description="A duration, HH:MM:SS", examples=["00:45:00"])]
FileName = Annotated[str, Field(min_length=1, max_length=255, description="A file name or glob, e.g. THYAO.csv")]


class Body(BaseModel):
    """Common settings: the old field names as they are, unknown fields ignored (old clients send more)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class MarketImportBody(Body):
    """``POST /markets/{market}/import``: import one market's files."""

    market: str | None = Field(default=None, max_length=32, description="Ignored when it matches the URL's market")
    dataPath: str | None = Field(default=None, max_length=4096, description="The market's folder, inside the data root")
    batchSize: int | None = Field(
        default=None,
        ge=BATCH_SIZE.low,
        le=BATCH_SIZE.high,
        description=f"{BATCH_SIZE}; default: the market's batch_size",
    )
    slaTarget: TimeSpan | None = Field(
        default=None,
        description=f"HH:MM:SS, {SLA_TARGET_MINUTES} once rounded up to minutes; default: the market's SLA",
    )
    maxConcurrency: int | None = Field(
        default=None,
        ge=MAX_CONCURRENCY.low,
        le=MAX_CONCURRENCY.high,
        description=f"{MAX_CONCURRENCY}; default: the market's max_concurrency",
    )
    enableDuplicateCleanup: bool = True
    includeFiles: list[FileName] = Field(default_factory=list, max_length=10_000)
    excludeFiles: list[FileName] = Field(default_factory=list, max_length=10_000)
    force: bool = Field(default=False, description="Reload files whose content is unchanged since their last load")

    @field_validator("slaTarget")
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
            data_path=self.dataPath,
            batch_size=self.batchSize,
            sla_target=parse_hms(self.slaTarget, "slaTarget") if self.slaTarget else None,
            max_concurrency=self.maxConcurrency,
            enable_duplicate_cleanup=self.enableDuplicateCleanup,
            include_files=tuple(self.includeFiles),
            exclude_files=tuple(self.excludeFiles),
            force=self.force,
        )


class MarketConfigBody(MarketImportBody):
    """A per-market override inside an all-markets request."""


class AllMarketsImportBody(Body):
    """``POST /all-markets/import``: import every market."""

    stockScrapperDataPath: str | None = Field(default=None, max_length=4096, description="Inside the data root")
    runMarketsInParallel: bool = True
    globalMaxConcurrency: int | None = Field(
        default=None,
        ge=GLOBAL_MAX_CONCURRENCY.low,
        le=GLOBAL_MAX_CONCURRENCY.high,
        description=f"{GLOBAL_MAX_CONCURRENCY}; default 8",
    )
    globalSlaTarget: TimeSpan | None = None
    marketConfigs: dict[Annotated[str, Field(max_length=32)], MarketConfigBody] = Field(default_factory=dict)
    force: bool = False

    def to_request(self) -> AllMarketsImportRequest:
        """The service layer's request."""
        return AllMarketsImportRequest(
            stock_scrapper_data_path=self.stockScrapperDataPath,
            run_markets_in_parallel=self.runMarketsInParallel,
            global_max_concurrency=self.globalMaxConcurrency,
            global_sla_target=parse_hms(self.globalSlaTarget, "globalSlaTarget") if self.globalSlaTarget else None,
            market_configs={code: cfg.to_request(cfg.market or code) for code, cfg in self.marketConfigs.items()},
            force=self.force,
        )


class RetryBody(Body):
    """``POST /jobs/{jobId}/retry``: the retry policy of the re-executed job."""

    maxRetries: int = Field(default=3, ge=0, le=10)
    initialDelay: TimeSpan = "00:01:00"
    backoffMultiplier: float = Field(default=2.0, ge=1.0, le=10.0)

    def to_policy(self) -> RetryPolicy:
        """The service layer's retry policy."""
        return RetryPolicy(
            max_retries=self.maxRetries,
            initial_delay=parse_hms(self.initialDelay, "initialDelay"),
            backoff_multiplier=self.backoffMultiplier,
        )


class ScheduleBody(Body):
    """``POST /schedules/all-markets``: a recurring all-markets import."""

    importRequest: AllMarketsImportBody = Field(default_factory=AllMarketsImportBody)
    cronExpression: str = Field(min_length=9, max_length=120, examples=["0 2 * * *"])
    timeZone: str = Field(default="UTC", min_length=1, max_length=64, examples=["UTC", "Europe/Istanbul"])

    @field_validator("cronExpression")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            validate_cron(value)
        except InvalidRequest as exc:
            raise ValueError(exc.message) from exc
        return value.strip()

    @field_validator("timeZone")
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
    discardedBy: str = Field(default="api", min_length=1, max_length=100)
