"""What the UI shows and launches obeys the pipeline, on one real deployment (``dagster dev``, the shipped instance
config on PostgreSQL) shared by the module's tests.

- Materialize from the asset page in a real Chromium, twice two partitions of NASDAQ (limit 1): the runs carry the
  market's tags and pool, run one after the other, load the files and are counted by ``mytrader stats``.
- ``rejected_rate`` is red over a file whose latest load rejected 13% of its rows, and still red after a run that
  skipped that unchanged file (the check's executions read over GraphQL, as the UI reads them).
- The ``sla`` check of each market agrees with ``mytrader alerts``: failing while the market has an active breach
  (BIST, 1 min SLA after a schedule tick 5 min ago, nothing loaded), passing while it has none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page

from mytrader_pipeline.core.db import make_engine
from mytrader_pipeline.defs.jobs import MARKET_TAG, market_run_tags
from mytrader_pipeline.markets import Market, MarketRegistry, load_markets
from mytrader_pipeline_tests.integration.conftest import (
    Deployment,
    RestartableDeployment,
    new_restartable_deployment,
    screenshot,
)
from mytrader_pipeline_tests.integration.deployment_client import (
    ASSET_JOB,
    all_finished,
    assert_ran_one_at_a_time_in_market_pool,
    launch_partition_backfill,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WAIT_SECONDS = 300  # bound of every wait (a busy 2-core machine starts runs slowly)
HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
NASDAQ_FILES = ["A.csv", "B.csv", "C.csv", "D.csv"]
NYSE_FILES = ["BAD.csv", "GOOD.csv"]
BAD_LINES = (4, 9)  # lines (header = 1) of BAD.csv with a negative volume: 2 of 15 rows, 13% > NYSE's 10%
OVERRIDE = """markets:
  - code: NASDAQ
    max_concurrency: 1
  - code: BIST
    sla_minutes: 1
"""

CHECK_EXECUTIONS = """
query Executions($asset: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, limit: 1) {
    runId
    status
    evaluation {
      severity
      description
      metadataEntries { label ... on JsonMetadataEntry { jsonString } ... on TextMetadataEntry { text } }
    }
  }
}
"""


def _write(path: Path, symbol: str, rows: int, bad_lines: tuple[int, ...] = ()) -> None:
    day = dt.date(2024, 1, 1)
    lines = [
        f"{symbol},{day + dt.timedelta(days=n)},10,11,9,10.5,10.4,{-1 if n + 2 in bad_lines else 1000 + n}\n"
        for n in range(rows)
    ]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, pg_available: None
) -> Iterator[tuple[RestartableDeployment, Deployment]]:
    """One deployment for the module: NASDAQ limited to one run at a time, BIST's SLA 1 min after a schedule tick
    5 min ago, the SLA monitor every 5 s; four NASDAQ files and two NYSE files (one 13% bad) registered.
    """
    base = tmp_path_factory.mktemp("ui_truth")
    with new_restartable_deployment(base) as control:
        override = base / "markets.yaml"
        override.write_text(OVERRIDE, encoding="utf-8")
        tick = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        control.env |= {
            "MYTRADER_MARKETS_FILE": str(override),
            "MYTRADER_DAILY_IMPORT_CRON": f"{tick.minute} {tick.hour} * * *",
            "MYTRADER_SLA_INTERVAL_SECONDS": "5",
        }
        for name in NASDAQ_FILES:
            _write(control.data_root / "NASDAQ" / name, name[:-4], 3)
        _write(control.data_root / "NYSE" / "BAD.csv", "BAD", 15, BAD_LINES)
        _write(control.data_root / "NYSE" / "GOOD.csv", "GOOD", 10)
        with control.instance() as instance:
            instance.add_dynamic_partitions("nasdaq_files", NASDAQ_FILES)
            instance.add_dynamic_partitions("nyse_files", NYSE_FILES)
        running = control.start()
        running.graphql("mutation { setNuxSeen }")  # no 'Join the Dagster community' dialog over the pages
        yield control, running


def registry() -> MarketRegistry:
    return load_markets()


def mytrader(control: RestartableDeployment, *args: str) -> Any:
    """``mytrader <args> --json`` against the deployment (its instance and warehouse); the parsed answer."""
    done = subprocess.run(
        [sys.executable, "-m", "mytrader_pipeline.cli", *args, "--json"],
        env=control.env,
        cwd=control.base,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def market_runs(instance: dg.DagsterInstance, market: Market) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=ASSET_JOB, tags={MARKET_TAG: market.code})))


def latest_check(deployment: Deployment, asset: str, check: str) -> dict[str, Any] | None:
    """The latest execution of ``asset``'s ``check`` as the UI's GraphQL answers it (None: never executed)."""
    variables = {"asset": {"path": [asset]}, "check": check}
    executions = deployment.graphql(CHECK_EXECUTIONS, variables)["assetCheckExecutions"]
    assert isinstance(executions, list)
    return executions[0] if executions else None


def metadata(execution: dict[str, Any]) -> dict[str, Any]:
    entries = execution["evaluation"]["metadataEntries"]
    return {e["label"]: json.loads(e["jsonString"]) if "jsonString" in e else e.get("text") for e in entries}


@contextlib.contextmanager
def screenshot_on_failure(page: Page, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        screenshot(page, f"failed_{name}")
        raise


def check_shown_failed(browser: Browser, url: str, asset: str, check: str) -> None:
    """The asset's *Checks* tab lists ``check`` as failed (the only check of the asset that failed)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/assets/{asset}?view=checks", wait_until="networkidle")
    with screenshot_on_failure(page, f"{asset}_checks"):
        page.get_by_text(check, exact=True).first.wait_for()
        page.get_by_text("Failed", exact=True).first.wait_for()
        screenshot(page, f"{asset}_checks")


def materialize_in_ui(page: Page, url: str, asset: str, keys: list[str], name: str) -> None:
    """On ``asset``'s page: Materialize…, tick ``keys`` in the partition list, launch."""
    page.goto(f"{url}/assets/{asset}", wait_until="networkidle")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Select a partition or create one").click()
    for key in keys:
        page.locator(".dagster-portal").get_by_text(key, exact=True).filter(visible=True).first.click()
        assert page.get_by_role("checkbox", name=key).is_checked()
    dialog.get_by_text(f"Launch runs to materialize {asset}").click()  # closes the partition list
    dialog.get_by_text(f"{len(keys)} partitions", exact=True).wait_for()
    screenshot(page, f"{name}_dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    dialog.wait_for(state="detached", timeout=60_000)


def test_materialize_in_chromium_on_two_partitions_obeys_the_markets_rules(
    deployment: tuple[RestartableDeployment, Deployment], browser: Browser
) -> None:
    control, running = deployment
    nasdaq = registry().get("NASDAQ")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    with screenshot_on_failure(page, "materialize"):
        materialize_in_ui(page, running.url, "nasdaq_prices", NASDAQ_FILES[:2], "materialize_1")
        materialize_in_ui(page, running.url, "nasdaq_prices", NASDAQ_FILES[2:], "materialize_2")

        with control.instance() as instance:
            runs = wait_for(
                "both runs launched from the UI to finish",
                lambda: all_finished(market_runs(instance, nasdaq), 2),
                WAIT_SECONDS,
            )
            assert all(run.tags["dagster/from_ui"] == "true" for run in runs)
            records = assert_ran_one_at_a_time_in_market_pool(instance, runs, nasdaq, limit=1)

        page.goto(f"{running.url}/runs/{records[1].dagster_run.run_id}", wait_until="networkidle")
        page.get_by_role("button", name="View tags and config").click()
        tags = page.get_by_role("dialog")
        for key, value in market_run_tags(nasdaq).items():  # the UI shows the tags the coordinator gave
            tags.get_by_text(f"{key.removeprefix('dagster/')}: {value}", exact=True).wait_for()
        screenshot(page, "materialize_run_tags")
        screenshot(page, "materialize_run")

    engine = make_engine(running.database_url, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT symbol, count(*) FROM historical_market_data WHERE market = :m GROUP BY symbol"),
            {"m": "NASDAQ"},
        ).all()
    engine.dispose()
    assert dict(rows) == {name[:-4]: 3 for name in NASDAQ_FILES}
    today = dt.datetime.now(dt.UTC).date()
    stats = mytrader(control, "stats", "--start-date", str(today - dt.timedelta(days=1)), "--end-date", str(today))
    assert stats["jobs_by_market"].get("NASDAQ") == 2, stats


def test_rejected_rate_stays_red_after_a_run_that_skipped_the_bad_file(
    deployment: tuple[RestartableDeployment, Deployment], browser: Browser
) -> None:
    control, running = deployment
    nyse = registry().get("NYSE")
    assert nyse.max_rejected_fraction == 0.10
    run_ids: list[str] = []
    with control.instance() as instance:
        for n in (1, 2):
            launched = launch_partition_backfill(running.url, "nyse_prices", NYSE_FILES)
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            runs = wait_for(
                f"NYSE run {n} to finish",
                lambda count=n: all_finished(market_runs(instance, nyse), count),
                WAIT_SECONDS,
            )
            run = runs[0]  # newest first
            assert run.status == dg.DagsterRunStatus.SUCCESS
            run_ids.append(run.run_id)
            check = latest_check(running, "nyse_prices", "rejected_rate")
            assert check is not None and check["runId"] == run.run_id
            assert check["status"] == "FAILED", check
            assert metadata(check)["files_over_threshold"] == {"BAD.csv": round(2 / 15, 4)}

        skipped = {
            str(e.asset_materialization.partition): e.asset_materialization.metadata
            for e in instance.all_logs(run_ids[1], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            if e.asset_materialization is not None
        }
    assert skipped["BAD.csv"]["skipped"].value == "unchanged"  # the second run did not load it again
    check_shown_failed(browser, running.url, "nyse_prices", "rejected_rate")


def test_the_sla_check_of_each_market_agrees_with_mytrader_alerts(
    deployment: tuple[RestartableDeployment, Deployment], browser: Browser
) -> None:
    control, running = deployment

    def agreement() -> tuple[dict[str, Any], dict[str, dict[str, Any] | None]] | None:
        active = {a["market"]: a for a in mytrader(control, "alerts") if a["market"]}
        checks = {m.code: latest_check(running, m.asset_name, "sla") for m in registry()}
        if "BIST" not in active:
            return None
        failing = {code for code, check in checks.items() if check is not None and check["status"] == "FAILED"}
        passing = {code for code, check in checks.items() if check is not None and check["status"] == "SUCCEEDED"}
        if failing == set(active) and passing == set(checks) - set(active):
            return active, checks
        return None

    active, checks = wait_for("the sla checks to agree with the active alerts, BIST in breach", agreement, WAIT_SECONDS)
    bist = checks["BIST"]
    assert bist is not None
    assert bist["evaluation"]["severity"] == "ERROR"
    assert bist["evaluation"]["description"] == f"SLA breached: {active['BIST']['message']}"
    assert metadata(bist)["reason"] == active["BIST"]["message"]
    assert re.search("no file loaded since", active["BIST"]["message"])
    check_shown_failed(browser, running.url, "bist_prices", "sla")
