"""Dagster instance configs (``dagster.yaml``) generated from the market registry: a deployment's and the checkout's."""

from __future__ import annotations

from mytrader_pipeline.markets import MarketRegistry

GLOBAL_MAX_CONCURRENT_RUNS = 8  # the old GlobalMaxConcurrency
DEV_DAGSTER_HOME = ".mytrader/dagster_home"  # settings.default_dagster_home(), relative to the checkout
PG_ENV_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")

_HEADER = """\
# The Dagster instance of a deployment (`dagster dev`, or `dagster-webserver` + `dagster-daemon`): put it in
# $DAGSTER_HOME. GENERATED from the market registry by `mytrader instance-config --write deploy/dagster.yaml`; edit
# markets.yaml (or this generator) and regenerate. A test fails when this file and the registry drift apart.
#
# Runs, event logs, schedules and sensor cursors live in PostgreSQL, from DAGSTER_PG_HOST, DAGSTER_PG_PORT,
# DAGSTER_PG_USER, DAGSTER_PG_PASSWORD (may be empty) and DAGSTER_PG_DB. The scheme is postgresql+psycopg2: with
# SQLAlchemy 2.1 a bare `postgresql://` selects psycopg 3, on which dagster-postgres' `NOTIFY run_events, %s`
# fails (psycopg 3 binds parameters server-side, and NOTIFY takes none).
# The three storages are Dagster's PostgreSQL ones (the same tables as `storage: postgres`) with two changes
# (defs/pg_storage.py): each process keeps its connections, and an import step reads its dynamic partitions once.
"""

# (key, module, class) of each storage of a deployment
_PG_STORAGES = (
    ("run_storage", "mytrader_pipeline.defs.pg_storage", "KeptOpenPostgresRunStorage"),
    ("event_log_storage", "mytrader_pipeline.defs.pg_storage", "KeptOpenPostgresEventLogStorage"),
    ("schedule_storage", "mytrader_pipeline.defs.pg_storage", "KeptOpenPostgresScheduleStorage"),
)

_DEV_HEADER = """\
# `dagster dev` in this checkout with no DAGSTER_HOME set (Dagster then reads ./dagster.yaml): embedded SQLite storage
# over the quickstart's state, ./.mytrader/dagster_home (run from the checkout root), and the deployment's run queue.
# The code location's warehouse and data root default to the quickstart's too (./.mytrader/warehouse.db, data/).
# A deployment uses deploy/dagster.yaml instead (PostgreSQL, run monitoring, run retries), put in its $DAGSTER_HOME.
# GENERATED from the market registry by `mytrader instance-config --dev --write dagster.yaml`; a test fails when this
# file and the registry drift apart.
"""


def _queue(registry: MarketRegistry) -> str:
    """The run queue: our coordinator, the global and per-market limits, the market pools."""
    order = " > ".join(m.code for m in registry)
    limits = "".join(
        f"      - key: market\n        value: {m.code}\n        limit: {m.max_concurrency}\n" for m in registry
    )
    most = GLOBAL_MAX_CONCURRENT_RUNS
    return f"""# Runs wait in a queue: at most {most} at once, at most a market's max_concurrency per market
# (the `market` tag of its import runs); higher `dagster/priority` first (defs/jobs.run_priority):
# {order}.
# Every submitted run passes MarketRunCoordinator (defs/run_coordinator.py) first, whatever launched it (the UI's
# Materialize button, a GraphQL backfill, a sensor, the CLI): a run materializing a market's asset gets that market's
# `market`, `dagster/priority` and `dagster/max_runtime` tags when it lacks them, and a run naming a file its market
# does not have is failed at once (never queued, never retried). Each market's asset is also in the pool
# `market/<CODE>`, whose limit (the market's max_concurrency) the coordinator sets from the registry; the pools hold
# whole runs (granularity: run), like the tag limits below.
# A launch returns only once the run's worker process has started (imported the code, ~5 s): queued runs are
# launched by 4 threads at once, not one after another.
run_coordinator:
  module: mytrader_pipeline.defs.run_coordinator
  class: MarketRunCoordinator
  config:
    dequeue_interval_seconds: 2
    dequeue_use_threads: true
    dequeue_num_workers: 4
concurrency:
  runs:
    max_concurrent_runs: {GLOBAL_MAX_CONCURRENT_RUNS}
    tag_concurrency_limits:
{limits}  pools:
    granularity: run
"""


def _pg_storages() -> str:
    """The deployment's storages, each in PostgreSQL from the ``DAGSTER_PG_*`` variables."""
    return "".join(
        f"""{key}:
  module: {module}
  class: {cls}
  config:
    postgres_db:
      hostname: {{env: DAGSTER_PG_HOST}}
      port: {{env: DAGSTER_PG_PORT}}
      username: {{env: DAGSTER_PG_USER}}
      password: {{env: DAGSTER_PG_PASSWORD}}
      db_name: {{env: DAGSTER_PG_DB}}
      scheme: postgresql+psycopg2
"""
        for key, module, cls in _PG_STORAGES
    )


def render_instance_config(registry: MarketRegistry) -> str:
    """``dagster.yaml`` for ``registry``: PostgreSQL storage, the run queue, run monitoring and run retries."""
    return f"""{_HEADER}
{_pg_storages()}
{_queue(registry)}
# Dagster's default launcher (a worker process per run, started by the code server), plus a health check of the
# worker's pid (defs/run_launcher.py): without it run monitoring cannot see a worker that died with its code server
# (a machine restart), and the run would stay STARTED forever.
run_launcher:
  module: mytrader_pipeline.defs.run_launcher
  class: MonitoredRunLauncher

# A run whose worker does not start, or dies, is marked failed; run retries then re-execute it from the failure.
# A run over its max runtime (tag dagster/max_runtime, from the registry's max_runtime_minutes) is stopped and failed
# the same way. A dead worker is found within poll_interval_seconds; it is never resumed in place
# (max_resume_run_attempts: 0): the retry skips the files already loaded and reloads the one in flight.
# File-level failures are not retried by the run (retry_on_asset_or_op_failure: false): a bad file would fail the
# same way; the asset fails with allow_retries set only for transient errors.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 30
  max_resume_run_attempts: 0
run_retries:
  enabled: true
  max_retries: 3
  retry_on_asset_or_op_failure: false

sensors:
  use_threads: true
  num_workers: 4
schedules:
  use_threads: true
  num_workers: 2
telemetry:
  enabled: false
"""


def render_dev_instance_config(registry: MarketRegistry) -> str:
    """The checkout's own ``dagster.yaml``, for ``dagster dev`` with no ``DAGSTER_HOME``: embedded storage over the
    quickstart's state (``./.mytrader/dagster_home``) and the same run queue as a deployment."""
    return f"""{_DEV_HEADER}
storage:
  sqlite:
    base_dir: {DEV_DAGSTER_HOME}
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {DEV_DAGSTER_HOME}

{_queue(registry)}
telemetry:
  enabled: false
"""
