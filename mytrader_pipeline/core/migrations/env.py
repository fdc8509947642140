"""Alembic's entry point: runs the migrations on the connection ensure_schema hands over, or on ``-x url=...``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mytrader_pipeline.core.db import make_engine, metadata, normalize_url
from mytrader_pipeline.core.migrations import VERSION_TABLE


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite alters a table by copying it: autogenerate writes batch operations for it
        compare_server_default=True,
    )
    with context.begin_transaction():  # joins the caller's transaction when there is one (ensure_schema's)
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the warehouse as -x url=postgresql://... (or sqlite:///path)")
    return normalize_url(url)


def run() -> None:
    """Run the migrations alembic was asked for: on a connection, or as SQL text (``--sql``, offline mode)."""
    if context.is_offline_mode():
        context.configure(url=_url(), version_table=VERSION_TABLE, literal_binds=True, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = make_engine(_url(), pool_size=1)
    try:
        with engine.begin() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


run()
