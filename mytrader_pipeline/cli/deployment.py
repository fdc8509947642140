"""``mytrader instance-config``: the deployment's ``dagster.yaml``, generated from the market registry."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mytrader_pipeline.instance_config import render_dev_instance_config, render_instance_config
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import get_settings


@click.command("instance-config")
@click.option("--write", metavar="FILE", type=click.Path(path_type=Path),
              help="Write it to FILE (e.g. $DAGSTER_HOME/dagster.yaml or deploy/dagster.yaml).")  # fmt: skip
@click.option("--check", metavar="FILE", type=click.Path(path_type=Path),
              help="Exit 1 if FILE differs from what would be generated.")  # fmt: skip
@click.option("--dev", is_flag=True,
              help="The checkout's own dagster.yaml for `dagster dev` (embedded storage in ./.mytrader).")  # fmt: skip
def instance_config_command(write: Path | None, check: Path | None, dev: bool) -> int:
    """Print, write or check dagster.yaml.

    PostgreSQL storage, and run queue limits from the market registry.
    """
    if write and check:
        raise click.UsageError("--write and --check cannot be used together")
    render = render_dev_instance_config if dev else render_instance_config
    text = render(load_markets(get_settings().markets_file))
    if check:
        if not check.is_file() or check.read_text("utf-8") != text:
            print(f"{check} is out of date: run `mytrader instance-config --write {check}`", file=sys.stderr)
            return 1
        return 0
    if write:
        write.write_text(text, "utf-8")
        print(f"wrote {write}", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0


def register(group: click.Group) -> None:
    """Add this module's commands to the ``mytrader`` group."""
    group.add_command(instance_config_command)
