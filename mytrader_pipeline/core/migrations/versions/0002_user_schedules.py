"""user_schedules: all-markets import schedules added at run time through the CLI or the REST API."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create user_schedules."""
    op.create_table(
        "user_schedules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("cron_expression", sa.String(120), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("import_request", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop user_schedules."""
    op.drop_table("user_schedules")
