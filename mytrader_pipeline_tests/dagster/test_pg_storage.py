"""The deployment's storages (deploy/dagster.yaml on a real PostgreSQL): kept connections, partitions read once."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent  # not re-exported at the top level
from dagster._core.storage.dagster_run import DagsterRun  # not re-exported at the top level
from dagster_postgres.event_log import PostgresEventLogStorage

from mytrader_pipeline.defs.pg_storage import (
    KEPT_CONNECTIONS,
    KeptOpenPostgresEventLogStorage,
    KeptOpenPostgresRunStorage,
    KeptOpenPostgresScheduleStorage,
)
from mytrader_pipeline.local_runs import run_import
from mytrader_pipeline.markets import load_markets

DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
ASSET = dg.AssetKey("nyse_prices")


def _write(root: Path, symbols: Sequence[str]) -> None:
    for symbol in symbols:
        lines = [f"{symbol},2024-01-{day:02d},10,11,9,10.5,10.5,100\n" for day in range(1, 4)]
        (root / "NYSE" / f"{symbol}.csv").write_text(HEADER + "".join(lines))


@pytest.fixture
def deployment(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The instance of deploy/dagster.yaml, its storage in a fresh PostgreSQL database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_CONFIG, home / "dagster.yaml")
    url = sa.make_url(pg_url)
    for name, value in {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
    }.items():
        monkeypatch.setenv(name, str(value))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of dynamic partitions that reaches Dagster's PostgreSQL event log (the reads go on to it)."""
    seen: list[str] = []
    for name in ("get_dynamic_partitions", "has_dynamic_partition"):
        original = getattr(PostgresEventLogStorage, name)

        def counted(self: PostgresEventLogStorage, *args: str, _original=original, _name=name) -> object:  # type: ignore[no-untyped-def]
            seen.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(PostgresEventLogStorage, name, counted)
    return seen


def _import(data_root: Path, pg_url: str, instance: dg.DagsterInstance, tmp_path: Path, *, force: bool) -> str:
    registry = load_markets()
    [summary] = run_import(
        data_root, pg_url, registry, registry.select("NYSE"), force=force, log_level=None, progress=False,
        instance=instance, logs_dir=tmp_path / "logs",
    )  # fmt: skip
    [run_id] = summary.run_ids
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
    return run_id


def test_the_deployment_s_event_log_is_postgresql_with_partitions_read_once(deployment: dg.DagsterInstance) -> None:
    assert isinstance(deployment.event_log_storage, KeptOpenPostgresEventLogStorage)
    deployment.add_dynamic_partitions("nyse_files", ["AA.csv"])
    assert list(deployment.get_dynamic_partitions("nyse_files")) == ["AA.csv"]  # in PostgreSQL, not in a cache
    assert deployment.has_dynamic_partition("nyse_files", "AA.csv")


def test_an_import_step_reads_its_partitions_as_often_for_fifteen_files_as_for_three(
    data_root: Path, pg_url: str, deployment: dg.DagsterInstance, reads: list[str], tmp_path: Path
) -> None:
    """Dagster checks each file's metadata against the run's partitions: without the read-once cache a run's reads
    grew with its files (a query, and a new PostgreSQL connection, per file)."""
    _write(data_root, ["AA", "BB", "CC"])
    before = len(reads)
    small = _import(data_root, pg_url, deployment, tmp_path, force=True)
    reads_for_three = len(reads) - before
    _write(data_root, [f"S{i:02d}" for i in range(12)])
    before = len(reads)
    large = _import(data_root, pg_url, deployment, tmp_path, force=True)
    reads_for_fifteen = len(reads) - before

    assert reads_for_fifteen == reads_for_three
    records = deployment.fetch_materializations(ASSET, limit=100).records  # newest first
    materialized = {r.partition_key: r.run_id for r in reversed(records)}  # each file's latest
    assert len(materialized) == 15 and set(materialized.values()) == {large}  # every file, each with its metadata
    latest = deployment.get_latest_materialization_event(ASSET)
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["rows_read"].value == 3
    assert small != large


def test_the_deployment_s_event_log_stores_a_run_s_events_on_a_kept_connection(deployment: dg.DagsterInstance) -> None:
    """Dagster's storage opened a PostgreSQL connection per event: a run created over 110 files spent a second (four
    under load) connecting for its planned materializations alone."""
    storage = deployment.event_log_storage
    assert isinstance(storage, KeptOpenPostgresEventLogStorage)
    opened: list[object] = []
    sa.event.listen(storage._engine, "connect", lambda connection, record: opened.append(connection))
    run_id = "a-run"
    for i in range(50):
        planned = DagsterEvent.build_asset_materialization_planned_event(
            "import_nyse", "nyse_prices", AssetMaterializationPlannedData(ASSET, partition=f"F{i:02d}.csv")
        )
        deployment.report_dagster_event(planned, run_id, logging.DEBUG)
    assert len(deployment.get_records_for_run(run_id, limit=100).records) == 50
    assert len(opened) <= KEPT_CONNECTIONS


def test_the_deployment_s_run_and_schedule_storages_keep_their_connections(deployment: dg.DagsterInstance) -> None:
    """The daemon creates runs and updates sensor state all day: Dagster's storages connected for each statement."""
    assert isinstance(deployment.run_storage, KeptOpenPostgresRunStorage)
    assert isinstance(deployment.schedule_storage, KeptOpenPostgresScheduleStorage)
    opened: list[object] = []
    for storage in (deployment.run_storage, deployment.schedule_storage):
        sa.event.listen(storage._engine, "connect", lambda connection, record: opened.append(connection))
    for i in range(20):
        deployment.add_run(DagsterRun(job_name="import_nyse", run_id=f"run-{i}"))
        deployment.all_instigator_state()
    assert deployment.get_runs_count() == 20
    assert len(opened) <= 2 * KEPT_CONNECTIONS
