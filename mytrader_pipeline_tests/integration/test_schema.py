"""Schema ownership by alembic: a new database gets every revision, an older one its pending ones, a newer one is
refused, one of the old version table is adopted, and concurrent upgrades are safe."""

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mytrader_pipeline.core.db import (
    LEGACY_VERSION_TABLE,
    current_version,
    ensure_schema,
    head_revision,
    make_engine,
    metadata,
    schema_version,
)
from mytrader_pipeline.core.migrations import VERSION_TABLE, alembic_config

# The old mechanism's steps, as its list described them: version -> (description, tables it created).
OLD_STEPS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: (
        "initial schema: historical_market_data, file_imports, rejected_rows",
        ("historical_market_data", "file_imports", "rejected_rows"),
    ),
    2: ("user_schedules", ("user_schedules",)),
    3: ("dead_letter_queue", ("dead_letter_queue",)),
    4: ("sla_alerts", ("sla_alerts",)),
    5: ("historical_market_data.ingested_at defaults to now()", ()),
}
APPEND_COLUMNS = ("line_count", "ends_with_newline", "load_mode", "extends_import_id")
DETECTED_COLUMNS = ("date_format", "decimal_comma")  # revision 0008
DLQ_RUN_MARKET_UNIQUE = "uq_dlq_run_market"  # revision 0007; before it, run_id alone was unique
OLD_VERSION_TABLE = sa.Table(
    LEGACY_VERSION_TABLE,
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def old_release_database(engine: sa.Engine, version: int) -> None:
    """The database a release of the old mechanism at ``version`` left: its tables and its version rows."""
    with engine.begin() as conn:
        for number in range(1, version + 1):
            for name in OLD_STEPS[number][1]:
                old_table(name).create(conn)
        if version >= 1:  # no old release had the append columns (revision 0006) nor the detected formats (0008)
            for column in (*APPEND_COLUMNS, *DETECTED_COLUMNS):
                conn.execute(sa.text(f"ALTER TABLE file_imports DROP COLUMN {column}"))
        if version < 5 and conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE historical_market_data ALTER COLUMN ingested_at DROP DEFAULT"))
        OLD_VERSION_TABLE.create(conn)
        conn.execute(
            sa.insert(OLD_VERSION_TABLE),
            [
                {"version": n, "description": OLD_STEPS[n][0], "applied_at": dt.datetime.now(dt.UTC)}
                for n in range(1, version + 1)
            ],
        )


def old_table(name: str) -> sa.Table:
    """The table as the releases before revision 0007 created it: the dead-letter queue's run_id alone unique."""
    table = metadata.tables[name]
    if name != "dead_letter_queue":
        return table
    old = table.to_metadata(sa.MetaData())
    old.constraints = {c for c in old.constraints if c.name != DLQ_RUN_MARKET_UNIQUE}
    old.append_constraint(sa.UniqueConstraint(old.c.run_id))  # unnamed, as 0003 created it
    return old


def fresh_engine(kind: str, pg_url: str, tmp_path: Path) -> sa.Engine:
    return make_engine(pg_url if kind == "postgresql" else f"sqlite:///{tmp_path / 'warehouse.db'}")


def revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def version_rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def schema_differences(engine: sa.Engine) -> list[object]:
    """What alembic's autogenerate would still change to make the database match the code's tables."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "compare_server_default": True,
                "include_name": lambda name, kind, _parent: not (kind == "table" and name == LEGACY_VERSION_TABLE),
            },
        )
        return list(compare_metadata(context, metadata))


def ingested_at_default(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        columns = sa.inspect(conn).get_columns("historical_market_data")
    return next(c["default"] for c in columns if c["name"] == "ingested_at")


def test_the_revisions_are_the_old_steps_numbered_in_order() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    chain = [script.revision for script in reversed(list(scripts.walk_revisions()))]
    assert chain[: len(OLD_STEPS)] == [f"{n:04d}" for n in OLD_STEPS]
    assert chain == [f"{n:04d}" for n in range(1, len(chain) + 1)] and chain[-1] == "0008"  # 0008: detected formats
    assert head_revision() == chain[-1] and schema_version() == len(chain)
    assert all(script.doc for script in scripts.walk_revisions())


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_new_database_gets_every_revision_and_exactly_the_code_s_tables(
    kind: str, pg_url: str, tmp_path: Path
) -> None:
    engine = fresh_engine(kind, pg_url, tmp_path)
    assert ensure_schema(engine) == schema_version()
    assert version_rows(engine) == [head_revision()]
    assert schema_differences(engine) == []
    assert ingested_at_default(engine) is not None
    assert ensure_schema(engine) == schema_version()  # a second call is a no-op
    assert version_rows(engine) == [head_revision()]
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table(LEGACY_VERSION_TABLE)
    engine.dispose()


def test_a_database_of_the_previous_revision_is_upgraded_by_its_pending_migration(pg_engine: sa.Engine) -> None:
    with pg_engine.begin() as conn:  # the database as the previous release left it
        conn.execute(sa.text("ALTER TABLE historical_market_data ALTER COLUMN ingested_at DROP DEFAULT"))
        for column in (*APPEND_COLUMNS, *DETECTED_COLUMNS):
            conn.execute(sa.text(f"ALTER TABLE file_imports DROP COLUMN {column}"))
        conn.execute(sa.text(f"ALTER TABLE dead_letter_queue DROP CONSTRAINT {DLQ_RUN_MARKET_UNIQUE}"))
        conn.execute(sa.text("ALTER TABLE dead_letter_queue ADD UNIQUE (run_id)"))
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0004'"))
    assert ingested_at_default(pg_engine) is None

    assert ensure_schema(pg_engine) == schema_version()
    assert ingested_at_default(pg_engine) == "now()"
    assert revision(pg_engine) == head_revision()
    columns = {c["name"] for c in sa.inspect(pg_engine).get_columns("file_imports")}
    assert {*APPEND_COLUMNS, *DETECTED_COLUMNS} <= columns
    assert schema_differences(pg_engine) == []
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


@pytest.mark.parametrize(
    ("recorded", "message"),
    [("0009", "version 9, newer than this code's 8"), ("1a2b3c4d5e6f", "revision '1a2b3c4d5e6f', unknown")],
)
def test_a_database_newer_than_the_code_is_refused(pg_engine: sa.Engine, recorded: str, message: str) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": recorded})
    with pytest.raises(RuntimeError, match=message):
        ensure_schema(pg_engine)
    assert version_rows(pg_engine) == [recorded]  # untouched


def test_a_database_of_the_old_mechanism_newer_than_the_code_is_refused(pg_url: str) -> None:
    engine = make_engine(pg_url)
    old_release_database(engine, 5)
    with engine.begin() as conn:
        later = {"version": 9, "description": "a later release", "applied_at": dt.datetime.now(dt.UTC)}
        conn.execute(sa.insert(OLD_VERSION_TABLE).values(**later))
    with pytest.raises(RuntimeError, match="database schema is version 9, newer than this code's 8"):
        ensure_schema(engine)
    assert revision(engine) is None  # nothing stamped
    engine.dispose()


@pytest.mark.parametrize(
    ("kind", "old_version"), [("postgresql", 1), ("postgresql", 4), ("postgresql", 5), ("sqlite", 1), ("sqlite", 5)]
)
def test_a_database_of_the_old_version_table_is_adopted_and_upgraded(
    kind: str, old_version: int, pg_url: str, tmp_path: Path
) -> None:
    engine = fresh_engine(kind, pg_url, tmp_path)
    old_release_database(engine, old_version)
    with engine.begin() as conn:  # a row loaded by the old release survives the adoption
        conn.execute(
            sa.text(
                "INSERT INTO historical_market_data (market, symbol, timeframe, trade_date, close, currency,"
                " data_source, source_priority, quality_score, source_file, source_line, run_id, ingested_at)"
                " VALUES ('NYSE', 'IBM', '1d', '2024-01-02', 1.0, 'USD', 's', 5, 100, 'NYSE/IBM.csv', 2, 'r',"
                " CURRENT_TIMESTAMP)"
            )
        )
        assert current_version(conn) == old_version

    assert ensure_schema(engine) == schema_version()
    assert version_rows(engine) == [head_revision()]
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT symbol FROM historical_market_data")).scalars().all() == ["IBM"]
        kept = conn.execute(sa.select(OLD_VERSION_TABLE.c.version).order_by("version")).scalars().all()
        assert kept == list(range(1, old_version + 1))  # the old record stays as history
        assert current_version(conn) == schema_version()
    engine.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_downgrades_undo_every_revision_and_the_next_call_builds_the_schema_again(
    kind: str, pg_url: str, tmp_path: Path
) -> None:
    engine = fresh_engine(kind, pg_url, tmp_path)
    old_release_database(engine, 5)  # an adopted database: its old version table must not count any more
    ensure_schema(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {VERSION_TABLE, LEGACY_VERSION_TABLE}
        assert current_version(conn) == 0
    assert ensure_schema(engine) == schema_version()
    assert schema_differences(engine) == []
    engine.dispose()


@pytest.mark.parametrize("old_version", [0, 3])
def test_concurrent_upgrades_from_several_processes_are_serialised(pg_url: str, old_version: int) -> None:
    if old_version:
        engine = make_engine(pg_url)
        old_release_database(engine, old_version)
        engine.dispose()
    start_at = time.time() + 4  # every process is imported and waiting when the clock strikes
    code = (
        "import sys, time; from mytrader_pipeline.core.db import check_database; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); print(check_database(sys.argv[1]))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        for _ in range(4)
    ]
    results = [process.communicate(timeout=120) for process in processes]
    assert [(p.returncode, out.strip()) for p, (out, _) in zip(processes, results, strict=True)] == [
        (0, str(schema_version()))
    ] * 4, [err for _, err in results]
    engine = make_engine(pg_url)
    assert version_rows(engine) == [head_revision()]
    assert schema_differences(engine) == []
    engine.dispose()


def test_the_migrations_command_line_runs_without_an_alembic_ini(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    engine.dispose()

    def migrations(*args: str) -> str:
        command = [sys.executable, "-m", "mytrader_pipeline.core.migrations", *args]
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=os.environ, check=True)
        return done.stdout

    assert "0004 -> 0005," in migrations("history")
    assert "0005 -> 0006," in migrations("history")
    assert "0007 -> 0008 (head)" in migrations("history")
    assert "0008 (head)" in migrations("-x", f"url={url}", "current")
    sql = migrations("-x", "url=postgresql://nobody@localhost/none", "upgrade", "0004:0005", "--sql")
    assert "ALTER TABLE historical_market_data ALTER COLUMN ingested_at SET DEFAULT now()" in sql
