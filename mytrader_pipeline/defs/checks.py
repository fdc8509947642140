"""Asset checks of a market import: rejected-row rate and OHLC consistency of the warehouse now, and accounting.

``rejected_rate`` and ``ohlc_consistency`` judge what the warehouse holds for the market after the run (the latest
load of every file), not the files this run happened to load: a run that skips an unchanged bad file keeps them
failing. ``accounting`` judges the loads of the run itself (each load's counts are fixed when it commits).

``ohlc_consistency`` reads the market's whole table, so a run is not charged for it when nothing changed: the
warehouse's rows of a market change only by a new succeeded load, so while the latest load id is the one its last
evaluation saw (``as_of_file_import_id``), that evaluation still holds and is reported again (one event-log read).
Nor is a daily append charged for it: a load writes only rows its validation kept inside the same bounds, so after a
passing read of the table, loads keep it passing without another read, until the read is ``FULL_READ_EVERY`` old
(a failing check is read again at every load, to see it mended).
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (  # not re-exported at the top level
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.accounting import accounting_issues, latest_loads, ohlc_violations
from mytrader_pipeline.core.clock import utc_now
from mytrader_pipeline.markets import Market

REJECTED_RATE = "rejected_rate"
OHLC_CONSISTENCY = "ohlc_consistency"
ACCOUNTING = "accounting"
LISTED_FILES = 50  # files named in a check's metadata (the counts cover them all)
# ``ohlc_consistency`` reads the market's whole table at least this often (seconds) while loads keep it passing.
FULL_READ_EVERY = 24 * 3600


def check_specs(market: Market) -> list[dg.AssetCheckSpec]:
    """The checks every materialization of ``market``'s asset evaluates."""
    asset = dg.AssetKey(market.asset_name)
    limit = f"{market.max_rejected_fraction:.0%}"
    return [
        dg.AssetCheckSpec(
            REJECTED_RATE,
            asset=asset,
            description=f"No file's latest load has more than {limit} rejected rows (every file of the market).",
        ),
        dg.AssetCheckSpec(
            OHLC_CONSISTENCY,
            asset=asset,
            description="Every warehouse row of the market: high >= open, close, low >= low; close > 0.",
        ),
        dg.AssetCheckSpec(
            ACCOUNTING, asset=asset, description="Every file of the run: rows read = loaded + rejected, all stored."
        ),
    ]


def _last_ohlc(instance: dg.DagsterInstance, market: Market) -> dg.AssetCheckEvaluation | None:
    """The latest completed evaluation of ``market``'s ``ohlc_consistency`` check, if any."""
    key = dg.AssetCheckKey(dg.AssetKey(market.asset_name), OHLC_CONSISTENCY)
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, status=set(COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
    )
    for record in records:
        data = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
        if isinstance(data, dg.AssetCheckEvaluation):
            return data
    return None


def ohlc_result(
    market: Market, engine: Engine, watermark: int, instance: dg.DagsterInstance | None
) -> dg.AssetCheckResult:
    """``ohlc_consistency`` over the market's rows; its last evaluation again when no load happened since, or when
    it passed on a full read of the table less than ``FULL_READ_EVERY`` ago (the loads since wrote only rows their
    validation bounded the same way)."""
    last = _last_ohlc(instance, market) if instance is not None else None
    seen = last.metadata.get("as_of_file_import_id") if last is not None else None
    if last is not None and seen is not None and seen.value == watermark:
        return dg.AssetCheckResult(
            check_name=OHLC_CONSISTENCY,
            passed=last.passed,
            metadata={**last.metadata, "reused": dg.MetadataValue.text("no load since its last evaluation")},
        )
    now = utc_now()
    read_at = last.metadata.get("table_read_at") if last is not None else None
    if last is not None and last.passed and read_at is not None and now.timestamp() - read_at.value < FULL_READ_EVERY:
        return dg.AssetCheckResult(
            check_name=OHLC_CONSISTENCY,
            passed=True,
            metadata={
                **{k: v for k, v in last.metadata.items() if k != "reused"},
                "as_of_file_import_id": watermark,
                "loads_since_table_read": dg.MetadataValue.text(
                    "rows written only by validated loads, which reject a row outside these bounds"
                ),
            },
        )
    violations = ohlc_violations(engine, market.code)
    return dg.AssetCheckResult(
        check_name=OHLC_CONSISTENCY,
        passed=not violations,
        metadata={
            "violations": sum(violations.values()),
            "files_with_violations": dg.MetadataValue.json(dict(list(sorted(violations.items()))[:LISTED_FILES])),
            "as_of_file_import_id": watermark,
            "table_read_at": dg.MetadataValue.timestamp(now),
        },
    )


def check_results(
    market: Market, engine: Engine, run_id: str, instance: dg.DagsterInstance | None = None
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the checks: the market's current state in the warehouse, and this run's loads.

    With ``instance``, ``ohlc_consistency`` is reported again without reading the table when no load happened since
    its last evaluation.
    """
    loads = latest_loads(engine, market.code)
    over = {
        load.partition_key: round(load.rejected_rate, 4)
        for load in sorted(loads.values(), key=lambda load: -load.rejected_rate)
        if load.rejected_rate > market.max_rejected_fraction
    }
    yield dg.AssetCheckResult(
        check_name=REJECTED_RATE,
        passed=not over,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(over)} of {len(loads)} file(s) over {market.max_rejected_fraction:.0%} rejected rows"
        if over
        else None,
        metadata={
            "threshold": market.max_rejected_fraction,
            "files_checked": len(loads),
            "files_over_threshold_count": len(over),
            "files_over_threshold": dg.MetadataValue.json(dict(list(over.items())[:LISTED_FILES])),
            "max_rejected_rate": round(max((load.rejected_rate for load in loads.values()), default=0.0), 4),
        },
    )
    yield ohlc_result(market, engine, max((load.file_import_id for load in loads.values()), default=0), instance)
    issues = accounting_issues(engine, run_id)
    yield dg.AssetCheckResult(
        check_name=ACCOUNTING,
        passed=not issues,
        metadata={"issues": dg.MetadataValue.json([f"{i.source_file}: {i.detail}" for i in issues])},
    )


def as_evaluations(market: Market, results: Iterator[dg.AssetCheckResult]) -> Iterator[dg.AssetCheckEvaluation]:
    """``results`` as events an op that is not the asset can log (the all-markets job's market ops)."""
    for result in results:
        yield dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(market.asset_name),
            check_name=result.check_name or "",
            passed=result.passed,
            metadata=result.metadata,
            severity=result.severity,
            description=result.description,
        )
