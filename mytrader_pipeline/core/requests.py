"""Import requests of the CLI, the REST API and stored schedules (old field names), checked against the job config."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import Any

from mytrader_pipeline.core.limits import (
    BATCH_SIZE,
    GLOBAL_MAX_CONCURRENCY,
    MAX_CONCURRENCY,
    SLA_TARGET_MINUTES,
    Bounds,
)
from mytrader_pipeline.core.request_errors import InvalidRequest

_HMS_RE = re.compile(r"^(?:(?P<days>\d{1,3})\.)?(?P<h>\d{1,2}):(?P<m>[0-5]\d):(?P<s>[0-5]\d)(?:\.\d+)?$")


def parse_hms(value: str, field: str) -> dt.timedelta:
    """A .NET ``TimeSpan`` string (``HH:MM:SS`` or ``D.HH:MM:SS``) as a timedelta; ``InvalidRequest`` otherwise."""
    match = _HMS_RE.match(value.strip()) if isinstance(value, str) else None
    if not match or int(match["h"]) > 23:
        raise InvalidRequest(f"{field}: {value!r} is not a duration of the form HH:MM:SS")
    return dt.timedelta(
        days=int(match["days"] or 0), hours=int(match["h"]), minutes=int(match["m"]), seconds=int(match["s"])
    )


def format_hms(value: dt.timedelta | None) -> str | None:
    """A timedelta as ``HH:MM:SS`` (``D.HH:MM:SS`` past a day), the old API's ``TimeSpan`` form."""
    if value is None:
        return None
    total = int(value.total_seconds())
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}.{text}" if days else text


def sla_minutes(value: dt.timedelta) -> int:
    """A duration as the import job's ``sla_target_minutes``: whole minutes, rounded up."""
    return math.ceil(value.total_seconds() / 60)


def check_bounds(value: int | None, bounds: Bounds, field: str) -> None:
    """``InvalidRequest`` naming ``field`` when ``value`` is set and outside ``bounds`` (the job config's range)."""
    if value is not None and value not in bounds:
        raise InvalidRequest(f"{field}: {value!r} is outside {bounds}")


def check_sla_target(value: dt.timedelta | None, field: str) -> None:
    """``InvalidRequest`` naming ``field`` when an SLA target is set and not within the job config's minutes."""
    if value is not None and sla_minutes(value) not in SLA_TARGET_MINUTES:
        shortest = format_hms(dt.timedelta(minutes=SLA_TARGET_MINUTES.low - 1))
        longest = format_hms(dt.timedelta(minutes=SLA_TARGET_MINUTES.high))
        raise InvalidRequest(
            f"{field}: {format_hms(value)} is outside {SLA_TARGET_MINUTES} (rounded up): "
            f"give more than {shortest} and at most {longest}"
        )


@dataclasses.dataclass(frozen=True)
class MarketImportRequest:
    """Import one market's files (the old ``MarketImportRequest``); ``None`` means the market's configured value."""

    market: str
    data_path: str | None = None
    batch_size: int | None = None
    sla_target: dt.timedelta | None = None
    max_concurrency: int | None = None
    enable_duplicate_cleanup: bool = True
    include_files: tuple[str, ...] = ()
    exclude_files: tuple[str, ...] = ()
    force: bool = False

    def __post_init__(self) -> None:
        """Refuse options outside the import job's config bounds (``InvalidRequest`` naming the old field)."""
        check_bounds(self.batch_size, BATCH_SIZE, "batchSize")
        check_bounds(self.max_concurrency, MAX_CONCURRENCY, "maxConcurrency")
        check_sla_target(self.sla_target, "slaTarget")


@dataclasses.dataclass(frozen=True)
class AllMarketsImportRequest:
    """Import every market (the old ``AllMarketsImportRequest``); ``market_configs`` overrides per market code."""

    stock_scrapper_data_path: str | None = None
    run_markets_in_parallel: bool = True
    global_max_concurrency: int | None = None
    global_sla_target: dt.timedelta | None = None
    market_configs: dict[str, MarketImportRequest] = dataclasses.field(default_factory=dict)
    force: bool = False

    def __post_init__(self) -> None:
        """Refuse a ``globalMaxConcurrency`` outside the all-markets job's bounds (market requests check theirs)."""
        check_bounds(self.global_max_concurrency, GLOBAL_MAX_CONCURRENCY, "globalMaxConcurrency")

    def as_json(self) -> dict[str, Any]:
        """The old API's JSON shape (what a stored schedule keeps)."""
        return {
            "stockScrapperDataPath": self.stock_scrapper_data_path,
            "runMarketsInParallel": self.run_markets_in_parallel,
            "globalMaxConcurrency": self.global_max_concurrency,
            "globalSlaTarget": format_hms(self.global_sla_target),
            "marketConfigs": {code: market_request_json(r) for code, r in self.market_configs.items()},
            "force": self.force,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AllMarketsImportRequest:
        """Inverse of ``as_json`` (raises ``InvalidRequest`` naming the field at fault)."""
        sla = data.get("globalSlaTarget")
        return cls(
            stock_scrapper_data_path=data.get("stockScrapperDataPath"),
            run_markets_in_parallel=bool(data.get("runMarketsInParallel", True)),
            global_max_concurrency=data.get("globalMaxConcurrency"),
            global_sla_target=parse_hms(sla, "globalSlaTarget") if sla else None,
            market_configs={
                code: market_request_from_json({**cfg, "market": cfg.get("market") or code})
                for code, cfg in (data.get("marketConfigs") or {}).items()
            },
            force=bool(data.get("force", False)),
        )


def market_request_json(request: MarketImportRequest) -> dict[str, Any]:
    """A market request in the old API's JSON shape."""
    return {
        "market": request.market,
        "dataPath": request.data_path,
        "batchSize": request.batch_size,
        "slaTarget": format_hms(request.sla_target),
        "maxConcurrency": request.max_concurrency,
        "enableDuplicateCleanup": request.enable_duplicate_cleanup,
        "includeFiles": list(request.include_files),
        "excludeFiles": list(request.exclude_files),
        "force": request.force,
    }


def market_request_from_json(data: dict[str, Any]) -> MarketImportRequest:
    """Inverse of ``market_request_json``."""
    sla = data.get("slaTarget")
    return MarketImportRequest(
        market=str(data["market"]),
        data_path=data.get("dataPath"),
        batch_size=data.get("batchSize"),
        sla_target=parse_hms(sla, "slaTarget") if sla else None,
        max_concurrency=data.get("maxConcurrency"),
        enable_duplicate_cleanup=bool(data.get("enableDuplicateCleanup", True)),
        include_files=tuple(data.get("includeFiles") or ()),
        exclude_files=tuple(data.get("excludeFiles") or ()),
        force=bool(data.get("force", False)),
    )
