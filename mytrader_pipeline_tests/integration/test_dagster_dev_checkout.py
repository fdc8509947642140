"""``dagster dev`` in a checkout with nothing set comes up over the quickstart's state, sensors included.

The checkout is the repository's ``dagster.yaml`` and ``workspace.yaml`` in a fresh folder; the quickstart's state is
what ``mytrader run`` leaves in ``./.mytrader`` (here over the small sample tree). No ``DAGSTER_*`` or ``MYTRADER_*``
variable is set for either command.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from mytrader_pipeline_tests.integration.deployment_client import free_port, stop_process, wait_ready

pytestmark = [pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "mytrader_pipeline"}
RUNS = "{ runsOrError { __typename ... on Runs { results { runId status } } } }"
SENSOR = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 5) { status error { message } } } }
  }
}
"""


def test_dagster_dev_in_a_fresh_checkout_shows_the_quickstarts_state(sample_root: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO_ROOT / name, checkout / name)
    shutil.copytree(sample_root, checkout / ".mytrader" / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_"))}
    quickstart = subprocess.run(
        [sys.executable, "-m", "mytrader_pipeline.cli", "run"], cwd=checkout, env=env, capture_output=True, timeout=600
    )
    assert quickstart.returncode == 0, quickstart.stderr.decode()[-3000:]
    with dg.DagsterInstance.from_config(str(checkout / ".mytrader" / "dagster_home")) as instance:
        quickstart_runs = {r.run_id for r in instance.get_runs()}
    assert quickstart_runs

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dagster-dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=checkout,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(url, process, log_path)
        runs = requests.post(f"{url}/graphql", json={"query": RUNS}, timeout=30).json()["data"]["runsOrError"]
        assert {r["runId"] for r in runs["results"]} >= quickstart_runs  # the quickstart's runs, in the UI
        selector = {**REPOSITORY, "sensorName": "bist_file_sensor"}
        deadline = time.monotonic() + 120
        ticks: list[dict[str, object]] = []
        while time.monotonic() < deadline and not ticks:
            body = requests.post(
                f"{url}/graphql", json={"query": SENSOR, "variables": {"selector": selector}}, timeout=30
            ).json()
            state = body["data"]["sensorOrError"]["sensorState"]
            assert state["status"] == "RUNNING"
            ticks = state["ticks"]
            time.sleep(2)
        assert ticks, "the file sensor never ticked"
        assert all(t["status"] != "FAILURE" for t in ticks), ticks  # it reads the quickstart's data and warehouse
    finally:
        stop_process(process)
    assert "DAGSTER_PG" not in log_path.read_text(errors="replace")
