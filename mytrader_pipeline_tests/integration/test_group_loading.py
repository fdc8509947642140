"""Appends loaded together in one transaction leave the warehouse exactly as loading each file alone does: the same
rows, rejected rows and per-file audit figures, through initial loads, corrections, appends and a refused group."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core import importer as importer_module
from mytrader_pipeline.core.accounting import loaded_states
from mytrader_pipeline.core.db import ensure_schema, file_imports, historical_market_data, make_engine, rejected_rows
from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.formats import STANDARD_COLUMNS
from mytrader_pipeline.core.importer import FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.conftest import PG_ADMIN_URL

TODAY = dt.date(2024, 6, 28)
NASDAQ = load_markets().get("NASDAQ")
HEADER = ",".join(STANDARD_COLUMNS)


def day(symbol: str, n: int, close: str = "11") -> str:
    return f"{symbol},{dt.date(2024, 1, 1) + dt.timedelta(days=n)},10,12,9,{close},11,{100 + n}"


def write(root: Path, name: str, rows: list[str]) -> None:
    path = root / NASDAQ.folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")


@pytest.fixture
def second_pg_engine(pg_available: None) -> Iterator[sa.Engine]:
    """Another fresh PostgreSQL warehouse, for the files loaded one by one."""
    name = f"mt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    ensure_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each group transaction of the test ended: "committed", or the name of the error that refused it."""
    ended: list[str] = []
    real = importer_module.load_group

    def recorded(*args: Any, **kwargs: Any) -> Any:
        try:
            outcomes = real(*args, **kwargs)
        except Exception as exc:
            ended.append(type(exc).__name__)
            raise
        ended.append("committed")
        return outcomes

    monkeypatch.setattr(importer_module, "load_group", recorded)
    return ended


def load(engine: sa.Engine, root: Path, *, together: bool) -> list[FileResult]:
    """One import of the market's files: grouped (the default), or each file in a group of its own."""
    options = ImportOptions(concurrency=1, today=TODAY, group_bytes=1 << 30 if together else 1)
    importer = MarketImporter(Warehouse(engine), NASDAQ, f"run-{uuid.uuid4().hex[:8]}", options)
    return importer.run(scan_market(root, NASDAQ), loaded=loaded_states(engine, NASDAQ.code))


def state(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """What the warehouse holds, without what differs between two equal loads (ids, runs, clock times)."""
    prices = [c for c in historical_market_data.c if c.name not in ("run_id", "ingested_at")]
    rejects = [c for c in rejected_rows.c if c.name not in ("id", "file_import_id", "run_id", "rejected_at")]
    audit = [
        file_imports.c[name]
        for name in (
            "source_file",
            "status",
            "load_mode",
            "rows_read",
            "rows_loaded",
            "rows_written",
            "rows_rejected",
            "date_min",
            "date_max",
            "quality_score",
            "fingerprint",
            "size_bytes",
            "line_count",
            "ends_with_newline",
            "error_class",
        )
    ]
    with engine.connect() as conn:
        return {
            "prices": [tuple(r) for r in conn.execute(sa.select(*prices).order_by(*prices))],
            "rejected": [tuple(r) for r in conn.execute(sa.select(*rejects).order_by(*rejects))],
            # each file's loads in order; files loaded together commit before those loaded alone after them
            "audit": [
                tuple(r)
                for r in conn.execute(sa.select(*audit).order_by(file_imports.c.source_file, file_imports.c.id))
            ],
        }


Step = Callable[[Path], None]


def initial(root: Path) -> None:
    write(root, "AAPL.csv", [day("AAPL", n) for n in range(30)])
    write(root, "MSFT.csv", [*(day("MSFT", n) for n in range(20)), "MSFT,2024-02-01,10,8,9,11,11,100"])  # high<low
    write(root, "IBM.csv", [day("IBM", n) for n in range(10)] + ["IBM,not-a-date,1,1,1,1,1,1"])


def corrected(root: Path) -> None:  # a corrected history: loaded whole, through the upsert
    write(root, "AAPL.csv", [day("AAPL", n, close="11.5" if n == 3 else "11") for n in range(30)])
    write(root, "IBM.csv", [day("IBM", n) for n in range(12)])


def appended(root: Path) -> None:  # one new day at the end of each file: loaded as appends
    for name, symbol, days in (("AAPL.csv", "AAPL", 30), ("IBM.csv", "IBM", 12)):
        with (root / NASDAQ.folder / name).open("a") as handle:
            handle.write(day(symbol, days, close="12") + "\n")
    with (root / NASDAQ.folder / "MSFT.csv").open("a") as handle:
        handle.write("MSFT,2024-03-01,10,12,9,11,11,-5\n")  # an appended line that is rejected


def new_symbol(root: Path) -> None:  # a file of a symbol the warehouse has never seen, beside changed ones
    write(root, "TSLA.csv", [day("TSLA", n) for n in range(5)])
    write(root, "IBM.csv", [day("IBM", n) for n in range(12)] + [day("IBM", 40)])


def test_files_loaded_together_leave_the_warehouse_as_files_loaded_alone(
    tmp_path: Path, pg_engine: sa.Engine, second_pg_engine: sa.Engine, groups: list[str]
) -> None:
    together, alone = tmp_path / "together", tmp_path / "alone"
    for step in (initial, corrected, appended, new_symbol):
        for root in (together, alone):
            step(root)
        grouped = load(pg_engine, together, together=True)
        single = load(second_pg_engine, alone, together=False)
        assert [(r.file.source_file, r.status) for r in grouped] == [(r.file.source_file, r.status) for r in single]
        assert all(r.status == "succeeded" for r in grouped)
        assert state(pg_engine) == state(second_pg_engine), step.__name__
    assert groups == ["committed"]  # the appends went in one transaction; full loads each in its own
    modes = [row[2] for row in state(pg_engine)["audit"]]
    assert modes.count("append") == 3  # the appended step's three files


def test_a_group_the_database_refuses_loads_each_file_alone_with_the_same_result(
    tmp_path: Path, pg_engine: sa.Engine, second_pg_engine: sa.Engine, groups: list[str]
) -> None:
    # Two files hold rows of the same symbol; each then gains the same new day with other prices. One upsert cannot
    # change a row twice, so the group is refused; loaded one after the other, the later file's prices win, as in a
    # run of single loads.
    together, alone = tmp_path / "together", tmp_path / "alone"
    for root in (together, alone):
        write(root, "A.csv", [day("DUP", n) for n in range(5)])
        write(root, "B.csv", [day("DUP", n) for n in range(5)])
    for root, engine, grouped in ((together, pg_engine, True), (alone, second_pg_engine, False)):
        assert [r.status for r in load(engine, root, together=grouped)] == ["succeeded", "succeeded"]
        for name, close in (("A.csv", "11"), ("B.csv", "11.5")):
            with (root / NASDAQ.folder / name).open("a") as handle:
                handle.write(day("DUP", 5, close=close) + "\n")
        results = load(engine, root, together=grouped)
        assert [(r.status, r.outcome.mode if r.outcome else None) for r in results] == [("succeeded", "append")] * 2
    assert groups and groups[0] != "committed"
    assert state(pg_engine) == state(second_pg_engine)
    with pg_engine.connect() as conn:
        closes = conn.execute(
            sa.select(historical_market_data.c.close).where(historical_market_data.c.trade_date == dt.date(2024, 1, 6))
        ).scalars()
        assert [float(c) for c in closes] == [11.5]


def test_an_append_that_must_load_whole_leaves_the_group_and_the_others_load_together(
    tmp_path: Path, pg_engine: sa.Engine, second_pg_engine: sa.Engine, groups: list[str]
) -> None:
    together, alone = tmp_path / "together", tmp_path / "alone"
    for root in (together, alone):
        for symbol in ("AAA", "BBB", "CCC"):
            write(root, f"{symbol}.csv", [day(symbol, n) for n in range(10)])
    for root, engine, grouped in ((together, pg_engine, True), (alone, second_pg_engine, False)):
        load(engine, root, together=grouped)
        for symbol, line in (("AAA", day("AAA", 10)), ("BBB", day("BBB", 3, close="11.5")), ("CCC", day("CCC", 10))):
            with (root / NASDAQ.folder / f"{symbol}.csv").open("a") as handle:
                handle.write(line + "\n")  # BBB's new line repeats an earlier date: its file loads whole
        results = load(engine, root, together=grouped)
        modes = {r.file.source_file: r.outcome.mode if r.outcome else None for r in results}
        assert modes == {"NASDAQ/AAA.csv": "append", "NASDAQ/BBB.csv": "full", "NASDAQ/CCC.csv": "append"}
    assert groups == ["committed"]  # AAA and CCC together; BBB alone
    assert state(pg_engine) == state(second_pg_engine)
