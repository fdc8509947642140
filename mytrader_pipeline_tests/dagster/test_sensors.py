"""The file sensors on a PostgreSQL-backed Dagster instance: new, changed, touched-only and deleted files."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.fingerprints import FileCursor
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.jobs import PRIORITY_TAG, import_job_name
from mytrader_pipeline.defs.partitions import files_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.defs.sensors import DEFAULT_MAX_FILES_PER_RUN, build_file_sensor
from mytrader_pipeline.markets import load_markets

pytestmark = pytest.mark.postgres
REGISTRY = load_markets()
BIST = REGISTRY.get("BIST")
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.fixture
def pg_instance(pg_url: str) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance whose runs, events and sensor state are in PostgreSQL (dagster-postgres, psycopg2)."""
    storage = {"postgres": {"postgres_url": pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)}}
    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        yield instance


@pytest.fixture
def root(sample_root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "DATA"
    shutil.copytree(sample_root, copy)
    return copy


def tick(
    instance: dg.DagsterInstance, root: Path, cursor: str | None, max_files: int = DEFAULT_MAX_FILES_PER_RUN
) -> dg.SensorResult:
    """One sensor evaluation, then what the daemon does with its partition requests."""
    sensor = build_file_sensor(BIST, max_files_per_run=max_files)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"data_root": DataRootResource(data_root=str(root))}
    )
    data = sensor.evaluate_tick(context)
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return data


def launch(instance: dg.DagsterInstance, defs: dg.Definitions, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run a sensor's request in process, as the queue would launch it."""
    job = defs.resolve_job_def(import_job_name(BIST))
    return job.execute_in_process(instance=instance, tags=dict(request.tags), run_config=dict(request.run_config))


def bist_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "BIST").glob("*.csv"))


def loads(pg_url: str) -> list[str]:
    """source_file of every succeeded import, in order."""
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        query = sa.select(file_imports.c.source_file).where(file_imports.c.status == "succeeded")
        rows = [r.source_file for r in conn.execute(query.order_by(file_imports.c.id))]
    engine.dispose()
    return rows


def test_first_sight_adds_partitions_and_batches_contiguous_ranges(pg_instance: dg.DagsterInstance, root: Path) -> None:
    names = bist_files(root)
    assert len(names) >= 4
    data = tick(pg_instance, root, None, max_files=3)

    assert pg_instance.get_dynamic_partitions(files_partitions(BIST).name or "") == names
    requests = data.run_requests or []
    assert len(requests) == -(-len(names) // 3)  # bounded runs, not one per file
    covered = []
    for request in requests:
        first, last = request.tags[RANGE_START], request.tags[RANGE_END]
        covered += names[names.index(first) : names.index(last) + 1]
        assert request.tags["market"] == "BIST" and int(request.tags[PRIORITY_TAG]) > 0
    assert covered == names
    assert len({r.run_key for r in requests}) == len(requests)
    again = tick(pg_instance, root, None, max_files=3)  # a retried tick from the same cursor: the same run keys
    assert [r.run_key for r in again.run_requests or []] == [r.run_key for r in requests]


def test_cursor_round_trip_requests_nothing_for_an_unchanged_tree(pg_instance: dg.DagsterInstance, root: Path) -> None:
    first = tick(pg_instance, root, None)
    cursor = FileCursor.from_json(first.cursor)
    assert sorted(cursor.files) == bist_files(root)

    second = tick(pg_instance, root, cursor.to_json())
    assert not second.run_requests and second.skip_message
    assert FileCursor.from_json(second.cursor).files == cursor.files


def test_touched_file_is_not_reloaded(pg_instance: dg.DagsterInstance, root: Path) -> None:
    cursor = tick(pg_instance, root, None).cursor
    path = root / "BIST" / bist_files(root)[0]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5 * 10**9))

    data = tick(pg_instance, root, cursor)
    assert not data.run_requests
    assert FileCursor.from_json(data.cursor).files[path.name].mtime_ns == path.stat().st_mtime_ns


def test_changed_file_is_reloaded_alone(pg_instance: dg.DagsterInstance, pg_url: str, root: Path) -> None:
    defs = build_defs(
        REGISTRY,
        resource_overrides={
            "warehouse": WarehouseResource(database_url=pg_url),
            "data_root": DataRootResource(data_root=str(root)),
        },
    )
    first = tick(pg_instance, root, None)
    for request in first.run_requests or []:
        assert launch(pg_instance, defs, request).success
    assert len(loads(pg_url)) == len(bist_files(root))
    name = bist_files(root)[1]
    path = root / "BIST" / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")  # a different content (one day fewer)

    data = tick(pg_instance, root, first.cursor)
    requests = data.run_requests or []
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests] == [(name, name)]
    assert launch(pg_instance, defs, requests[0]).success
    assert loads(pg_url)[len(bist_files(root)) :] == [f"BIST/{name}"]


def test_deleted_file_is_observed_and_its_partition_kept(pg_instance: dg.DagsterInstance, root: Path) -> None:
    cursor = tick(pg_instance, root, None).cursor
    name = bist_files(root)[0]
    (root / "BIST" / name).unlink()

    data = tick(pg_instance, root, cursor)
    assert not data.run_requests
    [observation] = data.asset_events
    assert isinstance(observation, dg.AssetObservation)
    assert observation.partition == name and observation.asset_key == dg.AssetKey(BIST.asset_name)
    assert name in pg_instance.get_dynamic_partitions(files_partitions(BIST).name or "")
    assert name not in FileCursor.from_json(data.cursor).files


def test_a_file_added_later_gets_its_own_run(pg_instance: dg.DagsterInstance, root: Path) -> None:
    cursor = tick(pg_instance, root, None).cursor
    source = root / "BIST" / bist_files(root)[0]
    shutil.copy(source, root / "BIST" / "ZZNEW.csv")

    data = tick(pg_instance, root, cursor)
    [request] = data.run_requests or []
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("ZZNEW.csv", "ZZNEW.csv")
    assert pg_instance.get_dynamic_partitions(files_partitions(BIST).name or "")[-1] == "ZZNEW.csv"
