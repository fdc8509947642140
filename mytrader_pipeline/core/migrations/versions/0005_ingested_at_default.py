"""historical_market_data.ingested_at defaults to now(): the COPY fast path leaves the column to the server."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Set the default: ALTER on PostgreSQL; on SQLite, which cannot alter a default, by copying the table."""
    with op.batch_alter_table("historical_market_data") as table:
        table.alter_column("ingested_at", server_default=sa.func.now())


def downgrade() -> None:
    """Drop the default."""
    with op.batch_alter_table("historical_market_data") as table:
        table.alter_column("ingested_at", server_default=None)
