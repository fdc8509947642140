"""Append-aware loading: a file that only grew loads just its new lines, and the warehouse ends exactly as a full
reload leaves it (rows, the file's rejected rows, its figures), on PostgreSQL and SQLite; anything else loads whole."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.accounting import accounting_issues, file_figures, latest_loads, loaded_states
from mytrader_pipeline.core.db import ensure_schema, file_imports, historical_market_data, make_engine, rejected_rows
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.formats import STANDARD_COLUMNS
from mytrader_pipeline.core.importer import ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.core.rejects import list_rejected_rows
from mytrader_pipeline.core.retention import purge_audit
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.conftest import PG_ADMIN_URL

TODAY = dt.date(2024, 6, 28)
NASDAQ = load_markets().get("NASDAQ")
HEADER = ",".join(STANDARD_COLUMNS)
NAME = "MSFT.csv"
SOURCE = f"{NASDAQ.folder}/{NAME}"


def day(n: int, symbol: str = "MSFT", close: str = "11") -> str:
    """A good row for the n-th day after 2024-01-01."""
    return f"{symbol},{dt.date(2024, 1, 1) + dt.timedelta(days=n)},10,12,9,{close},11,{100 + n}"


def text(rows: list[str], *, header: str = HEADER, newline: str = "\n", last_newline: bool = True) -> str:
    return header + newline + newline.join(rows) + (newline if last_newline else "")


BASE = [day(n) for n in range(40)]


def dotted(n: int) -> str:
    """A good row for the n-th day after 2022-09-01, dated dd.MM.yyyy (detected from the file's first lines)."""
    return f"MSFT,{dt.date(2022, 9, 1) + dt.timedelta(days=n):%d.%m.%Y},10,12,9,11,11,{100 + n}"


LONG = [dotted(n) for n in range(600)]  # beyond the lines a full read samples for the date format and decimal mark
BASE_DIRTY = [*BASE[:10], "MSFT,2024-01-11,10,8,9,11,11,100", *BASE[11:20], "MSFT,2024-01-21,1", *BASE[21:]]


@dataclasses.dataclass(frozen=True)
class Case:
    """A file's successive contents, and how its last load must go (append or full)."""

    versions: list[bytes]
    last_mode: str
    pure_append: bool  # every version extends the one before: the result must equal one full load of the last


def utf8(content: str) -> bytes:
    return content.encode()


CASES: dict[str, Case] = {
    "appended": Case([utf8(text(BASE)), utf8(text([*BASE, day(40)]))], "append", True),
    "appended_twice": Case(
        [utf8(text(BASE)), utf8(text([*BASE, day(40)])), utf8(text([*BASE, day(40), day(41), day(42)]))],
        "append",
        True,
    ),
    "appended_to_dirty_history": Case([utf8(text(BASE_DIRTY)), utf8(text([*BASE_DIRTY, day(40)]))], "append", True),
    "appended_with_bad_rows": Case(
        [
            utf8(text(BASE)),
            utf8(text([*BASE, "MSFT,2024-02-10,10,8,9,11,11,100", day(41), "MSFT,2024-02-12,1", "MSFT,x,1,2,1,2,2,2"])),
        ],
        "append",
        True,
    ),
    "appended_with_blank_lines": Case(
        [utf8(text(BASE)), utf8(text([*BASE, "", day(40), "  ", day(41)]))], "append", True
    ),
    "appended_unfinished_line": Case(
        [utf8(text(BASE)), utf8(text([*BASE, day(40), "MSFT,2024-02-11,10"], last_newline=False))], "append", True
    ),
    "appended_after_unfinished_line": Case(
        [utf8(text(BASE, last_newline=False)), utf8(text([*BASE, day(40)]))], "full", True
    ),
    "appended_crlf": Case(
        [utf8(text(BASE, newline="\r\n")), utf8(text([*BASE, day(40), day(41)], newline="\r\n"))], "append", True
    ),
    "appended_duplicate_date": Case([utf8(text(BASE)), utf8(text([*BASE, day(40), day(3, close="12")]))], "full", True),
    "appended_duplicate_within_tail": Case([utf8(text(BASE)), utf8(text([*BASE, day(40), day(40)]))], "append", True),
    "appended_quoted": Case([utf8(text(BASE)), utf8(text([*BASE, '"MSFT",2024-02-10,10,12,9,11,11,1']))], "full", True),
    "appended_other_encoding": Case(
        [utf8(text(BASE)), utf8(text(BASE)) + (day(40) + ",\xfc\n").encode("cp1254")], "full", True
    ),
    "appended_after_future_date": Case(
        [
            utf8(text([*BASE, "MSFT,2030-01-01,10,12,9,11,11,1"])),
            utf8(text([*BASE, "MSFT,2030-01-01,10,12,9,11,11,1", day(40)])),
        ],
        "full",
        True,
    ),
    "long_history_appended_twice": Case(
        [utf8(text(LONG)), utf8(text([*LONG, dotted(600)])), utf8(text([*LONG, dotted(600), dotted(601)]))],
        "append",
        True,
    ),
    "long_history_appended_bad_date": Case(
        [utf8(text(LONG)), utf8(text([*LONG, dotted(600), "MSFT,2024-13-45,10,12,9,11,11,1"]))], "append", True
    ),
    "rewritten_old_row": Case(
        [utf8(text(BASE)), utf8(text([*BASE[:5], day(5, close="11.5"), *BASE[6:], day(40)]))], "full", False
    ),
    "truncated": Case([utf8(text(BASE)), utf8(text(BASE[:30]))], "full", False),
    "truncated_mid_line": Case([utf8(text(BASE)), utf8(text(BASE))[:-7]], "full", False),
    "re_encoded_with_bom": Case([utf8(text(BASE)), ("\ufeff" + text([*BASE, day(40)])).encode()], "full", False),
    "other_header": Case(
        [utf8(text(BASE)), utf8(text([r[5:] for r in [*BASE, day(40)]], header=",".join(STANDARD_COLUMNS[1:])))],
        "full",
        False,
    ),
}


@pytest.fixture(scope="module")
def pg_warehouses(pg_available: None) -> Iterator[list[sa.Engine]]:
    """Three PostgreSQL warehouses for this module's tests (emptied before each test: creating them is slow)."""
    names = [f"mt_test_{uuid.uuid4().hex[:12]}" for _ in range(3)]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    engines = [make_engine(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}") for name in names]
    for engine in engines:
        ensure_schema(engine)
    yield engines
    for engine in engines:
        engine.dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[sa.Engine]]:
    """Three empty warehouses of one kind: the one appended to, and two for the reference loads."""
    if request.param == "postgresql":
        engines = request.getfixturevalue("pg_warehouses")
        for engine in engines:
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE historical_market_data, file_imports, rejected_rows RESTART IDENTITY"))
        yield engines
        return
    engines = [make_engine(f"sqlite:///{tmp_path / f'warehouse{n}.db'}") for n in range(3)]
    for engine in engines:
        ensure_schema(engine)
    yield engines
    for engine in engines:
        engine.dispose()


def load(engine: sa.Engine, root: Path, content: bytes, run_id: str, *, append: bool, chunk_bytes: int) -> None:
    (root / NASDAQ.folder / NAME).write_bytes(content)
    files = scan_market(root, NASDAQ)
    options = ImportOptions(today=TODAY, chunk_bytes=chunk_bytes)
    loaded = loaded_states(engine, NASDAQ.code) if append else None
    (result,) = MarketImporter(Warehouse(engine), NASDAQ, run_id, options).run(files, loaded=loaded)
    assert result.status == "succeeded", result.error
    assert accounting_issues(engine, run_id) == []


def select(engine: sa.Engine, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def state(engine: sa.Engine) -> dict[str, Any]:
    """What a reader of the warehouse sees of the file: its rows, its rejected rows, its current figures."""
    t = historical_market_data
    columns = [c for c in t.columns if c.name not in ("run_id", "ingested_at")]
    r = rejected_rows.c
    figures = file_figures(engine, NASDAQ.code)[SOURCE]
    return {
        "rows": select(engine, sa.select(*columns).order_by(t.c.symbol, t.c.trade_date)),
        "rejected": select(
            engine,
            sa.select(r.line_number, r.column_name, r.check_name, r.reason, r.raw_line).order_by(
                r.line_number, r.check_name
            ),
        ),
        "figures": (figures.rows_read, figures.rows_loaded, figures.rows_rejected, figures.rejected_rate),
    }


@pytest.mark.postgres
@pytest.mark.parametrize("chunk_bytes", [32 * 1024 * 1024, 300], ids=["grouped", "streamed"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_warehouse_ends_as_a_full_reload_leaves_it(
    fresh_engines: list[sa.Engine], data_root: Path, case: str, chunk_bytes: int
) -> None:
    spec = CASES[case]
    engine, reference, fresh = fresh_engines
    for n, content in enumerate(spec.versions):
        load(engine, data_root, content, f"run-{n}", append=True, chunk_bytes=chunk_bytes)
        load(reference, data_root, content, f"run-{n}", append=False, chunk_bytes=chunk_bytes)
    load(fresh, data_root, spec.versions[-1], "run-fresh", append=False, chunk_bytes=chunk_bytes)

    c = file_imports.c
    modes = select(engine, sa.select(c.load_mode, c.extends_import_id, c.id).order_by(c.id))
    assert modes[-1][0] == spec.last_mode
    if spec.last_mode == "append":
        assert modes[-1][1] == modes[-2][2]  # it extends the import before it
    assert state(engine) == state(reference)
    if spec.pure_append:
        assert state(engine) == state(fresh)
    assert loaded_states(engine, NASDAQ.code)[SOURCE].sha256 == loaded_states(fresh, NASDAQ.code)[SOURCE].sha256


def warehouse_state(engine: sa.Engine) -> dict[str, Any]:
    """What a reader of the warehouse sees of every file: rows, rejected rows, each file's current figures."""
    t = historical_market_data
    columns = [c for c in t.columns if c.name not in ("run_id", "ingested_at")]
    r = rejected_rows.c
    return {
        "rows": select(engine, sa.select(*columns).order_by(t.c.symbol, t.c.trade_date)),
        "rejected": select(
            engine,
            sa.select(r.source_file, r.line_number, r.column_name, r.check_name, r.reason, r.raw_line).order_by(
                r.source_file, r.line_number, r.check_name
            ),
        ),
        "figures": {
            source: (f.rows_read, f.rows_loaded, f.rows_rejected, f.rejected_rate)
            for source, f in file_figures(engine, NASDAQ.code).items()
        },
    }


@pytest.mark.postgres
def test_appends_to_many_files_parsed_together_end_as_full_reloads_leave_them(
    fresh_engines: list[sa.Engine], data_root: Path
) -> None:
    """Every case at once, one file each (its own symbol): the new lines of a market's files are parsed in one call
    per layout (``core.parsing.parse_tails``), and each file still ends as its own full reload leaves it."""
    engine, reference, _ = fresh_engines
    symbols = {case: f"S{n:02d}" for n, case in enumerate(CASES)}
    steps = max(len(spec.versions) for spec in CASES.values())
    options = ImportOptions(today=TODAY)
    for step in range(steps):
        for case, spec in CASES.items():
            content = spec.versions[min(step, len(spec.versions) - 1)]
            (data_root / NASDAQ.folder / f"{symbols[case]}.csv").write_bytes(
                content.replace(b"MSFT", symbols[case].encode())
            )
        files = scan_market(data_root, NASDAQ)
        for target, loaded in ((engine, loaded_states(engine, NASDAQ.code)), (reference, None)):
            run_id = f"run-{step}-{uuid.uuid4().hex[:6]}"
            results = MarketImporter(Warehouse(target), NASDAQ, run_id, options).run(files, loaded=loaded)
            assert [r.status for r in results] == ["succeeded"] * len(files), [r.error for r in results if r.error]
            assert accounting_issues(target, run_id) == []
    c = file_imports.c
    modes = dict(select(engine, sa.select(c.source_file, c.load_mode).where(c.run_id.like(f"run-{steps - 1}-%"))))
    appended = {case for case, spec in CASES.items() if spec.last_mode == "append" and len(spec.versions) == steps}
    assert {f"{NASDAQ.folder}/{symbols[case]}.csv" for case in appended} <= {
        s for s, m in modes.items() if m == "append"
    }
    assert warehouse_state(engine) == warehouse_state(reference)


@pytest.mark.postgres
def test_an_append_counts_its_new_lines_and_the_figures_sum_the_chain(pg_engine: sa.Engine, data_root: Path) -> None:
    versions = CASES["appended_with_bad_rows"].versions
    for n, content in enumerate(versions):
        load(pg_engine, data_root, content, f"run-{n}", append=True, chunk_bytes=32 * 1024 * 1024)
    c = file_imports.c
    audit = select(
        pg_engine,
        sa.select(c.load_mode, c.rows_read, c.rows_loaded, c.rows_rejected, c.line_count, c.ends_with_newline).order_by(
            c.id
        ),
    )
    assert audit == [("full", 40, 40, 0, 41, True), ("append", 4, 1, 3, 45, True)]
    figures = file_figures(pg_engine, NASDAQ.code)[SOURCE]
    assert (figures.rows_read, figures.rows_loaded, figures.rows_rejected, figures.loads) == (44, 41, 3, 2)
    lines = select(pg_engine, sa.select(rejected_rows.c.line_number).order_by(rejected_rows.c.line_number))
    assert lines == [(42,), (44,), (45,)]


@pytest.mark.postgres
def test_retention_keeps_the_whole_current_chain_and_nothing_older(pg_engine: sa.Engine, data_root: Path) -> None:
    versions = [*CASES["appended_twice"].versions, utf8(text([*BASE[:5], day(5, close="11.5"), *BASE[6:], day(40)]))]
    c = file_imports.c
    for n, content in enumerate(versions[:3]):
        load(pg_engine, data_root, content, f"run-{n}", append=True, chunk_bytes=32 * 1024 * 1024)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    purged = purge_audit(pg_engine, future)
    assert (purged.file_imports_deleted, purged.kept_latest_loads) == (0, 3)  # full + 2 appends: the current chain

    load(pg_engine, data_root, versions[3], "run-3", append=True, chunk_bytes=32 * 1024 * 1024)  # rewritten: full
    purged = purge_audit(pg_engine, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert (purged.file_imports_deleted, purged.kept_latest_loads) == (3, 1)
    assert select(pg_engine, sa.select(c.load_mode)) == [("full",)]


@pytest.mark.postgres
def test_one_bad_appended_line_is_judged_with_the_chain_and_listed_with_its_earlier_rejections(
    pg_engine: sa.Engine, data_root: Path
) -> None:
    bad = "MSFT,2024-02-10,10,8,9,11,11,100"  # high under low
    for n, content in enumerate([utf8(text(BASE_DIRTY)), utf8(text([*BASE_DIRTY, bad]))]):
        load(pg_engine, data_root, content, f"run-{n}", append=True, chunk_bytes=32 * 1024 * 1024)
    current = latest_loads(pg_engine, NASDAQ.code)[SOURCE]
    assert current.load_mode == "append" and current.loads == 2
    assert (current.rows_read, current.rows_loaded, current.rows_rejected) == (41, 38, 3)
    assert current.rejected_rate == pytest.approx(3 / 41)  # not the append's own 1 of 1

    listed = list_rejected_rows(pg_engine, load_markets(), NASDAQ.code, NAME)
    assert listed.total == 3
    assert sorted(row.line_number for row in listed.rows) == [12, 22, 42]
    assert {row.file_import_id for row in listed.rows} == {current.first_import_id, current.file_import_id}
