"""The REST API's settings, taken from ``get_settings()`` when the app is created (never at import time)."""

from __future__ import annotations

import dataclasses

from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline.settings import Settings, get_settings


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """The bearer token for mutating calls (none: they are refused) and the service layer's settings."""

    api_token: str | None
    service: ServiceSettings

    @classmethod
    def from_settings(cls, settings: Settings | None = None, dagster_url: str | None = None) -> ApiSettings:
        """``MYTRADER_API_TOKEN`` plus what ``ServiceSettings.from_settings`` takes (default: ``get_settings()``)."""
        settings = settings or get_settings()
        return cls(api_token=settings.api_token, service=ServiceSettings.from_settings(settings, dagster_url))
