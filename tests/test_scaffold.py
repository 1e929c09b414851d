"""crmkpi new-plugin (core/scaffold/): the package it writes installs with pip, passes its own tests (crmkpi's
fixtures) and is a plugin crmkpi lists and runs; what it refuses, it refuses in one line and writes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from crmkpi.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def new_plugin(*args: str, cwd: Path) -> tuple[int, str]:
    os.chdir(cwd)
    result = CliRunner().invoke(cli, ["new-plugin", *args])
    return result.exit_code, result.output


def installed(package: Path, site: Path) -> dict[str, str]:
    """``package`` pip-installed into ``site``; the environment of a user who installed it (every plugin loads)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CRMKPI_LOAD_PLUGINS", None)
    return env


def own_tests(package: Path, env: dict[str, str], cwd: Path) -> str:
    """Run the package's tests against the installed copy (from elsewhere, so the source folder is not imported)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                          cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done.stdout.splitlines()[-1]


def crmkpi(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "crmkpi.cli", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def test_a_metric_plugin_installs_passes_its_tests_and_runs(tmp_path: Path) -> None:
    code, output = new_plugin("acme-kpis", cwd=tmp_path)
    assert (code, output.strip()) == (0, "Wrote acme-kpis. In an environment with crmkpi: cd acme-kpis && "
                                         "pip install -e '.[test]' && pytest")
    package = tmp_path / "acme-kpis"
    assert sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()) == [
        "README.md", "acme_kpis/__init__.py", "pyproject.toml", "tests/test_acme_kpis.py"]
    env = installed(package, tmp_path / "site")
    assert own_tests(package, env, tmp_path).startswith("5 passed")

    listed = {p["name"]: p for p in json.loads(crmkpi(env, "plugins", "--json", "--strict"))}
    assert (listed["acme_kpis"]["distribution"], listed["acme_kpis"]["metrics"]) == ("acme-kpis", ["acme_kpis"])
    assert listed["acme_kpis"]["plugin_api"]["declared"] == ">=1.0,<2"
    assert "acme_kpis" in crmkpi(env, "metrics", "show", "acme_kpis")

    data = tmp_path / "data"
    data.mkdir()
    (data / "deals.csv").write_text("id,amount,currency,is_closed,is_won,created_at,closed_at,owner_id\n"
                                    "d1,1000,USD,true,true,2025-01-02,2025-01-15,u1\n"
                                    "d2,250,USD,true,true,2025-01-02,2025-02-15,u2\n")
    config = tmp_path / "crmkpi.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'kpi.db'}\nconnectors:\n  crm:\n    type: files\n    path: {data}\n")
    crmkpi(env, "sync", "--config", str(config))
    results = json.loads(crmkpi(env, "run", "--config", str(config), "-m", "acme_kpis", "--period", "2025-Q1",
                                "--segment", "owner", "--format", "json"))
    assert {r["segment"]["owner"]: r["value"] for r in results} == {"u1": 1000, "u2": 250}


def test_a_connector_plugin_installs_passes_its_tests_and_syncs(tmp_path: Path) -> None:
    assert new_plugin("acme-source", "--connector", "--dir", "plugins", cwd=tmp_path)[0] == 0
    package = tmp_path / "plugins" / "acme-source"
    env = installed(package, tmp_path / "site")
    assert own_tests(package, env, tmp_path).startswith("3 passed")

    listed = {p["name"]: p for p in json.loads(crmkpi(env, "plugins", "--json", "--strict"))}
    assert listed["acme_source"]["connectors"] == ["acme_source"]
    (tmp_path / "deals.json").write_text(json.dumps([
        {"id": "d1", "updated_at": "2025-01-02T10:00:00Z", "amount": 500, "currency": "USD", "is_closed": True,
         "is_won": True, "created_at": "2025-01-01T09:00:00Z", "closed_at": "2025-01-02T10:00:00Z"}]))
    config = tmp_path / "crmkpi.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'kpi.db'}\nconnectors:\n  crm:\n    type: acme_source\n"
                      f"    path: deals.json\n")
    crmkpi(env, "sync", "--config", str(config))
    results = json.loads(crmkpi(env, "run", "--config", str(config), "-m", "sales_volume", "--period", "2025-Q1",
                                "--format", "json"))
    assert results[0]["value"] == 500


@pytest.mark.parametrize(("args", "error"), [
    (["9lives"], "Error: new-plugin '9lives': a package name is letters, digits, '-', '_' and '.', starting with a "
                 "letter (e.g. acme-kpis)"),
    (["class"], "Error: new-plugin 'class': its module would be 'class', which Python or crmkpi already uses; "
                "choose another name"),
    (["win-rate"], "Error: new-plugin 'win-rate': metric id 'win_rate' is already provided by sales_metrics "
                   "(crmkpi 0.1.0); choose another name"),
    (["files", "--connector"], "Error: new-plugin 'files': connector type 'files' is already provided by files "
                               "(crmkpi 0.1.0); choose another name"),
])
def test_a_name_it_cannot_use_is_refused_in_one_line(tmp_path: Path, monkeypatch, args, error) -> None:
    monkeypatch.delenv("CRMKPI_LOAD_PLUGINS")
    (tmp_path / "plugins").mkdir()
    assert new_plugin(*args, cwd=tmp_path / "plugins") == (1, error + "\n")
    assert list((tmp_path / "plugins").iterdir()) == []


def test_an_existing_folder_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "acme-kpis").mkdir()
    (tmp_path / "acme-kpis" / "notes.txt").write_text("mine")
    assert new_plugin("acme-kpis", cwd=tmp_path) == (1, "Error: new-plugin 'acme-kpis': acme-kpis already exists\n")
    assert [p.name for p in (tmp_path / "acme-kpis").iterdir()] == ["notes.txt"]


def test_the_wheel_ships_the_templates_and_the_type_hints(tmp_path: Path) -> None:
    # Built from a copy of what the wheel is made of: an in-tree build would leave build/ in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    for folder in ("core", "connectors", "metrics_plugins"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("crmkpi-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {str(p.relative_to(ROOT / "core")) for p in (ROOT / "core" / "scaffold").rglob("*.tmpl")}
    assert len(templates) == 8
    assert {f"crmkpi/{t}" for t in templates} | {"crmkpi/py.typed"} <= names
