"""Loading invariants on real PostgreSQL (COPY paths) and SQLite (generic path): accounting, idempotence, priority,
and atomicity of a file that fails mid-load."""

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core import loading
from mytrader_pipeline.core.accounting import accounting_issues
from mytrader_pipeline.core.db import (
    ensure_schema,
    file_imports,
    historical_market_data,
    is_postgres,
    make_engine,
    rejected_rows,
)
from mytrader_pipeline.core.errors import ErrorClass, classify
from mytrader_pipeline.core.formats import BIST_COLUMNS, STANDARD_COLUMNS
from mytrader_pipeline.core.loading import FileTarget, LoadOutcome, Warehouse
from mytrader_pipeline.core.parsing import CsvFileReader, FileMeta, type_chunks
from mytrader_pipeline.core.validation import ValidatedChunk, validate_chunks
from mytrader_pipeline.markets import Market, load_markets

TODAY = dt.date(2024, 6, 28)
NYSE = load_markets().get("NYSE")  # source priority 5
BIST = load_markets().get("BIST")
HEADER = ",".join(STANDARD_COLUMNS)
DIRTY_LINES = [
    "IBM,2024-06-03,10,12,9,11,11,100",
    "IBM,2024-06-04,-1,12,9,11,11,100",  # rejected: price <= 0
    "IBM,2024-06-05,10,12,9,11,11,100",
    "",  # blank: not a row
    "IBM,2024-06-05,10,12,9,11,11,999",  # rejected: duplicate date
    "IBM,2024-06-06,10,x,9,11,11,100",  # rejected: not a number
    "IBM,2024-06-07,10,12,9,11,11,100",
    "IBM,2024-07-01,10,12,9,11,11,100",  # rejected: future
    "IBM,2024-06-10,10,12",  # rejected: truncated last line
]


def _write(root: Path, market: Market, name: str, lines: list[str], header: str = HEADER) -> Path:
    path = root / market.folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(lines))
    return path


def _days(symbol: str, first: dt.date, count: int, close: float = 11.0) -> list[str]:
    return [f"{symbol},{first + dt.timedelta(days=i)},10,{close + 1},9,{close},{close},{100 + i}" for i in range(count)]


def _validated(path: Path, shown: str, chunk_bytes: int | None = None) -> tuple[Iterator[ValidatedChunk], FileMeta]:
    reader = CsvFileReader(path, shown, chunk_bytes=chunk_bytes or 1 << 20)

    def chunks() -> Iterator[ValidatedChunk]:
        seen: pl.DataFrame | None = None
        for raw in reader.raw_chunks():
            (result,) = validate_chunks(type_chunks([raw]), today=TODAY, seen_keys=[seen])
            keys = result.accepted.select("symbol", "trade_date")
            seen = keys if seen is None else pl.concat([seen, keys])
            yield result

    return chunks(), reader.meta


def _load(
    engine: sa.Engine, market: Market, path: Path, run_id: str = "run-1", chunk_bytes: int | None = None
) -> tuple[LoadOutcome, FileTarget]:
    source_file = f"{market.folder}/{path.name}"
    target = FileTarget(market, path.name, source_file, run_id)
    chunks, meta = _validated(path, source_file, chunk_bytes)
    return Warehouse(engine).load_file(target, meta, chunks, dt.datetime.now(dt.UTC)), target


def _table(engine: sa.Engine) -> list[tuple[Any, ...]]:
    t = historical_market_data
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c.market, t.c.symbol, t.c.trade_date))]


def _rows_of(engine: sa.Engine, source_file: str) -> list[dict[str, Any]]:
    t = historical_market_data
    query = sa.select(t).where(t.c.source_file == source_file).order_by(t.c.trade_date)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _count(engine: sa.Engine, table: sa.Table, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def _audit(engine: sa.Engine, source_file: str) -> list[dict[str, Any]]:
    query = sa.select(file_imports).where(file_imports.c.source_file == source_file).order_by(file_imports.c.id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


class _RecordingWriter(loading.PostgresWriter):
    """The real PostgreSQL writer, noting the path each chunk of rows took: direct COPY, or stage for the upsert."""

    paths: list[str] = []  # noqa: RUF012 (replaced per test by the fixture)

    def write_rows(self, frame: pl.DataFrame) -> int:
        written = super().write_rows(frame)
        type(self).paths.append("staged" if self.staged else "copy")
        return written


@pytest.fixture
def pg_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths taken by PostgreSQL writes in this test, in order (stays empty on SQLite)."""
    paths: list[str] = []
    monkeypatch.setattr(_RecordingWriter, "paths", paths)
    monkeypatch.setattr(loading, "PostgresWriter", _RecordingWriter)
    return paths


# -- accounting --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [800, 2], ids=["one-batch", "many-batches"])
def test_rows_read_equal_rows_loaded_plus_rows_rejected(
    any_engine: sa.Engine, data_root: Path, batch_size: int
) -> None:
    market = dataclasses.replace(NYSE, batch_size=batch_size)
    path = _write(data_root, market, "IBM.csv", DIRTY_LINES)
    outcome, target = _load(any_engine, market, path)
    assert (outcome.rows_read, outcome.rows_loaded, outcome.rows_rejected) == (8, 3, 5)
    assert outcome.rows_written == 3
    (audit,) = _audit(any_engine, target.source_file)
    assert audit["status"] == "succeeded"
    assert (audit["rows_read"], audit["rows_loaded"], audit["rows_rejected"]) == (8, 3, 5)
    assert audit["rows_read"] == audit["rows_loaded"] + audit["rows_rejected"]
    assert audit["fingerprint"] and audit["size_bytes"] == path.stat().st_size
    assert (audit["date_min"], audit["date_max"]) == (dt.date(2024, 6, 3), dt.date(2024, 6, 7))
    assert _count(any_engine, rejected_rows, rejected_rows.c.file_import_id == audit["id"]) == 5
    assert _count(any_engine, historical_market_data, historical_market_data.c.source_file == "NYSE/IBM.csv") == 3
    assert accounting_issues(any_engine, "run-1") == []


def test_rejected_rows_carry_line_column_check_reason_and_raw_line(any_engine: sa.Engine, data_root: Path) -> None:
    path = _write(data_root, NYSE, "IBM.csv", DIRTY_LINES)
    outcome, _ = _load(any_engine, NYSE, path)
    t = rejected_rows.c
    query = sa.select(t.line_number, t.column_name, t.check_name, t.reason, t.raw_line, t.market, t.source_file)
    with any_engine.connect() as conn:
        rows = conn.execute(query.order_by(t.line_number)).all()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (3, "open", "greater_than"),
        (6, "trade_date", "unique_date_per_file"),
        (7, "EnYuksek", "numeric"),
        (9, "trade_date", "less_than_or_equal_to"),
        (10, None, "field_count"),
    ]
    assert [r[4] for r in rows] == [DIRTY_LINES[n - 2] for n in (3, 6, 7, 9, 10)]
    assert rows[4][3] == "expected 8 fields, found 4"
    assert all(r[5] == "NYSE" and r[6] == "NYSE/IBM.csv" for r in rows)
    assert outcome.quality_score == pytest.approx(300 / 8)  # rejected rows count as 0


def test_bist_extras_and_turkish_text_are_stored(any_engine: sa.Engine, data_root: Path) -> None:
    cells = dict.fromkeys(BIST_COLUMNS, "2")
    cells |= {"HisseKodu": "THYAO", "Tarih": "03.06.2024", "AcilisFiyati": "10", "EnDusuk": "9", "EnYuksek": "12"}
    cells |= {"HG_KAPANIS": "11", "DuzeltilmisKapanis": "10.5", "Hacim": "5", "END_ENDEKS_KODU": "XUSİN"}
    cells |= {"END_DEGER": "9876.5", "DD_DEGER": "32.1", "PD": "1500000"}
    path = data_root / "BIST" / "THYAO.csv"
    path.write_bytes((",".join(BIST_COLUMNS) + "\n" + ",".join(cells[c] for c in BIST_COLUMNS) + "\n").encode("cp1254"))
    _load(any_engine, BIST, path)
    (row,) = _rows_of(any_engine, "BIST/THYAO.csv")
    assert (row["market"], row["symbol"], row["trade_date"], row["currency"]) == (
        "BIST",
        "THYAO",
        dt.date(2024, 6, 3),
        "TRY",
    )
    assert (row["close"], row["adj_close"], row["source_priority"], row["source_line"]) == (11.0, 10.5, 1, 2)
    assert (row["index_code"], row["index_value"], row["usd_try"], row["market_cap"]) == ("XUSİN", 9876.5, 32.1, 1.5e6)
    (audit,) = _audit(any_engine, "BIST/THYAO.csv")
    assert (audit["file_format"], audit["encoding"]) == ("bist", "cp1254")


# -- idempotence ---------------------------------------------------------------------------------------------------
def test_loading_the_same_file_again_changes_nothing(any_engine: sa.Engine, data_root: Path) -> None:
    path = _write(data_root, NYSE, "IBM.csv", DIRTY_LINES)
    _write(data_root, NYSE, "KO.csv", _days("KO", dt.date(2024, 5, 1), 20))
    first, _ = _load(any_engine, NYSE, path, run_id="run-1")
    _load(any_engine, NYSE, data_root / "NYSE" / "KO.csv", run_id="run-1")
    before = _table(any_engine)

    again, _ = _load(any_engine, NYSE, path, run_id="run-2")

    assert again.rows_written == 0
    assert (again.rows_read, again.rows_loaded, again.rows_rejected) == (first.rows_read, 3, 5)
    assert _table(any_engine) == before  # not even ingested_at or run_id moved
    assert _count(any_engine, rejected_rows, rejected_rows.c.source_file == "NYSE/IBM.csv") == 5
    audits = _audit(any_engine, "NYSE/IBM.csv")
    assert [(a["status"], a["run_id"], a["rows_written"]) for a in audits] == [
        ("succeeded", "run-1", 3),
        ("succeeded", "run-2", 0),
    ]
    assert {r.file_import_id for r in _rejected(any_engine)} == {audits[1]["id"]}
    assert accounting_issues(any_engine, "run-2") == []


def _rejected(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(rejected_rows)).all()


def test_a_file_with_a_corrected_row_updates_only_that_row(any_engine: sa.Engine, data_root: Path) -> None:
    lines = _days("IBM", dt.date(2024, 6, 3), 5)
    path = _write(data_root, NYSE, "IBM.csv", lines)
    _load(any_engine, NYSE, path)
    before = {r["trade_date"]: r for r in _rows_of(any_engine, "NYSE/IBM.csv")}
    lines[2] = "IBM,2024-06-05,10,13,9,12.5,12.5,777"
    path.write_text(HEADER + "\n" + "\n".join(lines))
    outcome, _ = _load(any_engine, NYSE, path, run_id="run-2")
    after = {r["trade_date"]: r for r in _rows_of(any_engine, "NYSE/IBM.csv")}
    assert outcome.rows_written == 1
    assert (after[dt.date(2024, 6, 5)]["close"], after[dt.date(2024, 6, 5)]["run_id"]) == (12.5, "run-2")
    assert {d: r for d, r in after.items() if d != dt.date(2024, 6, 5)} == {
        d: r for d, r in before.items() if d != dt.date(2024, 6, 5)
    }


# -- source priority -----------------------------------------------------------------------------------------------
HIGH = dataclasses.replace(NYSE, source_priority=1)  # lower number wins
LOW = dataclasses.replace(NYSE, source_priority=5)


def _closes(engine: sa.Engine) -> list[tuple[dt.date, float, int, str]]:
    t = historical_market_data.c
    query = sa.select(t.trade_date, t.close, t.source_priority, t.source_file).where(t.symbol == "IBM")
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query.order_by(t.trade_date))]


@pytest.mark.parametrize("chunk_bytes", [None, 90], ids=["one-chunk", "many-chunks"])
def test_a_higher_priority_source_overwrites_a_lower_one(
    any_engine: sa.Engine, data_root: Path, chunk_bytes: int | None
) -> None:
    low = _write(data_root, NYSE, "IBM_low.csv", _days("IBM", dt.date(2024, 6, 3), 3, close=11.0))
    high = _write(data_root, NYSE, "IBM_high.csv", _days("IBM", dt.date(2024, 6, 4), 3, close=21.0))
    _load(any_engine, LOW, low, chunk_bytes=chunk_bytes)
    outcome, _ = _load(any_engine, HIGH, high, chunk_bytes=chunk_bytes)
    assert outcome.rows_written == 3  # two overwritten, one new
    assert _closes(any_engine) == [
        (dt.date(2024, 6, 3), 11.0, 5, "NYSE/IBM_low.csv"),
        (dt.date(2024, 6, 4), 21.0, 1, "NYSE/IBM_high.csv"),
        (dt.date(2024, 6, 5), 21.0, 1, "NYSE/IBM_high.csv"),
        (dt.date(2024, 6, 6), 21.0, 1, "NYSE/IBM_high.csv"),
    ]


@pytest.mark.parametrize("chunk_bytes", [None, 90], ids=["one-chunk", "many-chunks"])
def test_a_lower_priority_source_never_overwrites_a_higher_one(
    any_engine: sa.Engine, data_root: Path, chunk_bytes: int | None
) -> None:
    high = _write(data_root, NYSE, "IBM_high.csv", _days("IBM", dt.date(2024, 6, 3), 3, close=21.0))
    low = _write(data_root, NYSE, "IBM_low.csv", _days("IBM", dt.date(2024, 6, 4), 3, close=11.0))
    _load(any_engine, HIGH, high, chunk_bytes=chunk_bytes)
    outcome, _ = _load(any_engine, LOW, low, chunk_bytes=chunk_bytes)
    assert (outcome.rows_loaded, outcome.rows_written) == (3, 1)  # only the date the high source lacks
    assert _closes(any_engine) == [
        (dt.date(2024, 6, 3), 21.0, 1, "NYSE/IBM_high.csv"),
        (dt.date(2024, 6, 4), 21.0, 1, "NYSE/IBM_high.csv"),
        (dt.date(2024, 6, 5), 21.0, 1, "NYSE/IBM_high.csv"),
        (dt.date(2024, 6, 6), 11.0, 5, "NYSE/IBM_low.csv"),
    ]


def test_the_same_priority_with_corrected_values_updates(any_engine: sa.Engine, data_root: Path) -> None:
    first = _write(data_root, NYSE, "IBM_a.csv", _days("IBM", dt.date(2024, 6, 3), 2, close=11.0))
    corrected = _write(data_root, NYSE, "IBM_b.csv", _days("IBM", dt.date(2024, 6, 3), 2, close=11.5))
    same = _write(data_root, NYSE, "IBM_c.csv", _days("IBM", dt.date(2024, 6, 3), 2, close=11.5))
    _load(any_engine, LOW, first)
    assert _load(any_engine, LOW, corrected)[0].rows_written == 2
    assert [c[1:] for c in _closes(any_engine)] == [(11.5, 5, "NYSE/IBM_b.csv")] * 2
    assert _load(any_engine, LOW, same)[0].rows_written == 0  # same values from the same priority: untouched
    assert [c[3] for c in _closes(any_engine)] == ["NYSE/IBM_b.csv"] * 2


# -- atomicity -----------------------------------------------------------------------------------------------------
class _Crash(RuntimeError):
    pass


def _crashing(chunks: Iterator[ValidatedChunk]) -> Iterator[ValidatedChunk]:
    """The file's first chunk, then a failure, as if the process lost its disk or its database mid-file."""
    yield next(chunks)
    raise _Crash("disk read failed mid-file")


def _fail_mid_load(engine: sa.Engine, market: Market, path: Path) -> FileTarget:
    source_file = f"{market.folder}/{path.name}"
    target = FileTarget(market, path.name, source_file, "run-crash")
    chunks, meta = _validated(path, source_file, chunk_bytes=120)
    started = dt.datetime.now(dt.UTC)
    with pytest.raises(_Crash) as info:
        Warehouse(engine).load_file(target, meta, _crashing(chunks), started)
    assert _rows_of(engine, source_file) == []
    assert _count(engine, rejected_rows, rejected_rows.c.source_file == source_file) == 0
    assert _audit(engine, source_file) == []
    Warehouse(engine).record_failure(target, meta, classify(info.value), started)
    return target


def _crash_lines() -> list[str]:
    lines = _days("IBM", dt.date(2024, 5, 1), 30, close=31.0)
    lines[1] = "IBM,2024-05-02,-1,12,9,11,11,100"  # a rejection in the first chunk
    return lines


def test_a_file_that_fails_mid_load_leaves_nothing_of_it(
    any_engine: sa.Engine, data_root: Path, pg_paths: list[str]
) -> None:
    path = _write(data_root, NYSE, "IBM.csv", _crash_lines())
    target = _fail_mid_load(any_engine, NYSE, path)
    if is_postgres(any_engine):
        assert pg_paths == ["copy"]  # a symbol new to the warehouse: COPY straight into the table, then the crash
    assert _table(any_engine) == []
    (audit,) = _audit(any_engine, target.source_file)
    assert (audit["status"], audit["error_class"], audit["run_id"]) == (
        "failed",
        ErrorClass.UNEXPECTED.value,
        "run-crash",
    )
    assert "disk read failed mid-file" in audit["error_message"]
    assert audit["fingerprint"] is None or len(audit["fingerprint"]) == 64
    assert _count(any_engine, rejected_rows) == 0


def test_a_failed_reload_of_a_present_symbol_leaves_the_table_as_it_was(
    any_engine: sa.Engine, data_root: Path, pg_paths: list[str]
) -> None:
    _load(any_engine, NYSE, _write(data_root, NYSE, "IBM_old.csv", _days("IBM", dt.date(2024, 5, 1), 10)))
    before = _table(any_engine)
    rejected_before = _count(any_engine, rejected_rows)
    pg_paths.clear()
    target = _fail_mid_load(any_engine, HIGH, _write(data_root, NYSE, "IBM.csv", _crash_lines()))
    if is_postgres(any_engine):
        assert pg_paths == ["staged"]  # a symbol already present: staged for the upsert, then the crash
    assert _table(any_engine) == before
    assert _count(any_engine, rejected_rows) == rejected_before
    assert [a["status"] for a in _audit(any_engine, target.source_file)] == ["failed"]


def test_a_failed_reload_keeps_the_files_earlier_load(any_engine: sa.Engine, data_root: Path) -> None:
    path = _write(data_root, NYSE, "IBM.csv", DIRTY_LINES)
    _load(any_engine, NYSE, path)
    before, rejected_before = _table(any_engine), _count(any_engine, rejected_rows)
    path.write_text(HEADER + "\n" + "\n".join(_crash_lines()))
    source_file = "NYSE/IBM.csv"
    chunks, meta = _validated(path, source_file, chunk_bytes=120)
    with pytest.raises(_Crash):
        Warehouse(any_engine).load_file(
            FileTarget(NYSE, "IBM.csv", source_file, "run-2"), meta, _crashing(chunks), dt.datetime.now(dt.UTC)
        )
    assert _table(any_engine) == before
    assert _count(any_engine, rejected_rows) == rejected_before == 5  # the earlier load's rejections survive


# -- the two PostgreSQL paths --------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_takes_copy_for_new_symbols_and_the_staged_upsert_for_present_ones(
    pg_engine: sa.Engine, data_root: Path, pg_paths: list[str]
) -> None:
    fresh = _write(data_root, NYSE, "IBM.csv", _days("IBM", dt.date(2024, 5, 1), 30))
    outcome, _ = _load(pg_engine, NYSE, fresh, chunk_bytes=200)
    assert (outcome.rows_loaded, outcome.rows_written) == (30, 30)
    assert len(pg_paths) > 1 and set(pg_paths) == {"copy"}  # every chunk COPYed straight into the table
    pg_paths.clear()
    overlap = _write(data_root, NYSE, "IBM_fix.csv", _days("IBM", dt.date(2024, 5, 25), 10, close=15.0))
    outcome, _ = _load(pg_engine, HIGH, overlap, chunk_bytes=200)
    assert len(pg_paths) > 1 and set(pg_paths) == {"staged"}
    assert (outcome.rows_loaded, outcome.rows_written) == (10, 10)  # 6 updated, 4 inserted, one upsert
    rows = _closes(pg_engine)
    assert len(rows) == 34
    assert {r[1] for r in rows if r[0] >= dt.date(2024, 5, 25)} == {15.0}
    assert {r[1] for r in rows if r[0] < dt.date(2024, 5, 25)} == {11.0}


def test_binary_copy_in_slices_stores_what_the_generic_path_stores(
    pg_engine: sa.Engine, sqlite_engine: sa.Engine, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "_COPY_SLICE_ROWS", 7)  # many slices, some with mixed layouts
    lines = [*_days("IBM", dt.date(2024, 1, 1), 40), "IBM,2024-03-01,10,12,9,11,,100", "IBM,2024-03-02,10,12,9,11,11,"]
    path = _write(data_root, NYSE, "IBM.csv", lines)
    for engine in (pg_engine, sqlite_engine):
        outcome, _ = _load(engine, NYSE, path)
        assert (outcome.rows_loaded, outcome.rows_written, outcome.rows_rejected) == (42, 42, 0)

    def comparable(engine: sa.Engine) -> list[tuple[Any, ...]]:  # ingested_at differs between the two loads
        skip = {"ingested_at"}
        columns = [c for c in historical_market_data.columns if c.name not in skip]
        with engine.connect() as conn:
            rows = conn.execute(sa.select(*columns).order_by(historical_market_data.c.trade_date)).all()
        return [tuple(r) for r in rows]

    assert comparable(pg_engine) == comparable(sqlite_engine)


def test_sqlite_executemany_path_stores_byte_for_byte_what_sqlalchemy_stores(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = dt.datetime(2024, 6, 28, 12, 30, 45, 123456, tzinfo=dt.UTC)
    monkeypatch.setattr(loading, "utc_now", lambda: at)  # one ingested_at for both loads
    lines = [*_days("IBM", dt.date(2024, 1, 1), 30), "IBM,2024-03-01,10,12,9,11,,100", "IBM,2024-03-02,10,12,9,11,11,"]
    path = _write(data_root, NYSE, "IBM.csv", lines)
    raw: dict[str, list[tuple[Any, ...]]] = {}
    for name in ("executemany", "sqlalchemy"):
        if name == "sqlalchemy":
            monkeypatch.setattr(loading, "_SqliteWriter", loading._GenericWriter)
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        ensure_schema(engine)
        outcome, _ = _load(engine, NYSE, path)
        assert (outcome.rows_loaded, outcome.rows_written) == (32, 32)
        assert _load(engine, NYSE, path)[0].rows_written == 0  # the upsert rule: an identical reload writes nothing
        with engine.connect() as conn:  # the stored values and their SQLite types, as sqlite3 returns them
            raw[name] = [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT *, typeof(trade_date), typeof(ingested_at), typeof(volume) FROM historical_market_data"
                    " ORDER BY trade_date"
                )
            ]
        engine.dispose()
    assert raw["executemany"] == raw["sqlalchemy"]
    assert len(raw["executemany"]) == 32
