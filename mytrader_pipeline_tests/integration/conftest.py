"""Integration fixtures: a running ``dagster dev`` (web server + daemon) on free ports against a fresh warehouse."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from mytrader_pipeline.instance_config import render_instance_config
from mytrader_pipeline.markets import load_markets
from mytrader_pipeline_tests.integration.deployment_client import free_port, graphql, stop_process, wait_ready

PG_ADMIN_URL = os.environ.get("MYTRADER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A running ``dagster dev``: its web server URL, data root, warehouse URL, home and log file."""

    url: str
    data_root: Path
    database_url: str
    dagster_home: Path
    log_path: Path

    def graphql(self, query: str, variables: dict[str, object] | None = None) -> dict[str, object]:
        """Run a GraphQL document against the deployment; returns ``data``."""
        return graphql(self.url, query, variables)


@pytest.fixture(scope="session")
def deployment_database(pg_available: None) -> Iterator[str]:
    """A PostgreSQL warehouse database for the session's deployment, dropped at the end."""
    name = f"mt_deploy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def dagster_deployment(
    tmp_path_factory: pytest.TempPathFactory, sample_root: Path, deployment_database: str
) -> Iterator[Deployment]:
    """``dagster dev`` on a free port: SQLite instance in a temporary DAGSTER_HOME, PostgreSQL warehouse, a copy
    of the small sample tree as data root. Shared by the session's tests; stopped (whole process group) at the end.
    """
    base = tmp_path_factory.mktemp("deployment")
    home = base / "dagster_home"
    home.mkdir()
    data_root = base / "DATA"
    shutil.copytree(sample_root, data_root)
    port = free_port()
    log_path = base / "dagster-dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "MYTRADER_DATA_ROOT": str(data_root),
        "MYTRADER_DATABASE_URL": deployment_database,
        "MYTRADER_FILE_SENSORS": "off",  # tests launch their own runs; the file sensors have their own tests
    }
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-m", "mytrader_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path)
        yield Deployment(url, data_root, deployment_database, home, log_path)
    finally:
        stop_process(process)


# -- a deployment on the shipped instance config, that a test can kill and start again -----------------------------
def monitored_instance_yaml(poll_interval_seconds: int) -> str:
    """The shipped ``dagster.yaml`` (generated from the registry), with run monitoring polling as often as asked."""
    config = yaml.safe_load(render_instance_config(load_markets()))
    config["run_monitoring"]["poll_interval_seconds"] = poll_interval_seconds
    return yaml.safe_dump(config, sort_keys=False)


class RestartableDeployment:
    """``dagster dev`` on the shipped instance config (PostgreSQL storage, run queue, run monitoring with our
    launcher's worker health check, run retries), over its own instance database, warehouse and data root.

    ``start()`` it; ``kill()`` SIGKILLs every process of it at once (web server, daemon, code server, run workers),
    as a machine losing power would; ``start()`` again brings a new deployment up on the same instance and warehouse.
    """

    def __init__(self, base: Path, env: dict[str, str], data_root: Path, database_url: str) -> None:
        self.base = base
        self.env = env
        self.data_root = data_root
        self.database_url = database_url
        self.home = Path(env["DAGSTER_HOME"])
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Deployment:
        """Start ``dagster dev`` on a free port and wait until its code location is loaded."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        port = free_port()
        log_path = self.base / f"dagster-dev-{self.starts}.log"
        dagster = Path(sys.executable).with_name("dagster")
        command = [str(dagster), "dev", "-m", "mytrader_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.base, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, self.process, log_path)
        return Deployment(url, self.data_root, self.database_url, self.home, log_path)

    @property
    def session_id(self) -> int:
        """The session of every process of the running deployment (``dagster dev`` leads its own)."""
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL every process of the deployment at once; nothing gets to clean up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)  # the whole process group in one go
        for pid in session_pids(self.session_id):  # and anything that left the group but not the session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the deployment if it runs (its whole process group)."""
        if self.process is not None:
            stop_process(self.process)

    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The deployment's Dagster instance, opened from its home in this process."""
        saved = {k: os.environ.get(k) for k in self.env if k.startswith("DAGSTER_PG_")}
        os.environ.update({k: self.env[k] for k in saved})
        try:
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                yield instance
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def session_pids(session_id: int) -> list[int]:
    """Every live process of session ``session_id``, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session_id and fields[0] not in ("Z", "X"):  # field 6 of proc(5): session id
            pids.append(int(entry.name))
    return pids


def _create_database(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def new_restartable_deployment(base: Path) -> Iterator[RestartableDeployment]:
    """A ``RestartableDeployment`` in ``base``, not started yet: fresh instance and warehouse databases, an empty data
    root (the four market folders), run monitoring polling every second. Stopped and dropped at the end.
    """
    instance_db, warehouse_db = _create_database("mt_instance"), _create_database("mt_deploy")
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(monitored_instance_yaml(poll_interval_seconds=1), encoding="utf-8")
    data_root = base / "DATA"
    for folder in ("BIST", "Crypto", "NASDAQ", "NYSE"):
        (data_root / folder).mkdir(parents=True)
    admin = urlsplit(PG_ADMIN_URL)
    database_url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{warehouse_db}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYTRADER_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": admin.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(admin.port or 5432),
        "DAGSTER_PG_USER": admin.username or "postgres",
        "DAGSTER_PG_PASSWORD": admin.password or "",
        "DAGSTER_PG_DB": instance_db,
        "MYTRADER_DATA_ROOT": str(data_root),
        "MYTRADER_DATABASE_URL": database_url,
        "MYTRADER_FILE_SENSORS": "off",
    }
    deployment = RestartableDeployment(base, env, data_root, database_url)
    try:
        yield deployment
    finally:
        deployment.stop()
        _drop_database(instance_db)
        _drop_database(warehouse_db)


@pytest.fixture
def restartable_deployment(tmp_path: Path, pg_available: None) -> Iterator[RestartableDeployment]:
    """A ``RestartableDeployment`` for one test (see ``new_restartable_deployment``)."""
    with new_restartable_deployment(tmp_path) as deployment:
        yield deployment


# -- a real Chromium over the web UI -------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get if this machine lacks it."""
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            pytest.fail("chromium is missing and apt-get is not available to install it")
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=True,
            timeout=1200,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    """A headless Chromium driven by Playwright (Debian's build: no browser is downloaded)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot of ``page`` in ``test-artifacts/ui_<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"ui_{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
