"""docs/alerts.md's YAML examples and config/service.yaml's alerts load as configs, and mean what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import ALL_BUILTINS
from crmkpi.cli import App, cli

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "alerts.md"
BASE = {"store": "sqlite:///kpi.db", "connectors": {"crm": {"type": "files", "path": "data"}},
        "channels": {"sales": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}}}


def examples() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def test_the_page_has_its_examples():
    assert len(examples()) == 3


@pytest.fixture
def loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every example of the page in one config (the schedule's rules are the examples' rules), loaded."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    (tmp_path / "data").mkdir()
    merged = dict(BASE)
    for text in examples():
        for section, block in yaml.safe_load(text).items():
            merged[section] = {**merged.get(section, {}), **block}
    path = tmp_path / "crmkpi.yaml"
    path.write_text(yaml.safe_dump(merged))
    result = CliRunner().invoke(cli, ["validate", "--config", str(path)])
    assert result.exit_code == 0, result.output
    return App(debug=False).config(str(path))


def test_every_example_validates_as_the_page_describes(loaded):
    rules = loaded.alerts
    assert rules["win-rate-by-team"].repeat_seconds == 86400 and rules["win-rate-by-team"].dimensions == ("team",)
    assert rules["win-rate-drop"].change.worse_by == 0.2
    assert rules["cycle-longer-than-last-year"].change.against == "year_ago"
    assert rules["unusual-sales-volume"].anomaly.periods == 12
    assert (rules["emea-win-rate"].threshold.below, rules["emea-win-rate"].threshold.above) == (0.35, 0.8)
    assert {name: rule.condition for name, rule in rules.items()}["net-new-revenue-goal"] == "target"
    assert loaded.schedules["monthly-alerts"].on_failure == ["sales"]


def test_the_service_example_has_alert_rules():
    config = yaml.safe_load((ROOT / "config" / "service.yaml").read_text(encoding="utf-8"))
    assert set(config["alerts"]) == {"win-rate-by-team", "cycle-anomaly", "win-rate-drop"}
    assert config["schedules"]["nightly"]["alerts"] == ["win-rate-by-team", "cycle-anomaly"]
