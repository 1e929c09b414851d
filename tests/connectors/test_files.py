"""The files connector through `crmkpi sync`: parsing, mapping, errors, on_error, re-syncs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from crmkpi.cli import cli
from crmkpi.store import Store

from storecheck import (files_project as setup, ok, one_line_error as fail, sync_runs as runs, table_rows as fetch,
                        utc)

CRMKPI = Path(sys.executable).parent / "crmkpi"


# -- helpers ----------------------------------------------------------------------------


def sync(config: Path, *args: str):
    return CliRunner().invoke(cli, ["sync", "--config", str(config), *args])


def dump(url: str) -> dict[str, list]:
    """Every row of every table of the store, as the database returns it."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: sorted((tuple(row) for row in conn.execute(text(f'SELECT * FROM "{table}"'))), key=repr)
                for table in sorted(inspect(conn).get_table_names())
            }
    finally:
        engine.dispose()


def without(tables: dict[str, list], *names: str) -> dict[str, list]:
    return {t: rows for t, rows in tables.items() if t not in names}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated SQLite store, made once: migrating takes longer than most of these tests."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    store = Store(f"sqlite:///{path}")
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated: Path) -> str:
    shutil.copyfile(migrated, tmp_path / "store.db")
    return f"sqlite:///{tmp_path / 'store.db'}"


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(autouse=True)
def files_only(monkeypatch):
    """No metric plugin: these tests read files whose tables no metric could use (test_files_checks.py loads them)."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files")


# -- parsing -------------------------------------------------------------------------------

DEALS_CSV = """\
id,name,stage,amount,currency,is_won,is_closed,is_deleted,created_at,updated_at,closed_at,forecast_category
d1,Acme renewal,closed_won,1200.50,USD,true,TRUE,no,2024-01-05T09:30:00Z,2024-02-01T10:00:00Z,2024-02-01,closed
d2,"Globex, Inc.",proposal,300,EUR,f,0,n,2024-01-06T12:00:00+02:00,2024-01-07T00:00:00,,pipeline
d3,Initech,closed_lost,,,False,Yes,1,2024-01-07 08:15:00,2024-01-08T00:00:00.250000Z,2024-01-08T00:00:00Z,
"""


def test_csv_with_normalized_column_names_loads_typed_values(isolated, sqlite_url):
    config = setup(isolated, sqlite_url, {"deals.csv": DEALS_CSV})
    err = ok(sync(config))
    assert "files/deals.csv: 3 read, 3 written\n" in err
    deals = fetch(sqlite_url, "deals")
    assert set(deals) == {"d1", "d2", "d3"}
    d1, d2, d3 = deals["d1"], deals["d2"], deals["d3"]
    assert (d1["source"], d1["name"], d1["stage"], d1["amount"], d1["currency"]) == (
        "files", "Acme renewal", "closed_won", 1200.5, "USD")
    assert (d1["is_won"], d1["is_closed"], d1["is_deleted"]) == (True, True, False)
    assert d1["created_at"] == at(2024, 1, 5, 9, 30) and d1["closed_at"] == at(2024, 2, 1)
    assert d1["extra"] == {"forecast_category": "closed"}
    assert d2["name"] == "Globex, Inc." and d2["amount"] == 300.0 and isinstance(d2["amount"], float)
    assert (d2["is_won"], d2["is_closed"], d2["is_deleted"]) == (False, False, False)
    assert d2["created_at"] == at(2024, 1, 6, 10)  # +02:00 stored as UTC
    assert d2["updated_at"] == at(2024, 1, 7)  # no offset: UTC by default
    assert d2["closed_at"] is None
    # empty cells are NULL, and no extra when every unmapped cell is empty
    assert d3["amount"] is None and d3["currency"] is None and d3["extra"] is None
    assert (d3["is_won"], d3["is_closed"], d3["is_deleted"]) == (False, True, True)
    assert d3["created_at"] == at(2024, 1, 7, 8, 15)
    assert d3["updated_at"] == at(2024, 1, 8, 0, 0, 0, 250000)
    assert d1["synced_at"] == d2["synced_at"] == d3["synced_at"] == runs(sqlite_url)[-1]["started_at"].replace(
        tzinfo=UTC)


def test_jsonl_with_json_types(isolated, sqlite_url):
    lines = [
        '{"id": "t1", "status": "resolved", "priority": "high", "created_at": "2024-03-01T08:00:00Z", '
        '"resolved_at": 1709290800, "first_response_at": 1709283600000, "is_deleted": false, '
        '"tags": ["vip", "billing"], "sla": {"hours": 4}, "csat_requested": true}',
        "",  # blank lines are not records
        '{"id": 2, "status": null, "account_id": "a1", "created_at": "2024-03-02", "escalations": 0}',
    ]
    config = setup(isolated, sqlite_url, {"tickets.jsonl": "\n".join(lines) + "\n"})
    assert "files/tickets.jsonl: 2 read, 2 written\n" in ok(sync(config))
    tickets = fetch(sqlite_url, "tickets")
    t1, t2 = tickets["t1"], tickets["2"]  # a numeric id is the text of the number
    assert (t1["status"], t1["priority"], t1["is_deleted"]) == ("resolved", "high", False)
    assert t1["created_at"] == at(2024, 3, 1, 8)
    assert t1["resolved_at"] == at(2024, 3, 1, 11)  # epoch seconds
    assert t1["first_response_at"] == at(2024, 3, 1, 9)  # epoch milliseconds
    assert t1["extra"] == {"tags": ["vip", "billing"], "sla": {"hours": 4}, "csat_requested": True}
    assert t2["status"] is None and t2["account_id"] == "a1" and t2["created_at"] == at(2024, 3, 2)
    assert t2["extra"] == {"escalations": 0}  # a falsy value is still a value


def test_mapping_recoding_derivation_and_constants(isolated, sqlite_url):
    export = """\
Opportunity ID,Opportunity Name,Stage,Amount,Won?,Created Date,Owner,Region
OPP-1,Big deal,Closed Won,"1000",Y,03/01/2024 14:30,u1,emea
OPP-2,Small deal,Closed Lost,20.5,N,04/01/2024 09:00,u2,
OPP-3,Open deal,Negotiation,,,05/01/2024 23:59,u1,na
"""
    settings = {"tables": {"deals": {
        "file": "opportunities_export.csv",
        "columns": {"id": "Opportunity ID", "name": "Opportunity Name", "stage": "Stage", "amount": "Amount",
                    "created_at": "Created Date", "owner_id": "Owner"},
        "values": {"stage": {"Closed Won": "closed_won", "Closed Lost": "closed_lost", "Negotiation": "negotiation"}},
        # derive reads the file's value, before values recodes it
        "derive": {"is_won": {"from": "Stage", "map": {"Closed Won": True}, "default": False},
                   "is_closed": {"from": "Stage", "map": {"Closed Won": True, "Closed Lost": True}, "default": False}},
        "constants": {"currency": "EUR", "pipeline": "default"},
        "datetime_format": "%d/%m/%Y %H:%M",
    }}}
    config = setup(isolated, sqlite_url, {"opportunities_export.csv": export}, **settings)
    assert "files/opportunities_export.csv: 3 read, 3 written\n" in ok(sync(config))
    deals = fetch(sqlite_url, "deals")
    summary = {i: (d["name"], d["stage"], d["amount"], d["is_won"], d["is_closed"], d["currency"], d["pipeline"],
                   d["owner_id"], d["created_at"], d["extra"]) for i, d in deals.items()}
    assert summary == {
        "OPP-1": ("Big deal", "closed_won", 1000.0, True, True, "EUR", "default", "u1", at(2024, 1, 3, 14, 30),
                  {"Won?": "Y", "Region": "emea"}),
        "OPP-2": ("Small deal", "closed_lost", 20.5, False, True, "EUR", "default", "u2", at(2024, 1, 4, 9),
                  {"Won?": "N"}),
        "OPP-3": ("Open deal", "negotiation", None, False, False, "EUR", "default", "u1", at(2024, 1, 5, 23, 59),
                  {"Region": "na"}),
    }


def test_values_recode_a_boolean_column(isolated, sqlite_url):
    csv_text = "id,name,is_active\nu1,Ann,Active\nu2,Bob,Left\nu3,Cy,\n"
    settings = {"tables": {"users": {"values": {"is_active": {"Active": True, "Left": False}}}}}
    config = setup(isolated, sqlite_url, {"users.csv": csv_text}, **settings)
    ok(sync(config))
    users = fetch(sqlite_url, "users")
    assert {i: u["is_active"] for i, u in users.items()} == {"u1": True, "u2": False, "u3": None}


def test_naive_datetimes_are_read_in_the_configured_zone_and_stored_as_utc(isolated, sqlite_url):
    files = {
        "deals.csv": "id,created_at,closed_at\n"
                     "d1,2024-01-15T10:00:00,2024-07-15 10:00\n"  # winter CET (+1), summer CEST (+2)
                     "d2,2024-01-15T10:00:00Z,2024-07-15T10:00:00-04:00\n"  # explicit offsets win
                     "d3,2024-01-15,\n",  # a date alone is local midnight
        "tickets.csv": "id,created_at\nt1,2024-01-15T10:00:00\n",
        "marketing_spend.csv": "id,spent_on,period_start,amount\nm1,31.01.2024,,99.5\nm2,,01.02.2024,1\n",
    }
    settings = {"timezone": "Europe/Berlin", "tables": {
        "tickets": {"timezone": "America/New_York"},  # a table's own zone overrides the connector's
        "marketing_spend": {"date_format": "%d.%m.%Y"},
    }}
    config = setup(isolated, sqlite_url, files, **settings)
    ok(sync(config))
    deals = fetch(sqlite_url, "deals")
    assert deals["d1"]["created_at"] == at(2024, 1, 15, 9) and deals["d1"]["closed_at"] == at(2024, 7, 15, 8)
    assert deals["d2"]["created_at"] == at(2024, 1, 15, 10) and deals["d2"]["closed_at"] == at(2024, 7, 15, 14)
    assert deals["d3"]["created_at"] == at(2024, 1, 14, 23)
    assert fetch(sqlite_url, "tickets")["t1"]["created_at"] == at(2024, 1, 15, 15)
    spend = fetch(sqlite_url, "marketing_spend")
    assert (spend["m1"]["spent_on"], spend["m1"]["period_start"], spend["m1"]["amount"]) == (
        date(2024, 1, 31), None, 99.5)
    assert spend["m2"]["period_start"] == date(2024, 2, 1) and spend["m2"]["spent_on"] is None


def test_numbers_and_booleans_of_a_reference_table(isolated, sqlite_url):
    stages = ("id,pipeline,stage,display_order,probability,is_closed,is_won\n"
              "s1,default,proposal,3,0.4,false,false\n"
              "s2,default,closed_won,5,1,true,true\n"
              "s3,default,closed_lost,6,0,yes,no\n")
    config = setup(isolated, sqlite_url, {"pipeline_stages.csv": stages})
    ok(sync(config))
    rows = fetch(sqlite_url, "pipeline_stages")
    assert {i: (r["display_order"], r["probability"], r["is_closed"], r["is_won"]) for i, r in rows.items()} == {
        "s1": (3, 0.4, False, False), "s2": (5, 1.0, True, True), "s3": (6, 0.0, True, False)}
    assert all(isinstance(r["display_order"], int) for r in rows.values())


def test_a_byte_order_mark_is_not_part_of_the_first_column(isolated, sqlite_url):
    config = setup(isolated, sqlite_url, {"accounts.csv": b"\xef\xbb\xbfid,name\na1,Acme\n",
                                          "users.jsonl": b'\xef\xbb\xbf{"id": "u1", "name": "Ann"}\n'})
    ok(sync(config))
    assert fetch(sqlite_url, "accounts")["a1"]["name"] == "Acme"
    assert fetch(sqlite_url, "users")["u1"]["name"] == "Ann"


# -- errors --------------------------------------------------------------------------------

ROW_ERRORS = [
    ("deals.csv", "id,created_at\nd1,2024-01-01\nd2,2024-01-32\n", {},
     "deals.csv: line 3: column 'created_at': not a valid datetime: '2024-01-32' "
     "(expected ISO 8601: set datetime_format, or formats.created_at)"),
    ("deals.csv", "id,amount\nd1,1\n\nd2,12,5\n", {},  # the blank line still counts as a line
     "deals.csv: line 4: expected 2 fields, found 3"),
    ("deals.csv", "id,amount\nd1,1\nd2,1.234,56\n", {},
     "deals.csv: line 3: expected 2 fields, found 3"),
    ("deals.csv", "id,amount\nd1,1\nd2,twelve\n", {},
     "deals.csv: line 3: column 'amount': not a valid float: 'twelve'"),
    ("deals.csv", "id,is_won,is_closed\nd1,true,true\nd2,maybe,true\n", {},
     "deals.csv: line 3: column 'is_won': not a valid bool: 'maybe'"),
    ("pipeline_stages.csv", "id,display_order\ns1,1\ns2,2.5\n", {},
     "pipeline_stages.csv: line 3: column 'display_order': not a valid int: '2.5'"),
    ("deals.csv", "id,name\nd1,a\n,b\n", {},
     "deals.csv: line 3: column 'id': required field is empty"),
    ("deal_stage_changes.csv", "id,deal_id,stage,entered_at\nc1,d1,won,2024-01-01\nc2,d1,,2024-01-02\n", {},
     "deal_stage_changes.csv: line 3: column 'stage': required field is empty"),
    ("deals.csv", "Deal,Created\nd1,01/02/2024\nd2,2024-02-01\n",
     {"tables": {"deals": {"columns": {"id": "Deal", "created_at": "Created"}, "datetime_format": "%d/%m/%Y"}}},
     # names the file's column and the format that applies
     "deals.csv: line 3: column 'Created': not a valid datetime: '2024-02-01' (expected datetime_format '%d/%m/%Y')"),
    ("marketing_spend.csv", "id,spent_on\nm1,2024-01-01\nm2,2024-1-1x\n", {},
     "marketing_spend.csv: line 3: column 'spent_on': not a valid date: '2024-1-1x' "
     "(expected YYYY-MM-DD: set date_format, or formats.spent_on)"),
    ("deals.jsonl", '{"id": "d1"}\n{"id": "d2", "amount": "12 EUR"}\n', {},
     "deals.jsonl: line 2: column 'amount': not a valid float: '12 EUR'"),
    ("deals.jsonl", '{"id": "d1"}\n\n{"id": "d2", "is_won": "perhaps"}\n', {},
     "deals.jsonl: line 3: column 'is_won': not a valid bool: 'perhaps'"),
    ("deals.jsonl", '{"id": "d1", "amount": true}\n', {},
     "deals.jsonl: line 1: column 'amount': not a valid float: True"),
    ("deals.jsonl", '{"id": "d1"}\n{"name": "no id"}\n', {},
     "deals.jsonl: line 2: column 'id': required field is empty"),
    ("deals.jsonl", '{"id": "d1"}\n["d2"]\n', {},
     "deals.jsonl: line 2: invalid JSON: expected a JSON object"),
    ("deals.jsonl", '{"id": "d1"}\n{"id": \'d2\'}\n', {},
     "deals.jsonl: line 2: invalid JSON: Expecting value: line 1 column 8 (char 7)"),
]


@pytest.mark.parametrize("name, content, settings, message", ROW_ERRORS,
                         ids=[m.split(": ", 2)[-1][:40] for *_, m in ROW_ERRORS])
def test_a_bad_row_fails_the_sync_with_file_line_column_and_reason(isolated, sqlite_url, name, content, settings,
                                                                     message):
    config = setup(isolated, sqlite_url, {name: content}, **settings)
    assert fail(sync(config)) == message
    table = name.split(".")[0]
    assert fetch(sqlite_url, table) == {}  # the good rows before it are not committed either
    run = runs(sqlite_url)[-1]
    assert (run["status"], run["error"], run["rows_written"]) == ("failed", message, 0)


FILE_ERRORS = [
    ("deal_stage_changes.csv", "id,deal_id,stage\nc1,d1,won\n", {},
     "deal_stage_changes.csv: column 'entered_at': required field missing from the source"),
    ("deals.csv", "Deal,Name\nd1,x\n", {},
     "deals.csv: column 'id': required field missing from the source; the header, split at ',', has 'Deal', "
     "'Name': set delimiter: if the file separates its columns with another character"),
    ("deals.csv", "Deal ID,Name\nd1,x\n", {},
     "deals.csv: column 'id': required field missing from the source; did you mean 'Deal ID'? (map it with "
     "columns: {id: Deal ID}); the header, split at ',', has 'Deal ID', 'Name': set delimiter: if the file "
     "separates its columns with another character"),
    ("deals.csv", "Deal,Name\nd1,x\n", {"tables": {"deals": {"columns": {"id": "Deal ID"}}}},
     "deals.csv: column 'Deal ID': mapped to 'id' but not found in the source fields; did you mean 'Deal'?"),
    ("deals.csv", "id,Stage\nd1,x\n", {"tables": {"deals": {"derive": {"is_won": {"from": "Stag", "map": {}}}}}},
     "deals.csv: column 'Stag': needed to derive 'is_won' but not found in the source fields; "
     "did you mean 'Stage'?"),
    ("deals.csv", "id,Stage\nd1,x\n", {"tables": {"deals": {"values": {"stge": {"x": "y"}}}}},
     "deals.csv: column 'stge': recoded by values but neither a column of table deals nor a source field; "
     "did you mean 'Stage'?"),
    ("deals.csv", "", {}, "deals.csv: empty file, expected a header line"),
    ("deals.csv", b"id,name\nd1,Caf\xe9\n", {}, "deals.csv: not utf-8 text (invalid continuation byte)"),
]


@pytest.mark.parametrize("name, content, settings, message", FILE_ERRORS,
                         ids=[m.split(": ", 1)[-1][:40] for *_, m in FILE_ERRORS])
def test_a_file_that_does_not_fit_its_table_fails_naming_file_and_column(isolated, sqlite_url, name, content,
                                                                         settings, message):
    config = setup(isolated, sqlite_url, {name: content}, **settings)
    assert fail(sync(config)) == message


def test_an_unknown_file_column_is_kept_in_extra_not_rejected(isolated, sqlite_url):
    config = setup(isolated, sqlite_url, {"accounts.csv": "id,name,employee_band,Health Score\na1,Acme,51-200,87\n"})
    ok(sync(config))
    assert fetch(sqlite_url, "accounts")["a1"]["extra"] == {"employee_band": "51-200", "Health Score": "87"}


def test_other_encodings_are_read_when_configured(isolated, sqlite_url):
    config = setup(isolated, sqlite_url, {"accounts.csv": "id;name\na1;Café Müller\n".encode("latin-1")},
                   tables={"accounts": {"encoding": "latin-1", "delimiter": ";"}})
    ok(sync(config))
    assert fetch(sqlite_url, "accounts")["a1"]["name"] == "Café Müller"


# -- the acceptance case: a failed sync leaves the store exactly as it was ---------------------

GOOD_DEALS = """\
id,name,amount,created_at,updated_at
d1,One,100,2024-01-01T10:00:00Z,2024-01-01T10:00:00Z
d2,Two,200,2024-01-02T10:00:00Z,2024-01-02T10:00:00Z
d3,Three,300,2024-01-03T10:00:00Z,2024-01-03T10:00:00Z
d4,Four,400,2024-01-04T10:00:00Z,2024-01-04T10:00:00Z
d5,Five,500,2024-01-05T10:00:00Z,2024-01-05T10:00:00Z
d6,Six,600,2024-01-06T10:00:00Z,2024-01-06T10:00:00Z
d7,Seven,700,2024-01-07T10:00:00Z,2024-01-07T10:00:00Z
"""
# Rows before the bad line changed too, and accounts.csv (synced before deals) changed: none may land.
BAD_DEALS = """\
id,name,amount,created_at,updated_at
d1,One,111,2024-01-01T10:00:00Z,2024-03-01T10:00:00Z
d2,Two,200,2024-01-02T10:00:00Z,2024-01-02T10:00:00Z
d3,Three,300,2024-01-03T10:00:00Z,2024-01-03T10:00:00Z
d4,Four,400,2024-01-04T10:00:00Z,2024-01-04T10:00:00Z
d5,Five,500,2024-01-05T10:00:00Z,2024-01-05T10:00:00Z
d6,Six,600,2024-02-30T10:00:00Z,2024-03-01T10:00:00Z
d7,Seven,700,2024-01-07T10:00:00Z,2024-01-07T10:00:00Z
d8,Eight,800,2024-01-08T10:00:00Z,2024-01-08T10:00:00Z
"""


def test_acceptance_bad_date_on_line_7_fails_and_leaves_the_store_unchanged(isolated, store_url):
    assert "2024-02-30" in BAD_DEALS.splitlines()[6]  # the 7th line of the file, header being the 1st
    config = setup(isolated, store_url, {"deals.csv": GOOD_DEALS, "accounts.csv": "id,name\na1,Acme\n"})
    assert "files/deals.csv: 7 read, 7 written\n" in ok(sync(config))
    before = dump(store_url)
    assert len(before["deals"]) == 7 and len(before["accounts"]) == 1 and len(before["sync_state"]) == 2

    setup(isolated, store_url, {"deals.csv": BAD_DEALS, "accounts.csv": "id,name\na1,Acme Corp\na2,Globex\n"})
    failed = subprocess.run([CRMKPI, "sync", "--config", config], capture_output=True, text=True)  # the real CLI
    message = ("deals.csv: line 7: column 'created_at': not a valid datetime: '2024-02-30T10:00:00Z' "
               "(expected ISO 8601: set datetime_format, or formats.created_at)")
    assert failed.returncode == 1
    assert failed.stderr == f"Error: {message}\n" and failed.stdout == ""

    after = dump(store_url)
    # Every table is as it was, sync_state included; sync_runs only gains the record of the failed run.
    assert without(after, "sync_runs") == without(before, "sync_runs")
    assert after["sync_state"] == before["sync_state"]
    new_runs = [row for row in after["sync_runs"] if row not in before["sync_runs"]]
    assert len(after["sync_runs"]) == len(before["sync_runs"]) + 1 and len(new_runs) == 1
    assert (runs(store_url)[-1]["status"], runs(store_url)[-1]["error"]) == ("failed", message)

    # Fixed, the same files sync completely.
    setup(isolated, store_url, {"deals.csv": BAD_DEALS.replace("2024-02-30", "2024-01-06")})
    ok(sync(config))
    deals = fetch(store_url, "deals")
    assert len(deals) == 8 and deals["d1"]["amount"] == 111.0
    assert fetch(store_url, "accounts")["a1"]["name"] == "Acme Corp"


# -- on_error ------------------------------------------------------------------------------

SOME_BAD_DEALS = """\
id,amount,created_at
d1,10,2024-01-01
d2,ten,2024-01-02
d3,30,2024-01-03
d4,40,yesterday
d5,50,2024-01-05,extra
d6,60,2024-01-06
"""


def test_on_error_skip_commits_the_good_rows_and_reports_the_bad(isolated, sqlite_url):
    config = setup(isolated, sqlite_url, {"deals.csv": SOME_BAD_DEALS, "accounts.csv": "id\na1\n"}, on_error="skip")
    err = ok(sync(config))
    assert err.splitlines() == [
        "files/accounts.csv: 1 read, 1 written",
        "files/deals.csv: 6 read, 3 written, 3 skipped",
        "  skipped: deals.csv: line 3: column 'amount': not a valid float: 'ten'",
        "  skipped: deals.csv: line 5: column 'created_at': not a valid datetime: 'yesterday' "
        "(expected ISO 8601: set datetime_format, or formats.created_at)",
        "  skipped: deals.csv: line 6: expected 3 fields, found 4",
        f"files: 4 rows changed in {sqlite_url}",
    ]
    assert {i: d["amount"] for i, d in fetch(sqlite_url, "deals").items()} == {"d1": 10.0, "d3": 30.0, "d6": 60.0}
    run = runs(sqlite_url)[-1]
    assert (run["status"], run["rows_read"], run["rows_written"], run["rows_skipped"]) == ("success", 7, 4, 3)
    assert run["details"]["deals.csv"] == {
        "table": "deals", "read": 6, "written": 3, "skipped": 3, "duplicates": 0, "unchanged": False,
        "errors": [line.removeprefix("  skipped: ") for line in err.splitlines()[2:5]], "notes": []}


def test_on_error_skip_for_jsonl(isolated, sqlite_url):
    content = '{"id": "d1", "amount": 1}\nnot json\n{"id": "d2", "amount": "x"}\n{"id": "d3"}\n'
    config = setup(isolated, sqlite_url, {"deals.jsonl": content}, on_error="skip")
    err = ok(sync(config))
    assert "files/deals.jsonl: 4 read, 2 written, 2 skipped\n" in err
    assert "  skipped: deals.jsonl: line 2: invalid JSON: Expecting value: line 1 column 1 (char 0)\n" in err
    assert "  skipped: deals.jsonl: line 3: column 'amount': not a valid float: 'x'\n" in err
    assert set(fetch(sqlite_url, "deals")) == {"d1", "d3"}


def test_on_error_per_table_overrides_the_connector(isolated, sqlite_url):
    files = {"deals.csv": SOME_BAD_DEALS, "accounts.csv": "id,created_at\na1,2024-01-01\na2,never\n"}
    config = setup(isolated, sqlite_url, files, on_error="skip", tables={"deals": {"on_error": "fail"}})
    assert fail(sync(config)) == "deals.csv: line 3: column 'amount': not a valid float: 'ten'"
    assert fetch(sqlite_url, "accounts") == {} and fetch(sqlite_url, "deals") == {}

    config = setup(isolated, sqlite_url, files, tables={"accounts": {"on_error": "skip"}})  # fail by default
    assert fail(sync(config)) == "deals.csv: line 3: column 'amount': not a valid float: 'ten'"
    assert fetch(sqlite_url, "accounts") == {}  # skipping rows does not commit a failed sync


def test_skipping_many_rows_reports_the_first_twenty(isolated, sqlite_url):
    content = "id,amount\n" + "".join(f"d{i},{'x' if i % 2 else i}\n" for i in range(60))
    config = setup(isolated, sqlite_url, {"deals.csv": content}, on_error="skip")
    err = ok(sync(config))
    assert "files/deals.csv: 60 read, 30 written, 30 skipped\n" in err
    assert err.count("  skipped: ") == 20
    assert runs(sqlite_url)[-1]["rows_skipped"] == 30


# -- re-syncs ------------------------------------------------------------------------------

THREE_DEALS = """\
id,name,amount,updated_at
d1,One,100,2024-01-01T00:00:00Z
d2,Two,200,2024-01-01T00:00:00Z
d3,Three,300,2024-01-01T00:00:00Z
"""


def test_resync_skips_an_unchanged_file_and_writes_only_the_changed_row(isolated, store_url):
    config = setup(isolated, store_url, {"deals.csv": THREE_DEALS})
    assert "files/deals.csv: 3 read, 3 written\n" in ok(sync(config))
    first = fetch(store_url, "deals")
    before = dump(store_url)

    err = ok(sync(config))
    assert "files/deals.csv: unchanged since the last sync\n" in err and "files: 0 rows changed" in err
    after = dump(store_url)
    # Nothing changes but the bookkeeping: a new run, and the time the stream was last confirmed in sync.
    assert without(after, "sync_runs", "sync_state") == without(before, "sync_runs", "sync_state")
    [(*state_after, confirmed_after)], [(*state_before, confirmed_before)] = after["sync_state"], before["sync_state"]
    assert state_after == state_before and utc(confirmed_after) > utc(confirmed_before)
    assert runs(store_url)[-1]["details"]["deals.csv"]["unchanged"] is True

    changed = THREE_DEALS.replace("d2,Two,200,2024-01-01T00:00:00Z", "d2,Two,250,2024-02-01T00:00:00Z")
    setup(isolated, store_url, {"deals.csv": changed})
    assert "files/deals.csv: 3 read, 1 written\n" in ok(sync(config))
    second = fetch(store_url, "deals")
    assert set(second) == {"d1", "d2", "d3"}
    assert second["d1"] == first["d1"] and second["d3"] == first["d3"]  # untouched, synced_at included
    assert (second["d2"]["amount"], second["d2"]["updated_at"]) == (250.0, at(2024, 2, 1))
    assert second["d2"]["synced_at"] > first["d2"]["synced_at"]

    assert "files/deals.csv: 3 read, 3 written\n" in ok(sync(config, "--full-refresh"))
    third = fetch(store_url, "deals")
    assert {i: d["amount"] for i, d in third.items()} == {"d1": 100.0, "d2": 250.0, "d3": 300.0}
    assert all(third[i]["synced_at"] > second[i]["synced_at"] for i in third)


def test_changing_the_options_of_an_unchanged_file_rereads_it_and_the_new_values_land(isolated, sqlite_url):
    config = setup(isolated, sqlite_url, {"deals.csv": "id,stage,updated_at\nd1,won,2024-01-01\nd2,lost,2024-01-01\n"})
    ok(sync(config))
    assert {i: (d["currency"], d["is_won"]) for i, d in fetch(sqlite_url, "deals").items()} == {
        "d1": (None, False), "d2": (None, False)}

    setup(isolated, sqlite_url, {}, tables={"deals": {
        "constants": {"currency": "EUR"}, "derive": {"is_won": {"from": "stage", "map": {"won": True}},
                                                     "is_closed": {"from": "stage", "map": {"won": True}}}}})
    err = ok(sync(config))
    assert "files/deals.csv: 2 read, 2 written\n" in err
    assert {i: (d["currency"], d["is_won"]) for i, d in fetch(sqlite_url, "deals").items()} == {
        "d1": ("EUR", True), "d2": ("EUR", False)}
    assert "unchanged" in ok(sync(config))

    setup(isolated, sqlite_url, {}, timezone="Asia/Tokyo")  # the connector's zone matters too
    assert "files/deals.csv: 2 read, 2 written\n" in ok(sync(config))
    assert fetch(sqlite_url, "deals")["d1"]["updated_at"] == at(2023, 12, 31, 15)


def test_a_failed_sync_does_not_mark_the_file_as_synced(isolated, sqlite_url):
    config = setup(isolated, sqlite_url, {"deals.csv": THREE_DEALS})
    ok(sync(config))
    good = (isolated / "data" / "deals.csv").read_text()
    setup(isolated, sqlite_url, {"deals.csv": good + "d4,Four,lots,2024-01-01T00:00:00Z\n"})
    assert fail(sync(config)).startswith("deals.csv: line 5: ")
    setup(isolated, sqlite_url, {"deals.csv": good + "d4,Four,400,2024-01-01T00:00:00Z\n"})
    assert "files/deals.csv: 4 read, 1 written\n" in ok(sync(config))
    assert len(fetch(sqlite_url, "deals")) == 4


def test_two_connectors_keep_their_rows_apart_and_sync_alone(isolated, sqlite_url):
    (isolated / "eu").mkdir()
    (isolated / "eu" / "deals.csv").write_text("id,amount\nd1,1\n")
    (isolated / "us").mkdir()
    (isolated / "us" / "deals.csv").write_text("id,amount\nd1,2\n")
    config = isolated / "crmkpi.yaml"
    config.write_text(yaml.safe_dump({"store": sqlite_url, "connectors": {
        "eu": {"type": "files", "path": "eu"}, "us": {"type": "files", "path": str(isolated / "us")}}}))
    err = ok(sync(config))
    assert "eu/deals.csv: 1 read, 1 written\n" in err and "us/deals.csv: 1 read, 1 written\n" in err
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT source, id, amount FROM deals ORDER BY source")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("eu", "d1", 1.0), ("us", "d1", 2.0)]
    assert "eu: 0 rows changed" in ok(sync(config, "eu")) and runs(sqlite_url)[-1]["connector"] == "eu"


def test_a_failing_connector_does_not_hold_back_the_others(isolated, sqlite_url):
    for name in ("eu", "us"):
        (isolated / name).mkdir()
    (isolated / "eu" / "deals.csv").write_text("id,amount\nd1,lots\n")
    (isolated / "us" / "deals.csv").write_text("id,amount\nd1,2\n")
    config = isolated / "crmkpi.yaml"
    config.write_text(yaml.safe_dump({"store": sqlite_url, "connectors": {
        "eu": {"type": "files", "path": "eu"}, "us": {"type": "files", "path": "us"}, "apac": {
            "type": "files", "path": "missing"}}}, sort_keys=False))
    result = sync(config)
    assert result.exit_code == 1
    *reports, error = result.stderr.strip().splitlines()
    assert reports == ["us/deals.csv: 1 read, 1 written", f"us: 1 rows changed in {sqlite_url}"]
    assert error == ("Error: eu: deals.csv: line 2: column 'amount': not a valid float: 'lots'; 1 more failed (apac); "
                     "the other connectors synced")
    assert [(r["connector"], r["status"]) for r in runs(sqlite_url)] == [
        ("eu", "failed"), ("us", "success"), ("apac", "failed")]

