"""The market assets through Dagster: file partitions materialize into a real PostgreSQL warehouse."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import load_markets

REGISTRY = load_markets()
NASDAQ = REGISTRY.get("NASDAQ")
HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"


def _write(root: Path, name: str, rows: list[str]) -> None:
    (root / "NASDAQ" / name).write_text(HEADER + "".join(f"{r}\n" for r in rows), encoding="utf-8")


def _defs(pg_url: str, root: Path) -> dg.Definitions:
    return build_defs(
        REGISTRY,
        resource_overrides={
            "warehouse": WarehouseResource(database_url=pg_url),
            "data_root": DataRootResource(data_root=str(root)),
        },
    )


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str], force: bool = False):
    all_keys = register_partitions(instance, NASDAQ, keys)
    assert set(keys) <= set(all_keys)
    job = defs.resolve_job_def(import_job_name(NASDAQ))
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {NASDAQ.asset_name: {"config": {"force": force}}}},
        tags=partition_range_tags(keys[0], keys[-1]),
        raise_on_error=False,
    )


def _materialized(instance: dg.DagsterInstance) -> set[str]:
    return instance.get_materialized_partitions(dg.AssetKey(NASDAQ.asset_name))


@pytest.fixture
def tree(data_root: Path) -> Path:
    _write(data_root, "AAPL.csv", ["AAPL,2024-01-02,10,11,9,10.5,10.4,1000", "AAPL,2024-01-03,10.5,12,10,11,11,900"])
    _write(data_root, "MSFT.csv", ["MSFT,2024-01-02,300,310,295,305,305,5000", "MSFT,2024-01-03,305,306,1,2,2,-1"])
    return data_root


def test_a_range_of_partitions_loads_in_one_run_with_metadata_per_partition(pg_url: str, tree: Path) -> None:
    defs = _defs(pg_url, tree)
    with dg.instance_for_test() as instance:
        result = _run(defs, instance, ["AAPL.csv", "MSFT.csv"])
        assert result.success
        assert _materialized(instance) == {"AAPL.csv", "MSFT.csv"}
        events = {
            e.materialization.partition: e.materialization.metadata for e in result.get_asset_materialization_events()
        }
        assert events["AAPL.csv"]["rows_loaded"].value == 2
        assert events["MSFT.csv"]["rows_rejected"].value == 1  # low 1 < ... volume -1
        assert events["MSFT.csv"]["rows_read"].value == 2
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["rejected_rate"].passed is False  # MSFT rejected 50% > 10%
        assert checks["ohlc_consistency"].passed is True
        assert checks["accounting"].passed is True
    with sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://")).connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM historical_market_data WHERE market = 'NASDAQ'")).scalar()
        assert count == 3


def test_unchanged_files_are_skipped_and_force_reloads_them(pg_url: str, tree: Path) -> None:
    defs = _defs(pg_url, tree)
    with dg.instance_for_test() as instance:
        assert _run(defs, instance, ["AAPL.csv", "MSFT.csv"]).success
        second = _run(defs, instance, ["AAPL.csv", "MSFT.csv"])
        assert second.success
        summary = second.get_asset_materialization_events()[0].materialization.metadata
        assert summary["run_files_skipped_unchanged"].value == 2
        assert summary["run_rows_read"].value == 0
        assert summary["skipped"].value == "unchanged"
        forced = _run(defs, instance, ["AAPL.csv", "MSFT.csv"], force=True)
        summary = forced.get_asset_materialization_events()[0].materialization.metadata
        assert summary["run_rows_read"].value == 4
        assert summary["run_files_skipped_unchanged"].value == 0


def test_a_bad_file_fails_the_run_but_the_good_partitions_stay_materialized(pg_url: str, tree: Path) -> None:
    (tree / "NASDAQ" / "BAD.csv").write_text("not,a,stock,scrapper,header\n1,2,3,4,5\n", encoding="utf-8")
    defs = _defs(pg_url, tree)
    with dg.instance_for_test() as instance:
        result = _run(defs, instance, ["AAPL.csv", "BAD.csv", "MSFT.csv"])
        assert not result.success
        assert _materialized(instance) == {"AAPL.csv", "MSFT.csv"}
        failure = result.failure_data_for_node(NASDAQ.asset_name)
        assert failure is not None
        assert "BAD.csv" in failure.error.message
        assert "unknown_format" in failure.error.message
    with sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://")).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT status, error_class FROM file_imports WHERE source_file = 'NASDAQ/BAD.csv'")
        ).all()
        assert rows == [("failed", "unknown_format")]


def test_a_partition_whose_file_was_deleted_fails_as_file_missing(pg_url: str, tree: Path) -> None:
    defs = _defs(pg_url, tree)
    with dg.instance_for_test() as instance:
        register_partitions(instance, NASDAQ, ["AAPL.csv", "GONE.csv"])
        shutil.copy(tree / "NASDAQ" / "AAPL.csv", tree / "NASDAQ" / "GONE.csv")
        (tree / "NASDAQ" / "GONE.csv").unlink()
        result = _run(defs, instance, ["AAPL.csv", "GONE.csv"])
        assert not result.success
        assert "file_missing" in result.failure_data_for_node(NASDAQ.asset_name).error.message
        assert _materialized(instance) == {"AAPL.csv"}


def test_a_partition_whose_file_became_a_directory_fails_as_not_a_file(pg_url: str, tree: Path) -> None:
    (tree / "NASDAQ" / "DIR.csv").mkdir()
    defs = _defs(pg_url, tree)
    with dg.instance_for_test() as instance:
        result = _run(defs, instance, ["AAPL.csv", "DIR.csv"])
        assert not result.success
        assert "not_a_file" in result.failure_data_for_node(NASDAQ.asset_name).error.message
        assert _materialized(instance) == {"AAPL.csv"}


def test_a_missing_database_fails_the_step_once_without_a_retry(pg_url: str, tree: Path) -> None:
    defs = _defs(pg_url.rsplit("/", 1)[0] + "/mt_no_such_database", tree)
    with dg.instance_for_test() as instance:
        result = _run(defs, instance, ["AAPL.csv"])
        assert not result.success
        assert "database_config" in result.failure_data_for_node(NASDAQ.asset_name).error.message
        kinds = [event.event_type for event in result.all_events]
        assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
        assert kinds.count(dg.DagsterEventType.STEP_START) == 1
