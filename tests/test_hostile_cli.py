"""Hostile options and config through the CLI: edge years, endless series, NaN params, repeated YAML
keys, and CRM text holding terminal escapes. Each is a one-line error, or shown harmlessly."""

from __future__ import annotations

import json

import pytest

DEALS = [
    {"id": "d1", "name": "Alpha", "owner_id": "u1", "created_at": "2024-01-05", "is_closed": "true", "is_won": "true",
     "closed_at": "2024-02-01", "amount": 100, "account_id": "a1", "deal_type": "new_business"},
    {"id": "d2", "name": "Bravo", "owner_id": "u1", "created_at": "2024-01-06", "is_closed": "true",
     "is_won": "false", "closed_at": "2024-02-02", "amount": 50, "account_id": "a1", "deal_type": "new_business"},
]
ESCAPE = "\x1b]0;pwned\x07\x1b[2J"


@pytest.fixture
def synced(kpi):
    kpi.write("deals", DEALS)
    kpi.write("users", [{"id": "u1", "name": f"Ann{ESCAPE}", "team": "East"}])
    kpi.sync()
    return kpi


@pytest.mark.parametrize("args, message", [
    (("--period", "9999", "--compare", "year_ago"),
     "period '9999': a period must lie within the years 1000 to 9998 (its previous and year-ago periods too)"),
    (("--period", "0001"),
     "period '0001': a period must lie within the years 1000 to 9998 (its previous and year-ago periods too)"),
    (("--period", "0000-01-01..0001-12-31"),
     "period '0000-01-01..0001-12-31': not a valid date"),
    (("--period", "2000-01-01..2099-12-31", "--grain", "day"),
     "--grain day splits 2000-01-01..2099-12-31 into more than 5,000 parts: choose a shorter --period or a coarser "
     "--grain"),
    (("--period", "2024", "--param", "lifespan_years=nan"),
     "clv: param lifespan_years: expected a finite number, got 'nan'"),
    (("--period", "2024", "--param", "lifespan_years=-inf"),
     "clv: param lifespan_years: expected a finite number, got '-inf'"),
])
def test_an_option_out_of_bounds_is_a_one_line_error(synced, args, message):
    metric = ["--metric", "clv"] if any("lifespan" in a for a in args) else ["--metric", "win_rate"]
    assert synced.fails("run", *metric, *args) == message


def test_the_edges_of_the_year_range_run(synced):
    for period in ("1000", "9998"):
        [result] = synced.run("win_rate", "--period", period, "--compare", "both")
        assert result["period"] == period and result["value"] is None


def test_a_key_given_twice_in_the_config_is_an_error_naming_it_and_its_lines(synced):
    synced.configure(extra="reporting:\n  currency: USD\n  currency: EUR\n")
    assert synced.fails("validate") == (
        f"{synced.config}: line 4 invalid YAML: duplicate key 'currency' (first on line 3)")
    synced.configure(extra="reporting:\n  currency: USD\nreporting:\n  currency: EUR\n")
    assert synced.fails("validate") == (
        f"{synced.config}: line 4 invalid YAML: duplicate key 'reporting' (first on line 2)")


def test_a_nan_target_or_param_in_the_config_is_refused(synced):
    synced.configure(extra="targets:\n  - {metric: win_rate, value: .nan, period: 2024}\n")
    assert synced.fails("validate") == "targets.0.value: input should be a finite number"
    synced.configure(extra="metrics:\n  clv:\n    params: {lifespan_years: .inf}\n")
    assert synced.fails("validate") == "metrics.clv.params: param lifespan_years: expected a finite number, got inf"


def test_terminal_escapes_in_crm_text_are_neutralized_in_the_table_and_explain(synced):
    table = synced.invoke("run", "--metric", "win_rate", "--period", "2024", "--segment", "owner")
    assert table.exit_code == 0, table.output
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    assert "owner=Ann\\x1b]0;pwned\\x07\\x1b[2J" in table.stdout
    explained = synced.invoke("explain", "win_rate", "--period", "2024", "--segment", "owner=u1")
    assert explained.exit_code == 0, explained.output
    assert "\x1b" not in explained.stdout and "Ann\\x1b]0;pwned\\x07" in explained.stdout
    # machines get the exact value
    [result] = synced.run("win_rate", "--period", "2024", "--segment", "owner")
    assert result["segment_labels"] == {"owner": f"Ann{ESCAPE}"}
    csv_out = synced.invoke("run", "--metric", "win_rate", "--period", "2024", "--segment", "owner",
                            "--format", "csv").stdout
    assert json.dumps(f"Ann{ESCAPE}") in csv_out.replace('""', '"')


def test_a_connector_type_that_is_not_a_name_is_a_one_line_error(synced):
    """Found by tests/reliability/test_hostile_config.py: it was an unexpected TypeError."""
    synced.config.write_text(synced.config.read_text().replace("type: files", "type: [files]"))
    assert synced.fails("validate") == "connectors.crm.type: expected the name of a connector type, got list"
