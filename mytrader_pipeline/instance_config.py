"""The deployment's Dagster instance config (``dagster.yaml``), generated from the market registry."""

from __future__ import annotations

from mytrader_pipeline.markets import MarketRegistry

GLOBAL_MAX_CONCURRENT_RUNS = 8  # the old GlobalMaxConcurrency
PG_ENV_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")

_HEADER = """\
# The Dagster instance of a deployment (`dagster dev`, or `dagster-webserver` + `dagster-daemon`): put it in
# $DAGSTER_HOME. GENERATED from the market registry by `mytrader instance-config --write dagster.yaml`; edit
# markets.yaml (or this generator) and regenerate. A test fails when this file and the registry drift apart.
#
# Runs, event logs, schedules and sensor cursors live in PostgreSQL, from DAGSTER_PG_HOST, DAGSTER_PG_PORT,
# DAGSTER_PG_USER, DAGSTER_PG_PASSWORD (may be empty) and DAGSTER_PG_DB. The scheme is postgresql+psycopg2: with
# SQLAlchemy 2.1 a bare `postgresql://` selects psycopg 3, on which dagster-postgres' `NOTIFY run_events, %s`
# fails (psycopg 3 binds parameters server-side, and NOTIFY takes none).
"""


def render_instance_config(registry: MarketRegistry) -> str:
    """``dagster.yaml`` for ``registry``: PostgreSQL storage, the run queue, run monitoring and run retries."""
    order = " > ".join(m.code for m in registry)
    limits = "".join(
        f"      - key: market\n        value: {m.code}\n        limit: {m.max_concurrency}\n" for m in registry
    )
    return f"""{_HEADER}
storage:
  postgres:
    postgres_db:
      hostname: {{env: DAGSTER_PG_HOST}}
      port: {{env: DAGSTER_PG_PORT}}
      username: {{env: DAGSTER_PG_USER}}
      password: {{env: DAGSTER_PG_PASSWORD}}
      db_name: {{env: DAGSTER_PG_DB}}
      scheme: postgresql+psycopg2

# Runs wait in a queue: at most {GLOBAL_MAX_CONCURRENT_RUNS} at once, at most a market's max_concurrency per market
# (the `market` tag of its import runs); higher `dagster/priority` first (defs/jobs.run_priority):
# {order}.
# A launch returns only once the run's worker process has started (imported the code, ~5 s): queued runs are
# launched by 4 threads at once, not one after another.
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 2
    dequeue_use_threads: true
    dequeue_num_workers: 4
concurrency:
  runs:
    max_concurrent_runs: {GLOBAL_MAX_CONCURRENT_RUNS}
    tag_concurrency_limits:
{limits}
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
