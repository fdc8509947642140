"""Where the service layer acts: the deployment's web server, data root, warehouse, registry and Dagster home."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mytrader_pipeline.settings import DEFAULT_DAGSTER_URL, Settings, get_settings

__all__ = ["DEFAULT_DAGSTER_URL", "ServiceSettings"]


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Where the operations act: the deployment's web server, the data root, the warehouse, the market registry."""

    dagster_url: str = DEFAULT_DAGSTER_URL
    data_root: Path | None = None
    database_url: str | None = None
    markets_file: str | None = None
    dagster_home: Path | None = None  # the deployment's instance, read by monitoring (stats, health)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, dagster_url: str | None = None) -> ServiceSettings:
        """The service layer's part of ``settings`` (default: ``get_settings()``); ``dagster_url`` overrides its URL.

        ``MYTRADER_DAGSTER_URL``, ``_DATA_ROOT`` (resolved), ``_DATABASE_URL``, ``_MARKETS_FILE`` and ``DAGSTER_HOME``.
        """
        settings = settings or get_settings()
        return cls(
            dagster_url=dagster_url or settings.dagster_url,
            data_root=settings.data_root.expanduser().resolve() if settings.data_root else None,
            database_url=settings.database_url,
            markets_file=str(settings.markets_file) if settings.markets_file else None,
            dagster_home=settings.dagster_home,
        )
