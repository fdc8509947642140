"""Allowed ranges of the import options, and their pydantic types: one place for job config, REST API and CLI.

The import job's config (``defs.assets.ImportConfig``, ``defs.all_markets``) refuses a value outside these ranges
when the run starts; the REST API and the CLI refuse it before launching anything, naming the option.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import Field


@dataclasses.dataclass(frozen=True)
class Bounds:
    """An inclusive range of whole numbers, and what they count."""

    low: int
    high: int
    unit: str

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.low}..{self.high} {self.unit}"


BATCH_SIZE = Bounds(100, 100_000, "rows per database batch")  # ImportConfig.batch_size, batchSize
MAX_CONCURRENCY = Bounds(1, 32, "files at once")  # ImportConfig.max_concurrency, maxConcurrency
SLA_TARGET_MINUTES = Bounds(1, 24 * 60, "minutes")  # ImportConfig.sla_target_minutes, slaTarget (rounded up)
GLOBAL_MAX_CONCURRENCY = Bounds(1, 64, "markets and files at once")  # the all-markets job's globalMaxConcurrency
MAX_RETRIES = Bounds(0, 10, "retries")  # the retry policy's maxRetries


def constrained_int(bounds: Bounds) -> Any:
    """``int`` constrained to ``bounds`` as pydantic checks it (``Annotated[int, Field(ge=..., le=...)]``)."""
    return Annotated[int, Field(ge=bounds.low, le=bounds.high, description=str(bounds))]


# The constrained types: the REST bodies and the job config declare their fields with these; the import requests of
# the CLI and of stored schedules check the same ``Bounds`` (``core.requests.check_bounds``, naming the field).
BatchSize = constrained_int(BATCH_SIZE)
MaxConcurrency = constrained_int(MAX_CONCURRENCY)
SlaTargetMinutes = constrained_int(SLA_TARGET_MINUTES)
GlobalMaxConcurrency = constrained_int(GLOBAL_MAX_CONCURRENCY)
MaxRetries = constrained_int(MAX_RETRIES)
BackoffMultiplier = Annotated[float, Field(ge=1.0, le=10.0, description="1.0..10.0 times the previous delay")]

# How many rejected rows one listing returns (``mytrader rejects --limit``, ``GET .../rejected-rows?limit=``).
REJECTED_ROWS_LIMIT = Bounds(1, 1000, "rejected rows")
REJECTED_ROWS_DEFAULT = 50
RejectedRowsLimit = constrained_int(REJECTED_ROWS_LIMIT)
