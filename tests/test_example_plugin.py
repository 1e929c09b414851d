"""The example of the plugin guide (examples/crmkpi-avg-deal-size) installs with pip and works through the CLI
like any third-party plugin, and the guide shows it as it is (tests/test_plugins_guide.py checks every other
block of the guide). Its own tests (per segment, currency and time zone, both ways) run in tests/test_examples.py,
with the other examples'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "crmkpi-avg-deal-size"

DEALS = """\
id,amount,currency,is_closed,is_won,created_at,closed_at
d1,1000,USD,true,true,2025-01-05T10:00:00Z,2025-02-01T10:00:00Z
d2,3000,USD,true,true,2025-01-06T10:00:00Z,2025-03-01T10:00:00Z
d3,500,USD,true,true,2025-01-07T10:00:00Z,2025-04-01T10:00:00Z
d4,9000,USD,true,false,2025-01-08T10:00:00Z,2025-04-02T10:00:00Z
d5,7000,USD,true,true,2024-11-01T10:00:00Z,2024-12-01T10:00:00Z
"""


def crmkpi(site: Path, *args: str, plugins: str = "files,example_deal_size") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "CRMKPI_LOAD_PLUGINS": plugins}
    return subprocess.run([sys.executable, "-m", "crmkpi.cli", *args], env=env, capture_output=True, text=True)


def test_example_is_listed_with_its_distribution(installed_examples: Path) -> None:
    result = crmkpi(installed_examples, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    example = next(p for p in json.loads(result.stdout) if p["name"] == "example_deal_size")
    assert example["distribution"] == "crmkpi-avg-deal-size"
    assert example["version"] == "0.1.0"
    assert example["metrics"] == ["example_deal_size"]
    assert example["hooks"] == ["register_metrics"]
    assert example["errors"] == []


def test_the_guides_plugins_listing_is_what_crmkpi_prints(installed_examples: Path) -> None:
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    shown = guide.split("$ crmkpi plugins\n", 1)[1].split("...\n", 1)[0].splitlines()
    printed = crmkpi(installed_examples, "plugins").stdout.splitlines()
    start = printed.index(shown[0])
    assert printed[start:start + len(shown)] == shown


def test_example_metric_runs_on_synced_data(installed_examples: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "deals.csv").write_text(DEALS)
    config = tmp_path / "crmkpi.yaml"
    config.write_text("connectors:\n  crm:\n    type: files\n    path: data\n")
    assert crmkpi(installed_examples, "sync", "--config", str(config)).returncode == 0

    result = crmkpi(installed_examples, "run", "--config", str(config), "--metric", "example_deal_size",
                    "--period", "2025", "--format", "json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert (row["value"], row["numerator"], row["denominator"], row["unit"]) == (1500.0, 4500.0, 3, "currency")

    result = crmkpi(installed_examples, "run", "--config", str(config), "--metric", "example_deal_size",
                    "--period", "2025", "--param", "min_amount=1000", "--format", "json")
    assert json.loads(result.stdout)[0]["value"] == 2000.0

    result = crmkpi(installed_examples, "run", "--config", str(config), "--metric", "example_deal_size",
                    "--period", "2023", "--format", "json")
    [row] = json.loads(result.stdout)
    assert (row["value"], row["note"]) == (None, "no deals won in the period")


def test_the_guide_shows_the_example_as_it_is() -> None:
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    shown = guide.split("`crmkpi_avg_deal_size/__init__.py`:\n\n```python\n", 1)[1].split("```\n", 1)[0]
    assert shown == (EXAMPLE / "crmkpi_avg_deal_size" / "__init__.py").read_text()


def test_the_guide_shows_the_examples_test_as_it_is() -> None:
    """The guide's "Testing your plugin" example is the example's own test file, which tests/test_examples.py runs."""
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    section = guide.split("## Testing your plugin\n", 1)[1].split("\n## ", 1)[0]
    shown = section.split("```python\n", 1)[1].split("```\n", 1)[0]
    assert shown == (EXAMPLE / "tests" / "test_avg_deal_size.py").read_text()
