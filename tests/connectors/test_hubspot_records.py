"""HubSpot JSON -> normalized rows, without a server: flattening, flags, history, pipelines, owners."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmkpi.connector import SyncContext
from crmkpi.errors import SourceDataError
from crmkpi.store import Store
from crmkpi.connectors.hubspot.objects import DEAL_STAGE_HISTORY, DEALS, TICKETS, lifecycle_leads
from crmkpi.connectors.hubspot.records import (
    Records, StageFlags, closed_flags, owner_record, pipeline_stage_records, primary_ids, stage_changes)

SYNCED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def context():
    """A sync context with PostgreSQL's encoder, which keeps values as Python objects (no connection made)."""
    store = Store("postgresql+psycopg://nobody@localhost/unused", migrate=False)
    yield SyncContext(name="hub", settings=None, base_dir=Path("."), synced_at=SYNCED, encoder=store.encoder)
    store.engine.dispose()


def rows(records: Records, obj: dict, associated: dict | None = None) -> list[dict]:
    return [dict(zip(records.columns, row)) for row in records.build(obj, associated or {})]


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def deal(**properties) -> dict:
    return {"id": "42", "archived": False, "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-02-01T00:00:00Z",
            "properties": {"hs_object_id": "42", "dealname": "Big one", "amount": "1500.25", "dealstage": "won",
                           "pipeline": "default", "closedate": "2024-02-01T10:00:00.000Z",
                           "createdate": "2024-01-01T00:00:00Z", "dealtype": "newbusiness",
                           "deal_currency_code": "EUR", "hubspot_owner_id": "7", "custom_score": "9",
                           "hs_lastmodifieddate": "2024-02-01T10:00:00.000Z", **properties}}


def test_deal_maps_to_typed_columns_and_the_rest_to_extra(context):
    records = Records(DEALS, {}, context, stages={"won": StageFlags(True, True)})
    [row] = rows(records, deal(hs_is_closed="true", hs_is_closed_won="true"), {"companies": {"42": "3"}})
    assert {k: row[k] for k in ("id", "source", "name", "amount", "currency", "stage", "pipeline", "deal_type",
                                "owner_id", "account_id", "is_closed", "is_won", "is_deleted")} == {
        "id": "42", "source": "hub", "name": "Big one", "amount": 1500.25, "currency": "EUR", "stage": "won",
        "pipeline": "default", "deal_type": "new_business", "owner_id": "7", "account_id": "3",
        "is_closed": True, "is_won": True, "is_deleted": False}
    assert (row["created_at"], row["closed_at"], row["updated_at"]) == (
        at(2024, 1, 1), at(2024, 2, 1, 10), at(2024, 2, 1, 10))
    assert json.loads(row["extra"]) == {"custom_score": "9"}  # no hs_object_id, no closed flags


def test_closed_flags_prefer_hubspot_then_stage_metadata():
    stages = {"won": StageFlags(True, True), "lost": StageFlags(True, False), "open": StageFlags(False, False)}
    assert closed_flags({"dealstage": "won"}, stages) == {"_is_closed": True, "_is_won": True}
    assert closed_flags({"dealstage": "lost"}, stages) == {"_is_closed": True, "_is_won": False}
    assert closed_flags({"dealstage": "open", "hs_is_closed": "true", "hs_is_closed_won": "false"}, stages) == {
        "_is_closed": True, "_is_won": False}
    assert closed_flags({"dealstage": "unknown"}, stages) == {"_is_closed": False, "_is_won": False}


def test_column_override_maps_a_custom_property(context):
    records = Records(DEALS, {"deal_type": "custom_score", "lead_source": "dealname"}, context)
    [row] = rows(records, deal())
    assert (row["deal_type"], row["lead_source"]) == ("9", "Big one")
    assert "custom_score" not in json.loads(row["extra"] or "{}")


def test_a_bad_value_names_the_object_and_property(context):
    records = Records(DEALS, {}, context)
    with pytest.raises(SourceDataError, match=r"hubspot deals 42: column 'amount': not a valid float: 'lots'"):
        rows(records, deal(amount="lots"))


def test_stage_history_becomes_one_change_per_stage_entered():
    history = [  # newest first, as HubSpot lists it
        {"value": "won", "timestamp": "2024-01-09T00:00:00.000Z"},
        {"value": "qualified", "timestamp": "2024-01-05T12:00:00.500Z"},
        {"value": "proposal", "timestamp": "2024-01-04T00:00:00Z"},
        {"value": "qualified", "timestamp": "2024-01-03T00:00:00Z"},
        {"value": "qualified", "timestamp": "2024-01-02T00:00:00Z"},  # saved again, same stage
        {"value": "new", "timestamp": "2024-01-01T00:00:00Z"},
    ]
    changes = stage_changes({"id": 42, "propertiesWithHistory": {"dealstage": history}}, "dealstage")
    assert [(c["id"], c["stage"], c["entered_at"]) for c in changes] == [
        ("42:1704067200000", "new", at(2024, 1, 1)),
        ("42:1704153600000", "qualified", at(2024, 1, 2)),
        ("42:1704326400000", "proposal", at(2024, 1, 4)),
        ("42:1704456000500", "qualified", at(2024, 1, 5, 12, 0, 0, 500000)),  # a re-entry is kept
        ("42:1704758400000", "won", at(2024, 1, 9)),
    ]
    assert stage_changes({"id": "1", "propertiesWithHistory": {}}, "dealstage") == []


def test_stage_history_rows(context):
    records = Records(DEAL_STAGE_HISTORY, {}, context)
    obj = {"id": "5", "propertiesWithHistory": {"dealstage": [{"value": "a", "timestamp": "2024-03-01T00:00:00Z"}]}}
    [row] = rows(records, obj)
    assert (row["id"], row["deal_id"], row["stage"], row["entered_at"], row["created_at"]) == (
        "5:1709251200000", "5", "a", at(2024, 3, 1), at(2024, 3, 1))


def test_ticket_with_associations_and_first_response(context):
    records = Records(TICKETS, {}, context)
    obj = {"id": "9", "properties": {"hs_pipeline_stage": "4", "hs_ticket_priority": "HIGH", "source_type": "EMAIL",
                                     "createdate": "2024-01-01T00:00:00Z", "closed_date": "2024-01-01T05:30:00Z",
                                     "first_agent_reply_date": "2024-01-01T00:10:00Z", "subject": "Help"}}
    [row] = rows(records, obj, {"companies": {"9": "3"}, "contacts": {}})
    assert (row["status"], row["priority"], row["channel"], row["account_id"], row["contact_id"]) == (
        "4", "HIGH", "EMAIL", "3", None)
    assert (row["resolved_at"], row["first_response_at"]) == (at(2024, 1, 1, 5, 30), at(2024, 1, 1, 0, 10))
    assert json.loads(row["extra"]) == {"subject": "Help"}


def test_contacts_become_leads_only_once_they_reached_the_lead_stage(context):
    records = Records(lifecycle_leads("hs_lifecyclestage_lead_date", "hs_lifecyclestage_customer_date"), {},
                      context)
    base = {"email": "a@b.c", "firstname": " Ada ", "lastname": "Byron", "lifecyclestage": "customer",
            "associatedcompanyid": "77", "lastmodifieddate": "2024-05-01T00:00:00Z"}
    assert rows(records, {"id": "1", "properties": base}) == []
    [lead] = rows(records, {"id": "2", "properties": {**base, "hs_lifecyclestage_lead_date": "2024-01-01T00:00:00Z",
                                                       "hs_lifecyclestage_customer_date": "2024-03-01T00:00:00Z"}})
    assert (lead["name"], lead["created_at"], lead["converted_at"], lead["converted_account_id"], lead["status"]) == (
        "Ada Byron", at(2024, 1, 1), at(2024, 3, 1), "77", "customer")
    [open_lead] = rows(records, {"id": "3", "properties": {**base, "lifecyclestage": "lead",
                                                            "hs_lifecyclestage_lead_date": "2024-01-01T00:00:00Z"}})
    assert (open_lead["converted_at"], open_lead["converted_account_id"]) == (None, None)


def test_primary_association_wins_else_the_first():
    response = {"results": [
        {"from": {"id": "1"}, "to": [{"toObjectId": 5, "associationTypes": [{"typeId": 341, "label": None}]},
                                     {"toObjectId": 6, "associationTypes": [{"typeId": 5, "label": "Primary"}]}]},
        {"from": {"id": "2"}, "to": [{"toObjectId": 8, "associationTypes": [{"typeId": 341, "label": None}]}]},
        {"from": {"id": "3"}, "to": []},
    ]}
    assert primary_ids(response) == {"1": "6", "2": "8"}


def test_pipeline_stages_carry_order_probability_and_flags():
    response = {"results": [{"id": "default", "label": "Sales", "archived": False, "stages": [
        {"id": "won", "label": "Won", "displayOrder": 4, "metadata": {"isClosed": "true", "probability": "1.0"}},
        {"id": "lost", "label": "Lost", "displayOrder": 5, "metadata": {"isClosed": "true", "probability": "0.0"}},
        {"id": "demo", "label": "Demo", "displayOrder": 1, "archived": True,
         "metadata": {"isClosed": "false", "probability": "0.4"}},
    ]}]}
    found = {r["stage"]: r for r in pipeline_stage_records("deals", response)}
    assert {k: (r["id"], r["display_order"], r["probability"], r["is_closed"], r["is_won"], r["is_deleted"])
            for k, r in found.items()} == {
        "won": ("deals:won", 4, 1.0, True, True, False), "lost": ("deals:lost", 5, 0.0, True, False, False),
        "demo": ("deals:demo", 1, 0.4, False, False, True)}
    tickets = {"results": [{"id": "0", "stages": [{"id": "4", "metadata": {"ticketState": "CLOSED"}}]}]}
    [closed] = pipeline_stage_records("tickets", tickets)
    assert (closed["is_closed"], closed["is_won"], closed["probability"]) == (True, False, None)


def test_owner_becomes_a_user_with_primary_team():
    owner = {"id": "7", "email": "x@y.z", "firstName": "Kim", "lastName": None, "userId": 1, "archived": True,
             "teams": [{"name": "B", "primary": False}, {"name": "A", "primary": True}]}
    assert owner_record(owner) == {"id": "7", "email": "x@y.z", "name": "Kim", "team": "A", "is_active": False,
                                   "is_deleted": True, "created_at": None, "updated_at": None, "user_id": 1}
    assert owner_record({"id": "8", "teams": [{"name": "B"}]})["team"] == "B"
