"""Importers side by side in one process share ``GROUPS_IN_FLIGHT`` (memory); one configured for more gets them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core import importer
from mytrader_pipeline.core.discovery import MarketFile, scan_market
from mytrader_pipeline.core.importer import GROUPS_IN_FLIGHT, FileResult, ImportOptions, MarketImporter
from mytrader_pipeline.core.loading import Warehouse
from mytrader_pipeline.markets import load_markets

MARKETS = load_markets()


class Recorder:
    """Stands in for loading a group: records how many groups are in flight at once, holding each a moment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def load_group(
        self, this: MarketImporter, group: list[MarketFile], report: importer.ResultCallback, _stop: object
    ) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # until as many groups as allowed are in, or two seconds
            with self.lock:
                if self.active >= max(GROUPS_IN_FLIGHT, this.options.concurrency):
                    break
            time.sleep(0.005)
        time.sleep(0.02)
        with self.lock:
            self.active -= 1
        for file in group:
            report(FileResult(file, "succeeded", 0.0))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    found = Recorder()
    monkeypatch.setattr(
        MarketImporter, "_load_group", lambda this, group, report, stop: found.load_group(this, group, report, stop)
    )
    return found


def _files(data_root: Path, code: str, count: int) -> list[MarketFile]:
    market = MARKETS.get(code)
    for n in range(count):
        (data_root / market.folder / f"S{n:02d}.csv").write_text("Date,Open\n2024-01-01,1\n")
    return scan_market(data_root, market)


def _import(warehouse: Warehouse, code: str, files: list[MarketFile], concurrency: int) -> list[FileResult]:
    options = ImportOptions(concurrency=concurrency, group_bytes=1)  # a group per file
    return MarketImporter(warehouse, MARKETS.get(code), "run", options).run(files)


@pytest.fixture
def warehouse(sqlite_engine: sa.Engine) -> Warehouse:
    """The test's own warehouse: its loads take the machine's slots of this database alone (``core.load_slots``)."""
    return Warehouse(sqlite_engine)


def test_two_importers_at_once_keep_to_the_shared_limit(
    data_root: Path, recorder: Recorder, warehouse: Warehouse
) -> None:
    jobs = [("NASDAQ", _files(data_root, "NASDAQ", 12)), ("NYSE", _files(data_root, "NYSE", 12))]
    results: list[list[FileResult]] = []
    threads = [threading.Thread(target=lambda c=c, f=f: results.append(_import(warehouse, c, f, 4))) for c, f in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.peak == GROUPS_IN_FLIGHT  # not 8: two markets at 4 each
    assert sorted(len(r) for r in results) == [12, 12]
    assert importer.IN_FLIGHT.count == 0


def test_an_importer_configured_for_more_files_at_once_gets_them(
    data_root: Path, recorder: Recorder, warehouse: Warehouse
) -> None:
    results = _import(warehouse, "NASDAQ", _files(data_root, "NASDAQ", 12), GROUPS_IN_FLIGHT + 2)
    assert recorder.peak == GROUPS_IN_FLIGHT + 2
    assert [r.status for r in results] == ["succeeded"] * 12
