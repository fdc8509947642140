"""From an import request to the Dagster runs that carry it out (partitions to add, job, run config, tags).

Shared by the service layer (which launches the plan over GraphQL) and the user-schedule sensor (which returns it
as run requests), so both import the same files with the same options.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mytrader_pipeline.core.discovery import confine, scan_market
from mytrader_pipeline.core.errors import DataPathError
from mytrader_pipeline.core.request_errors import InvalidRequest
from mytrader_pipeline.core.requests import (
    AllMarketsImportRequest,
    MarketImportRequest,
    format_hms,
    market_request_json,
    sla_minutes,
)
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, all_markets_run_config
from mytrader_pipeline.defs.assets import ImportConfig
from mytrader_pipeline.defs.jobs import MARKET_TAG, import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.markets import Market, MarketRegistry

# Run tags written by the service layer; status, children and retries are read back from them.
JOB_TYPE_TAG = "mytrader/job_type"
SLA_TARGET_TAG = "mytrader/sla_target"
REQUEST_TAG = "mytrader/request"
SCHEDULE_TAG = "mytrader/schedule_id"
RETRY_OF_TAG = "mytrader/retry_of"
GLOBAL_SLA = dt.timedelta(hours=2)  # the old GlobalSlaTarget of the all-markets import


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run to launch: ``job_name`` with its config and tags; for a market's import job, over
    ``partition_keys`` (files), after adding the partitions ``new_keys`` to ``partitions_def``.
    """

    job_name: str
    run_config: dict[str, Any]
    tags: dict[str, str]
    market: Market | None = None
    partitions_def: str | None = None
    partition_keys: tuple[str, ...] = ()
    new_keys: tuple[str, ...] = ()


def resolve_data_root(data_root: Path, data_path: str | None, field: str) -> Path:
    """``data_path`` resolved inside ``data_root`` (``InvalidRequest`` naming ``field`` if it escapes or is absent)."""
    if not data_path:
        return data_root.resolve()
    try:
        resolved = confine(data_root, data_path)
    except DataPathError as exc:
        raise InvalidRequest(f"{field}: {data_path!r} is outside the data root") from exc
    if not resolved.is_dir():
        raise InvalidRequest(f"{field}: {data_path!r} is not a folder inside the data root")
    return resolved


def _selected(keys: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Keys matching any ``include`` pattern (all when none) and no ``exclude`` pattern (file-name globs)."""
    chosen = [k for k in keys if not include or any(fnmatch.fnmatchcase(k, p) for p in include)]
    return [k for k in chosen if not any(fnmatch.fnmatchcase(k, p) for p in exclude)]


def import_config_for(request: MarketImportRequest) -> dict[str, Any]:
    """The request's options as ``ImportConfig`` fields (those it accepts; unset ones left to the market)."""
    wanted = {
        "force": request.force,
        "max_concurrency": request.max_concurrency,
        "batch_size": request.batch_size,
        "include_files": list(request.include_files) or None,
        "exclude_files": list(request.exclude_files) or None,
        "enable_duplicate_cleanup": request.enable_duplicate_cleanup,
        "sla_target_minutes": sla_minutes(request.sla_target) if request.sla_target is not None else None,
    }
    accepted = ImportConfig.model_fields
    return {k: v for k, v in wanted.items() if k in accepted and v is not None}


def run_config_for(market: Market, request: MarketImportRequest, data_root: Path) -> dict[str, Any]:
    """Run config of ``market``'s import job: the request's options, and the data root it reads."""
    return {
        "ops": {market.asset_name: {"config": import_config_for(request)}},
        "resources": {"data_root": {"config": {"data_root": str(data_root)}}},
    }


def plan_market_import(
    registry: MarketRegistry,
    data_root: Path,
    request: MarketImportRequest,
    known_keys: Sequence[str],
    *,
    job_type: str = "MarketImport",
    extra_tags: dict[str, str] | None = None,
    field_prefix: str = "",
) -> PlannedRun:
    """The run importing ``request.market``'s files; ``known_keys``: its partitions already in the deployment.

    ``dataPath`` (when given) is the market's folder and must lie inside ``data_root``; the run then reads from its
    parent. Raises ``InvalidRequest`` for an unknown market, a path outside the data root, or no file to import.
    """
    try:
        market = registry.get(request.market)
    except KeyError as exc:
        raise InvalidRequest(f"{field_prefix}market: {exc.args[0]}") from exc
    if request.data_path:
        folder = resolve_data_root(data_root, request.data_path, f"{field_prefix}dataPath")
        if folder.name != market.folder:
            raise InvalidRequest(
                f"{field_prefix}dataPath: {request.data_path!r} must be {market.code}'s folder, named {market.folder}"
            )
        run_root = folder.parent
    else:
        run_root = data_root.resolve()
    files = [f.partition_key for f in scan_market(run_root, market)]
    keys = _selected(files, request.include_files, request.exclude_files)
    if not keys:
        raise InvalidRequest(f"{field_prefix}market: no {market.code} file to import in {market.directory(run_root)}")
    known = set(known_keys)
    new_keys = tuple(k for k in files if k not in known)
    order = [*known_keys, *new_keys]
    wanted = set(keys)
    in_range = [k for k in order if k in wanted]
    tags = {
        **partition_range_tags(in_range[0], in_range[-1]),
        MARKET_TAG: market.code,
        JOB_TYPE_TAG: job_type,
        SLA_TARGET_TAG: format_hms(request.sla_target or _minutes(market.sla_minutes)) or "",
        REQUEST_TAG: json.dumps(market_request_json(request), separators=(",", ":")),
        **(extra_tags or {}),
    }
    name = files_partitions(market).name
    assert name is not None
    return PlannedRun(
        market=market,
        job_name=import_job_name(market),
        partitions_def=name,
        partition_keys=tuple(in_range),
        new_keys=new_keys,
        run_config=run_config_for(market, request, run_root),
        tags=tags,
    )


def plan_all_markets(
    registry: MarketRegistry,
    data_root: Path,
    request: AllMarketsImportRequest,
    *,
    extra_tags: dict[str, str] | None = None,
) -> PlannedRun:
    """One run of the all-markets job (``import_all_markets``: one op per market) for ``request``.

    ``stockScrapperDataPath`` (when given) must lie inside ``data_root``; the run reads from it. Raises
    ``InvalidRequest`` naming the field at fault.
    """
    root = resolve_data_root(data_root, request.stock_scrapper_data_path, "stockScrapperDataPath")
    configs: dict[str, dict[str, Any]] = {}
    for code, market_request in request.market_configs.items():
        if market_request.data_path:
            raise InvalidRequest(f"marketConfigs.{code}.dataPath: set stockScrapperDataPath instead")
        configs[code] = import_config_for(
            dataclasses.replace(market_request, force=market_request.force or request.force)
        )
    for market in registry:
        if request.force and market.code not in {c.upper() for c in configs}:
            configs[market.code] = {"force": True}
    try:
        run_config = all_markets_run_config(
            registry,
            run_markets_in_parallel=request.run_markets_in_parallel,
            global_max_concurrency=request.global_max_concurrency,
            market_configs=configs,
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    run_config["resources"] = {"data_root": {"config": {"data_root": str(root)}}}
    tags = {
        JOB_TYPE_TAG: "AllMarketsImport",
        SLA_TARGET_TAG: format_hms(request.global_sla_target or GLOBAL_SLA) or "",
        REQUEST_TAG: json.dumps(request.as_json(), separators=(",", ":")),
        **(extra_tags or {}),
    }
    return PlannedRun(job_name=ALL_MARKETS_JOB, run_config=run_config, tags=tags)


def _minutes(minutes: int) -> dt.timedelta:
    return dt.timedelta(minutes=minutes)
