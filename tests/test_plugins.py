"""Plugin discovery through real entry points, failure isolation, duplicates, strict mode, ``crmkpi plugins``,
diagnostics (unknown hooks, wrong types, ``--strict``, tracing, the config's allow and deny lists).

Third-party plugins are "installed" for real: a ``<name>-<version>.dist-info`` folder (METADATA and
``entry_points.txt`` in the ``crmkpi`` group) next to the plugin package (copied from tests/plugins/)
in a temporary folder put on ``sys.path``, where ``importlib.metadata`` finds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner

import crmkpi
from conftest import ALL_BUILTINS
from crmkpi.cli import cli
from crmkpi.connectors.files.settings import FilesSettings
from crmkpi.errors import PluginError, Terminated
from crmkpi.plugins import (ENTRY_POINT_GROUP, PluginInfo, Registry, installed_entry_points, load_registry,
                            selected_entry_points)

ROOT = Path(__file__).resolve().parent.parent
VERSION = crmkpi.__version__
BUILTIN = "files,sales_metrics"
#: The first line of `crmkpi plugins`.
HEADER = f"crmkpi {VERSION}, plugin API {crmkpi.PLUGIN_API_VERSION}"
#: A plugin's ``plugin_api`` in ``crmkpi plugins --json`` when it declares no range (tests/test_plugin_api.py has those).
UNDECLARED = {"declared": None, "running": crmkpi.PLUGIN_API_VERSION}

FILES_INFO = {"name": "files", "module": "crmkpi.connectors.files", "distribution": "crmkpi", "version": VERSION,
              "hooks": ["register_connectors"], "metrics": [], "connectors": ["files"], "notifiers": [], "errors": [],
              "plugin_api": UNDECLARED}
SALES_INFO = {"name": "sales_metrics", "module": "crmkpi.metrics_plugins.sales", "distribution": "crmkpi",
              "version": VERSION, "hooks": ["register_metrics"], "metrics": ["close_rate", "win_rate"],
              "connectors": [], "notifiers": [], "errors": [], "plugin_api": UNDECLARED}


def select(monkeypatch, plugins: str | None) -> None:
    if plugins is None:
        monkeypatch.delenv("CRMKPI_LOAD_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", plugins)


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def plugins_json() -> dict[str, dict]:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    infos = json.loads(result.stdout)
    return {info["name"]: info for info in infos}


@pytest.fixture
def project(deals_project: Path) -> Path:
    return deals_project


def sync(config: Path) -> None:
    result = invoke("sync", "--config", str(config))
    assert result.exit_code == 0, result.output


# --- built-ins ----------------------------------------------------------------------


def test_builtins_are_declared_in_the_crmkpi_entry_point_group():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["entry-points"]
    assert declared[ENTRY_POINT_GROUP] == {
        "files": "crmkpi.connectors.files", "salesforce": "crmkpi.connectors.salesforce",
        "hubspot": "crmkpi.connectors.hubspot", "sales_metrics": "crmkpi.metrics_plugins.sales",
        "pipeline_metrics": "crmkpi.metrics_plugins.pipeline", "customer_metrics": "crmkpi.metrics_plugins.customers",
        "marketing_metrics": "crmkpi.metrics_plugins.marketing", "service_metrics": "crmkpi.metrics_plugins.service",
        "data_health_metrics": "crmkpi.metrics_plugins.data_health", "notifiers": "crmkpi.notifiers"}
    assert set(declared[ENTRY_POINT_GROUP]) == set(ALL_BUILTINS.split(","))
    installed = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for name, value in declared[ENTRY_POINT_GROUP].items():
        assert installed[name].value == value
        assert installed[name].dist.metadata["Name"] == "crmkpi"


def test_builtins_load_through_the_entry_points():
    registry = load_registry()
    assert [p.as_dict() for p in registry.plugins.values()] == [FILES_INFO, SALES_INFO]
    assert registry.errors() == []
    assert registry.connector_type("files").settings is FilesSettings
    assert registry.provider_of("metric", "win_rate").describe() == f"sales_metrics (crmkpi {VERSION})"
    assert registry.provider_of("connector", "files").name == "files"


def listed(info: dict) -> dict:
    """A built-in's entry in ``crmkpi plugins --json``: its info, and which of its metrics have no grouped compute."""
    return {**info, "metrics_cell_by_cell": []}


def test_plugins_json_lists_the_builtins():
    assert plugins_json() == {"files": listed(FILES_INFO), "sales_metrics": listed(SALES_INFO)}


def test_plugins_table_lists_the_builtins():
    result = invoke("plugins")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        HEADER,
        f"files  [crmkpi {VERSION}]  crmkpi.connectors.files",
        "  connectors: files",
        f"sales_metrics  [crmkpi {VERSION}]  crmkpi.metrics_plugins.sales",
        "  metrics: close_rate, win_rate",
    ]


# --- a good third-party plugin --------------------------------------------------------


def test_third_party_plugin_is_listed_with_its_distribution(install, monkeypatch):
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    select(monkeypatch, "files,sales_metrics,acme")
    infos = plugins_json()
    assert infos["acme"] == {"name": "acme", "module": "good_metrics", "distribution": "acme-crm-metrics",
                             "version": "1.2.3", "hooks": ["register_metrics"], "metrics": ["deals_created"],
                             "connectors": [], "notifiers": [], "errors": [], "metrics_cell_by_cell": ["deals_created"],
                             "plugin_api": UNDECLARED}
    assert infos["files"] == listed(FILES_INFO) and infos["sales_metrics"] == listed(SALES_INFO)
    table = invoke("plugins").stdout.splitlines()
    i = table.index("acme  [acme-crm-metrics 1.2.3]  good_metrics")
    assert table[i + 1:i + 3] == ["  metrics: deals_created",
                                  "  note: computed cell by cell, the slow path for series and segments (no grouped "
                                  "compute): deals_created"]


def test_third_party_metric_works_through_the_cli(install, monkeypatch, project):
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    select(monkeypatch, "files,sales_metrics,acme")
    sync(project)
    listed = invoke("metrics", "list").stdout
    assert "deals_created  Deals created (count, higher is better)" in listed.splitlines()
    shown = invoke("metrics", "show", "deals_created").stdout
    assert "Plugin: acme (acme-crm-metrics 1.2.3)" in shown
    assert "  min_amount (float, default 0.0): only deals of at least this amount" in shown

    result = invoke("run", "--config", str(project), "--metric", "deals_created", "--period", "2024",
                    "--format", "json", "--no-save")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["metric"], row["value"], row["unit"], row["params"]) == ("deals_created", 3.0, "count",
                                                                         {"min_amount": 0.0})
    result = invoke("run", "--config", str(project), "--metric", "deals_created", "--metric", "close_rate",
                    "--period", "2024", "--param", "min_amount=1000", "--format", "json", "--no-save")
    mine, close = json.loads(result.stdout)
    assert (mine["value"], mine["params"]) == (2.0, {"min_amount": 1000.0})
    assert (close["metric"], close["numerator"], close["denominator"]) == ("close_rate", 1, 3)
    # the third-party metric is configurable like a built-in one
    project.write_text(project.read_text() + "metrics:\n  deals_created:\n    params: {min_amount: 2000}\n")
    assert invoke("validate", "--config", str(project)).exit_code == 0
    [row] = json.loads(invoke("run", "--config", str(project), "-p", "2024", "--format", "json", "--no-save").stdout)
    assert (row["metric"], row["value"]) == ("deals_created", 1.0)


# --- CRMKPI_LOAD_PLUGINS ------------------------------------------------------------


def test_unset_selection_loads_every_installed_plugin(install, monkeypatch):
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    select(monkeypatch, None)
    registry = load_registry()
    everything = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert set(registry.plugins) == everything
    assert {"files", "sales_metrics", "acme"} <= everything
    assert {"close_rate", "win_rate", "deals_created"} <= set(registry.metrics)
    # built-ins first, then the rest by name
    names = list(registry.plugins)
    assert names == sorted(ALL_BUILTINS.split(",")) + ["acme"]


def test_empty_selection_loads_nothing(install, monkeypatch):
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    select(monkeypatch, "")
    registry = load_registry()
    assert registry.plugins == {} and registry.metrics == {} and registry.connectors == {}
    result = invoke("plugins")
    assert result.exit_code == 0 and result.stdout == f"{HEADER}\nNo plugins loaded (check CRMKPI_LOAD_PLUGINS).\n"
    assert json.loads(invoke("plugins", "--json").stdout) == []
    assert invoke("metrics", "list").stdout == ""


def test_a_list_selects_only_those(install, monkeypatch):
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    select(monkeypatch, "acme")
    registry = load_registry()
    assert list(registry.plugins) == ["acme"] and list(registry.metrics) == ["deals_created"]
    assert registry.connectors == {}
    select(monkeypatch, " files , acme,not-installed ")
    registry = load_registry()
    assert list(registry.plugins) == ["files", "acme"]
    assert [ep.name for ep in selected_entry_points()] == ["files", "acme"]
    assert "good_metrics" in sys.modules
    select(monkeypatch, "files")
    assert [ep.name for ep in selected_entry_points()] == ["files"]


def test_unselected_plugins_are_not_even_imported(install, monkeypatch):
    install("broken-plugin", "0.1.0", {"broken": "broken_import"})
    select(monkeypatch, BUILTIN)
    registry = load_registry()
    assert "broken" not in registry.plugins and registry.errors() == []
    assert "broken_import" not in sys.modules


# --- failures are isolated ----------------------------------------------------------


def test_plugin_that_fails_to_import_is_reported_and_the_rest_works(install, monkeypatch, project):
    install("broken-plugin", "0.1.0", {"broken": "broken_import"})
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    select(monkeypatch, "files,sales_metrics,broken,acme")
    registry = load_registry()
    broken = registry.plugins["broken"]
    assert (broken.distribution, broken.version, broken.module) == ("broken-plugin", "0.1.0", "broken_import")
    assert broken.errors == ["failed to load broken_import: RuntimeError: plugin import exploded"]
    assert broken.metrics == [] and broken.connectors == [] and broken.hooks == []
    assert registry.errors() == [
        "plugin broken (broken-plugin 0.1.0): failed to load broken_import: RuntimeError: plugin import exploded"]
    assert set(registry.metrics) == {"close_rate", "win_rate", "deals_created"}

    # `crmkpi plugins` shows it, with its error, and exits 0
    result = invoke("plugins")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    i = lines.index("broken  [broken-plugin 0.1.0]  broken_import")
    assert lines[i + 1] == "  ERROR: failed to load broken_import: RuntimeError: plugin import exploded"
    assert plugins_json()["broken"]["errors"] == broken.errors

    # every other command keeps working and warns once, on stderr
    warning = ("Warning: plugin broken (broken-plugin 0.1.0): failed to load broken_import: RuntimeError: "
               "plugin import exploded (see `crmkpi plugins`)\n")
    listed = invoke("metrics", "list")
    assert listed.exit_code == 0 and listed.stderr == warning
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["close_rate", "deals_created", "win_rate"]
    validated = invoke("validate", "--config", str(project))
    assert validated.exit_code == 0 and validated.stderr == warning
    sync(project)
    result = invoke("run", "--config", str(project), "--period", "2024", "--format", "json", "--no-save")
    assert result.exit_code == 0 and result.stderr == warning
    assert {r["metric"]: r["value"] for r in json.loads(result.stdout)} == {
        "close_rate": pytest.approx(1 / 3), "win_rate": pytest.approx(2 / 3), "deals_created": 3.0}


def test_an_interrupted_import_stops_the_command_instead_of_failing_the_plugin(install, monkeypatch):
    """SIGTERM landing in a plugin's import (a kill trial found it inside pydantic's ``__set_name__``) must
    stop crmkpi as a SIGTERM does, not be reported as a broken plugin while the command goes on."""
    install("interrupted-plugin", "0.1.0", {"interrupted": "interrupted_import"})
    select(monkeypatch, "files,interrupted")
    with pytest.raises(Terminated):
        load_registry()


def test_missing_module_is_reported(install, monkeypatch):
    install("ghost", "9.9", {"ghost": "no_such_module_anywhere", "attr": "good_metrics:no_such_attribute"})
    select(monkeypatch, "files,ghost,attr")
    registry = load_registry()
    [ghost_error] = registry.plugins["ghost"].errors
    assert ghost_error.startswith("failed to load no_such_module_anywhere: ModuleNotFoundError: ")
    assert "no_such_module_anywhere" in ghost_error.split(": ", 2)[2]
    [attr_error] = registry.plugins["attr"].errors
    assert attr_error.startswith("failed to load good_metrics:no_such_attribute: AttributeError: ")
    assert list(registry.connectors) == ["files"]


def test_plugin_whose_hook_raises(install, monkeypatch):
    install("flaky", "3.0", {"flaky": "failing_hook"})
    select(monkeypatch, "sales_metrics,flaky")
    registry = load_registry()
    flaky = registry.plugins["flaky"]
    assert flaky.hooks == ["register_metrics"]
    assert flaky.errors == ["register_metrics: hook exploded: no API key"]
    # what it registered before raising is kept, as every valid item is
    assert flaky.metrics == ["half_registered"]
    assert list(registry.metrics) == ["close_rate", "win_rate", "half_registered"]
    result = invoke("plugins")
    assert result.exit_code == 0
    assert "  ERROR: register_metrics: hook exploded: no API key" in result.stdout.splitlines()


def test_registering_the_wrong_type(install, monkeypatch):
    install("wrongly", "1.0", {"wrongly": "wrong_type"})
    select(monkeypatch, "files,sales_metrics,wrongly")
    registry = load_registry()
    assert sorted(registry.plugins["wrongly"].errors) == [
        "register_connectors: register() expects a ConnectorType, got Metric 'misfiled'",
        "register_metrics: register() expects a Metric, got dict",
    ]
    assert "misfiled" not in registry.metrics and "dict_metric" not in registry.metrics
    assert list(registry.connectors) == ["files"] and list(registry.metrics) == ["close_rate", "win_rate"]


def test_hook_with_a_wrong_signature_is_rejected(install, monkeypatch):
    install("badsig", "1.0", {"badsig": "bad_signature"})
    select(monkeypatch, "sales_metrics,badsig")
    registry = load_registry()
    assert registry.plugins["badsig"].errors == [
        "invalid plugin: Plugin 'badsig' for hook 'register_metrics'; hookimpl definition: "
        "register_metrics(register, registry); Argument(s) {'registry'} are declared in the hookimpl "
        "but can not be found in the hookspec"]
    assert list(registry.metrics) == ["close_rate", "win_rate"]
    result = invoke("metrics", "list")  # the warning about it is one line too
    assert result.exit_code == 0 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Warning: plugin badsig (badsig 1.0): invalid plugin: ")


def test_duplicate_metric_id_names_both_plugins_and_is_not_registered(install, monkeypatch):
    # "dupes" sorts before "sales_metrics": built-ins still load first and keep their ids
    install("dup-metrics", "2.0.0", {"dupes": "duplicate_metric"})
    select(monkeypatch, "dupes,sales_metrics")
    registry = load_registry()
    assert list(registry.plugins) == ["sales_metrics", "dupes"]
    expected = ("plugin dupes (dup-metrics 2.0.0): register_metrics: duplicate metric id 'close_rate': "
                f"already provided by sales_metrics (crmkpi {VERSION})")
    assert registry.errors() == [expected]
    assert registry.metrics["close_rate"].title == "Close rate"
    assert registry.provider_of("metric", "close_rate").name == "sales_metrics"
    assert registry.plugins["dupes"].metrics == []
    assert registry.plugins["sales_metrics"].metrics == ["close_rate", "win_rate"]
    assert plugins_json()["dupes"]["errors"] == [expected.split(": ", 1)[1]]


def test_duplicate_connector_type(install, monkeypatch):
    install("other-files", "0.5", {"otherfiles": "duplicate_connector"})
    select(monkeypatch, "files,otherfiles")
    registry = load_registry()
    assert registry.plugins["otherfiles"].errors == [
        f"register_connectors: duplicate connector id 'files': already provided by files (crmkpi {VERSION})"]
    assert registry.connector_type("files").settings is FilesSettings
    assert registry.plugins["otherfiles"].connectors == []


def test_an_entry_point_name_taken_by_a_builtin_does_not_replace_it(install, monkeypatch):
    install("acme-crm-metrics", "1.2.3", {"files": "good_metrics"})
    select(monkeypatch, BUILTIN)
    registry = load_registry()
    assert registry.plugins["files"].as_dict() == FILES_INFO
    assert registry.provider_of("connector", "files").describe() == f"files (crmkpi {VERSION})"
    assert registry.errors() == [
        f"plugin files (acme-crm-metrics 1.2.3): plugin name 'files' is already taken by files (crmkpi {VERSION})"]
    assert "good_metrics" not in sys.modules and "deals_created" not in registry.metrics
    listed = json.loads(invoke("plugins", "--json").stdout)
    assert [(p["name"], p["distribution"]) for p in listed] == [
        ("files", "crmkpi"), ("sales_metrics", "crmkpi"), ("files", "acme-crm-metrics")]


def test_the_same_plugin_name_twice_keeps_the_first():
    from crmkpi.metrics_plugins import sales

    registry = Registry()
    registry.add("sales", sales)
    assert registry.plugins["sales"].metrics == ["close_rate", "win_rate"]
    other = type("Other", (), {"__name__": "other_module"})()
    registry.add("sales", other)
    assert registry.plugins["sales"].module == "crmkpi.metrics_plugins.sales"
    assert registry.plugins["sales (other_module)"].errors == ["plugin name 'sales' is already taken by sales"]
    registry.add("again", sales)  # pluggy refuses the same object under a second name
    [message] = registry.plugins["again"].errors
    assert message.startswith("invalid plugin: ") and "\n" not in message
    assert registry.provider_of("metric", "close_rate").name == "sales"
    assert registry.plugins["again"].metrics == []


# --- strict mode ----------------------------------------------------------------------


def test_strict_mode_raises_on_import_failure(install, monkeypatch):
    install("broken-plugin", "0.1.0", {"broken": "broken_import"})
    select(monkeypatch, "files,broken")
    with pytest.raises(PluginError) as err:
        load_registry(strict=True)
    assert str(err.value) == ("plugin broken (broken-plugin 0.1.0): failed to load broken_import: "
                              "RuntimeError: plugin import exploded")
    assert load_registry().plugins["files"].errors == []  # lenient by default


@pytest.mark.parametrize(
    "dist, module, message",
    [
        ("flaky", "failing_hook", "plugin flaky (flaky 1.0): register_metrics: hook exploded: no API key"),
        ("dupes", "duplicate_metric", "plugin dupes (dupes 1.0): register_metrics: duplicate metric id "
                                      f"'close_rate': already provided by sales_metrics (crmkpi {VERSION})"),
        ("wrongly", "wrong_type", "plugin wrongly (wrongly 1.0): register_connectors: register() expects a "
                                  "ConnectorType, got Metric 'misfiled'"),
    ],
)
def test_strict_mode_raises_on_hook_failures(install, monkeypatch, dist, module, message):
    install(dist, "1.0", {dist: module})
    select(monkeypatch, f"sales_metrics,{dist}")
    with pytest.raises(PluginError) as err:
        load_registry(strict=True)
    assert str(err.value) == message


class _FailingPlugin:
    @crmkpi.hookimpl
    def register_metrics(self, register):
        raise RuntimeError("nope")


def test_strict_registry_raises_where_a_lenient_one_records():
    lenient = Registry()
    lenient.add("bad", _FailingPlugin())
    assert lenient.plugins["bad"].errors == ["register_metrics: nope"]
    with pytest.raises(PluginError, match=r"^plugin bad: register_metrics: nope$"):
        Registry(strict=True).add("bad", _FailingPlugin())


def test_plugin_info_describe():
    assert PluginInfo("x", "m", "dist", "1.0").describe() == "x (dist 1.0)"
    assert PluginInfo("x", "m").describe() == "x"


def test_loading_the_builtins_leaves_the_api_client_libraries_unimported():
    # Every crmkpi command loads every plugin; the API clients are imported only by a sync that needs them.
    code = ("import sys; from crmkpi.plugins import load_registry; load_registry(); "
            "print(sorted(m for m in ('simple_salesforce', 'hubspot', 'requests', 'zeep') if m in sys.modules))")
    env = {**os.environ, "CRMKPI_LOAD_PLUGINS": ALL_BUILTINS}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


# --- diagnostics ----------------------------------------------------------------------


def test_an_unknown_hook_is_an_error_with_a_did_you_mean_and_the_valid_hooks_load(install, monkeypatch):
    install("misnamed", "1.0", {"misnamed": "misnamed_hook"})
    select(monkeypatch, "misnamed")
    errors = ["unknown hook 'on_startup' (hooks: register_connectors, register_metrics, register_notifiers)",
              "unknown hook 'register_metric'; did you mean 'register_metrics' or 'register_notifiers'?"]
    info = plugins_json()["misnamed"]
    assert (info["hooks"], info["connectors"], info["errors"]) == (["register_connectors"], ["misnamed_source"],
                                                                   errors)
    assert invoke("plugins").stdout.splitlines() == [HEADER, "misnamed  [misnamed 1.0]  misnamed_hook",
                                                     "  connectors: misnamed_source",
                                                     *(f"  ERROR: {error}" for error in errors)]
    listed = invoke("metrics", "list")
    assert listed.exit_code == 0
    assert listed.stderr.splitlines() == [f"Warning: plugin misnamed (misnamed 1.0): {error} (see `crmkpi plugins`)"
                                          for error in errors]


@pytest.mark.parametrize(("module", "error"), [
    ("unmarked_hook", "register_metrics not marked @crmkpi.hookimpl: nothing is registered"),
    ("no_hooks", "implements no hook (functions marked @crmkpi.hookimpl, named after a hook: register_connectors, "
                 "register_metrics, register_notifiers)"),
])
def test_a_plugin_that_implements_no_hook_is_an_error(install, monkeypatch, module, error):
    install("hookless", "1.0", {"hookless": module})
    select(monkeypatch, "sales_metrics,hookless")
    assert plugins_json()["hookless"]["errors"] == [error]
    assert invoke("plugins").stdout.splitlines()[-1] == f"  ERROR: {error}"
    listed = invoke("metrics", "list")
    assert (listed.exit_code, listed.stderr) == (0, f"Warning: plugin hookless (hookless 1.0): {error} (see `crmkpi "
                                                    f"plugins`)\n")
    assert invoke("plugins", "--strict").exit_code == 1


def test_each_invalid_registration_is_an_error_of_its_own_and_the_valid_items_load(install, monkeypatch):
    install("mixed", "1.0", {"mixed": "mixed_items"})
    select(monkeypatch, "sales_metrics,mixed")
    errors = [
        "register_metrics: register() expects a Metric, got dict",
        f"register_metrics: duplicate metric id 'close_rate': already provided by sales_metrics (crmkpi {VERSION})",
        "register_metrics: register() expects a Metric, got ConnectorType 'misfiled_source'",
        "register_metrics: duplicate metric id 'first_good': already provided by mixed (mixed 1.0)",
    ]
    info = plugins_json()["mixed"]
    assert (info["metrics"], info["errors"]) == (["first_good", "second_good"], errors)
    lines = invoke("plugins").stdout.splitlines()
    assert lines[lines.index("mixed  [mixed 1.0]  mixed_items") + 1:] == [
        "  metrics: first_good, second_good",
        "  note: computed cell by cell, the slow path for series and segments (no grouped compute): first_good, "
        "second_good",
        *(f"  ERROR: {error}" for error in errors)]
    listed = invoke("metrics", "list")
    assert listed.stderr.splitlines() == [f"Warning: plugin mixed (mixed 1.0): {error} (see `crmkpi plugins`)"
                                          for error in errors]
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["close_rate", "first_good", "second_good",
                                                                        "win_rate"]
    assert invoke("metrics", "show", "close_rate").stdout.startswith("close_rate: Close rate\n")


def test_a_metric_returning_the_wrong_type_is_an_error_naming_it_and_the_type(install, monkeypatch, project):
    install("wrong-value", "1.0", {"wrong": "wrong_value"})
    select(monkeypatch, "files,wrong")
    sync(project)
    run = ("run", "--config", str(project), "--period", "2024", "--format", "json", "--no-save")
    result = invoke(*run, "--metric", "float_metric")
    assert result.exit_code == 3
    [row] = json.loads(result.stdout)
    assert (row["value"], row["error"]) == (None, "compute returned float, expected Value")
    assert result.stderr == "Error: float_metric: compute returned float, expected Value; no result computed\n"
    explained = invoke("explain", "--config", str(project), "float_metric", "--period", "2024")
    assert (explained.exit_code, explained.stderr) == (1, "Error: float_metric: compute returned float, expected "
                                                          "Value\n")
    # A series uses the grouped compute: what it returns wrong is every cell's error, not retried cell by cell
    # (compute would give 1.0 in each).
    result = invoke(*run, "--metric", "grouped_floats", "--metric", "grouped_list", "--grain", "quarter")
    assert result.exit_code == 3
    floats = "grouped returned a dict of Cell to float, expected a dict of Cell to Value"
    listed = "grouped returned list, expected a dict of Cell to Value"
    assert [(r["metric"], r["period"], r["value"], r["error"]) for r in json.loads(result.stdout)] == [
        *(("grouped_floats", f"2024-Q{q}", None, floats) for q in range(1, 5)),
        *(("grouped_list", f"2024-Q{q}", None, listed) for q in range(1, 5))]
    assert result.stderr == f"Error: grouped_floats: {floats}; 1 more metric failed (grouped_list); no result computed\n"


def test_plugins_strict_fails_after_the_listing_when_a_plugin_has_an_error(install, monkeypatch):
    install("broken-plugin", "0.1.0", {"broken": "broken_import"})
    select(monkeypatch, "files")
    assert invoke("plugins", "--strict").exit_code == 0
    select(monkeypatch, "files,broken")
    error = ("Error: --strict: plugin broken (broken-plugin 0.1.0): failed to load broken_import: RuntimeError: "
             "plugin import exploded\n")
    result = invoke("plugins", "--strict")
    assert (result.exit_code, result.stderr) == (1, error)
    assert result.stdout.splitlines() == [
        HEADER, f"files  [crmkpi {VERSION}]  crmkpi.connectors.files", "  connectors: files",
        "broken  [broken-plugin 0.1.0]  broken_import",
        "  ERROR: failed to load broken_import: RuntimeError: plugin import exploded"]
    result = invoke("plugins", "--strict", "--json")
    assert (result.exit_code, result.stderr) == (1, error)
    assert [info["name"] for info in json.loads(result.stdout)] == ["files", "broken"]
    assert invoke("plugins").exit_code == 0  # without --strict the listing is all


def test_an_unknown_name_in_crmkpi_load_plugins_is_a_warning_with_a_did_you_mean_once_per_command(
        install, monkeypatch, project):
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    select(monkeypatch, "files,sales_metrics,acmee,zzz")
    sync(project)
    warnings = ["Warning: CRMKPI_LOAD_PLUGINS: no installed plugin is named 'acmee'; did you mean 'acme'?",
                "Warning: CRMKPI_LOAD_PLUGINS: no installed plugin is named 'zzz'"]
    listed = invoke("metrics", "list")
    assert listed.exit_code == 0 and listed.stderr.splitlines() == warnings
    result = invoke("run", "--config", str(project), "--period", "2024", "--format", "json", "--no-save")
    assert result.exit_code == 0 and result.stderr.splitlines() == warnings
    result = invoke("plugins", "--strict")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [*warnings, "Error: --strict: CRMKPI_LOAD_PLUGINS: no installed plugin is "
                                                     "named 'acmee'; did you mean 'acme'?; 1 more problem"]
    assert [line for line in result.stdout.splitlines() if not line.startswith(" ")] == [HEADER,
        f"files  [crmkpi {VERSION}]  crmkpi.connectors.files", f"sales_metrics  [crmkpi {VERSION}]  "
                                                               "crmkpi.metrics_plugins.sales"]


def test_crmkpi_trace_plugins_prints_every_hook_call(install, monkeypatch):
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    install("wrongly", "1.0", {"wrongly": "wrong_type"})
    install("flaky", "3.0", {"flaky": "failing_hook"})
    select(monkeypatch, "acme,wrongly,flaky")
    monkeypatch.setenv("CRMKPI_TRACE_PLUGINS", "1")
    acme, wrongly, flaky = ("trace: plugin acme (acme-crm-metrics 1.2.3): ", "trace: plugin wrongly (wrongly 1.0): ",
                            "trace: plugin flaky (flaky 3.0): ")
    traced = [
        f"{acme}register_metrics(register=<callback>)",
        f"{acme}register(Metric 'deals_created') -> registered",
        f"{acme}register_metrics -> returned; registered: deals_created",
        f"{flaky}register_metrics(register=<callback>)",
        f"{flaky}register(Metric 'half_registered') -> registered",
        f"{flaky}register_metrics -> raised ValueError: hook exploded: no API key; registered: half_registered",
        f"{wrongly}register_connectors(register=<callback>)",
        f"{wrongly}register(Metric 'misfiled') -> rejected: register() expects a ConnectorType, got Metric "
        "'misfiled'",
        f"{wrongly}register_connectors -> returned; registered: nothing",
        f"{wrongly}register_metrics(register=<callback>)",
        f"{wrongly}register(dict) -> rejected: register() expects a Metric, got dict",
        f"{wrongly}register_metrics -> returned; registered: nothing",
    ]
    warnings = [
        "Warning: plugin flaky (flaky 3.0): register_metrics: hook exploded: no API key (see `crmkpi plugins`)",
        "Warning: plugin wrongly (wrongly 1.0): register_connectors: register() expects a ConnectorType, got Metric "
        "'misfiled' (see `crmkpi plugins`)",
        "Warning: plugin wrongly (wrongly 1.0): register_metrics: register() expects a Metric, got dict (see "
        "`crmkpi plugins`)",
    ]
    result = invoke("metrics", "list")
    assert result.exit_code == 0 and result.stderr.splitlines() == traced + warnings
    monkeypatch.setenv("CRMKPI_TRACE_PLUGINS", "0")
    assert invoke("metrics", "list").stderr.splitlines() == warnings


@pytest.fixture
def two_plugins(install, monkeypatch, project) -> Path:
    """acme (a good metric) and zeta (a metric that raises) installed and selected with the built-ins."""
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})
    install("zeta-metrics", "1.0", {"zeta": "raising_metric"})
    select(monkeypatch, "files,sales_metrics,acme,zeta")
    return project


def configured(project: Path, plugins: str) -> Path:
    project.write_text(f"{project.read_text()}plugins: {plugins}\n", encoding="utf-8")
    return project


def test_the_config_denies_or_allows_third_party_plugins(two_plugins):
    def loaded(*args: str) -> list[str]:
        return [info["name"] for info in json.loads(invoke("plugins", "--json", *args).stdout)]

    project = configured(two_plugins, "{deny: [zeta]}")
    assert loaded("--config", str(project)) == ["files", "sales_metrics", "acme"]
    validated = invoke("validate", "--config", str(project))
    assert validated.stdout == f"{project}: OK (1 connectors, all 3 metrics, 0 schedules)\n"
    # CRMKPI_LOAD_PLUGINS names zeta: that the config leaves it out is said
    assert validated.stderr == "Warning: CRMKPI_LOAD_PLUGINS: 'zeta' is not loaded: the config's plugins.deny " \
                               "names it\n"
    assert "raising_metric" not in sys.modules  # a denied plugin is not even imported
    assert loaded() == ["files", "sales_metrics", "acme", "zeta"]  # without the config
    project.write_text(project.read_text().replace("{deny: [zeta]}", "{allow: [zeta]}"), encoding="utf-8")
    assert loaded("--config", str(project)) == ["files", "sales_metrics", "zeta"]  # the built-ins always load
    sync(project)
    result = invoke("run", "--config", str(project), "--metric", "deals_created")
    assert (result.exit_code, result.stderr) == (1, "Warning: CRMKPI_LOAD_PLUGINS: 'acme' is not loaded: the "
                                                    "config's plugins.allow does not name it\nError: unknown metric "
                                                    "'deals_created' (known: close_rate, weighted_pipeline, win_rate)\n")


@pytest.mark.parametrize("plugins, error", [
    ("{deny: [acmee]}", "plugins.deny.0: unknown plugin 'acmee'; did you mean 'acme'? (installed: {installed})"),
    ("{allow: [acme, zzz]}", "plugins.allow.1: unknown plugin 'zzz' (installed: {installed})"),
    ("{deny: [files]}", "plugins.deny.0: 'files' is built into crmkpi, and the built-in plugins always load"),
    ("{allow: [acme, zeta], deny: [zeta]}", "plugins: both allowed and denied: 'zeta'"),
    ("{alow: [acme]}", "plugins.alow: unknown field; did you mean 'allow'?"),
])
def test_the_config_plugin_lists_are_checked(two_plugins, plugins, error):
    project = configured(two_plugins, plugins)
    error = error.format(installed=", ".join(ep.name for ep in installed_entry_points()))
    for command in ("validate", "plugins"):
        result = invoke(command, "--config", str(project))
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {error}\n")
