"""Files with hostile rows load on real PostgreSQL (COPY) and SQLite: the file succeeds, its good rows are in the
table, every hostile row is in rejected_rows with its reason and raw line (a NUL written as \\x00), nothing retried."""

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.accounting import accounting_issues
from mytrader_pipeline.core.db import file_imports, historical_market_data, rejected_rows
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.errors import ErrorClass
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.core.retry import BackoffSchedule, decide
from mytrader_pipeline.markets import Market, load_markets
from mytrader_pipeline_tests.unit.test_row_problems import BIST, GOOD_VALUES, HOSTILE, STANDARD, Layout, _cell

TODAY = dt.date(2024, 6, 28)
MARKETS = load_markets()
GOOD_DAYS = [dt.date(2024, 5, 1) + dt.timedelta(days=i) for i in range(9)]
# (layout, market, file name)
CASES = [(BIST, MARKETS.get("BIST"), "THYAO.csv"), (STANDARD, MARKETS.get("NYSE"), "IBM.csv")]


def _hostile_file(root: Path, layout: Layout, market: Market, name: str) -> dict[int, tuple[str, str, str]]:
    """Write 9 good rows with every hostile row between them; returns line number -> (check, phrase, raw line)."""
    lines: list[str] = []
    bad: dict[int, tuple[str, str, str]] = {}
    for i, (field, cell, check, phrase) in enumerate(HOSTILE.values()):
        if i < len(GOOD_DAYS):
            lines.append(layout.line(GOOD_DAYS[i]))
        lines.append(layout.line(dt.date(2024, 6, 1) + dt.timedelta(days=i), **{field: _cell(layout, field, cell)}))
        bad[len(lines) + 1] = (check, phrase, lines[-1])  # line 1 is the header
    layout.write(root / market.folder / name, lines)
    return bad


def _import(engine: sa.Engine, root: Path, market: Market) -> list[FileResult]:
    importer = MarketImporter(Warehouse(engine), market, "run-1", ImportOptions(today=TODAY))
    return importer.run(scan_market(root, market))


def _select(engine: sa.Engine, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


@pytest.mark.parametrize(("layout", "market", "name"), CASES, ids=["bist", "standard"])
def test_a_file_with_hostile_rows_loads_its_good_rows_and_stores_every_rejection(
    any_engine: sa.Engine, data_root: Path, layout: Layout, market: Market, name: str
) -> None:
    bad = _hostile_file(data_root, layout, market, name)
    (result,) = _import(any_engine, data_root, market)
    assert (result.status, result.error) == ("succeeded", None)
    assert result.outcome is not None
    assert (result.outcome.rows_read, result.outcome.rows_loaded, result.outcome.rows_rejected) == (
        len(GOOD_DAYS) + len(HOSTILE),
        len(GOOD_DAYS),
        len(HOSTILE),
    )

    t = historical_market_data.c
    prices = [t.open, t.high, t.low, t.close, t.adj_close, t.volume]
    rows = _select(any_engine, sa.select(t.symbol, t.trade_date, *prices).order_by(t.trade_date))
    symbol = layout.base["HisseKodu"]
    assert rows == [(symbol, day, *GOOD_VALUES.values()) for day in GOOD_DAYS]

    r = rejected_rows.c
    stored = _select(any_engine, sa.select(r.line_number, r.check_name, r.reason, r.raw_line).order_by(r.line_number))
    assert [(line, check) for line, check, _, _ in stored] == [(line, b[0]) for line, b in bad.items()]
    for (line, _, reason, raw_line), (check, phrase, raw) in zip(stored, bad.values(), strict=True):
        assert phrase in reason, (line, check, reason)
        assert raw_line == raw.replace("\x00", "\\x00")  # nothing of the line lost, NUL written out
    nul_lines = [raw_line for _, _, _, raw_line in stored if "\\x00" in raw_line]
    assert len(nul_lines) == 2  # the NUL in a symbol and the NUL in a price
    assert accounting_issues(any_engine, "run-1") == []
    audit = _select(any_engine, sa.select(file_imports.c.status, file_imports.c.error_class))
    assert audit == [("succeeded", None)]


def test_a_data_error_the_database_still_raises_is_rejected_by_database_and_not_retried(
    pg_engine: sa.Engine, data_root: Path
) -> None:
    # A provenance value longer than its column: nothing a row check sees, refused by PostgreSQL alone.
    market = dataclasses.replace(MARKETS.get("NYSE"), currency="DOLLARS-US")  # varchar(8)
    STANDARD.write(data_root / market.folder / "IBM.csv", [STANDARD.line(day) for day in GOOD_DAYS])
    (result,) = _import(pg_engine, data_root, market)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.error_class is ErrorClass.REJECTED_BY_DATABASE
    assert not result.error.retryable
    assert not decide([result.error], 0, BackoffSchedule.for_market(market)).retry
    assert _select(pg_engine, sa.select(historical_market_data.c.symbol)) == []
    audit = _select(pg_engine, sa.select(file_imports.c.status, file_imports.c.error_class))
    assert audit == [("failed", "rejected_by_database")]
