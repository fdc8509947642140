"""Dead-letter items are keyed by market and file: every failure of a file lands on its one open item, and any
successful load of the file (however launched) resolves it, through the two dead-letter sensors."""

import datetime as dt
import threading
import uuid
from pathlib import Path

import dagster as dg

from mytrader_pipeline.core.dlq import DeadLetterItem, DeadLetterStore, FailureRecord
from mytrader_pipeline.core.health import open_dead_letters
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import WarehouseResource
from mytrader_pipeline_tests.dagster.test_failure_dlq import (
    BROKEN,
    GOOD_ROWS,
    HEADER,
    NASDAQ,
    defs_for,
    run_keys,
    store_for,
)


def _after_run(defs: dg.Definitions, instance: dg.DagsterInstance, pg_url: str, run_id: str) -> dg.DagsterRun:
    """Evaluate the dead-letter sensor that watches how ``run_id`` ended, as the daemon would."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    failed = run.status == dg.DagsterRunStatus.FAILURE
    kind = dg.DagsterEventType.RUN_FAILURE if failed else dg.DagsterEventType.RUN_SUCCESS
    (record,) = instance.get_records_for_run(run_id=run_id, of_type=kind).records
    event = record.event_log_entry.dagster_event
    assert event is not None
    name = "dead_letter_sensor" if failed else "dead_letter_resolution_sensor"
    context = dg.build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"warehouse": WarehouseResource(database_url=pg_url)},
    )
    sensor = defs.resolve_sensor_def(name)
    sensor(context.for_run_failure() if failed else context)  # type: ignore[operator]
    return run


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    """What the UI's Materialize does: ``__ASSET_JOB`` on one partition of the market's asset."""
    register_partitions(instance, NASDAQ, [key])
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        partition_key=key,
        asset_selection=[dg.AssetKey(NASDAQ.asset_name)],
        raise_on_error=False,
    )


def _nasdaq_items(store: DeadLetterStore) -> list[DeadLetterItem]:
    return store.list(market="NASDAQ").items


def test_each_new_failure_of_a_file_updates_its_open_item_and_a_ui_materialize_resolves_it(
    pg_url: str, data_root: Path
) -> None:
    bad = data_root / "NASDAQ" / "BAD.csv"
    bad.write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        first = run_keys(defs, instance, ["BAD.csv"])  # the import job (a sensor, a schedule, the CLI)
        _after_run(defs, instance, pg_url, first.run_id)
        (item,) = _nasdaq_items(store)
        assert (item.status, item.attempts, item.run_ids) == ("open", 1, [first.run_id])

        bad.write_bytes(BROKEN["empty_file"] or b"")  # still bad, for another reason
        second = _materialize(defs, instance, "BAD.csv")  # the UI's __ASSET_JOB
        assert not second.success
        _after_run(defs, instance, pg_url, second.run_id)
        _after_run(defs, instance, pg_url, second.run_id)  # a re-delivered event counts nothing twice
        (again,) = _nasdaq_items(store)
        assert again.id == item.id and again.status == "open"
        assert again.attempts == 2 and again.run_ids == [first.run_id, second.run_id]
        assert again.error_class == "empty_file" and again.failed_files["BAD.csv"].startswith("empty_file: ")
        assert again.last_failure_at > item.last_failure_at and again.first_failure_at == item.first_failure_at
        assert open_dead_letters(store.engine) == 1
        found = store.find_by_run(second.run_id)
        assert found is not None and found.id == item.id

        bad.write_text(HEADER + GOOD_ROWS.replace("X,", "BAD,"), encoding="utf-8")  # fixed
        fixed = _materialize(defs, instance, "BAD.csv")
        assert fixed.success
        _after_run(defs, instance, pg_url, fixed.run_id)
    (resolved,) = _nasdaq_items(store)
    assert resolved.id == item.id and resolved.status == "resolved" and resolved.resolved_by_run_id == fixed.run_id
    assert open_dead_letters(store.engine) == 0  # health reads the truth


def test_a_partly_failed_run_resolves_the_item_of_the_file_it_loaded(pg_url: str, data_root: Path) -> None:
    folder = data_root / "NASDAQ"
    (folder / "A.csv").write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        first = run_keys(defs, instance, ["A.csv"])
        _after_run(defs, instance, pg_url, first.run_id)
        (item_a,) = _nasdaq_items(store)
        (folder / "A.csv").write_text(HEADER + GOOD_ROWS.replace("X,", "A,"), encoding="utf-8")  # A fixed
        (folder / "B.csv").write_bytes(BROKEN["unknown_format"] or b"")  # B broken
        second = run_keys(defs, instance, ["A.csv", "B.csv"])
        assert not second.success
        _after_run(defs, instance, pg_url, second.run_id)
    by_id = {i.id: i for i in _nasdaq_items(store)}
    assert by_id[item_a.id].status == "resolved" and by_id[item_a.id].resolved_by_run_id == second.run_id
    (item_b,) = [i for i in by_id.values() if i.id != item_a.id]
    assert item_b.status == "open" and item_b.partition_keys == ["B.csv"]


def test_a_file_loaded_before_the_failure_was_recorded_resolves_it_at_once(pg_url: str, data_root: Path) -> None:
    bad = data_root / "NASDAQ" / "BAD.csv"
    bad.write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        failed = run_keys(defs, instance, ["BAD.csv"])
        bad.write_text(HEADER + GOOD_ROWS.replace("X,", "BAD,"), encoding="utf-8")
        fixed = run_keys(defs, instance, ["BAD.csv"])  # fixed and reloaded before the sensor's tick
        assert fixed.success
        _after_run(defs, instance, pg_url, fixed.run_id)  # no item yet: nothing to resolve
        _after_run(defs, instance, pg_url, failed.run_id)
    (item,) = _nasdaq_items(store)
    assert item.status == "resolved" and item.resolved_by_run_id == fixed.run_id


def _failure(run_id: str) -> FailureRecord:
    return FailureRecord(
        run_id=run_id,
        job_name="import_nasdaq",
        market="NASDAQ",
        partition_keys=["SAME.csv"],
        source_files=["NASDAQ/SAME.csv"],
        failed_files={"SAME.csv": "unknown_format: no header"},
        error_class="unknown_format",
        message="1 of 1 NASDAQ file(s) failed",
        stack_trace=None,
        attempts=1,
        retryable=False,
        failed_at=dt.datetime.now(dt.UTC),
        run_ids=[run_id],
        run_config={},
        run_tags={},
    )


def test_concurrent_failures_of_one_file_open_one_item(pg_url: str) -> None:
    stores = [store_for(pg_url) for _ in range(4)]  # four sensor ticks, each with its own connections
    runs = [str(uuid.uuid4()) for _ in stores]
    start = threading.Barrier(len(stores))
    results: list[tuple[DeadLetterItem, bool]] = []

    def tick(store: DeadLetterStore, run_id: str) -> None:
        start.wait()
        results.append(store.record(_failure(run_id)))

    threads = [threading.Thread(target=tick, args=pair) for pair in zip(stores, runs, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (item,) = _nasdaq_items(stores[0])
    assert item.attempts == 4 and sorted(item.run_ids) == sorted(runs)
    assert {i.id for i, _ in results} == {item.id} and all(created for _, created in results)
    assert item.status == "open"
