"""The example plugins of examples/ install with pip, pass their own tests (written with crmkpi's pytest fixtures)
and work through the CLI like any third-party plugin: listed, their metrics run, their connector synced."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from importlib import invalidate_caches
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import ALL_BUILTINS, EXAMPLES
from crmkpi.cli import cli

#: Each example's entry point (its plugin's name), distribution, and what it provides.
PLUGINS = {
    "example_deal_size": ("crmkpi-avg-deal-size", {"metrics": ["example_deal_size"], "connectors": []}),
    "pipeline_coverage": ("crmkpi-pipeline-coverage", {"metrics": ["pipeline_coverage"], "connectors": []}),
    "json_export": ("crmkpi-json-export", {"metrics": [], "connectors": ["json_export"]}),
}


def environment(site: Path, plugins: str | None) -> dict[str, str]:
    """The examples installed; ``plugins``: what CRMKPI_LOAD_PLUGINS selects (None: every installed plugin, as
    in a plugin author's environment)."""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CRMKPI_LOAD_PLUGINS", None)
    return env if plugins is None else {**env, "CRMKPI_LOAD_PLUGINS": plugins}


def crmkpi(site: Path, *args: str, plugins: str = "files,sales_metrics,pipeline_metrics,pipeline_coverage,"
                                                   "json_export") -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "crmkpi.cli", *args], env=environment(site, plugins),
                          capture_output=True, text=True)
    assert done.returncode == 0, (args, done.stderr)
    return done


def test_every_example_is_tested_here() -> None:
    examples = sorted(path.name for path in EXAMPLES.iterdir() if (path / "pyproject.toml").is_file())
    assert examples == ["connector-plugin", "crmkpi-avg-deal-size", "metric-plugin"]
    assert all((EXAMPLES / name / "tests").is_dir() for name in examples)


@pytest.mark.parametrize("example", ["connector-plugin", "crmkpi-avg-deal-size", "metric-plugin"])
def test_the_examples_own_tests_pass(installed_examples: Path, tmp_path: Path, example: str) -> None:
    # Run from elsewhere, so that the tests import the installed package, not the source folder.
    tests = installed_examples / "sources" / example / "tests"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], cwd=tmp_path,
                          env=environment(installed_examples, None), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "skipped" not in done.stdout.splitlines()[-1]


def test_listed_by_crmkpi_plugins_and_metrics_list(installed_examples: Path) -> None:
    listed = {p["name"]: p for p in json.loads(crmkpi(installed_examples, "plugins", "--json", plugins=None).stdout)}
    for name, (distribution, provided) in PLUGINS.items():
        found = listed[name]
        assert (found["distribution"], found["version"], found["errors"]) == (distribution, "0.1.0", [])
        assert {"metrics": found["metrics"], "connectors": found["connectors"]} == provided
    metrics = crmkpi(installed_examples, "metrics", "list", plugins=None).stdout.splitlines()
    assert any(line.split()[0] == "pipeline_coverage" and "Pipeline coverage (ratio" in line for line in metrics)
    assert any(line.split()[0] == "example_deal_size" for line in metrics)


def export(folder: Path, table: str, records: list[dict], deleted: tuple[str, ...] = ()) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{table}.json").write_text(json.dumps({"records": records, "deleted": list(deleted)}))


def test_a_json_export_synced_and_measured_by_the_examples(installed_examples: Path, tmp_path: Path) -> None:
    stamp = {"updated_at": "2025-04-01T00:00:00Z"}
    folder = tmp_path / "export"
    export(folder, "users", [{"id": "u1", "team": "east", **stamp}, {"id": "u2", "team": "west", **stamp}])
    export(folder, "quotas", [{"id": f"q{n}", "owner_id": owner, "period_start": "2025-01-01",
                               "period_end": "2025-03-31", "amount": 10000, "currency": "USD", **stamp}
                              for n, owner in enumerate(("u1", "u2"))])
    deal = {"currency": "USD", "deal_type": "new_business", "created_at": "2025-01-05T10:00:00Z", **stamp}
    export(folder, "deals", [
        {"id": "d1", "owner_id": "u1", "amount": 4000, "is_closed": True, "is_won": True,
         "closed_at": "2025-02-01T10:00:00Z", **deal},
        {"id": "d2", "owner_id": "u1", "amount": 9000, "is_closed": False, "is_won": False, "closed_at": None, **deal},
        {"id": "d3", "owner_id": "u2", "amount": 2000, "is_closed": True, "is_won": False,
         "closed_at": "2025-03-01T10:00:00Z", **deal},
        {"id": "d4", "owner_id": "u2", "amount": 5000, "is_closed": False, "is_won": False, "closed_at": None, **deal},
    ], deleted=("d4",))
    config = tmp_path / "crmkpi.yaml"
    config.write_text("connectors:\n  crm:\n    type: json_export\n    path: export\n")

    synced = crmkpi(installed_examples, "sync", "--config", str(config)).stderr.splitlines()
    assert "crm/deals.json: 4 read, 5 written" in synced  # 4 rows, and d4 flagged deleted
    [deals] = [line for line in crmkpi(installed_examples, "sync", "--status", "--config", str(config)).stdout
               .splitlines() if line.startswith("crm:")]
    assert deals.startswith("crm: success")

    run = crmkpi(installed_examples, "run", "--config", str(config), "--metric", "pipeline_coverage", "--metric",
                 "win_rate", "--period", "2025-Q1", "--segment", "owner", "--format", "json")
    values = {(r["metric"], r["segment"]["owner"]): (r["value"], r["numerator"], r["denominator"])
              for r in json.loads(run.stdout)}
    # u1: 9,000 open over 10,000 - 4,000; u2: nothing open (d4 deleted in the CRM) over 10,000
    assert values[("pipeline_coverage", "u1")] == (1.5, 9000, 6000)
    assert values[("pipeline_coverage", "u2")] == (0.0, 0, 10000)
    assert values[("win_rate", "u1")] == (1.0, 1, 1) and values[("win_rate", "u2")] == (0.0, 0, 1)


#: ``crmkpi ...`` in a README: a line of a fenced block (with the output it shows after ``#``), or inline code.
COMMAND = re.compile(r"^(?P<line>crmkpi [^#\n]*?)\s*(?:#\s*(?P<shown>.*))?$|`(?P<inline>crmkpi [^`\n]+)`", re.M)


def test_the_readmes_commands_run(installed_examples: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every crmkpi command of the examples' READMEs runs, in a folder with the sample company and the connector
    README's config and JSON export, and prints what its comment shows."""
    monkeypatch.syspath_prepend(str(installed_examples))
    invalidate_caches()
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", f"{ALL_BUILTINS},{','.join(PLUGINS)}")
    readme = (EXAMPLES / "connector-plugin" / "README.md").read_text()
    [export] = re.findall(r"```json\n(.*?)```", readme, re.S)
    [config] = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    (isolated / "export").mkdir()
    (isolated / "export" / "deals.json").write_text(export)
    connectors = {"sample": {"type": "files", "path": "data"}, **yaml.safe_load(config)["connectors"]}
    (isolated / "crmkpi.yaml").write_text(yaml.safe_dump({"connectors": connectors}))
    assert CliRunner().invoke(cli, ["sample-data", "--out", "data"]).exit_code == 0
    commands = [(match["line"] or match["inline"], match["shown"])
                for example in ("connector-plugin", "crmkpi-avg-deal-size", "metric-plugin")
                for match in COMMAND.finditer((EXAMPLES / example / "README.md").read_text())]
    assert len(commands) >= 7
    for line, shown in commands:
        for command in line.split("&&"):
            result = CliRunner().invoke(cli, shlex.split(command)[1:], catch_exceptions=False)
            assert result.exit_code == 0, (command, result.output)
            assert shown is None or "&&" in line or shown in result.stdout, (command, shown, result.stdout)
