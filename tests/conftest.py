"""Fixtures that isolate every test from the user's home, installed plugins and each other."""

from __future__ import annotations

import csv
from contextlib import contextmanager
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from importlib import invalidate_caches
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from click.testing import CliRunner

from crmkpi.cli import cli
from crmkpi.plugins import ENTRY_POINT_GROUP
from crmkpi.store import Store

#: The plugins most tests load; tests of other plugins select them (see ``kpi``).
BUILTIN_PLUGINS = "files,sales_metrics"
#: Every entry point this distribution provides.
ALL_BUILTINS = ("files,salesforce,hubspot,sales_metrics,pipeline_metrics,customer_metrics,marketing_metrics,"
                "service_metrics,data_health_metrics,notifiers")
#: The built-in metrics with a grouped compute (tests/test_grouped.py checks each against its per-cell one).
BUILT_IN_GROUPED = [
    "avg_deal_size", "avg_resolution_time", "cac", "cac_payback_months", "churn_rate", "close_rate", "clv",
    "completeness", "cost_per_lead", "cost_per_sale", "csat", "days_since_sync", "duplicate_accounts_rate",
    "duplicate_contacts_rate", "first_response_time", "gross_mrr_retention", "lead_conversion_rate",
    "marketing_roi", "net_mrr_retention", "net_new_revenue", "nps", "pipeline_value", "profit_margin_per_customer",
    "quota_attainment", "renewal_rate", "resolution_rate", "retention_rate", "sales_cycle_length", "sales_velocity",
    "sales_volume", "stage_length", "stale_open_deals", "ticket_volume", "upsell_rate", "win_rate"]
POSTGRES_ENV = "CRMKPI_TEST_POSTGRES_URL"
#: Plugin packages that tests install as third-party distributions (see ``install``).
PLUGIN_SOURCES = Path(__file__).resolve().parent / "plugins"
#: The example plugins, each a package of its own (see ``installed_examples``).
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


#: Examples per property test in the long run (``make reliability``).
LONG_EXAMPLES = 400


def property_settings(default: int) -> settings:
    """Hypothesis settings of a property test: ``default`` examples, so that ``make test`` takes seconds
    more; ``CRMKPI_HYPOTHESIS_EXAMPLES=N`` sets them, ``CRMKPI_RELIABILITY=long`` raises them to
    :data:`LONG_EXAMPLES`. Examples are whole syncs or runs: no deadline. The stores are module-scoped
    and each example sets up its own data, so function-scoped fixtures (the autouse ones) are harmless."""
    examples = int(os.environ.get("CRMKPI_HYPOTHESIS_EXAMPLES") or 0) or \
        (LONG_EXAMPLES if os.environ.get("CRMKPI_RELIABILITY") == "long" else default)
    return settings(max_examples=examples, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


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


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    name = f"crmkpi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_psycopg(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(_psycopg(server_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def store_url_for(kind: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A store URL of ``kind`` ("sqlite" or "postgresql") for module-scoped fixtures."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'store.db'}"
        return
    with temporary_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    with temporary_database(postgres_server_url) as url:
        yield url


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


class KpiProject:
    """A folder of CSV files in the normalized layout, synced and measured through the real CLI.

    ``write("orders", [{"id": "o1", ...}, ...])`` writes ``data/orders.csv``; ``sync()`` runs
    ``crmkpi sync``; ``run("clv", "--period", "2024")`` runs ``crmkpi run --format json`` and
    returns the parsed results (results are saved to ``metric_results`` as a user's would be); ``one(...)``
    expects exactly one; ``fails(...)`` expects a one-line error (exit status 1) and returns it;
    ``run_failing(...)`` expects a run in which some metric failed (exit status 3), ``error(...)`` one whose
    only result failed, and returns its error.
    """

    def __init__(self, folder: Path, store: str) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True)
        self.config = folder / "crmkpi.yaml"
        self.store = store
        self.configure()

    def configure(self, extra: str = "", files: str = "") -> None:
        """(Re)write the config; ``extra`` is more YAML (reporting:, targets:, metrics:), ``files`` more
        settings of the files connector (e.g. ``tables: {deals: {allow: [closed_before_created]}}``)."""
        self.config.write_text(f"store: {self.store}\n" + textwrap.dedent(extra)
                               + "\nconnectors:\n  crm:\n    type: files\n    path: data\n"
                               + textwrap.indent(textwrap.dedent(files), "    "))

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        with (self.data / f"{table}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)

    def invoke(self, command: str, *args: str):
        return CliRunner().invoke(cli, [command, "--config", str(self.config), *args], catch_exceptions=False)

    def sync(self) -> None:
        result = self.invoke("sync")
        assert result.exit_code == 0, result.output

    def run(self, metric: str | None, *args: str) -> list[dict[str, Any]]:
        """``crmkpi run [--metric METRIC] ARGS --format json``, parsed."""
        selection = ["--metric", metric] if metric else []
        result = self.invoke("run", *selection, *args, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def one(self, metric: str, *args: str) -> dict[str, Any]:
        results = self.run(metric, *args)
        assert len(results) == 1 and results[0]["metric"] == metric, results
        return results[0]

    def run_failing(self, metric: str | None, *args: str) -> tuple[list[dict[str, Any]], str]:
        """``crmkpi run ARGS --format json`` in which some metric fails: exit status 3, every result
        printed (a failed one with its ``error``), and a one-line summary on stderr, returned."""
        selection = ["--metric", metric] if metric else []
        result = self.invoke("run", *selection, *args, "--format", "json")
        assert result.exit_code == 3, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        return json.loads(result.stdout), lines[0].removeprefix("Error: ")

    def error(self, metric: str, *args: str) -> str:
        """The error of ``crmkpi run --metric METRIC ARGS`` whose one result failed."""
        [row], summary = self.run_failing(metric, *args)
        assert summary == f"{metric}: {row['error']}; no result computed"
        return row["error"]

    def fails(self, *args: str) -> str:
        result = self.invoke(*args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        return lines[0].removeprefix("Error: ")


@pytest.fixture
def kpi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KpiProject:
    """A KPI project on SQLite with every built-in plugin loaded."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    return KpiProject(tmp_path / "kpi", f"sqlite:///{tmp_path / 'kpi.db'}")


@pytest.fixture
def kpi_any_store(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KpiProject:
    """The same, once on SQLite and once on PostgreSQL."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    return KpiProject(tmp_path / "kpi", store_url)


@pytest.fixture
def deals_project(tmp_path: Path) -> Path:
    """A files project's config (not synced): 3 deals created in 2024 (amounts 500, 1500, 2500; closed after
    29 days (won, Q1), 31 days (lost, Q2), one open) and one created in 2023 (won after 162 days, in Q1)."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "deals.csv").write_text(
        "id,created_at,amount,currency,is_closed,is_won,closed_at\n"
        "a,2024-02-01T00:00:00Z,500,USD,true,true,2024-03-01T00:00:00Z\n"
        "b,2024-05-01T00:00:00Z,1500,USD,true,false,2024-06-01T00:00:00Z\n"
        "c,2024-08-01T00:00:00Z,2500,USD,false,false,\n"
        "d,2023-08-01T00:00:00Z,9000,USD,true,true,2024-01-10T00:00:00Z\n",
        encoding="utf-8")
    config = folder / "crmkpi.yaml"
    config.write_text(f"store: sqlite:///{folder / 'store.db'}\n"
                      "connectors:\n  crm:\n    type: files\n    path: data\n", encoding="utf-8")
    return config


@pytest.fixture(scope="session")
def tls_ca():
    """A certificate authority of the test run, which API emulators serve TLS under."""
    import trustme

    return trustme.CA()


@pytest.fixture
def install(tmp_path, monkeypatch):
    """install(dist, version, {entry point: module}) puts a fake installed distribution on sys.path."""
    site = tmp_path / "site-packages"
    site.mkdir()
    copied: list[str] = []

    def _install(dist: str, version: str, eps: dict[str, str]) -> Path:
        for module in {value.split(":")[0].split(".")[0] for value in eps.values()}:
            if (PLUGIN_SOURCES / module).is_dir() and not (site / module).exists():
                shutil.copytree(PLUGIN_SOURCES / module, site / module,
                                ignore=shutil.ignore_patterns("__pycache__"))
                copied.append(module)
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
                                       encoding="utf-8")
        lines = "".join(f"{name} = {value}\n" for name, value in eps.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}", encoding="utf-8")
        monkeypatch.syspath_prepend(str(site))
        invalidate_caches()
        return site

    yield _install
    for module in copied:  # the next test must import its own copy
        for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="session")
def installed_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example of examples/ pip-installed into one folder (put it on PYTHONPATH), as a user installs a
    plugin. Built from copies (``installed_examples / "sources" / NAME``, with their tests): an in-tree build
    would leave build/ and *.egg-info in examples/."""
    site = tmp_path_factory.mktemp("examples")
    sources = site / "sources"
    for example in EXAMPLES.iterdir():
        if (example / "pyproject.toml").is_file():
            shutil.copytree(example, sources / example.name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                                           "build"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), *(str(path) for path in sorted(sources.iterdir()))], check=True)
    return site


@pytest.fixture(autouse=True)
def forget_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secret, as a new process does (see ``crmkpi.redact``)."""
    import crmkpi.redact

    monkeypatch.setattr(crmkpi.redact, "_forms", set())
    monkeypatch.setattr(crmkpi.redact, "_pattern", None)
