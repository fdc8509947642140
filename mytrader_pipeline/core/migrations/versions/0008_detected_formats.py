"""file_imports: date_format, decimal_comma: what a load detected from the file's first lines, so an append whose
file still starts with those lines types its new lines as a full read would, without sampling them again."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two nullable columns (NULL on rows written before: the next append samples the file again)."""
    with op.batch_alter_table("file_imports") as table:
        table.add_column(sa.Column("date_format", sa.String(32)))
        table.add_column(sa.Column("decimal_comma", sa.Boolean))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("file_imports") as table:
        table.drop_column("decimal_comma")
        table.drop_column("date_format")
