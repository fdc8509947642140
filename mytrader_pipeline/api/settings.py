"""The REST API's settings, read from the environment when the app is created (never at import time)."""

from __future__ import annotations

import dataclasses
import os

from mytrader_pipeline.service.settings import ServiceSettings


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """The bearer token for mutating calls (none: they are refused) and the service layer's settings."""

    api_token: str | None
    service: ServiceSettings

    @classmethod
    def from_env(cls, dagster_url: str | None = None) -> ApiSettings:
        """``MYTRADER_API_TOKEN`` plus what ``ServiceSettings.from_env`` reads."""
        return cls(
            api_token=os.environ.get("MYTRADER_API_TOKEN") or None, service=ServiceSettings.from_env(dagster_url)
        )
