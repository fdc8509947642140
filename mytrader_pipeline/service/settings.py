"""Where the service layer acts: the deployment's web server, data root, warehouse, registry and Dagster home."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Where the operations act: the deployment's web server, the data root, the warehouse, the market registry."""

    dagster_url: str = DEFAULT_DAGSTER_URL
    data_root: Path | None = None
    database_url: str | None = None
    markets_file: str | None = None
    dagster_home: Path | None = None  # the deployment's instance, read by monitoring (stats, health)

    @classmethod
    def from_env(cls, dagster_url: str | None = None) -> ServiceSettings:
        """Settings from ``MYTRADER_DAGSTER_URL``, ``_DATA_ROOT``, ``_DATABASE_URL`` and ``_MARKETS_FILE``."""
        root = os.environ.get("MYTRADER_DATA_ROOT")
        return cls(
            dagster_url=dagster_url or os.environ.get("MYTRADER_DAGSTER_URL") or DEFAULT_DAGSTER_URL,
            data_root=Path(root).expanduser().resolve() if root else None,
            database_url=os.environ.get("MYTRADER_DATABASE_URL") or None,
            markets_file=os.environ.get("MYTRADER_MARKETS_FILE") or None,
            dagster_home=Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else None,
        )
