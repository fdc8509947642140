"""Row validation: every rule rejects its bad row (line, column, check, reason, raw line) and keeps the good ones."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from mytrader_pipeline.core.formats import BIST_COLUMNS, STANDARD_COLUMNS
from mytrader_pipeline.core.parsing import CsvFileReader, type_chunks
from mytrader_pipeline.core.validation import ValidatedChunk, validate_chunks

TODAY = dt.date(2024, 6, 28)
STANDARD_HEADER = ",".join(STANDARD_COLUMNS)
GOOD_BEFORE = "IBM,2024-06-03,10,12,9,11,11,100"  # line 2
GOOD_AFTER = "IBM,2024-06-05,10,12,9,11,11,100"  # line 4: the line under test is line 3


def _validate(path: Path, today: dt.date = TODAY, chunk_bytes: int | None = None) -> list[ValidatedChunk]:
    """Validate a file the way the importer does: typed chunk by chunk, remembering keys accepted earlier."""
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    reader = CsvFileReader(path, f"NYSE/{path.name}", **kwargs)  # type: ignore[arg-type]
    results: list[ValidatedChunk] = []
    seen: pl.DataFrame | None = None
    for raw in reader.raw_chunks():
        (result,) = validate_chunks(type_chunks([raw]), today=today, seen_keys=[seen])
        keys = result.accepted.select("symbol", "trade_date")
        seen = keys if seen is None else pl.concat([seen, keys])
        results.append(result)
    return results


def _one_bad_line(tmp_path: Path, line: str, header: str = STANDARD_HEADER) -> tuple[pl.DataFrame, pl.DataFrame]:
    path = tmp_path / "IBM.csv"
    path.write_text("\n".join([header, GOOD_BEFORE, line, GOOD_AFTER]) + "\n")
    results = _validate(path)
    return pl.concat([r.accepted for r in results]), pl.concat([r.rejected for r in results])


# (line under test, column, check, phrase in the reason)
RULES: dict[str, tuple[str, str, str, str]] = {
    "date-missing": ("IBM,,10,12,9,11,11,100", "trade_date", "not_nullable", "trade_date: required value missing"),
    "close-missing": ("IBM,2024-06-04,10,12,9,,11,100", "close", "not_nullable", "close: required value missing"),
    "open-zero": ("IBM,2024-06-04,0,12,9,11,11,100", "open", "greater_than", "open: must be > 0"),
    "high-negative": ("IBM,2024-06-04,10,-12,9,11,11,100", "high", "greater_than", "high: must be > 0"),
    "low-zero": ("IBM,2024-06-04,10,12,0,11,11,100", "low", "greater_than", "low: must be > 0"),
    "close-negative": ("IBM,2024-06-04,10,12,9,-11,11,100", "close", "greater_than", "close: must be > 0"),
    "adj-close-zero": ("IBM,2024-06-04,10,12,9,11,0,100", "adj_close", "greater_than", "adj_close: must be > 0"),
    "high-below-open": ("IBM,2024-06-04,13,12,9,11,11,100", "high", "high_gte_open", "high is below open"),
    "high-below-close": ("IBM,2024-06-04,10,12,9,13,11,100", "high", "high_gte_close", "high is below close"),
    "high-below-low": ("IBM,2024-06-04,,8,9,,11,100", "close", "not_nullable", "high is below low"),
    "low-above-open": ("IBM,2024-06-04,8,12,9,11,11,100", "low", "low_lte_open", "low is above open"),
    "low-above-close": ("IBM,2024-06-04,10,12,9,8,11,100", "low", "low_lte_close", "low is above close"),
    "volume-negative": ("IBM,2024-06-04,10,12,9,11,11,-1", "volume", "greater_than_or_equal_to", "must be >= 0"),
    "future-date": ("IBM,2024-06-29,10,12,9,11,11,100", "trade_date", "less_than_or_equal_to", "date is in the future"),
    "duplicate-date": ("IBM,2024-06-03,20,22,19,21,21,200", "trade_date", "unique_date_per_file", "duplicate date"),
    "bad-date": ("IBM,2024-06-31,10,12,9,11,11,100", "Tarih", "date_format", "cannot parse date '2024-06-31'"),
    "open-text": ("IBM,2024-06-04,abc,12,9,11,11,100", "AcilisFiyati", "numeric", "AcilisFiyati: not a number: 'abc'"),
    "high-text": ("IBM,2024-06-04,10,n/a,9,11,11,100", "EnYuksek", "numeric", "EnYuksek: not a number"),
    "low-text": ("IBM,2024-06-04,10,12,-,11,11,100", "EnDusuk", "numeric", "EnDusuk: not a number"),
    "close-text": ("IBM,2024-06-04,10,12,9,1l,11,100", "KapanisFiyati", "numeric", "KapanisFiyati: not a number"),
    "adj-text": ("IBM,2024-06-04,10,12,9,11,x,100", "DuzeltilmisKapanis", "numeric", "DuzeltilmisKapanis: not a"),
    "volume-text": ("IBM,2024-06-04,10,12,9,11,11,1e", "Hacim", "numeric", "Hacim: not a number: '1e'"),
    "too-few-fields": ("IBM,2024-06-04,10,12", "", "field_count", "expected 8 fields, found 4"),
    "too-many-fields": ("IBM,2024-06-04,10,12,9,11,11,100,1", "", "field_count", "expected 8 fields, found 9"),
}


@pytest.mark.parametrize(("line", "column", "check", "phrase"), list(RULES.values()), ids=list(RULES))
def test_each_rule_rejects_its_row_and_keeps_the_others(
    tmp_path: Path, line: str, column: str, check: str, phrase: str
) -> None:
    accepted, rejected = _one_bad_line(tmp_path, line)
    assert accepted["line_no"].to_list() == [2, 4]
    assert rejected.height == 1
    row = rejected.row(0, named=True)
    assert row["line_no"] == 3
    assert row["column"] == (column or None)
    assert row["check"] == check
    assert phrase in row["reason"]
    assert row["raw"] == line


@pytest.mark.parametrize(
    "line",
    [
        "IBM,2024-06-04,10,12,9,11,11,0",  # zero volume
        "IBM,2024-06-04,,,,11,,",  # only date and close
        "IBM,2024-06-28,10,12,9,11,11,100",  # dated today
        "IBM,2024-06-04,12,12,12,12,12,100",  # a flat day: high == low == open == close
        "IBM,2024-06-04, 10 , 12 ,9,11,11, ",  # padded cells, blank volume
    ],
    ids=["zero-volume", "only-close", "today", "flat", "padded"],
)
def test_valid_edge_rows_are_accepted(tmp_path: Path, line: str) -> None:
    accepted, rejected = _one_bad_line(tmp_path, line)
    assert accepted["line_no"].to_list() == [2, 3, 4]
    assert rejected.is_empty()


def test_the_future_is_relative_to_the_today_argument(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\n" + GOOD_BEFORE + "\n")
    (early,) = _validate(path, today=dt.date(2024, 6, 2))
    (late,) = _validate(path, today=dt.date(2024, 6, 3))
    assert (early.accepted.height, early.rejected["check"].to_list()) == (0, ["less_than_or_equal_to"])
    assert (late.accepted.height, late.rejected.height) == (1, 0)


def test_a_row_failing_several_rules_is_rejected_once_with_every_reason(tmp_path: Path) -> None:
    accepted, rejected = _one_bad_line(tmp_path, "IBM,2024-06-04,10,8,9,8.5,11,-5")
    assert accepted.height == 2
    assert rejected.height == 1
    reason = rejected["reason"][0]
    for phrase in ("high is below open", "high is below low", "low is above close", "volume: must be >= 0"):
        assert phrase in reason
    assert "high=8.0" in reason  # the row's values make the reason stand on its own


def test_non_numeric_cells_name_every_bad_source_column(tmp_path: Path) -> None:
    _, rejected = _one_bad_line(tmp_path, "IBM,2024-06-04,a,12,9,11,11,b")
    row = rejected.row(0, named=True)
    assert (row["column"], row["check"]) == ("AcilisFiyati", "numeric")
    assert "AcilisFiyati: not a number: 'a'" in row["reason"]
    assert "Hacim: not a number: 'b'" in row["reason"]


def test_a_non_numeric_bist_extra_rejects_the_row_naming_the_bist_column(tmp_path: Path) -> None:
    cells = dict.fromkeys(BIST_COLUMNS, "1")
    cells |= {"HisseKodu": "THYAO", "Tarih": "2024-06-04", "AcilisFiyati": "10", "EnDusuk": "9", "EnYuksek": "12"}
    cells |= {"HG_KAPANIS": "11", "DuzeltilmisKapanis": "11", "Hacim": "5", "END_ENDEKS_KODU": "XU100"}
    good = ",".join(cells[c] for c in BIST_COLUMNS)
    bad = ",".join({**cells, "Tarih": "2024-06-05", "PD": "çok"}[c] for c in BIST_COLUMNS)
    path = tmp_path / "THYAO.csv"
    path.write_text(",".join(BIST_COLUMNS) + "\n" + good + "\n" + bad + "\n")
    (result,) = _validate(path)
    assert result.accepted["line_no"].to_list() == [2]
    assert result.rejected.select("line_no", "column", "check").row(0) == (3, "PD", "numeric")


def test_the_later_duplicate_is_rejected_and_the_first_kept(tmp_path: Path) -> None:
    accepted, rejected = _one_bad_line(tmp_path, "IBM,2024-06-03,20,22,19,21,21,200")
    assert accepted.filter(pl.col("trade_date") == dt.date(2024, 6, 3))["close"].to_list() == [11.0]
    assert "duplicate date 2024-06-03 for IBM" in rejected["reason"][0]


def test_a_duplicate_of_a_rejected_row_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\nIBM,2024-06-03,-1,12,9,11,11,100\nIBM,2024-06-03,10,12,9,11,11,100\n")
    (result,) = _validate(path)
    assert result.accepted["line_no"].to_list() == [3]
    assert result.rejected.select("line_no", "check").rows() == [(2, "greater_than")]


def test_the_same_date_for_two_symbols_of_one_file_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "MIXED.csv"
    path.write_text(STANDARD_HEADER + "\nAAA,2024-06-03,10,12,9,11,11,1\nBBB,2024-06-03,10,12,9,11,11,1\n")
    (result,) = _validate(path)
    assert result.accepted["symbol"].to_list() == ["AAA", "BBB"]


@pytest.mark.parametrize("chunk_bytes", [60, 150, 400])
def test_a_duplicate_in_a_later_chunk_of_the_file_is_rejected(tmp_path: Path, chunk_bytes: int) -> None:
    start = dt.date(2024, 1, 1)
    lines = [f"IBM,{start + dt.timedelta(days=i)},10,12,9,11,11,{i}" for i in range(30)]
    lines.append("IBM,2024-01-02,20,22,19,21,21,999")  # repeats line 3
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\n" + "\n".join(lines) + "\n")
    results = _validate(path, chunk_bytes=chunk_bytes)
    assert len(results) > 1
    accepted = pl.concat([r.accepted for r in results])
    rejected = pl.concat([r.rejected for r in results])
    assert accepted.height == 30
    assert accepted.filter(pl.col("trade_date") == dt.date(2024, 1, 2))["volume"].to_list() == [1.0]
    assert rejected.select("line_no", "check").rows() == [(32, "unique_date_per_file")]


def test_files_validated_together_keep_their_own_duplicates_and_rejections(tmp_path: Path) -> None:
    a, b = tmp_path / "A.csv", tmp_path / "B.csv"
    a.write_text(STANDARD_HEADER + "\nX,2024-06-03,10,12,9,11,11,1\nX,2024-06-04,10,12,9,-1,11,1\n")
    b.write_text(STANDARD_HEADER + "\nX,2024-06-03,10,12,9,11,11,1\nX,2024-06-03,10,12,9,11,11,2\n")
    raws = [raw for path in (a, b) for raw in CsvFileReader(path, path.name).raw_chunks()]
    ra, rb = validate_chunks(type_chunks(raws), today=TODAY)
    # The same symbol and date in two files is not a duplicate within a file.
    assert ra.accepted["line_no"].to_list() == [2]
    assert ra.rejected.select("line_no", "check").rows() == [(3, "greater_than")]
    assert rb.accepted["line_no"].to_list() == [2]
    assert rb.rejected.select("line_no", "check").rows() == [(3, "unique_date_per_file")]


def test_rows_read_is_accepted_plus_rejected(tmp_path: Path) -> None:
    lines = [line for line, *_ in RULES.values()]
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\n" + GOOD_BEFORE + "\n\n" + "\n".join(lines) + "\n" + GOOD_AFTER + "\n")
    (result,) = _validate(path)
    assert result.rows_read == len(lines) + 2  # the blank line is no row
    assert result.accepted.height == 2
    assert result.rejected.height == len(lines)
    assert result.rejected["line_no"].is_sorted()


@pytest.mark.parametrize(
    ("line", "score"),
    [
        ("IBM,2024-06-04,10,12,9,11,11,100", 100),
        ("IBM,2024-06-04,10,12,9,11,11,0", 95),
        ("IBM,2024-06-04,,12,9,11,11,100", 90),
        ("IBM,2024-06-04,,,,11,,", 50),
    ],
    ids=["complete", "zero-volume", "no-open", "close-only"],
)
def test_quality_score_marks_down_missing_fields(tmp_path: Path, line: str, score: int) -> None:
    path = tmp_path / "IBM.csv"
    path.write_text(STANDARD_HEADER + "\n" + line + "\n")
    (result,) = _validate(path)
    assert result.accepted["quality_score"].to_list() == [score]


def test_a_duplicate_in_another_chunk_of_a_file_validated_in_one_batch_is_rejected(tmp_path: Path) -> None:
    # A last line without its newline is a chunk of its own; validated with its file's other chunks (and another
    # file), the date it repeats must still make it a duplicate, or it overwrites the earlier line's row.
    a, b = tmp_path / "A.csv", tmp_path / "B.csv"
    a.write_text(
        STANDARD_HEADER + "\nX,2024-06-03,10,12,9,11,11,1\nX,2024-06-04,10,12,9,11,11,1\nX,2024-06-03,10,12,9,11,11,2"
    )
    b.write_text(STANDARD_HEADER + "\nX,2024-06-03,10,12,9,11,11,1\n")
    raws = {path: list(CsvFileReader(path, path.name).raw_chunks()) for path in (a, b)}
    assert len(raws[a]) == 2
    results = validate_chunks(type_chunks(raws[a] + raws[b]), today=TODAY, files=[0, 0, 1])
    assert [r.accepted["line_no"].to_list() for r in results] == [[2, 3], [], [2]]
    assert results[1].rejected.select("line_no", "check").rows() == [(4, "unique_date_per_file")]
