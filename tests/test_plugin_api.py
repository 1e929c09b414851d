"""The plugin API's version and the ranges plugins declare (``CRMKPI_PLUGIN_API``), through the real CLI with
installed fixture plugins (tests/plugins/, see ``install`` in conftest.py); and a plugin written against
``from crmkpi import ...`` alone, whose metrics and connector work end to end."""

from __future__ import annotations

import json
import sqlite3
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

import crmkpi
from crmkpi import CrmkpiError, hookimpl, same_results
from crmkpi.cli import cli
from crmkpi.errors import PluginError
from crmkpi.plugin_api import in_range, parse_range
from crmkpi.plugins import Registry, load_registry

VERSION = crmkpi.__version__
HEADER = f"crmkpi {VERSION}, plugin API {crmkpi.PLUGIN_API_VERSION}"
OUT_OF_RANGE = (f"needs plugin API >=2.0,<3 (CRMKPI_PLUGIN_API), but crmkpi {VERSION} provides plugin API "
                f"{crmkpi.PLUGIN_API_VERSION}; not loaded")
MALFORMED = ("CRMKPI_PLUGIN_API '>= 1.0, and later' is not a version range: 'and later' is not a comparison such "
             "as '>=1.0' or '<2'; not loaded")


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def listed(*args: str) -> dict[str, dict]:
    result = invoke("plugins", "--json", *args)
    assert result.exit_code == 0, result.output
    return {info["name"]: info for info in json.loads(result.stdout)}


@pytest.fixture
def project(deals_project: Path) -> Path:
    return deals_project


@pytest.fixture
def api_plugins(install, monkeypatch):
    """The plugins of each kind of declaration, installed; ``select`` chooses which load."""
    install("api-v1", "1.0.0", {"api_v1": "api_v1_plugin"})
    install("api-v2", "2.0.0", {"api_v2": "api_v2_plugin"})
    install("api-malformed", "0.1", {"api_malformed": "api_malformed"})
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})  # declares nothing

    def select(plugins: str) -> None:
        monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", plugins)

    return select


# --- the declared range ------------------------------------------------------------------


def test_a_plugin_in_range_loads_and_shows_its_range(api_plugins, monkeypatch):
    api_plugins("files,api_v1,acme")
    infos = listed()
    assert infos["api_v1"]["plugin_api"] == {"declared": ">=1.0,<2", "running": crmkpi.PLUGIN_API_VERSION}
    assert (infos["api_v1"]["errors"], infos["api_v1"]["metrics"], infos["api_v1"]["connectors"]) == (
        [], ["api_deal_age", "api_closed_deals"], ["api_v1_source"])
    assert infos["files"]["plugin_api"] == {"declared": None, "running": crmkpi.PLUGIN_API_VERSION}
    result = invoke("plugins", "--strict")
    assert (result.exit_code, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == HEADER
    i = lines.index("api_v1  [api-v1 1.0.0]  api_v1_plugin")
    assert lines[i + 1:i + 4] == ["  connectors: api_v1_source", "  metrics: api_deal_age, api_closed_deals",
                                  "  plugin API: >=1.0,<2"]
    monkeypatch.setenv("CRMKPI_TRACE_PLUGINS", "1")
    assert (f"trace: plugin api_v1 (api-v1 1.0.0): CRMKPI_PLUGIN_API '>=1.0,<2': plugin API "
            f"{crmkpi.PLUGIN_API_VERSION} is in range" in invoke("metrics", "list").stderr.splitlines())


def test_a_plugin_without_a_declaration_loads(api_plugins):
    api_plugins("files,acme")
    assert listed()["acme"]["plugin_api"] == {"declared": None, "running": crmkpi.PLUGIN_API_VERSION}
    result = invoke("plugins", "--strict")
    assert result.exit_code == 0
    assert not any("plugin API:" in line for line in result.stdout.splitlines())


def test_a_plugin_out_of_range_is_reported_by_name_and_its_hooks_never_run(api_plugins):
    api_plugins("files,sales_metrics,api_v2,api_v1")
    registry = load_registry()
    future = registry.plugins["api_v2"]
    assert (future.errors, future.hooks, future.metrics, future.plugin_api) == ([OUT_OF_RANGE], [], [], ">=2.0,<3")
    assert "future_metric" not in registry.metrics and "api_deal_age" in registry.metrics  # the others load

    result = invoke("plugins")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    i = lines.index("api_v2  [api-v2 2.0.0]  api_v2_plugin")
    assert lines[i + 1:] == ["  plugin API: >=2.0,<3", f"  ERROR: {OUT_OF_RANGE}"]
    assert listed()["api_v2"]["errors"] == [OUT_OF_RANGE]

    strict = invoke("plugins", "--strict")
    assert (strict.exit_code, strict.stderr) == (1, f"Error: --strict: plugin api_v2 (api-v2 2.0.0): {OUT_OF_RANGE}\n")
    metrics = invoke("metrics", "list")
    assert metrics.exit_code == 0
    assert metrics.stderr == f"Warning: plugin api_v2 (api-v2 2.0.0): {OUT_OF_RANGE} (see `crmkpi plugins`)\n"
    assert [line.split()[0] for line in metrics.stdout.splitlines()] == [
        "api_closed_deals", "api_deal_age", "close_rate", "win_rate"]
    with pytest.raises(PluginError) as error:
        load_registry(strict=True)
    assert isinstance(error.value, CrmkpiError) and str(error.value) == f"plugin api_v2 (api-v2 2.0.0): {OUT_OF_RANGE}"


def test_a_malformed_declaration_is_reported_and_the_plugin_not_loaded(api_plugins):
    api_plugins("sales_metrics,api_malformed")
    registry = load_registry()
    assert registry.plugins["api_malformed"].errors == [MALFORMED] and registry.plugins["api_malformed"].hooks == []
    assert invoke("plugins").stdout.splitlines()[-1] == f"  ERROR: {MALFORMED}"
    strict = invoke("plugins", "--strict")
    assert (strict.exit_code, strict.stderr) == (1, f"Error: --strict: plugin api_malformed (api-malformed 0.1): "
                                                    f"{MALFORMED}\n")
    metrics = invoke("metrics", "list")
    assert metrics.exit_code == 0 and metrics.stderr.startswith("Warning: plugin api_malformed (api-malformed 0.1): ")


class _RaisingModule(types.ModuleType):
    """A module whose ``__getattr__`` (PEP 562) raises something else than AttributeError for the declaration."""

    def __getattr__(self, name: str):
        if name == "CRMKPI_PLUGIN_API":
            raise RuntimeError(f"lazy attribute {name} exploded")
        raise AttributeError(name)


@pytest.mark.parametrize("plugin, error", [
    (types.SimpleNamespace(CRMKPI_PLUGIN_API=1.0),
     "CRMKPI_PLUGIN_API must be a string such as '>=1.0,<2', got float 1.0; not loaded"),
    (types.SimpleNamespace(CRMKPI_PLUGIN_API=""),
     "CRMKPI_PLUGIN_API '' is not a version range: the range is empty; not loaded"),
    (_RaisingModule("lazy"),
     "reading CRMKPI_PLUGIN_API raised RuntimeError: lazy attribute CRMKPI_PLUGIN_API exploded; not loaded"),
])
def test_declarations_that_cannot_be_read_are_one_line_errors(plugin, error):
    registry = Registry()
    registry.add("odd", plugin)
    assert registry.plugins["odd"].errors == [error]


def test_no_declaration_and_none_are_no_objection():
    def register_metrics(register):
        pass

    registry = Registry()
    registry.add("plain", types.SimpleNamespace(register_metrics=hookimpl(register_metrics)))
    registry.add("none", types.SimpleNamespace(register_metrics=hookimpl(register_metrics), CRMKPI_PLUGIN_API=None))
    assert registry.errors() == []
    assert registry.plugins["plain"].hooks == registry.plugins["none"].hooks == ["register_metrics"]


@pytest.mark.parametrize("declared, running, inside", [
    (">=1.0,<2", "1.0", True), (">=1.0,<2", "1.7", True), (">=1.0,<2", "2.0", False), (" >= 1.1 , < 2 ", "1.0", False),
    ("~=1.2", "1.2", True), ("~=1.2", "1.9", True), ("~=1.2", "1.1", False), ("~=1.2", "2.0", False),
    ("==1.*", "1.4", True), ("==1.*", "2.0", False), ("!=1.3", "1.3", False), ("!=1.*", "2.1", True),
    ("==1", "1.0", True), (">1", "1.0", False), (">1", "1.1", True), ("<=1.0", "1.0", True),
])
def test_ranges_read_as_pip_reads_version_specifiers(declared, running, inside):
    assert in_range(running, declared) is inside


@pytest.mark.parametrize("declared, error", [
    ("", "the range is empty"), (">=1.0,", "'' is not a comparison such as '>=1.0' or '<2'"),
    ("1.0", "'1.0' is not a comparison such as '>=1.0' or '<2'"),
    (">=1.0rc1", "'>=1.0rc1' is not a comparison such as '>=1.0' or '<2'"),
    ("~=1", "'~=1': ~= needs a version of two parts or more, such as '~=1.0'"),
    ("<2.*", "'<2.*': only == and != take a '.*'"), ("===1.0", "'===1.0' is not a comparison such as '>=1.0' or '<2'"),
])
def test_malformed_ranges_say_which_clause(declared, error):
    with pytest.raises(ValueError) as raised:
        parse_range(declared)
    assert str(raised.value) == error


# --- a plugin written against the public API alone -------------------------------------------


def run(project: Path, *args: str) -> list[dict]:
    result = invoke("run", "--config", str(project), "--format", "json", "--no-save", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_public_api_plugins_metrics_compute_both_ways(api_plugins, project):
    api_plugins("files,api_v1")
    synced = invoke("sync", "--config", str(project))
    assert synced.exit_code == 0, synced.output
    [year] = run(project, "--metric", "api_deal_age", "--period", "2024")
    assert (year["value"], year["numerator"], year["denominator"]) == (pytest.approx(74.0), 222.0, 3)
    assert year["note"] is None
    [median] = run(project, "--metric", "api_deal_age", "--period", "2024", "--param", "stat=median")
    assert (median["value"], median["numerator"], median["denominator"]) == (pytest.approx(31.0), None, 3)

    for stat in ("mean", "p90"):
        # a series takes the grouped compute, each single period the per-cell one: they agree
        series = run(project, "--metric", "api_deal_age", "--metric", "api_closed_deals", "--period", "2024",
                     "--grain", "quarter", "--param", f"stat={stat}")
        cells = [row for quarter in range(1, 5) for row in run(
            project, "--metric", "api_deal_age", "--metric", "api_closed_deals", "--period", f"2024-Q{quarter}",
            "--param", f"stat={stat}")]
        assert same_results(_values(series), _values(cells))
    assert [(r["period"], r["value"]) for r in series if r["metric"] == "api_closed_deals"] == [
        ("2024-Q1", 2.0), ("2024-Q2", 1.0), ("2024-Q3", 0.0), ("2024-Q4", 0.0)]

    refused = invoke("run", "--config", str(project), "--metric", "api_deal_age", "--period", "2024",
                     "--param", "min_amount=-1")
    assert (refused.exit_code, refused.stderr) == (1, "Error: api_deal_age: param min_amount: must be 0 or more, "
                                                      "got -1\n")


def _values(rows: list[dict]) -> list[tuple]:
    return sorted((r["metric"], r["period"], r["value"], r["numerator"], r["denominator"], r["note"]) for r in rows)


def test_the_public_api_plugins_connector_syncs(api_plugins, tmp_path):
    api_plugins("api_v1")
    store = tmp_path / "users.db"
    config = tmp_path / "users.yaml"
    config.write_text(f"store: sqlite:///{store}\nconnectors:\n  people:\n    type: api_v1_source\n"
                      "    start_date: 2024-01-01\n    users:\n"
                      "      - {id: u1, full_name: Ada, team: East}\n"
                      "      - {id: u2, full_name: Grace, nickname: G}\n", encoding="utf-8")
    result = invoke("sync", "--config", str(config))
    assert result.exit_code == 0, result.output
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT id, name, team, source, extra FROM users ORDER BY id").fetchall()
        cursor = conn.execute("SELECT cursor FROM sync_state").fetchall()
    assert rows == [("u1", "Ada", "East", "people", None), ("u2", "Grace", None, "people", '{"nickname":"G"}')]
    assert cursor == [("page-1",)]
