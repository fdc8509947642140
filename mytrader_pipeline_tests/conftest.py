"""Shared fixtures: a fresh PostgreSQL database per test, a SQLite warehouse, sample trees, a Dagster instance."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.db import ensure_schema, make_engine
from mytrader_pipeline.settings import get_settings

warnings.filterwarnings("ignore", module="dagster")

PG_ADMIN_URL = os.environ.get("MYTRADER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings read anew in every test, so that environment variables it sets (``monkeypatch.setenv``) count.

    A test that changes the environment after something read the settings calls ``get_settings.cache_clear()``.
    """
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


@pytest.fixture(scope="session")
def pg_available() -> None:
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:  # CI starts PostgreSQL before the tests; locally it may be down
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    name = f"mt_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh PostgreSQL database with the warehouse schema."""
    engine = make_engine(pg_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine on a fresh SQLite warehouse file with the schema."""
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_engine(request: pytest.FixtureRequest) -> sa.Engine:
    """Each warehouse kind in turn: PostgreSQL (COPY fast path) and SQLite (generic path)."""
    return request.getfixturevalue("pg_engine" if request.param == "postgresql" else "sqlite_engine")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated Stock_Scrapper tree (read-only: copy it before changing files)."""
    from mytrader_pipeline.sampledata import generate_sample

    root = tmp_path_factory.mktemp("sample") / "DATA"
    generate_sample(root, seed=7, scale=0.05)
    return root


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """An empty data root with the four market folders."""
    root = tmp_path / "DATA"
    for folder in ("BIST", "Crypto", "NASDAQ", "NYSE"):
        (root / folder).mkdir(parents=True)
    return root
