"""The SQLite warehouse's writer: one file transaction at a time per database file, all-NULL columns left out."""

import datetime as dt
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import ensure_schema, historical_market_data, make_engine
from mytrader_pipeline.core.formats import STANDARD_COLUMNS
from mytrader_pipeline.core.loading import FileTarget, Warehouse
from mytrader_pipeline.core.parsing import CsvFileReader, type_chunks
from mytrader_pipeline.core.validation import validate_chunks
from mytrader_pipeline.core.write_gate import sole_writer
from mytrader_pipeline.markets import load_markets

TODAY = dt.date(2024, 6, 28)
NYSE = load_markets().get("NYSE")
HEADER = ",".join(STANDARD_COLUMNS)


def _write(root: Path, name: str, lines: list[str]) -> Path:
    path = root / NYSE.folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    return path


def _load(engine: sa.Engine, path: Path) -> int:
    """Load ``path`` whole into ``engine``; returns the rows the upsert wrote."""
    source_file = f"{NYSE.folder}/{path.name}"
    reader = CsvFileReader(path, source_file)
    chunks = validate_chunks(type_chunks(list(reader.raw_chunks())), today=TODAY)
    target = FileTarget(NYSE, path.name, source_file, "run-1")
    return Warehouse(engine).load_file(target, reader.meta, chunks, dt.datetime.now(dt.UTC)).rows_written


def test_a_column_emptied_in_a_corrected_file_is_stored_null(sqlite_engine: sa.Engine, data_root: Path) -> None:
    days = [f"IBM,2024-06-{d:02d},10,12,9,11,11" for d in range(3, 8)]
    path = _write(data_root, "IBM.csv", [f"{line},{100 + n}" for n, line in enumerate(days)])
    assert _load(sqlite_engine, path) == 5
    _write(data_root, "IBM.csv", [f"{line}," for line in days])  # the corrected file has no volumes at all
    assert _load(sqlite_engine, path) == 5
    with sqlite_engine.connect() as conn:
        stored = conn.execute(sa.select(historical_market_data.c.volume, historical_market_data.c.index_code)).all()
    assert stored == [(None, None)] * 5


def _enter_in_thread(engine: sa.Engine) -> tuple[threading.Thread, threading.Event]:
    """A thread that takes ``engine``'s writer and sets the event once it has it."""
    entered = threading.Event()

    def enter() -> None:
        with sole_writer(engine):
            entered.set()

    thread = threading.Thread(target=enter)
    thread.start()
    return thread, entered


def test_urls_of_one_sqlite_file_share_one_writer_and_other_files_have_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative, absolute = make_engine("sqlite:///w.db"), make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with sole_writer(relative):
        other, other_entered = _enter_in_thread(make_engine(f"sqlite:///{tmp_path / 'other.db'}"))
        other.join()
        assert other_entered.is_set()
        same, same_entered = _enter_in_thread(absolute)
        same.join(timeout=0.5)  # it cannot enter while the writer is held, however long it is given
        assert not same_entered.is_set()
    same.join()  # released: the waiting thread enters
    assert same_entered.is_set()
    with sole_writer(make_engine("sqlite://")), sole_writer(make_engine("sqlite://")):
        pass  # in-memory databases (one per connection) have no gate: nested use does not block


def test_loads_into_one_sqlite_file_from_many_threads_all_commit(tmp_path: Path, data_root: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    ensure_schema(engine)
    paths = [
        _write(data_root, f"S{n}.csv", [f"S{n},2024-06-{d:02d},10,12,9,11,11,100" for d in range(3, 28)])
        for n in range(8)
    ]
    written: list[int] = []
    threads = [threading.Thread(target=lambda p=p: written.append(_load(engine, p))) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(written) == [25] * 8
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(historical_market_data)).scalar_one() == 200
