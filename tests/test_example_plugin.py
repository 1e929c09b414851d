"""The plugin in examples/ installs with pip and works through the CLI like any third-party plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "crmkpi-avg-deal-size"

DEALS = """\
id,amount,currency,is_closed,is_won,created_at,closed_at
d1,1000,USD,true,true,2025-01-05T10:00:00Z,2025-02-01T10:00:00Z
d2,3000,USD,true,true,2025-01-06T10:00:00Z,2025-03-01T10:00:00Z
d3,500,USD,true,true,2025-01-07T10:00:00Z,2025-04-01T10:00:00Z
d4,9000,USD,true,false,2025-01-08T10:00:00Z,2025-04-02T10:00:00Z
d5,7000,USD,true,true,2024-11-01T10:00:00Z,2024-12-01T10:00:00Z
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in examples/.
    subprocess.run(["cp", "-r", str(EXAMPLE), str(build)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(build / EXAMPLE.name)], check=True)
    return target


def crmkpi(site: Path, *args: str, plugins: str = "files,example_deal_size") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "CRMKPI_LOAD_PLUGINS": plugins}
    return subprocess.run([sys.executable, "-m", "crmkpi.cli", *args], env=env, capture_output=True, text=True)


def test_example_is_listed_with_its_distribution(installed: Path) -> None:
    result = crmkpi(installed, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    example = next(p for p in json.loads(result.stdout) if p["name"] == "example_deal_size")
    assert example["distribution"] == "crmkpi-avg-deal-size"
    assert example["version"] == "0.1.0"
    assert example["metrics"] == ["example_deal_size"]
    assert example["hooks"] == ["register_metrics"]
    assert example["errors"] == []


def test_the_guides_plugins_listing_is_what_crmkpi_prints(installed: Path) -> None:
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    shown = guide.split("$ crmkpi plugins\n", 1)[1].split("...\n", 1)[0].splitlines()
    printed = crmkpi(installed, "plugins").stdout.splitlines()
    start = printed.index(shown[0])
    assert printed[start:start + len(shown)] == shown


def test_example_metric_runs_on_synced_data(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "deals.csv").write_text(DEALS)
    config = tmp_path / "crmkpi.yaml"
    config.write_text("connectors:\n  crm:\n    type: files\n    path: data\n")
    assert crmkpi(installed, "sync", "--config", str(config)).returncode == 0

    result = crmkpi(installed, "run", "--config", str(config), "--metric", "example_deal_size", "--period", "2025",
                    "--format", "json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert (row["value"], row["numerator"], row["denominator"], row["unit"]) == (1500.0, 4500.0, 3, "currency")

    result = crmkpi(installed, "run", "--config", str(config), "--metric", "example_deal_size", "--period", "2025",
                    "--param", "min_amount=1000", "--format", "json")
    assert json.loads(result.stdout)[0]["value"] == 2000.0

    result = crmkpi(installed, "run", "--config", str(config), "--metric", "example_deal_size", "--period", "2023",
                    "--format", "json")
    [row] = json.loads(result.stdout)
    assert (row["value"], row["note"]) == (None, "no deals won in the period")


def test_the_guide_shows_the_example_as_it_is() -> None:
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    shown = guide.split("`crmkpi_avg_deal_size/__init__.py`:\n\n```python\n", 1)[1].split("```\n", 1)[0]
    assert shown == (EXAMPLE / "crmkpi_avg_deal_size" / "__init__.py").read_text()


# Two owners, a deal in euros (1.10 USD until April, 1.20 from May), a lost deal and a deleted one.
SEGMENTED = """\
id,owner_id,amount,currency,is_closed,is_won,created_at,closed_at,is_deleted
d1,u1,1000,USD,true,true,2025-01-05T10:00:00Z,2025-02-01T10:00:00Z,false
d2,u2,3000,USD,true,true,2025-01-06T10:00:00Z,2025-03-01T10:00:00Z,false
d3,u1,500,EUR,true,true,2025-01-07T10:00:00Z,2025-04-01T10:00:00Z,false
d4,u1,9000,USD,true,false,2025-01-08T10:00:00Z,2025-04-02T10:00:00Z,false
d5,u2,2000,EUR,true,true,2025-01-09T10:00:00Z,2025-05-03T10:00:00Z,false
d6,u2,8000,USD,true,true,2025-01-09T10:00:00Z,2025-05-03T10:00:00Z,true
"""
RATES = "id,currency,rate_to_reporting,valid_from\nr1,EUR,1.10,2024-01-01\nr2,EUR,1.20,2025-05-01\n"
BOTH_WAYS = """\
import json, sys
from crmkpi.cli import App, settings_of
from crmkpi.engine import COMPARISONS, Run, run_metrics
app = App(debug=False)
config = app.config(sys.argv[1])
settings = settings_of(config)
run = Run([app.registry.metrics["example_deal_size"]], settings.calendar.parse("2025", today=settings.today),
          {"example_deal_size": {"min_amount": float(sys.argv[2])}}, "quarter", ("owner",), COMPARISONS)
engine = app.store(config).engine
print(json.dumps([[(r["period"], r["segment"], r["value"], r["numerator"], r["denominator"], r["note"],
                    r["previous"]["value"]) for r in run_metrics(engine, run, settings, persist=False, grouped=grouped)]
                  for grouped in (True, False)]))
"""


def test_the_example_is_right_per_segment_and_currency_both_ways(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "deals.csv").write_text(SEGMENTED)
    (tmp_path / "data" / "fx_rates.csv").write_text(RATES)
    config = tmp_path / "crmkpi.yaml"
    config.write_text("connectors:\n  crm:\n    type: files\n    path: data\n")
    assert crmkpi(installed, "sync", "--config", str(config)).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(installed), "CRMKPI_LOAD_PLUGINS": "files,example_deal_size"}
    empty = {(quarter, owner): (None, None) for quarter in ("2025-Q3", "2025-Q4") for owner in ("u1", "u2")}
    for min_amount, expected in (
        (0, {("2025-Q1", "u1"): (1000.0, 1), ("2025-Q1", "u2"): (3000.0, 1),
             ("2025-Q2", "u1"): (550.0, 1), ("2025-Q2", "u2"): (2400.0, 1), **empty}),
        # 500 EUR on April 1st is 550 USD: under a minimum of 600 in the reporting currency
        (600, {("2025-Q1", "u1"): (1000.0, 1), ("2025-Q1", "u2"): (3000.0, 1),
               ("2025-Q2", "u1"): (None, None), ("2025-Q2", "u2"): (2400.0, 1), **empty}),
    ):
        done = subprocess.run([sys.executable, "-c", BOTH_WAYS, str(config), str(min_amount)], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        grouped, per_cell = json.loads(done.stdout)
        assert grouped == per_cell
        assert {(period, segment["owner"]): (numerator, denominator)
                for period, segment, _, numerator, denominator, _, _ in grouped} == expected
