"""A market's backfill policy comes from the registry: one run on one machine, runs a worker each on Celery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import build_run_requests_with_backfill_policies
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.policies import backfill_policy
from mytrader_pipeline.markets import MarketConfigError, load_markets
from mytrader_pipeline.settings import get_settings

KEYS = [f"F{i:03d}.csv" for i in range(10)]


@pytest.fixture(autouse=True)
def instance() -> Iterator[dg.DagsterInstance]:
    """A live instance while definitions resolve, and the dynamic partitions of the backfills below."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def celery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYTRADER_EXECUTOR", "celery")
    monkeypatch.setenv("MYTRADER_MAX_FILES_PER_RUN", "4")
    monkeypatch.setenv("MYTRADER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # resolved, never used
    monkeypatch.setenv("MYTRADER_DATA_ROOT", "/nonexistent")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def override(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "markets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def backfill_runs(instance: dg.DagsterInstance, registry_file: Path | None, code: str) -> list[tuple[str, str]]:
    """The (first, last) file of each run that Dagster's asset backfill makes of all ``KEYS`` of market ``code``."""
    registry = load_markets(registry_file)
    market = registry.get(code)
    register_partitions(instance, market, KEYS)
    graph = build_defs(registry).resolve_asset_graph()
    key = dg.AssetKey(market.asset_name)
    with partition_loading_context(dynamic_partitions_store=instance):  # as the backfill daemon loads them
        requests = build_run_requests_with_backfill_policies(
            [AssetKeyPartitionKey(key, k) for k in KEYS], graph, instance
        )
    return sorted((r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG]) for r in requests)


def test_on_one_machine_a_backfill_is_one_run_as_before(instance: dg.DagsterInstance) -> None:
    registry = load_markets()
    assert all(backfill_policy(m) == dg.BackfillPolicy.single_run() for m in registry)
    assert backfill_runs(instance, None, "NASDAQ") == [(KEYS[0], KEYS[-1])]


def test_on_celery_a_backfill_is_cut_into_runs_of_max_files_per_run_so_every_worker_takes_one(
    instance: dg.DagsterInstance, celery: None
) -> None:
    assert all(backfill_policy(m) == dg.BackfillPolicy.multi_run(4) for m in load_markets())
    assert backfill_runs(instance, None, "NASDAQ") == [(KEYS[0], KEYS[3]), (KEYS[4], KEYS[7]), (KEYS[8], KEYS[9])]


def test_a_markets_backfill_files_per_run_is_its_cut_with_either_executor(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = override(tmp_path, "markets:\n  - code: BIST\n    backfill_files_per_run: 3\n")
    registry = load_markets(path)
    assert backfill_policy(registry.get("BIST")) == dg.BackfillPolicy.multi_run(3)
    assert backfill_policy(registry.get("NYSE")) == dg.BackfillPolicy.single_run()  # the others keep the default
    expected = [(KEYS[0], KEYS[2]), (KEYS[3], KEYS[5]), (KEYS[6], KEYS[8]), (KEYS[9], KEYS[9])]
    assert backfill_runs(instance, path, "BIST") == expected
    monkeypatch.setenv("MYTRADER_EXECUTOR", "celery")
    get_settings.cache_clear()
    try:
        assert backfill_policy(load_markets(path).get("BIST")) == dg.BackfillPolicy.multi_run(3)
    finally:
        get_settings.cache_clear()


def test_a_bad_backfill_files_per_run_is_refused_naming_market_and_field(tmp_path: Path) -> None:
    path = override(tmp_path, "markets:\n  - code: BIST\n    backfill_files_per_run: 0\n")
    with pytest.raises(MarketConfigError, match=r"market 'BIST', field 'backfill_files_per_run'"):
        load_markets(path)
