"""Schema ownership on PostgreSQL: a new database is created whole, an older one is upgraded, a newer one refused."""

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import MIGRATIONS, SCHEMA_VERSION, ensure_schema

APPEND_COLUMNS = ("line_count", "ends_with_newline", "load_mode", "extends_import_id")


def ingested_at_default(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_name = 'historical_market_data' AND column_name = 'ingested_at'"
            )
        ).scalar_one()


def versions(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version FROM mytrader_schema_version ORDER BY version")).scalars())


def test_a_new_database_gets_every_version_and_the_latest_schema(pg_engine: sa.Engine) -> None:
    assert versions(pg_engine) == [number for number, _, _ in MIGRATIONS]
    assert ingested_at_default(pg_engine) == "now()"
    assert ensure_schema(pg_engine) == SCHEMA_VERSION  # a second call is a no-op


def test_a_database_of_the_previous_version_is_upgraded_by_its_pending_migration(pg_engine: sa.Engine) -> None:
    with pg_engine.begin() as conn:  # the database as the previous release left it
        conn.execute(sa.text("ALTER TABLE historical_market_data ALTER COLUMN ingested_at DROP DEFAULT"))
        for column in APPEND_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE file_imports DROP COLUMN {column}"))
        conn.execute(sa.text("DELETE FROM mytrader_schema_version WHERE version >= :v"), {"v": SCHEMA_VERSION - 1})
    assert ingested_at_default(pg_engine) is None

    assert ensure_schema(pg_engine) == SCHEMA_VERSION
    assert ingested_at_default(pg_engine) == "now()"
    assert set(APPEND_COLUMNS) <= {c["name"] for c in sa.inspect(pg_engine).get_columns("file_imports")}
    assert versions(pg_engine)[-1] == SCHEMA_VERSION
    with pg_engine.begin() as conn:  # the COPY fast path leaves the column out: the transaction's time fills it
        conn.execute(
            sa.text(
                "INSERT INTO historical_market_data (market, symbol, timeframe, trade_date, close, currency,"
                " data_source, source_priority, quality_score, source_file, source_line, run_id)"
                " VALUES ('NYSE', 'IBM', '1d', '2024-01-02', 1.0, 'USD', 's', 5, 100, 'NYSE/IBM.csv', 2, 'r')"
            )
        )
        same = conn.execute(sa.text("SELECT ingested_at = now() FROM historical_market_data")).scalar_one()
    assert same


def test_a_database_newer_than_the_code_is_refused(pg_engine: sa.Engine) -> None:
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO mytrader_schema_version (version, description, applied_at) VALUES (:v, 'x', now())"),
            {"v": SCHEMA_VERSION + 1},
        )
    with pytest.raises(RuntimeError, match="newer than this code"):
        ensure_schema(pg_engine)
