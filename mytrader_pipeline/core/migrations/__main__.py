"""`python -m mytrader_pipeline.core.migrations`: alembic's command line on the shipped migrations, no alembic.ini."""

from __future__ import annotations

import sys

from alembic.config import CommandLine

from mytrader_pipeline.core.migrations import alembic_config


def main(argv: list[str] | None = None) -> None:
    """Parse alembic's arguments (``revision``, ``history``, ``upgrade --sql -x url=...``) and run the command."""
    cli = CommandLine(prog="python -m mytrader_pipeline.core.migrations")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    config = alembic_config()
    config.cmd_opts = options
    cli.run_cmd(config, options)


if __name__ == "__main__":
    main(sys.argv[1:])
