"""Allowed ranges of the import options: one place for the job config, the REST API and the CLI.

The import job's config (``defs.assets.ImportConfig``, ``defs.all_markets``) refuses a value outside these ranges
when the run starts; the REST API and the CLI refuse it before launching anything, naming the option.
"""

from __future__ import annotations

import dataclasses


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
