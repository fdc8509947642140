"""Where state lives by default: the local state folder, the embedded SQLite warehouse, the local Dagster home."""

from __future__ import annotations

from pathlib import Path

STATE_DIR_NAME = ".mytrader"


def state_dir(base: Path | None = None) -> Path:
    """The project's local state folder (``./.mytrader`` under the working directory unless ``base`` is given)."""
    return (base or Path.cwd()) / STATE_DIR_NAME


def default_database_url(base: Path | None = None) -> str:
    """The embedded default warehouse: a SQLite file in the local state folder."""
    return f"sqlite:///{(state_dir(base) / 'warehouse.db').resolve()}"


def default_data_root(base: Path | None = None) -> Path:
    """Where the quickstart generates its sample tree."""
    return state_dir(base) / "data"


def default_dagster_home(base: Path | None = None) -> Path:
    """The Dagster home used when ``DAGSTER_HOME`` is not set."""
    return state_dir(base) / "dagster_home"
