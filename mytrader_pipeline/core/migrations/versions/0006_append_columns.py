"""file_imports: line_count, ends_with_newline, load_mode, extends_import_id: what each load read, so a file that
only grew loads just its new lines (core.appending)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the four nullable columns (NULL on the rows written before: a full load, with nothing to resume from)."""
    with op.batch_alter_table("file_imports") as table:
        table.add_column(sa.Column("line_count", sa.Integer))
        table.add_column(sa.Column("ends_with_newline", sa.Boolean))
        table.add_column(sa.Column("load_mode", sa.String(8)))
        table.add_column(sa.Column("extends_import_id", sa.BigInteger))


def downgrade() -> None:
    """Drop the four columns."""
    with op.batch_alter_table("file_imports") as table:
        table.drop_column("extends_import_id")
        table.drop_column("load_mode")
        table.drop_column("ends_with_newline")
        table.drop_column("line_count")
