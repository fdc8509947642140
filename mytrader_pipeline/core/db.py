"""Warehouse tables (SQLAlchemy metadata), engine creation, and bringing a database's schema to the code's."""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from mytrader_pipeline.core.formats import BIST_EXTRA_NUMERIC, BIST_EXTRA_TEXT, PRICE_COLUMNS
from mytrader_pipeline.core.migrations import VERSION_TABLE, alembic_config

metadata = sa.MetaData()

# Columns compared to decide whether a re-imported row changed (provenance columns are not compared).
VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, *BIST_EXTRA_TEXT, *BIST_EXTRA_NUMERIC, "quality_score")
KEY_COLUMNS: tuple[str, ...] = ("market", "symbol", "timeframe", "trade_date")

historical_market_data = sa.Table(
    "historical_market_data",
    metadata,
    sa.Column("market", sa.String(16), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("trade_date", sa.Date, nullable=False),
    *[sa.Column(name, sa.Double, nullable=name != "close") for name in PRICE_COLUMNS],
    sa.Column("currency", sa.String(8), nullable=False),
    sa.Column("data_source", sa.String(64), nullable=False),
    sa.Column("source_priority", sa.SmallInteger, nullable=False),
    sa.Column("quality_score", sa.SmallInteger, nullable=False),
    sa.Column("source_file", sa.String(512), nullable=False),
    sa.Column("source_line", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    # The server fills it on the COPY fast path (now(): the transaction's start, so one value per file load).
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    *[sa.Column(name, sa.String(32)) for name in BIST_EXTRA_TEXT],
    *[sa.Column(name, sa.Double) for name in BIST_EXTRA_NUMERIC],
    sa.PrimaryKeyConstraint(*KEY_COLUMNS, name="pk_historical_market_data"),
    sa.CheckConstraint("quality_score BETWEEN 0 AND 100", name="ck_hmd_quality_score"),
)

file_imports = sa.Table(
    "file_imports",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
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
    sa.Column("status", sa.String(16), nullable=False),  # succeeded | failed
    sa.Column("error_class", sa.String(32)),
    sa.Column("error_message", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    # Append-aware loading (core.appending): size_bytes and fingerprint are the bytes loaded so far (the whole file
    # as it was read); these say where its next load may resume. NULL on rows written before they existed.
    sa.Column("line_count", sa.Integer),  # lines in those bytes, the header included
    sa.Column("ends_with_newline", sa.Boolean),  # whether they end on a line break (else no append can follow)
    sa.Column("load_mode", sa.String(8)),  # full | append (NULL: full, written before appends existed)
    sa.Column("extends_import_id", sa.BigInteger),  # an append: the succeeded import whose bytes it continues
    # What the load detected from the file's first lines (the date format and decimal mark a full read would use).
    sa.Column("date_format", sa.String(32)),
    sa.Column("decimal_comma", sa.Boolean),
    sa.CheckConstraint(
        "status <> 'succeeded' OR rows_read = rows_loaded + rows_rejected", name="ck_file_imports_accounting"
    ),
    sa.Index("ix_file_imports_file", "market", "source_file", "finished_at"),
    sa.Index("ix_file_imports_run", "run_id"),
)

rejected_rows = sa.Table(
    "rejected_rows",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
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
    sa.Index("ix_rejected_rows_file", "market", "source_file"),
)

_LOCK_ID = 7_318_201  # pg_advisory_xact_lock key serialising concurrent schema upgrades
# The schema versions of releases before alembic: version N became revision "000N" (see ensure_schema).
LEGACY_VERSION_TABLE = "mytrader_schema_version"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (the COPY fast path needs it)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pool_size: int = 8, connect_timeout: int | None = None) -> Engine:
    """An engine for the warehouse at ``url`` (SQLite gets WAL and a busy timeout for concurrent writers).

    ``connect_timeout``: seconds a PostgreSQL connection attempt may take (default: libpq's, no limit).
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
            cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages (default 2 MiB): the key index stays cached
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()

        return engine
    connect_args = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=connect_args
    )


def check_database(url: str, *, connect_timeout: int = 4) -> int:
    """Connect to the warehouse at ``url`` once, without retrying, and create or upgrade its schema; returns it.

    Raises what the connection raised: ``mytrader run`` calls it before any file, so a wrong URL or a server that
    is away fails in seconds, once, rather than file by file with retries.
    """
    engine = make_engine(url, pool_size=1, connect_timeout=connect_timeout)
    try:
        return ensure_schema(engine)
    finally:
        engine.dispose()


def is_postgres(engine: Engine) -> bool:
    """Whether the warehouse is PostgreSQL (and so gets the COPY fast path)."""
    return engine.dialect.name == "postgresql"


@functools.cache
def shared_engine(url: str) -> Engine:
    """The process's one engine (and pool) for the warehouse at ``url``, its schema created or upgraded on first use."""
    engine = make_engine(url)
    ensure_schema(engine)
    return engine


def revision_number(revision: str) -> int:
    """The schema version a revision id stands for: revision "0005" is version 5 (ids are numbered in order)."""
    if not revision.isdigit():
        raise RuntimeError(f"database schema is at revision {revision!r}, unknown to this code")
    return int(revision)


@functools.cache
def head_revision() -> str:
    """The latest revision of the migrations shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in mytrader_pipeline/core/migrations/versions")
    return head


def schema_version() -> int:
    """The schema version this code creates and upgrades to (its latest migration's number)."""
    return revision_number(head_revision())


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database; 0 when the project's tables are absent.

    It is the number of the alembic revision stamped in ``mytrader_alembic_version``; a database of the releases
    before alembic has no such table, and its ``mytrader_schema_version`` counts.
    """
    return _legacy_version(conn) if _before_alembic(conn) else _revision_version(conn)


def ensure_schema(engine: Engine) -> int:
    """Create or upgrade the warehouse schema to the latest migration; safe to call concurrently. Returns its number.

    On PostgreSQL an advisory lock serialises callers and the whole upgrade is one transaction. A database newer
    than this code (a revision it does not know) is refused. A database of the old mechanism is adopted: stamped
    with the revision of its version ("000N" for version N), then upgraded like any other.
    """
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
        adopting = _before_alembic(conn)
        version = _legacy_version(conn) if adopting else _revision_version(conn)
        latest = schema_version()
        if version > latest:
            raise RuntimeError(f"database schema is version {version}, newer than this code's {latest}")
        config = alembic_config(conn)
        if adopting and version > 0:
            command.stamp(config, f"{version:04d}")
        if version < latest:
            command.upgrade(config, "head")
        return latest


def _before_alembic(conn: Connection) -> bool:
    # Alembic's table, once there, stays (a downgrade to nothing empties it): only its absence means the old mechanism.
    return not sa.inspect(conn).has_table(VERSION_TABLE)


def _revision_version(conn: Connection) -> int:
    revision = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    return 0 if revision is None else revision_number(revision)


def _legacy_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(LEGACY_VERSION_TABLE):
        return 0
    legacy = sa.table(LEGACY_VERSION_TABLE, sa.column("version", sa.Integer))
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(legacy.c.version), 0))).scalar_one())


# --- Interfaces: user-defined schedules of the all-markets import (added through the CLI or REST API) -------------
# Dagster schedules are code-defined, so schedules added at run time live here and a sensor evaluates them.
user_schedules = sa.Table(
    "user_schedules",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("cron_expression", sa.String(120), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("import_request", sa.JSON, nullable=False),  # the AllMarketsImportRequest, old API field names
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


# --- Failure handling: the dead-letter queue of failed work items (fed by the run-failure sensor) ------------------
# One item per failed run and market (unique run_id and market: a sensor restart cannot add it twice; a run over several
# markets' assets leaves one per market); replays of the item append their runs.
dead_letter_queue = sa.Table(
    "dead_letter_queue",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),  # the failed run that created the item
    sa.Column("job_name", sa.String(128), nullable=False),
    sa.Column("market", sa.String(16), nullable=False),
    sa.Column("partition_keys", sa.JSON, nullable=False),  # the failed partitions (file names)
    sa.Column("source_files", sa.JSON, nullable=False),  # the same, relative to the data root
    sa.Column("failed_files", sa.JSON, nullable=False),  # partition key -> "error_class: message"
    sa.Column("error_class", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("stack_trace", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("retryable", sa.Boolean, nullable=False),
    sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_ids", sa.JSON, nullable=False),  # every run of this work that failed, oldest first
    sa.Column("run_config", sa.JSON, nullable=False),
    sa.Column("run_tags", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | replayed | resolved | discarded
    sa.Column("replay_run_ids", sa.JSON, nullable=False),  # runs of the latest replay
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_by_run_id", sa.String(64)),
    sa.Column("discarded_at", sa.DateTime(timezone=True)),
    sa.Column("discarded_by", sa.String(128)),
    sa.Column("discard_reason", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('open', 'replayed', 'resolved', 'discarded')", name="ck_dlq_status"),
    sa.CheckConstraint("status <> 'discarded' OR discard_reason IS NOT NULL", name="ck_dlq_discard_reason"),
    sa.UniqueConstraint("run_id", "market", name="uq_dlq_run_market"),
    sa.Index("ix_dlq_status_market", "status", "market"),
)


# --- Monitoring: SLA alerts raised by the SLA monitor sensor (core.alerts) -----------------------------------------
# dedupe_key is unique: an event (a run, a deadline) alerts once ever; a condition (error rate ...) once per episode.
# At most one unresolved alert per scope (partial unique index), so a restarted sensor cannot raise it twice.
sla_alerts = sa.Table(
    "sla_alerts",
    metadata,
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
    sa.Column("notified_at", sa.DateTime(timezone=True)),  # when the webhook accepted it
    sa.CheckConstraint("severity IN ('medium', 'high', 'critical')", name="ck_sla_alerts_severity"),
    sa.Index(
        "uq_sla_alerts_active_scope",
        "scope",
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
        sqlite_where=sa.text("resolved_at IS NULL"),
    ),
    sa.Index("ix_sla_alerts_first_seen", "first_seen"),
)
