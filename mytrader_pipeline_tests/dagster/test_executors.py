"""MYTRADER_EXECUTOR picks where the import jobs' steps run; a market's celery_queue routes its steps."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import dagster_celery.defaults
import pytest
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.all_markets import ALL_MARKETS_JOB, all_markets_run_config, market_op_name
from mytrader_pipeline.defs.celery_worker import worker_app
from mytrader_pipeline.defs.executors import celery_app_config
from mytrader_pipeline.defs.jobs import import_job_name
from mytrader_pipeline.defs.visibility_heartbeat import VisibilityHeartbeat
from mytrader_pipeline.markets import MarketConfigError, load_markets
from mytrader_pipeline.settings import get_settings


@pytest.fixture(autouse=True)
def instance() -> Iterator[dg.DagsterInstance]:
    """A live instance while definitions resolve (an earlier test's closed instance may linger in Dagster's state)."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_without_the_setting_the_import_jobs_keep_their_in_process_and_multiprocess_executors() -> None:
    defs = build_defs(load_markets())
    assert defs.resolve_job_def("import_bist").executor_def is dg.in_process_executor
    assert defs.resolve_job_def(ALL_MARKETS_JOB).executor_def is dg.multi_or_in_process_executor


def test_celery_makes_every_import_job_use_the_celery_executor_and_every_run_config_stays_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MYTRADER_EXECUTOR", "celery")
    monkeypatch.setenv("MYTRADER_CELERY_BROKER_URL", "amqp://u:p@broker:5672//")
    monkeypatch.setenv("MYTRADER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # resolved, never used
    monkeypatch.setenv("MYTRADER_DATA_ROOT", "/nonexistent")
    registry = load_markets()
    defs = build_defs(registry)
    for market in registry:
        assert defs.resolve_job_def(import_job_name(market)).executor_def.name == "celery"
    job = defs.resolve_job_def(ALL_MARKETS_JOB)
    assert job.executor_def.name == "celery"
    # What the schedule, the service layer and the REST API send today still validates (and is ignored on Celery).
    for parallel in (True, False):
        config = all_markets_run_config(registry, run_markets_in_parallel=parallel, global_max_concurrency=2)
        assert dg.validate_run_config(job, config)
    config = celery_app_config()
    assert (config["broker"], config["backend"]) == ("amqp://u:p@broker:5672//", "rpc://")


def test_the_visibility_timeout_reaches_the_runs_celery_app_and_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYTRADER_CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")
    monkeypatch.setenv("MYTRADER_CELERY_VISIBILITY_TIMEOUT", "120")
    config = celery_app_config()
    # The run's app, as dagster-celery's executor builds it from its config (``config_source`` passed through).
    executor = CeleryExecutor.for_cli(broker=config["broker"], config_source=config["config_source"])
    run_app = make_app(executor.app_args())
    for app in (run_app, worker_app(("dagster",))):
        options = app.conf.broker_transport_options
        assert options["visibility_timeout"] == 120
        assert options["max_retries"] == dagster_celery.defaults.broker_transport_options["max_retries"]  # kept
        with app.connection_for_read() as connection:  # what kombu's Redis channel reads
            assert connection.default_channel.visibility_timeout == 120
    assert any(step is VisibilityHeartbeat for step in worker_app(("dagster",)).steps["worker"])


def test_the_executor_setting_refuses_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYTRADER_EXECUTOR", "k8s")
    with pytest.raises(ValueError, match="MYTRADER_EXECUTOR"):
        get_settings()


def test_the_visibility_timeout_setting_refuses_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYTRADER_CELERY_VISIBILITY_TIMEOUT", "0")
    with pytest.raises(ValueError, match="MYTRADER_CELERY_VISIBILITY_TIMEOUT"):
        get_settings()


def test_a_markets_celery_queue_is_the_queue_tag_of_its_steps(tmp_path: Path) -> None:
    override = tmp_path / "markets.yaml"
    override.write_text("markets:\n  - code: BIST\n    celery_queue: bist\n", encoding="utf-8")
    registry = load_markets(override)
    assert [m.celery_queue for m in registry] == ["bist", "dagster", "dagster", "dagster"]
    defs = build_defs(registry)
    bist, crypto = registry.get("BIST"), registry.get("CRYPTO")
    assert defs.resolve_assets_def(bist.asset_name).op.tags[DAGSTER_CELERY_QUEUE_TAG] == "bist"
    assert defs.resolve_assets_def(crypto.asset_name).op.tags[DAGSTER_CELERY_QUEUE_TAG] == "dagster"
    ops = defs.resolve_job_def(ALL_MARKETS_JOB).graph
    assert ops.node_named(market_op_name(bist)).tags[DAGSTER_CELERY_QUEUE_TAG] == "bist"


def test_a_bad_celery_queue_is_refused_naming_market_and_field(tmp_path: Path) -> None:
    override = tmp_path / "markets.yaml"
    override.write_text("markets:\n  - code: BIST\n    celery_queue: 'no spaces'\n", encoding="utf-8")
    with pytest.raises(MarketConfigError, match=r"market 'BIST', field 'celery_queue': must be letters"):
        load_markets(override)


def test_loading_the_code_and_the_command_imports_no_worker_side() -> None:
    """`mytrader run` and a code location start without the workers' app, kombu's Redis transport or its client."""
    probe = (
        "import sys, mytrader_pipeline.cli, mytrader_pipeline.runner, mytrader_pipeline.local_runs\n"
        "from mytrader_pipeline.definitions import build_defs\n"
        "build_defs()\n"
        "print(sorted({'redis', 'kombu.transport.redis', 'mytrader_pipeline.defs.celery_worker'} & set(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYTRADER_")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
