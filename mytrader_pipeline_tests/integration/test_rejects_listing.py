"""Rejected rows listed from real loads on PostgreSQL and SQLite (``core.rejects``, ``mytrader rejects``): each
file's current load only, newest load first, by line; limits, one file, and the refusals of a bad request."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mytrader_pipeline.cli import main
from mytrader_pipeline.core.db import file_imports, rejected_rows
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.core.rejects import list_rejected_rows
from mytrader_pipeline.core.request_errors import InvalidRequest, NotFound, UnknownMarket
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.integration.test_row_problems_load import _hostile_file
from mytrader_pipeline_tests.unit.test_row_problems import HOSTILE, STANDARD

TODAY = dt.date(2024, 6, 28)
MARKETS = load_markets()
NYSE = MARKETS.get("NYSE")
Bad = dict[int, tuple[str, str, str]]  # line -> (check, phrase of the reason, raw line as written)


def import_file(engine: sa.Engine, root: Path, name: str, run_id: str) -> FileResult:
    """Load the one NYSE file ``name`` in a run of its own."""
    importer = MarketImporter(Warehouse(engine), NYSE, run_id, ImportOptions(today=TODAY))
    (result,) = importer.run([f for f in scan_market(root, NYSE) if f.partition_key == name])
    return result


def stored(raw: str) -> str:
    return raw.replace("\x00", "\\x00")  # how the loader stores a NUL


def database_url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def load_two_files(engine: sa.Engine, root: Path) -> dict[str, Bad]:
    """NYSE's IBM.csv loaded by run-1, then KO.csv by run-2: every hostile row rejected in each."""
    bad = {"IBM.csv": _hostile_file(root, STANDARD, NYSE, "IBM.csv")}
    assert import_file(engine, root, "IBM.csv", "run-1").status == "succeeded"
    bad["KO.csv"] = _hostile_file(root, STANDARD, NYSE, "KO.csv")
    assert import_file(engine, root, "KO.csv", "run-2").status == "succeeded"
    return bad


@pytest.fixture
def loaded(any_engine: sa.Engine, data_root: Path) -> dict[str, Bad]:
    """``load_two_files`` on each kind of warehouse."""
    return load_two_files(any_engine, data_root)


def _import_ids(engine: sa.Engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        query = sa.select(file_imports.c.partition_key, file_imports.c.run_id, file_imports.c.id)
        return {(row.partition_key, row.run_id): row.id for row in conn.execute(query)}


def test_rows_come_newest_load_first_then_by_line_with_file_load_check_reason_and_raw_line(
    any_engine: sa.Engine, loaded: dict[str, Bad]
) -> None:
    found = list_rejected_rows(any_engine, MARKETS, "nyse", limit=1000)
    ids = _import_ids(any_engine)
    assert (found.market, found.file, found.limit) == ("NYSE", None, 1000)
    expected = [("KO.csv", "run-2", line, b) for line, b in loaded["KO.csv"].items()]
    expected += [("IBM.csv", "run-1", line, b) for line, b in loaded["IBM.csv"].items()]
    assert found.total == len(found.rows) == len(expected)
    for row, (name, run_id, line, (check, phrase, raw)) in zip(found.rows, expected, strict=True):
        assert (row.partition_key, row.source_file, row.run_id) == (name, f"NYSE/{name}", run_id)
        assert row.file_import_id == ids[(name, run_id)]
        assert (row.line_number, row.check_name, row.raw_line) == (line, check, stored(raw))
        assert phrase in row.reason
        assert row.loaded_at.tzinfo is not None
    assert all(row.column_name for row in found.rows)  # every hostile cell is named by its column
    first_field = next(iter(HOSTILE.values()))[0]
    assert found.rows[0].column_name == STANDARD.sources[first_field]  # the file's own header: EnYuksek


def test_limit_and_file_narrow_the_listing_and_total_counts_every_match(
    any_engine: sa.Engine, loaded: dict[str, Bad]
) -> None:
    first = list_rejected_rows(any_engine, MARKETS, "NYSE", limit=3)
    assert [r.line_number for r in first.rows] == list(loaded["KO.csv"])[:3]
    assert first.total == len(loaded["KO.csv"]) + len(loaded["IBM.csv"])
    for file in ("IBM.csv", "NYSE/IBM.csv"):
        only = list_rejected_rows(any_engine, MARKETS, "NYSE", file=file)
        assert only.file == file
        assert {r.partition_key for r in only.rows} == {"IBM.csv"}
        assert [r.line_number for r in only.rows] == list(loaded["IBM.csv"])
        assert only.total == len(loaded["IBM.csv"])


def test_only_the_current_load_of_each_file_counts_and_a_failed_reload_keeps_the_last_success(
    any_engine: sa.Engine, data_root: Path, loaded: dict[str, Bad]
) -> None:
    ids = _import_ids(any_engine)
    good = STANDARD.line(dt.date(2024, 5, 1))
    bad = STANDARD.line(dt.date(2024, 5, 2), volume="-5")
    STANDARD.write(data_root / "NYSE" / "IBM.csv", [good, bad])
    assert import_file(any_engine, data_root, "IBM.csv", "run-3").status == "succeeded"
    # A row of IBM's first load put back by hand: the listing must not rely on the loader deleting old rejections.
    with any_engine.begin() as conn:
        conn.execute(
            sa.insert(rejected_rows).values(
                file_import_id=ids[("IBM.csv", "run-1")],
                market="NYSE",
                source_file="NYSE/IBM.csv",
                line_number=99,
                column_name="high",
                check_name="finite",
                reason="stale",
                raw_line="stale",
                run_id="run-1",
                rejected_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            )
        )
    (data_root / "NYSE" / "IBM.csv").write_text("not,a,price,file\n1,2,3,4\n")
    assert import_file(any_engine, data_root, "IBM.csv", "run-4").status == "failed"

    ibm = list_rejected_rows(any_engine, MARKETS, "NYSE", file="IBM.csv")
    assert [(r.run_id, r.line_number, r.check_name, r.raw_line) for r in ibm.rows] == [
        ("run-3", 3, "greater_than_or_equal_to", bad)
    ]
    everything = list_rejected_rows(any_engine, MARKETS, "NYSE", limit=1000)
    assert everything.rows[0].run_id == "run-3"  # IBM's reload is now the newest load
    assert {r.run_id for r in everything.rows} == {"run-3", "run-2"}
    assert everything.total == 1 + len(loaded["KO.csv"])


def test_a_bad_request_is_refused_and_a_clean_file_lists_nothing(
    any_engine: sa.Engine, data_root: Path, loaded: dict[str, Bad]
) -> None:
    with pytest.raises(UnknownMarket, match="unknown market 'LSE'") as unknown:
        list_rejected_rows(any_engine, MARKETS, "LSE")
    assert isinstance(unknown.value, InvalidRequest) and unknown.value.status == 404
    for limit in (0, 1001):
        with pytest.raises(InvalidRequest, match=rf"limit: {limit} is outside 1\.\.1000"):
            list_rejected_rows(any_engine, MARKETS, "NYSE", limit=limit)
    with pytest.raises(NotFound, match=r"no successful load of 'AAPL\.csv' in market NYSE"):
        list_rejected_rows(any_engine, MARKETS, "NYSE", file="AAPL.csv")
    STANDARD.write(data_root / "NYSE" / "AAPL.csv", [STANDARD.line(dt.date(2024, 5, 1))])
    assert import_file(any_engine, data_root, "AAPL.csv", "run-5").status == "succeeded"
    clean = list_rejected_rows(any_engine, MARKETS, "NYSE", file="AAPL.csv")
    assert (clean.total, clean.rows) == (0, [])
    assert list_rejected_rows(any_engine, MARKETS, "BIST").total == 0


# -- mytrader rejects --------------------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["rejects", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_a_table_of_the_rows_with_the_raw_line_shortened_and_made_visible(
    any_engine: sa.Engine, loaded: dict[str, Bad], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "--market", "nyse", "--file", "IBM.csv", "--database-url", database_url(any_engine))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["file", "line", "column", "check", "reason", "raw", "line"]
    assert len(lines) == 1 + len(loaded["IBM.csv"]) + 1
    for text, (line, (check, _, raw)) in zip(lines[1:-1], loaded["IBM.csv"].items(), strict=True):
        cells = text.split()
        assert cells[:2] == ["IBM.csv", str(line)]
        assert check in cells
        shown_raw = stored(raw).replace("\x07", "\\x07").replace("\x08", "\\x08")
        assert shown_raw[:40] in text  # control characters written out, never sent to the terminal
        assert "\x07" not in text and "\x08" not in text
    assert lines[-1] == f"{len(loaded['IBM.csv'])} of {len(loaded['IBM.csv'])} rejected row(s) of NYSE IBM.csv's " \
        "current loads"  # fmt: skip


def test_cli_json_is_the_rest_answer_in_camel_case(
    any_engine: sa.Engine, loaded: dict[str, Bad], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(
        capsys, "--market", "NYSE", "--limit", "2", "--json", "--database-url", database_url(any_engine)
    )
    assert code == 0
    answer: dict[str, Any] = json.loads(out)
    assert (answer["market"], answer["file"], answer["limit"]) == ("NYSE", None, 2)
    assert answer["total"] == len(loaded["KO.csv"]) + len(loaded["IBM.csv"])
    first = answer["rows"][0]
    assert set(first) == {
        "sourceFile", "partitionKey", "fileImportId", "runId", "loadedAt", "lineNumber", "columnName", "checkName",
        "reason", "rawLine",
    }  # fmt: skip
    line, (check, _, raw) = next(iter(loaded["KO.csv"].items()))
    assert (first["partitionKey"], first["runId"], first["lineNumber"], first["checkName"], first["rawLine"]) == (
        "KO.csv", "run-2", line, check, stored(raw)
    )  # fmt: skip
    assert dt.datetime.fromisoformat(first["loadedAt"]).tzinfo is not None


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--market", "LSE"], 2, "error: market: unknown market 'LSE'; one of BIST, "),
        (["--market", "NYSE", "--file", "AAPL.csv"], 4, "error: file: no successful load of 'AAPL.csv' in market NYSE"),
    ],
    ids=["unknown-market", "file-never-loaded"],
)
def test_cli_refuses_a_bad_request_in_one_line(
    any_engine: sa.Engine,
    loaded: dict[str, Bad],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    got, out, err = _cli(capsys, *args, "--database-url", database_url(any_engine))
    assert (got, out) == (code, "")
    assert len(err.splitlines()) == 1 and err.startswith(message), err


def test_cli_limit_outside_its_bounds_is_a_usage_error(
    sqlite_engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    for limit in ("0", "1001"):
        code, out, err = _cli(
            capsys, "--market", "NYSE", "--limit", limit, "--database-url", database_url(sqlite_engine)
        )
        assert (code, out) == (2, "")
        assert f"{limit} is outside 1..1000 rejected rows" in err
