"""``mytrader rejects``: the rejected rows of a market's current loads, from the warehouse (the REST API's listing)."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from mytrader_pipeline.cli.common import BoundedInt, database_url_option, emit, json_option, print_table
from mytrader_pipeline.core.limits import REJECTED_ROWS_DEFAULT, REJECTED_ROWS_LIMIT
from mytrader_pipeline.service.settings import ServiceSettings
from mytrader_pipeline.settings import default_database_url

RAW_LINE_WIDTH = 60  # characters of the raw line the table shows; --json has it whole


def _operations(database_url: str | None) -> Any:
    """The service layer on the warehouse of ``--database-url`` (else the settings', else the local SQLite one)."""
    # Lazy for speed: the service layer loads Dagster (~3 s), which `mytrader --help` need not pay.
    from mytrader_pipeline.service.operations import Operations

    settings = ServiceSettings.from_settings()
    url = database_url or settings.database_url or default_database_url()
    return Operations(dataclasses.replace(settings, database_url=url))


def shown(text: str, width: int | None = None) -> str:
    """``text`` as a table cell: unprintable characters written out (``\\x0d``, ``\\u2028``), cut to ``width``."""
    visible = "".join(c if c.isprintable() else _escaped(c) for c in text)
    if width is not None and len(visible) > width:
        visible = visible[: width - 1] + "…"
    return visible


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@click.command("rejects")
@click.option("--market", required=True, metavar="CODE", help="The market, e.g. BIST.")
@click.option("--file", "file", metavar="NAME", help="Only this file: THYAO.csv or BIST/THYAO.csv.")
@click.option(
    "--limit",
    type=BoundedInt(REJECTED_ROWS_LIMIT),
    default=REJECTED_ROWS_DEFAULT,
    show_default=True,
    help=f"At most this many rows, {REJECTED_ROWS_LIMIT}.",
)
@database_url_option()
@json_option
def rejects_command(market: str, file: str | None, limit: int, database_url: str | None, as_json: bool) -> int:
    """Rejected rows of the market's current loads (each file's latest successful load), newest load first.

    For each row: its file, line, column, check, reason and raw line (--json adds the load: file_import_id, run id
    and when). Exit 2 for an unknown market, 4 for a file never loaded in it.
    """
    found = _operations(database_url).rejected_rows(market, file, limit)
    if as_json:
        emit(True, found.as_json(), "")
        return 0
    columns = [("file", "left"), ("line", "right"), ("column", "left"), ("check", "left"), ("reason", "left"),
               ("raw line", "left")]  # fmt: skip
    print_table(
        columns,
        [
            (
                shown(row.partition_key),
                row.line_number,
                shown(row.column_name or "-"),
                shown(row.check_name),
                shown(row.reason),
                shown(row.raw_line, RAW_LINE_WIDTH),
            )
            for row in found.rows
        ],
    )
    where = f"{found.market} {file}" if file else found.market
    print(f"{len(found.rows)} of {found.total} rejected row(s) of {where}'s current loads")
    return 0


def register(group: click.Group) -> None:
    """Add ``rejects`` to the ``mytrader`` group."""
    group.add_command(rejects_command)
