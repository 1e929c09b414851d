"""The YAML config: ``${VAR}`` interpolation, precise one-line validation errors, store resolution."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crmkpi.config import load_config
from crmkpi.connectors.files.settings import FilesSettings
from crmkpi.errors import ConfigError
from crmkpi.plugins import load_registry
from crmkpi.store import resolve_url

SECRET = "pa55-W0rd-s3cr3t"


@pytest.fixture(scope="module")
def registry():
    # the built-in plugins only (the same set conftest selects through CRMKPI_LOAD_PLUGINS)
    reg = load_registry(distribution="crmkpi")
    assert set(reg.connectors) == {"files", "salesforce", "hubspot"} and {"close_rate", "win_rate"} <= set(reg.metrics)
    return reg


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    return folder


def write(folder: Path, text: str, name: str = "crmkpi.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(folder: Path, registry, text: str):
    return load_config(write(folder, text), registry)


def error(folder: Path, registry, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(folder, registry, text)
    message = str(err.value)
    assert "\n" not in message, message
    return message


FILES = """\
connectors:
  crm:
    type: files
    path: data
"""


# --- a valid config ---------------------------------------------------------------


def test_full_config_loads_with_typed_settings(project, registry):
    config = load(project, registry, """\
        store: sqlite:///kpi.db
        reporting:
          currency: EUR
          timezone: Europe/Berlin
          fiscal_year_start_month: 4
          week_start: sunday
          default_period: last-quarter
        connectors:
          crm:
            type: files
            path: data
            on_error: skip
            tables:
              deals: {file: opportunities.csv, columns: {amount: Amount}}
        metrics:
          close_rate:
          win_rate:
            params: {by: amount, cohort: closed}
        schedules:
          weekly:
            cron: "0 6 * * 1"
            sync: [crm]
            metrics: [close_rate, win_rate]
            period: last-week
        """)
    assert config.path == (project / "crmkpi.yaml").resolve()
    assert config.base_dir == project.resolve()
    assert config.store == "sqlite:///kpi.db"
    r = config.reporting
    assert (r.currency, r.timezone, r.fiscal_year_start_month, r.week_start, r.default_period) == (
        "EUR", "Europe/Berlin", 4, "sunday", "last-quarter")
    crm = config.connectors["crm"]
    assert crm.type == "files"
    assert isinstance(crm.settings, FilesSettings)
    assert (crm.settings.path, crm.settings.on_error, crm.settings.timezone) == ("data", "skip", "UTC")
    assert crm.settings.tables["deals"].file == "opportunities.csv"
    assert crm.settings.tables["deals"].columns == {"amount": "Amount"}
    assert config.metrics == {"close_rate": {}, "win_rate": {"by": "amount", "cohort": "closed"}}
    weekly = config.schedules["weekly"]
    assert (weekly.cron, weekly.sync, weekly.metrics, weekly.period) == (
        "0 6 * * 1", ["crm"], ["close_rate", "win_rate"], "last-week")


def test_defaults(project, registry):
    config = load(project, registry, FILES)
    assert config.store is None
    r = config.reporting
    assert (r.currency, r.timezone, r.fiscal_year_start_month, r.week_start, r.default_period) == (
        "USD", "UTC", 1, "monday", "last-month")
    assert config.metrics is None  # every registered metric
    assert config.schedules == {}
    assert config.connectors["crm"].settings.on_error == "fail"


def test_empty_file_is_an_empty_config(project, registry):
    config = load(project, registry, "")
    assert config.connectors == {} and config.metrics is None and config.store is None


# --- ${VAR} interpolation ---------------------------------------------------------


def test_variables_are_read_from_the_environment(project, registry, monkeypatch):
    monkeypatch.setenv("CRM_DATA", "exports")
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    monkeypatch.setenv("FY_START", "7")
    monkeypatch.delenv("CRM_TZ", raising=False)
    config = load(project, registry, """\
        store: postgresql://crmkpi:${DB_PASSWORD}@db.internal:5432/kpi
        reporting:
          timezone: ${CRM_TZ:-America/Chicago}
          fiscal_year_start_month: ${FY_START}
        connectors:
          crm:
            type: files
            path: ${CRM_DATA}/${CRM_SUBDIR:-2024}
        schedules:
          nightly:
            cron: "0 2 * * *"
            sync: ["${CONNECTOR:-crm}"]
        """)
    assert config.store == f"postgresql://crmkpi:{SECRET}@db.internal:5432/kpi"
    assert config.reporting.timezone == "America/Chicago"
    assert config.reporting.fiscal_year_start_month == 7  # interpolated text still validates as an int
    assert config.connectors["crm"].settings.path == "exports/2024"
    assert config.schedules["nightly"].sync == ["crm"]


def test_a_set_variable_wins_over_the_default(project, registry, monkeypatch):
    monkeypatch.setenv("CRM_DATA", "from-env")
    config = load(project, registry, FILES.replace("path: data", "path: ${CRM_DATA:-fallback}"))
    assert config.connectors["crm"].settings.path == "from-env"


def test_an_empty_variable_takes_the_default_like_the_shell(project, registry, monkeypatch):
    monkeypatch.setenv("CRM_DATA", "")
    config = load(project, registry, FILES.replace("path: data", "path: ${CRM_DATA:-fallback}"))
    assert config.connectors["crm"].settings.path == "fallback"
    # without a default an empty variable is just empty
    config = load(project, registry, FILES.replace("path: data", "path: x${CRM_DATA}y"))
    assert config.connectors["crm"].settings.path == "xy"


def test_empty_default(project, registry, monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    config = load(project, registry, FILES.replace("path: data", "path: data${NOPE:-}"))
    assert config.connectors["crm"].settings.path == "data"


@pytest.mark.parametrize(
    "text, where",
    [
        ("store: postgresql://u:${CRMKPI_TEST_MISSING}@h/db\n", "store"),
        (FILES.replace("path: data", "path: ${CRMKPI_TEST_MISSING}"), "connectors.crm.path"),
        (FILES + "schedules:\n  n:\n    cron: '* * * * *'\n    sync: [crm, '${CRMKPI_TEST_MISSING}']\n",
         "schedules.n.sync.1"),
    ],
)
def test_missing_variable_without_default_names_it_and_where(project, registry, monkeypatch, text, where):
    monkeypatch.delenv("CRMKPI_TEST_MISSING", raising=False)
    assert error(project, registry, text) == f"{where}: environment variable CRMKPI_TEST_MISSING is not set"


def test_secret_values_never_appear_in_validation_errors(project, registry, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    store = "store: postgresql://crmkpi:${DB_PASSWORD}@db.internal/kpi\n"
    for broken in (
        store + "connectors:\n  crm:\n    type: files\n",                      # missing path
        store + "connectors:\n  crm:\n    type: files\n    path: d\n    on_error: ${DB_PASSWORD}\n",
        store + "reporting:\n  currency: EUR\n  colour: blue\n",
        "store: postgresql://crmkpi:${DB_PASSWORD}@db.internal:notaport/kpi\n",  # unparsable URL
        "store: nosuchdb://crmkpi:${DB_PASSWORD}@db.internal/kpi\n",
    ):
        message = error(project, registry, broken)
        assert SECRET not in message, message


# --- precise one-line validation errors -------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("connectors:\n  crm:\n    type: files\n", "connectors.crm.path: field required"),
        ("connectors:\n  crm:\n    path: data\n", "connectors.crm.type: field required"),
        ("connectors:\n  crm:\n", "connectors.crm: input should be a valid dictionary"),
        ("connectors:\n  crm:\n    type: pipedrive\n    api_token: x\n",
         "connectors.crm.type: unknown connector type 'pipedrive' (known: files, hubspot, salesforce)"),
        (FILES + "    on_error: ignore\n", "connectors.crm.on_error: input should be 'fail' or 'skip'"),
        (FILES + "    pth: data2\n", "connectors.crm.pth: unknown field; did you mean 'path'?"),
        (FILES + "    tables:\n      deals:\n        delimter: ';'\n",
         "connectors.crm.tables.deals.delimter: unknown field; did you mean 'delimiter'?"),
        # a misspelt required key is one problem, not that and "path: field required"
        ("connectors:\n  crm:\n    type: files\n    pth: data\n",
         "connectors.crm.pth: unknown field; did you mean 'path'?"),
        (FILES + "    tables:\n      deals:\n        derive:\n          stage: {fro: Stage, map: {}}\n",
         "connectors.crm.tables.deals.derive.stage.fro: unknown field; did you mean 'from'?"),
        (FILES + "    tables:\n      deals:\n        format: xlsx\n",
         "connectors.crm.tables.deals.format: input should be 'csv' or 'jsonl'"),
        ("conectors: {}\n", "conectors: unknown field; did you mean 'connectors'?"),
        ("reporting:\n  fiscal_year_start_month: 13\n",
         "reporting.fiscal_year_start_month: input should be less than or equal to 12"),
        ("reporting:\n  fiscal_year_start_month: april\n",
         "reporting.fiscal_year_start_month: input should be a valid integer, unable to parse string as an integer"),
        ("reporting:\n  week_start: tuesday\n", "reporting.week_start: input should be 'monday' or 'sunday'"),
        ("reporting:\n  currencyy: EUR\n", "reporting.currencyy: unknown field; did you mean 'currency'?"),
        ("metrics:\n  churn_ratio: {}\n",
         "metrics.churn_ratio: unknown metric; did you mean 'churn_rate'? (see `crmkpi metrics list`)"),
        ("metrics:\n  win_rate:\n    parms: {by: amount}\n",
         "metrics.win_rate.parms: unknown field; did you mean 'params'?"),
        ("metrics:\n  win_rate:\n    by: amount\n", "metrics.win_rate.by: unknown field"),
        ("metrics:\n  win_rate:\n    params: {by: revenue}\n",
         "metrics.win_rate.params: param by: 'revenue' is not one of count, amount"),
        ("metrics:\n  win_rate:\n    params: {weighting: amount}\n",
         "metrics.win_rate.params: unknown param 'weighting' (params: by, cohort)"),
        ("metrics:\n  close_rate:\n    params: {by: amount}\n",
         "metrics.close_rate.params: unknown param 'by' (params: none)"),
        ("schedules:\n  nightly:\n    metrics: [win_rate]\n", "schedules.nightly.cron: field required"),
        ("schedules:\n  - cron: '0 2 * * *'\n", "schedules: input should be a valid dictionary"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    every: day\n", "schedules.nightly.every: unknown field"),
        ("schedules:\n  nightly:\n    crn: '0 2 * * *'\n",
         "schedules.nightly.crn: unknown field; did you mean 'cron'?"),
        (FILES + "schedules:\n  nightly:\n    cron: '0 2 * * *'\n    sync: [hubspot]\n",
         "schedules.nightly.sync: unknown connector 'hubspot'"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    metrics: [net_promoter]\n",
         "schedules.nightly.metrics: unknown metric 'net_promoter'"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    metrics: [sales_volum]\n",
         "schedules.nightly.metrics: unknown metric 'sales_volum'; did you mean 'sales_volume' or 'sales_velocity'?"),
        ("schedules:\n  nightly:\n    cron: '0 2 * *'\n    metrics: [win_rate]\n",
         "schedules.nightly.cron: '0 2 * *' is not a five-field cron expression (minute hour day-of-month month "
         "day-of-week), e.g. '0 7 * * 1' for Mondays at 07:00"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * * 5'\n    metrics: [win_rate]\n",
         "schedules.nightly.cron: '0 2 * * * 5' is not a five-field cron expression (minute hour day-of-month month "
         "day-of-week), e.g. '0 7 * * 1' for Mondays at 07:00"),
        ("schedules:\n  nightly:\n    cron: '0 25 * * *'\n    metrics: [win_rate]\n",
         "schedules.nightly.cron: '0 25 * * *' is not a five-field cron expression (minute hour day-of-month month "
         "day-of-week), e.g. '0 7 * * 1' for Mondays at 07:00"),
        ("schedules:\n  nightly:\n    cron: '0 0 30 2 *'\n    metrics: [win_rate]\n",
         "schedules.nightly.cron: '0 0 30 2 *' never happens"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    timezone: Europe/Atlantis\n    metrics: [win_rate]\n",
         "schedules.nightly.timezone: unknown timezone 'Europe/Atlantis'"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n", "schedules.nightly: nothing to do: give sync (connectors), "
                                                            "metrics, alerts and/or report"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    metrics: [win_rate]\n    params: {close_rate: {}}\n",
         "schedules.nightly.params.close_rate: not one of the schedule's metrics (win_rate)"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    metrics: [win_rate]\n    params: {win_rate: {by: x}}\n",
         "schedules.nightly.params.win_rate: param by: 'x' is not one of count, amount"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    metrics: [win_rate]\n    grain: hour\n",
         "schedules.nightly.grain: input should be 'day', 'week', 'month', 'quarter' or 'year'"),
        ("schedules:\n  nightly:\n    cron: '0 2 * * *'\n    metrics: [win_rate]\n    period: last-fortnight\n",
         "schedules.nightly.period: period 'last-fortnight': expected 2024, 2024-Q1, 2024-03, 2024-W05, 2024-03-15, "
         "2024-01-01..2024-03-31, this-/last-day|week|month|quarter|year, month-to-date or last-7-days"),
    ],
)
def test_validation_errors_are_precise_one_liners(project, registry, text, expected):
    assert error(project, registry, text) == expected


def test_bad_timezones_are_named(project, registry):
    message = error(project, registry, "reporting:\n  timezone: Mars/Olympus_Mons\n")
    assert message == "reporting.timezone: unknown timezone 'Mars/Olympus_Mons'"
    message = error(project, registry, FILES + "    timezone: Europe/Atlantis\n")
    assert message == "connectors.crm.timezone: unknown timezone 'Europe/Atlantis'"


def test_unknown_table_in_files_connector(project, registry):
    message = error(project, registry, FILES + "    tables:\n      opportunities: {}\n")
    assert message.startswith("connectors.crm.tables: unknown table 'opportunities'; did you mean 'deals'? "
                              "(tables: users, accounts,")


def test_several_problems_are_all_named_on_one_line(project, registry):
    message = error(project, registry, FILES + "    on_error: ignore\n    pth: x\n    tables: 3\n")
    assert message == ("3 problems: (1) connectors.crm.on_error: input should be 'fail' or 'skip' "
                       "(2) connectors.crm.tables: input should be a valid dictionary "
                       "(3) connectors.crm.pth: unknown field; did you mean 'path'?")
    message = error(project, registry, "reporting:\n  week_start: tuesday\n  fiscal_year_start_month: 0\n")
    assert message == ("2 problems: (1) reporting.fiscal_year_start_month: input should be greater than or equal "
                       "to 1 (2) reporting.week_start: input should be 'monday' or 'sunday'")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("reporting:\n  default_period: last-fortnight\n", "reporting.default_period: period 'last-fortnight': "),
        ("schedules:\n  n:\n    cron: '0 2 * * *'\n    period: 2024-Q5\n", "schedules.n.period: period '2024-Q5': "),
    ],
)
def test_periods_in_the_config_are_checked(project, registry, text, expected):
    assert error(project, registry, text).startswith(expected)


@pytest.mark.parametrize(
    "store, expected",
    [
        ("not a url", "store: not a database URL"),
        ("postgresql://u:p@host:port/db", "store: not a database URL"),
        ("mongodb://localhost/kpi", "store: unsupported database 'mongodb'"),
    ],
)
def test_bad_store_urls(project, registry, store, expected):
    assert error(project, registry, f"store: '{store}'\n").startswith(expected)


@pytest.mark.parametrize("store", ["sqlite:///kpi.db", "sqlite:////abs/kpi.db", "postgresql://u:p@h/db",
                                   "postgresql+psycopg://u@h:5433/db", "sqlite://"])
def test_good_store_urls(project, registry, store):
    assert load(project, registry, f"store: '{store}'\n").store == store


def test_file_problems(project, registry, tmp_path):
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope\.yaml$"):
        load_config(tmp_path / "nope.yaml", registry)
    with pytest.raises(ConfigError) as err:
        load(project, registry, "connectors:\n  crm:\n    type: files\n   path: [unclosed\n")
    assert "invalid YAML" in str(err.value) and "line" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="expected a mapping at the top level$"):
        load(project, registry, "- a\n- b\n")


def test_connector_types_come_from_the_registry(project, tmp_path, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "sales_metrics")
    empty = load_registry()
    assert error(project, empty, FILES) == "connectors.crm.type: unknown connector type 'files' (known: none loaded)"


# --- where the store is -----------------------------------------------------------


def test_default_store_is_crmkpi_db_next_to_the_config(project, registry, isolated):
    config = load(project, registry, FILES)
    assert resolve_url(config.store, config.base_dir) == f"sqlite:///{project.resolve() / 'crmkpi.db'}"
    assert isolated != project  # cwd (the isolated work dir) plays no part


def test_relative_sqlite_store_is_resolved_against_the_config_folder(project, registry, isolated):
    config = load(project, registry, "store: sqlite:///db/kpi.sqlite\n")
    assert resolve_url(config.store, config.base_dir) == f"sqlite:///{project.resolve() / 'db' / 'kpi.sqlite'}"
    absolute = project.parent / "elsewhere.db"
    config = load(project, registry, f"store: sqlite:///{absolute}\n")
    assert resolve_url(config.store, config.base_dir) == f"sqlite:///{absolute}"


def test_config_given_by_a_relative_path(project, registry, isolated, monkeypatch):
    write(project, FILES)
    monkeypatch.chdir(project.parent)
    config = load_config("project/crmkpi.yaml", registry)
    assert config.path.is_absolute() and config.base_dir == project.resolve()
    assert resolve_url(config.store, config.base_dir) == f"sqlite:///{project.resolve() / 'crmkpi.db'}"


def test_impossible_yaml_date_is_a_one_line_error(project, registry):
    message = error(project, registry, "targets:\n  - {metric: close_rate, value: 0.3, deadline: 2024-02-30}\n")
    assert message.endswith("invalid value: day is out of range for month")


def test_target_start_after_deadline_is_rejected(project, registry):
    message = error(project, registry,
                    "targets:\n  - {metric: close_rate, value: 0.3, deadline: 2024-03-31, start: 2024-06-01}\n")
    assert message == "targets.0: start is after deadline"


def test_periods_yaml_reads_as_numbers_or_dates_are_periods(project, registry):
    config = load(project, registry, """\
        reporting: {default_period: 2025}
        targets:
          - {metric: win_rate, value: 0.4, period: 2025}
          - {metric: close_rate, value: 0.3, period: 2025-03-14}
        """)
    assert config.reporting.default_period == "2025"
    assert [t.period for t in config.targets] == ["2025", "2025-03-14"]
    assert "targets.0.period" in error(project, registry, """\
        targets:
          - {metric: win_rate, value: 0.4, period: 20255}
        """)
