"""What the ``mytrader`` commands share: option blocks, checked option types, exit codes, JSON and table output."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mytrader_pipeline.core.limits import GLOBAL_MAX_CONCURRENCY, Bounds
from mytrader_pipeline.core.request_errors import (
    Conflict,
    DeploymentUnavailable,
    InvalidRequest,
    NotFound,
    RequestError,
)
from mytrader_pipeline.core.requests import check_sla_target, parse_hms

F = TypeVar("F", bound=Callable[..., Any])

# The service layer's errors as exit codes; anything else a command refuses is 1.
EXIT_CODES: dict[type[RequestError], int] = {InvalidRequest: 2, DeploymentUnavailable: 3, NotFound: 4, Conflict: 5}


def exit_code(error: RequestError) -> int:
    """The exit code of a refused request (``EXIT_CODES``; 1 for any other kind)."""
    return next((code for kind, code in EXIT_CODES.items() if isinstance(error, kind)), 1)


class BoundedInt(click.ParamType):
    """A whole number within ``bounds`` (the job config's), else a usage error (exit 2)."""

    name = "N"

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(value)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if number not in self.bounds:
            self.fail(f"{number} is outside {self.bounds}", param, ctx)
        return number


class Duration(click.ParamType):
    """An ``HH:MM:SS`` (or ``D.HH:MM:SS``) duration; for an SLA target, within the job config's minutes."""

    name = "HH:MM:SS"

    def __init__(self, *, sla: bool = False) -> None:
        self.sla = sla

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        flag = param.opts[0] if param is not None and param.opts else "value"
        try:
            duration = parse_hms(value, flag)
            if self.sla:
                check_sla_target(duration, flag)
        except InvalidRequest as exc:
            self.fail(exc.message.removeprefix(f"{flag}: "), param, ctx)
        return duration


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying ``decorators`` in the order listed (so the options show in that order in help)."""

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")

deployment_options = compose(
    click.option(
        "--url", metavar="URL", help="The deployment's web server (env MYTRADER_DAGSTER_URL; http://127.0.0.1:3000)."
    ),
    json_option,
)
"""``--url`` and ``--json``, as every command acting on the deployment takes them."""

wait_options = compose(
    click.option("--wait", is_flag=True, help="Follow the job until it ends; exit 1 if it fails."),
    click.option(
        "--poll", type=float, default=1.0, show_default=True, help="Seconds between status checks with --wait."
    ),
)
"""``--wait`` and ``--poll``: follow the launched job(s) until they end."""

all_markets_options = compose(
    click.option("--data-path", metavar="PATH", help="The DATA folder (default: the data root)."),
    click.option("--sequential", is_flag=True, help="Do not run markets in parallel."),
    click.option(
        "--global-max-concurrency",
        type=BoundedInt(GLOBAL_MAX_CONCURRENCY),
        help=f"Cap on markets and on each market's files at once, {GLOBAL_MAX_CONCURRENCY} (default 8).",
    ),
    click.option("--global-sla-target", type=Duration(), help="HH:MM:SS (default 02:00:00)."),
    click.option("--force", is_flag=True, help="Reload files whose content is unchanged."),
)
"""The settings of an all-markets import (``import-all`` and ``schedules add``)."""


def database_url_option(default: str = "the local SQLite warehouse ./.mytrader/warehouse.db") -> Callable[[F], F]:
    """``--database-url``: the warehouse, else ``MYTRADER_DATABASE_URL``, else ``default`` (said in the help)."""
    return click.option(
        "--database-url", metavar="URL", help=f"SQLAlchemy URL of the warehouse (env MYTRADER_DATABASE_URL; {default})."
    )


def emit(as_json: bool, payload: Any, text: str) -> None:
    """``payload`` as indented JSON with ``--json``, else ``text``, on stdout."""
    print(json.dumps(payload, indent=2, default=str) if as_json else text)


def print_table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> None:
    """A table on stdout: ``columns`` are (header, ``left`` or ``right``); wide rows wrap only on a terminal."""
    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or file: one line per row, however wide, as a script reading it expects
        console = Console(highlight=False, width=100_000)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header, justify in columns:
        table.add_column(header, justify="right" if justify == "right" else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))  # Text: a cell's [...] is data, never rich markup
    console.print(table)


def fail(message: str, code: int) -> int:
    """Print ``error: message`` on stderr and give ``code`` back to return as the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code
