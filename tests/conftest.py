"""Fixtures that isolate every test from the user's home, installed plugins and each other."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from crmkpi.store import Store

#: The entry points this distribution provides; tests load only these unless they mean otherwise.
BUILTIN_PLUGINS = "files,sales_metrics"
POSTGRES_ENV = "CRMKPI_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", BUILTIN_PLUGINS)
    monkeypatch.delenv("CRMKPI_CONFIG", raising=False)
    monkeypatch.delenv("CRMKPI_PREFETCH", raising=False)
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL tests need a server (CI sets it)")
    try:
        engine = create_engine(_psycopg(url), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # set but unreachable is a failure, not a skip
        pytest.fail(f"{POSTGRES_ENV} is set but the server is unreachable: {exc}")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str):
    """A fresh, empty database on the test server, dropped afterwards."""
    name = f"crmkpi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_psycopg(postgres_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(_psycopg(postgres_server_url)).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str):
    s = Store(store_url)
    yield s
    s.engine.dispose()


def _psycopg(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)
