"""Hostile cells (NaN, infinities, huge numbers, control characters, over-long text, absurd dates) are rejected rows
with their line, column and check, in both layouts; the file's good rows are still accepted with exact values."""

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from mytrader_pipeline.core.cell_bounds import FLOAT8_EXACT_WHOLE, MIN_TRADE_DATE, TEXT_LENGTHS
from mytrader_pipeline.core.db import historical_market_data
from mytrader_pipeline.core.formats import BIST_COLUMNS, STANDARD_COLUMNS
from mytrader_pipeline.core.parsing import CsvFileReader, type_chunks
from mytrader_pipeline.core.validation import validate_chunks

TODAY = dt.date(2024, 6, 28)


@dataclasses.dataclass(frozen=True)
class Layout:
    """One Stock_Scrapper layout: how to write a row of it, and its source column for each canonical field."""

    name: str
    columns: tuple[str, ...]
    delimiter: str
    day_first: bool  # dd.MM.yyyy, else yyyy-MM-dd
    sources: dict[str, str]  # canonical field -> source column
    base: dict[str, str]  # a good row's cells by source column; numbers written the layout's way

    def line(self, day: dt.date, **fields: str) -> str:
        cells = {**self.base, self.sources["date"]: self.date_text(day)}
        cells |= {self.sources[field]: value for field, value in fields.items()}
        return self.delimiter.join(self._quoted(cells[c]) for c in self.columns)

    def date_text(self, day: dt.date) -> str:
        """``day`` as the layout writes it, the year always in four digits (strftime writes year 1 as '1')."""
        if self.day_first:
            return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"
        return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"

    def _quoted(self, cell: str) -> str:
        return f'"{cell}"' if self.delimiter in cell else cell

    def write(self, path: Path, lines: list[str]) -> Path:
        path.write_text(self.delimiter.join(self.columns) + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
        return path


_COMMON = {"date": "Tarih", "symbol": "HisseKodu", "open": "AcilisFiyati", "high": "EnYuksek", "low": "EnDusuk"}
_COMMON |= {"adj_close": "DuzeltilmisKapanis", "volume": "Hacim"}
BIST = Layout(
    name="bist",
    columns=BIST_COLUMNS,
    delimiter=";",  # decimal commas, Turkish dates
    day_first=True,
    sources={**_COMMON, "close": "HG_KAPANIS", "index_code": "END_ENDEKS_KODU", "usd_try": "DD_DEGER"},
    base={
        **dict.fromkeys(BIST_COLUMNS, "1"),
        "HisseKodu": "THYAO",
        "AcilisFiyati": "10,5",
        "EnYuksek": "12",
        "EnDusuk": "9,25",
        "HG_KAPANIS": "11,75",
        "DuzeltilmisKapanis": "11,5",
        "Hacim": "1.234.567",
        "END_ENDEKS_KODU": "XU100",
        "DD_DEGER": "32,5",
    },
)
STANDARD = Layout(
    name="standard",
    columns=STANDARD_COLUMNS,
    delimiter=",",
    day_first=False,
    sources={**_COMMON, "close": "KapanisFiyati"},
    base={
        "HisseKodu": "IBM",
        "AcilisFiyati": "10.5",
        "EnYuksek": "12",
        "EnDusuk": "9.25",
        "KapanisFiyati": "11.75",
        "DuzeltilmisKapanis": "11.5",
        "Hacim": "1234567",
    },
)
LAYOUTS = [BIST, STANDARD]
# Every good row's values, as both layouts write them above.
GOOD_VALUES = {"open": 10.5, "high": 12.0, "low": 9.25, "close": 11.75, "adj_close": 11.5, "volume": 1234567.0}
# Checks made while typing name the source column; pandera's (on canonical rows) name the canonical one.
_PARSE_CHECKS = {"control_character", "max_length", "date_format", "numeric", "finite", "range"}

INJECTION = "'; DROP TABLE ohlcv; -- " + "x" * 20  # 44 characters, with the BIST delimiter in it

# id -> (canonical field, hostile cell, expected check, phrase in the reason)
HOSTILE: dict[str, tuple[str, str, str, str]] = {
    "nan-high": ("high", "NaN", "finite", "not a finite number: 'NaN'"),
    "nan-lowercase-close": ("close", "nan", "finite", "not a finite number: 'nan'"),
    "inf-high": ("high", "inf", "finite", "not a finite number: 'inf'"),
    "minus-inf-low": ("low", "-inf", "finite", "not a finite number: '-inf'"),
    "infinity-volume": ("volume", "Infinity", "finite", "not a finite number: 'Infinity'"),
    "1e400-high": ("high", "1e400", "finite", "not a finite number: '1e400'"),
    "huge-volume": ("volume", "1e30", "range", "1e30 is over 9007199254740992"),
    "negative-volume": ("volume", "-5", "greater_than_or_equal_to", "volume: must be >= 0"),
    "nul-in-symbol": ("symbol", "IB\x00M", "control_character", "contains control character 0x00"),
    "nul-in-price": ("high", "1\x002", "control_character", "contains control character 0x00"),
    "bel-in-symbol": ("symbol", "IBM\x07", "control_character", "contains control character 0x07"),
    "bs-in-date": ("date", "2024-06-04\x08", "control_character", "contains control character 0x08"),
    "symbol-33-chars": ("symbol", "A" * 33, "max_length", "33 characters, more than the 32"),
    "symbol-300-chars": ("symbol", "B" * 300, "max_length", "300 characters, more than the 32"),
    "sql-injection-symbol": ("symbol", INJECTION, "max_length", "44 characters, more than the 32"),
    "year-0001": ("date", "0001-06-04", "date_range", "date is before 1900-01-01"),
    "year-9999": ("date", "9999-06-04", "less_than_or_equal_to", "date is in the future"),
}


def _cell(layout: Layout, field: str, value: str) -> str:
    """``value`` as ``layout`` writes it: an ISO date (and what follows it) in the layout's date format."""
    if field != "date":
        return value
    return layout.date_text(dt.date.fromisoformat(value[:10])) + value[10:]


def _validate(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    reader = CsvFileReader(path, f"TEST/{path.name}")
    (result,) = validate_chunks(type_chunks(list(reader.raw_chunks())), today=TODAY)
    return result.accepted, result.rejected


def _expected_column(layout: Layout, field: str, check: str) -> str:
    return layout.sources[field] if check in _PARSE_CHECKS else {"date": "trade_date"}.get(field, field)


def _assert_good_rows(layout: Layout, accepted: pl.DataFrame, days: list[dt.date]) -> None:
    symbol = layout.base["HisseKodu"]
    assert accepted["symbol"].to_list() == [symbol] * len(days)
    assert accepted["trade_date"].to_list() == days
    for name, value in GOOD_VALUES.items():
        assert accepted[name].to_list() == [value] * len(days), name
    if layout is BIST:
        assert accepted["index_code"].to_list() == ["XU100"] * len(days)
        assert accepted["usd_try"].to_list() == [32.5] * len(days)


@pytest.mark.parametrize("layout", LAYOUTS, ids=[x.name for x in LAYOUTS])
@pytest.mark.parametrize(("field", "cell", "check", "phrase"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_cell_rejects_its_row_and_keeps_the_good_ones(
    tmp_path: Path, layout: Layout, field: str, cell: str, check: str, phrase: str
) -> None:
    bad = layout.line(dt.date(2024, 6, 4), **{field: _cell(layout, field, cell)})
    lines = [layout.line(dt.date(2024, 6, 3)), bad, layout.line(dt.date(2024, 6, 5))]
    accepted, rejected = _validate(layout.write(tmp_path / "FILE.csv", lines))
    assert rejected.select("line_no", "column", "check").rows() == [(3, _expected_column(layout, field, check), check)]
    assert phrase in rejected["reason"][0]
    assert rejected["raw"][0] == bad  # the line as read, NUL and all
    assert accepted["line_no"].to_list() == [2, 4]
    _assert_good_rows(layout, accepted, [dt.date(2024, 6, 3), dt.date(2024, 6, 5)])


@pytest.mark.parametrize("layout", LAYOUTS, ids=[x.name for x in LAYOUTS])
def test_nine_good_rows_survive_every_hostile_row_in_one_file(tmp_path: Path, layout: Layout) -> None:
    good_days = [dt.date(2024, 5, 1) + dt.timedelta(days=i) for i in range(9)]
    lines: list[str] = []
    expected: dict[int, str] = {}  # line number -> check
    for i, (field, cell, check, _) in enumerate(HOSTILE.values()):
        if i < len(good_days):
            lines.append(layout.line(good_days[i]))
        lines.append(layout.line(dt.date(2024, 6, 1) + dt.timedelta(days=i), **{field: _cell(layout, field, cell)}))
        expected[len(lines) + 1] = check  # line 1 is the header
    accepted, rejected = _validate(layout.write(tmp_path / "FILE.csv", lines))
    assert dict(rejected.select("line_no", "check").rows()) == expected
    assert accepted.height == 9
    _assert_good_rows(layout, accepted, good_days)


@pytest.mark.parametrize("layout", LAYOUTS, ids=[x.name for x in LAYOUTS])
@pytest.mark.parametrize(
    ("field", "cell"),
    [
        ("symbol", "S" * 32),  # exactly the column's length
        ("symbol", "Ş" * 32),  # 32 characters in 64 bytes: characters count, not bytes
        ("volume", str(FLOAT8_EXACT_WHOLE)),  # the largest volume held exactly
        ("date", str(MIN_TRADE_DATE)),
        ("high", "1e300"),  # huge but finite: a float8 holds it
        ("symbol", "IBM\tX"),  # tab is no control character here
    ],
    ids=["symbol-32", "symbol-32-multibyte", "volume-2^53", "date-1900-01-01", "price-1e300", "tab-in-symbol"],
)
def test_values_at_the_bounds_are_accepted(tmp_path: Path, layout: Layout, field: str, cell: str) -> None:
    path = layout.write(
        tmp_path / "FILE.csv", [layout.line(dt.date(2024, 6, 3), **{field: _cell(layout, field, cell)})]
    )
    accepted, rejected = _validate(path)
    assert rejected.is_empty(), rejected.to_dicts()
    assert accepted.height == 1


@pytest.mark.parametrize(
    ("field", "cell", "column", "check"),
    [
        ("usd_try", "NaN", "DD_DEGER", "finite"),
        ("usd_try", "-Infinity", "DD_DEGER", "finite"),
        ("index_code", "I" * 33, "END_ENDEKS_KODU", "max_length"),
        ("index_code", "XU\x00100", "END_ENDEKS_KODU", "control_character"),
    ],
    ids=["nan-extra", "inf-extra", "long-index-code", "nul-index-code"],
)
def test_bist_extras_are_bounded_like_prices(tmp_path: Path, field: str, cell: str, column: str, check: str) -> None:
    lines = [BIST.line(dt.date(2024, 6, 3)), BIST.line(dt.date(2024, 6, 4), **{field: cell})]
    accepted, rejected = _validate(BIST.write(tmp_path / "THYAO.csv", lines))
    assert rejected.select("line_no", "column", "check").rows() == [(3, column, check)]
    assert accepted["line_no"].to_list() == [2]


def test_a_row_with_several_problems_names_its_root_cause_first_and_every_problem(tmp_path: Path) -> None:
    bad = STANDARD.line(dt.date(2024, 6, 4), high="1\x002", volume="1e30", symbol="Z" * 40)
    accepted, rejected = _validate(STANDARD.write(tmp_path / "IBM.csv", [STANDARD.line(dt.date(2024, 6, 3)), bad]))
    row = rejected.row(0, named=True)
    assert (row["column"], row["check"]) == ("EnYuksek", "control_character")
    for phrase in ("EnYuksek: contains control character 0x00", "HisseKodu: 40 characters", "Hacim: 1e30 is over"):
        assert phrase in row["reason"]
    assert accepted.height == 1


@pytest.mark.parametrize("layout", LAYOUTS, ids=[x.name for x in LAYOUTS])
def test_control_characters_count_only_in_cells_the_warehouse_stores(tmp_path: Path, layout: Layout) -> None:
    # polars' reader drops a carriage return ending a cell (as it does a CRLF line end): the value stored is clean.
    cr = layout.line(dt.date(2024, 6, 4), open=layout.base["AcilisFiyati"] + "\r")
    lines = [layout.line(dt.date(2024, 6, 3)), cr]
    if layout is BIST:  # a BIST column that is read and dropped
        lines.append(layout.line(dt.date(2024, 6, 5)).replace(";1;", ";1\x00;", 1))
        assert lines[-1].split(";")[BIST_COLUMNS.index("END_TARIH")] == "1\x00"
    accepted, rejected = _validate(layout.write(tmp_path / "FILE.csv", lines))
    assert rejected.is_empty(), rejected.to_dicts()
    _assert_good_rows(layout, accepted, [dt.date(2024, 6, 3 + i) for i in range(len(lines))])


def test_a_nul_in_a_windows_1254_file_rejects_its_row_not_the_file(tmp_path: Path) -> None:
    lines = [BIST.line(dt.date(2024, 6, 3), index_code="XUSİN"), BIST.line(dt.date(2024, 6, 4), symbol="TH\x00YAO")]
    path = tmp_path / "THYAO.csv"
    path.write_bytes((";".join(BIST_COLUMNS) + "\n" + "\n".join(lines) + "\n").encode("cp1254"))
    accepted, rejected = _validate(path)
    assert rejected.select("line_no", "column", "check").rows() == [(3, "HisseKodu", "control_character")]
    assert accepted["index_code"].to_list() == ["XUSİN"]


def test_the_text_bounds_are_the_warehouse_columns_lengths() -> None:
    table = historical_market_data.c
    lengths = {"symbol": table.symbol.type.length, "index_code": table.index_code.type.length}
    assert lengths == TEXT_LENGTHS
