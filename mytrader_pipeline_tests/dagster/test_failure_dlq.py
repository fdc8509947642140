"""Failed runs land in the dead-letter queue once, with a precise reason; non-retryable failures are never retried."""

import dataclasses
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import DeadLetterStore
from mytrader_pipeline.definitions import build_defs
from mytrader_pipeline.defs.dead_letters import record_run_failure
from mytrader_pipeline.defs.jobs import import_job_name, partition_range_tags
from mytrader_pipeline.defs.partitions import register_partitions
from mytrader_pipeline.defs.resources import DataRootResource, WarehouseResource
from mytrader_pipeline.markets import MarketRegistry, load_markets

# Tiny retry delays: the policy is per market, and tests must not wait minutes.
REGISTRY = MarketRegistry(
    tuple(dataclasses.replace(m, retry_delay_seconds=0.01, retry_max_delay_seconds=0.05) for m in load_markets())
)
NASDAQ = REGISTRY.get("NASDAQ")
HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
GOOD_ROWS = "X,2024-01-02,10,11,9,10.5,10.4,1000\nX,2024-01-03,10.5,12,10,11,11,900\n"

# One file content per non-retryable error class (None: no file at all).
BROKEN: dict[str, bytes | None] = {
    "file_missing": None,
    "unknown_format": b"foo,bar,baz\n1,2,3\n",
    "undecodable": HEADER.encode() + b"X,2024-01-02,\x81\x8d,11,9,10.5,10.4,1000\n",
    "empty_file": b"",
    "all_rows_rejected": (HEADER + "X,2024-01-02,10,11,9,-10.5,10.4,1000\nX,2024-01-03,10,1,9,10,10,5\n").encode(),
    "ambiguous_dates": (HEADER + "X,01/02/2024,10,11,9,10.5,10.4,1000\nX,03/04/2024,10,11,9,10.5,10.4,1000\n").encode(),
    "outside_data_root": b"symlink",
}


def defs_for(pg_url: str, root: Path, registry: MarketRegistry = REGISTRY) -> dg.Definitions:
    """The project's definitions over a test warehouse and data root."""
    return build_defs(
        registry,
        resource_overrides={
            "warehouse": WarehouseResource(database_url=pg_url),
            "data_root": DataRootResource(data_root=str(root)),
        },
    )


def run_keys(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str], **config: object):
    """Run NASDAQ's import job over ``keys`` (registered as partitions first) in-process."""
    register_partitions(instance, NASDAQ, keys)
    return defs.resolve_job_def(import_job_name(NASDAQ)).execute_in_process(
        instance=instance,
        run_config={"ops": {NASDAQ.asset_name: {"config": config}}},
        tags=partition_range_tags(keys[0], keys[-1]),
        raise_on_error=False,
    )


def store_for(pg_url: str) -> DeadLetterStore:
    """The dead-letter queue of the test warehouse."""
    engine = make_engine(pg_url, pool_size=2)
    ensure_schema(engine)
    return DeadLetterStore(engine)


def write_broken(root: Path, error_class: str, tmp_path: Path) -> str:
    """Write the file that fails with ``error_class``; returns its partition key."""
    key = f"{error_class.upper().replace('_', '')}.csv"
    content = BROKEN[error_class]
    if error_class == "outside_data_root":
        outside = tmp_path / "outside.csv"
        outside.write_text(HEADER + GOOD_ROWS, encoding="utf-8")
        os.symlink(outside, root / "NASDAQ" / key)
    elif content is not None:
        (root / "NASDAQ" / key).write_bytes(content)
    return key


def retries_of(instance: dg.DagsterInstance, run_id: str) -> int:
    """How many times a run's step was retried."""
    return len(instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records)


@pytest.mark.parametrize("error_class", sorted(BROKEN))
def test_each_non_retryable_class_makes_one_open_item_without_retries(
    pg_url: str, data_root: Path, tmp_path: Path, error_class: str
) -> None:
    key = write_broken(data_root, error_class, tmp_path)
    (data_root / "NASDAQ" / "AAPL.csv").write_text(HEADER + GOOD_ROWS.replace("X,", "AAPL,"), encoding="utf-8")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        result = run_keys(defs, instance, ["AAPL.csv", key])
        assert not result.success
        assert retries_of(instance, result.run_id) == 0
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        item, created = record_run_failure(instance, REGISTRY, store, run)
        again, created_again = record_run_failure(instance, REGISTRY, store, run)

    assert created and not created_again
    assert item is not None and again is not None and again.id == item.id
    page = store.list(status="open")
    assert page.total == 1
    assert item.error_class == error_class
    assert item.partition_keys == [key]  # AAPL.csv loaded: only the failed file is left to replay
    assert item.failed_files[key].startswith(f"{error_class}: ")
    assert f"NASDAQ/{key}" in item.failed_files[key]  # the reason names the file
    assert item.retryable is False
    assert item.attempts == 1
    assert item.run_ids == [result.run_id]
    assert item.stack_trace and "Failure" in item.stack_trace
    assert item.run_tags["dagster/asset_partition_range_start"] == "AAPL.csv"


def test_the_failure_sensor_records_once_even_when_its_cursor_is_lost(pg_url: str, data_root: Path) -> None:
    (data_root / "NASDAQ" / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)
    sensor = defs.resolve_sensor_def("dead_letter_sensor")
    store = store_for(pg_url)
    resources = {"warehouse": WarehouseResource(database_url=pg_url)}

    def tick(instance: dg.DagsterInstance, cursor: str | None = None) -> Any:
        context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor, resources=resources)
        return sensor.evaluate_tick(context)

    with dg.instance_for_test() as instance:
        first = tick(instance)
        assert store.list().total == 0  # the first tick only sets the cursor
        result = run_keys(defs, instance, ["BAD.csv"])
        assert not result.success
        second = tick(instance, first.cursor)
        assert store.list().total == 1
        # A restarted sensor that lost its progress sees the same failure again: still one item.
        tick(instance, first.cursor)
        tick(instance, second.cursor)
    (item,) = store.list().items
    assert (item.error_class, item.status, item.run_id) == ("unknown_format", "open", result.run_id)


def test_a_run_dagster_will_retry_is_left_for_its_retry(pg_url: str, data_root: Path) -> None:
    (data_root / "NASDAQ" / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        result = run_keys(defs, instance, ["BAD.csv"])
        instance.add_run_tags(result.run_id, {"dagster/will_retry": "true"})
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert record_run_failure(instance, REGISTRY, store, run) == (None, False)
    assert store.list().total == 0
