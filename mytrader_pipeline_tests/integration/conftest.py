"""Integration fixtures: a running ``dagster dev`` (web server + daemon) on free ports against a fresh warehouse."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

PG_ADMIN_URL = os.environ.get("MYTRADER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
READY_TIMEOUT_SECONDS = 180
REPOSITORIES = "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name jobs { name } } } } }"


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
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            data = requests.post(f"{url}/graphql", json={"query": REPOSITORIES}, timeout=5).json()["data"]
            if data["repositoriesOrError"]["__typename"] == "RepositoryConnection":
                return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"dagster dev not ready after {READY_TIMEOUT_SECONDS}s:\n{log_path.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group of ``dagster dev`` (web server, daemon, code server, run workers)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


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
        _wait_ready(url, process, log_path)
        yield Deployment(url, data_root, deployment_database, home, log_path)
    finally:
        _stop(process)
