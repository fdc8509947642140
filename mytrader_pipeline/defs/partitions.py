"""Dynamic partitions: one per CSV file of a market, keyed by file name."""

from __future__ import annotations

import dagster as dg

from mytrader_pipeline.markets import Market


def files_partitions(market: Market) -> dg.DynamicPartitionsDefinition:
    """The partitions of ``market``'s asset (e.g. ``bist_files``), one per file name."""
    return dg.DynamicPartitionsDefinition(name=f"{market.code.lower()}_files")
