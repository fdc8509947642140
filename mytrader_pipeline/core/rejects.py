"""Listing the rejected rows of a market's current loads: the query behind ``mytrader rejects`` and its REST twin.

A file's *current loads* are its current chain (``core.accounting.current_chain``): its latest succeeded full load
and the appends since, whose rows the warehouse holds. Only their rejected rows are listed. (A full load already
deletes a file's older rejections and an append keeps them; the query does not rely on it.) A failed load keeps no
rows, so the file's current loads stay the ones that succeeded.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.accounting import current_chain
from mytrader_pipeline.core.clock import as_utc
from mytrader_pipeline.core.db import file_imports, rejected_rows
from mytrader_pipeline.core.limits import REJECTED_ROWS_DEFAULT, REJECTED_ROWS_LIMIT
from mytrader_pipeline.core.request_errors import InvalidRequest, NotFound, UnknownMarket
from mytrader_pipeline.core.responses import RejectedRowResponse, RejectedRowsResponse
from mytrader_pipeline.markets import MarketRegistry


def list_rejected_rows(
    engine: Engine, registry: MarketRegistry, market: str, file: str | None = None, limit: int = REJECTED_ROWS_DEFAULT
) -> RejectedRowsResponse:
    """The rejected rows of ``market``'s current loads, newest load first, then by line; at most ``limit``.

    Args:
        engine: the warehouse (PostgreSQL or SQLite) with its schema.
        registry: the markets; ``market`` is one of its codes, in any case.
        market: the market code, e.g. ``BIST``.
        file: only this file: its partition key (``THYAO.csv``) or its path under the data root (``BIST/THYAO.csv``).
        limit: how many rows at most, within ``REJECTED_ROWS_LIMIT``.

    Raises:
        UnknownMarket: ``market`` is not in the registry.
        InvalidRequest: ``limit`` is outside its bounds.
        NotFound: ``file`` was never loaded successfully in this market.
    """
    if market.upper() not in registry.codes:
        raise UnknownMarket(f"market: unknown market {market!r}; one of {', '.join(registry.codes)}")
    if limit not in REJECTED_ROWS_LIMIT:
        raise InvalidRequest(f"limit: {limit} is outside {REJECTED_ROWS_LIMIT}")
    code = registry.get(market).code
    current = _current_loads(code, file)
    r, f = rejected_rows.c, current.c
    rows = (
        sa.select(
            r.source_file,
            f.partition_key,
            r.file_import_id,
            f.run_id,
            f.finished_at.label("loaded_at"),
            r.line_number,
            r.column_name,
            r.check_name,
            r.reason,
            r.raw_line,
        )
        .join(current, f.id == r.file_import_id)
        .where(r.market == code)
        .order_by(f.finished_at.desc(), f.id.desc(), r.line_number, r.id)
        .limit(limit)
    )
    total = sa.select(sa.func.count()).select_from(rejected_rows.join(current, f.id == r.file_import_id))
    with engine.connect() as conn:
        found = [_row(row) for row in conn.execute(rows)]
        count = int(conn.execute(total.where(r.market == code)).scalar_one())
        if file is not None and not count and not _was_loaded(conn, current):
            raise NotFound(f"file: no successful load of {file!r} in market {code}")
    return RejectedRowsResponse(market=code, file=file, limit=limit, total=count, rows=found)


def _current_loads(market: str, file: str | None) -> sa.Subquery:
    """The current loads of each file of ``market`` (of ``file`` only, if given): its latest succeeded full load
    and the appends since."""
    t = file_imports.c
    chain = current_chain(market).subquery("chain")
    ids = sa.select(chain.c.id)
    if file is not None:
        ids = ids.where(sa.or_(chain.c.partition_key == file, chain.c.source_file == file))
    return sa.select(t.id, t.partition_key, t.run_id, t.finished_at).where(t.id.in_(ids)).subquery("current_loads")


def _was_loaded(conn: sa.Connection, current: sa.Subquery) -> bool:
    return conn.execute(sa.select(sa.func.count()).select_from(current)).scalar_one() > 0


def _row(row: sa.Row[Any]) -> RejectedRowResponse:
    return RejectedRowResponse.model_validate({**row._mapping, "loaded_at": as_utc(row.loaded_at)})
