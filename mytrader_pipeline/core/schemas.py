"""Pandera (polars) schemas: the row rules every accepted price row satisfies."""

from __future__ import annotations

import datetime as dt
import functools

import pandera.polars as pa
import polars as pl

from mytrader_pipeline.core.cell_bounds import MIN_TRADE_DATE

_PRICES = ("open", "high", "low", "close", "adj_close")


def _both_present(a: str, b: str) -> pl.Expr:
    return pl.col(a).is_null() | pl.col(b).is_null()


def _ordered(name: str, upper: str, lower: str) -> pa.Check:
    """A row check that ``upper >= lower`` wherever both are present."""
    return pa.Check(
        lambda data: data.lazyframe.select(_both_present(upper, lower) | (pl.col(upper) >= pl.col(lower))),
        name=name,
    )


# Check name -> the sentence an operator reads in rejected_rows.reason.
CHECK_MESSAGES: dict[str, str] = {
    "not_nullable": "required value missing",
    "greater_than": "must be > 0",
    "greater_than_or_equal_to": "must be >= 0",
    "less_than_or_equal_to": "date is in the future",
    "date_range": f"date is before {MIN_TRADE_DATE}",
    "high_gte_open": "high is below open",
    "high_gte_close": "high is below close",
    "high_gte_low": "high is below low",
    "low_lte_open": "low is above open",
    "low_lte_close": "low is above close",
}
# Row-level checks have no column of their own in pandera's report; this names the one at fault.
CHECK_COLUMNS: dict[str, str] = {
    "high_gte_open": "high",
    "high_gte_close": "high",
    "high_gte_low": "high",
    "low_lte_open": "low",
    "low_lte_close": "low",
}


@functools.lru_cache(maxsize=8)
def price_row_schema(today: dt.date) -> pa.DataFrameSchema:
    """The schema of canonical price rows; ``today`` bounds trade dates (no future rows)."""
    positive = [pa.Check.gt(0)]
    columns = {name: pa.Column(pl.Float64, positive, nullable=name != "close") for name in _PRICES}
    columns["volume"] = pa.Column(pl.Float64, [pa.Check.ge(0)], nullable=True)
    not_too_old = pa.Check(lambda data: data.lazyframe.select(pl.col(data.key) >= MIN_TRADE_DATE), name="date_range")
    columns["trade_date"] = pa.Column(pl.Date, [pa.Check.le(today), not_too_old], nullable=False)
    columns["symbol"] = pa.Column(pl.String, nullable=False)
    return pa.DataFrameSchema(
        columns,
        checks=[
            _ordered("high_gte_open", "high", "open"),
            _ordered("high_gte_close", "high", "close"),
            _ordered("high_gte_low", "high", "low"),
            _ordered("low_lte_open", "open", "low"),
            _ordered("low_lte_close", "close", "low"),
        ],
        strict=False,
        name="price_rows",
    )
