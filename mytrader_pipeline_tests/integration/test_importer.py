"""MarketImporter over a tree of good, dirty and broken files: per-file results, failures classified and audited,
and the streaming path for large files giving the same table as the grouped path."""

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.accounting import accounting_issues
from mytrader_pipeline.core.db import file_imports, historical_market_data, rejected_rows
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.formats import STANDARD_COLUMNS
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.markets import load_markets

TODAY = dt.date(2024, 6, 28)
NASDAQ = load_markets().get("NASDAQ")
HEADER = ",".join(STANDARD_COLUMNS)


def _days(symbol: str, count: int, first: dt.date = dt.date(2024, 3, 1)) -> list[str]:
    return [f"{symbol},{first + dt.timedelta(days=i)},10,12,9,11,11,{100 + i}" for i in range(count)]


def _dirty() -> list[str]:
    lines = _days("MSFT", 40)
    lines[5] = "MSFT,2024-03-06,10,8,9,11,11,100"  # high below low
    lines[17] = "MSFT,2024-03-18,10,12,9,abc,11,100"  # not a number
    lines.append("MSFT,2024-03-02,20,22,19,21,21,1")  # a duplicate far from its twin (another chunk when streamed)
    lines.append("MSFT,2024-05-01,10,1")  # truncated last line, no newline
    return lines


# partition key -> file bytes; the expected outcome is in EXPECTED
TREE: dict[str, bytes] = {
    "AAPL.csv": (HEADER + "\n" + "\n".join(_days("AAPL", 30)) + "\n").encode(),
    "AMZN.csv": (
        ";".join(STANDARD_COLUMNS) + "\r\n" + "\r\n".join(_days("AMZN", 25)).replace(",", ";") + "\r\n"
    ).encode(),
    "MSFT.csv": (HEADER + "\n" + "\n".join(_dirty())).encode(),
    "NVDA.csv": (
        "\ufeff" + ",".join(STANDARD_COLUMNS[1:]) + "\n" + "\n".join(d[5:] for d in _days("NVDA", 12))
    ).encode(),
    "ALLBAD.csv": (HEADER + "\nALLBAD,2024-03-01,-1,12,9,11,11,1\nALLBAD,2099-01-01,10,12,9,11,11,1\n").encode(),
    "AMBIG.csv": (HEADER + "\nAMBIG,02/03/2024,10,12,9,11,11,1\n").encode(),
    "BINARY.csv": b"\x00\x01\x02\xff\xfe",
    "EMPTY.csv": b"",
    "HEADONLY.csv": (HEADER + "\n").encode(),
    "UNKNOWN.csv": b"Date,Open,High,Low,Close,Volume\n2024-03-01,1,2,1,2,3\n",
}
# partition key -> (status, error class, rows read, rows loaded, rows rejected)
EXPECTED: dict[str, tuple[str, str | None, int, int, int]] = {
    "AAPL.csv": ("succeeded", None, 30, 30, 0),
    "AMZN.csv": ("succeeded", None, 25, 25, 0),
    "MSFT.csv": ("succeeded", None, 42, 38, 4),
    "NVDA.csv": ("succeeded", None, 12, 12, 0),
    "ALLBAD.csv": ("failed", "all_rows_rejected", 0, 0, 0),
    "AMBIG.csv": ("failed", "ambiguous_dates", 0, 0, 0),
    "BINARY.csv": ("failed", "undecodable", 0, 0, 0),
    "EMPTY.csv": ("failed", "empty_file", 0, 0, 0),
    "HEADONLY.csv": ("failed", "empty_file", 0, 0, 0),
    "UNKNOWN.csv": ("failed", "unknown_format", 0, 0, 0),
}


@pytest.fixture
def tree(data_root: Path) -> Path:
    for name, data in TREE.items():
        (data_root / NASDAQ.folder / name).write_bytes(data)
    return data_root


def _run(engine: sa.Engine, root: Path, run_id: str = "run-1", **options: Any) -> list[FileResult]:
    files = scan_market(root, NASDAQ)
    importer = MarketImporter(Warehouse(engine), NASDAQ, run_id, ImportOptions(today=TODAY, **options))
    return importer.run(files)


def _summary(result: FileResult) -> tuple[str, str | None, int, int, int]:
    outcome = result.outcome
    return (
        result.status,
        result.error.error_class.value if result.error else None,
        result.rows_read,
        outcome.rows_loaded if outcome else 0,
        outcome.rows_rejected if outcome else 0,
    )


def _select(engine: sa.Engine, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def _prices(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """The warehouse rows without what differs between runs (run id, ingestion time)."""
    t = historical_market_data
    columns = [c for c in t.columns if c.name not in ("run_id", "ingested_at")]
    return _select(engine, sa.select(*columns).order_by(t.c.symbol, t.c.trade_date))


def _rejections(engine: sa.Engine) -> list[tuple[Any, ...]]:
    t = rejected_rows.c
    query = sa.select(t.source_file, t.line_number, t.column_name, t.check_name, t.reason, t.raw_line)
    return _select(engine, query.order_by(t.source_file, t.line_number))


def _audits(engine: sa.Engine, run_id: str) -> dict[str, tuple[Any, ...]]:
    t = file_imports.c
    query = sa.select(t.partition_key, t.status, t.error_class, t.rows_read, t.rows_loaded, t.rows_rejected)
    return {r[0]: r[1:] for r in _select(engine, query.where(t.run_id == run_id))}


def test_each_file_gets_its_result_and_failures_are_classified_and_audited(any_engine: sa.Engine, tree: Path) -> None:
    seen: list[str] = []
    files = scan_market(tree, NASDAQ)
    importer = MarketImporter(Warehouse(any_engine), NASDAQ, "run-1", ImportOptions(today=TODAY, concurrency=2))
    results = importer.run(files, on_result=lambda r: seen.append(r.file.partition_key))

    assert [r.file.partition_key for r in results] == [f.partition_key for f in files]  # input order
    assert sorted(seen) == sorted(TREE)  # told once per file
    assert {r.file.partition_key: _summary(r) for r in results} == EXPECTED
    for result in results:
        if result.status == "failed":
            assert result.error is not None and not result.error.retryable
            assert result.file.source_file in result.error.message  # e.g. "NASDAQ/EMPTY.csv: is empty ..."

    audits = _audits(any_engine, "run-1")
    assert {key: audit[:2] for key, audit in audits.items()} == {
        key: (status, error) for key, (status, error, *_) in EXPECTED.items()
    }
    assert {key: audit[2:] for key, audit in audits.items() if audit[0] == "succeeded"} == {
        key: expected[2:] for key, expected in EXPECTED.items() if expected[0] == "succeeded"
    }
    assert accounting_issues(any_engine, "run-1") == []

    t = historical_market_data.c
    loaded = dict(_select(any_engine, sa.select(t.symbol, sa.func.count()).group_by(t.symbol)))
    assert loaded == {"AAPL": 30, "AMZN": 25, "MSFT": 38, "NVDA": 12}
    # Nothing of a failed file is kept: not even the rejections of the file whose every row was rejected.
    assert {r[0] for r in _rejections(any_engine)} == {"NASDAQ/MSFT.csv"}


def test_a_file_deleted_after_the_scan_is_file_missing(any_engine: sa.Engine, tree: Path) -> None:
    files = scan_market(tree, NASDAQ)
    (tree / NASDAQ.folder / "AAPL.csv").unlink()
    results = MarketImporter(Warehouse(any_engine), NASDAQ, "run-1", ImportOptions(today=TODAY)).run(files)
    by_key = {r.file.partition_key: r for r in results}
    assert by_key["AAPL.csv"].error is not None
    assert by_key["AAPL.csv"].error.error_class.value == "file_missing"
    assert by_key["AMZN.csv"].status == "succeeded"
    assert _audits(any_engine, "run-1")["AAPL.csv"][:2] == ("failed", "file_missing")


def test_a_stop_request_cancels_the_files_not_yet_started(any_engine: sa.Engine, tree: Path) -> None:
    results = MarketImporter(Warehouse(any_engine), NASDAQ, "run-1", ImportOptions(today=TODAY)).run(
        scan_market(tree, NASDAQ), should_stop=lambda: True
    )
    assert {r.status for r in results} == {"cancelled"}
    assert _prices(any_engine) == []
    assert _audits(any_engine, "run-1") == {}


def test_importing_the_tree_again_writes_nothing_new(any_engine: sa.Engine, tree: Path) -> None:
    _run(any_engine, tree, "run-1")
    before, rejections = _prices(any_engine), _rejections(any_engine)
    again = _run(any_engine, tree, "run-2")
    assert all(r.outcome.rows_written == 0 for r in again if r.outcome)
    assert {r.file.partition_key: _summary(r) for r in again} == EXPECTED
    assert _prices(any_engine) == before
    assert _rejections(any_engine) == rejections  # replaced, not duplicated
    assert accounting_issues(any_engine, "run-2") == []


def _clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in (historical_market_data, rejected_rows, file_imports):
            conn.execute(sa.delete(table))


def test_streaming_large_files_gives_the_same_tables_as_grouped_loading(any_engine: sa.Engine, tree: Path) -> None:
    grouped = _run(any_engine, tree, "grouped")
    prices, rejections = _prices(any_engine), _rejections(any_engine)
    _clear(any_engine)

    streamed = _run(any_engine, tree, "streamed", chunk_bytes=256, concurrency=3)

    streamed_keys = {f.partition_key for f in scan_market(tree, NASDAQ) if f.size > 256}
    assert {"AAPL.csv", "AMZN.csv", "MSFT.csv", "NVDA.csv"} <= streamed_keys  # these took the streaming path
    assert [_summary(r) for r in streamed] == [_summary(r) for r in grouped]
    assert _prices(any_engine) == prices
    assert _rejections(any_engine) == rejections
    assert accounting_issues(any_engine, "streamed") == []


def test_small_groups_give_the_same_tables_as_one_group(any_engine: sa.Engine, tree: Path) -> None:
    _run(any_engine, tree, "one-group")
    prices, rejections = _prices(any_engine), _rejections(any_engine)
    _clear(any_engine)
    results = _run(any_engine, tree, "many-groups", group_bytes=1, concurrency=4)
    assert {r.file.partition_key: _summary(r) for r in results} == EXPECTED
    assert _prices(any_engine) == prices
    assert _rejections(any_engine) == rejections


def test_the_market_date_format_lets_ambiguous_files_load(any_engine: sa.Engine, tree: Path) -> None:
    market = dataclasses.replace(NASDAQ, date_format="%d/%m/%Y")
    (ambiguous,) = [f for f in scan_market(tree, market) if f.partition_key == "AMBIG.csv"]
    (result,) = MarketImporter(Warehouse(any_engine), market, "run-1", ImportOptions(today=TODAY)).run([ambiguous])
    assert result.status == "succeeded"
    t = historical_market_data.c
    assert _select(any_engine, sa.select(t.symbol, t.trade_date)) == [("AMBIG", dt.date(2024, 3, 2))]
