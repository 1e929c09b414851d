"""The ``crmkpi`` command line, end to end through click's runner (not a terminal)."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

import crmkpi
import crmkpi.cli
from conftest import ALL_BUILTINS
from crmkpi.cli import STARTER_CONFIG, cli
from crmkpi.plugins import load_registry

BUILTIN = "files,sales_metrics"
SECRET = "Xy9-sup3r-s3cret-Pw"

# Deals hand-made so that every number below can be checked by hand.
#   created in 2024 (UTC), live: d01..d10 -> 10; of those won: d01, d02, d03 -> close rate 3/10
#   closed in 2024: d01, d02, d04, d11 (3 won) -> win rate (default cohort=closed) 3/4, by amount 7000/7500
#   closed among those created in 2024: d01..d05 (3 won, 2 lost) -> cohort=created 3/5, by amount 6000/8000
#   d11 is created at 2023-12-31 23:00 UTC, i.e. in 2024 in Berlin; d12 is 2025; d13 is deleted.
DEALS = """\
id,name,created_at,is_closed,is_won,closed_at,amount,currency,is_deleted
d01,Alpha,2024-01-05T10:00:00Z,true,true,2024-02-01T00:00:00Z,1000,USD,false
d02,Bravo,2024-02-10T00:00:00Z,true,true,2024-04-01T00:00:00Z,2000,USD,false
d03,Charlie,2024-03-15T00:00:00Z,true,true,2025-01-10T00:00:00Z,3000,USD,false
d04,Delta,2024-04-01T00:00:00Z,true,false,2024-05-01T00:00:00Z,500,USD,false
d05,Echo,2024-05-01T00:00:00Z,true,false,2025-01-20T00:00:00Z,1500,USD,false
d06,Foxtrot,2024-06-01T00:00:00Z,false,false,,100,USD,false
d07,Golf,2024-07-01T00:00:00Z,false,false,,100,USD,false
d08,Hotel,2024-08-01T00:00:00Z,false,false,,100,USD,false
d09,India,2024-09-01T00:00:00Z,false,false,,100,USD,false
d10,Juliet,2024-10-01T00:00:00Z,false,false,,100,USD,false
d11,Kilo,2023-12-31T23:00:00Z,true,true,2024-01-15T00:00:00Z,4000,USD,false
d12,Lima,2025-01-01T00:00:00Z,true,true,2025-02-01T00:00:00Z,999,USD,false
d13,Mike,2024-06-01T00:00:00Z,true,true,2024-07-01T00:00:00Z,10000,USD,true
"""

CONFIG = """\
connectors:
  crm:
    type: files
    path: data
"""

JSON_KEYS = {"metric", "period_start", "period_end", "segment", "value", "unit", "numerator", "denominator"}


def invoke(*args: str, env: dict[str, str] | None = None):
    """Run the CLI; any exception other than a clean exit is a test failure."""
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def make_project(folder: Path, deals: str = DEALS, config: str = CONFIG) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "deals.csv").write_text(deals, encoding="utf-8")
    path = folder / "crmkpi.yaml"
    path.write_text(textwrap.dedent(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> Path:
    """One synced project shared by the read-only `run` tests (run with --no-save)."""
    config = make_project(tmp_path_factory.mktemp("synced"))
    result = invoke("sync", "--config", str(config), env={"CRMKPI_LOAD_PLUGINS": BUILTIN})
    assert result.exit_code == 0, result.output
    return config


def run_json(config: Path, *args: str) -> list[dict]:
    result = invoke("run", "--config", str(config), "--format", "json", "--no-save", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one(config: Path, metric: str, *args: str) -> dict:
    rows = run_json(config, "--metric", metric, *args)
    assert len(rows) == 1 and rows[0]["metric"] == metric
    return rows[0]


def fails(result, message: str) -> None:
    """A user error: exit 1, exactly one line on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output
    assert result.stdout == ""


# --- init and validate ------------------------------------------------------------


def test_init_writes_a_starter_config_that_validates(isolated):
    result = invoke("init")
    assert result.exit_code == 0, result.output
    written = isolated / "crmkpi.yaml"
    assert written.read_text(encoding="utf-8") == STARTER_CONFIG
    assert result.stdout.startswith("Wrote crmkpi.yaml and created data/.")
    assert (isolated / "data").is_dir()  # the README's next step copies files there
    result = invoke("validate")  # --config defaults to crmkpi.yaml in the current folder
    assert result.exit_code == 0, result.output
    assert result.stdout == "crmkpi.yaml: OK (1 connectors, all 2 metrics, 0 schedules)\n"
    assert result.stderr == ""


def test_init_refuses_to_overwrite_unless_forced(isolated):
    target = isolated / "crmkpi.yaml"
    target.write_text("# mine\n", encoding="utf-8")
    fails(invoke("init"), "crmkpi.yaml already exists (use --force to overwrite)")
    assert target.read_text(encoding="utf-8") == "# mine\n"
    result = invoke("init", "--force")
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == STARTER_CONFIG


def test_init_into_a_new_folder_then_sync_and_run_the_whole_catalog(isolated, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    result = invoke("init", "--path", "acme/crmkpi.yaml")
    assert result.exit_code == 0, result.output
    config = isolated / "acme" / "crmkpi.yaml"
    assert config.is_file() and (config.parent / "data").is_dir()
    (config.parent / "data" / "deals.csv").write_text(DEALS, encoding="utf-8")
    assert invoke("sync", "--config", str(config)).exit_code == 0
    rows = run_json(config, "--period", "2024")
    # every metric of the catalog, not the two the starter config used to list
    assert [r["metric"] for r in rows] == list(load_registry().metrics)
    assert {r["metric"]: r["value"] for r in rows}["close_rate"] == 0.3


def test_a_store_without_records_is_an_error_not_a_table_of_zeros(tmp_path):
    config = make_project(tmp_path)
    store = f"sqlite:///{(tmp_path / 'crmkpi.db').resolve()}"
    sync = f"crmkpi sync --config {config}"
    fails(invoke("run", "--config", str(config), "--period", "2024"),
          f"the store {store} is empty: nothing was synced into it yet (run `{sync}`)")
    fails(invoke("explain", "close_rate", "--config", str(config), "--period", "2024"),
          f"the store {store} is empty: nothing was synced into it yet (run `{sync}`)")
    (tmp_path / "data" / "deals.csv").write_text(DEALS.splitlines()[0] + "\n", encoding="utf-8")  # no rows
    assert invoke("sync", "--config", str(config)).exit_code == 0
    result = invoke("run", "--config", str(config), "--period", "2024")
    assert result.exit_code == 1 and result.stdout == ""
    assert re.fullmatch(rf"Error: the store {re.escape(store)} holds no records: its last sync \(crm, success, "
                        rf"started \d{{4}}-\d\d-\d\d \d\d:\d\d UTC\) loaded none \(check the connector's source "
                        rf"and run `{re.escape(sync)}`\)\n", result.stderr)


def test_validate_reports_ok_and_counts(tmp_path):
    config = make_project(tmp_path, config=CONFIG + textwrap.dedent("""\
        metrics:
          win_rate:
            params: {by: amount}
        schedules:
          weekly: {cron: "0 6 * * 1", sync: [crm], metrics: [win_rate]}
        """))
    result = invoke("validate", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{config}: OK (1 connectors, 1 metrics, 1 schedules)\n"


def test_validate_failure_is_one_line_with_exit_code_1(tmp_path):
    config = make_project(tmp_path, config="connectors:\n  crm:\n    type: files\n    on_error: skip\n")
    fails(invoke("validate", "--config", str(config)), "connectors.crm.path: field required")
    config.write_text(CONFIG + "    on_error: maybe\n", encoding="utf-8")
    fails(invoke("validate", "-c", str(config)), "connectors.crm.on_error: input should be 'fail' or 'skip'")
    # a typo used to read "path: field required (and 1 more problem)"
    config.write_text("connectors:\n  crm:\n    type: files\n    pth: data\n", encoding="utf-8")
    fails(invoke("validate", "-c", str(config)), "connectors.crm.pth: unknown field; did you mean 'path'?")
    config.write_text("connectors:\n  crm:\n    type: files\n    pth: data\n    on_eror: skip\n", encoding="utf-8")
    fails(invoke("validate", "-c", str(config)), "2 problems: (1) connectors.crm.pth: unknown field; did you mean "
                                                 "'path'? (2) connectors.crm.on_eror: unknown field; did you mean "
                                                 "'on_error'?")


def test_validate_missing_file_and_config_from_environment(tmp_path):
    fails(invoke("validate"), "config file not found: crmkpi.yaml")
    config = make_project(tmp_path)
    result = invoke("validate", env={"CRMKPI_CONFIG": str(config)})
    assert result.exit_code == 0 and result.stdout.startswith(f"{config}: OK")


# --- sync -------------------------------------------------------------------------


def test_sync_reports_on_stderr_without_progress_bars_when_not_a_terminal(tmp_path, isolated):
    config = make_project(tmp_path / "p")
    result = invoke("sync", "--config", str(config))
    assert result.exit_code == 0, result.output
    db = (tmp_path / "p" / "crmkpi.db").resolve()
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "crm/deals.csv: 13 read, 13 written",
        f"crm: 13 rows changed in sqlite:///{db}",
    ]
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr
    # the default store is crmkpi.db next to the config, not in the current folder
    assert db.is_file() and not (isolated / "crmkpi.db").exists()
    # a second sync of unchanged files says so
    again = invoke("sync", "--config", str(config))
    assert again.stderr.splitlines() == ["crm/deals.csv: unchanged since the last sync",
                                         f"crm: 0 rows changed in sqlite:///{db}"]


def test_relative_sqlite_store_is_next_to_the_config(tmp_path, isolated):
    config = make_project(tmp_path / "p", config="store: sqlite:///kpi.sqlite\n" + CONFIG)
    assert invoke("sync", "--config", str(config)).exit_code == 0
    assert (tmp_path / "p" / "kpi.sqlite").is_file()
    assert not (isolated / "kpi.sqlite").exists() and not (tmp_path / "p" / "crmkpi.db").exists()


def test_sync_unknown_connector_name(tmp_path):
    config = make_project(tmp_path)
    fails(invoke("sync", "--config", str(config), "hubspot"), "unknown connector 'hubspot' (configured: crm)")


# --- run: values ------------------------------------------------------------------


def test_run_json_close_rate_and_win_rate(synced):
    rows = run_json(synced, "--metric", "close_rate", "--metric", "win_rate", "--period", "2024")
    assert isinstance(rows, list) and len(rows) == 2
    for row in rows:
        assert JSON_KEYS <= set(row)
        assert row["period_start"] == "2024-01-01T00:00:00+00:00"
        assert row["period_end"] == "2025-01-01T00:00:00+00:00"
        assert row["segment"] == {} and row["unit"] == "ratio" and row["period"] == "2024"
    close, win = rows
    assert (close["metric"], close["value"], close["numerator"], close["denominator"]) == ("close_rate", 0.3, 3, 10)
    assert (win["metric"], win["value"], win["numerator"], win["denominator"]) == ("win_rate", 0.75, 3, 4)
    assert win["params"] == {"by": "count", "cohort": "closed"}
    assert close["note"] is None


def test_show_sql_prints_the_statements_behind_the_values(synced):
    """A grouped metric's series runs the same few statements however many cells it has; the values are
    the same as without --show-sql, and the statements go to stderr, not into the JSON."""
    series = ("--metric", "close_rate", "--period", "2024", "--grain", "month", "--segment", "currency",
              "--compare", "both")
    shown = invoke("run", "--config", str(synced), "--format", "json", "--no-save", "--show-sql", *series)
    assert shown.exit_code == 0, shown.output
    def values(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k not in ("run_id", "computed_at")} for row in rows]

    assert values(json.loads(shown.stdout)) == values(run_json(synced, *series))
    statements = shown.stderr.split("-- close_rate\n")[1:]
    # the counts per month and currency (24 months with the comparisons), and the deals no period holds
    assert len(statements) == 2, shown.stderr
    assert all("FROM deals" in s and ";\n-- parameters: " in s for s in statements)
    assert "GROUP BY part" in statements[0] and "created_at IS NULL" in statements[1]


def test_win_rate_by_amount_and_by_creation_date(synced):
    # the default cohort: the deals closed in the period, as CRM win-rate reports count them
    by_amount = one(synced, "win_rate", "--period", "2024", "--param", "by=amount")
    assert (by_amount["numerator"], by_amount["denominator"]) == (7000, 7500)
    assert by_amount["value"] == pytest.approx(14 / 15)
    created = one(synced, "win_rate", "--period", "2024", "--param", "win_rate.cohort=created")
    assert (created["value"], created["numerator"], created["denominator"]) == (0.6, 3, 5)
    both = one(synced, "win_rate", "-p", "2024", "--param", "cohort=created", "--param", "win_rate.by=amount")
    assert (both["value"], both["numerator"], both["denominator"]) == (0.75, 6000, 8000)
    assert both["params"] == {"by": "amount", "cohort": "created"}


def test_other_periods(synced):
    q1 = one(synced, "close_rate", "--period", "2024-Q1")
    assert (q1["value"], q1["numerator"], q1["denominator"]) == (1.0, 3, 3)
    q2 = one(synced, "close_rate", "--period", "2024-Q2")  # d04, d05, d06: none won -> 0, not null
    assert (q2["value"], q2["numerator"], q2["denominator"], q2["note"]) == (0.0, 0, 3, None)
    rng = one(synced, "close_rate", "--period", "2024-01-01..2024-02-09")  # d01 only
    assert (rng["value"], rng["denominator"], rng["period"]) == (1.0, 1, "2024-01-01..2024-02-09")
    assert rng["period_end"] == "2024-02-10T00:00:00+00:00"


def test_division_by_zero_is_a_null_value_with_a_reason(synced):
    close, win = run_json(synced, "--period", "2022")
    assert (close["value"], close["numerator"], close["denominator"]) == (None, 0, 0)
    assert close["note"] == "no deals created in the period"
    assert (win["value"], win["note"]) == (None, "no deals closed (won or lost) in the period")
    table = invoke("run", "--config", str(synced), "--period", "2022", "--no-save").stdout
    close_line = next(line for line in table.splitlines() if "Close rate" in line)
    assert "—" in close_line and "no deals created in the period" in close_line


def test_reporting_timezone_moves_the_period_bounds(tmp_path):
    config = make_project(tmp_path, config="reporting: {timezone: Europe/Berlin}\n" + CONFIG)
    assert invoke("sync", "--config", str(config)).exit_code == 0
    close = one(config, "close_rate", "--period", "2024")
    # Berlin's 2024 starts at 23:00 UTC on 31 December 2023: d11 joins the cohort (and it was won)
    assert (close["numerator"], close["denominator"]) == (4, 11)
    assert close["value"] == pytest.approx(4 / 11)
    assert close["period_start"] == "2023-12-31T23:00:00+00:00"
    assert close["period_end"] == "2024-12-31T23:00:00+00:00"


def test_fiscal_year_and_default_period_come_from_the_config(tmp_path, monkeypatch):
    config = make_project(tmp_path, config=textwrap.dedent("""\
        reporting:
          fiscal_year_start_month: 4
          default_period: last-year
        """) + CONFIG)
    assert invoke("sync", "--config", str(config)).exit_code == 0

    # June 15th 2024 is in FY2025, so last-year is FY2024: April 2023 to March 2024.
    monkeypatch.setattr(crmkpi.cli, "_today", lambda timezone: date(2024, 6, 15))
    close = one(config, "close_rate")
    assert close["period"] == "FY2024"
    assert (close["period_start"], close["period_end"]) == ("2023-04-01T00:00:00+00:00", "2024-04-01T00:00:00+00:00")
    assert (close["numerator"], close["denominator"]) == (4, 4)  # d01, d02, d03, d11: all won
    assert one(config, "close_rate", "--period", "this-quarter")["period"] == "FY2025-Q1"


def test_config_params_apply_and_command_line_params_override_them(tmp_path):
    config = make_project(tmp_path, config=CONFIG + "metrics:\n  win_rate:\n    params: {by: amount}\n")
    assert invoke("sync", "--config", str(config)).exit_code == 0
    rows = run_json(config, "--period", "2024")  # only the config's metrics
    assert [(r["metric"], r["value"]) for r in rows] == [("win_rate", pytest.approx(14 / 15))]  # 7000 / 7500
    assert one(config, "win_rate", "--period", "2024", "--param", "by=count")["value"] == 0.75


def test_amounts_in_other_currencies_need_a_dated_rate(tmp_path):
    deals = DEALS.replace("d04,Delta,2024-04-01T00:00:00Z,true,false,2024-05-01T00:00:00Z,500,USD",
                          "d04,Delta,2024-04-01T00:00:00Z,true,false,2024-05-01T00:00:00Z,500,EUR")
    assert deals != DEALS
    config = make_project(tmp_path, deals=deals)
    assert invoke("sync", "--config", str(config)).exit_code == 0
    result = invoke("run", "--config", str(config), "--metric", "win_rate", "--period", "2024",
                    "--param", "by=amount", "--param", "cohort=created", "--no-save", "--format", "json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)[0]["error"] == \
        "no fx_rates rate for EUR on or before 2024-05-01 (rates convert to the reporting currency USD)"
    assert one(config, "win_rate", "--period", "2024")["value"] == 0.75  # by count is unaffected

    # A rate valid from after the close date does not count; one valid before it does.
    fx = "id,currency,rate_to_reporting,valid_from\nr1,EUR,1.1,2024-01-01\nr2,EUR,5.0,2024-05-02\n"
    (config.parent / "data" / "fx_rates.csv").write_text(fx)
    assert invoke("sync", "--config", str(config)).exit_code == 0
    win = one(config, "win_rate", "--period", "2024", "--param", "by=amount")
    assert (win["numerator"], win["denominator"]) == (7000.0, pytest.approx(7550.0))


# --- run: formats and options -----------------------------------------------------


def test_table_format(synced):
    result = invoke("run", "--config", str(synced), "--period", "2024", "--no-save")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert ["Metric", "Period", "Value", "Numerator", "Denominator", "Note"] == lines[0].replace("┃", " ").split()
    close = next(line for line in lines if line.lstrip().startswith("Close rate"))
    win = next(line for line in lines if line.lstrip().startswith("Win rate"))
    assert close.replace("│", " ").split() == ["Close", "rate", "2024", "30.0%", "3", "10"]
    assert win.replace("│", " ").split() == ["Win", "rate", "2024", "75.0%", "3", "4"]
    assert "\x1b[" not in result.stdout


def test_csv_format(synced):
    result = invoke("run", "--config", str(synced), "--period", "2024-Q1", "--format", "csv", "--no-save")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["metric", "period", "period_start", "period_end", "segment", "segment_labels",
                             "value", "unit", "currency", "numerator", "denominator", "note", "error"]
    assert [(r["metric"], float(r["value"]), float(r["numerator"]), float(r["denominator"])) for r in rows] == [
        ("close_rate", 1.0, 3, 3), ("win_rate", 1.0, 2, 2)]
    assert rows[0]["period"] == "2024-Q1" and rows[0]["period_start"].startswith("2024-01-01")
    assert rows[0]["unit"] == "ratio" and rows[0]["segment"] == ""


def _saved_results(config: Path) -> list[tuple]:
    with sqlite3.connect(config.parent / "crmkpi.db") as conn:
        return conn.execute("SELECT metric, value, numerator, denominator FROM metric_results ORDER BY metric").fetchall()


def test_results_are_saved_unless_no_save(tmp_path):
    config = make_project(tmp_path)
    assert invoke("sync", "--config", str(config)).exit_code == 0
    assert _saved_results(config) == []
    result = invoke("run", "--config", str(config), "--period", "2024", "--no-save")
    assert result.exit_code == 0 and _saved_results(config) == []
    result = invoke("run", "--config", str(config), "--period", "2024", "--format", "json")
    assert result.exit_code == 0
    assert _saved_results(config) == [("close_rate", 0.3, 3.0, 10.0), ("win_rate", 0.75, 3.0, 4.0)]
    run_ids = {r["run_id"] for r in json.loads(result.stdout)}
    assert len(run_ids) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "churn_rate"], "unknown metric 'churn_rate' (known: close_rate, win_rate)"),
        (["--period", "last-fortnight"], "period 'last-fortnight': expected 2024, 2024-Q1, 2024-03, 2024-W05, "
                                         "2024-03-15, 2024-01-01..2024-03-31, this-/last-day|week|month|quarter|"
                                         "year, month-to-date or last-7-days"),
        (["--param", "by"], "--param 'by': expected KEY=VALUE or METRIC.KEY=VALUE"),
        (["--param", "=amount"], "--param '=amount': expected KEY=VALUE or METRIC.KEY=VALUE"),
        (["--param", "weighting=amount"], "--param 'weighting=amount': no selected metric has a param 'weighting'"),
        (["--param", "by=revenue"], "win_rate: param by: 'revenue' is not one of count, amount"),
        (["--metric", "close_rate", "--param", "close_rate.by=amount"], "close_rate: unknown param 'by' (params: none)"),
        (["--metric", "close_rate", "--param", "by=amount"], "--param 'by=amount': no selected metric has a param 'by'"),
    ],
)
def test_run_errors_are_one_line(synced, args, message):
    fails(invoke("run", "--config", str(synced), "--period", "2024", "--no-save", *args), message)


def test_bad_format_is_a_usage_error(synced):
    result = invoke("run", "--config", str(synced), "--format", "xml")
    assert result.exit_code == 2 and "'xml' is not one of 'table', 'json', 'csv'" in result.stderr
    assert "Traceback" not in result.output


def test_unexpected_errors_are_one_line_too(synced, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(crmkpi.cli, "run_metrics", explode)
    fails(invoke("run", "--config", str(synced), "--period", "2024"),
          "unexpected RuntimeError: kaboom (run with --debug for details)")


def test_debug_prints_the_traceback_instead_of_one_line(synced):
    result = CliRunner().invoke(cli, ["--debug", "run", "--config", str(synced), "--period", "bogus"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("crmkpi.errors.ConfigError: ") and "period 'bogus'" in last
    assert not any(line.startswith("Error: ") for line in result.stderr.splitlines())  # no one-line error too


def test_debug_prints_the_traceback_in_a_real_process(tmp_path):
    missing = tmp_path / "missing.yaml"
    command = [sys.executable, "-m", "crmkpi.cli", "--debug", "validate", "--config", str(missing)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CRMKPI_LOAD_PLUGINS": BUILTIN}
    debug = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.rstrip().endswith(f"crmkpi.errors.ConfigError: config file not found: {missing}")
    assert debug.stdout == ""


def test_a_librarys_warning_does_not_reach_stderr_without_debug(synced, tmp_path):
    """psycopg logs "error ignored terminating <Pipeline>: pipeline aborted" when SIGTERM interrupts a write;
    Python would print it beside crmkpi's one line. In a real process: no pytest handler in the way."""
    noisy = ("import logging, sys; from crmkpi import cli as c; real = c.run_metrics\n"
             "def run_metrics(*args, **kwargs):\n"
             "    logging.getLogger('psycopg').warning('error ignored terminating <Pipeline>: pipeline aborted')\n"
             "    return real(*args, **kwargs)\n"
             "c.run_metrics = run_metrics; sys.argv[0] = 'crmkpi'; c.main()")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CRMKPI_LOAD_PLUGINS": BUILTIN}
    for debug, shown in (([], False), (["--debug"], True)):
        result = subprocess.run([sys.executable, "-c", noisy, *debug, "run", "--config", str(synced), "--period",
                                 "2024", "--no-save"], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert ("pipeline aborted" in result.stderr) is shown, result.stderr


# --- secrets ----------------------------------------------------------------------


def test_secrets_from_the_environment_are_never_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("CRMKPI_DB_PASSWORD", SECRET)
    # nothing listens on port 1: sync and run fail to connect, and must say so without the password
    config = make_project(tmp_path, config="store: postgresql://crmkpi:${CRMKPI_DB_PASSWORD}@127.0.0.1:1/kpi\n"
                                           + CONFIG)
    outputs = []
    result = invoke("validate", "--config", str(config))
    assert result.exit_code == 0
    outputs.append(result.output)
    for args in (["sync"], ["run", "--period", "2024"]):
        result = invoke(*args, "--config", str(config))
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: cannot open store postgresql+psycopg://crmkpi:***@127.0.0.1:1/kpi")
        assert len(result.stderr.splitlines()) == 1
        outputs.append(result.output)
    outputs.append(invoke("plugins").output + invoke("plugins", "--json").output)
    # an invalid config with the secret in it
    config.write_text("store: postgresql://crmkpi:${CRMKPI_DB_PASSWORD}@db:bad/kpi\n" + CONFIG, encoding="utf-8")
    for args in (["validate"], ["sync"], ["run"]):
        result = invoke(*args, "--config", str(config))
        assert result.exit_code == 1 and result.stderr.startswith("Error: store: not a database URL")
        outputs.append(result.output)
    config.write_text("store: postgresql://crmkpi:${CRMKPI_DB_PASSWORD}@db/kpi\n"
                      "connectors:\n  crm:\n    type: files\n", encoding="utf-8")
    outputs.append(invoke("validate", "--config", str(config)).output)
    assert outputs and all(SECRET not in out for out in outputs), outputs


# --- metrics list / show ----------------------------------------------------------


def test_metrics_list():
    result = invoke("metrics", "list")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "close_rate  Close rate (ratio, higher is better)",
        "win_rate    Win rate (ratio, higher is better)",
    ]
    listed = json.loads(invoke("metrics", "list", "--json").stdout)
    assert listed == [
        {"id": "close_rate", "title": "Close rate", "unit": "ratio", "direction": "higher", "plugin": "sales_metrics"},
        {"id": "win_rate", "title": "Win rate", "unit": "ratio", "direction": "higher", "plugin": "sales_metrics"},
    ]


def test_metrics_show():
    result = invoke("metrics", "show", "win_rate")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("win_rate: Win rate\n")
    assert "Formula: won deals / (won deals + lost deals), over the deals closed in the period (or created " \
           "in it)" in out
    assert "Unit: ratio; higher is better" in out and "Tables: deals" in out
    assert f"Plugin: sales_metrics (crmkpi {crmkpi.__version__})" in out
    assert "  by (str, default 'count'): weigh deals by count or by amount (one of: count, amount)" in out
    assert "  cohort (str, default 'closed'): which deals count: those closed in the period (as CRM win-rate " \
           "reports count them), or those created in it (one of: closed, created)" in out
    close = invoke("metrics", "show", "close_rate").stdout
    assert "Formula: won deals created in the period / deals created in the period" in close
    assert "Params:" not in close
    fails(invoke("metrics", "show", "nps"), "unknown metric 'nps' (known: close_rate, win_rate)")


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"crmkpi, version {crmkpi.__version__}\n"


def test_the_cli_starts_without_the_service_stack():
    """Only `crmkpi serve` and `crmkpi jobs` load FastAPI and croniter: croniter runs `file` on the interpreter
    as it is imported, a child process every other command (a sync) would start for nothing."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, crmkpi.cli; "
                             "print(sorted({'croniter', 'fastapi', 'uvicorn'} & set(sys.modules)))"],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
