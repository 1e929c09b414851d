"""Data-health metrics: duplicates, completeness, stale open deals, days since sync.

Every case is computed by hand in the comments next to its rows. Periods are in UTC
(the default reporting zone); these metrics are snapshots as of the period end.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from crmkpi.models import ENTITIES, SyncRun
from crmkpi.store import Store

# --- duplicate_contacts_rate ---------------------------------------------------

CONTACTS = [
    # id, email, name, account, owner, created, deleted
    ("c1", "Ann@X.com ", "Ann Lee", "a1", "u1", "2024-01-10T00:00:00Z", "false"),
    ("c2", "ann@x.com", "ann lee", "a1", "u2", "2024-02-01T00:00:00Z", "false"),  # dup of c1 by email
    ("c3", "bob@x.com", "Bob Ray", "a2", "u1", "2024-03-01T00:00:00Z", "false"),
    ("c4", None, " bob ray", "a2", "u1", "2024-03-05T00:00:00Z", "false"),  # dup of c3 by name+account only
    ("c5", "N/A", "Cy", "a3", "u2", "2024-04-01T00:00:00Z", "false"),  # placeholders never match
    ("c6", "n/a", "Di", "a3", "u2", "2024-04-02T00:00:00Z", "false"),
    ("c7", "bob@x.com", "Bob Ray", "a2", "u2", "2024-01-01T00:00:00Z", "true"),  # deleted: not c3's dup
    ("c8", "ann@x.com", "Ann", "a9", "u1", "2025-02-01T00:00:00Z", "false"),  # created after 2024
    ("c9", "   ", "Eve", "a4", "u1", None, "false"),  # blank email; no created_at: always counts
    ("c10", "cy@x.com", "Cy", "a3", "u2", "2024-05-01T00:00:00Z", "false"),  # same name+account as c5
]


def contact_rows(rows=CONTACTS):
    return [{"id": i, "email": e, "name": n, "account_id": a, "owner_id": o, "created_at": c, "is_deleted": d}
            for i, e, n, a, o, c, d in rows]


def test_duplicate_contacts_rate(kpi_any_store):
    kpi_any_store.write("contacts", contact_rows())
    kpi_any_store.sync()
    # 2024: c1..c6, c9, c10 exist and are live (8); c1 and c2 share ann@x.com -> 2 / 8
    r = kpi_any_store.one("duplicate_contacts_rate", "--period", "2024")
    assert (r["value"], r["numerator"], r["denominator"], r["unit"]) == (0.25, 2, 8, "ratio")
    # 2025: c8 exists too and joins the ann@x.com group -> 3 / 9
    r = kpi_any_store.one("duplicate_contacts_rate", "--period", "2025")
    assert (r["numerator"], r["denominator"]) == (3, 9)
    assert r["value"] == pytest.approx(3 / 9)
    # match=email_or_name: c1+c2 by email (and by name at a1); c3+c4 "bob ray" at a2; c5+c10 "cy" at a3 -> 6 / 8
    r = kpi_any_store.one("duplicate_contacts_rate", "--period", "2024", "--param", "match=email_or_name")
    assert (r["value"], r["numerator"], r["denominator"]) == (0.75, 6, 8)


def test_duplicate_contacts_rate_by_owner_finds_duplicates_across_segments(kpi_any_store):
    kpi_any_store.write("contacts", contact_rows())
    kpi_any_store.sync()
    results = kpi_any_store.run("duplicate_contacts_rate", "--period", "2024", "--segment", "owner")
    by_owner = {r["segment"]["owner"]: (r["numerator"], r["denominator"]) for r in results}
    # u1: c1 c3 c4 c9 (c1 is a duplicate of u2's c2); u2: c2 c5 c6 c10 (c2)
    assert by_owner == {"u1": (1, 4), "u2": (1, 4)}


def test_duplicate_contacts_only_within_a_source(kpi):
    kpi.write("contacts", contact_rows())
    kpi.sync()
    contacts = ENTITIES["contacts"].__table__
    store = Store(kpi.store)
    with store.transaction() as conn:  # the same person in another connector is not a duplicate
        conn.execute(contacts.insert().values(source="other", id="c1", email="bob@x.com", is_deleted=False,
                                              created_at=datetime(2024, 1, 1, tzinfo=UTC)))
    store.engine.dispose()
    r = kpi.one("duplicate_contacts_rate", "--period", "2024")
    assert (r["numerator"], r["denominator"]) == (2, 9)


def test_duplicate_contacts_rate_empty(kpi):
    kpi.write("contacts", contact_rows([CONTACTS[6], CONTACTS[7]]))  # one deleted, one created in 2025
    kpi.sync()
    r = kpi.one("duplicate_contacts_rate", "--period", "2024")
    assert r["value"] is None and r["denominator"] == 0
    assert r["note"] == "no live contacts created by the as-of moment"


def test_duplicate_contacts_rate_explain_lists_the_duplicates(kpi_any_store):
    kpi = kpi_any_store
    kpi.write("contacts", contact_rows())
    kpi.sync()
    result = kpi.invoke("explain", "duplicate_contacts_rate", "--period", "2024", "--param", "match=email_or_name")
    assert result.exit_code == 0, result.output
    assert "contacts sharing a match key with another live one: 6 contacts rows" in result.output
    assert "live contacts created by the as-of moment: 8 contacts rows" in result.output


# --- duplicate_accounts_rate ---------------------------------------------------

ACCOUNTS = [
    # id, name, owner, created, deleted
    ("a1", "Acme, Inc.", "u1", "2024-01-01T00:00:00Z", "false"),
    ("a2", "ACME", "u2", "2024-02-01T00:00:00Z", "false"),
    ("a3", "acme ltd", "u1", "2024-03-01T00:00:00Z", "false"),
    ("a4", "Globex GmbH", "u1", "2024-03-01T00:00:00Z", "false"),
    ("a5", "Globex Corporation", "u2", "2024-03-01T00:00:00Z", "true"),  # deleted: a4 stays unique
    ("a6", "Initech", "u2", "2024-03-01T00:00:00Z", "false"),
    ("a7", "Smith & Co. Ltd", "u1", "2024-04-01T00:00:00Z", "false"),
    ("a8", "smith & co", "u2", "2024-04-01T00:00:00Z", "false"),
    ("a9", None, "u2", "2024-04-01T00:00:00Z", "false"),
    ("a10", "tbd", "u2", "2024-04-01T00:00:00Z", "false"),  # placeholders never match
    ("a11", "TBD", "u2", "2024-04-01T00:00:00Z", "false"),
    ("a12", "Initech", "u1", "2025-03-01T00:00:00Z", "false"),  # created after 2024
    ("a13", "  acme ", "u1", "2024-05-01T00:00:00Z", "false"),
]


def account_rows():
    return [{"id": i, "name": n, "owner_id": o, "created_at": c, "is_deleted": d} for i, n, o, c, d in ACCOUNTS]


def test_duplicate_accounts_rate_strips_legal_suffixes(kpi_any_store):
    kpi_any_store.write("accounts", account_rows())
    kpi_any_store.sync()
    # 2024: 11 live accounts (not a5, a12); "acme": a1 a2 a3 a13, "smith": a7 a8 -> 6 / 11
    r = kpi_any_store.one("duplicate_accounts_rate", "--period", "2024")
    assert (r["numerator"], r["denominator"], r["unit"]) == (6, 11, "ratio")
    assert r["value"] == pytest.approx(6 / 11)
    # lower(trim(name)) only: "acme" a2 a13 -> 2 / 11
    r = kpi_any_store.one("duplicate_accounts_rate", "--period", "2024", "--param", "match=exact_name")
    assert (r["numerator"], r["denominator"]) == (2, 11)
    # 2025: a12 "Initech" joins a6 -> 8 / 12
    r = kpi_any_store.one("duplicate_accounts_rate", "--period", "2025")
    assert (r["numerator"], r["denominator"]) == (8, 12)
    r = kpi_any_store.one("duplicate_accounts_rate", "--period", "2023")
    assert r["value"] is None and r["note"] == "no live accounts created by the as-of moment"
    result = kpi_any_store.invoke("explain", "duplicate_accounts_rate", "--period", "2024")
    assert result.exit_code == 0, result.output
    assert "accounts sharing a match key with another live one: 6 accounts rows" in result.output


def test_duplicate_accounts_rate_by_owner(kpi_any_store):
    kpi_any_store.write("accounts", account_rows())
    kpi_any_store.sync()
    results = kpi_any_store.run("duplicate_accounts_rate", "--period", "2024", "--segment", "owner")
    by_owner = {r["segment"]["owner"]: (r["numerator"], r["denominator"]) for r in results}
    # u1: a1 a3 a4 a7 a13 -> a1 a3 a7 a13; u2: a2 a6 a8 a9 a10 a11 -> a2 a8
    assert by_owner == {"u1": (4, 5), "u2": (2, 6)}


# --- completeness --------------------------------------------------------------

DEALS = [
    # id, amount, closed_at, owner, stage, account, forecast (custom), created, deleted
    ("d1", "100", "2024-06-01T00:00:00Z", "u1", "s1", "a1", "commit", "2024-01-01T00:00:00Z", "false"),  # complete
    ("d2", "0", "2024-06-01T00:00:00Z", "u2", "s1", "a1", "N/A", "2024-01-01T00:00:00Z", "false"),  # complete
    ("d3", None, "2024-06-01T00:00:00Z", "u1", "s1", "a1", None, "2024-01-01T00:00:00Z", "false"),  # no amount
    ("d4", "50", "2024-06-01T00:00:00Z", "u2", "TBD", "a1", None, "2024-01-01T00:00:00Z", "false"),  # stage
    ("d5", "50", "2024-06-01T00:00:00Z", "u1", " n/a ", "a1", None, "2024-01-01T00:00:00Z", "false"),  # stage
    ("d6", "50", "2024-06-01T00:00:00Z", "u2", "s1", "  ", None, "2024-01-01T00:00:00Z", "false"),  # account
    ("d7", "50", "2024-06-01T00:00:00Z", "u1", "s1", "a1", None, "2024-01-01T00:00:00Z", "true"),  # deleted
    ("d8", "50", "2025-06-01T00:00:00Z", "u1", "s1", "a1", None, "2025-02-01T00:00:00Z", "false"),  # 2025
    ("d9", "50", None, "u1", "None", "a1", None, "2024-01-01T00:00:00Z", "false"),  # stage, close date
]


def deal_rows():
    return [{"id": i, "amount": a, "closed_at": c, "owner_id": o, "stage": s, "account_id": acc,
             "forecast_category": f, "created_at": cr, "is_deleted": d, "is_closed": False, "is_won": False}
            for i, a, c, o, s, acc, f, cr, d in DEALS]


def test_completeness_of_deals(kpi_any_store):
    kpi_any_store.write("deals", deal_rows())
    kpi_any_store.sync()
    # 2024: d1..d6, d9 (7); all of amount, closed_at, owner_id, stage, account_id: d1, d2 -> 2 / 7
    r = kpi_any_store.one("completeness", "--period", "2024")
    assert (r["numerator"], r["denominator"], r["unit"]) == (2, 7, "ratio")
    assert r["value"] == pytest.approx(2 / 7)
    # 2025: d8 is complete too -> 3 / 8
    r = kpi_any_store.one("completeness", "--period", "2025")
    assert (r["numerator"], r["denominator"]) == (3, 8)
    # amount and owner only: all but d3 -> 6 / 7
    r = kpi_any_store.one("completeness", "--period", "2024", "--param", "fields=amount, owner_id")
    assert (r["numerator"], r["denominator"]) == (6, 7)
    # a custom field: d1 only (d2's "N/A" is a placeholder) -> 1 / 7
    r = kpi_any_store.one("completeness", "--period", "2024", "--param", "fields=extra.forecast_category")
    assert (r["numerator"], r["denominator"]) == (1, 7)


def test_completeness_by_owner(kpi_any_store):
    kpi_any_store.write("deals", deal_rows())
    kpi_any_store.sync()
    results = kpi_any_store.run("completeness", "--period", "2024", "--segment", "owner")
    by_owner = {r["segment"]["owner"]: (r["numerator"], r["denominator"]) for r in results}
    assert by_owner == {"u1": (1, 4), "u2": (1, 3)}  # u1: d1 d3 d5 d9; u2: d2 d4 d6


def test_completeness_of_other_tables(kpi_any_store):
    kpi_any_store.write("deals", deal_rows())
    kpi_any_store.write("contacts", [
        {"id": "k1", "email": "a@x.com", "account_id": "a1", "owner_id": "u1", "created_at": "2024-01-01"},
        {"id": "k2", "email": "none", "account_id": "a1", "owner_id": "u1", "created_at": "2024-01-01"},
        {"id": "k3", "email": "b@x.com", "account_id": None, "owner_id": "u2", "created_at": "2024-01-01"},
        {"id": "k4", "email": "c@x.com", "account_id": "a2", "owner_id": "u2", "created_at": "2024-01-01"},
        {"id": "k6", "email": "d@x.com", "account_id": "a3", "owner_id": "u3", "created_at": "2024-01-01"},
        {"id": "k5", "email": None, "account_id": "a2", "owner_id": "u2", "created_at": "2024-01-01",
         "is_deleted": "true"},
    ])
    kpi_any_store.write("users", [{"id": "u1", "name": "Ann", "email": "ann@x.com"},
                                  {"id": "u2", "name": "-", "email": "bob@x.com"}])
    kpi_any_store.sync()
    # contacts' default fields email, account_id, owner_id: k1, k4, k6 of k1..k4, k6 -> 3 / 5
    r = kpi_any_store.one("completeness", "--period", "2024", "--param", "table=contacts")
    assert (r["value"], r["numerator"], r["denominator"]) == (0.6, 3, 5)
    results = kpi_any_store.run("completeness", "--period", "2024", "--param", "table=contacts",
                                "--segment", "owner")
    assert {r["segment"]["owner"]: (r["numerator"], r["denominator"]) for r in results} == {
        "u1": (1, 2), "u2": (1, 2), "u3": (1, 1)}  # u3 owns a contact and no deal
    # a table without default fields, with fields given (users have no created_at: they always count)
    r = kpi_any_store.one("completeness", "--period", "2024", "--param", "table=users",
                          "--param", "fields=name,email")
    assert (r["numerator"], r["denominator"]) == (1, 2)


def test_completeness_empty_and_bad_params(kpi):
    kpi.write("deals", deal_rows())
    kpi.sync()
    error = kpi.error("completeness", "--period", "2024", "--param", "fields=amount,bogus")
    assert error.startswith("field 'bogus' is not a column of deals (columns: source, id,")
    error = kpi.fails("run", "--metric", "completeness", "--period", "2024", "--param", "table=bogus")
    assert error.startswith("completeness: param table: 'bogus' is not one of deals, contacts, ")
    error = kpi.error("completeness", "--period", "2024", "--param", "table=users")
    assert error == "table users has no default key fields: set the fields param, e.g. --param fields=a,b"
    r = kpi.one("completeness", "--period", "2023")
    assert r["value"] is None and r["denominator"] == 0
    assert r["note"] == "no live deals created by the as-of moment"


# --- stale_open_deals ----------------------------------------------------------

STALE = [
    # id, closed, won, expected/actual close, owner, created, deleted      (period 2024-06, ends 07-01)
    ("s1", "false", "false", "2024-06-15T00:00:00Z", "u1", "2024-05-01T00:00:00Z", "false"),  # 16 days past
    ("s2", "false", "false", "2024-07-15T00:00:00Z", "u2", "2024-05-01T00:00:00Z", "false"),  # not yet due
    ("s3", "false", "false", None, "u1", "2024-05-01T00:00:00Z", "false"),  # no close date: denominator only
    ("s4", "true", "true", "2024-06-10T00:00:00Z", "u1", "2024-05-01T00:00:00Z", "false"),  # closed by then
    ("s5", "true", "false", "2024-08-01T00:00:00Z", "u2", "2024-05-01T00:00:00Z", "false"),  # open then
    ("s6", "false", "false", "2024-03-01T00:00:00Z", "u1", "2024-01-01T00:00:00Z", "true"),  # deleted
    ("s7", "false", "false", "2024-06-30T23:00:00Z", "u2", "2024-06-01T00:00:00Z", "false"),  # 1 hour past
    ("s8", "false", "false", "2024-06-01T00:00:00Z", "u1", "2024-08-01T00:00:00Z", "false"),  # created later
    ("s9", "false", "false", "2024-05-01T00:00:00Z", "u1", "2024-04-01T00:00:00Z", "false"),  # 61 days past
]


def stale_rows(rows=STALE):
    return [{"id": i, "is_closed": c, "is_won": w, "closed_at": at, "owner_id": o, "created_at": cr,
             "is_deleted": d} for i, c, w, at, o, cr, d in rows]


def test_stale_open_deals(kpi_any_store):
    kpi_any_store.write("deals", stale_rows())
    kpi_any_store.sync()
    # open at 2024-07-01: s1 s2 s3 s5 s7 s9 (6); expected close before then: s1 s7 s9
    r = kpi_any_store.one("stale_open_deals", "--period", "2024-06")
    assert (r["value"], r["numerator"], r["denominator"], r["unit"]) == (0.5, 3, 6, "ratio")
    # more than 10 days past (before 06-21): s1 s9; more than 20 (before 06-11): s9
    r = kpi_any_store.one("stale_open_deals", "--period", "2024-06", "--param", "days_past=10")
    assert (r["numerator"], r["denominator"]) == (2, 6)
    r = kpi_any_store.one("stale_open_deals", "--period", "2024-06", "--param", "days_past=20")
    assert (r["numerator"], r["denominator"]) == (1, 6)
    # as of 2024-05-01: s9 (due 05-01, not before it) is the only deal open -> 0 / 1
    r = kpi_any_store.one("stale_open_deals", "--period", "2024-04")
    assert (r["value"], r["numerator"], r["denominator"]) == (0.0, 0, 1)


def test_stale_open_deals_by_owner(kpi_any_store):
    kpi_any_store.write("deals", stale_rows())
    kpi_any_store.sync()
    results = kpi_any_store.run("stale_open_deals", "--period", "2024-06", "--segment", "owner")
    by_owner = {r["segment"]["owner"]: (r["numerator"], r["denominator"]) for r in results}
    assert by_owner == {"u1": (2, 3), "u2": (1, 3)}  # u1: s1 s3 s9; u2: s2 s5 s7


def test_stale_open_deals_in_the_current_period_are_as_of_today(kpi):
    today = datetime.now(UTC).date()  # the reporting zone is UTC
    kpi.write("deals", stale_rows([
        ("t1", "false", "false", f"{today - timedelta(days=2)}T00:00:00Z", "u1", "2020-01-01T00:00:00Z", "false"),
        ("t2", "false", "false", f"{today + timedelta(days=2)}T00:00:00Z", "u1", "2020-01-01T00:00:00Z", "false"),
    ]))
    kpi.sync()
    # this year ends later, but t2's expected close date is after today: it is not stale yet
    r = kpi.one("stale_open_deals", "--period", "this-year")
    assert (r["numerator"], r["denominator"]) == (1, 2)


def test_stale_open_deals_empty_and_bad_param(kpi):
    kpi.write("deals", stale_rows())
    kpi.sync()
    r = kpi.one("stale_open_deals", "--period", "2023")
    assert r["value"] is None and r["note"] == "no open deals at the as-of moment"
    error = kpi.fails("run", "--metric", "stale_open_deals", "--period", "2024", "--param", "days_past=-1")
    assert error == "stale_open_deals: param days_past: must be 0 or more, got -1"


# --- days_since_sync -----------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


SYNC_RUNS = [
    # connector, status, started, finished
    ("crm", "success", "2024-03-10 11:00", "2024-03-10 12:00"),
    ("crm", "success", "2024-03-19 23:00", "2024-03-20 00:00"),  # crm's last success in March
    ("crm", "failed", "2024-03-25 00:00", "2024-03-25 00:10"),
    ("crm", "success", "2024-04-02 00:00", "2024-04-02 00:10"),  # after March
    ("hubspot", "success", "2024-03-05 05:00", "2024-03-05 06:00"),
    ("hubspot", "running", "2024-03-28 00:00", None),
    ("salesforce", "failed", "2024-03-15 00:00", "2024-03-15 00:01"),  # never succeeded
]


def add_sync_runs(project) -> None:
    store = Store(project.store)
    with store.transaction() as conn:
        conn.execute(SyncRun.__table__.insert(), [
            {"connector": c, "status": s, "started_at": at(st), "finished_at": at(f) if f else None}
            for c, s, st, f in SYNC_RUNS])
    store.engine.dispose()


def test_days_since_sync_per_connector(kpi_any_store):
    kpi_any_store.write("deals", stale_rows())
    kpi_any_store.sync()  # a real run of "crm", now: after every period below
    add_sync_runs(kpi_any_store)
    # to 2024-04-01: crm 12 days (03-20 00:00), hubspot 26.75 days (03-05 06:00), salesforce none
    results = kpi_any_store.run("days_since_sync", "--period", "2024-03", "--segment", "connector")
    by_connector = {r["segment"]["connector"]: (r["value"], r["note"]) for r in results}
    assert by_connector["crm"] == (pytest.approx(12.0), None)
    assert by_connector["hubspot"] == (pytest.approx(26.75), None)
    assert by_connector["salesforce"] == (None, "no successful sync of salesforce at all")
    assert list(by_connector) == ["crm", "hubspot", "salesforce"]
    assert {r["unit"] for r in results} == {"days"}
    # the whole company: the oldest connector's age, and who has never synced
    r = kpi_any_store.one("days_since_sync", "--period", "2024-03")
    assert r["value"] == pytest.approx(26.75)
    assert r["note"] == "no successful sync of salesforce at all"
    # the current period runs to now: crm synced a moment ago
    results = kpi_any_store.run("days_since_sync", "--period", "this-month", "--segment", "connector")
    crm = next(r for r in results if r["segment"]["connector"] == "crm")
    assert 0 <= crm["value"] < 0.01
    # before any successful sync
    r = kpi_any_store.one("days_since_sync", "--period", "2023")
    assert r["value"] is None
    assert r["note"] == ("first successful sync after the as-of moment 2024-01-01 00:00 UTC: crm at 2024-03-10 "
                         "12:00 UTC, hubspot at 2024-03-05 06:00 UTC; no successful sync of salesforce at all")
    error = kpi_any_store.fails("run", "--metric", "days_since_sync", "--period", "2024", "--segment", "owner")
    assert error == "--segment 'owner': does not apply to sync_runs"


def test_days_since_sync_of_a_past_period_right_after_the_first_sync(kpi):
    # "no successful sync" right after one: last month's end comes before today's sync, and the note says so
    kpi.write("deals", stale_rows())
    kpi.sync()
    r = kpi.one("days_since_sync", "--period", "last-month")
    start = datetime.now(UTC).date().replace(day=1)
    assert r["value"] is None
    assert re.fullmatch(rf"first successful sync after the as-of moment {start} 00:00 UTC: crm at "
                        rf"{datetime.now(UTC):%Y-%m-%d} \d\d:\d\d UTC", r["note"]), r["note"]
    assert 0 <= kpi.one("days_since_sync", "--period", "this-month")["value"] < 0.01
