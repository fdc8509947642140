"""Job options (the old request options) as run config and tags, validated before a run starts; the instance config."""

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.instance.config import PoolGranularity

from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.all_markets import (
    ALL_MARKETS_JOB,
    all_markets_run_config,
    build_all_markets_job,
    market_op_name,
)
from mytrader_pipeline.defs.jobs import (
    MAX_RUNTIME_TAG,
    PRIORITY_TAG,
    import_job_name,
    partition_range_tags,
    run_priority,
)
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.pg_storage import KeptOpenPostgresRunStorage
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.run_coordinator import MarketRunCoordinator
from mytrader_pipeline.defs.run_launcher import MonitoredRunLauncher
from mytrader_pipeline.instance_config import render_dev_instance_config, render_instance_config
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import get_settings

REGISTRY = load_markets()
CRYPTO = REGISTRY.get("CRYPTO")
NASDAQ = REGISTRY.get("NASDAQ")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _defs(database_url: str, root: Path) -> dg.Definitions:
    return build_defs(
        REGISTRY,
        resource_overrides={
            "warehouse": WarehouseResource(database_url=database_url),
            "data_root": DataRootResource(data_root=str(root)),
        },
    )


@pytest.mark.parametrize(("option", "value"), [("include_files", "A*.csv"), ("no_such_option", 1), ("force", "x")])
def test_ill_typed_options_fail_config_validation_before_the_run(option: str, value: object) -> None:
    job = _defs("sqlite://", Path(".")).resolve_job_def(import_job_name(CRYPTO))
    run_config = {"ops": {CRYPTO.asset_name: {"config": {option: value}}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match=option):
        dg.validate_run_config(job, run_config)


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_concurrency", 0), ("max_concurrency", 1000), ("batch_size", 5), ("sla_target_minutes", 0)],
)
def test_out_of_bounds_options_fail_before_any_file_loads(
    option: str, value: int, pg_url: str, sample_root: Path
) -> None:
    with pytest.raises(ValueError, match=option):  # what the request layers call before launching
        all_markets_run_config(REGISTRY, market_configs={"CRYPTO": {option: value}})
    keys = sorted(p.name for p in (sample_root / "Crypto").glob("*.csv"))
    with dg.instance_for_test() as instance:
        register_partitions(instance, CRYPTO, keys)
        job = _defs(pg_url, sample_root).resolve_job_def(import_job_name(CRYPTO))
        result = job.execute_in_process(
            instance=instance,
            run_config={"ops": {CRYPTO.asset_name: {"config": {option: value}}}},
            tags=partition_range_tags(keys[0], keys[-1]),
            raise_on_error=False,
        )
    assert not result.success
    assert option in str(result.get_step_failure_events()[0].step_failure_data.error)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("file_imports") or not conn.execute(sa.select(file_imports)).first()
    engine.dispose()


def test_all_markets_options_map_to_executor_and_per_market_config() -> None:
    config = all_markets_run_config(
        REGISTRY, global_max_concurrency=2, market_configs={"bist": {"batch_size": 500, "exclude_files": ["X*"]}}
    )
    assert config["execution"]["config"] == {"multiprocess": {"max_concurrent": 2}}
    bist = config["ops"][market_op_name(REGISTRY.get("BIST"))]["config"]
    assert bist == {"batch_size": 500, "exclude_files": ["X*"], "max_concurrency": 2}
    serial = all_markets_run_config(REGISTRY, run_markets_in_parallel=False)
    assert serial["execution"]["config"] == {"in_process": {}}
    job = _defs("sqlite://", Path(".")).resolve_job_def(ALL_MARKETS_JOB)
    assert dg.validate_run_config(job, config)
    with pytest.raises(ValueError, match="globalMaxConcurrency"):
        all_markets_run_config(REGISTRY, global_max_concurrency=0)
    with pytest.raises(ValueError, match="unknown market"):
        all_markets_run_config(REGISTRY, market_configs={"LSE": {}})
    with pytest.raises(ValueError, match=r"marketConfigs\.NYSE: .*max_concurrency"):
        all_markets_run_config(REGISTRY, market_configs={"NYSE": {"max_concurrency": -1}})


def test_include_and_exclude_globs_choose_the_files_a_run_loads(pg_url: str, sample_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "DATA"
    shutil.copytree(sample_root, root)
    keys = sorted(p.name for p in (root / "NASDAQ").glob("*.csv"))
    assert len(keys) >= 3
    with dg.instance_for_test() as instance:
        register_partitions(instance, NASDAQ, keys)
        job = _defs(pg_url, root).resolve_job_def(import_job_name(NASDAQ))
        result = job.execute_in_process(
            instance=instance,
            run_config={
                "ops": {NASDAQ.asset_name: {"config": {"include_files": keys[:2], "exclude_files": [keys[1]]}}}
            },
            tags=partition_range_tags(keys[0], keys[-1]),
        )
    assert result.success
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        loaded = [r.source_file for r in conn.execute(sa.select(file_imports.c.source_file))]
    engine.dispose()
    assert loaded == [f"NASDAQ/{keys[0]}"]


def test_runs_carry_market_and_priority_tags_bist_first() -> None:
    defs = _defs("sqlite://", Path("."))
    priorities = {m.code: run_priority(m) for m in REGISTRY}
    assert max(priorities, key=lambda code: priorities[code]) == "BIST"
    assert list(priorities) == sorted(priorities, key=lambda code: -priorities[code])
    for market in REGISTRY:
        tags = defs.resolve_job_def(import_job_name(market)).tags
        assert tags["market"] == market.code and tags[PRIORITY_TAG] == str(priorities[market.code])


def test_every_import_run_carries_a_max_runtime_from_the_registry_or_the_global_sla(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MYTRADER_GLOBAL_SLA_MINUTES", raising=False)
    defs = _defs("sqlite://", Path("."))
    for market in REGISTRY:
        tags = defs.resolve_job_def(import_job_name(market)).tags
        assert tags[MAX_RUNTIME_TAG] == str(market.max_runtime_seconds)
    assert defs.resolve_job_def(ALL_MARKETS_JOB).tags[MAX_RUNTIME_TAG] == str(2 * 120 * 60)  # twice the global SLA
    monkeypatch.setenv("MYTRADER_GLOBAL_SLA_MINUTES", "90")  # what the SLA monitor judges the whole import by
    get_settings.cache_clear()  # the settings are read once; read them again
    assert build_all_markets_job(REGISTRY).tags[MAX_RUNTIME_TAG] == str(2 * 90 * 60)
    assert build_all_markets_job(REGISTRY, global_sla_minutes=30).tags[MAX_RUNTIME_TAG] == str(2 * 30 * 60)


def test_shipped_dagster_yaml_matches_the_registry() -> None:
    assert (REPO_ROOT / "deploy" / "dagster.yaml").read_text("utf-8") == render_instance_config(REGISTRY), (
        "deploy/dagster.yaml drifted from markets.yaml: run `mytrader instance-config --write deploy/dagster.yaml`"
    )


def test_the_checkouts_dev_dagster_yaml_matches_the_registry() -> None:
    assert (REPO_ROOT / "dagster.yaml").read_text("utf-8") == render_dev_instance_config(REGISTRY), (
        "dagster.yaml drifted from markets.yaml: run `mytrader instance-config --dev --write dagster.yaml`"
    )


def test_the_checkouts_dagster_yaml_is_embedded_storage_over_the_quickstart_with_the_deployments_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # dagster dev reads ./dagster.yaml, and its paths are relative to the checkout
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert isinstance(instance.run_coordinator, MarketRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 8
        assert instance.get_concurrency_config().pool_config.pool_granularity == PoolGranularity.RUN
        instance.add_dynamic_partitions("probe_files", ["a.csv"])
    assert (tmp_path / ".mytrader" / "dagster_home" / "schedules").is_dir()  # the quickstart's Dagster home


def test_dagster_yaml_gives_a_postgres_instance_with_queue_limits_monitoring_and_retries(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = urlsplit(pg_url)
    for name, value in {
        "DAGSTER_PG_HOST": parts.hostname or "",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_USER": parts.username or "",
        "DAGSTER_PG_PASSWORD": parts.password or "",
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
    }.items():
        monkeypatch.setenv(name, value)
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage) is KeptOpenPostgresRunStorage  # Dagster's, on kept connections
        assert isinstance(instance.run_coordinator, MarketRunCoordinator)  # Dagster's run queue, market rules first
        assert instance.get_concurrency_config().pool_config.pool_granularity == PoolGranularity.RUN
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 8
        limits = {(limit["key"], limit["value"]): limit["limit"] for limit in queue.tag_concurrency_limits}
        assert limits == {("market", m.code): m.max_concurrency for m in REGISTRY}
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)  # run monitoring can see a dead worker
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_retries_max_retries == 3
        instance.add_dynamic_partitions("probe_files", ["a.csv"])  # storage works through psycopg2
        assert instance.get_dynamic_partitions("probe_files") == ["a.csv"]
