"""Dead-letter replay, discard and the ``mytrader dlq`` command; history retention keeps what is still needed."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.cli import main
from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.dlq import DeadLetterItem, DeadLetterStore, InvalidTransition
from mytrader_pipeline.defs.dead_letters import record_run_failure
from mytrader_pipeline.defs.replay import in_process_launcher, replay_item
from mytrader_pipeline.defs.retention import purge_history
from mytrader_pipeline_tests.dagster.test_failure_dlq import (
    BROKEN,
    GOOD_ROWS,
    HEADER,
    REGISTRY,
    defs_for,
    run_keys,
    store_for,
)


def _fail(
    defs: dg.Definitions, instance: dg.DagsterInstance, store: DeadLetterStore, keys: list[str]
) -> DeadLetterItem:
    result = run_keys(defs, instance, keys)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    item, created = record_run_failure(instance, REGISTRY, store, run)
    assert created and item is not None
    return item


def _rows(store: DeadLetterStore, symbol: str) -> int:
    with store.engine.connect() as conn:
        query = "SELECT count(*) FROM historical_market_data WHERE symbol = :s"
        return conn.execute(sa.text(query), {"s": symbol}).scalar_one()


def test_fix_the_file_then_replay_resolves_the_item_and_loads_only_the_failed_file(
    pg_url: str, data_root: Path
) -> None:
    folder = data_root / "NASDAQ"
    (folder / "AAPL.csv").write_text(HEADER + GOOD_ROWS.replace("X,", "AAPL,"), encoding="utf-8")
    (folder / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        item = _fail(defs, instance, store, ["AAPL.csv", "BAD.csv"])
        assert item.partition_keys == ["BAD.csv"]
        (folder / "BAD.csv").write_text(HEADER + GOOD_ROWS.replace("X,", "BAD,"), encoding="utf-8")  # fixed
        replayed = replay_item(instance, REGISTRY, store, item.id, in_process_launcher(defs, instance, REGISTRY, store))
        (replay_run_id,) = replayed.replay_run_ids
        replay_run = instance.get_run_by_id(replay_run_id)
        with pytest.raises(InvalidTransition):
            replay_item(instance, REGISTRY, store, item.id, in_process_launcher(defs, instance, REGISTRY, store))
    assert replayed.status == "resolved" and replayed.resolved_by_run_id == replay_run_id
    assert replay_run is not None and replay_run.tags["mytrader/dlq_item"] == str(item.id)
    assert replay_run.tags["dagster/asset_partition_range_start"] == "BAD.csv"  # only the failed partition
    assert replay_run.tags["dagster/asset_partition_range_end"] == "BAD.csv"
    assert _rows(store, "BAD") == 2 and _rows(store, "AAPL") == 2


def test_a_failed_replay_reopens_its_item_and_discard_records_who_and_why(pg_url: str, data_root: Path) -> None:
    (data_root / "NASDAQ" / "BAD.csv").write_bytes(BROKEN["empty_file"] or b"")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        item = _fail(defs, instance, store, ["BAD.csv"])
        again = replay_item(instance, REGISTRY, store, item.id, in_process_launcher(defs, instance, REGISTRY, store))
    assert again.status == "open" and again.attempts == 2 and len(again.run_ids) == 2  # one item, two failures
    assert store.list().total == 1
    code = main(
        ["dlq", "discard", str(item.id), "--reason", "delisted symbol", "--by", "ops", "--database-url", pg_url]
    )
    assert code == 0
    discarded = store.get(item.id)
    assert (discarded.status, discarded.discard_reason, discarded.discarded_by) == (
        "discarded",
        "delisted symbol",
        "ops",
    )


class DeploymentDown(Exception):
    """What a launcher raises when the deployment cannot start a run."""


def test_a_replay_whose_launch_fails_leaves_no_link_to_runs_that_never_started(pg_url: str, data_root: Path) -> None:
    folder = data_root / "NASDAQ"
    for name in ("A.csv", "C.csv"):  # two failed files, not adjacent: a replay needs two runs
        (folder / name).write_bytes(BROKEN["unknown_format"] or b"")
    (folder / "B.csv").write_text(HEADER + GOOD_ROWS.replace("X,", "B,"), encoding="utf-8")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)

    def down(job: str, run_config: dict[str, object], tags: dict[str, str], run_id: str) -> str:
        raise DeploymentDown("connection refused")

    with dg.instance_for_test() as instance:
        item = _fail(defs, instance, store, ["A.csv", "B.csv", "C.csv"])
        assert item.partition_keys == ["A.csv", "C.csv"]
        with pytest.raises(DeploymentDown):
            replay_item(instance, REGISTRY, store, item.id, down)
        untouched = store.get(item.id)
        assert (untouched.status, untouched.replay_run_ids, untouched.replayed_at) == ("open", [], None)

        for name in ("A.csv", "C.csv"):  # fixed; the deployment starts the first run, then goes down
            (folder / name).write_text(HEADER + GOOD_ROWS.replace("X,", name[0] + ","), encoding="utf-8")
        in_process = in_process_launcher(defs, instance, REGISTRY, store)
        launched: list[str] = []

        def once(job: str, run_config: dict[str, object], tags: dict[str, str], run_id: str) -> str:
            if launched:
                raise DeploymentDown("connection refused")
            launched.append(in_process(job, run_config, tags, run_id))
            return launched[0]

        with pytest.raises(DeploymentDown):
            replay_item(instance, REGISTRY, store, item.id, once)
        partial = store.get(item.id)
        # The run that started succeeded, but it replayed only A.csv: the item must not resolve on it.
        assert instance.get_run_by_id(launched[0]).status == dg.DagsterRunStatus.SUCCESS
        assert (partial.status, partial.replay_run_ids) == ("open", launched)
        assert (partial.partition_keys, list(partial.failed_files)) == (["C.csv"], ["C.csv"])  # A.csv is done

        done = replay_item(instance, REGISTRY, store, item.id, in_process)  # the deployment is back
    assert done.status == "resolved" and len(done.replay_run_ids) == 1  # only C.csv was left
    assert _rows(store, "A") == 2 and _rows(store, "C") == 2


def test_dlq_commands_list_and_show_as_json(pg_url: str, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data_root / "NASDAQ" / "BAD.csv").write_bytes(BROKEN["unknown_format"] or b"")
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        item = _fail(defs_for(pg_url, data_root), instance, store, ["BAD.csv"])
    capsys.readouterr()
    assert main(["dlq", "list", "--market", "nasdaq", "--status", "open", "--json", "--database-url", pg_url]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["total"] == 1 and listing["items"][0]["error_class"] == "unknown_format"
    assert main(["dlq", "show", str(item.id), "--json", "--database-url", pg_url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["failed_files"]["BAD.csv"].startswith("unknown_format: NASDAQ/BAD.csv")
    assert main(["dlq", "show", "999", "--database-url", pg_url]) == 4  # no such item
    assert main(["dlq", "discard", str(item.id), "--reason", " ", "--database-url", pg_url]) == 2  # bad request
    assert main(["dlq", "discard", str(item.id), "--reason", "delisted", "--database-url", pg_url]) == 0
    # Refused in the item's state before any deployment is contacted (nothing listens on port 9).
    replay = ["dlq", "replay", str(item.id), "--database-url", pg_url, "--url", "http://127.0.0.1:9"]
    assert main(replay) == 5
    assert "only open items can be replayed" in capsys.readouterr().err


def test_retention_deletes_exactly_what_is_older_than_the_window_and_no_longer_needed(
    pg_url: str, data_root: Path
) -> None:
    folder = data_root / "NASDAQ"
    (folder / "AAPL.csv").write_text(HEADER + GOOD_ROWS.replace("X,", "AAPL,"), encoding="utf-8")
    defs = defs_for(pg_url, data_root)
    store = store_for(pg_url)
    with dg.instance_for_test() as instance:
        superseded = run_keys(defs, instance, ["AAPL.csv"]).run_id  # its materialization is replaced below
        latest = run_keys(defs, instance, ["AAPL.csv"], force=True).run_id
        (folder / "GONE.csv").write_bytes(BROKEN["unknown_format"] or b"")
        open_item = _fail(defs, instance, store, ["GONE.csv"])
        (folder / "BAD.csv").write_bytes(BROKEN["empty_file"] or b"")
        closed_item = _fail(defs, instance, store, ["BAD.csv"])
        store.discard(closed_item.id, "will not fix", "test")

        now = dt.datetime.now(dt.UTC)
        assert purge_history(instance, REGISTRY, store, days=30, now=now)["runs_deleted"] == 0  # all recent
        report = purge_history(instance, REGISTRY, store, days=30, now=now + dt.timedelta(days=31))
        remaining = {r.run_id for r in instance.get_runs()}
    assert remaining == {latest, open_item.run_id}  # the partition's latest load, and the open item's run
    assert report["runs_deleted"] == 2 and report["file_imports_deleted"] == 2
    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(file_imports.c.run_id, file_imports.c.source_file)).all()
    assert sorted(kept) == sorted([(latest, "NASDAQ/AAPL.csv"), (open_item.run_id, "NASDAQ/GONE.csv")])
    assert superseded not in remaining
    assert {i.id for i in store.list().items} == {open_item.id, closed_item.id}  # items are never purged
