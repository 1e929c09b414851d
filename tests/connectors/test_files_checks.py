"""What the files connector refuses or reports, so that a KPI that syncs is a KPI to trust.

Each case is a problem found on real exports, reproduced through ``crmkpi sync``, ``validate``
and ``run``: before, it loaded silently into a wrong number; now it is an error naming file,
line, column and reason, or a note in the sync report, and the number is right once the
file or config is fixed.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from crmkpi.cli import cli

from conftest import ALL_BUILTINS
from storecheck import ok, one_line_error, snapshot, sync_runs, table_rows


class Project:
    """A folder with data/ and a crmkpi.yaml whose one files connector is ``crm``."""

    def __init__(self, folder: Path, store: str) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True)
        self.store = store
        self.config = folder / "crmkpi.yaml"
        self.configure()

    def configure(self, **settings: Any) -> None:
        block = {"type": "files", "path": "data", **settings}
        self.config.write_text(yaml.safe_dump({"store": self.store, "connectors": {"crm": block}}, sort_keys=False),
                               encoding="utf-8")

    def write(self, name: str, text: str) -> None:
        (self.data / name).write_text(textwrap.dedent(text), encoding="utf-8")

    def invoke(self, command: str, *args: str):
        return CliRunner().invoke(cli, [command, "--config", str(self.config), *args])

    def sync(self) -> str:
        return ok(self.invoke("sync"))

    def fails(self, command: str = "sync") -> str:
        return one_line_error(self.invoke(command))

    def value(self, metric: str, period: str, *args: str) -> float | None:
        result = self.invoke("run", "--metric", metric, "--period", period, "--format", "json", "--no-save", *args)
        assert result.exit_code == 0, result.output
        [row] = json.loads(result.stdout)
        return row["value"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """Loads the files connector and the sales metrics (close_rate, win_rate), as the test suite does."""
    return Project(tmp_path / "project", f"sqlite:///{tmp_path / 'store.db'}")


@pytest.fixture
def project_any_store(store_url: str, tmp_path: Path) -> Project:
    """The same, once on SQLite and once on PostgreSQL."""
    return Project(tmp_path / "project", store_url)


@pytest.fixture
def every_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)


def notes(output: str) -> list[str]:
    return [line.removeprefix("  note: ") for line in output.splitlines() if line.startswith("  note: ")]


# -- 1. columns named otherwise, or missing -----------------------------------------------------

WON_AND_CLOSE_DATE = """\
    id,won,is_closed,close_date,created_at
    d1,true,true,2025-02-01,2025-01-05
    d2,false,true,2025-02-10,2025-01-06
    """


def test_columns_the_metrics_need_under_other_names_fail_the_sync_and_say_which(project_any_store):
    project = project_any_store
    project.write("deals.csv", WON_AND_CLOSE_DATE)
    assert project.fails() == (
        "deals.csv: no value for deals.is_won, so every row would read as is_won = false in close_rate, win_rate; "
        "map a source column to it, derive it, or set it as a constant (deals.csv has 'won', kept in extra: map it "
        "with columns: {is_won: won})")
    assert table_rows(project.store, "deals") == {}

    project.configure(tables={"deals": {"columns": {"is_won": "won"}}})
    output = project.sync()
    assert notes(output) == [
        "deals.csv: not columns of deals, kept in extra: 'close_date' (did you mean 'closed_at'?); map them with "
        "columns:, or list custom fields under extra: to keep them without this note",
        "deals.csv: no value for deals.closed_at (empty in every row), needed by win_rate (deals.csv has "
        "'close_date', kept in extra: map it with columns: {closed_at: close_date})",
    ]
    assert project.value("win_rate", "2025", "--param", "cohort=closed") is None  # no deal has a close date

    project.configure(tables={"deals": {"columns": {"is_won": "won", "closed_at": "close_date"}}})
    assert notes(project.sync()) == []
    assert project.value("win_rate", "2025") == 0.5
    assert project.value("win_rate", "2025", "--param", "cohort=closed") == 0.5


def test_a_deals_file_without_is_closed_and_is_won_is_an_error_not_open_deals(project):
    project.write("deals.csv", "id,created_at,amount\nd1,2025-01-05,100\n")
    assert project.fails() == (
        "deals.csv: no value for deals.is_closed, deals.is_won, so every row would read as is_closed = false in "
        "win_rate, is_won = false in close_rate, win_rate; map a source column to each, derive it, or set it as a "
        "constant")
    project.configure(tables={"deals": {"constants": {"is_closed": False, "is_won": False}}})  # really all open
    assert notes(project.sync()) == ["deals.csv: no value for deals.closed_at (empty in every row), needed by win_rate"]
    assert project.value("close_rate", "2025") == 0.0


def test_needed_columns_are_checked_against_every_loaded_metric(project, every_metric):
    project.write("tickets.csv", "id,created_at\nt1,2025-01-05\n")
    assert notes(project.sync()) == [
        "tickets.csv: no value for tickets.first_response_at (empty in every row), needed by first_response_time",
        "tickets.csv: no value for tickets.resolved_at (empty in every row), needed by avg_resolution_time, "
        "resolution_rate",
    ]
    project.configure(strict=True)
    project.write("tickets.csv", "id,created_at\nt1,2025-01-06\n")
    assert project.fails() == ("tickets.csv: no value for tickets.first_response_at (empty in every row), needed by "
                               "first_response_time (strict)")


# -- 2. derive reads the file's value, and a key that matches nothing is reported ----------------

STAGES = """\
    Deal,Stage,Created,Closed
    1,Closed Won,2025-01-02,2025-02-01
    2,Closed Lost,2025-01-03,2025-02-01
    3,Closed Won,2025-01-04,2025-02-01
    4,Negotiation,2025-01-05,2025-06-30
    """


def stage_mapping(derive_keys: dict[str, str]) -> dict[str, Any]:
    return {"deals": {
        "columns": {"id": "Deal", "stage": "Stage", "created_at": "Created", "closed_at": "Closed"},
        "values": {"stage": {"Closed Won": "won", "Closed Lost": "lost", "Negotiation": "negotiation"}},
        "derive": {"is_won": {"from": "Stage", "map": {derive_keys["won"]: True}, "default": False},
                   "is_closed": {"from": "Stage", "map": {derive_keys["won"]: True, derive_keys["lost"]: True},
                                 "default": False}},
    }}


def test_the_readme_example_recodes_and_derives_from_the_original_labels(project):
    project.write("deals.csv", STAGES)
    project.configure(tables=stage_mapping({"won": "Closed Won", "lost": "Closed Lost"}))
    assert notes(project.sync()) == []
    assert {i: (d["stage"], d["is_won"], d["is_closed"]) for i, d in table_rows(project.store, "deals").items()} == {
        "1": ("won", True, True), "2": ("lost", False, True), "3": ("won", True, True),
        "4": ("negotiation", False, False)}
    assert project.value("close_rate", "2025") == 0.5
    assert project.value("win_rate", "2025") == pytest.approx(2 / 3)


def test_a_derive_key_written_as_the_recoded_value_is_reported(project):
    project.write("deals.csv", STAGES)
    project.configure(tables=stage_mapping({"won": "won", "lost": "lost"}))
    assert notes(project.sync()) == [
        "deals.csv: derive.is_won.map: 'won' matched no row (values seen: 'Closed Lost', 'Closed Won', 'Negotiation')",
        "deals.csv: derive.is_closed.map: 'won', 'lost' matched no row (values seen: 'Closed Lost', 'Closed Won', "
        "'Negotiation')",
    ]
    project.configure(tables=stage_mapping({"won": "won", "lost": "lost"}), strict=True)
    assert project.fails() == ("deals.csv: derive.is_won.map: 'won' matched no row (values seen: 'Closed Lost', "
                               "'Closed Won', 'Negotiation') (strict)")


def test_values_recode_a_column_kept_in_extra_and_report_keys_no_row_had(project):
    project.write("accounts.csv", "id,name,Tier\na1,Acme,G\na2,Globex,S\na3,Initech,B\n")
    project.configure(tables={"accounts": {"extra": ["Tier"], "values": {
        "Tier": {"G": "gold", "S": "silver", "P": "platinum"}, "region": {"N": "north"}}}})
    assert notes(project.sync()) == [
        "accounts.csv: values.Tier: 'P' matched no row (values seen: 'B')",
        "accounts.csv: values.region: the file has no column for region, so the map is not used",
    ]
    assert {i: a["extra"] for i, a in table_rows(project.store, "accounts").items()} == {
        "a1": {"Tier": "gold"}, "a2": {"Tier": "silver"}, "a3": {"Tier": "B"}}


# -- 3. mapping keys that name no column fail validate ------------------------------------------


@pytest.mark.parametrize("tables, message", [
    ({"deals": {"constants": {"currencyy": "USD"}}},
     "connectors.crm.tables.deals.constants: 'currencyy' is not a column of deals; did you mean 'currency'?"),
    ({"deals": {"columns": {"Amount": "amount"}}},
     "connectors.crm.tables.deals.columns: 'Amount' is not a column of deals: columns maps a column to the file's "
     "column, so write amount: Amount"),
    ({"deals": {"columns": {"industry_tier": "Tier"}}},  # a custom field is not mapped, it is kept in extra
     "connectors.crm.tables.deals.columns: 'industry_tier' is not a column of deals"),
    ({"deals": {"derive": {"won": {"from": "Stage", "map": {}}}}},
     "connectors.crm.tables.deals.derive: 'won' is not a column of deals; did you mean 'is_won'?"),
    ({"tickets": {"formats": {"closed_at": "%d/%m/%Y"}}},
     "connectors.crm.tables.tickets.formats: 'closed_at' is not a column of tickets; did you mean 'resolved_at'?"),
    ({"deals": {"formats": {"amount": "%d"}}},
     "connectors.crm.tables.deals.formats: 'amount' is a float column of deals, not a date or datetime"),
    ({"deals": {"extra": ["stage"]}},
     "connectors.crm.tables.deals.extra: 'stage' is a column of deals, so it is not kept in extra"),
    ({"deals": {"columns": {"currency": "Currency"}, "constants": {"currency": "USD"}}},
     "connectors.crm.tables.deals: column 'currency' is set by both columns and constants"),
    ({"deals": {"allow": ["rate_not_positive"]}},
     "connectors.crm.tables.deals.allow: deals has no rule 'rate_not_positive' (its rules: closed_before_created, "
     "negative_amount, won_not_closed)"),
    ({"opportunity": {}},
     "connectors.crm.tables: unknown table 'opportunity'; did you mean 'deals'? (tables: users, accounts, contacts, "
     "leads, deals, deal_stage_changes, pipeline_stages, tickets, subscriptions, orders, survey_responses, "
     "marketing_spend, quotas, fx_rates)"),
])
def test_a_mapping_key_that_names_no_column_fails_validate(project, tables, message):
    project.configure(tables=tables)
    assert project.fails("validate") == message


def test_file_columns_the_mapping_names_are_checked_against_the_header(project):
    project.write("deals.csv", "id,Stage,is_won,is_closed\nd1,x,false,false\n")
    project.configure(tables={"deals": {"values": {"stge": {"x": "y"}}}})
    assert project.fails() == ("deals.csv: column 'stge': recoded by values but neither a column of table deals nor a "
                               "source field; did you mean 'Stage'?")
    project.configure(tables={"deals": {"columns": {"closed_at": ["close", "closed"]}}})
    assert project.fails() == ("deals.csv: column 'close': mapped to 'closed_at' but not found in the source fields; "
                               "did you mean 'is_closed'?")


# -- 4. repeated ids ------------------------------------------------------------------------------


def event_log(rows: int = 5998, incidents: int = 890) -> str:
    lines = ["id,status,created_at,updated_at"]
    for n in range(rows):
        lines.append(f"INC-{n % incidents:04},{'resolved' if n >= rows - incidents else 'open'},"
                     f"2025-01-01T00:00:00Z,2025-01-{1 + n * 27 // rows:02}T00:00:00Z")
    return "\n".join(lines) + "\n"


def test_an_event_log_reports_true_counts_and_the_repeated_ids(project_any_store):
    project = project_any_store
    project.write("tickets.csv", event_log())
    output = project.sync()
    assert "crm/tickets.csv: 5998 read, 890 distinct ids, 890 written\n" in output
    assert notes(output) == [
        "tickets.csv: 5108 rows repeated the id of an earlier row (890 ids: 'INC-0000' on lines 2, 892, 1782, 2672, "
        "3562, ...; 'INC-0001' on lines 3, 893, 1783, 2673, 3563, ...; 'INC-0002' on lines 4, 894, 1784, 2674, 3564, "
        "...; ...): the last row of each id is kept; set duplicates: last, first or error"]
    tickets = table_rows(project.store, "tickets")
    assert len(tickets) == 890 and {t["status"] for t in tickets.values()} == {"resolved"}  # the last rows
    run = sync_runs(project.store)[-1]
    assert (run["rows_read"], run["rows_written"]) == (5998, 890)
    assert run["details"]["tickets.csv"]["duplicates"] == 5108 and run["details"]["tickets.csv"]["written"] == 890

    # One incident's last row changed. Every repeated id is written again, its earlier rows first and its
    # last row last, so every one counts as written; the store holds the last rows.
    project.write("tickets.csv", event_log().replace("INC-0005,resolved", "INC-0005,closed"))
    assert "crm/tickets.csv: 5998 read, 890 distinct ids, 890 written\n" in project.sync()
    assert table_rows(project.store, "tickets")["INC-0005"]["status"] == "closed"


def test_duplicates_first_keeps_the_first_row_and_error_fails_naming_the_lines(project_any_store):
    project = project_any_store
    project.write("accounts.csv", "id,name\na1,First\na2,Other\na1,Second\na1,Third\n")
    project.configure(tables={"accounts": {"duplicates": "first"}})
    output = project.sync()
    assert "crm/accounts.csv: 4 read, 2 distinct ids, 2 written\n" in output
    assert notes(output) == ["accounts.csv: 2 rows repeated the id of an earlier row (1 id: 'a1' on lines 2, 4, 5): "
                             "the first row of each id is kept (duplicates: first)"]
    assert table_rows(project.store, "accounts")["a1"]["name"] == "First"

    before = snapshot(project.store)
    project.write("accounts.csv", "id,name\na1,Changed\na2,Other\na1,Again\n")
    project.configure(duplicates="error")
    assert project.fails() == ("accounts.csv: 1 row repeated the id of an earlier row (1 id: 'a1' on lines 2, 4) "
                               "(duplicates: error)")
    assert snapshot(project.store) == before  # nothing of the failed sync landed


def test_repeated_ids_are_an_error_when_strict(project):
    project.write("accounts.csv", "id,name\na1,x\na1,y\n")
    project.configure(strict=True)
    assert project.fails() == ("accounts.csv: 1 row repeated the id of an earlier row (1 id: 'a1' on lines 2, 3): the "
                               "last row of each id is kept; set duplicates: last, first or error (strict)")
    project.configure(strict=True, duplicates="last")  # chosen, so reported but not an error
    assert "1 row repeated the id" in project.sync()


def test_a_repeated_id_on_a_skipped_row_is_not_a_repeat(project):
    project.write("orders.csv", "id,amount\no1,10\no1,lots\no2,5\n")
    project.configure(on_error="skip")
    output = project.sync()
    assert "crm/orders.csv: 3 read, 2 written, 1 skipped\n" in output and notes(output) == []


def test_repeated_ids_in_json_lines(project):
    project.write("accounts.jsonl", '{"id": 1, "name": "a"}\n{"id": "1", "name": "b"}\n{"id": 2}\n')
    output = project.sync()
    assert "crm/accounts.jsonl: 3 read, 2 distinct ids, 2 written\n" in output
    assert "1 row repeated the id of an earlier row (1 id: '1' on lines 1, 2)" in output
    assert table_rows(project.store, "accounts")["1"]["name"] == "b"


# -- 5. rows that cannot all be true -------------------------------------------------------------

PIPELINE = """\
    id,is_closed,is_won,amount,created_at,closed_at
    d1,true,true,100,2025-01-01,2025-01-20
    d2,false,true,200,2025-01-02,2025-03-01
    d3,false,false,300,2025-01-03,2025-03-01
    """


def test_a_won_deal_that_is_not_closed_fails_the_sync(project):
    project.write("deals.csv", PIPELINE)
    assert project.fails() == ("deals.csv: line 3: column 'is_won': is_won is true but is_closed is false: a won deal "
                               "is closed (won_not_closed)")
    assert table_rows(project.store, "deals") == {}


def test_with_skip_the_inconsistent_deal_counts_nowhere(project, every_metric):
    project.write("deals.csv", PIPELINE)
    project.configure(on_error="skip")
    output = project.sync()
    assert "crm/deals.csv: 3 read, 2 written, 1 skipped\n" in output
    assert project.value("sales_volume", "2025-01") == 100.0
    assert project.value("pipeline_value", "2025-01") == 300.0  # d2 was both won revenue and open pipeline


@pytest.mark.parametrize("table, text, message", [
    ("deals", "id,is_closed,is_won,created_at,closed_at\nd1,true,false,2025-02-01,2025-01-15\n",
     "deals.csv: line 2: column 'closed_at': the deal closed before it was created: closed_at 2025-01-15 00:00:00 is "
     "before created_at 2025-02-01 00:00:00 (closed_before_created)"),
    ("deals", "id,is_closed,is_won,amount\nd1,false,false,-5\n",
     "deals.csv: line 2: column 'amount': amount is negative: -5.0 (negative_amount)"),
    ("subscriptions", "id,mrr\ns1,-1\n",
     "subscriptions.csv: line 2: column 'mrr': mrr is negative: -1.0 (negative_amount)"),
    ("quotas", "id,period_start,period_end,amount\nq1,2025-02-01,2025-01-31,10\n",
     "quotas.csv: line 2: column 'period_end': period_end 2025-01-31 is before period_start 2025-02-01 "
     "(end_before_start)"),
    ("marketing_spend", "id,amount\nm1,-3\n",
     "marketing_spend.csv: line 2: column 'amount': amount is negative: -3.0 (negative_amount)"),
    ("fx_rates", "id,currency,rate_to_reporting,valid_from\nr1,EUR,0,2025-01-01\n",
     "fx_rates.csv: line 2: column 'rate_to_reporting': rate_to_reporting must be above 0, found 0.0 "
     "(rate_not_positive)"),
])
def test_consistency_rules(project_any_store, table, text, message):
    project = project_any_store
    project.write(f"{table}.csv", text)
    assert project.fails() == message


def test_rules_name_the_file_column_and_allowed_rows_are_kept_and_counted(project):
    project.write("deals.csv", "Deal,Closed,Won,Created,Close\nd1,yes,yes,2025-03-01,2025-01-15\n"
                               "d2,yes,no,2025-01-01,2025-01-02\nd3,no,no,2025-03-01,2025-01-01\n")
    mapping = {"id": "Deal", "is_closed": "Closed", "is_won": "Won", "created_at": "Created", "closed_at": "Close"}
    project.configure(tables={"deals": {"columns": mapping}})
    assert project.fails().startswith("deals.csv: line 2: column 'Close': the deal closed before it was created")
    project.configure(tables={"deals": {"columns": mapping, "allow": ["closed_before_created"]}})
    assert notes(project.sync()) == [  # d3 is open: its close date is only expected
        "deals.csv: 1 row broke closed_before_created, kept (allow: closed_before_created): line 2"]


def test_refunds_are_negative_orders_and_load(project):
    project.write("orders.csv", "id,account_id,amount,ordered_at\no1,a1,100,2025-01-01\no2,a1,-40,2025-01-05\n")
    assert "crm/orders.csv: 2 read, 2 written\n" in project.sync()


def test_strict_makes_a_skipped_inconsistent_row_an_error(project):
    project.write("deals.csv", PIPELINE)
    project.configure(on_error="skip", strict=True)
    assert project.fails() == ("deals.csv: line 3: column 'is_won': is_won is true but is_closed is false: a won deal "
                               "is closed (won_not_closed) (strict)")


# -- 6. delimiters and file names ---------------------------------------------------------------


def test_a_semicolon_export_loads_and_a_wrong_delimiter_is_named(project):
    project.write("deals.csv", "id;name;amount;is_closed;is_won\nd1;Acme;12.5;true;true\nd2;Globex;3;false;false\n")
    assert "crm/deals.csv: 2 read, 2 written\n" in project.sync()
    assert table_rows(project.store, "deals")["d1"]["amount"] == 12.5

    project.configure(tables={"deals": {"delimiter": ","}})
    assert project.fails() == (
        "deals.csv: column 'id': required field missing from the source; the header, split at ',', has "
        "'id;name;amount;is_closed;is_won': set delimiter: if the file separates its columns with another character")


def test_a_folder_with_no_table_file_fails_and_other_files_are_noted(project):
    project.write("opportunities.csv", "id,name\no1,Big\n")
    assert project.fails() == (
        f"connectors.crm.path: no file in {project.data} is named after a table (opportunities.csv: not read: not a "
        f"table name; did you mean deals.csv? (or set tables.deals.file: opportunities.csv))")
    project.write("deal.csv", "id\nd1\n")
    project.write("accounts.csv", "id\na1\n")
    project.write("deals.tsv", "id\nd1\n")
    output = project.sync()
    assert output.splitlines()[:3] == [
        "crm: note: deal.csv: not read: not a table name; did you mean deals.csv? (or set tables.deals.file: deal.csv)",
        "crm: note: deals.tsv: not read: only .csv, .jsonl, .ndjson files are read by name; set tables.deals.file: "
        "deals.tsv",
        "crm: note: opportunities.csv: not read: not a table name; did you mean deals.csv? (or set tables.deals.file: "
        "opportunities.csv)",
    ]
    assert sync_runs(project.store)[-1]["details"]["(connector)"]["notes"][0].startswith("deal.csv: not read")
    project.configure(strict=True)
    assert project.fails() == ("connectors.crm: deal.csv: not read: not a table name; did you mean deals.csv? (or set "
                               "tables.deals.file: deal.csv) (strict)")
    project.configure(tables={"deals": {"file": "opportunities.csv",
                                        "constants": {"is_closed": False, "is_won": False}}})
    assert "crm: note: opportunities.csv" not in project.sync()


def test_two_files_for_one_table_or_a_configured_table_without_its_file_fail(project):
    project.write("deals.csv", "id\nd1\n")
    project.write("deals.jsonl", '{"id": "d1"}\n')
    assert project.fails() == ("connectors.crm: deals.csv and deals.jsonl are both files of deals; set "
                               "tables.deals.file to the one to read")
    (project.data / "deals.jsonl").unlink()
    project.configure(tables={"accounts": {"extra": ["tier"]}})
    assert project.fails() == (f"connectors.crm.tables.accounts: no accounts.csv, accounts.jsonl, accounts.ndjson in "
                               f"{project.data}; set file: to its file")


# -- 7. a format per column -----------------------------------------------------------------------


def test_each_timestamp_column_can_have_its_own_format(project):
    project.write("deals.csv", "id,is_closed,is_won,created_at,closed_at\nd1,true,true,2025-01-05 14:30,31/01/2025\n")
    assert project.fails() == ("deals.csv: line 2: column 'closed_at': not a valid datetime: '31/01/2025' "
                               "(expected ISO 8601: set datetime_format, or formats.closed_at)")
    project.configure(tables={"deals": {"datetime_format": "%Y-%m-%d %H:%M", "formats": {"closed_at": "%d/%m/%Y"}}})
    project.sync()
    deal = table_rows(project.store, "deals")["d1"]
    assert (deal["created_at"].isoformat(), deal["closed_at"].isoformat()) == (
        "2025-01-05T14:30:00+00:00", "2025-01-31T00:00:00+00:00")
    project.write("deals.csv", "id,is_closed,is_won,created_at,closed_at\nd1,true,true,2025-01-05 14:30,2025-01-31\n")
    assert project.fails() == ("deals.csv: line 2: column 'closed_at': not a valid datetime: '2025-01-31' (expected "
                               "formats.closed_at '%d/%m/%Y')")


# -- 8. a column read from another when it is empty ---------------------------------------------


def test_resolved_at_falls_back_to_closed_at(project_any_store, every_metric):
    project = project_any_store
    lines = ["id,created_at,first_response_at,resolved_at,closed_at"]
    for n in range(100):
        resolved = "2025-03-02T00:00:00Z"
        lines.append(f"t{n},2025-03-01T00:00:00Z,2025-03-01T01:00:00Z,{'' if n < 29 else resolved},"
                     f"{resolved if n < 29 else ''}")
    project.write("tickets.csv", "\n".join(lines) + "\n")
    project.sync()
    assert project.value("resolution_rate", "2025-03") == 0.71  # 29 closed incidents counted as never resolved

    project.configure(tables={"tickets": {"columns": {"resolved_at": ["resolved_at", "closed_at"]}}})
    assert notes(project.sync()) == ["tickets.csv: resolved_at: 29 rows took 'closed_at' ('resolved_at' was empty)"]
    assert project.value("resolution_rate", "2025-03") == 1.0


# -- 9. a funnel in two files ---------------------------------------------------------------------

MQLS = """\
mql_id,first_contact_date,landing_page_id,origin
m1,2018-02-01,lp1,organic_search
m2,2018-02-03,lp2,paid_search
m3,2018-02-04,lp1,social
m4,2018-02-10,lp3,unknown
"""
CLOSED = """\
mql_id,seller_id,sdr_id,sr_id,won_date,business_segment,lead_type
m1,s1,sdr1,sr1,2018-02-20 10:00:00,pet,online_big
m3,s3,sdr1,sr2,2018-03-10 12:00:00,car_accessories,industry
"""
FUNNEL = {
    "leads": {"file": "mqls.csv", "columns": {"id": "mql_id", "created_at": "first_contact_date"},
              "extra": ["landing_page_id", "origin"],
              "lookups": [{"file": "closed.csv", "key": "mql_id",
                           "columns": {"converted_at": "won_date", "converted_deal_id": "mql_id"},
                           "extra": ["business_segment"]}]},
    "deals": {"file": "closed.csv", "columns": {"id": "mql_id", "closed_at": "won_date", "owner_id": "sr_id"},
              "extra": ["seller_id", "sdr_id", "business_segment", "lead_type"],
              "constants": {"is_won": True, "is_closed": True}},
}


def test_a_two_file_funnel_loads_from_the_config_alone(project_any_store, every_metric):
    project = project_any_store
    project.write("mqls.csv", MQLS)
    project.write("closed.csv", CLOSED)
    project.configure(tables=FUNNEL)
    assert project.invoke("validate").exit_code == 0
    output = project.sync()
    assert "mqls.csv: 2 of 4 rows matched a row of closed.csv by mql_id" in output
    leads = table_rows(project.store, "leads")
    assert (leads["m1"]["converted_at"].isoformat(), leads["m1"]["converted_deal_id"]) == (
        "2018-02-20T10:00:00+00:00", "m1")
    assert leads["m1"]["extra"] == {"landing_page_id": "lp1", "origin": "organic_search", "business_segment": "pet"}
    assert (leads["m2"]["converted_at"], leads["m2"]["converted_deal_id"]) == (None, None)
    assert project.value("lead_conversion_rate", "2018-02") == 0.5


def test_lookup_keys_that_match_nothing_or_repeat_are_reported(project):
    project.write("mqls.csv", MQLS)
    project.write("closed.csv", CLOSED + "m9,s9,sdr2,sr2,2018-03-11 12:00:00,home,online_small\n")
    project.configure(tables={"leads": FUNNEL["leads"]})
    assert ("closed.csv: 1 of its 3 rows matched no row of mqls.csv by mql_id, e.g. 'm9'"
            in notes(project.sync()))
    project.write("closed.csv", CLOSED + "m1,s2,sdr2,sr2,2018-03-11 12:00:00,home,online_small\n")
    assert project.fails() == "closed.csv: line 4: mql_id 'm1' is also on line 2; a lookup's key must be unique"
    project.write("closed.csv", CLOSED)
    lookup = {**FUNNEL["leads"]["lookups"][0], "by": "mql"}
    project.configure(tables={"leads": {**FUNNEL["leads"], "lookups": [lookup]}})
    assert project.fails() == "mqls.csv: no column 'mql' to look closed.csv up by; did you mean 'mql_id'?"


# -- 10. validate checks the sources exist -------------------------------------------------------


def test_validate_fails_when_the_data_folder_or_a_named_file_does_not_exist(project):
    project.configure(path="exports")
    assert project.fails("validate") == f"connectors.crm.path: folder not found: {project.folder / 'exports'}"
    project.configure(tables={"deals": {"file": "Opportunities.csv"}})
    assert project.fails("validate") == (
        f"connectors.crm.tables.deals.file: file not found: {project.data / 'Opportunities.csv'}")
    project.configure(tables=FUNNEL)
    project.write("mqls.csv", MQLS)
    assert project.fails("validate") == (
        f"connectors.crm.tables.leads.lookups.0.file: file not found: {project.data / 'closed.csv'}")
    project.write("closed.csv", CLOSED)
    assert project.invoke("validate").exit_code == 0


# -- JSON Lines ----------------------------------------------------------------------------------


def test_json_lines_report_unknown_keys_and_mapped_fields_no_record_has(project):
    project.write("accounts.jsonl", '{"id": "a1", "Name": "Acme", "tier": "gold"}\n{"id": "a2", "regoin": "EU"}\n')
    project.configure(tables={"accounts": {"columns": {"name": "Name", "industry": "Industry"}}})
    assert notes(project.sync()) == [
        "accounts.jsonl: not columns of accounts, kept in extra: 'regoin' (did you mean 'region'?), 'tier'; map them "
        "with columns:, or list custom fields under extra: to keep them without this note",
        "accounts.jsonl: columns.industry: no record has 'Industry'",
    ]


def test_a_json_lines_deals_file_without_is_won_fails_after_reading(project):
    project.write("deals.jsonl", '{"id": "d1", "is_closed": true, "won": true}\n')
    assert project.fails() == (
        "deals.jsonl: no value for deals.is_won, so every row would read as is_won = false in close_rate, win_rate; "
        "map a source column to it, derive it, or set it as a constant (deals.jsonl has 'won', kept in extra: map it "
        "with columns: {is_won: won})")
    assert table_rows(project.store, "deals") == {}


def test_a_json_lines_table_takes_columns_from_a_csv_lookup(project):
    project.write("leads.jsonl", '{"id": "m1", "created_at": "2018-02-01"}\n{"id": "m2", "created_at": "2018-02-03"}\n')
    project.write("closed.csv", CLOSED)
    project.configure(tables={"leads": {"lookups": [{"file": "closed.csv", "key": "mql_id", "by": "id",
                                                     "columns": {"converted_at": "won_date"}}]}})
    assert "leads.jsonl: 1 of 2 rows matched a row of closed.csv by id = mql_id" in project.sync()
    assert {i: bool(lead["converted_at"]) for i, lead in table_rows(project.store, "leads").items()} == {
        "m1": True, "m2": False}
