"""Dagster resources: the warehouse database and the data root, configured from the environment."""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.loading import Warehouse


@functools.cache
def _engine(url: str) -> Engine:
    # One engine (and pool) per URL per process; the schema is created or upgraded on first use.
    engine = make_engine(url)
    ensure_schema(engine)
    return engine


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse database (``MYTRADER_DATABASE_URL``: any SQLAlchemy URL; PostgreSQL gets COPY)."""

    database_url: str
    synchronous_commit: bool = Field(
        default=False,
        description="Wait for each file's commit to reach the disk (PostgreSQL). Off: a database crash can lose "
        "the last moments' files whole, audit rows included, and the next import reloads them.",
    )

    def engine(self) -> Engine:
        """The shared engine for this URL, schema ensured."""
        return _engine(self.database_url)

    def warehouse(self) -> Warehouse:
        """A writer over the shared engine."""
        return Warehouse(self.engine(), synchronous_commit=self.synchronous_commit)


class DataRootResource(dg.ConfigurableResource):
    """The folder holding one sub-folder per market (``MYTRADER_DATA_ROOT``); all file access stays inside it."""

    data_root: str

    @property
    def path(self) -> Path:
        """The data root, resolved."""
        return Path(self.data_root).expanduser().resolve()
