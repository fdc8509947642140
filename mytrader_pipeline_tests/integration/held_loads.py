"""Holding a file's load mid-file, whatever the machine's speed: a row of it inserted by a transaction left open."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import psycopg

from mytrader_pipeline.core.db import ensure_schema, make_engine


@contextlib.contextmanager
def held_in_flight(url: str, name: str, day: dt.date = dt.date(2015, 1, 1)) -> Iterator[None]:
    """Hold the load of NASDAQ file ``name`` mid-file until the block ends.

    Another transaction inserts the file's row of ``day`` and stays open: the loader's write of that row waits on the
    table's key. The file in flight is then really in flight (its transaction open, rows sent), whatever the speed
    of the machine. Rolled back at the end, that row leaves nothing.
    """
    engine = make_engine(url, pool_size=1)
    ensure_schema(engine)  # what the run's warehouse resource does first; here before the run, to insert the row
    engine.dispose()
    symbol = name.removesuffix(".csv")
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO historical_market_data (market, symbol, timeframe, trade_date, close, currency, data_source, "
            "source_priority, quality_score, source_file, source_line, run_id) "
            "VALUES ('NASDAQ', %s, '1d', %s, 1, 'USD', 'test', 1, 100, %s, 2, 'held-in-flight')",
            (symbol, day, f"NASDAQ/{name}"),
        )
        try:
            yield
        finally:
            conn.rollback()


def waiting_loads(url: str) -> int:
    """How many sessions of the warehouse wait on a lock (a load held by ``held_in_flight``)."""
    with psycopg.connect(url, autocommit=True) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return int(conn.execute(query).fetchone()[0])
