"""The stop promise without a deployment, and files rewritten while read.

A run that is stopped starts no new file and commits no file after the stop was seen, even a file whose load was
under way (its stop check runs right before its COMMIT); a file rewritten while it is read fails as ``file_changed``
instead of loading a torn mix of its old and new contents.
"""

import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import file_imports, historical_market_data
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.formats import STANDARD_COLUMNS
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.defs.policies import STOP_REQUESTS, StopWhenCanceled
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.integration.held_loads import held_in_flight

NASDAQ = load_markets().get("NASDAQ")
HEADER = ",".join(STANDARD_COLUMNS)
FILES = [f"S{i:02d}.csv" for i in range(6)]  # loaded one at a time, in this order
ROWS = 400  # about 16 KB a file
HELD = 2  # FILES[HELD] is the file held mid-load
SMALL_CHUNK = 4096  # with it every file is streamed in several chunks; the default reads each file at once
WAIT_SECONDS = 120  # bound of the wait for the held load (never reached unless the import went wrong)
PATHS = {"grouped": None, "streamed": SMALL_CHUNK}


def file_text(symbol: str, close: int = 11) -> str:
    """``ROWS`` trading days of ``symbol``; ``close`` changes the content, not the size (one digit)."""
    first = dt.date(2020, 1, 1)
    lines = [f"{symbol},{first + dt.timedelta(days=d)},10,12,9,{close},11,{100 + d}" for d in range(ROWS)]
    return HEADER + "\n" + "\n".join(lines) + "\n"


def write_tree(root: Path) -> None:
    for name in FILES:
        (root / NASDAQ.folder / name).write_text(file_text(name.removesuffix(".csv")), encoding="utf-8")


def importer(engine: sa.Engine, chunk_bytes: int | None) -> MarketImporter:
    options = ImportOptions(concurrency=1)
    if chunk_bytes is not None:
        options.chunk_bytes = chunk_bytes
    return MarketImporter(Warehouse(engine), NASDAQ, "run-1", options)


def rows_per_symbol(engine: sa.Engine) -> dict[str, int]:
    t = historical_market_data.c
    with engine.connect() as conn:
        return {s: n for s, n in conn.execute(sa.select(t.symbol, sa.func.count()).group_by(t.symbol)).all()}


def audit(engine: sa.Engine) -> list[tuple[Any, ...]]:
    t = file_imports.c
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t.partition_key, t.status, t.error_class).order_by(t.id))]


def held(url: str, name: str) -> contextlib.AbstractContextManager[None]:
    """Hold the load of file ``name`` mid-file until the block ends (its first day's row, see ``held_in_flight``)."""
    return held_in_flight(url, name, dt.date(2020, 1, 1))


def in_thread(work: Callable[[], list[FileResult]]) -> tuple[threading.Thread, list[list[FileResult]]]:
    """Start ``work`` in a thread; its results land in the returned list once it ends."""
    out: list[list[FileResult]] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    return thread, out


def wait_until_held(url: str, thread: threading.Thread) -> None:
    """Wait until a session of the database waits on a lock: the held load has reached the held row."""
    deadline = time.monotonic() + WAIT_SECONDS
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute(query).fetchone()[0]:
            assert thread.is_alive(), "the import ended without reaching the held row"
            assert time.monotonic() < deadline, f"the import did not reach the held row in {WAIT_SECONDS}s"
            time.sleep(0.05)


@pytest.mark.parametrize("chunk_bytes", PATHS.values(), ids=PATHS.keys())
def test_a_stop_after_n_files_starts_no_further_file(
    any_engine: sa.Engine, data_root: Path, chunk_bytes: int | None
) -> None:
    write_tree(data_root)
    stop = threading.Event()
    committed: list[str] = []

    def on_result(result: FileResult) -> None:
        if result.status == "succeeded":
            committed.append(result.file.partition_key)
        if len(committed) == 2:  # the run is stopped once its second file has committed
            stop.set()

    results = importer(any_engine, chunk_bytes).run(
        scan_market(data_root, NASDAQ), on_result=on_result, should_stop=stop.is_set
    )
    assert [r.status for r in results] == ["succeeded"] * 2 + ["cancelled"] * (len(FILES) - 2)
    assert all(r.error is None for r in results)  # cancelled, not failed
    assert rows_per_symbol(any_engine) == {"S00": ROWS, "S01": ROWS}
    assert audit(any_engine) == [("S00.csv", "succeeded", None), ("S01.csv", "succeeded", None)]


@pytest.mark.postgres
@pytest.mark.parametrize("chunk_bytes", PATHS.values(), ids=PATHS.keys())
def test_a_stop_during_a_files_load_rolls_that_file_back(
    pg_engine: sa.Engine, pg_url: str, data_root: Path, chunk_bytes: int | None
) -> None:
    write_tree(data_root)
    stop = threading.Event()
    files = scan_market(data_root, NASDAQ)
    with held(pg_url, FILES[HELD]):
        thread, out = in_thread(lambda: importer(pg_engine, chunk_bytes).run(files, should_stop=stop.is_set))
        wait_until_held(pg_url, thread)
        stop.set()  # the run is stopped while the held file's transaction is open, its rows partly written
    thread.join()
    (results,) = out
    assert [r.status for r in results] == ["succeeded"] * HELD + ["cancelled"] * (len(FILES) - HELD)
    assert rows_per_symbol(pg_engine) == {"S00": ROWS, "S01": ROWS}  # zero rows of the held file
    assert audit(pg_engine) == [("S00.csv", "succeeded", None), ("S01.csv", "succeeded", None)]


def in_a_run(body: Callable[[dg.OpExecutionContext], None]) -> None:
    """``body`` as the one op of a run on a test instance (its assertions are the caller's)."""

    @dg.op
    def probe(context: dg.OpExecutionContext) -> None:
        body(context)

    @dg.job
    def stop_check() -> None:
        probe()

    with dg.instance_for_test() as instance:
        stop_check.execute_in_process(instance=instance, raise_on_error=False)


def test_the_stop_check_sees_a_cancel_at_once() -> None:
    """No cached answer: asked again right after the run is marked canceling, the check says stop."""
    seen: list[bool] = []

    def probe(context: dg.OpExecutionContext) -> None:
        should_stop = StopWhenCanceled(context)
        seen.append(should_stop())
        context.instance.report_run_canceling(context.dagster_run)
        seen.append(should_stop())

    in_a_run(probe)
    assert seen == [False, True]


def test_a_stop_asked_in_this_process_is_seen_whatever_the_stored_status() -> None:
    """``mytrader run``'s Ctrl-C names the run before it exists: the stored status may say started all along."""
    seen: list[object] = []

    def probe(context: dg.OpExecutionContext) -> None:
        should_stop = StopWhenCanceled(context)
        seen.append(should_stop())
        STOP_REQUESTS.add(context.run_id)
        try:
            seen.append(should_stop())
        finally:
            STOP_REQUESTS.discard(context.run_id)
        seen.append(context.instance.get_run_by_id(context.run_id).status)  # type: ignore[union-attr]

    in_a_run(probe)
    assert seen == [False, True, dg.DagsterRunStatus.STARTED]


def test_a_file_rewritten_after_it_was_found_fails_as_file_changed_and_loads_whole_next_time(
    any_engine: sa.Engine, data_root: Path
) -> None:
    write_tree(data_root)
    files = scan_market(data_root, NASDAQ)
    path = data_root / NASDAQ.folder / FILES[0]
    path.write_text(file_text("S00") + "S00,2021-06-01,10,12,9,11,11,1\n", encoding="utf-8")  # one more row

    results = importer(any_engine, None).run(files)
    changed = results[0]
    assert changed.status == "failed" and changed.error is not None
    assert changed.error.error_class.value == "file_changed" and changed.error.retryable
    assert [r.status for r in results[1:]] == ["succeeded"] * (len(FILES) - 1)
    assert "S00" not in rows_per_symbol(any_engine)
    assert audit(any_engine)[0] == ("S00.csv", "failed", "file_changed")

    again = importer(any_engine, None).run(scan_market(data_root, NASDAQ)[:1])  # the next attempt finds it anew
    assert again[0].status == "succeeded"
    assert rows_per_symbol(any_engine)["S00"] == ROWS + 1


@pytest.mark.postgres
def test_a_file_rewritten_while_it_is_streamed_fails_as_file_changed(
    pg_engine: sa.Engine, pg_url: str, data_root: Path
) -> None:
    write_tree(data_root)
    files = scan_market(data_root, NASDAQ)[:1]
    path = files[0].path
    with held(pg_url, FILES[0]):
        thread, out = in_thread(lambda: importer(pg_engine, SMALL_CHUNK).run(files))
        wait_until_held(pg_url, thread)  # its first chunk is read and being written; the rest is not read yet
        # Rewritten in place with new prices: the same size, so only the mtime tells (set past the old one, as the
        # clock's granularity might not move it).
        path.write_text(file_text("S00", close=13), encoding="utf-8")
        os.utime(path, ns=(files[0].mtime_ns + 1_000_000_000, files[0].mtime_ns + 1_000_000_000))
        assert path.stat().st_size == files[0].size
    thread.join()
    ((result,),) = out
    assert result.status == "failed" and result.error is not None
    assert result.error.error_class.value == "file_changed"
    assert rows_per_symbol(pg_engine) == {}  # neither the old rows read first nor the new ones read after
    assert audit(pg_engine) == [("S00.csv", "failed", "file_changed")]
