"""A replay made of several runs: each run answers for its own files, and nothing the item still needs is dropped."""

import datetime as dt
from pathlib import Path

import pytest

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.core.dlq import DeadLetterItem, DeadLetterStore, FailureRecord


@pytest.fixture
def store(tmp_path: Path) -> DeadLetterStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    return DeadLetterStore(engine)


def failure(run_id: str, failed: dict[str, str], keys: list[str], replay_of: int | None = None) -> FailureRecord:
    return FailureRecord(
        run_id=run_id,
        job_name="import_nasdaq",
        market="NASDAQ",
        partition_keys=sorted(failed) or keys,
        source_files=[f"NASDAQ/{k}" for k in sorted(failed) or keys],
        failed_files=failed,
        error_class="unknown_format" if failed else "unexpected",
        message="failed",
        stack_trace=None,
        attempts=1,
        retryable=not failed,
        failed_at=dt.datetime.now(dt.UTC),
        run_ids=[run_id],
        run_config={},
        run_tags={},
        replay_of=replay_of,
        attempted_keys=keys,
    )


def opened(store: DeadLetterStore) -> DeadLetterItem:
    item, created = store.record(
        failure("r0", {"A.csv": "unknown_format: a", "C.csv": "unknown_format: c"}, ["A.csv", "B.csv", "C.csv"])
    )
    assert created and item.partition_keys == ["A.csv", "C.csv"]
    return item


def test_two_replay_runs_that_both_fail_keep_both_files(store: DeadLetterStore) -> None:
    item = opened(store)
    store.mark_replayed(item.id, ["r1", "r2"])
    store.record(failure("r1", {"A.csv": "unknown_format: a again"}, ["A.csv"], replay_of=item.id))
    after, _ = store.record(failure("r2", {"C.csv": "unknown_format: c again"}, ["C.csv"], replay_of=item.id))
    assert after.status == "open" and after.attempts == 3
    assert after.failed_files == {"A.csv": "unknown_format: a again", "C.csv": "unknown_format: c again"}
    assert after.partition_keys == ["A.csv", "C.csv"]


def test_a_replay_run_that_crashed_names_nothing_and_drops_nothing(store: DeadLetterStore) -> None:
    item = opened(store)
    store.mark_replayed(item.id, ["r1", "r2"])
    after, _ = store.record(failure("r2", {}, ["C.csv"], replay_of=item.id))
    assert after.failed_files == item.failed_files and after.status == "open"


def test_a_successful_replay_run_takes_its_files_off_and_the_last_one_resolves(store: DeadLetterStore) -> None:
    item = opened(store)
    store.mark_replayed(item.id, ["r1", "r2"])
    assert store.settle_replay_run(item.id, "r-unrelated", ["A.csv"]) is None  # not one of the replay's runs
    settled = store.settle_replay_run(item.id, "r1", ["A.csv"])
    assert settled is not None and settled.partition_keys == ["C.csv"] and list(settled.failed_files) == ["C.csv"]
    assert store.resolve_if_replayed(item.id, "r1", {"r1"}) is None  # r2 has not succeeded yet
    last = store.settle_replay_run(item.id, "r2", ["C.csv"])
    assert last is not None and last.partition_keys == ["C.csv"]  # the item keeps its last files once resolved
    resolved = store.resolve_if_replayed(item.id, "r2", {"r1", "r2"})
    assert resolved is not None and resolved.status == "resolved" and resolved.resolved_by_run_id == "r2"


def test_undo_replay_restores_the_item_or_keeps_only_the_runs_that_started(store: DeadLetterStore) -> None:
    item = opened(store)
    store.mark_replayed(item.id, ["r1", "r2"])
    restored = store.undo_replay(item, ["r1", "r2"], [])
    assert (restored.status, restored.replay_run_ids, restored.replayed_at) == ("open", [], None)
    store.mark_replayed(item.id, ["r3", "r4"])
    partial = store.undo_replay(item, ["r3", "r4"], ["r3"])
    assert (partial.status, partial.replay_run_ids) == ("open", ["r3"])
    store.mark_replayed(item.id, ["r5"])
    assert store.undo_replay(item, ["r3", "r4"], []).replay_run_ids == ["r5"]  # a newer replay is left alone
