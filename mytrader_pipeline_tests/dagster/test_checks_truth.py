"""Checks and figures that tell the truth about the warehouse: across runs that skip files, and with rejected rows."""

import datetime as dt
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs import checks
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import load_markets

pytestmark = pytest.mark.postgres
REGISTRY = load_markets()
NASDAQ = REGISTRY.get("NASDAQ")
HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
BAD_LINES = (4, 9)  # lines (header = 1) of BAD.csv with a negative volume


def _write(root: Path, name: str, rows: int, bad_lines: tuple[int, ...] = ()) -> None:
    day = dt.date(2024, 1, 1)
    lines = []
    for n in range(rows):
        volume = -1 if n + 2 in bad_lines else 1000 + n
        lines.append(f"{name[:-4]},{day + dt.timedelta(days=n)},10,11,9,10.5,10.4,{volume}\n")
    (root / "NASDAQ" / name).write_text(HEADER + "".join(lines), encoding="utf-8")


def _run(pg_url: str, root: Path, instance: dg.DagsterInstance, keys: list[str]) -> dg.ExecuteInProcessResult:
    defs = build_defs(
        REGISTRY,
        resource_overrides={
            "warehouse": WarehouseResource(database_url=pg_url),
            "data_root": DataRootResource(data_root=str(root)),
        },
    )
    register_partitions(instance, NASDAQ, keys)
    return defs.resolve_job_def(import_job_name(NASDAQ)).execute_in_process(
        instance=instance, tags=partition_range_tags(keys[0], keys[-1]), raise_on_error=False
    )


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [c for c in result.get_asset_check_evaluations() if c.check_name == name]
    return evaluation


def _partition_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    return {
        str(e.materialization.partition): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture
def tree(data_root: Path) -> Path:
    _write(data_root, "BAD.csv", 15, BAD_LINES)  # 2 of 15 rejected: 13% > NASDAQ's 10%
    _write(data_root, "GOOD.csv", 10)
    return data_root


def test_rejected_rate_stays_failed_while_a_skipped_file_is_over_the_threshold(pg_url: str, tree: Path) -> None:
    assert NASDAQ.max_rejected_fraction == 0.10
    with dg.instance_for_test() as instance:
        first = _run(pg_url, tree, instance, ["BAD.csv", "GOOD.csv"])
        assert first.success
        failed = _check(first, "rejected_rate")
        assert failed.passed is False
        assert failed.metadata["files_over_threshold"].value == {"BAD.csv": round(2 / 15, 4)}

        second = _run(pg_url, tree, instance, ["BAD.csv", "GOOD.csv"])  # both unchanged: skipped
        assert _partition_metadata(second)["BAD.csv"]["skipped"] == "unchanged"
        still = _check(second, "rejected_rate")
        assert still.passed is False
        assert still.metadata["files_over_threshold"].value == {"BAD.csv": round(2 / 15, 4)}
        assert "reused" not in _check(first, "ohlc_consistency").metadata
        ohlc = _check(second, "ohlc_consistency")  # no load since the first run's: its evaluation holds, no scan
        assert ohlc.passed is True and "reused" in ohlc.metadata
        assert (
            ohlc.metadata["as_of_file_import_id"] == _check(first, "ohlc_consistency").metadata["as_of_file_import_id"]
        )

        only_good = _run(pg_url, tree, instance, ["GOOD.csv"])  # a run that never names the bad file
        assert _check(only_good, "rejected_rate").passed is False

        _write(tree, "BAD.csv", 15)  # fixed: its next load replaces the bad one
        fixed = _run(pg_url, tree, instance, ["BAD.csv"])
        ohlc = _check(fixed, "ohlc_consistency")  # a new load after a passing read: its rows were validated
        assert ohlc.passed is True and "reused" not in ohlc.metadata and "loads_since_table_read" in ohlc.metadata
        assert ohlc.metadata["table_read_at"] == _check(first, "ohlc_consistency").metadata["table_read_at"]
        assert (
            ohlc.metadata["as_of_file_import_id"] != _check(first, "ohlc_consistency").metadata["as_of_file_import_id"]
        )
        passed = _check(fixed, "rejected_rate")
        assert passed.passed is True
        assert passed.metadata["files_checked"].value == 2
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(NASDAQ.asset_name), "rejected_rate")]
        )
        assert [r.status.value for r in latest.values()] == ["SUCCEEDED"]


def test_a_skipped_file_keeps_its_last_loads_figures_marked_skipped(pg_url: str, tree: Path) -> None:
    with dg.instance_for_test() as instance:
        loaded = _partition_metadata(_run(pg_url, tree, instance, ["BAD.csv", "GOOD.csv"]))["BAD.csv"]
        _run(pg_url, tree, instance, ["BAD.csv", "GOOD.csv"])

        [latest] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(NASDAQ.asset_name), asset_partitions=["BAD.csv"]), limit=1
        ).records
        assert latest.asset_materialization is not None
        carried = {k: v.value for k, v in latest.asset_materialization.metadata.items()}
        assert carried["skipped"] == "unchanged"
        for key in ("rows_read", "rows_loaded", "rows_rejected", "rejected_rate", "fingerprint", "date_range"):
            assert carried[key] == loaded[key], key
        assert (carried["rows_read"], carried["rows_rejected"]) == (15, 2)
        assert carried["date_range"] == "2024-01-01 .. 2024-01-15"
        assert carried["file_import_id"] == loaded["file_import_id"]  # the same load, not a new one
        assert carried["rejected_rows"] is not None  # its rejected rows stay visible too


def test_a_load_with_rejected_rows_carries_a_table_of_them(pg_url: str, tree: Path) -> None:
    with dg.instance_for_test() as instance:
        meta = _partition_metadata(_run(pg_url, tree, instance, ["BAD.csv", "GOOD.csv"]))
    assert "rejected_rows" not in meta["GOOD.csv"]
    table = meta["BAD.csv"]["rejected_rows"]
    assert isinstance(table, dg.TableMetadataValue)
    assert [c.name for c in table.schema.columns] == ["line", "column", "check", "reason", "raw_line"]
    rows = [record.data for record in table.records]
    assert [r["line"] for r in rows] == list(BAD_LINES)
    assert all(r["column"] == "volume" and r["check"] and r["reason"] for r in rows)
    assert rows[0]["raw_line"] == "BAD,2024-01-03,10,11,9,10.5,10.4,-1"


def test_the_table_shows_at_most_20_rejected_rows(pg_url: str, data_root: Path) -> None:
    _write(data_root, "MANY.csv", 40, tuple(range(2, 32)))  # 30 rejected, 10 loaded
    with dg.instance_for_test() as instance:
        meta = _partition_metadata(_run(pg_url, data_root, instance, ["MANY.csv"]))["MANY.csv"]
    assert meta["rows_rejected"] == 30
    table = meta["rejected_rows"]
    assert isinstance(table, dg.TableMetadataValue)
    assert [record.data["line"] for record in table.records] == list(range(2, 22))


def test_an_appended_bad_line_is_judged_with_the_file_and_carried_forward_with_it(pg_url: str, tree: Path) -> None:
    with dg.instance_for_test() as instance:
        _run(pg_url, tree, instance, ["GOOD.csv"])
        with (tree / "NASDAQ" / "GOOD.csv").open("a", encoding="utf-8") as handle:
            handle.write("GOOD,2024-01-11,10,11,9,10.5,10.4,-1\n")  # one new line, rejected (negative volume)
        appended = _run(pg_url, tree, instance, ["GOOD.csv"])
        assert _partition_metadata(appended)["GOOD.csv"]["load_mode"] == "append"
        check = _check(appended, "rejected_rate")
        assert check.passed is True  # the file's 1 of 11 rows (under NASDAQ's 10%), not the append's 1 of 1
        assert check.metadata["max_rejected_rate"].value == round(1 / 11, 4)

        carried = _partition_metadata(_run(pg_url, tree, instance, ["GOOD.csv"]))["GOOD.csv"]
        assert carried["skipped"] == "unchanged"
        assert (carried["rows_read"], carried["rows_loaded"], carried["rows_rejected"]) == (11, 10, 1)
        assert carried["rejected_rate"] == pytest.approx(1 / 11)
        assert (carried["load_mode"], carried["loads_in_chain"]) == ("append", 2)
        assert carried["date_range"] == "2024-01-01 .. 2024-01-10"
        table = carried["rejected_rows"]
        assert isinstance(table, dg.TableMetadataValue)
        assert [record.data["line"] for record in table.records] == [12]


def test_ohlc_consistency_reads_the_table_when_its_read_is_due_and_again_at_each_load_while_failing(
    pg_url: str, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(data_root, "GOOD.csv", 10)
    with dg.instance_for_test() as instance:
        assert _check(_run(pg_url, data_root, instance, ["GOOD.csv"]), "ohlc_consistency").passed is True
        with psycopg.connect(pg_url, autocommit=True) as conn:  # a row written behind the loader's back
            conn.execute("UPDATE historical_market_data SET high = 1 WHERE trade_date = '2024-01-03'")
        _write(data_root, "GOOD.csv", 11)  # the daily append
        trusted = _check(_run(pg_url, data_root, instance, ["GOOD.csv"]), "ohlc_consistency")
        assert trusted.passed is True and "loads_since_table_read" in trusted.metadata  # the read is not due yet

        monkeypatch.setattr(checks, "FULL_READ_EVERY", 0)  # the read is due at the next load
        _write(data_root, "GOOD.csv", 12)
        found = _check(_run(pg_url, data_root, instance, ["GOOD.csv"]), "ohlc_consistency")
        assert found.passed is False and found.metadata["violations"].value == 1
        monkeypatch.undo()  # a day between reads again: a failing check is read at every load nonetheless
        _write(data_root, "GOOD.csv", 13)
        still = _check(_run(pg_url, data_root, instance, ["GOOD.csv"]), "ohlc_consistency")
        assert still.passed is False and "loads_since_table_read" not in still.metadata
