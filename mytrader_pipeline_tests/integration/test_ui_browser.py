"""The Dagster web UI in a real headless Chromium: find a market asset, materialize one partition, see it succeed.

Debian's ``chromium`` is driven by Playwright through ``executable_path`` (no browser is downloaded); the session
installs it with apt-get when it is missing. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, Page

from mytrader_pipeline.service.gateway import DagsterGateway
from mytrader_pipeline_tests.integration.conftest import Deployment, screenshot

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
WAIT_MS = 180_000


def _dismiss_welcome(page: Page) -> None:
    """Close the UI's one-time 'Join the Dagster community' dialog if it shows up."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5000)
    except Exception:
        return
    skip.click()


def test_materialize_one_partition_of_a_market_asset_from_the_web_ui(
    dagster_deployment: Deployment, browser: Browser
) -> None:
    gateway = DagsterGateway(dagster_deployment.url)
    key = sorted(p.name for p in (dagster_deployment.data_root / "Crypto").glob("*.csv"))[0]
    gateway.add_partition(gateway.repository_of_job("import_crypto"), "crypto_files", key)
    before = {run.run_id for run in gateway.runs(tags={"dagster/partition": key})}

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{dagster_deployment.url}/assets", wait_until="networkidle")
    _dismiss_welcome(page)
    page.get_by_role("link", name="crypto_prices").first.click()
    page.wait_for_url(re.compile(r".*/assets/crypto_prices.*"))
    _dismiss_welcome(page)
    screenshot(page, "1_asset")

    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_placeholder("Filter partitions").fill(key)
    page.locator(".dagster-portal").get_by_text(key, exact=True).filter(visible=True).first.click()
    page.get_by_text("Launch runs to materialize crypto_prices").click()  # closes the partition list
    screenshot(page, "2_launch_one_partition")
    dialog.get_by_role("button", name=re.compile(r"^Launch 1 run")).click()

    deadline = time.monotonic() + WAIT_MS / 1000
    launched: list[str] = []
    while time.monotonic() < deadline and not launched:
        launched = [r.run_id for r in gateway.runs(tags={"dagster/partition": key}) if r.run_id not in before]
        time.sleep(0.5)
    assert launched, "the UI launched no run for the partition"
    page.goto(f"{dagster_deployment.url}/runs/{launched[0]}", wait_until="networkidle")
    page.get_by_text("Success", exact=True).first.wait_for(timeout=WAIT_MS)
    screenshot(page, "3_run_succeeded")
    assert gateway.run(launched[0]).status == "SUCCESS"

    page.goto(f"{dagster_deployment.url}/runs", wait_until="networkidle")
    page.get_by_text(f"partition: {key}").first.wait_for(timeout=WAIT_MS)
    screenshot(page, "4_runs")
