"""Row building: the generated fast path and the checked path agree; bad values are named precisely."""

from __future__ import annotations

import pickle
import random
import time
from datetime import UTC, date, datetime

import pytest

from crmkpi.normalize import Derivation, FieldError, Layout, RecordRows, RowBuilder
from crmkpi.store import Store

SYNCED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
DIALECTS = {"sqlite": "sqlite://", "postgresql": "postgresql+psycopg://nobody@localhost/unused"}


@pytest.fixture(params=sorted(DIALECTS))
def encoder(request):
    """The store's value encoder for each backend (no connection is made)."""
    store = Store(DIALECTS[request.param], migrate=False)
    yield store.encoder
    store.engine.dispose()


@pytest.fixture
def sqlite_encoder():
    store = Store("sqlite://", migrate=False)
    yield store.encoder
    store.engine.dispose()


def builder(table, fields, encoder, **layout) -> RowBuilder:
    return RowBuilder(table, fields, Layout(**layout), source="crm", synced_at=SYNCED, encoder=encoder)


def as_dict(b: RowBuilder, row: tuple) -> dict:
    assert len(row) == len(b.columns)
    return dict(zip(b.columns, row))


def both(b: RowBuilder, record) -> tuple:
    """The row from the fast path, checked to equal the checked path's."""
    fast, checked = b.build(record), b.build_checked(record)
    assert fast == checked
    return fast


def error(b: RowBuilder, record, build: str) -> FieldError:
    with pytest.raises(FieldError) as info:
        getattr(b, build)(record)
    return info.value


DEAL_FIELDS = ["id", "name", "amount", "is_won", "created_at", "closed_at", "forecast", "owner_id"]
DEAL_RECORDS = [
    ["d1", "One", "1200.50", "true", "2024-01-05T09:30:00Z", "2024-02-01", "commit", "u1"],
    ["d2", "", "", "", "2024-01-06T12:00:00+02:00", "", "", ""],
    ["d3", "Three", "0", "N", "2024-01-07 08:15:00", "2024-01-08T00:00:00.25Z", "best", "u2"],
]


def test_fast_and_checked_paths_agree_on_csv_text(encoder):
    b = builder("deals", DEAL_FIELDS, encoder)
    # the file's columns in the table's order, then the defaults of NOT NULL columns it lacks, then extra
    assert b.columns == ["source", "synced_at", "id", "created_at", "owner_id", "name", "amount", "is_won",
                         "closed_at", "is_deleted", "is_closed", "extra"]
    rows = [as_dict(b, both(b, r)) for r in DEAL_RECORDS]
    d1, d2, d3 = rows
    assert (d1["source"], d1["id"], d1["name"], d1["owner_id"]) == ("crm", "d1", "One", "u1")
    assert d1["amount"] == 1200.5 and d1["is_won"] is True and d3["is_won"] is False
    assert d3["amount"] == 0.0
    # empty cells: NULL, or the NOT NULL column's default; defaults for columns the file lacks
    assert (d2["name"], d2["amount"], d2["closed_at"], d2["owner_id"]) == (None, None, None, None)
    assert d2["is_won"] is False and d2["is_deleted"] is False and d2["is_closed"] is False
    assert d1["extra"] == '{"forecast":"commit"}' and d2["extra"] is None
    if encoder("datetime") is None or encoder("date") is None:  # PostgreSQL: aware UTC datetimes
        assert d1["synced_at"] == SYNCED
        assert d1["created_at"] == datetime(2024, 1, 5, 9, 30, tzinfo=UTC)
        assert d2["created_at"] == datetime(2024, 1, 6, 10, tzinfo=UTC)
        assert d3["closed_at"] == datetime(2024, 1, 8, 0, 0, 0, 250000, tzinfo=UTC)
        assert all(r["created_at"].utcoffset().total_seconds() == 0 for r in rows)
    else:  # SQLite: the text SQLAlchemy writes, so that comparisons in SQL order correctly
        assert d1["synced_at"] == "2025-01-02 03:04:05.000000"
        assert [r["created_at"] for r in rows] == [
            "2024-01-05 09:30:00.000000", "2024-01-06 10:00:00.000000", "2024-01-07 08:15:00.000000"]
        assert d1["closed_at"] == "2024-02-01 00:00:00.000000"
        assert d3["closed_at"] == "2024-01-08 00:00:00.250000"


def test_fast_and_checked_paths_agree_on_json_values(encoder):
    fields = ["id", "display_order", "probability", "is_won", "is_closed", "created_at", "label", "meta"]
    b = builder("pipeline_stages", fields, encoder)
    records = [
        [7, 3, 0.4, True, False, 1704067200, 12.5, {"color": "red"}],
        ["s2", 5.0, 1, 1, 0, 1704067200000, "Won", ["a", None]],
        ["s3", None, None, None, None, None, None, None],
    ]
    rows = [as_dict(b, both(b, r)) for r in records]
    assert [(r["id"], r["display_order"], r["probability"], r["is_won"], r["is_closed"], r["label"]) for r in rows] == [
        ("7", 3, 0.4, True, False, "12.5"), ("s2", 5, 1.0, True, False, "Won"), ("s3", None, None, False, False, None)]
    assert isinstance(rows[1]["display_order"], int) and isinstance(rows[1]["probability"], float)
    assert rows[0]["created_at"] == rows[1]["created_at"]  # epoch seconds and milliseconds
    assert rows[0]["extra"] == '{"meta":{"color":"red"}}' and rows[1]["extra"] == '{"meta":["a",null]}'


def test_recoding_derivation_and_constants(encoder):
    fields = ["Deal", "Stage", "Amount", "Won"]
    b = builder("deals", fields, encoder,
                columns={"id": "Deal", "stage": "Stage", "amount": "Amount"},
                values={"stage": {"Closed Won": "closed_won", "Closed Lost": "closed_lost"}},
                # a derivation reads the source's value, not the recoded one
                derive={"is_won": Derivation("Stage", {"Closed Won": True}, False),
                        "is_closed": Derivation("Stage", {"Closed Won": "yes", "Closed Lost": "yes"}, "no")},
                constants={"currency": "EUR", "is_deleted": False})
    rows = [as_dict(b, both(b, r)) for r in (["1", "Closed Won", "10", "x"], ["2", "Closed Lost", "", ""],
                                              ["3", "Discovery", "1e3", ""])]
    assert [(r["id"], r["stage"], r["amount"], r["is_won"], r["is_closed"], r["currency"], r["is_deleted"])
            for r in rows] == [("1", "closed_won", 10.0, True, True, "EUR", False),
                               ("2", "closed_lost", None, False, True, "EUR", False),
                               ("3", "Discovery", 1000.0, False, False, "EUR", False)]
    assert [r["extra"] for r in rows] == ['{"Won":"x"}', None, None]


def test_a_derivation_from_a_value_that_cannot_be_a_key_takes_the_default(sqlite_encoder):
    b = builder("deals", ["id", "stage"], sqlite_encoder, derive={"is_won": Derivation("stage", {"won": True}, False)})
    row = as_dict(b, both(b, ["d1", ["won"]]))
    assert row["is_won"] is False and row["stage"] == '["won"]'
    assert as_dict(b, both(b, ["d2", "won"]))["is_won"] is True


def test_timezones_and_formats(sqlite_encoder):
    b = builder("marketing_spend", ["id", "created_at", "spent_on", "period_start"], sqlite_encoder,
                timezone="America/New_York", datetime_format="%m/%d/%Y %I:%M %p", date_format="%m/%d/%Y")
    row = as_dict(b, both(b, ["m1", "03/09/2024 11:30 PM", "02/29/2024", ""]))
    assert row["created_at"] == "2024-03-10 04:30:00.000000"  # EST, UTC-5
    assert row["spent_on"] == "2024-02-29" and row["period_start"] is None
    assert as_dict(b, both(b, ["m2", "03/10/2024 11:30 PM", "", ""]))["created_at"] == "2024-03-11 03:30:00.000000"
    iso = builder("deals", ["id", "created_at"], sqlite_encoder, timezone="Asia/Kolkata")
    assert as_dict(iso, both(iso, ["d", "2024-01-01T05:30:00"]))["created_at"] == "2024-01-01 00:00:00.000000"
    assert as_dict(iso, both(iso, ["d", "2024-01-01T05:30:00Z"]))["created_at"] == "2024-01-01 05:30:00.000000"
    assert as_dict(iso, both(iso, ["d", datetime(2024, 1, 1, 5, 30)]))["created_at"] == "2024-01-01 00:00:00.000000"
    assert as_dict(iso, both(iso, ["d", 0]))["created_at"] == "1970-01-01 00:00:00.000000"  # epochs are UTC


BAD_VALUES = [
    ("deals", ["id", "amount"], {}, ["d1", "12,50"], "amount", "not a valid float: '12,50'"),
    ("deals", ["id", "amount"], {}, ["d1", True], "amount", "not a valid float: True"),
    ("deals", ["id", "amount"], {}, ["d1", [1]], "amount", "not a valid float: [1]"),
    ("deals", ["id", "is_won"], {}, ["d1", "sure"], "is_won", "not a valid bool: 'sure'"),
    ("deals", ["id", "is_won"], {}, ["d1", 2], "is_won", "not a valid bool: 2"),
    ("deals", ["id", "created_at"], {}, ["d1", "2024-02-30"], "created_at", "not a valid datetime: '2024-02-30'"),
    ("deals", ["id", "created_at"], {}, ["d1", "01/02/2024"], "created_at", "not a valid datetime: '01/02/2024'"),
    ("deals", ["id", "created_at"], {}, ["d1", True], "created_at", "not a valid datetime: True"),
    ("deals", ["id", "created_at"], {"timezone": "Europe/Paris"}, ["d1", "noon"], "created_at",
     "not a valid datetime: 'noon'"),
    ("deals", ["id", "created_at"], {"datetime_format": "%d/%m/%Y"}, ["d1", "2024-01-02"], "created_at",
     "not a valid datetime: '2024-01-02'"),
    ("quotas", ["id", "period_start"], {}, ["q1", "2024-13-01"], "period_start", "not a valid date: '2024-13-01'"),
    ("pipeline_stages", ["id", "display_order"], {}, ["s1", "1.5"], "display_order", "not a valid int: '1.5'"),
    ("pipeline_stages", ["id", "display_order"], {}, ["s1", 1.5], "display_order", "not a valid int: 1.5"),
    ("deals", ["id", "name"], {}, ["", "x"], "id", "required field is empty"),
    ("deals", ["id", "name"], {}, [None, "x"], "id", "required field is empty"),
    ("deal_stage_changes", ["id", "deal_id", "stage", "entered_at"], {}, ["c1", "d1", "won", ""], "entered_at",
     "required field is empty"),
    ("deals", ["Deal", "Value"], {"columns": {"id": "Deal", "amount": "Value"}}, ["d1", "lots"], "Value",
     "not a valid float: 'lots'"),
    ("deals", ["id", "flag"], {"derive": {"is_won": Derivation("flag", {"w": "maybe"})}}, ["d1", "w"], "flag",
     "not a valid bool: 'maybe'"),
    ("deals", ["id", "stage"], {"values": {"stage": {"gone": ""}}}, ["d1", "gone"], "stage", None),  # recoded to empty
    ("deals", ["id"], {"values": {"id": {"x": ""}}}, ["x"], "id", "required field is empty"),
]


@pytest.mark.parametrize("table, fields, layout, record, column, reason", BAD_VALUES)
def test_checked_path_names_the_source_field_and_reason(sqlite_encoder, table, fields, layout, record, column,
                                                        reason):
    b = builder(table, fields, sqlite_encoder, **layout)
    if reason is None:  # not an error: a value recoded to "" is empty, so NULL
        assert as_dict(b, both(b, record))[column] is None
        return
    fast, checked = error(b, record, "build"), error(b, record, "build_checked")
    assert str(fast) == str(checked) == f"column {column!r}: {reason}"
    assert fast.column == checked.column == column


PLAN_ERRORS = [
    ("deals", ["id"], {"columns": {"amount_usd": "id"}},
     "column 'id': mapped to unknown column 'amount_usd' of table deals"),
    ("deals", ["id"], {"columns": {"amount": "Amount"}},
     "column 'Amount': mapped to 'amount' but not found in the source fields"),
    ("deals", ["name"], {}, "column 'id': required field missing from the source"),
    ("deal_stage_changes", ["id", "deal_id", "entered_at"], {},
     "column 'stage': required field missing from the source"),
    ("deals", ["id"], {"derive": {"won": Derivation("id", {})}},
     "column 'won': derived column is not a column of table deals"),
    ("deals", ["id"], {"derive": {"is_won": Derivation("Stage", {})}},
     "column 'Stage': needed to derive 'is_won' but not found in the source fields"),
]


@pytest.mark.parametrize("table, fields, layout, message", PLAN_ERRORS)
def test_a_layout_that_does_not_fit_fails_before_any_record(sqlite_encoder, table, fields, layout, message):
    with pytest.raises(FieldError) as info:
        builder(table, fields, sqlite_encoder, **layout)
    assert str(info.value) == message


def test_constants_and_derivations_satisfy_required_columns(sqlite_encoder):
    b = builder("deal_stage_changes", ["id", "deal_id", "entered_at"], sqlite_encoder, constants={"stage": "won"})
    assert as_dict(b, both(b, ["c1", "d1", "2024-01-01"]))["stage"] == "won"


def test_field_error_survives_pickling():
    # Row workers send exceptions back to the parent pickled.
    copy = pickle.loads(pickle.dumps(FieldError("amount", "not a valid float: 'x'")))
    assert type(copy) is FieldError and copy.column == "amount"
    assert str(copy) == "column 'amount': not a valid float: 'x'"


def test_fast_and_checked_paths_agree_on_random_records(encoder):
    """Fuzz: whatever mix of good and bad values, both paths give the same row or the same error."""
    fields = ["id", "amount", "is_won", "created_at", "closed_at", "stage", "custom", "owner_id"]
    b = builder("deals", fields, encoder, timezone="Europe/Berlin",
                values={"stage": {"W": "won", "L": "lost"}},
                derive={"is_closed": Derivation("stage", {"won": True, "lost": True}, False)})
    pools = {
        "id": ["d1", "", None, 5, 2.5],
        "amount": ["1", "2.5", "", None, "x", "1e3", 7, 7.25, True, "-0", [1], {"a": 1}],
        "is_won": ["true", "F", "yes", "0", "", None, "maybe", True, False, 1, 0, 2, 1.0],
        "created_at": ["2024-01-01", "2024-03-31T02:30:00", "2024-06-01T12:00:00+05:30", "", None, "bad", 1704067200,
                       1704067200000, 2.5, True, datetime(2024, 1, 1, 12), date(2024, 1, 1)],
        "closed_at": ["2024-10-27 02:30", "", None, "2024-10-27T02:30:00Z", "x"],
        "stage": ["W", "L", "open", "", None, ["W"], 3],
        "custom": ["", None, "v", 0, False, {"k": [1, 2]}],
        "owner_id": ["u1", "", None, 12],
    }
    rng = random.Random(20240101)
    outcomes = {"row": 0, "error": 0}
    for _ in range(3000):
        record = [rng.choice(pools[f]) for f in fields]
        try:
            expected = b.build_checked(record)
        except FieldError as exc:
            assert str(error(b, record, "build")) == str(exc), record
            outcomes["error"] += 1
            continue
        assert b.build(record) == expected, record
        outcomes["row"] += 1
    assert min(outcomes.values()) > 100  # both kinds of record were tried


@pytest.fixture
def machine_zone(monkeypatch):
    """Run with the process's local zone far from UTC, as on a laptop in New York."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_machines_own_zone_never_shifts_values(encoder, machine_zone):
    assert time.localtime(0).tm_hour == 19  # the zone did change
    utc_layout = builder("deals", ["id", "created_at"], encoder)
    berlin = builder("deals", ["id", "created_at"], encoder, timezone="Europe/Berlin")
    naive, aware = ["d", "2024-02-01T00:00:00"], ["d", "2024-02-01T00:00:00+01:00"]
    values = [as_dict(b, both(b, r))["created_at"] for b, r in ((utc_layout, naive), (berlin, naive), (berlin, aware))]
    if isinstance(values[0], str):
        assert values == ["2024-02-01 00:00:00.000000", "2024-01-31 23:00:00.000000", "2024-01-31 23:00:00.000000"]
    else:
        assert values == [datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 1, 31, 23, tzinfo=UTC),
                          datetime(2024, 1, 31, 23, tzinfo=UTC)]


@pytest.mark.parametrize("raw", ["nan", "inf", "-Infinity", float("nan"), float("inf")])
def test_non_finite_numbers_are_rejected_on_both_paths(sqlite_encoder, raw):
    b = builder("deals", ["id", "amount"], sqlite_encoder)
    for build in ("build", "build_checked"):
        assert error(b, ["d1", raw], build).column == "amount"


def test_nested_values_in_a_text_column_are_stored_as_json(sqlite_encoder):
    b = builder("accounts", ["id", "name", "region"], sqlite_encoder)
    row = as_dict(b, both(b, ["a1", {"first": "Acme", "tags": [1, 2]}, ["EMEA", "DE"]]))
    assert row["name"] == '{"first":"Acme","tags":[1,2]}'
    assert row["region"] == '["EMEA","DE"]'


def test_record_rows_read_dicts_that_omit_known_fields_and_add_unknown_ones(sqlite_encoder):
    rows = RecordRows("deals", Layout(columns={"amount": "Amount", "stage": "StageName"}), source="crm",
                      synced_at=SYNCED, encoder=sqlite_encoder)
    first = dict(zip(rows.columns, rows.build({"id": "d1", "Amount": 100, "StageName": "Won", "Region__c": "EU"})))
    second = dict(zip(rows.columns, rows.build({"id": "d2", "Other__c": None, "Tier__c": 3})))
    assert (first["id"], first["amount"], first["stage"], first["extra"]) == ("d1", 100.0, "Won", '{"Region__c":"EU"}')
    assert (second["id"], second["amount"], second["stage"], second["extra"]) == ("d2", None, None, '{"Tier__c":3}')
    with pytest.raises(FieldError) as info:
        rows.build({"id": "d3", "Amount": "lots"})
    assert info.value.column == "Amount"


def test_a_column_read_from_several_fields_takes_the_first_non_empty_and_counts_the_fallbacks(encoder):
    b = builder("tickets", ["id", "resolved_at", "closed_at", "solved"], encoder,
                columns={"resolved_at": ("resolved_at", "closed_at", "solved")})
    rows = [as_dict(b, both(b, r)) for r in (["t1", "2024-01-02", "2024-01-03", ""], ["t2", "", "2024-01-03", ""],
                                              ["t3", None, "", "2024-01-04"], ["t4", "", "", ""])]
    assert [r["resolved_at"] is None for r in rows] == [False, False, False, True]
    assert as_dict(b, b.build(["t5", "", "2024-01-03", ""]))["resolved_at"] == rows[1]["resolved_at"]
    # both() builds every record twice; t5 once: closed_at was taken 2 * 1 + 1 times, solved 2 * 1
    assert b.usage.fallbacks["resolved_at"] == [3, 2]
    assert rows[0]["extra"] is None  # the fallback fields are read, not kept in extra
    bad = error(b, ["t6", "", "soon", ""], "build_checked")
    assert (bad.column, bad.target) == ("closed_at", "resolved_at")  # names the field the value came from


def test_a_format_per_column_overrides_the_file_wide_one(sqlite_encoder):
    b = builder("deals", ["id", "created_at", "closed_at"], sqlite_encoder, datetime_format="%Y-%m-%d %H:%M",
                formats={"closed_at": "%d/%m/%Y"})
    row = as_dict(b, both(b, ["d1", "2024-01-05 14:30", "31/01/2024"]))
    assert (row["created_at"], row["closed_at"]) == ("2024-01-05 14:30:00.000000", "2024-01-31 00:00:00.000000")
    assert error(b, ["d2", "2024-01-05 14:30", "2024-01-31"], "build").target == "closed_at"


def test_values_recode_fields_kept_in_extra_and_record_which_keys_matched(encoder):
    b = builder("accounts", ["id", "Tier", "stage"], encoder, values={"Tier": {"G": "gold", "X": ""},
                                                                        "region": {"N": "north"}})
    rows = [as_dict(b, both(b, r)) for r in (["a1", "G", ""], ["a2", "S", ""], ["a3", "X", ""])]
    assert [r["extra"] for r in rows] == ['{"Tier":"gold"}', '{"Tier":"S"}', None]  # recoded to empty: dropped
    uses = b.usage.values["Tier"]
    assert (uses.unmatched(), uses.seen()) == ([], ["S"])
    assert b.usage.values["region"].unmatched() == ["N"]  # a column the fields do not have


def test_a_derivation_matches_the_source_value_and_records_the_keys_no_record_had(sqlite_encoder):
    b = builder("deals", ["id", "Stage"], sqlite_encoder, columns={"stage": "Stage"},
                values={"stage": {"Closed Won": "won"}},
                derive={"is_won": Derivation("stage", {"Closed Won": True, "won": True, "Won": True}, False)})
    assert [as_dict(b, both(b, [i, s]))["is_won"] for i, s in (("1", "Closed Won"), ("2", "Open"))] == [True, False]
    uses = b.usage.derive["is_won"]
    assert (uses.unmatched(), uses.seen()) == (["won", "Won"], ["Open"])  # "from: stage" reads the Stage field


def test_what_a_builder_provides_and_where_a_column_comes_from(sqlite_encoder):
    b = builder("deals", ["Deal", "Stage", "note"], sqlite_encoder, columns={"id": "Deal"},
                derive={"is_won": Derivation("Stage", {})}, constants={"currency": "EUR"})
    assert b.provided == {"id", "is_won", "currency"}  # not is_closed: its default fills it
    assert (b.source_of("id"), b.source_of("is_won"), b.source_of("currency")) == ("Deal", "Stage", "currency")
    assert b.key(["d9", "x", ""]) == "d9"


def test_record_rows_know_which_fields_records_had(sqlite_encoder):
    rows = RecordRows("deals", Layout(columns={"amount": "Amount", "closed_at": ("Close", "Expected")}), source="crm",
                      synced_at=SYNCED, encoder=sqlite_encoder)
    rows.build({"id": "d1", "Amount": 1, "Expected": "2024-01-01", "tier": "x"})
    assert {"id", "amount", "closed_at"} <= rows.provided and "stage" not in rows.provided
    assert "Close" in rows.unseen and "Amount" not in rows.unseen
    assert rows.extra_fields == {"tier"} and rows.key({"id": 7}) == "7"
