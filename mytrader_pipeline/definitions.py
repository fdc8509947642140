"""The code location: ``defs`` built from the market registry and the environment's configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from mytrader_pipeline.defs.assets import build_market_asset
from mytrader_pipeline.defs.failure import build_failure_defs
from mytrader_pipeline.defs.jobs import build_import_job
from mytrader_pipeline.defs.monitoring import build_monitoring_defs, with_freshness_policies
from mytrader_pipeline.defs.orchestration import build_orchestration_defs
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.run_coordinator import build_launch_guard_defs
from mytrader_pipeline.defs.user_schedules import build_interface_defs
from mytrader_pipeline.markets import MarketRegistry, load_markets
from mytrader_pipeline.settings import default_data_root, default_database_url, get_settings


def _env_or_local(name: str, is_set: bool, local: str) -> str | dg.EnvVar:
    """``name``'s value, read when a run starts, if it is set now; else ``local`` (the quickstart's state)."""
    return dg.EnvVar(name) if is_set else local


def default_resources() -> dict[str, Any]:
    """Resources configured from ``MYTRADER_DATABASE_URL`` and ``MYTRADER_DATA_ROOT`` (read when a run starts).

    Unset, they are the quickstart's state under the working directory, as for ``mytrader run``: the SQLite
    warehouse ``./.mytrader/warehouse.db`` and the sample tree ``./.mytrader/data``, so ``dagster dev`` in a checkout
    works with nothing set.

    ``MYTRADER_SYNCHRONOUS_COMMIT`` (true/false, read when the definitions load; Dagster's ``EnvVar`` carries only
    strings) makes each file's commit wait for the disk; by default it does not.
    """
    settings = get_settings()
    database_url = _env_or_local("MYTRADER_DATABASE_URL", bool(settings.database_url), default_database_url())
    data_root = _env_or_local("MYTRADER_DATA_ROOT", bool(settings.data_root), str(default_data_root()))
    return {
        "warehouse": WarehouseResource(database_url=database_url, synchronous_commit=settings.synchronous_commit),
        "data_root": DataRootResource(data_root=data_root),
    }


def ingest_defs(registry: MarketRegistry) -> dg.Definitions:
    """The prices assets (one per market) and their import jobs."""
    return dg.Definitions(
        assets=[build_market_asset(m) for m in registry],
        jobs=[build_import_job(m) for m in registry],
    )


# Each area contributes its definitions from the registry; a new area is one entry here.
AREAS: list[Callable[[MarketRegistry], dg.Definitions]] = [
    ingest_defs,
    build_interface_defs,
    build_orchestration_defs,
    build_failure_defs,
    build_launch_guard_defs,
    build_monitoring_defs,
]


def build_defs(
    markets: MarketRegistry | None = None,
    resource_overrides: Mapping[str, Any] | None = None,
) -> dg.Definitions:
    """All definitions for ``markets`` (default: the shipped registry); tests and the CLI override resources."""
    registry = markets or load_markets()
    resources = dg.Definitions(resources={**default_resources(), **(resource_overrides or {})})
    # Freshness policies are applied once, at the root, to the assets the areas define.
    return with_freshness_policies(dg.Definitions.merge(*[area(registry) for area in AREAS], resources), registry)


@dg.definitions
def defs() -> dg.Definitions:
    """The code location Dagster loads: the shipped registry with ``MYTRADER_MARKETS_FILE`` merged over it."""
    return build_defs(load_markets(get_settings().markets_file))
