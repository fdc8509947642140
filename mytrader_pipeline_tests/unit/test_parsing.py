"""Parsing one file into typed rows: date formats detected per file, the symbol, and chunked reading."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from mytrader_pipeline.core.errors import ErrorClass, FileFormatError
from mytrader_pipeline.core.formats import DATE_FORMATS, STANDARD_COLUMNS
from mytrader_pipeline.core.parsing import CsvFileReader, ParsedChunk, read_file, split_by_part, type_chunks

STANDARD_HEADER = ",".join(STANDARD_COLUMNS)
DATES = [dt.date(2020, 1, 2), dt.date(2020, 1, 3), dt.date(2020, 1, 13), dt.date(2020, 2, 28)]


def _write(path: Path, dates: list[str], symbol: str = "IBM", header: str = STANDARD_HEADER) -> Path:
    lines = [f"{symbol},{d},10,12,9,11,11,100" for d in dates]
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def _read(path: Path, **kwargs: object) -> tuple[pl.DataFrame, pl.DataFrame, CsvFileReader]:
    reader = CsvFileReader(path, f"NYSE/{path.name}", **kwargs)  # type: ignore[arg-type]
    chunks = list(reader.chunks())
    return pl.concat([c.rows for c in chunks]), pl.concat([c.rejected for c in chunks]), reader


# -- date formats --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(DATE_FORMATS))
def test_each_date_format_is_detected_per_file(tmp_path: Path, name: str) -> None:
    fmt = DATE_FORMATS[name]
    # 13 January and 28 February make dd/MM and MM/dd unambiguous.
    path = _write(tmp_path / "IBM.csv", [d.strftime(fmt) for d in DATES])
    rows, rejected, reader = _read(path)
    assert reader.meta.date_format == fmt
    assert rows["trade_date"].to_list() == DATES
    assert rejected.is_empty()


def test_two_files_of_one_market_may_use_different_date_formats(tmp_path: Path) -> None:
    a = _write(tmp_path / "A.csv", [d.strftime("%d.%m.%Y") for d in DATES])
    b = _write(tmp_path / "B.csv", [d.strftime("%Y%m%d") for d in DATES])
    raws = [raw for path in (a, b) for raw in CsvFileReader(path, path.name).raw_chunks()]
    parsed = type_chunks(raws)
    assert [p.rows["trade_date"].to_list() for p in parsed] == [DATES, DATES]


def test_dates_with_a_time_part_are_read_as_dates(tmp_path: Path) -> None:
    path = _write(tmp_path / "IBM.csv", ["2020-01-02 00:00:00", "2020-01-03T00:00:00"])
    rows, rejected, _ = _read(path)
    assert rows["trade_date"].to_list() == DATES[:2]
    assert rejected.is_empty()


def test_dates_that_fit_both_day_first_and_month_first_are_ambiguous(tmp_path: Path) -> None:
    path = _write(tmp_path / "IBM.csv", ["02/01/2020", "03/01/2020", "12/11/2020"])
    with pytest.raises(FileFormatError) as info:
        _read(path)
    error = info.value
    assert error.error_class is ErrorClass.AMBIGUOUS_DATES
    assert error.column == "Tarih"
    assert "date_format" in error.reason
    assert not error.retryable


@pytest.mark.parametrize(
    ("configured", "expected"),
    [("%d/%m/%Y", dt.date(2020, 1, 2)), ("%m/%d/%Y", dt.date(2020, 2, 1))],
    ids=["day-first", "month-first"],
)
def test_the_market_date_format_settles_ambiguous_dates(tmp_path: Path, configured: str, expected: dt.date) -> None:
    path = _write(tmp_path / "IBM.csv", ["02/01/2020"])
    rows, _, reader = _read(path, date_format=configured)
    assert reader.meta.date_format == configured
    assert rows["trade_date"].to_list() == [expected]


def test_the_configured_date_format_is_used_even_when_detection_would_differ(tmp_path: Path) -> None:
    path = _write(tmp_path / "IBM.csv", ["2020-01-02", "2020-01-03"])
    rows, rejected, _ = _read(path, date_format="%d.%m.%Y")
    assert rows.is_empty()
    assert set(rejected["check"]) == {"date_format"}


def test_a_date_that_does_not_fit_the_files_format_is_rejected_with_the_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "IBM.csv", ["2020-01-02", "2020-13-45", "2020-01-03"])
    rows, rejected, _ = _read(path)
    assert rows["line_no"].to_list() == [2, 4]
    row = rejected.row(0, named=True)
    assert (row["line_no"], row["column"], row["check"]) == (3, "Tarih", "date_format")
    assert "2020-13-45" in row["reason"]
    assert row["raw"] == "IBM,2020-13-45,10,12,9,11,11,100"


def test_a_file_whose_dates_never_parse_rejects_every_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "IBM.csv", ["yesterday", "today"])
    rows, rejected, _ = _read(path)
    assert rows.is_empty()
    assert rejected["line_no"].to_list() == [2, 3]


# -- the symbol ----------------------------------------------------------------------------------------------------
def test_the_symbol_comes_from_the_hissekodu_column(tmp_path: Path) -> None:
    rows, _, _ = _read(_write(tmp_path / "whatever.csv", ["2020-01-02"], symbol=" GARAN "))
    assert rows["symbol"].to_list() == ["GARAN"]


def test_an_empty_symbol_cell_falls_back_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "thyao.csv"
    path.write_text(STANDARD_HEADER + "\n,2020-01-02,10,12,9,11,11,100\n  ,2020-01-03,10,12,9,11,11,100\n")
    rows, _, _ = _read(path)
    assert rows["symbol"].to_list() == ["THYAO", "THYAO"]


def test_the_seven_column_header_takes_the_symbol_from_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT.csv"
    path.write_text(",".join(STANDARD_COLUMNS[1:]) + "\n2020-01-02,10,12,9,11,11,100\n")
    rows, rejected, _ = _read(path)
    assert rows.select("symbol", "close").row(0) == ("BTCUSDT", 11.0)
    assert rejected.is_empty()


# -- chunked reading -----------------------------------------------------------------------------------------------
def _long_file(path: Path, days: int = 60, trailing_newline: bool = True) -> Path:
    start = dt.date(2020, 1, 1)
    lines = [f"IBM,{start + dt.timedelta(days=i)},10,12,9,11,11,{i}" for i in range(days)]
    lines.insert(days // 3, "")  # a blank line inside
    path.write_text(STANDARD_HEADER + "\n" + "\n".join(lines) + ("\n" if trailing_newline else ""))
    return path


def _concat(chunks: list[ParsedChunk]) -> tuple[pl.DataFrame, pl.DataFrame]:
    return pl.concat([c.rows for c in chunks]), pl.concat([c.rejected for c in chunks])


@pytest.mark.parametrize("chunk_bytes", [40, 97, 300, 1000])
def test_small_chunks_give_the_same_rows_and_line_numbers_as_one_chunk(tmp_path: Path, chunk_bytes: int) -> None:
    path = _long_file(tmp_path / "IBM.csv")
    whole, _ = read_file(path, "NYSE/IBM.csv")
    chunks = list(CsvFileReader(path, "NYSE/IBM.csv", chunk_bytes=chunk_bytes).chunks())
    assert len(chunks) > 1
    rows, rejected = _concat(chunks)
    assert rows.equals(_concat(whole)[0])
    assert rows["line_no"].to_list() == [*range(2, 22), *range(23, 63)]
    assert rejected.is_empty()


@pytest.mark.parametrize("chunk_bytes", range(30, 110, 7))
def test_a_truncated_last_line_is_rejected_whatever_the_chunk_boundaries(tmp_path: Path, chunk_bytes: int) -> None:
    # Found by this test: a last block holding only the truncated line failed the whole file.
    path = _long_file(tmp_path / "IBM.csv", days=12, trailing_newline=False)
    with path.open("a") as handle:
        handle.write("\nIBM,2020-02-01,10,12")
    rows, rejected = _concat(list(CsvFileReader(path, "NYSE/IBM.csv", chunk_bytes=chunk_bytes).chunks()))
    assert rows.height == 12
    # Line 15: after the header, 12 rows and a blank line.
    assert rejected.select("line_no", "reason").rows() == [(15, "expected 8 fields, found 4")]


def test_windows_1254_text_late_in_a_streamed_file_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    lines = [f"IBM,2020-01-{d:02d},10,12,9,11,11,100" for d in range(1, 29)]
    lines[-1] = "İŞ," + lines[-1].split(",", 1)[1]
    path.write_bytes((STANDARD_HEADER + "\n" + "\n".join(lines) + "\n").encode("cp1254"))
    reader = CsvFileReader(path, "NYSE/IBM.csv", chunk_bytes=200)
    rows, _ = _concat(list(reader.chunks()))
    assert rows["symbol"].to_list()[-1] == "İŞ"
    assert reader.meta.encoding == "cp1254"


def test_many_files_typed_in_one_pass_match_each_typed_alone(tmp_path: Path) -> None:
    semicolon = tmp_path / "B.csv"
    semicolon.write_text(";".join(STANDARD_COLUMNS) + "\nB;02.01.2020;10,5;12;9;11;11;100\n")
    paths = [_long_file(tmp_path / "A.csv", days=5), semicolon, _write(tmp_path / "C.csv", ["2020-01-02"], "C")]
    raws = [raw for path in paths for raw in CsvFileReader(path, path.name).raw_chunks()]
    together = type_chunks(raws)
    alone = [type_chunks(list(CsvFileReader(path, path.name).raw_chunks()))[0] for path in paths]
    for a, b in zip(together, alone, strict=True):
        assert a.rows.equals(b.rows)
        assert a.rejected.equals(b.rejected)
    assert together[1].rows.select("symbol", "open").row(0) == ("B", 10.5)


def test_a_quoted_file_typed_with_one_of_a_quoted_newline_gives_what_each_gives_alone(tmp_path: Path) -> None:
    # The quoted file's lines all pass and the other's two halves of a line have the wrong width: polars 2.1
    # panicked ("assertion failed: i < self.len()") formatting the reasons of lines filtered out of such a pair.
    quoted = tmp_path / "A.csv"
    quoted.write_text(STANDARD_HEADER + '\nA,2020-01-02,"10,5",12,9,11,11,100\nA,2020-01-03,10,12,9,11,11,100\n')
    other = tmp_path / "B.csv"
    other.write_text(STANDARD_HEADER + '\nB,2020-01-02,10,"12\n",9,11,11,100\nB,2020-01-03,10,12,9,11,11,100\n')
    paths = [quoted, other]
    together = type_chunks([raw for path in paths for raw in CsvFileReader(path, path.name).raw_chunks()])
    alone = [type_chunks(list(CsvFileReader(path, path.name).raw_chunks()))[0] for path in paths]
    for a, b in zip(together, alone, strict=True):
        assert a.rows.equals(b.rows)
        assert a.rejected.equals(b.rejected)
    assert together[1].rejected.height == 2


@pytest.mark.parametrize("chunk_bytes", [100_000, 200])
def test_a_file_marked_utf8_with_a_byte_that_is_not_is_undecodable_wherever_the_byte_is(
    tmp_path: Path, chunk_bytes: int
) -> None:
    # Read in blocks, the bad byte's block used to be decoded as Windows-1254, garbling its Turkish text silently.
    path = tmp_path / "IBM.csv"
    lines = [f"İŞ,2020-01-{d:02d},10,12,9,11,11,100" for d in range(1, 29)]
    lines[-1] = lines[-1].replace("100", "1\udc800", 1)
    path.write_bytes(
        b"\xef\xbb\xbf" + (STANDARD_HEADER + "\n" + "\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    )
    with pytest.raises(FileFormatError) as info:
        list(CsvFileReader(path, "NYSE/IBM.csv", chunk_bytes=chunk_bytes).chunks())
    assert info.value.error_class is ErrorClass.UNDECODABLE
    assert "byte-order mark but is not valid UTF-8" in str(info.value)


def test_a_unit_separator_in_a_line_does_not_split_it(tmp_path: Path) -> None:
    # Lines are read whole by splitting on a control character (\x1f): one inside a line made polars see a second
    # column and fail the whole file with an unexpected SchemaError.
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\nIBM,2020-01-02,10,12,9,11,11,100\nIBM,2020-01-03,1\x1f0,12,9,11,11,100\n")
    rows, rejected, _ = _read(path)
    assert rows["line_no"].to_list() == [2]
    assert rejected.select("line_no", "column", "raw").rows() == [
        (3, "AcilisFiyati", "IBM,2020-01-03,1\x1f0,12,9,11,11,100")
    ]


def test_split_by_part_gives_each_chunk_its_rows_in_order_whatever_the_order_of_the_chunks() -> None:
    in_order = pl.DataFrame({"_part": [0, 0, 2, 2, 2], "v": [1, 2, 3, 4, 5]})
    shuffled = pl.DataFrame({"_part": [2, 0, 2, 0, 2], "v": [3, 1, 4, 2, 5]})
    for rows in (in_order, shuffled):
        parts = split_by_part(rows, 4)
        assert [p.get_column("v").to_list() for p in parts] == [[1, 2], [], [3, 4, 5], []]
        assert all(p.columns == ["v"] for p in parts)
