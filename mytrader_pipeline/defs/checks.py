"""Asset checks of a market import: rejected-row rate, OHLC consistency of what landed, and accounting."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.accounting import accounting_issues, file_figures, ohlc_violations
from mytrader_pipeline.core.importer import FileResult
from mytrader_pipeline.markets import Market

REJECTED_RATE = "rejected_rate"
OHLC_CONSISTENCY = "ohlc_consistency"
ACCOUNTING = "accounting"


def check_specs(market: Market) -> list[dg.AssetCheckSpec]:
    """The checks every materialization of ``market``'s asset evaluates, over the files the run loaded."""
    asset = dg.AssetKey(market.asset_name)
    limit = f"{market.max_rejected_fraction:.0%}"
    return [
        dg.AssetCheckSpec(REJECTED_RATE, asset=asset, description=f"No file has more than {limit} rejected rows."),
        dg.AssetCheckSpec(OHLC_CONSISTENCY, asset=asset, description="Loaded rows: high >= open, close, low >= low."),
        dg.AssetCheckSpec(
            ACCOUNTING, asset=asset, description="Every file: rows read = loaded + rejected, all stored."
        ),
    ]


def check_results(market: Market, engine: Engine, run_id: str, done: list[FileResult]) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the checks over the files that loaded in this run.

    A file's rejected rate is that of its current content (``file_figures``: an append counts with the loads it
    continues), not of the few new lines an append read.
    """
    figures = file_figures(engine, market.code, [r.file.source_file for r in done]) if done else {}
    rates = {
        r.file.partition_key: figures[r.file.source_file].rejected_rate
        for r in done
        if r.file.source_file in figures and figures[r.file.source_file].rows_read
    }
    over = {key: round(rate, 4) for key, rate in rates.items() if rate > market.max_rejected_fraction}
    yield dg.AssetCheckResult(
        check_name=REJECTED_RATE,
        passed=not over,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "threshold": market.max_rejected_fraction,
            "files_over_threshold": dg.MetadataValue.json(over),
            "max_rejected_rate": max(rates.values(), default=0.0),
        },
    )
    violations = ohlc_violations(engine, market.code, [r.file.source_file for r in done])
    yield dg.AssetCheckResult(check_name=OHLC_CONSISTENCY, passed=violations == 0, metadata={"violations": violations})
    issues = accounting_issues(engine, run_id)
    yield dg.AssetCheckResult(
        check_name=ACCOUNTING,
        passed=not issues,
        metadata={"issues": dg.MetadataValue.json([f"{i.source_file}: {i.detail}" for i in issues])},
    )
