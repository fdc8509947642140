"""The warehouse's alembic migrations, shipped in the package (env.py, versions/) and the Config that runs them."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy.engine import Connection

SCRIPT_LOCATION = Path(__file__).parent
# Not alembic's default `alembic_version`: Dagster's own storage keeps that table, possibly in the same database.
VERSION_TABLE = "mytrader_alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code (no alembic.ini): run on ``connection`` when one is given.

    Without a connection, env.py connects to ``-x url=...`` (the command line of ``__main__``).
    """
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config
