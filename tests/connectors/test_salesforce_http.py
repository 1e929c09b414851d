"""The Salesforce client and streams at the HTTP level, with `responses` mocking requests."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from crmkpi.connector import Checkpoint, SyncContext
from crmkpi.errors import ConnectorError
from crmkpi.connectors.salesforce import bulk
from crmkpi.connectors.salesforce.client import SalesforceClient, SalesforceLimitError
from crmkpi.connectors.salesforce.objects import OBJECTS
from crmkpi.connectors.salesforce.settings import SalesforceSettings
from crmkpi.connectors.salesforce.streams import ObjectStream, References

INSTANCE = "https://acme.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v59.0"
SYNCED_AT = datetime(2026, 3, 10, 12, 0, 30, 500000, tzinfo=UTC)
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def settings(**changes) -> SalesforceSettings:
    values = {"auth": "session", "instance_url": INSTANCE, "access_token": "tok-1", "start_date": "2025-01-01",
              "backoff": 0, "bulk_poll_seconds": 0, **changes}
    return SalesforceSettings(**values)


def client(**changes) -> SalesforceClient:
    return SalesforceClient(settings(**changes), Path("."), "sf")


def query_of(call) -> str:
    return parse_qs(urlsplit(call.request.url).query)["q"][0]


def describe(name: str, fields: dict[str, str], replicateable: bool = True) -> dict:
    return {"name": name, "replicateable": replicateable,
            "fields": [{"name": f, "type": t, "relationshipName": None, "referenceTo": []} for f, t in fields.items()]}


CONTACT = describe("Contact", {"Id": "id", "IsDeleted": "boolean", "Name": "string", "Email": "email",
                               "AccountId": "string", "CreatedDate": "datetime", "LastModifiedDate": "datetime",
                               "SystemModstamp": "datetime", "MailingAddress": "address"})


def contact(n: int, stamp: str) -> dict:
    return {"attributes": {"type": "Contact"}, "Id": f"003{n}", "IsDeleted": False, "Name": f"C {n}",
            "Email": f"c{n}@x.io", "AccountId": None, "CreatedDate": stamp, "LastModifiedDate": stamp,
            "SystemModstamp": stamp}


def context(**changes) -> SyncContext:
    encoder = lambda kind: json.dumps if kind == "json" else None  # noqa: E731 - plain Python values
    return SyncContext(name="sf", settings=settings(**changes), base_dir=Path("."), synced_at=SYNCED_AT,
                       encoder=encoder)


def stream(**changes) -> ObjectStream:
    ctx = context(**changes)
    return ObjectStream(SalesforceClient(ctx.settings, Path("."), "sf"), OBJECTS["Contact"], None, ctx.settings, ctx,
                        References())


@responses.activate
def test_query_pages_follow_next_records_url():
    responses.get(f"{DATA}/queryAll/", json={"totalSize": 3, "done": False, "records": [{"Id": "1"}, {"Id": "2"}],
                                             "nextRecordsUrl": "/services/data/v59.0/query/01gX-2"})
    responses.get(f"{DATA}/query/01gX-2", json={"totalSize": 3, "done": True, "records": [{"Id": "3"}]})
    pages = list(client().query_pages("SELECT Id FROM Contact"))
    assert pages == [[{"Id": "1"}, {"Id": "2"}], [{"Id": "3"}]]
    assert query_of(responses.calls[0]) == "SELECT Id FROM Contact"
    assert [c.request.headers["Authorization"] for c in responses.calls] == ["Bearer tok-1"] * 2


@responses.activate
def test_incremental_window_cursor_checkpoints_and_get_deleted():
    responses.get(f"{DATA}/sobjects/Contact/describe", json=CONTACT)
    responses.get(f"{DATA}/queryAll/", json={"totalSize": 2, "done": True, "records": []},
                  match=[responses.matchers.query_param_matcher(
                      {"q": "SELECT COUNT() FROM Contact WHERE SystemModstamp >= 2026-03-10T09:50:00Z "
                            "AND SystemModstamp < 2026-03-10T12:00:31Z"})])
    responses.get(f"{DATA}/queryAll/", json={
        "totalSize": 2, "done": False, "nextRecordsUrl": "/services/data/v59.0/query/01g-1",
        "records": [contact(1, "2026-03-10T10:00:00.000+0000")]})
    responses.get(f"{DATA}/query/01g-1", json={"totalSize": 2, "done": True,
                                               "records": [contact(2, "2026-03-10T11:00:00.000+0000")]})
    responses.get(f"{DATA}/sobjects/Contact/deleted/", json={
        "deletedRecords": [{"id": "003gone", "deletedDate": "2026-03-10T11:30:00.000+0000"}],
        "earliestDateAvailable": "2026-02-10T00:00:00.000+0000", "latestDateCovered": "2026-03-10T12:00:00.000+0000"})
    s = stream()
    items = list(s.read("2026-03-10T10:00:00+00:00", None))
    queries = [query_of(c) for c in responses.calls if "/queryAll/" in c.request.url]
    assert queries[1] == ("SELECT Id, IsDeleted, Name, Email, AccountId, CreatedDate, LastModifiedDate, SystemModstamp "
                          "FROM Contact WHERE SystemModstamp >= 2026-03-10T09:50:00Z AND SystemModstamp < "
                          "2026-03-10T12:00:31Z ORDER BY SystemModstamp, Id")
    checkpoints = [i for i in items if isinstance(i, Checkpoint)]
    # each page moves the cursor to its last record; at the end it is the sync's exact start (12:00:30.5): the
    # window's end was rounded up to 12:00:31, so changes made in that second before the sync are in
    assert [c.cursor for c in checkpoints] == ["2026-03-10T10:00:00+00:00", "2026-03-10T11:00:00.000+00:00",
                                               "2026-03-10T12:00:30.500000+00:00"]
    assert checkpoints[-1].deleted == ("003gone",)
    deleted_url = next(c.request.url for c in responses.calls if "/deleted/" in c.request.url)
    assert parse_qs(urlsplit(deleted_url).query) == {"start": ["2026-03-10T09:50:00+00:00"],
                                                     "end": ["2026-03-10T12:00:30+00:00"]}
    assert s.stats.read == 2


@responses.activate
def test_a_count_that_times_out_sends_the_read_through_bulk():
    responses.get(f"{DATA}/sobjects/Contact/describe", json=CONTACT)
    responses.get(f"{DATA}/queryAll/", status=400,
                  json=[{"message": "Your query request was running for too long.", "errorCode": "QUERY_TIMEOUT"}])
    responses.post(f"{DATA}/jobs/query", json={"id": "750J", "state": "UploadComplete"})
    responses.get(f"{DATA}/jobs/query/750J", json={"id": "750J", "state": "JobComplete"})
    responses.get(f"{DATA}/jobs/query/750J/results", headers={"Sforce-Locator": "null"},
                  body="Id,IsDeleted,Name,Email,AccountId,CreatedDate,LastModifiedDate,SystemModstamp\n"
                       "0031,false,A,,,2026-03-01T00:00:00.000Z,2026-03-01T00:00:00.000Z,2026-03-01T00:00:00.000Z\n")
    responses.delete(f"{DATA}/jobs/query/750J", status=204)
    s = stream()
    items = list(s.read(None, None))
    assert [len(i) for i in items if not isinstance(i, Checkpoint)] == [1]
    assert items[-1] == Checkpoint(cursor="2026-03-10T12:00:30.500000+00:00")
    assert s.stats.notes == ["Salesforce timed out counting the changes (QUERY_TIMEOUT): read through Bulk 2.0"]


@responses.activate
def test_other_count_errors_still_fail_in_one_line():
    responses.get(f"{DATA}/sobjects/Contact/describe", json=CONTACT)
    responses.get(f"{DATA}/queryAll/", status=400,
                  json=[{"message": "unexpected token: FORM", "errorCode": "MALFORMED_QUERY"}])
    with pytest.raises(ConnectorError, match="^Salesforce error 400 during a count query: MALFORMED_QUERY: "
                                             "unexpected token: FORM$"):
        list(stream().read(None, None))


@responses.activate
def test_get_deleted_reaches_back_30_days_and_says_so():
    responses.get(f"{DATA}/sobjects/Contact/describe", json=CONTACT)
    responses.get(f"{DATA}/queryAll/", json={"totalSize": 0, "done": True, "records": []})
    responses.get(f"{DATA}/sobjects/Contact/deleted/", json={"deletedRecords": [], "latestDateCovered": None})
    s = stream()
    list(s.read("2025-06-01T00:00:00+00:00", None))
    start = parse_qs(urlsplit(next(c.request.url for c in responses.calls if "/deleted/" in c.request.url)).query)
    oldest = SYNCED_AT - timedelta(days=30) + timedelta(minutes=5)
    assert datetime.fromisoformat(start["start"][0]) == oldest.replace(microsecond=0)
    assert s.stats.errors == []
    assert s.stats.notes[0].startswith("getDeleted reaches back 30 days only: hard deletes between "
                                       "2025-05-31 23:50 and 2026-02-08 12:05 UTC cannot be detected")
    assert s.stats.skipped == 0


@responses.activate
def test_expired_session_logs_in_again_with_client_credentials():
    responses.post("https://acme.my.salesforce.com/services/oauth2/token",
                   json={"access_token": "tok-A", "instance_url": INSTANCE})
    responses.post("https://acme.my.salesforce.com/services/oauth2/token",
                   json={"access_token": "tok-B", "instance_url": INSTANCE})
    responses.get(f"{DATA}/queryAll/", status=401, json=EXPIRED)
    responses.get(f"{DATA}/queryAll/", json={"totalSize": 0, "done": True, "records": []})
    c = client(auth="client_credentials", consumer_key="ck", consumer_secret="cs", domain="acme.my",
               instance_url=None, access_token=None)
    assert list(c.query_pages("SELECT Id FROM Lead")) == [[]]
    queries = [call.request for call in responses.calls if "/queryAll/" in call.request.url]
    assert [r.headers["Authorization"] for r in queries] == ["Bearer tok-A", "Bearer tok-B"]
    token_call = responses.calls[0].request
    assert token_call.body == "grant_type=client_credentials"
    assert token_call.headers["Authorization"] == "Basic Y2s6Y3M="  # ck:cs


@responses.activate
def test_expired_access_token_without_login_is_a_clear_error():
    responses.get(f"{DATA}/queryAll/", status=401, json=EXPIRED)
    with pytest.raises(ConnectorError) as caught:
        list(client().query_pages("SELECT Id FROM Lead"))
    assert str(caught.value).startswith("the Salesforce access token expired or is invalid (INVALID_SESSION_ID); ")
    assert "tok-1" not in str(caught.value)


@responses.activate
def test_request_limit_exceeded_is_a_limit_error():
    responses.get(f"{DATA}/queryAll/", status=403,
                  json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    with pytest.raises(SalesforceLimitError, match=r"^Salesforce API request limit exceeded"):
        client().count("SELECT COUNT() FROM Lead")


@responses.activate
def test_other_refusals_name_the_error_code():
    responses.get(f"{DATA}/queryAll/", status=403,
                  json=[{"message": "Insufficient\nprivileges", "errorCode": "INSUFFICIENT_ACCESS"}])
    with pytest.raises(ConnectorError) as caught:
        client().count("SELECT COUNT() FROM Lead")
    assert str(caught.value) == "Salesforce refused a count query: INSUFFICIENT_ACCESS: Insufficient privileges"


@responses.activate
def test_503_is_retried_then_succeeds():
    responses.get(f"{DATA}/queryAll/", status=503, body="unavailable")
    responses.get(f"{DATA}/queryAll/", status=503, body="unavailable")
    responses.get(f"{DATA}/queryAll/", json={"totalSize": 7, "done": True, "records": []})
    assert client().count("SELECT COUNT() FROM Lead") == 7
    assert len(responses.calls) == 3


@responses.activate
def test_503_beyond_the_retries_is_one_line():
    for _ in range(3):
        responses.get(f"{DATA}/queryAll/", status=503, body="unavailable")
    with pytest.raises(ConnectorError) as caught:
        client(retries=2).count("SELECT COUNT() FROM Lead")
    assert str(caught.value) == "Salesforce error 503 during a count query: UNKNOWN: unavailable"
    assert len(responses.calls) == 3


@responses.activate
def test_api_budget_counts_requests():
    responses.get(f"{DATA}/queryAll/", json={"totalSize": 1, "done": True, "records": []},
                  headers={"Sforce-Limit-Info": "api-usage=10/15000"})
    c = client(max_api_calls=2)
    c.count("SELECT COUNT() FROM Lead")
    c.count("SELECT COUNT() FROM Lead")
    with pytest.raises(SalesforceLimitError, match=r"^stopped after max_api_calls=2 API calls"):
        c.count("SELECT COUNT() FROM Lead")
    assert len(responses.calls) == 2 and c.session.api_usage == (10, 15000)


@responses.activate
def test_bulk_job_polls_follows_locators_and_refreshes_the_session():
    responses.post("https://login.salesforce.com/services/Soap/u/59.0", body=(
        "<?xml version='1.0'?><Envelope><Body><loginResponse><result><serverUrl>"
        f"{INSTANCE}/services/Soap/u/59.0/00D</serverUrl><sessionId>tok-{{n}}</sessionId></result>"
        "</loginResponse></Body></Envelope>"))
    responses.post(f"{DATA}/jobs/query", json={"id": "750J", "state": "UploadComplete"})
    responses.get(f"{DATA}/jobs/query/750J", json={"id": "750J", "state": "InProgress"})
    responses.get(f"{DATA}/jobs/query/750J", json={"id": "750J", "state": "JobComplete"})
    responses.get(f"{DATA}/jobs/query/750J/results", body='"Id","Name"\n"1","A, Inc"\n"2",""\n',
                  headers={"Sforce-Locator": "MjAw", "Sforce-NumberOfRecords": "2"})
    responses.get(f"{DATA}/jobs/query/750J/results", status=401, json=EXPIRED)
    responses.get(f"{DATA}/jobs/query/750J/results", body='"Id","Name"\n"3","C\nline two"\n',
                  headers={"Sforce-Locator": "null", "Sforce-NumberOfRecords": "1"})
    c = client(auth="password", username="u@x.io", password="pw", security_token="st", instance_url=None,
               access_token=None)
    job = bulk.start_job(c, "SELECT Id, Name FROM Account")
    bulk.wait_for(c, job)
    pages = [(list(rows), following) for rows, following in bulk.result_pages(c, job, None, 500)]
    assert pages == [([{"Id": "1", "Name": "A, Inc"}, {"Id": "2", "Name": ""}], "MjAw"),
                     ([{"Id": "3", "Name": "C\nline two"}], None)]
    created = json.loads(next(call.request.body for call in responses.calls if call.request.method == "POST"
                              and call.request.url.endswith("/jobs/query")))
    assert created == {"operation": "queryAll", "query": "SELECT Id, Name FROM Account", "columnDelimiter": "COMMA",
                       "lineEnding": "LF"}
    results = [parse_qs(urlsplit(call.request.url).query) for call in responses.calls if "/results" in call.request.url]
    assert results == [{"maxRecords": ["500"]}, {"maxRecords": ["500"], "locator": ["MjAw"]},
                       {"maxRecords": ["500"], "locator": ["MjAw"]}]
    logins = [call for call in responses.calls if "/Soap/" in call.request.url]
    assert len(logins) == 2  # the first login and the one after the 401 on a result page


@responses.activate
def test_bulk_results_are_read_gzipped_and_without_nul_bytes():
    body = '"Id","Name"\n"1","A\x00cme"\n"2","B, \x00Inc"\n'.encode()
    responses.get(f"{DATA}/jobs/query/750J/results", body=gzip.compress(body),
                  headers={"Sforce-Locator": "null", "Content-Encoding": "gzip"})
    pages = [(list(rows), following) for rows, following in bulk.result_pages(client(), "750J", None, 500)]
    assert pages == [([{"Id": "1", "Name": "Acme"}, {"Id": "2", "Name": "B, Inc"}], None)]


@responses.activate
def test_bulk_resume_continues_a_finished_job_at_its_locator():
    responses.get(f"{DATA}/sobjects/Contact/describe", json=CONTACT)
    responses.get(f"{DATA}/jobs/query/750J", json={"id": "750J", "state": "JobComplete"})
    responses.get(f"{DATA}/jobs/query/750J/results",
                  body="Id,IsDeleted,Name,Email,AccountId,CreatedDate,LastModifiedDate,SystemModstamp\n"
                       "0039,false,Z,,,2026-03-01T00:00:00.000Z,2026-03-01T00:00:00.000Z,2026-03-01T00:00:00.000Z\n",
                  headers={"Sforce-Locator": "null", "Sforce-NumberOfRecords": "1"})
    responses.delete(f"{DATA}/jobs/query/750J", status=204)
    state = {"bulk_job": "750J", "locator": "NDAw", "window_end": "2026-03-09T00:00:00+00:00"}
    items = list(stream().read(None, state))
    assert [c.request.method for c in responses.calls if "/jobs/" in c.request.url] == ["GET", "GET", "GET", "DELETE"]
    assert "locator=NDAw" in next(c.request.url for c in responses.calls if "/results" in c.request.url)
    assert items[-1] == Checkpoint(cursor="2026-03-09T00:00:00+00:00")  # the window the job was started for
    [row] = items[0]
    assert row[:2] == ("sf", SYNCED_AT)


@responses.activate
def test_failed_bulk_job_is_one_line():
    responses.post(f"{DATA}/jobs/query", json={"id": "750F", "state": "UploadComplete"})
    responses.get(f"{DATA}/jobs/query/750F", json={"id": "750F", "state": "Failed",
                                                   "errorMessage": "INVALID_FIELD: No such column"})
    c = client()
    with pytest.raises(ConnectorError, match=r"^Bulk 2.0 job 750F ended Failed: INVALID_FIELD: No such column$"):
        bulk.wait_for(c, bulk.start_job(c, "SELECT Nope FROM Account"))


@responses.activate
def test_waiting_for_a_bulk_job_reports_its_progress():
    responses.get(f"{DATA}/jobs/query/750J", json={"id": "750J", "state": "InProgress", "numberRecordsProcessed": 0})
    responses.get(f"{DATA}/jobs/query/750J", json={"id": "750J", "state": "InProgress",
                                                   "numberRecordsProcessed": 120000})
    responses.get(f"{DATA}/jobs/query/750J", json={"id": "750J", "state": "JobComplete",
                                                   "numberRecordsProcessed": 250000})
    heard: list[str] = []
    bulk.wait_for(client(), "750J", heard.append)
    assert heard == ["Bulk 2.0 job 750J InProgress, 0 records processed",
                     "Bulk 2.0 job 750J InProgress, 120,000 records processed",
                     "Bulk 2.0 job 750J JobComplete, 250,000 records processed"]
