"""The ``mytrader`` command: a click group; each module of this package adds its commands with ``register(group)``."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import click
import pydantic

from mytrader_pipeline.cli import deployment, dlq, ingest, jobs, monitoring, rejects, worker
from mytrader_pipeline.cli.common import exit_code, fail
from mytrader_pipeline.core.request_errors import RequestError
from mytrader_pipeline.markets import MarketConfigError
from mytrader_pipeline.settings import SettingsError

# Each module adds its commands; a new group of commands is a new module listed here.
COMMAND_MODULES = [ingest, jobs, deployment, dlq, monitoring, rejects, worker]


class MytraderGroup(click.Group):
    """The top group: a command's return value is the exit code; refused requests and bad settings exit in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RequestError as exc:  # the service layer refused: its message and the exit code of its kind
            ctx.exit(fail(exc.message, exit_code(exc)))
        except MarketConfigError as exc:
            ctx.exit(fail(f"bad market registry: {' '.join(str(exc).split())}", 2))  # a YAML error spans lines
        except SettingsError as exc:  # names each bad variable already
            ctx.exit(fail(f"bad setting: {exc}", 2))
        except pydantic.ValidationError as exc:
            ctx.exit(fail(f"bad setting: {_settings_error(exc)}", 2))


@click.group(cls=MytraderGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
def cli() -> None:
    """MyTrader market-data batch ingest.

    Local commands (run, db, dlq list|show|discard, stats, health, alerts, rejects) use the warehouse of
    --database-url or MYTRADER_DATABASE_URL; deployment commands (import, import-all, status, cancel, retry,
    schedules, dlq replay) act on the running deployment of --url or MYTRADER_DAGSTER_URL.

    Exit codes: 0 done; 1 a job or file failed (or, for health, unhealthy); 2 usage or configuration error, bad
    request; 3 deployment or warehouse unreachable; 4 no such job, schedule or item; 5 not possible in its state.
    """


@cli.result_callback()
@click.pass_context
def _exit_with(ctx: click.Context, code: int | None) -> None:
    """Every command returns its exit code (through ``dlq``, ``db`` and ``schedules`` too): exit with it."""
    ctx.exit(int(code or 0))


for _module in COMMAND_MODULES:
    _module.register(cli)


def _settings_error(error: pydantic.ValidationError) -> str:
    """A settings validation error as one line: each bad setting and why."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or error.title}: {e['msg']}" for e in error.errors())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mytrader`` command: its exit code (usage and configuration errors are 2, in one line)."""
    warnings.filterwarnings("ignore", module="dagster")
    try:
        cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="mytrader")
    except SystemExit as exc:  # click's standalone mode ends every command, usage errors included, this way
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
