"""Dagster resources: the warehouse database and the data root, configured from the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import Engine

from mytrader_pipeline.core.db import shared_engine
from mytrader_pipeline.core.loading import Warehouse


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
        return shared_engine(self.database_url)

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
