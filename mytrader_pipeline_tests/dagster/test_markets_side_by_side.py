"""``mytrader run`` runs markets side by side on threads: the same warehouse and Dagster records as one by one."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.accounting import accounting_issues
from mytrader_pipeline.core.db import ensure_schema, file_imports, historical_market_data, make_engine
from mytrader_pipeline.defs.event_batching import EVENT_BATCH_SIZE_ENV
from mytrader_pipeline.defs.event_log import kept_open_instance
from mytrader_pipeline.defs.run_logs import write_run_log
from mytrader_pipeline.local_runs import LocalRuns, run_planned
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.run_summary import MarketRunSummary
from mytrader_pipeline.runner import plan_import
from mytrader_pipeline.sampledata import generate_sample

REGISTRY = load_markets()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tree of every market (BIST's 32-column files included)."""
    root = tmp_path_factory.mktemp("side_by_side") / "DATA"
    generate_sample(root, seed=7, scale=0.04)
    return root


def _load(tree: Path, work: Path, *, side_by_side: bool, **kwargs: Any) -> tuple[str, list[MarketRunSummary]]:
    """Every market of ``tree`` loaded into a fresh SQLite warehouse and Dagster home under ``work``."""
    work.mkdir()
    url = f"sqlite:///{work / 'warehouse.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    engine.dispose()
    with kept_open_instance(work / "dagster_home") as instance:
        runs = LocalRuns(
            tree, url, REGISTRY, work / "logs", log_level=None, progress=False, instance=instance,
            parallel_parse_bytes=0 if side_by_side else 1 << 62,
        )  # fmt: skip
        return url, run_planned(plan_import(tree, url, list(REGISTRY)), runs, **kwargs)


def _warehouse(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    t = historical_market_data
    columns = [c for c in t.columns if c.name not in ("run_id", "ingested_at")]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(t.c.market, t.c.symbol, t.c.trade_date)).all()
        audit = conn.execute(
            sa.select(file_imports.c.source_file, file_imports.c.status, file_imports.c.rows_loaded).order_by(
                file_imports.c.source_file
            )
        ).all()
    engine.dispose()
    return {"rows": [tuple(r) for r in rows], "audit": [tuple(r) for r in audit]}


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as stock:
        return list(stock.get_runs())


def _overlap(home: Path) -> bool:
    """Whether two of the runs in ``home`` executed at the same time."""
    with dg.DagsterInstance.from_config(str(home)) as stock:
        spans = sorted((r.start_time or 0.0, r.end_time or 0.0) for r in stock.get_run_records())
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_markets_side_by_side_load_what_one_by_one_loads(tree: Path, tmp_path: Path) -> None:
    url_apart, apart = _load(tree, tmp_path / "apart", side_by_side=False)
    url_together, together = _load(tree, tmp_path / "together", side_by_side=True)

    def counts(summaries: list[MarketRunSummary]) -> list[tuple[Any, ...]]:
        return [(s.market, s.files, s.files_loaded, s.files_failed, s.rows_read, s.rows_loaded) for s in summaries]

    assert counts(together) == counts(apart)  # in the registry's order, whatever order the markets finished in
    assert all(s.files_loaded == s.files > 0 for s in together)
    assert _warehouse(url_together) == _warehouse(url_apart)
    runs = _runs(tmp_path / "together" / "dagster_home")
    assert len(runs) == 4 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert _overlap(tmp_path / "together" / "dagster_home")  # they did run side by side
    assert not _overlap(tmp_path / "apart" / "dagster_home")
    with dg.DagsterInstance.from_config(str(tmp_path / "together" / "dagster_home")) as stock:
        for summary in together:  # each partition's materialization, recorded in its own run's log
            market = REGISTRY.get(summary.market)
            records = stock.fetch_materializations(dg.AssetKey(market.asset_name), limit=1000).records
            assert len({r.partition_key for r in records}) == summary.files
            assert {r.run_id for r in records} == set(summary.run_ids)
        for run in runs:  # each run's log file holds its own events, as read back from its database
            written = (tmp_path / "together" / "logs" / f"{run.run_id}.log").read_text()
            assert written == write_run_log(stock, run.run_id, tmp_path / "read_back").read_text()
            assert "PIPELINE_SUCCESS" in written
    assert EVENT_BATCH_SIZE_ENV not in os.environ  # set while the runs executed, restored by the last one


def test_an_interrupt_stops_the_markets_running_and_starts_no_other(tree: Path, tmp_path: Path) -> None:
    """Ctrl-C while markets run side by side: the runs executing stop at a file boundary and end, nothing is left
    half loaded or running, and the interrupt goes on to the caller."""

    def interrupt(_summary: MarketRunSummary) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _load(tree, tmp_path / "stopped", side_by_side=True, on_market=interrupt)
    runs = _runs(tmp_path / "stopped" / "dagster_home")
    assert runs
    assert all(run.is_finished for run in runs), [run.status for run in runs]
    engine = make_engine(f"sqlite:///{tmp_path / 'stopped' / 'warehouse.db'}")
    with engine.connect() as conn:
        statuses = set(conn.execute(sa.select(file_imports.c.status)).scalars())
    assert statuses <= {"succeeded", "failed"}  # no file left loading
    assert all(accounting_issues(engine, run.run_id) == [] for run in runs)
    engine.dispose()


def test_stopped_local_runs_start_no_run(tree: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    url = f"sqlite:///{work / 'warehouse.db'}"
    with kept_open_instance(work / "dagster_home") as instance:
        runs = LocalRuns(tree, url, REGISTRY, work / "logs", log_level=None, progress=False, instance=instance)
        runs.stop()
        market = REGISTRY.get("NYSE")
        (plan,) = plan_import(tree, url, [market])
        assert plan.changed and runs.run(market, plan.files, plan.changed) == []
        assert list(instance.get_runs()) == []
