"""Monitoring statistics of a crafted set of runs equal the values computed by hand."""

import datetime as dt

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import file_imports
from mytrader_pipeline.core.sla import MarketAudit, RunInfo
from mytrader_pipeline.core.stats import audit_by_run, compute_stats, date_bounds, file_errors_by_type, p95
from mytrader_pipeline.markets import load_markets

REGISTRY = load_markets()  # BIST 45 min, CRYPTO 20, NASDAQ/NYSE 25, all markets 120
DAY = dt.date(2025, 3, 10)
T = dt.datetime(2025, 3, 10, 2, tzinfo=dt.UTC)


def m(n: float) -> dt.datetime:
    return T + dt.timedelta(minutes=n)


def audit(rows: int, seconds: float, rejected: int = 0, failed: int = 0) -> MarketAudit:
    return MarketAudit(5, failed, rows, rejected, T, T + dt.timedelta(seconds=seconds))


RUNS = [
    # 10 min, within 45: success
    RunInfo("b1", "import_bist", "SUCCESS", ("BIST",), T, m(0), m(10), audit={"BIST": audit(60_000, 60)}),
    # 30 min, over CRYPTO's 20: success but SLA breached
    RunInfo("c1", "import_crypto", "SUCCESS", ("CRYPTO",), T, m(0), m(30), audit={"CRYPTO": audit(30_000, 30)}),
    # 5 min, failed with 2 failed files (one parse error, one database error)
    RunInfo(
        "n1", "import_nasdaq", "FAILURE", ("NASDAQ",), T, m(0), m(5), audit={"NASDAQ": audit(10_000, 10, failed=2)}
    ),
    # 1 min, failed without naming a file, will be retried by Dagster
    RunInfo("n2", "import_nasdaq", "FAILURE", ("NASDAQ",), T, m(0), m(1), will_retry=True),
    # all markets, 60 min, success
    RunInfo("a1", "import_all_markets", "SUCCESS", tuple(REGISTRY.codes), T, m(0), m(60), all_markets=True),
    # still running for 50 min (over NYSE's 25): judged breached
    RunInfo("y1", "import_nyse", "STARTED", ("NYSE",), T, m(10), None),
    # created the day before: outside the range
    RunInfo("old", "import_nyse", "SUCCESS", ("NYSE",), T - dt.timedelta(days=1), m(-1440), m(-1430)),
]


def test_stats_of_crafted_runs_equal_hand_computed_values() -> None:
    stats = compute_stats(RUNS, DAY, DAY, REGISTRY, now=m(60), file_errors={"parse_error": 1, "database_error": 1})

    assert stats.total_jobs == 6
    assert (stats.successful_jobs, stats.failed_jobs, stats.retrying_jobs) == (3, 1, 1)
    assert (stats.canceled_jobs, stats.running_jobs) == (0, 1)
    assert stats.sla_breached_jobs == 2  # c1 (30 > 20), y1 (50 > 25, running)
    assert stats.success_rate == pytest.approx(3 / 5)  # successful / finished (b1 c1 n1 n2 a1)
    assert stats.sla_compliance_rate == pytest.approx(4 / 6)  # 5 finished + y1 judged, 2 breached
    assert stats.average_duration_seconds == pytest.approx((10 + 30 + 5 + 1 + 60) * 60 / 5)
    assert stats.p95_duration_seconds == 3600.0  # nearest rank: ceil(0.95 * 5) = 5th of 5
    assert stats.records_processed == 100_000
    assert stats.average_processing_rate == pytest.approx(100_000 / 100)
    assert stats.jobs_by_market == {"ALL": 1, "BIST": 1, "CRYPTO": 1, "NASDAQ": 2, "NYSE": 1}
    assert stats.errors_by_type == {"database_error": 1, "parse_error": 1, "run_failure": 1}


def test_an_empty_range_has_zero_counts_and_no_rates() -> None:
    stats = compute_stats([], DAY, DAY, REGISTRY, now=m(60))
    assert stats.total_jobs == 0 and stats.success_rate is None and stats.p95_duration_seconds is None
    assert stats.as_json()["start_date"] == "2025-03-10"


def test_p95_is_nearest_rank() -> None:
    assert p95(list(range(1, 101))) == 95
    assert p95([7.0]) == 7.0
    assert p95([]) is None


def test_date_bounds_are_whole_utc_days_and_ordered() -> None:
    assert date_bounds(DAY, DAY) == (dt.datetime(2025, 3, 10, tzinfo=dt.UTC), dt.datetime(2025, 3, 11, tzinfo=dt.UTC))
    with pytest.raises(ValueError):
        date_bounds(DAY, DAY - dt.timedelta(days=1))


def test_audit_totals_per_run_and_market_from_file_imports(any_engine: sa.Engine) -> None:
    base = {"partition_key": "A.csv", "rows_written": 0, "started_at": m(0), "finished_at": m(1), "error_class": None}
    rows = [
        {**base, "market": "BIST", "source_file": "BIST/A.csv", "run_id": "r1", "status": "succeeded",
         "rows_read": 100, "rows_loaded": 90, "rows_rejected": 10},
        {**base, "market": "BIST", "source_file": "BIST/B.csv", "run_id": "r1", "status": "succeeded",
         "rows_read": 50, "rows_loaded": 50, "rows_rejected": 0, "finished_at": m(3)},
        {**base, "market": "BIST", "source_file": "BIST/C.csv", "run_id": "r1", "status": "failed",
         "rows_read": 0, "rows_loaded": 0, "rows_rejected": 0, "error_class": "parse_error"},
    ]  # fmt: skip
    with any_engine.begin() as conn:
        conn.execute(sa.insert(file_imports), rows)

    totals = audit_by_run(any_engine, ["r1", "nothing"])["r1"]["BIST"]
    assert (totals.files, totals.files_failed, totals.rows_read, totals.rows_rejected) == (3, 1, 150, 10)
    assert totals.processing_seconds == 180.0
    assert file_errors_by_type(any_engine, ["r1"]) == {"parse_error": 1}
