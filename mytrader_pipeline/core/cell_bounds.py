"""What one cell of a warehouse price row can hold, derived once from the table definition in ``core.db``."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from mytrader_pipeline.core.db import historical_market_data
from mytrader_pipeline.core.formats import BIST_EXTRA_NUMERIC, BIST_EXTRA_TEXT, PRICE_COLUMNS

# The price-row columns a file fills (the others are provenance the loader sets).
_FROM_FILE: dict[str, sa.Column[object]] = {
    name: historical_market_data.c[name] for name in ("symbol", *PRICE_COLUMNS, *BIST_EXTRA_TEXT, *BIST_EXTRA_NUMERIC)
}

# Text column -> its varchar length; PostgreSQL refuses a longer value (it counts characters) and fails the file.
TEXT_LENGTHS: dict[str, int] = {
    name: column.type.length
    for name, column in _FROM_FILE.items()
    if isinstance(column.type, sa.String) and column.type.length is not None
}
# float8 columns: PostgreSQL stores NaN and Infinity in them, but they are no prices: only finite numbers are kept.
FLOAT_COLUMNS: tuple[str, ...] = tuple(name for name, column in _FROM_FILE.items() if isinstance(column.type, sa.Float))
# Every whole number up to 2**53 fits a float8's significand exactly; a volume (shares or coins traded, stored as a
# float8) above that would be stored rounded, and is no real day's trading.
FLOAT8_EXACT_WHOLE = 2**53
MAXIMUMS: dict[str, float] = {"volume": float(FLOAT8_EXACT_WHOLE)}
# Trade dates before this are typos (a year 0001, 0202); the upper bound is today (no future rows).
MIN_TRADE_DATE = dt.date(1900, 1, 1)
# C0 control characters except tab (NUL, BEL, ESC, a carriage return inside a cell ...): no cell of a price row holds
# one, and PostgreSQL text cannot hold NUL at all. For polars' ``str.contains_any`` (a byte-set search, 4x faster than
# the regex) and, on the few rows found, ``CONTROL_CHARACTER_CLASS`` to name the first one.
CONTROL_CHARACTERS: tuple[str, ...] = tuple(chr(code) for code in range(0x20) if chr(code) != "\t")
CONTROL_CHARACTER_CLASS = "[" + "".join(f"\\x{ord(c):02X}" for c in CONTROL_CHARACTERS) + "]"
