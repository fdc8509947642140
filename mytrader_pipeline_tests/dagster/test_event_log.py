"""mytrader run's local Dagster instance: its kept-open SQLite event log, one planned event per run, failures marked."""

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

from mytrader_pipeline.defs.event_log import KeptOpenSqliteEventLogStorage, kept_open_instance
from mytrader_pipeline.defs.run_logs import write_run_log
from mytrader_pipeline.defs.run_storage import KeptOpenSqliteRunStorage
from mytrader_pipeline.local_runs import local_instance, run_import
from mytrader_pipeline.markets import load_markets

HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
SYMBOLS = ["AA", "BB", "CC", "DD", "EE"]
ASSET = dg.AssetKey("nyse_prices")


def _write(root: Path, symbol: str, days: int) -> None:
    lines = [f"{symbol},2024-01-{day:02d},10,11,9,10.5,10.5,100\n" for day in range(1, days + 1)]
    (root / "NYSE" / f"{symbol}.csv").write_text(HEADER + "".join(lines))


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with kept_open_instance(tmp_path / "dagster_home") as opened:
        yield opened


def _run(data_root: Path, url: str, instance: dg.DagsterInstance, tmp_path: Path) -> list[str]:
    registry = load_markets()
    summaries = run_import(
        data_root, url, registry, registry.select("NYSE"), log_level=None, progress=False, instance=instance,
        logs_dir=tmp_path / "logs",
    )  # fmt: skip
    return summaries[0].run_ids


def _planned(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogRecord]:
    return list(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records)


def _materialized(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, object]]:
    records = instance.fetch_materializations(ASSET, limit=1000).records
    return {
        str(r.partition_key): {k: v.value for k, v in r.asset_materialization.metadata.items()}  # type: ignore[union-attr]
        for r in records
        if r.run_id == run_id
    }


def test_a_run_over_n_changed_files_plans_once_and_records_each_file_s_load(
    data_root: Path, sqlite_engine: sa.Engine, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    for symbol in SYMBOLS:
        _write(data_root, symbol, 3)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    [first] = _run(data_root, url, instance, tmp_path)
    [planned] = _planned(instance, first)  # one event over the run's range, not one per file
    subset = planned.event_log_entry.dagster_event.event_specific_data.partitions_subset  # type: ignore[union-attr]
    assert sorted(subset.get_partition_keys()) == [f"{s}.csv" for s in SYMBOLS]
    loads = _materialized(instance, first)
    assert sorted(loads) == [f"{s}.csv" for s in SYMBOLS]
    assert {meta["rows_read"] for meta in loads.values()} == {3}

    for symbol in SYMBOLS:  # the daily rewrite: every file grows by one day
        _write(data_root, symbol, 4)
    [second] = _run(data_root, url, instance, tmp_path)
    assert len(_planned(instance, second)) == 1
    appended = _materialized(instance, second)
    assert sorted(appended) == [f"{s}.csv" for s in SYMBOLS]  # each appended file gets its latest load
    assert {(meta["load_mode"], meta["rows_read"]) for meta in appended.values()} == {("append", 1)}

    assert _run(data_root, url, instance, tmp_path) == []  # nothing changed: no run, no event


def test_the_files_a_failed_run_did_not_load_are_marked_failed_as_before(
    data_root: Path, sqlite_engine: sa.Engine, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    _write(data_root, "AA", 3)
    _write(data_root, "CC", 3)
    (data_root / "NYSE" / "BB.csv").write_bytes(b"\x00\x01 not a csv \xff\xfe\n" * 4)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    [run_id] = _run(data_root, url, instance, tmp_path)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
    assert sorted(_materialized(instance, run_id)) == ["AA.csv", "CC.csv"]
    attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(
        ASSET
    )
    assert {key: run for key, (run, _) in attempts.items()} == {"BB.csv": run_id}  # what Dagster shows as failed


def test_the_kept_open_log_writes_the_files_dagster_s_own_storage_reads(
    data_root: Path, sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    _write(data_root, "AA", 3)
    home = tmp_path / "dagster_home"
    with kept_open_instance(home) as kept:
        assert isinstance(kept.run_storage, KeptOpenSqliteRunStorage)
        [run_id] = _run(data_root, sqlite_engine.url.render_as_string(hide_password=False), kept, tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as stock:
        assert type(stock.event_log_storage) is SqliteEventLogStorage
        assert type(stock.run_storage) is SqliteRunStorage
        assert stock.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
        assert sorted(_materialized(stock, run_id)) == ["AA.csv"]
        assert stock.get_dynamic_partitions("nyse_files") == ["AA.csv"]


def test_local_instance_keeps_the_log_open_only_in_a_home_without_its_own_dagster_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with local_instance() as instance:
        assert isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with local_instance() as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage  # configured: as configured


def test_a_run_s_materializations_are_stored_as_one_batch_that_dagster_s_own_storage_reads(
    data_root: Path, sqlite_engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for symbol in SYMBOLS:
        _write(data_root, symbol, 3)
    batches: list[tuple[str, int]] = []
    real = KeptOpenSqliteEventLogStorage.store_event_batch

    def counted(self: KeptOpenSqliteEventLogStorage, events: list) -> None:  # type: ignore[type-arg]
        kinds = {e.dagster_event_type for e in events}
        batches.append((kinds.pop().value if len(kinds) == 1 else "mixed", len(events)))
        real(self, events)

    monkeypatch.setattr(KeptOpenSqliteEventLogStorage, "store_event_batch", counted)
    home = tmp_path / "dagster_home"
    with kept_open_instance(home) as kept:
        [run_id] = _run(data_root, sqlite_engine.url.render_as_string(hide_password=False), kept, tmp_path)
    # the step's materializations of its five partitions in one call (its checks' planned events in another)
    assert [n for kind, n in batches if kind == "ASSET_MATERIALIZATION"] == [len(SYMBOLS)]
    assert "DAGSTER_EVENT_BATCH_SIZE" not in os.environ  # the setting does not outlive the run
    with dg.DagsterInstance.from_config(str(home)) as stock:
        assert sorted(_materialized(stock, run_id)) == [f"{s}.csv" for s in SYMBOLS]  # the index, per partition
        in_run = stock.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        assert sorted(r.partition_key for r in in_run) == [f"{s}.csv" for s in SYMBOLS]  # the run's own database
        assert stock.get_materialized_partitions(ASSET) == {f"{s}.csv" for s in SYMBOLS}
        latest = stock.get_latest_materialization_event(ASSET)
        assert latest is not None and latest.run_id == run_id


def _schema(path: Path) -> tuple[list[tuple[str, str]], list[str], str]:
    """A SQLite database's tables and indexes (with their SQL), its stamp and journal mode."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        objects = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        stamp = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        mode = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
        result = ([tuple(row) for row in objects], list(stamp), mode)
    engine.dispose()
    return result  # type: ignore[return-value]


def test_a_new_run_database_is_created_as_dagster_s_own_storage_creates_it(tmp_path: Path) -> None:
    ours = KeptOpenSqliteEventLogStorage(str(tmp_path / "ours"))
    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    for storage in (ours, stock):
        storage.get_logs_for_run("a-run")  # the run's database is created on first use
        storage.dispose()
    assert _schema(tmp_path / "ours" / "a-run.db") == _schema(tmp_path / "stock" / "a-run.db")
    assert _schema(tmp_path / "ours" / "a-run.db")[1]  # stamped with a revision


def test_the_run_log_written_from_the_events_as_stored_is_the_one_read_back_from_the_file(
    data_root: Path, sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    for symbol in SYMBOLS:
        _write(data_root, symbol, 3)
    (data_root / "NYSE" / "BAD.csv").write_text(HEADER + "BAD,2024-01-01,x\n")  # a failed file: errors in the log
    home = tmp_path / "dagster_home"
    with kept_open_instance(home) as kept:
        [run_id] = _run(data_root, sqlite_engine.url.render_as_string(hide_password=False), kept, tmp_path)
        assert kept.event_log_storage.stored_events(run_id) is None  # type: ignore[attr-defined]  # taken by the run
    written = (tmp_path / "logs" / f"{run_id}.log").read_text()
    with dg.DagsterInstance.from_config(str(home)) as stock:
        read_back = write_run_log(stock, run_id, tmp_path / "read_back").read_text()
    assert written == read_back
    assert "STEP_FAILURE" in written and "ASSET_MATERIALIZATION" in written
    assert len(written.splitlines()) > 20


def test_partition_keys_read_while_another_run_ends_the_read_once_caching(tmp_path: Path) -> None:
    """Markets run on threads: one run's read may be under way when the last other run leaves
    ``partitions_read_once``. The read still answers (it raised TypeError once, under load)."""
    with kept_open_instance(tmp_path / "dagster_home") as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, KeptOpenSqliteEventLogStorage)
        instance.add_dynamic_partitions("nyse_files", ["AA.csv", "BB.csv"])
        outer = SqliteEventLogStorage.get_dynamic_partitions
        ended: list[bool] = []

        def read_while_caching_ends(self: SqliteEventLogStorage, name: str) -> list[str]:
            keys = outer(self, name)
            if not ended:  # as the other run's thread would, between this read's start and its end
                ended.append(True)
                context.__exit__(None, None, None)
            return list(keys)

        context = storage.partitions_read_once()
        context.__enter__()
        original = SqliteEventLogStorage.get_dynamic_partitions
        SqliteEventLogStorage.get_dynamic_partitions = read_while_caching_ends  # type: ignore[method-assign]
        try:
            assert list(storage.get_dynamic_partitions("nyse_files")) == ["AA.csv", "BB.csv"]
            assert storage.has_dynamic_partition("nyse_files", "BB.csv")
        finally:
            SqliteEventLogStorage.get_dynamic_partitions = original  # type: ignore[method-assign]
        assert ended == [True]
