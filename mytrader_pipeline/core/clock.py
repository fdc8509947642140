"""The time: now in UTC, and stored times read back as UTC (SQLite returns them naive)."""

from __future__ import annotations

import datetime as dt
from typing import overload


def utc_now() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


@overload
def as_utc(value: dt.datetime) -> dt.datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` with its time zone: a naive time (SQLite's, or Dagster's storage) is UTC, as everything stored is."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value
