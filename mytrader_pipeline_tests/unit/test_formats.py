"""File-level format handling: header detection, encodings, delimiters, decimal commas and line endings."""

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest

from mytrader_pipeline.core.errors import ErrorClass, FileFormatError
from mytrader_pipeline.core.formats import (
    BIST_COLUMNS,
    STANDARD_COLUMNS,
    FileFormat,
    decode,
    detect_format,
)
from mytrader_pipeline.core.parsing import CsvFileReader, FileMeta, ParsedChunk

STANDARD_HEADER = ",".join(STANDARD_COLUMNS)
BIST_HEADER = ",".join(BIST_COLUMNS)


def _read(path: Path, shown: str = "NYSE/IBM.csv") -> tuple[list[ParsedChunk], FileMeta]:
    reader = CsvFileReader(path, shown)
    chunks = list(reader.chunks())
    return chunks, reader.meta


def _rows(chunks: list[ParsedChunk]) -> pl.DataFrame:
    return pl.concat([c.rows for c in chunks])


def _rejected(chunks: list[ParsedChunk]) -> pl.DataFrame:
    return pl.concat([c.rejected for c in chunks])


def _bist_line(symbol: str = "THYAO", date: str = "2020-01-02", index_code: str = "XU100", **values: str) -> str:
    cells = dict.fromkeys(BIST_COLUMNS, "1")
    cells |= {
        "HGDG_HS_KODU": symbol,
        "HisseKodu": symbol,
        "Tarih": date,
        "AcilisFiyati": "10",
        "EnDusuk": "9",
        "EnYuksek": "12",
        "HG_KAPANIS": "11.5",
        "DuzeltilmisKapanis": "11",
        "Hacim": "1000",
        "END_ENDEKS_KODU": index_code,
        "END_DEGER": "1234.5",
        "DD_DEGER": "5.95",
        "PD": "1000000",
    }
    cells |= values
    return ",".join(cells[c] for c in BIST_COLUMNS)


# -- header detection ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected", "delimiter"),
    [
        (BIST_HEADER, FileFormat.BIST, ","),
        (STANDARD_HEADER, FileFormat.STANDARD, ","),
        (";".join(STANDARD_COLUMNS), FileFormat.STANDARD, ";"),
        (";".join(BIST_COLUMNS), FileFormat.BIST, ";"),
        (",".join(STANDARD_COLUMNS[1:]), FileFormat.STANDARD_NO_SYMBOL, ","),
        ("\ufeff" + STANDARD_HEADER + "\r", FileFormat.STANDARD, ","),
        (",".join(f'"{c}"' for c in STANDARD_COLUMNS), FileFormat.STANDARD, ","),
    ],
    ids=["bist-32", "standard-8", "standard-semicolon", "bist-semicolon", "standard-7-no-symbol", "bom-crlf", "quoted"],
)
def test_known_headers_are_detected_with_their_delimiter(header: str, expected: FileFormat, delimiter: str) -> None:
    assert detect_format(header, "X/A.csv") == (expected, delimiter)


def test_a_renamed_column_is_an_unknown_format_naming_file_line_and_column() -> None:
    header = STANDARD_HEADER.replace("Hacim", "Volume")
    with pytest.raises(FileFormatError) as info:
        detect_format(header, "NYSE/IBM.csv")
    error = info.value
    assert error.error_class is ErrorClass.UNKNOWN_FORMAT
    assert (error.path, error.line) == ("NYSE/IBM.csv", 1)
    assert "'Volume' (expected 'Hacim')" in error.reason
    assert str(error).startswith("NYSE/IBM.csv:1:")
    assert not error.retryable


def test_a_header_of_unknown_width_names_its_columns() -> None:
    with pytest.raises(FileFormatError) as info:
        detect_format("Date,Open,High,Low,Close", "NASDAQ/AAPL.csv")
    error = info.value
    assert error.error_class is ErrorClass.UNKNOWN_FORMAT
    assert error.line == 1
    assert "5 column(s)" in error.reason
    assert "Date, Open, High, Low" in error.reason


def test_an_unknown_header_in_a_file_fails_the_file(tmp_path: Path) -> None:
    path = tmp_path / "AAPL.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,1,2,100\n")
    with pytest.raises(FileFormatError) as info:
        _read(path, "NASDAQ/AAPL.csv")
    assert info.value.error_class is ErrorClass.UNKNOWN_FORMAT
    assert str(info.value).startswith("NASDAQ/AAPL.csv:1:")
    assert "Date, Open, High, Low" in str(info.value)


@pytest.mark.parametrize(
    "content", [b"", b"\n", b"\r\n\r\n", b"\xef\xbb\xbf", b"   \n"], ids=["0-bytes", "lf", "crlf", "bom-only", "spaces"]
)
def test_a_file_without_a_header_is_an_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "IBM.csv"
    path.write_bytes(content)
    with pytest.raises(FileFormatError) as info:
        _read(path)
    assert info.value.error_class is ErrorClass.EMPTY_FILE
    assert info.value.path == "NYSE/IBM.csv"


@pytest.mark.parametrize("tail", ["", "\n", "\n\n\n"], ids=["no-newline", "newline", "blank-lines"])
def test_a_header_only_file_has_no_rows(tmp_path: Path, tail: str) -> None:
    # The reader yields nothing to load; the importer turns "no data rows" into empty_file (test_importer).
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + tail)
    chunks, meta = _read(path)
    assert meta.format is FileFormat.STANDARD
    assert sum(c.rows_read for c in chunks) == 0


# -- the BIST layout ---------------------------------------------------------------------------------------------
def test_bist_columns_map_onto_canonical_prices_and_extras(tmp_path: Path) -> None:
    path = tmp_path / "THYAO.csv"
    path.write_text(BIST_HEADER + "\n" + _bist_line() + "\n")
    chunks, meta = _read(path, "BIST/THYAO.csv")
    assert meta.format is FileFormat.BIST
    row = _rows(chunks).row(0, named=True)
    assert row["symbol"] == "THYAO"
    assert row["trade_date"] == dt.date(2020, 1, 2)
    # close is HG_KAPANIS, adjusted close DuzeltilmisKapanis
    assert (row["open"], row["high"], row["low"], row["close"], row["adj_close"], row["volume"]) == (
        10.0,
        12.0,
        9.0,
        11.5,
        11.0,
        1000.0,
    )
    assert (row["index_code"], row["index_value"], row["usd_try"], row["market_cap"]) == (
        "XU100",
        1234.5,
        5.95,
        1_000_000.0,
    )


def test_standard_rows_have_null_bist_extras(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\nIBM,2020-01-02,10,12,9,11,10.5,100\n")
    row = _rows(_read(path)[0]).row(0, named=True)
    assert (row["close"], row["adj_close"]) == (11.0, 10.5)
    assert row["index_code"] is None and row["market_cap"] is None


# -- encodings ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("encode", "encoding"),
    [
        (lambda text: text.encode("utf-8"), "utf-8"),
        (lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"), "utf-8-sig"),
        (lambda text: text.encode("cp1254"), "cp1254"),
    ],
    ids=["utf-8", "utf-8-bom", "windows-1254"],
)
def test_turkish_text_is_decoded_in_each_encoding(tmp_path: Path, encode: object, encoding: str) -> None:
    path = tmp_path / "THYAO.csv"
    text = (
        BIST_HEADER + "\n" + _bist_line(index_code="XUSİN") + "\n" + _bist_line(date="2020-01-03", index_code="ŞĞÜÇÖ")
    )
    path.write_bytes(encode(text + "\n"))  # type: ignore[operator]
    chunks, meta = _read(path, "BIST/THYAO.csv")
    assert meta.encoding == encoding
    assert meta.format is FileFormat.BIST
    assert _rows(chunks)["index_code"].to_list() == ["XUSİN", "ŞĞÜÇÖ"]
    assert _rejected(chunks).is_empty()


def test_decode_prefers_utf8_then_windows_1254() -> None:
    assert decode("İ".encode(), "a") == ("İ", "utf-8")
    assert decode(b"\xef\xbb\xbfx", "a") == ("x", "utf-8-sig")
    assert decode("XUSİN".encode("cp1254"), "a") == ("XUSİN", "cp1254")


@pytest.mark.parametrize(
    "data", [b"\xef\xbb\xbf\xff\xfe", b"a\x00\xff", b"\x81\x8d\x8f"], ids=["bad-after-bom", "binary", "undefined-1254"]
)
def test_undecodable_bytes_are_undecodable(data: bytes) -> None:
    with pytest.raises(FileFormatError) as info:
        decode(data, "BIST/X.csv")
    assert info.value.error_class is ErrorClass.UNDECODABLE


# -- delimiters, decimal commas, line endings --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "line", "decimal_comma"),
    [
        (STANDARD_HEADER, "IBM,2020-01-02,10.5,12.25,9,11,11,1100", False),
        (";".join(STANDARD_COLUMNS), "IBM;2020-01-02;10.5;12.25;9;11;11;1100", False),
        (";".join(STANDARD_COLUMNS), "IBM;2020-01-02;10,5;12,25;9;11;11;1.100", True),
        (STANDARD_HEADER, 'IBM,2020-01-02,"10.5","12.25",9,11,11,1100', False),
    ],
    ids=["comma", "semicolon", "semicolon-decimal-comma", "quoted-fields"],
)
def test_delimiters_and_decimal_marks(tmp_path: Path, header: str, line: str, decimal_comma: bool) -> None:
    path = tmp_path / "IBM.csv"
    path.write_text(f"{header}\n{line}\n")
    chunks, meta = _read(path)
    assert meta.decimal_comma is decimal_comma
    row = _rows(chunks).row(0, named=True)
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"]) == (10.5, 12.25, 9.0, 11.0, 1100.0)
    assert _rejected(chunks).is_empty()


def test_bist_semicolon_file_with_decimal_commas(tmp_path: Path) -> None:
    cells = dict.fromkeys(BIST_COLUMNS, "1")
    cells |= {
        "HisseKodu": "THYAO",
        "Tarih": "02.01.2020",
        "AcilisFiyati": "10,25",
        "EnDusuk": "9",
        "EnYuksek": "12,5",
        "HG_KAPANIS": "11,75",
        "DuzeltilmisKapanis": "11",
        "Hacim": "1.000",
        "END_DEGER": "1.234,5",
    }
    line = ";".join(cells[c] for c in BIST_COLUMNS)
    path = tmp_path / "THYAO.csv"
    path.write_text(";".join(BIST_COLUMNS) + "\n" + line + "\n")
    chunks, meta = _read(path, "BIST/THYAO.csv")
    assert (meta.delimiter, meta.decimal_comma) == (";", True)
    row = _rows(chunks).row(0, named=True)
    assert (row["open"], row["high"], row["close"], row["volume"], row["index_value"]) == (
        10.25,
        12.5,
        11.75,
        1000.0,
        1234.5,
    )
    assert row["trade_date"] == dt.date(2020, 1, 2)


def test_crlf_line_endings_leave_no_carriage_returns(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    lines = [STANDARD_HEADER, "IBM,2020-01-02,10,12,9,11,11,100", "IBM,2020-01-03,10,12,9,11,11,200"]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    chunks, _ = _read(path)
    rows = _rows(chunks)
    assert rows["volume"].to_list() == [100.0, 200.0]
    assert rows["line_no"].to_list() == [2, 3]
    assert not any("\r" in raw for raw in rows["raw"].to_list())
    assert _rejected(chunks).is_empty()


@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_truncated_last_line_is_rejected_with_its_field_count(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "IBM.csv"
    lines = [
        STANDARD_HEADER,
        "IBM,2020-01-02,10,12,9,11,11,100",
        "IBM,2020-01-03,10,12,9,11,11,100",
        "IBM,2020-01-06,10,1",
    ]
    path.write_bytes(ending.join(lines).encode())  # no newline after the last line
    chunks, _ = _read(path)
    assert _rows(chunks)["line_no"].to_list() == [2, 3]
    rejected = _rejected(chunks).row(0, named=True)
    assert rejected["line_no"] == 4
    assert rejected["check"] == "field_count"
    assert rejected["reason"] == "expected 8 fields, found 4"
    assert rejected["raw"] == "IBM,2020-01-06,10,1"


def test_a_truncated_only_data_line_is_rejected_not_fatal(tmp_path: Path) -> None:
    # Found by this test: polars sized rows by the first data line, so a short first line failed the whole file.
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\nIBM,2020-01-02,10")
    chunks, _ = _read(path)
    assert _rows(chunks).is_empty()
    assert _rejected(chunks).select("line_no", "reason").row(0) == (2, "expected 8 fields, found 3")


@pytest.mark.parametrize("position", ["first", "middle"])
def test_a_line_with_too_many_fields_is_rejected(tmp_path: Path, position: str) -> None:
    good = ["IBM,2020-01-02,10,12,9,11,11,100", "IBM,2020-01-03,10,12,9,11,11,100"]
    extra = "IBM,2020-01-06,10,12,9,11,11,100,7"
    lines = [extra, *good] if position == "first" else [good[0], extra, good[1]]
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\n" + "\n".join(lines) + "\n")
    chunks, _ = _read(path)
    rejected = _rejected(chunks).row(0, named=True)
    assert rejected["line_no"] == (2 if position == "first" else 3)
    assert rejected["reason"] == "expected 8 fields, found 9"
    assert _rows(chunks).height == 2


def test_a_stray_quote_rejects_its_line_only(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    lines = [
        "IBM,2020-01-02,10,12,9,11,11,100",
        'IBM,2020-01-03,"10,12,9,11,11,100',
        "IBM,2020-01-06,10,12,9,11,11,100",
    ]
    path.write_text(STANDARD_HEADER + "\n" + "\n".join(lines) + "\n")
    chunks, _ = _read(path)
    assert _rows(chunks)["line_no"].to_list() == [2, 4]
    assert _rejected(chunks)["line_no"].to_list() == [3]


def test_blank_lines_are_skipped_but_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    text = STANDARD_HEADER + "\n\nIBM,2020-01-02,10,12,9,11,11,100\n   \n\nIBM,2020-01-03,10,12,9,11,11,100\n\n"
    path.write_text(text)
    chunks, _ = _read(path)
    assert _rows(chunks)["line_no"].to_list() == [3, 6]  # lines 2, 4 and 5 are blank
    assert sum(c.rows_read for c in chunks) == 2  # blank lines are not rows
    assert _rejected(chunks).is_empty()


def test_file_meta_records_size_and_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    data = (STANDARD_HEADER + "\nIBM,2020-01-02,10,12,9,11,11,100\n").encode()
    path.write_bytes(data)
    _, meta = _read(path)
    assert (meta.size, meta.sha256) == (len(data), hashlib.sha256(data).hexdigest())
