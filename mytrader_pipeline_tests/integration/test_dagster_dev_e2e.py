"""End to end: `dagster dev` on PostgreSQL loads whatever lands in the data root, and only what changed, unattended."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from mytrader_pipeline.core.db import file_imports, historical_market_data
from mytrader_pipeline.defs.jobs import PARTITION_RANGE_END_TAG as RANGE_END
from mytrader_pipeline.defs.jobs import PARTITION_RANGE_START_TAG as RANGE_START
from mytrader_pipeline.defs.sensors import DEFAULT_MAX_FILES_PER_RUN, TRIGGER_TAG
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.integration.conftest import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 180
REGISTRY = load_markets()


def wait_for(what: str, condition: Callable[[], bool], log: Path) -> None:
    """Poll ``condition`` until true (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"{what}: not after {WAIT_SECONDS}s\n{log.read_text(errors='replace')[-6000:]}")


class DagsterDev:
    """`dagster dev` (web server + daemon) started in its own process group, stopped as a whole."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env, self.home = env, home
        self.log = home / "dagster-dev.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = free_port()
        dagster = Path(sys.executable).with_name("dagster")
        command = [str(dagster), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"http://127.0.0.1:{port}/server_info"
        wait_for("dagster dev web server up", lambda: self._responds(url), self.log)

    def _responds(self, url: str) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"dagster dev exited:\n{self.log.read_text(errors='replace')[-6000:]}")
        try:
            return requests.get(url, timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        assert self.process.returncode is not None


@pytest.fixture
def deployment(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DagsterDev, Path]]:
    """A DAGSTER_HOME with the shipped deploy/dagster.yaml on a fresh PostgreSQL database, an empty data root."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    root = tmp_path / "DATA"
    for market in REGISTRY:
        (root / market.folder).mkdir(parents=True)
    parts = urlsplit(pg_url)
    settings = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_USER": parts.username or "postgres",
        "DAGSTER_PG_PASSWORD": parts.password or "",
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
        "MYTRADER_DATA_ROOT": str(root),
        "MYTRADER_DATABASE_URL": pg_url,  # the warehouse tables live beside Dagster's in this test
        "MYTRADER_SENSOR_INTERVAL_SECONDS": "2",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_"))} | settings
    dev = DagsterDev(env, home)
    try:
        yield dev, root
    finally:
        dev.stop()


def succeeded_loads(engine: sa.Engine) -> list[str]:
    query = sa.select(file_imports.c.source_file).where(file_imports.c.status == "succeeded")
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("file_imports"):
            return []
        return [r.source_file for r in conn.execute(query.order_by(file_imports.c.id))]


def test_dagster_dev_loads_dropped_files_then_only_the_changed_one_after_a_restart(
    deployment: tuple[DagsterDev, Path], pg_url: str, sample_root: Path
) -> None:
    dev, root = deployment
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    dev.start()
    shutil.copytree(sample_root, root, dirs_exist_ok=True)  # files land while the deployment runs
    dropped = sorted(str(p.relative_to(root)) for p in root.glob("*/*.csv"))

    wait_for("every dropped file loaded", lambda: sorted(succeeded_loads(engine)) == dropped, dev.log)
    with dg.DagsterInstance.get() as instance:
        for market in REGISTRY:
            files = {p.name for p in (root / market.folder).glob("*.csv")}
            wait_for(
                f"{market.code} partitions materialized",
                lambda m=market, f=files: instance.get_materialized_partitions(dg.AssetKey(m.asset_name)) == f,
                dev.log,
            )
        # A run may still be closing after its last partition materialized: stop a quiet deployment (a run
        # stopped while in flight is recovered by run monitoring, tested in test_crash_recovery_deployment.py).
        wait_for("the first runs finished", lambda: all(r.is_finished for r in instance.get_runs()), dev.log)
        first_runs = instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: "file_sensor"}))
    assert len(first_runs) <= sum(
        -(-len(list((root / m.folder).glob("*.csv"))) // DEFAULT_MAX_FILES_PER_RUN) for m in REGISTRY
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(historical_market_data)).scalar_one()
        loaded = conn.execute(sa.select(sa.func.sum(file_imports.c.rows_loaded))).scalar_one()
    assert rows == loaded > 0

    dev.stop()  # the sensors' cursors are in PostgreSQL: a restart must not reload anything
    dev.start()
    changed = root / "NYSE" / sorted(p.name for p in (root / "NYSE").glob("*.csv"))[0]
    changed.write_text("".join(changed.read_text().splitlines(keepends=True)[:-1]))
    touched = root / "NASDAQ" / sorted(p.name for p in (root / "NASDAQ").glob("*.csv"))[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))

    wait_for("the changed file reloaded", lambda: len(succeeded_loads(engine)) > len(dropped), dev.log)
    with dg.DagsterInstance.get() as instance:
        wait_for(
            "the reload run finished",
            lambda: all(
                r.is_finished for r in instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: "file_sensor"}))
            ),
            dev.log,
        )
        time.sleep(6)  # three more sensor intervals: nothing else may be requested
        runs = instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: "file_sensor"}))
    assert len(runs) == len(first_runs) + 1
    # Only the changed file's range: a lost cursor would see every file as new and request whole-folder ranges.
    latest = runs[0].tags  # newest first
    assert (latest[RANGE_START], latest[RANGE_END]) == (changed.name, changed.name)
    assert succeeded_loads(engine)[len(dropped) :] == [f"NYSE/{changed.name}"]
    dev.stop()
    engine.dispose()
