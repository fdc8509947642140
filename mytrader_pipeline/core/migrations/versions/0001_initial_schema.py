"""Initial schema: historical_market_data, file_imports, rejected_rows (version 1 of the old version table)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Autoincrementing ids: BIGINT on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY is SQLite's rowid).
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_NUMERIC_EXTRAS = (
    "index_value",
    "usd_try",
    "usd_price",
    "index_based_price",
    "usd_volume",
    "paid_in_capital",
    "vwap",
    "market_cap",
    "market_cap_usd",
    "free_float_market_cap",
    "free_float_market_cap_usd",
    "usd_low",
    "usd_high",
    "usd_vwap",
)


def upgrade() -> None:
    """Create the three tables of the first release, as that release defined them."""
    op.create_table(
        "historical_market_data",
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("trade_date", sa.Date, nullable=False),
        *[sa.Column(name, sa.Double, nullable=name != "close") for name in ("open", "high", "low", "close")],
        sa.Column("adj_close", sa.Double),
        sa.Column("volume", sa.Double),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("data_source", sa.String(64), nullable=False),
        sa.Column("source_priority", sa.SmallInteger, nullable=False),
        sa.Column("quality_score", sa.SmallInteger, nullable=False),
        sa.Column("source_file", sa.String(512), nullable=False),
        sa.Column("source_line", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),  # default now() from 0005
        sa.Column("index_code", sa.String(32)),
        *[sa.Column(name, sa.Double) for name in _NUMERIC_EXTRAS],
        sa.PrimaryKeyConstraint("market", "symbol", "timeframe", "trade_date", name="pk_historical_market_data"),
        sa.CheckConstraint("quality_score BETWEEN 0 AND 100", name="ck_hmd_quality_score"),
    )
    op.create_table(
        "file_imports",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("partition_key", sa.String(512), nullable=False),
        sa.Column("source_file", sa.String(512), nullable=False),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("file_format", sa.String(32)),
        sa.Column("encoding", sa.String(16)),
        sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_loaded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_written", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("date_min", sa.Date),
        sa.Column("date_max", sa.Date),
        sa.Column("quality_score", sa.Double),
        sa.Column("duration_seconds", sa.Double),
        sa.Column("rows_per_second", sa.Double),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(32)),
        sa.Column("error_message", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status <> 'succeeded' OR rows_read = rows_loaded + rows_rejected", name="ck_file_imports_accounting"
        ),
    )
    op.create_index("ix_file_imports_file", "file_imports", ["market", "source_file", "finished_at"])
    op.create_index("ix_file_imports_run", "file_imports", ["run_id"])
    op.create_table(
        "rejected_rows",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("file_import_id", sa.BigInteger, nullable=False),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("source_file", sa.String(512), nullable=False),
        sa.Column("line_number", sa.Integer, nullable=False),
        sa.Column("column_name", sa.String(64)),
        sa.Column("check_name", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw_line", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rejected_rows_file", "rejected_rows", ["market", "source_file"])


def downgrade() -> None:
    """Drop them (and their rows)."""
    op.drop_table("rejected_rows")
    op.drop_table("file_imports")
    op.drop_table("historical_market_data")
