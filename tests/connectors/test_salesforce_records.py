"""Salesforce record normalization: plans from describe, REST/Bulk typing, stage runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmkpi.connector import SyncContext
from crmkpi.errors import ConfigError
from crmkpi.connectors.salesforce.objects import OBJECTS
from crmkpi.connectors.salesforce.records import Coercion, StageRuns, make_plan
from crmkpi.connectors.salesforce.settings import ObjectOptions, SalesforceSettings

SYNCED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def field(name: str, kind: str, relationship: str | None = None, target: str | None = None) -> dict:
    return {"name": name, "type": kind, "relationshipName": relationship, "referenceTo": [target] if target else []}


DESCRIBES = {
    "Opportunity": {"replicateable": True, "fields": [
        field("Id", "id"), field("IsDeleted", "boolean"), field("Name", "string"), field("StageName", "picklist"),
        field("Amount", "currency"), field("IsClosed", "boolean"), field("IsWon", "boolean"),
        field("CloseDate", "date"), field("CreatedDate", "datetime"), field("LastModifiedDate", "datetime"),
        field("OwnerId", "reference", "Owner", "User"), field("Logo__c", "base64"),
        field("Site__c", "location"), field("Score__c", "double"), field("Seats__c", "int")]},
    "User": {"replicateable": True, "fields": [field("Id", "id"), field("Email", "email"),
                                               field("CreatedDate", "datetime")]},
    "OpportunityStage": {"replicateable": False, "fields": [
        field("Id", "id"), field("ApiName", "string"), field("MasterLabel", "string"),
        field("DefaultProbability", "percent"), field("IsClosed", "boolean"), field("IsWon", "boolean"),
        field("SortOrder", "int")]},
}


def context() -> SyncContext:
    settings = SalesforceSettings(auth="session", instance_url="https://x.my.salesforce.com", access_token="t",
                                  start_date="all")
    return SyncContext(name="sf", settings=settings, base_dir=Path("."), synced_at=SYNCED_AT,
                       encoder=lambda kind: json.dumps if kind == "json" else None)


def plan(name: str = "Opportunity", options: ObjectOptions | None = None):
    return make_plan(OBJECTS[name], options, DESCRIBES.__getitem__, context())


def test_plan_selects_plain_fields_and_picks_the_best_cursor():
    p = plan()
    assert p.fields == ["Id", "IsDeleted", "Name", "StageName", "Amount", "IsClosed", "IsWon", "CloseDate",
                        "CreatedDate", "LastModifiedDate", "OwnerId", "Score__c", "Seats__c"]
    assert p.cursor == "LastModifiedDate"  # no SystemModstamp in this describe
    assert p.hard_deletes is True


def test_plan_without_any_timestamp_reads_everything():
    describes = {"OpportunityStage": {"replicateable": False, "fields": [field("Id", "id"),
                                                                         field("MasterLabel", "string")]}}
    p = make_plan(OBJECTS["OpportunityStage"], None, describes.__getitem__, context())
    assert p.cursor is None and p.hard_deletes is False


def test_user_mapping_must_name_known_fields_and_columns():
    with pytest.raises(ConfigError) as caught:
        plan(options=ObjectOptions(columns={"amount": "Amount_Net__c"}))
    where = "connectors.sf.objects.Opportunity"
    assert str(caught.value) == (f"{where}.columns.amount: 'Amount_Net__c' is not a field of Opportunity "
                                 "(describe does not list it)")
    with pytest.raises(ConfigError, match=rf"^{where}.columns.owner_id: 'Owner.Phone' is not a field"):
        plan(options=ObjectOptions(columns={"owner_id": "Owner.Phone"}))
    with pytest.raises(ConfigError, match=rf"^{where}.columns.amount: 'Logo__c' is not a field"):  # base64
        plan(options=ObjectOptions(columns={"amount": "Logo__c"}))
    with pytest.raises(ConfigError, match=rf"^{where}: column 'Score__c': mapped to unknown column 'score'"):
        plan(options=ObjectOptions(columns={"score": "Score__c"}))


def test_relationship_fields_are_selected_and_mapped():
    p = plan(options=ObjectOptions(columns={"owner_id": "Owner.Email"}))
    assert p.fields[-1] == "Owner.Email"
    rest = {"attributes": {}, "Id": "006A", "IsDeleted": False, "OwnerId": "005U", "Owner": {
        "attributes": {"type": "User"}, "Email": "rep@x.io"}}
    row = dict(zip(p.rows.columns, p.rows.build(p.coerce.rest(rest))))
    assert row["owner_id"] == "rep@x.io" and json.loads(row["extra"]) == {"OwnerId": "005U"}
    empty = dict(zip(p.rows.columns, p.rows.build(p.coerce.rest({**rest, "Owner": None}))))
    assert empty["owner_id"] is None


def test_rest_and_bulk_records_become_the_same_row():
    p = plan()
    rest = {"attributes": {"type": "Opportunity"}, "Id": "006A", "IsDeleted": False, "Name": "Big", "StageName":
            "Closed Won", "Amount": 1200, "IsClosed": True, "IsWon": True, "CloseDate": "2025-05-01",
            "CreatedDate": "2025-04-01T10:00:00.000+0000", "LastModifiedDate": "2025-05-01T08:30:00.000+0000",
            "OwnerId": None, "Score__c": 3, "Seats__c": 12}
    bulk = {"Id": "006A", "IsDeleted": "false", "Name": "Big", "StageName": "Closed Won", "Amount": "1200.0",
            "IsClosed": "true", "IsWon": "true", "CloseDate": "2025-05-01", "CreatedDate": "2025-04-01T10:00:00.000Z",
            "LastModifiedDate": "2025-05-01T08:30:00.000Z", "OwnerId": "", "Score__c": "3", "Seats__c": "12"}
    assert p.coerce.rest(rest) == p.coerce.csv(bulk)
    row = dict(zip(p.rows.columns, p.rows.build(p.coerce.csv(bulk))))
    assert (row["id"], row["amount"], row["is_won"], row["is_closed"], row["is_deleted"], row["stage"]) == (
        "006A", 1200.0, True, True, False, "Closed Won")
    assert row["created_at"] == datetime(2025, 4, 1, 10, tzinfo=UTC)
    assert row["closed_at"] == datetime(2025, 5, 1)  # a date: midnight, UTC once the store encodes it
    assert row["currency"] is None  # mapped to CurrencyIsoCode, which only multi-currency orgs describe
    assert json.loads(row["extra"]) == {"Score__c": 3.0, "Seats__c": 12}


def test_coercion_types_by_describe():
    c = Coercion({"N": "int", "F": "float", "B": "bool", "D": "datetime", "S": "str"}, set())
    assert c.csv({"N": "7", "F": "0.5", "B": "false", "D": "2025-01-01T00:00:00.000Z", "S": "", "X": "text"}) == {
        "N": 7, "F": 0.5, "B": False, "D": "2025-01-01T00:00:00.000+00:00", "S": None, "X": "text"}
    assert c.rest({"D": "2025-01-01T02:00:00.000+0200", "F": 2}) == {"D": "2025-01-01T00:00:00.000+00:00", "F": 2.0}


def test_stage_probability_becomes_a_fraction():
    p = plan("OpportunityStage")
    record = p.coerce.rest({"Id": "01J1", "ApiName": "Proposal", "MasterLabel": "Proposal/Price Quote",
                            "DefaultProbability": 50.0, "IsClosed": False, "IsWon": False, "SortOrder": 3})
    OBJECTS["OpportunityStage"].prepare(record)
    row = dict(zip(p.rows.columns, p.rows.build(record)))
    assert (row["stage"], row["label"], row["probability"], row["display_order"]) == (
        "Proposal", "Proposal/Price Quote", 0.5, 3)


def test_stage_runs_keep_the_first_row_of_each_run_and_re_entries():
    rows = [("o1", "Prospecting"), ("o1", "Prospecting"), ("o1", "Qualification"), ("o1", "Prospecting"),
            ("o1", "Prospecting"), ("o2", "Prospecting"), ("o2", "Closed Won"), ("o2", "Closed Won")]
    runs = StageRuns()
    kept = [n for n, (deal, stage) in enumerate(rows) if runs.enters_stage({"OpportunityId": deal, "StageName": stage})]
    assert kept == [0, 2, 3, 5, 6]


@pytest.mark.parametrize(("login", "audience"), [
    ({}, "https://login.salesforce.com"),
    ({"domain": "test"}, "https://test.salesforce.com"),
    ({"domain": "acme.my"}, "https://login.salesforce.com"),
    ({"login_url": "https://acme--uat.sandbox.my.salesforce.com"}, "https://test.salesforce.com"),
    ({"login_url": "https://127.0.0.1:8443/"}, "https://127.0.0.1:8443"),
    ({"domain": "acme.my", "jwt_audience": "https://acme.my.site.com/customers"}, "https://acme.my.site.com/customers"),
])
def test_jwt_audience(login: dict, audience: str):
    settings = SalesforceSettings(auth="jwt", username="u", consumer_key="k", private_key_file="k.pem",
                                  start_date="all", **login)
    assert settings.audience() == audience


def test_settings_name_what_a_login_mode_lacks():
    with pytest.raises(ValueError, match="auth 'jwt' needs consumer_key, private_key_file"):
        SalesforceSettings(auth="jwt", username="u", start_date="all")
    with pytest.raises(ValueError, match="auth 'client_credentials' needs your My Domain"):
        SalesforceSettings(auth="client_credentials", consumer_key="k", consumer_secret="s", start_date="all")
    assert "secret-value" not in repr(SalesforceSettings(auth="session", instance_url="https://x.my.salesforce.com",
                                                         access_token="secret-value", start_date="all"))
