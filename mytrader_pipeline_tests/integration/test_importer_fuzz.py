"""Fuzzing the importer with mutated valid files of every format: it never crashes nor lets an exception escape,
every file gets a result and an audit row, rows read = loaded + rejected, every untouched line of a loaded file is
loaded with its exact values, and nothing of a failed file stays in the warehouse."""

import dataclasses
import datetime as dt
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from mytrader_pipeline.core.accounting import accounting_issues
from mytrader_pipeline.core.db import file_imports, historical_market_data, rejected_rows
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.formats import BIST_EXTRA_NUMERIC, BIST_EXTRA_TEXT, FORMATS, PRICE_COLUMNS, FileFormat
from mytrader_pipeline.core.importer import ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.core.parsing import DEFAULT_CHUNK_BYTES
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.sampledata import TURKISH_INDEX_CODE
from mytrader_pipeline_tests.integration.test_importer_isolation import TODAY, valid_file

BIST = load_markets().get("BIST")
# Symbols that differ in every letter, so no few mutations turn one file's symbol into another's.
SYMBOLS = ("AKBNK", "GARAN", "THYAO", "SISEC", "ULKER")
# Failures hostile input may cause. A bug (unexpected, library_panic) or a refusal by the database is a finding.
FILE_FAILURES = {"unknown_format", "undecodable", "empty_file", "all_rows_rejected", "ambiguous_dates"}


@dataclasses.dataclass(frozen=True)
class Kind:
    """A valid file's layout and dialect (the sample generator's file defects that keep it valid, and CRLF)."""

    format: FileFormat
    dialect: tuple[str, ...] = ()
    index_code: str = "XU100"

    @property
    def encoding(self) -> str:
        return "cp1254" if "cp1254" in self.dialect else "utf-8"

    @property
    def delimiter(self) -> str:
        return ";" if "semicolon_decimal_comma" in self.dialect else ","

    @property
    def date_format(self) -> str:
        return "%d.%m.%Y" if "date_format" in self.dialect else "%Y-%m-%d"


KINDS = (
    Kind(FileFormat.BIST),
    Kind(FileFormat.BIST, ("semicolon_decimal_comma", "date_format")),
    Kind(FileFormat.BIST, ("cp1254",), TURKISH_INDEX_CODE),
    Kind(FileFormat.BIST, ("bom",), TURKISH_INDEX_CODE),
    Kind(FileFormat.STANDARD),
    Kind(FileFormat.STANDARD, ("semicolon_decimal_comma",)),
    Kind(FileFormat.STANDARD, ("date_format", "bom")),
    Kind(FileFormat.STANDARD, ("crlf",)),
    Kind(FileFormat.STANDARD_NO_SYMBOL),
)
TOKENS = (b",", b";", b'"', b'""', b'"x,y"', b"\n", b"\r", b"\r\n", b" ")


@dataclasses.dataclass
class Line:
    """A physical line of a mutated file; ``origin`` is the original data line it still is, untouched."""

    data: bytes
    origin: int | None


@dataclasses.dataclass
class FuzzFile:
    """A valid file, its original data lines, and its lines after mutation."""

    name: str
    kind: Kind
    original: list[str]
    lines: list[Line]
    encoding: str
    mutations: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, kind: Kind, symbol: str, days: int) -> "FuzzFile":
        data = valid_file(kind.format, symbol, days, dialect=kind.dialect, index_code=kind.index_code)
        if "crlf" in kind.dialect:
            data = data.replace(b"\n", b"\r\n")
        physical = data.split(b"\n")  # the last element is what follows the last newline ("" when it ends one)
        original = [line.decode(kind.encoding) for line in physical[1:-1]]
        lines = [Line(physical[0], None)] + [Line(line, i) for i, line in enumerate(physical[1:-1])] + [Line(b"", None)]
        return cls(f"{symbol}.csv", kind, original, lines, kind.encoding)

    def data(self) -> bytes:
        return b"\n".join(line.data for line in self.lines)

    # -- mutations: each takes three numbers the strategy drew and says what it did -----------------------------
    def _replace(self, i: int, data: bytes) -> None:
        if data != self.lines[i].data:
            self.lines[i : i + 1] = [Line(part, None) for part in data.split(b"\n")]

    def flip(self, a: int, b: int, c: int) -> str:
        i = a % len(self.lines)
        line = self.lines[i].data
        pos = b % max(len(line), 1)
        self._replace(i, line[:pos] + bytes([c % 256]) + line[pos + 1 :])
        return f"flip line {i + 1} byte {pos} to {c % 256:#04x}"

    def insert(self, a: int, b: int, c: int) -> str:
        i = a % len(self.lines)
        line = self.lines[i].data
        pos = b % (len(line) + 1)
        token = TOKENS[c % len(TOKENS)]
        self._replace(i, line[:pos] + token + line[pos:])
        return f"insert {token!r} in line {i + 1} at {pos}"

    def truncate(self, a: int, b: int, c: int) -> str:
        size = len(self.data())
        cut = a % (size + 1)
        kept: list[Line] = []
        offset = 0
        for line in self.lines:
            end = offset + len(line.data)
            if end <= cut:
                kept.append(line)
            else:
                kept.append(Line(line.data[: cut - offset], None))
                break
            offset = end + 1
        self.lines = kept
        return f"truncate at byte {cut} of {size}"

    def encode(self, a: int, b: int, c: int) -> str:
        target = ("latin-1", "cp1254", "utf-16")[c % 3]
        if target == "utf-16":
            text = self.data().decode(self.encoding, errors="replace")
            self.lines = [Line(part, None) for part in text.encode("utf-16").split(b"\n")]
        else:
            for line in self.lines:
                data = line.data.decode(self.encoding, errors="replace").encode(target, errors="replace")
                if data != line.data:
                    line.data, line.origin = data, None
        self.encoding = target
        return f"re-encode as {target}"

    def duplicate(self, a: int, b: int, c: int) -> str:
        src, dst = a % len(self.lines), b % (len(self.lines) + 1)
        self.lines.insert(dst, Line(self.lines[src].data, None))
        return f"copy line {src + 1} to line {dst + 1}"

    def reorder(self, a: int, b: int, c: int) -> str:
        i, j = a % len(self.lines), b % len(self.lines)
        self.lines[i], self.lines[j] = self.lines[j], self.lines[i]
        return f"swap lines {i + 1} and {j + 1}"

    # -- what an untouched line must load as ---------------------------------------------------------------------
    def expected(self, origin: int) -> dict[str, Any]:
        spec = FORMATS[self.kind.format]
        cells = dict(zip(spec.columns, self.original[origin].rstrip("\r").split(self.kind.delimiter), strict=True))

        def number(text: str) -> float:
            if "semicolon_decimal_comma" in self.kind.dialect:
                text = text.replace(".", "").replace(",", ".")
            return float(text)

        values: dict[str, Any] = {
            "symbol": cells[spec.symbol] if spec.symbol else Path(self.name).stem,
            "trade_date": dt.datetime.strptime(cells[spec.date], self.kind.date_format).date(),
        }
        values |= {name: number(cells[src]) for name, src in {**spec.prices, **spec.numeric_extras}.items()}
        values |= {name: cells[src] for name, src in spec.text_extras.items()}
        return values


MUTATIONS: dict[str, Callable[[FuzzFile, int, int, int], str]] = {
    "flip": FuzzFile.flip,
    "insert": FuzzFile.insert,
    "truncate": FuzzFile.truncate,
    "encode": FuzzFile.encode,
    "duplicate": FuzzFile.duplicate,
    "reorder": FuzzFile.reorder,
}
MAX_MUTATIONS = 3
NUMBER = st.integers(0, 2**16)
MUTATION = st.tuples(st.sampled_from(list(MUTATIONS)), NUMBER, NUMBER, NUMBER)


@st.composite
def market_folders(draw: st.DrawFn) -> list[FuzzFile]:
    """One to four valid files of random kinds and lengths, each mutated zero to three times."""
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    files = []
    for symbol, kind in zip(SYMBOLS, kinds, strict=False):
        file = FuzzFile.of(kind, symbol, draw(st.integers(1, 25)))
        for name, a, b, c in draw(st.lists(MUTATION, max_size=MAX_MUTATIONS)):
            file.mutations.append(MUTATIONS[name](file, a, b, c))
        files.append(file)
    return files


def _select(engine: sa.Engine, query: sa.Select[Any]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in (historical_market_data, rejected_rows, file_imports):
            conn.execute(sa.delete(table))


VALUE_COLUMNS = ("symbol", "trade_date", *PRICE_COLUMNS, *BIST_EXTRA_TEXT, *BIST_EXTRA_NUMERIC)


def check_import(engine: sa.Engine, files: list[FuzzFile], chunk_bytes: int) -> None:
    """Import ``files`` as one market folder and check every property; ``engine`` is emptied first."""
    _clear(engine)
    run_id = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / BIST.folder
        folder.mkdir()
        for file in files:
            (folder / file.name).write_bytes(file.data())
        options = ImportOptions(today=TODAY, chunk_bytes=chunk_bytes, concurrency=2)
        results = MarketImporter(Warehouse(engine), BIST, run_id, options).run(scan_market(Path(tmp), BIST))

    by_name = {r.file.partition_key: r for r in results}
    assert sorted(by_name) == sorted(f.name for f in files)  # every file has its result
    audits = {a["partition_key"]: a for a in _select(engine, sa.select(file_imports))}
    assert sorted(audits) == sorted(by_name)  # ... and its audit row
    rows = _select(engine, sa.select(historical_market_data))
    rejections = _select(engine, sa.select(rejected_rows))
    for file in files:
        result, audit, source = by_name[file.name], audits[file.name], f"{BIST.folder}/{file.name}"
        why = f"{file.name} ({file.kind}) after {file.mutations}: {result.error}\n{result.trace or ''}"
        assert result.status in ("succeeded", "failed"), why
        assert audit["status"] == result.status, why
        mine = {r["source_line"]: r for r in rows if r["source_file"] == source}
        rejected = {r["line_number"]: r for r in rejections if r["source_file"] == source}
        if result.status == "failed":
            assert result.error is not None and result.error.error_class.value in FILE_FAILURES, why
            assert audit["error_class"] == result.error.error_class.value, why
            assert not mine and not rejected, why  # nothing of a failed file stays
            continue
        assert result.outcome is not None
        outcome = result.outcome
        assert outcome.rows_read == outcome.rows_loaded + outcome.rows_rejected, why
        assert (audit["rows_read"], audit["rows_loaded"], audit["rows_rejected"]) == (
            outcome.rows_read,
            outcome.rows_loaded,
            outcome.rows_rejected,
        ), why
        assert (len(mine), len(rejected)) == (outcome.rows_loaded, outcome.rows_rejected), why
        if not file.mutations:
            assert (outcome.rows_loaded, outcome.rows_rejected) == (len(file.original), 0), why
        for index, line in enumerate(file.lines):
            if line.origin is None or index == 0:
                continue
            line_no = index + 1
            expected = file.expected(line.origin)
            if line_no in mine:
                got = {c: mine[line_no][c] for c in VALUE_COLUMNS if c in expected}
                assert got == expected, f"line {line_no}: {why}"
            else:  # only an earlier line of the same date, a mutated one, may have taken its place
                assert line_no in rejected, f"line {line_no} neither loaded nor rejected: {why}"
                assert rejected[line_no]["check_name"] == "unique_date_per_file", f"line {line_no}: {why}"
                key = (expected["symbol"], expected["trade_date"])
                assert any((r["symbol"], r["trade_date"]) == key for r in mine.values()), f"line {line_no}: {why}"
    assert accounting_issues(engine, run_id) == []


def found(kind: int, days: int, *mutations: tuple[str, int, int, int]) -> list[FuzzFile]:
    """A folder of one file of ``KINDS[kind]`` with ``mutations`` applied: a case fuzzing found."""
    file = FuzzFile.of(KINDS[kind], SYMBOLS[0], days)
    for name, a, b, c in mutations:
        file.mutations.append(MUTATIONS[name](file, a, b, c))
    return [file]


# Cases the fuzzer found, kept as regression tests: (folder, chunk_bytes).
FOUND = {
    # a copy of line 2 after a blank line, as a last line without its newline: a chunk of its own, whose repeated
    # date was not a duplicate, so it overwrote line 2's row and rows loaded outnumbered the rows in the table
    "duplicate_in_the_last_chunk": (found(0, 4, ("duplicate", 1, 6, 0)), DEFAULT_CHUNK_BYTES),
    # a byte that is not UTF-8 in a later block of a file with a UTF-8 byte-order mark: that block was decoded as
    # Windows-1254, garbling the Turkish text of lines untouched
    "not_utf8_after_a_bom": (found(3, 10, ("flip", 5, 0, 0x80)), 1024),
    # a unit separator (\x1f), the byte lines were split on to be read whole: the whole file failed, unexpected
    "unit_separator_in_a_line": (found(0, 3, ("flip", 1, 0, 0x1F)), DEFAULT_CHUNK_BYTES),
}


@pytest.mark.parametrize("case", list(FOUND))
def test_what_fuzzing_found(any_engine: sa.Engine, case: str) -> None:
    files, chunk_bytes = FOUND[case]
    check_import(any_engine, files, chunk_bytes)


CHUNK_BYTES = st.sampled_from([DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_BYTES, 300, 1024])
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(FUZZ, max_examples=200)
@given(files=market_folders(), chunk_bytes=CHUNK_BYTES)
def test_mutated_files_never_escape_the_importer_on_sqlite(
    sqlite_engine: sa.Engine, files: list[FuzzFile], chunk_bytes: int
) -> None:
    check_import(sqlite_engine, files, chunk_bytes)


@pytest.mark.postgres
@settings(FUZZ, max_examples=60)
@given(files=market_folders(), chunk_bytes=CHUNK_BYTES)
def test_mutated_files_never_escape_the_importer_on_postgresql(
    pg_engine: sa.Engine, files: list[FuzzFile], chunk_bytes: int
) -> None:
    check_import(pg_engine, files, chunk_bytes)
