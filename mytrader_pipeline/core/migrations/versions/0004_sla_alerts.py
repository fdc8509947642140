"""sla_alerts: SLA alerts raised by the SLA monitor sensor, at most one unresolved per scope."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create sla_alerts and its partial unique index on the open alerts' scopes."""
    op.create_table(
        "sla_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("alert_type", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("market", sa.String(16)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("measured_value", sa.Double, nullable=False),
        sa.Column("threshold", sa.Double, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolution", sa.Text),
        sa.Column("notified_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("severity IN ('medium', 'high', 'critical')", name="ck_sla_alerts_severity"),
    )
    op.create_index(
        "uq_sla_alerts_active_scope",
        "sla_alerts",
        ["scope"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
        sqlite_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_sla_alerts_first_seen", "sla_alerts", ["first_seen"])


def downgrade() -> None:
    """Drop sla_alerts."""
    op.drop_table("sla_alerts")
