"""A file's failure, a native panic included, stays that file's: every file of a market gets its result and its
audit row, and the other files load, whether they were typed in one batch with it or streamed."""

import datetime as dt
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from mytrader_pipeline import sampledata
from mytrader_pipeline.core import parsing
from mytrader_pipeline.core.accounting import accounting_issues
from mytrader_pipeline.core.db import file_imports, historical_market_data, rejected_rows
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.formats import FileFormat
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.core.parsing import ParsedChunk, RawChunk
from mytrader_pipeline.markets import load_markets

BIST = load_markets().get("BIST")
FIRST_DAY = dt.date(2024, 1, 1)
TODAY = dt.date(2024, 12, 31)


def valid_file(
    file_format: FileFormat,
    symbol: str,
    days: int,
    *,
    dialect: tuple[str, ...] = (),
    seed: int = 0,
    index_code: str = "XU100",
) -> bytes:
    """A valid Stock_Scrapper file of ``days`` daily rows from ``FIRST_DAY``, written as the sample generator does.

    ``dialect`` takes the generator's file defects that keep a file valid: ``semicolon_decimal_comma``,
    ``date_format`` (dd.MM.yyyy), ``bom``, ``cp1254``.
    """
    rng = random.Random(f"{seed}:{symbol}")
    dates = pl.date_range(FIRST_DAY, FIRST_DAY + dt.timedelta(days=days - 1), "1d", eager=True).alias("Tarih")
    prices = sampledata._prices(rng, dates, False, None)
    if file_format is FileFormat.BIST:
        context = sampledata._bist_context(seed, dates)
        frame = sampledata._bist_frame(rng, symbol, prices, context, index_code)
    else:
        frame = sampledata._standard_frame(symbol, prices)
        if file_format is FileFormat.STANDARD_NO_SYMBOL:
            frame = frame.drop("HisseKodu")
    return sampledata._render(frame, file_format, dialect, rng)


def _with_cell(data: bytes, line: int, column: int, value: str) -> bytes:
    """``data`` with the cell at 1-based ``line`` (the header is line 1) and 0-based ``column`` replaced."""
    lines = data.decode().split("\n")
    cells = lines[line - 1].split(",")
    cells[column] = value
    lines[line - 1] = ",".join(cells)
    return "\n".join(lines).encode()


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / BIST.folder / name).write_bytes(data)


def _run(engine: sa.Engine, root: Path, **options: Any) -> list[FileResult]:
    importer = MarketImporter(Warehouse(engine), BIST, "run-1", ImportOptions(today=TODAY, **options))
    return importer.run(scan_market(root, BIST))


def _select(engine: sa.Engine, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def _audits(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    t = file_imports.c
    query = sa.select(t.partition_key, t.status, t.error_class, t.error_message, t.rows_loaded, t.rows_rejected)
    return {r[0]: r[1:] for r in _select(engine, query)}


def _loaded(engine: sa.Engine) -> dict[str, int]:
    t = historical_market_data.c
    return dict(_select(engine, sa.select(t.source_file, sa.func.count()).group_by(t.source_file)))


CLEAN = {
    "GARAN.csv": valid_file(FileFormat.BIST, "GARAN", 20),
    "THYAO.csv": valid_file(FileFormat.BIST, "THYAO", 20, dialect=("semicolon_decimal_comma",)),
    "TUPRS.csv": valid_file(FileFormat.STANDARD, "TUPRS", 20),
}
INDEX_CODE = 7  # END_ENDEKS_KODU, a text column of the BIST layout


def test_a_quoted_delimiter_and_a_quoted_newline_in_one_batch_load_with_their_market(
    any_engine: sa.Engine, data_root: Path
) -> None:
    # Typed together, these two made polars panic and killed the step before any of the market's files had an
    # audit row. The quoted file sorts first, as it did then.
    _write(data_root, CLEAN)
    _write(
        data_root,
        {
            "AKBNK.csv": _with_cell(valid_file(FileFormat.BIST, "AKBNK", 20), 4, INDEX_CODE, '"XU,100"'),
            "ASELS.csv": _with_cell(valid_file(FileFormat.BIST, "ASELS", 20), 4, INDEX_CODE, '"XU\n100"'),
        },
    )
    results = _run(any_engine, data_root)

    assert {r.file.partition_key: (r.status, r.error) for r in results} == {
        name: ("succeeded", None) for name in ("AKBNK.csv", "ASELS.csv", *CLEAN)
    }
    assert {key: audit[:2] + audit[3:] for key, audit in _audits(any_engine).items()} == {
        "AKBNK.csv": ("succeeded", None, 20, 0),
        "ASELS.csv": ("succeeded", None, 19, 2),  # the two halves of the broken line
        **{name: ("succeeded", None, 20, 0) for name in CLEAN},
    }
    t = rejected_rows.c
    assert _select(any_engine, sa.select(t.source_file, t.line_number, t.check_name).order_by(t.line_number)) == [
        ("BIST/ASELS.csv", 4, "field_count"),
        ("BIST/ASELS.csv", 5, "field_count"),
    ]
    h = historical_market_data.c
    quoted = sa.select(h.index_code).where(h.symbol == "AKBNK", h.trade_date == FIRST_DAY + dt.timedelta(days=2))
    assert _select(any_engine, quoted) == [("XU,100",)]
    assert accounting_issues(any_engine, "run-1") == []


class PanicException(BaseException):
    """Named as pyo3's panic, which polars raises: a ``BaseException``, so ``except Exception`` misses it."""


def _panic_typing(monkeypatch: pytest.MonkeyPatch, symbol: str, error: type[BaseException]) -> None:
    """Make typing raise ``error`` for any batch holding line 10 or later of ``symbol``'s file."""
    real = parsing._type_group

    def typing(raws: list[RawChunk]) -> list[ParsedChunk]:
        if any(r.symbol_from_name == symbol and r.source["line_no"].max() >= 10 for r in raws):  # type: ignore[operator]
            raise error("assertion failed: i < self.len()")
        return real(raws)

    monkeypatch.setattr(parsing, "_type_group", typing)


@pytest.mark.parametrize("chunk_bytes", [parsing.DEFAULT_CHUNK_BYTES, 512], ids=["grouped", "streamed"])
def test_a_panic_on_one_file_fails_that_file_alone_and_its_neighbours_load(
    any_engine: sa.Engine, data_root: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    _write(data_root, {**CLEAN, "PANIC.csv": valid_file(FileFormat.BIST, "PANIC", 20)})
    _panic_typing(monkeypatch, "PANIC", PanicException)
    results = {r.file.partition_key: r for r in _run(any_engine, data_root, chunk_bytes=chunk_bytes)}

    failed = results.pop("PANIC.csv")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.error_class.value == "library_panic"
    assert failed.error.message == "polars panicked: assertion failed: i < self.len()"
    assert failed.trace is not None and "PanicException: assertion failed" in failed.trace
    assert "in typing" in failed.trace  # where it was raised, for whoever fixes the bug
    assert {key: (r.status, r.rows_read, r.trace) for key, r in results.items()} == {
        name: ("succeeded", 20, None) for name in CLEAN
    }
    assert _audits(any_engine) == {
        "PANIC.csv": ("failed", "library_panic", "polars panicked: assertion failed: i < self.len()", 0, 0),
        **{name: ("succeeded", None, None, 20, 0) for name in CLEAN},
    }
    # Streamed, PANIC's first lines were written before the panic: its transaction took them back.
    assert _loaded(any_engine) == {f"BIST/{name}": 20 for name in CLEAN}
    assert _select(any_engine, sa.select(sa.func.count()).select_from(rejected_rows)) == [(0,)]
    assert accounting_issues(any_engine, "run-1") == []


def test_an_interrupt_is_not_taken_for_a_files_failure(
    sqlite_engine: sa.Engine, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(data_root, {**CLEAN, "PANIC.csv": valid_file(FileFormat.BIST, "PANIC", 20)})
    _panic_typing(monkeypatch, "PANIC", KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(sqlite_engine, data_root)
