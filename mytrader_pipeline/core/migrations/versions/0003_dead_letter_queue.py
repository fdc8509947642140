"""dead_letter_queue: one item per failed run, fed by the run-failure sensor, replayed or resolved or discarded."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create dead_letter_queue."""
    op.create_table(
        "dead_letter_queue",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, unique=True),
        sa.Column("job_name", sa.String(128), nullable=False),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("partition_keys", sa.JSON, nullable=False),
        sa.Column("source_files", sa.JSON, nullable=False),
        sa.Column("failed_files", sa.JSON, nullable=False),
        sa.Column("error_class", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("stack_trace", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("retryable", sa.Boolean, nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_ids", sa.JSON, nullable=False),
        sa.Column("run_config", sa.JSON, nullable=False),
        sa.Column("run_tags", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replay_run_ids", sa.JSON, nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_by_run_id", sa.String(64)),
        sa.Column("discarded_at", sa.DateTime(timezone=True)),
        sa.Column("discarded_by", sa.String(128)),
        sa.Column("discard_reason", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('open', 'replayed', 'resolved', 'discarded')", name="ck_dlq_status"),
        sa.CheckConstraint("status <> 'discarded' OR discard_reason IS NOT NULL", name="ck_dlq_discard_reason"),
    )
    op.create_index("ix_dlq_status_market", "dead_letter_queue", ["status", "market"])


def downgrade() -> None:
    """Drop dead_letter_queue."""
    op.drop_table("dead_letter_queue")
