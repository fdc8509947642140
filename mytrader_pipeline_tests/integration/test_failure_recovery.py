"""Recovery on PostgreSQL: a killed backend is retried, a killed loader re-runs clean, a cancel leaves no half file."""

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core import loading
from mytrader_pipeline.core.db import make_engine
from mytrader_pipeline_tests.dagster.test_failure_dlq import HEADER, NASDAQ, defs_for, retries_of, run_keys

FILES = [f"S{i:02d}.csv" for i in range(8)]
ROWS_PER_FILE = 250


def write_tree(root: Path) -> None:
    """Eight NASDAQ files of distinct symbols, ``ROWS_PER_FILE`` trading days each."""
    start = dt.date(2020, 1, 1)
    for name in FILES:
        symbol = name.removesuffix(".csv")
        lines = [
            f"{symbol},{start + dt.timedelta(days=d)},{10 + d % 7},{12 + d % 7},{9 + d % 7},{11 + d % 7},11,{100 + d}"
            for d in range(ROWS_PER_FILE)
        ]
        (root / "NASDAQ" / name).write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")


def table(url: str) -> list[tuple]:
    """The loaded prices, without provenance that differs between runs (run id, ingestion time, line)."""
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT market, symbol, trade_date, open, high, low, close, volume, source_file "
                "FROM historical_market_data ORDER BY market, symbol, trade_date"
            )
        ).all()
    engine.dispose()
    return [(*r[:2], str(r[2]), *r[3:]) for r in rows]  # SQLite hands dates back as text


def clean_table(root: Path, tmp_path: Path) -> list[tuple]:
    """What a clean, undisturbed run produces (into a separate SQLite warehouse)."""
    url = f"sqlite:///{tmp_path / 'clean.db'}"
    with dg.instance_for_test() as instance:
        assert run_keys(defs_for(url, root), instance, FILES).success
    return table(url)


def audit(url: str) -> list[tuple]:
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_file, status, rows_read FROM file_imports ORDER BY id")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_a_backend_killed_mid_load_is_retried_and_the_table_equals_a_clean_run(
    pg_url: str, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(data_root)
    expected = clean_table(data_root, tmp_path)
    killed: list[int] = []
    original = loading.PostgresWriter._copy

    def copy_then_lose_the_connection(self: loading.PostgresWriter, table: str, columns: tuple, frame) -> None:
        if not killed and table == "historical_market_data":
            pid = self.raw.info.backend_pid
            with psycopg.connect(pg_url, autocommit=True) as admin:  # another connection kills the loader's backend
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)
        original(self, table, columns, frame)

    monkeypatch.setattr(loading.PostgresWriter, "_copy", copy_then_lose_the_connection)
    with dg.instance_for_test() as instance:
        result = run_keys(defs_for(pg_url, data_root), instance, FILES, max_concurrency=1)
        assert result.success
        assert retries_of(instance, result.run_id) == 1
        messages = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert killed
    assert any("attempt 1 of 4: database_connection" in m for m in messages)
    assert table(pg_url) == expected  # nothing missing, nothing twice
    statuses = [status for _, status, _ in audit(pg_url)]
    assert statuses.count("failed") == 1 and statuses.count("succeeded") == len(FILES)


LOADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mytrader_pipeline.core import loading
    from mytrader_pipeline.core.db import ensure_schema, make_engine
    from mytrader_pipeline.core.discovery import scan_market
    from mytrader_pipeline.core.importer import ImportOptions, MarketImporter
    from mytrader_pipeline.markets import load_markets

    url, root, marker = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    finish = loading.PostgresWriter.finish
    loaded = []

    def slow_finish(self):
        written = finish(self)  # the file's rows are in, not committed yet
        marker.write_text(str(len(loaded)))
        loaded.append(self.target.source_file)
        time.sleep(0.3)
        return written

    loading.PostgresWriter.finish = slow_finish
    engine = make_engine(url)
    ensure_schema(engine)
    market = load_markets().get("NASDAQ")
    options = ImportOptions(concurrency=1, group_bytes=1)
    MarketImporter(loading.Warehouse(engine), market, "killed-run", options).run(scan_market(root, market))
    """
)


def test_a_loader_killed_with_sigkill_mid_file_reruns_to_the_table_of_a_clean_run(
    pg_url: str, data_root: Path, tmp_path: Path
) -> None:
    write_tree(data_root)
    expected = clean_table(data_root, tmp_path)
    marker = tmp_path / "in_flight"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-c", LOADER, pg_url, str(data_root), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (marker.exists() and marker.read_text() == "2"):  # the third file is written, not committed
            assert proc.poll() is None, "the loader ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = table(pg_url)
    assert {r[1] for r in partial} == {"S00", "S01"}  # committed files stayed; the file in flight left nothing
    assert [status for _, status, _ in audit(pg_url)] == ["succeeded", "succeeded"]

    with dg.instance_for_test() as instance:  # the retry: unchanged loaded files are skipped, the rest load
        assert run_keys(defs_for(pg_url, data_root), instance, FILES).success
    assert table(pg_url) == expected
    assert sorted(f for f, s, _ in audit(pg_url) if s == "succeeded") == sorted(f"NASDAQ/{f}" for f in FILES)


def test_cancel_mid_run_stops_before_the_next_file_and_leaves_a_consistent_audit(
    pg_url: str, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(data_root)
    original = loading.Warehouse.load_file
    instances: list[dg.DagsterInstance] = []

    def load_then_cancel(
        self: loading.Warehouse, target: loading.FileTarget, *args: object, **kwargs: object
    ) -> loading.LoadOutcome:
        outcome = original(self, target, *args, **kwargs)
        if target.partition_key == "S01.csv":  # an operator cancels the run while its second file loads
            run = instances[0].get_run_by_id(target.run_id)
            instances[0].report_run_canceling(run)
        return outcome

    monkeypatch.setattr(loading.Warehouse, "load_file", load_then_cancel)
    with dg.instance_for_test() as instance:
        instances.append(instance)
        result = run_keys(defs_for(pg_url, data_root), instance, FILES, max_concurrency=1)
        assert not result.success
        materialized = instance.get_materialized_partitions(dg.AssetKey(NASDAQ.asset_name))
    rows = table(pg_url)
    assert {r[1] for r in rows} == {"S00", "S01"}  # no file started after the cancel
    assert len(rows) == 2 * ROWS_PER_FILE  # and the loaded ones are whole
    assert audit(pg_url) == [("NASDAQ/S00.csv", "succeeded", ROWS_PER_FILE), ("NASDAQ/S01.csv", "succeeded", 250)]
    assert materialized == {"S00.csv", "S01.csv"}
