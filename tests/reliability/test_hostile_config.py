"""Property: whatever a config file holds, `crmkpi validate` and `crmkpi sync` either load it with
every value as written or fail with one line; a failed sync leaves the store as it was, and SQLite
and PostgreSQL agree.

The configs are mutations of a valid one: lines repeated (a key given twice), dropped or re-indented,
values replaced by hostile scalars (NaN, huge numbers, tags, anchors, deep nesting, impossible dates),
and random characters inserted anywhere.
"""

from __future__ import annotations

import itertools
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, strategies as st

from conftest import ALL_BUILTINS
from crmkpi.config import load_config
from crmkpi.plugins import load_registry

from hostile_support import invoke, outcome, property_settings, rows_by_key, same_text, stores  # noqa: F401

pytestmark = pytest.mark.reliability

STORE_VARIABLE = "CRMKPI_HOSTILE_STORE"
VALID = f"""\
store: ${{{STORE_VARIABLE}}}
reporting:
  currency: USD
  timezone: Europe/Paris
  fiscal_year_start_month: 4
  week_start: monday
  default_period: 2025
connectors:
  crm:
    type: files
    path: data
    on_error: skip
    tables:
      deals:
        delimiter: ";"
        encoding: utf-8
        columns:
          id: Deal
          amount: Amount
        constants:
          currency: EUR
        extra: [Tier]
metrics:
  win_rate:
  clv:
    params:
      lifespan_years: 3
targets:
  - metric: win_rate
    value: 0.3
    period: 2025
"""
DEALS = ("Deal;Amount;is_closed;is_won;created_at;closed_at;account_id;deal_type;Tier\n"
         "d1;100;true;true;2025-01-05;2025-02-01;a1;new_business;gold\n"
         "d2;50.5;true;false;2025-01-06;2025-02-02;a1;new_business;\n")
HOSTILE_SCALARS = [".nan", ".inf", "-.inf", "99999999999999999999", "~", "''", '"\\0"', "!!binary aGk=",
                   "!!python/object/apply:os.system ['true']", "&anchor x", "*anchor", "[" * 200 + "]" * 200,
                   "[" * 5000 + "]" * 5000, "{a: 1, a: 2}", "2024-02-30", "0o17", "0x1F", "1_000", "yes", "on",
                   "2025-13", "9999", "0001", "'\\t'", '"\\u001b]0;x\\u0007"', "|\n  block", "? complex", "- item",
                   "!!set {a, b}", "!!timestamp 2025-01-01", "<<: *anchor", "%YAML 1.1", "---", "..."]
NOISE = st.text(alphabet=list(":-?,[]{}#&*!|>'\"%@` \t\n\\\x00\x1b\ufeffaé0.~=$"), min_size=1, max_size=6)


@st.composite
def mutated_configs(draw) -> str:
    lines = VALID.splitlines()
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["repeat", "drop", "indent", "value", "noise", "comment", "quote", "blank"]))
        if kind == "comment":  # harmless changes, which must load as before
            lines[at] += "  # " + draw(st.text(alphabet="abc é:#-[", max_size=5))
        elif kind == "quote" and ": " in lines[at] and not lines[at].rstrip().endswith(":"):
            key, value = lines[at].split(": ", 1)
            lines[at] = f"{key}: " + (repr(value) if "'" not in value and "\\" not in value else value)
        elif kind == "blank":
            lines.insert(at, draw(st.sampled_from(["", "   ", "#"])))
        elif kind == "repeat":  # e.g. a key given twice, in one mapping or at the top level
            lines.insert(draw(st.integers(0, len(lines))), lines[at])
        elif kind == "drop" and len(lines) > 1:
            del lines[at]
        elif kind == "indent":
            lines[at] = draw(st.sampled_from(["", " ", "  ", "\t"])) + lines[at].lstrip(" ")
        elif kind == "value" and ":" in lines[at]:
            lines[at] = lines[at].split(":", 1)[0] + ": " + draw(st.sampled_from(HOSTILE_SCALARS))
        else:
            text = "\n".join(lines)
            cut = draw(st.integers(0, len(text)))
            lines = (text[:cut] + draw(NOISE) + text[cut:]).split("\n")
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return draw(st.sampled_from(["", "\ufeff"])) + ending.join(lines) + ending


def duplicate_keys(text: str) -> bool:
    """Whether some mapping of the YAML gives a key twice (a reference check, on the composed nodes)."""
    def walk(node: yaml.Node) -> bool:
        if isinstance(node, yaml.MappingNode):
            keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
            return len(keys) != len(set(keys)) or any(walk(v) for _, v in node.value)
        if isinstance(node, yaml.SequenceNode):
            return any(walk(v) for v in node.value)
        return False

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    return root is not None and walk(root)


def as_written(raw: Any, loaded: Any) -> None:
    """Every text and number the YAML gives is the value the config holds (with pydantic's
    own lax conversions left alone: ``yes`` is a true boolean)."""
    if isinstance(raw, dict) and isinstance(loaded, dict):
        for key, value in raw.items():
            if key in loaded:
                as_written(value, loaded[key])
    elif isinstance(raw, list) and isinstance(loaded, list):
        assert len(raw) == len(loaded)
        for value, held in zip(raw, loaded):
            as_written(value, held)
    elif isinstance(raw, str) and isinstance(loaded, str):
        assert raw == loaded or raw.startswith("${"), (raw, loaded)
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool) and isinstance(loaded, (int, float)):
        assert raw == loaded and math.isfinite(loaded), (raw, loaded)
    elif isinstance(raw, (int, date)) and isinstance(loaded, str):  # a period YAML reads as a number or date
        assert loaded == (raw.isoformat() if isinstance(raw, date) else str(raw))


def loaded_values(config) -> dict[str, Any]:
    return {"reporting": config.reporting.model_dump(),
            "connectors": {name: c.settings.model_dump(by_alias=True) for name, c in config.connectors.items()},
            "metrics": {name: {"params": params} for name, params in (config.metrics or {}).items()},
            "targets": [t.model_dump() for t in config.targets]}


_counter = itertools.count()


@property_settings(default=20)
@given(text=mutated_configs())
def test_a_mutated_config_loads_as_written_or_fails_in_one_line_alike_on_every_store(stores, tmp_path_factory,
                                                                                      monkeypatch, text):
    folder = tmp_path_factory.mktemp(f"config{next(_counter)}")
    config = project(folder / "validate", text)
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)  # clv is a customer metric
    monkeypatch.setenv(STORE_VARIABLE, stores["sqlite"])
    status, _ = outcome(invoke(config, "validate"))
    event(f"validate: {'OK' if status == 0 else 'one-line error'}")
    if status == 0:
        assert not duplicate_keys(text)
        as_written(yaml.safe_load(text), loaded_values(load_config(config, load_registry())))

    results = []
    for kind, url in stores.items():  # a sync: loads the files (or fails) alike on each store
        copy = folder / kind  # its own folder: a config without store: uses crmkpi.db beside it
        config = project(copy, text)
        monkeypatch.setenv(STORE_VARIABLE, url)
        before = rows_by_key(url, "deals")
        sync_status, stderr = outcome(invoke(config, "sync"))
        assert sync_status == 0 or rows_by_key(url, "deals") == before, "a failed sync changed the store"
        if status == 1:
            assert sync_status == 1  # what validate refuses, sync refuses
        results.append((sync_status, same_text(stderr.replace(str(copy), "FOLDER"), stores)))
    assert all(r == results[0] for r in results[1:]), results


def project(folder: Path, text: str) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "deals.csv").write_text(DEALS, encoding="utf-8")
    config = folder / "crmkpi.yaml"
    config.write_text(text, encoding="utf-8")
    return config
