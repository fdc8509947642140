"""dead_letter_queue: one item per failed run and market (was: per run), so a run over several markets' assets (the
UI's Materialize or a backfill) leaves one item per market, keyed by market and file like a market's import."""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# 0003 created the run_id unique constraint unnamed: PostgreSQL named it; on SQLite a naming convention names it for
# the batch (copy-and-move) migration, which is the only way SQLite drops a constraint.
_PG_RUN_ID_UNIQUE = "dead_letter_queue_run_id_key"
_SQLITE_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_SQLITE_RUN_ID_UNIQUE = "uq_dead_letter_queue_run_id"
RUN_MARKET_UNIQUE = "uq_dlq_run_market"


def _run_id_unique() -> tuple[str, dict[str, dict[str, str]]]:
    if op.get_bind().dialect.name == "postgresql":
        return _PG_RUN_ID_UNIQUE, {}
    return _SQLITE_RUN_ID_UNIQUE, {"naming_convention": _SQLITE_NAMING}


def upgrade() -> None:
    """Replace the unique run_id by a unique (run_id, market)."""
    name, options = _run_id_unique()
    with op.batch_alter_table("dead_letter_queue", **options) as table:  # type: ignore[arg-type]
        table.drop_constraint(name, type_="unique")
        table.create_unique_constraint(RUN_MARKET_UNIQUE, ["run_id", "market"])


def downgrade() -> None:
    """Back to one item per run (fails while a run has items of several markets)."""
    name, options = _run_id_unique()
    with op.batch_alter_table("dead_letter_queue", **options) as table:  # type: ignore[arg-type]
        table.drop_constraint(RUN_MARKET_UNIQUE, type_="unique")
        table.create_unique_constraint(name, ["run_id"])
