"""The Salesforce connector end to end: `crmkpi sync` against the emulated org over HTTPS."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from crmkpi.cli import cli
from crmkpi.connectors.salesforce import streams
from crmkpi.models import ENTITIES, SyncState
from crmkpi.store import Store
from emulator import Emulator, write_ca_bundle
from salesforce_api import STAGES, Org, build_org, parse_dt, sf_datetime
from storecheck import one_line_error, snapshot, sync_runs, table_rows

PLUGINS = "salesforce,sales_metrics,pipeline_metrics,service_metrics"
TABLES = ("users", "accounts", "contacts", "leads", "deals", "deal_stage_changes", "pipeline_stages", "tickets")
#: The order a sync reads the objects in: those read by Id when referenced last.
READ_ORDER = ("User", "Lead", "Opportunity", "OpportunityHistory", "OpportunityStage", "Case", "Contact", "Account")
SECRET = "00D!super-secret-access-token"


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", PLUGINS)


@pytest.fixture
def org() -> Org:
    return build_org()


@pytest.fixture
def api(org: Org, tls_ca):
    with Emulator(org, tls=tls_ca) as api:
        org.url = api.url
        yield api


class Project:
    """A config pointing at the emulator, and the CLI run against it."""

    def __init__(self, folder: Path, store_url: str, api: Emulator, org: Org, tls_ca, monkeypatch) -> None:
        self.folder, self.store_url, self.api, self.org = folder, store_url, api, org
        self.config = folder / "crmkpi.yaml"
        self.ca = write_ca_bundle(tls_ca, folder)
        org.tokens.add(SECRET)
        monkeypatch.setenv("SF_ACCESS_TOKEN", SECRET)
        self.settings: dict[str, Any] = {
            "type": "salesforce", "instance_url": api.url, "access_token": "${SF_ACCESS_TOKEN}",
            "start_date": "all", "ca_bundle": self.ca.name, "backoff": 0, "bulk_poll_seconds": 0,
        }
        self.write()

    def write(self, **changes: Any) -> None:
        self.settings.update(changes)
        self.settings = {k: v for k, v in self.settings.items() if v is not None}
        self.config.write_text(yaml.safe_dump({"store": self.store_url, "connectors": {"sf": self.settings}}))

    def invoke(self, *args: str):
        return CliRunner().invoke(cli, [*args[:1], "--config", str(self.config), *args[1:]])

    def sync(self, *args: str) -> str:
        result = self.invoke("sync", *args)
        assert result.exit_code == 0, result.output
        return result.stderr

    def fails(self, *args: str) -> str:
        result = self.invoke(*(args or ("sync",)))
        assert SECRET not in result.output
        return one_line_error(result)

    def kpi(self, metric: str, *args: str) -> dict[str, Any]:
        result = self.invoke("run", "--metric", metric, *args, "--format", "json")
        assert result.exit_code == 0, result.output
        [value] = json.loads(result.stdout)
        return value

    def rows(self, table: str) -> dict[str, dict[str, Any]]:
        return table_rows(self.store_url, table)

    def runs(self) -> list[dict[str, Any]]:
        return sync_runs(self.store_url)

    def snapshot(self) -> dict[str, list]:
        return snapshot(self.store_url, TABLES)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated SQLite store, made once: migrating takes longer than a sync of the test org."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    Store(f"sqlite:///{path}").engine.dispose()
    return path


def sqlite_store(migrated: Path, path: Path) -> str:
    shutil.copyfile(migrated, path)
    return f"sqlite:///{path}"


@pytest.fixture
def project(tmp_path: Path, migrated: Path, api: Emulator, org: Org, tls_ca, monkeypatch) -> Project:
    return Project(tmp_path, sqlite_store(migrated, tmp_path / "store.db"), api, org, tls_ca, monkeypatch)


@pytest.fixture
def project_any_store(tmp_path: Path, store_url: str, api: Emulator, org: Org, tls_ca, monkeypatch) -> Project:
    return Project(tmp_path, store_url, api, org, tls_ca, monkeypatch)


def live(org: Org, sobject: str) -> list[dict[str, Any]]:
    return list(org.records[sobject].values())


def window_end(started_at: datetime) -> str:
    """The SOQL literal a sync started at ``started_at`` ends its windows with: rounded up to the second."""
    moment = started_at.replace(tzinfo=UTC)
    whole = moment.replace(microsecond=0)
    return (whole if whole == moment else whole + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_stage_changes(org: Org) -> dict[str, tuple]:
    """Independently: the first history row of each run of equal stages, per opportunity."""
    rows = sorted(live(org, "OpportunityHistory"),
                  key=lambda r: (r["OpportunityId"], parse_dt(r["CreatedDate"]), r["Id"]))
    out, last = {}, None
    for r in rows:
        if (r["OpportunityId"], r["StageName"]) != last:
            out[r["Id"]] = (r["OpportunityId"], r["StageName"], parse_dt(r["CreatedDate"]))
        last = (r["OpportunityId"], r["StageName"])
    return out


# -- the full pull ------------------------------------------------------------------------------------


def test_first_sync_pulls_every_object_with_exact_values(project_any_store: Project, org: Org):
    err = project_any_store.sync()
    p = project_any_store
    counts = {t: len(p.rows(t)) for t in TABLES}
    assert counts == {"users": 6, "accounts": 20, "contacts": 40, "leads": 60, "deals": 80,
                      "deal_stage_changes": len(expected_stage_changes(org)), "pipeline_stages": 6, "tickets": 50}
    assert "OpportunityHistory" in err

    deal_id = next(iter(org.records["Opportunity"]))
    source = org.records["Opportunity"][deal_id]
    deal = p.rows("deals")[deal_id]
    assert deal["source"] == "sf" and deal["name"] == source["Name"] and deal["stage"] == source["StageName"]
    assert deal["amount"] == source["Amount"] and deal["is_closed"] == source["IsClosed"]
    assert deal["is_won"] == source["IsWon"] and deal["deal_type"] == {"New Business": "new_business"}.get(
        source["Type"], source["Type"])  # standard Type values are recoded, others kept
    assert deal["closed_at"] == datetime.fromisoformat(source["CloseDate"]).replace(tzinfo=UTC)
    assert deal["created_at"] == parse_dt(source["CreatedDate"])
    assert deal["updated_at"] == parse_dt(source["LastModifiedDate"])
    assert deal["currency"] is None  # not a multi-currency org: describe has no CurrencyIsoCode
    assert deal["extra"] == {"Probability": source["Probability"],
                             "SystemModstamp": parse_dt(source["SystemModstamp"]).isoformat(timespec="milliseconds")}

    changes = p.rows("deal_stage_changes")
    assert {i: (c["deal_id"], c["stage"], c["entered_at"]) for i, c in changes.items()} == expected_stage_changes(org)

    stages = p.rows("pipeline_stages")
    assert sorted((s["stage"], s["label"], s["probability"], s["is_closed"], s["is_won"], s["display_order"])
                  for s in stages.values()) == sorted(
        (api, label, pct / 100, closed, won, n + 1) for n, (api, label, pct, closed, won) in enumerate(STAGES))

    users = p.rows("users")
    roles = {r["Id"]: r["Name"] for r in live(org, "UserRole")}
    assert {u["id"]: (u["name"], u["email"], u["is_active"], u["team"], u["role"]) for u in users.values()} == {
        r["Id"]: (r["Name"], r["Email"], r["IsActive"], r["Department"], roles.get(r["UserRoleId"]))
        for r in live(org, "User")}

    accounts = p.rows("accounts")
    first = live(org, "Account")[0]
    account = accounts[first["Id"]]
    assert (account["name"], account["region"], account["owner_id"]) == (
        first["Name"], first["BillingCountry"], first["OwnerId"])
    assert "BillingAddress" not in (account["extra"] or {})  # compound fields are not selected
    assert account["extra"]["NumberOfEmployees"] == first["NumberOfEmployees"]

    lead = next(r for r in live(org, "Lead") if r["IsConverted"])
    row = p.rows("leads")[lead["Id"]]
    assert row["converted_at"] == datetime.fromisoformat(lead["ConvertedDate"]).replace(tzinfo=UTC)
    assert (row["converted_account_id"], row["converted_deal_id"], row["lead_source"]) == (
        lead["ConvertedAccountId"], lead["ConvertedOpportunityId"], lead["LeadSource"])
    assert "Photo__c" not in (row["extra"] or {})  # base64 fields are not selected

    case = next(r for r in live(org, "Case") if r["ClosedDate"])
    ticket = p.rows("tickets")[case["Id"]]
    assert (ticket["channel"], ticket["priority"], ticket["status"], ticket["resolved_at"]) == (
        case["Origin"], case["Priority"], case["Status"], parse_dt(case["ClosedDate"]))
    assert SECRET not in err


# -- KPIs from the synced org, against plain Python over the org's records ----------------------------

Y2025 = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def _in_2025(moment: datetime | None) -> bool:
    return moment is not None and Y2025[0] <= moment < Y2025[1]


def _close(deal: dict) -> datetime:
    return datetime.fromisoformat(deal["CloseDate"]).replace(tzinfo=UTC)


def test_kpis_match_values_computed_from_the_org(project: Project, org: Org):
    project.sync()
    deals = [d for d in live(org, "Opportunity") if not d["IsDeleted"]]
    created = [d for d in deals if _in_2025(parse_dt(d["CreatedDate"]))]
    won = [d for d in created if d["IsWon"]]
    assert project.kpi("close_rate", "--period", "2025")["value"] == pytest.approx(len(won) / len(created))

    closed = [d for d in deals if d["IsClosed"] and _in_2025(_close(d))]  # win_rate's cohort: closed in 2025
    assert project.kpi("win_rate", "--period", "2025")["value"] == \
        pytest.approx(sum(d["IsWon"] for d in closed) / len(closed))

    # the cycle ends at the history's entry into the final stage, else on CloseDate in whole days
    entries: dict[tuple, datetime] = {}
    for deal_id, stage, entered in expected_stage_changes(org).values():
        entries[deal_id, stage] = max(entered, entries.get((deal_id, stage), entered))
    cycles = []
    for d in deals:
        created_at, entered = parse_dt(d["CreatedDate"]), entries.get((d["Id"], d["StageName"]))
        days = (entered - created_at).total_seconds() / 86400 if entered else \
            (_close(d).date() - created_at.date()).days
        if d["IsWon"] and _in_2025(_close(d)) and days >= 0:
            cycles.append(days)
    assert project.kpi("sales_cycle_length", "--period", "2025")["value"] == pytest.approx(sum(cycles) / len(cycles))

    closed_stages = {s[0] for s in STAGES if s[3]}
    per_deal: dict[str, list] = {}
    for change_id, (deal_id, stage, entered) in expected_stage_changes(org).items():
        per_deal.setdefault(deal_id, []).append((entered, change_id, stage))
    stays = []
    for changes in per_deal.values():
        changes.sort()
        for (entered, _, stage), (left, _, _) in zip(changes, changes[1:]):
            if stage not in closed_stages and _in_2025(left):
                stays.append((left - entered).total_seconds() / 86400)
    result = project.kpi("stage_length", "--period", "2025")
    assert (result["value"], result["denominator"]) == (pytest.approx(sum(stays) / len(stays)), len(stays))

    resolved = [(parse_dt(c["ClosedDate"]) - parse_dt(c["CreatedDate"])).total_seconds() / 3600
                for c in live(org, "Case") if c["ClosedDate"] and _in_2025(parse_dt(c["ClosedDate"]))]
    result = project.kpi("avg_resolution_time", "--period", "2025")
    assert (result["value"], result["denominator"]) == (pytest.approx(sum(resolved) / len(resolved)), len(resolved))

    by_id = {d["Id"]: d for d in deals}
    leads = [lead for lead in live(org, "Lead") if _in_2025(parse_dt(lead["CreatedDate"]))]

    def customer(lead: dict) -> bool:
        if not lead["ConvertedDate"]:
            return False
        converted = datetime.fromisoformat(lead["ConvertedDate"]).replace(tzinfo=UTC)
        own = by_id.get(lead["ConvertedOpportunityId"])
        return bool(own and own["IsWon"]) or any(
            d["IsWon"] and d["AccountId"] == lead["ConvertedAccountId"] and _close(d) >= converted for d in deals)
    result = project.kpi("lead_conversion_rate", "--period", "2025")
    assert result["value"] == pytest.approx(sum(map(customer, leads)) / len(leads))


# -- incremental syncs -------------------------------------------------------------------------------


def test_second_sync_reads_only_the_changes_and_the_lookback(project_any_store: Project, org: Org):
    p = project_any_store
    p.sync()
    [first] = p.runs()
    window_start = first["started_at"].replace(tzinfo=UTC, microsecond=0) - timedelta(seconds=600)
    # 1% of the org's records change: a deal moves on (a new history row), an account and a case are edited.
    now = datetime.now(UTC) - timedelta(seconds=1)
    deal_id = next(d["Id"] for d in live(org, "Opportunity") if d["StageName"] == "Qualification")
    org.insert("OpportunityHistory", OpportunityId=deal_id, StageName="Proposal", Amount=1.0,
               CreatedDate=sf_datetime(now), SystemModstamp=sf_datetime(now))
    org.touch("Opportunity", deal_id, now, StageName="Proposal", Amount=99000.0)
    account_id = live(org, "Account")[3]["Id"]
    org.touch("Account", account_id, now, Name="Renamed Inc")
    case_id = live(org, "Case")[5]["Id"]
    org.touch("Case", case_id, now, Priority="Urgent")
    before_queries, before_pages = len(org.soql), len(org.returned)

    p.sync()

    literal = window_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    queries = [q for q in org.soql[before_queries:] if not q.startswith("SELECT COUNT()")]
    where = f"WHERE SystemModstamp >= {literal} AND SystemModstamp < {window_end(p.runs()[-1]['started_at'])}"
    assert all(where in q for q in queries), queries
    assert len(queries) == 8
    returned = dict(zip([q.split(" FROM ")[1].split()[0] for q in queries], org.returned[before_pages:]))
    history_rows = sum(1 for r in live(org, "OpportunityHistory") if r["OpportunityId"] == deal_id)
    assert returned == {"User": 0, "Account": 1, "Contact": 0, "Lead": 0, "Opportunity": 1,
                        "OpportunityHistory": history_rows, "OpportunityStage": 0, "Case": 1}
    assert p.rows("deals")[deal_id]["stage"] == "Proposal" and p.rows("deals")[deal_id]["amount"] == 99000.0
    assert p.rows("accounts")[account_id]["name"] == "Renamed Inc"
    assert p.rows("tickets")[case_id]["priority"] == "Urgent"
    assert {i: (c["deal_id"], c["stage"], c["entered_at"]) for i, c in p.rows("deal_stage_changes").items()} \
        == expected_stage_changes(org)
    details = p.runs()[-1]["details"]
    assert details["Opportunity"]["written"] == 1 and details["OpportunityHistory"]["written"] == 1


def test_history_rows_continuing_a_stage_across_syncs_add_no_stage_change(project: Project, org: Org):
    project.sync()
    deal = next(d for d in live(org, "Opportunity") if not d["IsClosed"])
    before = project.rows("deal_stage_changes")
    now = datetime.now(UTC) - timedelta(seconds=1)
    org.insert("OpportunityHistory", OpportunityId=deal["Id"], StageName=deal["StageName"], Amount=5.0,
               CreatedDate=sf_datetime(now), SystemModstamp=sf_datetime(now))
    org.touch("Opportunity", deal["Id"], now, Amount=5.0)
    project.sync()
    assert project.rows("deal_stage_changes").keys() == before.keys()


def test_bulk_path_writes_the_same_rows_as_rest(tmp_path: Path, migrated: Path, api: Emulator, org: Org, tls_ca,
                                                monkeypatch):
    rest = Project(tmp_path, sqlite_store(migrated, tmp_path / "rest.db"), api, org, tls_ca, monkeypatch)
    rest.sync()
    bulk = Project(tmp_path, sqlite_store(migrated, tmp_path / "bulk.db"), api, org, tls_ca, monkeypatch)
    bulk.write(bulk_threshold=5, bulk_page_size=15)
    api.requests.clear()
    bulk.sync()
    assert bulk.snapshot() == rest.snapshot()
    jobs = [r for r in api.requests if r.method == "POST" and r.path.endswith("/jobs/query")]
    assert {r.json()["operation"] for r in jobs} == {"queryAll"}
    bulk_read = [o for o in READ_ORDER if o != "OpportunityHistory"]  # history is always read through REST
    assert [r.json()["query"].split(" FROM ")[1].split()[0] for r in jobs] == bulk_read
    pages = [r for r in api.requests if r.path.endswith("/results")]
    contact_job = next(r for r in jobs if " FROM Contact" in r.json()["query"])
    assert "ORDER BY" not in contact_job.json()["query"]
    assert {r.arg("maxRecords") for r in pages} == {"15"}
    sizes = [len(org.records[o]) for o in bulk_read]
    # each job from its first page, then every Sforce-Locator the emulator handed out
    assert [r.arg("locator") for r in pages] == [
        locator for size in sizes for locator in [None, *(str(n) for n in range(15, size, 15))]]
    assert not org.jobs  # finished jobs are deleted


def test_soft_and_hard_deletes_are_marked_not_removed(project_any_store: Project, org: Org):
    p = project_any_store
    p.sync()
    now = datetime.now(UTC) - timedelta(seconds=1)
    soft = live(org, "Account")[0]["Id"]
    org.soft_delete("Account", soft, now)
    hard = live(org, "Contact")[0]["Id"]
    org.hard_delete("Contact", hard, now)
    p.api.requests.clear()
    p.sync()
    accounts, contacts = p.rows("accounts"), p.rows("contacts")
    assert accounts[soft]["is_deleted"] is True and accounts[soft]["name"] == org.records["Account"][soft]["Name"]
    assert contacts[hard]["is_deleted"] is True and contacts[hard]["email"]  # still there, with its values
    assert sum(a["is_deleted"] for a in accounts.values()) == 1 and sum(c["is_deleted"] for c in contacts.values()) == 1
    swept = [r.path.split("/")[-3] for r in p.api.requests if r.path.endswith("/deleted/")]
    # getDeleted for replicateable objects only (not OpportunityHistory / OpportunityStage)
    assert swept == ["User", "Lead", "Opportunity", "Case", "Contact", "Account"]
    p.sync("--full-refresh")  # reads everything again: the marks stay
    assert p.rows("accounts")[soft]["is_deleted"] is True and p.rows("contacts")[hard]["is_deleted"] is True


# -- faults: the store ends as a clean run leaves it ------------------------------------------------


@pytest.fixture
def clean(tmp_path: Path, migrated: Path, api: Emulator, org: Org, tls_ca, monkeypatch) -> dict[str, list]:
    """The store a clean, uninterrupted sync of the org produces."""
    folder = tmp_path / "clean"
    folder.mkdir()
    reference = Project(folder, sqlite_store(migrated, folder / "store.db"), api, org, tls_ca, monkeypatch)
    reference.sync()
    return reference.snapshot()


def test_503s_are_retried(project: Project, clean: dict, api: Emulator):
    api.fail(503, [{"message": "try later", "errorCode": "SERVER_UNAVAILABLE"}], times=4)
    api.requests.clear()
    project.sync()
    assert project.snapshot() == clean
    assert [r.path for r in api.requests[:5]] == [api.requests[0].path] * 5  # the same call, four times refused


def test_request_limit_exceeded_stops_keeps_committed_rows_and_the_rerun_completes(project: Project, clean: dict,
                                                                                  api: Emulator):
    body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    api.fail(403, body, match=lambda r: " FROM Opportunity " in (r.arg("q") or "") and "COUNT" not in r.arg("q"))
    message = project.fails()
    assert message.startswith("Salesforce API request limit exceeded (REQUEST_LIMIT_EXCEEDED)")
    assert "what was synced so far is committed" in message
    assert len(project.rows("leads")) == 60 and not project.rows("deals")  # objects before Opportunity are kept
    run = project.runs()[-1]
    assert run["status"] == "failed" and run["error"] == message
    project.sync()
    assert project.snapshot() == clean


def test_api_budget_stops_cleanly(project: Project, clean: dict):
    project.write(max_api_calls=9)
    message = project.fails()
    assert message == ("stopped after max_api_calls=9 API calls; what was synced so far is committed and the next "
                       "sync continues from there")
    assert len(project.rows("users")) == 6 and len(project.rows("leads")) == 60
    project.write(max_api_calls=None)
    project.sync()
    assert project.snapshot() == clean


def test_daily_api_share_guard(project: Project, org: Org):
    org.api_used, org.api_limit = 898, 1000
    project.write(max_daily_api_share=0.9)
    message = project.fails()
    assert message.startswith("the org has used 900 of its 1000 daily API requests (max_daily_api_share=0.9)")


def test_sigkill_mid_sync_then_rerun_matches_a_clean_run(project_any_store: Project, clean: dict, api: Emulator,
                                                         org: Org):
    project = project_any_store
    org.page_size = 10
    process = subprocess.Popen([sys.executable, "-m", "crmkpi.cli", "sync", "--config", str(project.config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    lead_pages = []

    def kill_on_third_lead_page(request) -> None:
        if "/query/" in request.path and lead_pages is not None:
            if any(" FROM Lead " in q for q in org.soql[-1:]):
                lead_pages.append(request.path)
                if len(lead_pages) == 3:
                    os.kill(process.pid, signal.SIGKILL)
    api.on_request = kill_on_third_lead_page
    process.wait(timeout=60)
    api.on_request = None
    assert process.returncode == -signal.SIGKILL
    partial = project.rows("leads")
    assert 10 <= len(partial) < 60  # the pages committed before the kill are kept
    assert project.runs()[-1]["status"] == "running"
    engine = create_engine(project.store_url)
    with engine.connect() as conn:
        cursor = conn.execute(select(SyncState.cursor).where(SyncState.stream == "Lead")).scalar_one()
    engine.dispose()
    newest = max(parse_dt(org.records["Lead"][i]["SystemModstamp"]) for i in partial)
    assert datetime.fromisoformat(cursor) == newest  # the cursor of the last committed page
    project.sync()
    assert project.snapshot() == clean


# -- auth --------------------------------------------------------------------------------------------


def test_password_login_and_relogin_when_the_session_expires(project: Project, clean: dict, api: Emulator,
                                                            org: Org, monkeypatch):
    monkeypatch.setenv("SF_PASSWORD", org.credentials["password"])
    monkeypatch.setenv("SF_TOKEN", org.credentials["security_token"])
    project.write(auth="password", instance_url=None, access_token=None, login_url=api.url,
                  username=org.credentials["username"], password="${SF_PASSWORD}", security_token="${SF_TOKEN}")
    expired = []

    def expire_once(request) -> None:
        if not expired and request.path.endswith("/Lead/describe"):
            expired.append(request.path)
            org.expire_sessions()
    api.on_request = expire_once
    output = project.sync()
    assert project.snapshot() == clean
    logins = [r for r in api.requests if r.path.startswith("/services/Soap/u/")]
    assert len(logins) == 2  # the first login and the one after the session expired
    for secret in (org.credentials["password"], org.credentials["security_token"]):
        assert secret not in output and secret not in project.invoke("validate").output


def test_jwt_bearer_login(project: Project, clean: dict, api: Emulator, org: Org, tmp_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (project.folder / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    org.public_key = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    project.write(auth="jwt", instance_url=None, access_token=None, login_url=api.url,
                  username=org.credentials["username"], consumer_key=org.credentials["consumer_key"],
                  private_key_file="server.key")
    project.sync()
    assert project.snapshot() == clean
    [login] = [r for r in api.requests if r.path == "/services/oauth2/token"]
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in login.body.decode()


def test_client_credentials_login(project: Project, clean: dict, api: Emulator, org: Org, monkeypatch):
    monkeypatch.setenv("SF_SECRET", org.credentials["consumer_secret"])
    project.write(auth="client_credentials", instance_url=None, access_token=None, login_url=api.url,
                  consumer_key=org.credentials["consumer_key"], consumer_secret="${SF_SECRET}")
    project.sync()
    assert project.snapshot() == clean


def test_expired_access_token_without_refresh_is_one_line(project: Project, org: Org):
    org.expire_sessions()
    message = project.fails()
    assert message.startswith("the Salesforce access token expired or is invalid (INVALID_SESSION_ID)")
    assert SECRET not in (project.runs()[-1]["error"] or "")


def test_wrong_password_is_one_line(project: Project, api: Emulator, org: Org):
    project.write(auth="password", instance_url=None, access_token=None, login_url=api.url,
                  username=org.credentials["username"], password="wrong-pass", security_token="nope")
    message = project.fails()
    assert message == ("Salesforce login failed: INVALID_LOGIN: Invalid username, password, security token; "
                       "or user locked out.")
    assert "wrong-pass" not in message


# -- bad input ---------------------------------------------------------------------------------------


def test_missing_start_date_is_a_config_error(project: Project):
    project.write(start_date=None)
    assert project.fails() == "connectors.sf.start_date: field required"


def test_missing_credentials_name_what_is_missing(project: Project):
    project.write(auth="password", instance_url=None, access_token=None, username="ana@example.com")
    assert project.fails() == "connectors.sf: auth 'password' needs password, security_token"
    project.write(auth=None)
    assert project.fails() == ("connectors.sf: missing credentials: give instance_url and access_token, or "
                               "username, password and security_token (or see auth: for jwt and client_credentials)")
    project.write(password="${SF_ACCESS_TOKEN}")  # the mode follows from the credentials given
    assert project.fails() == "connectors.sf: auth 'password' needs security_token"


def test_instance_url_must_be_https(project: Project):
    project.write(instance_url="http://127.0.0.1:1")
    assert project.fails() == "connectors.sf.instance_url: must be an https:// URL, got 'http://127.0.0.1:1'"


def test_unreachable_instance_is_one_line(project: Project):
    project.write(instance_url="https://127.0.0.1:1", retries=0)
    assert project.fails().startswith("could not reach Salesforce at 127.0.0.1:1 during describe User")


def test_unknown_field_in_mapping_names_object_and_field(project: Project):
    project.write(objects={"Opportunity": {"columns": {"amount": "Amount_Net__c"}}})
    assert project.fails() == ("connectors.sf.objects.Opportunity.columns.amount: 'Amount_Net__c' is not a field "
                               "of Opportunity (describe does not list it)")


def test_object_tables_are_checked(project: Project):
    project.write(objects={"Renewal__c": {"columns": {"plan": "Name"}}})
    assert project.fails() == "connectors.sf.objects.Renewal__c.table: needed for Renewal__c (which table it maps onto)"
    project.write(objects={"Case": {"table": "orders"}})
    assert project.fails() == "connectors.sf.objects.Case.table: Case always maps onto tickets"
    project.write(objects={"Case": {"table": "nope"}})
    assert project.fails().startswith("connectors.sf.objects.Case.table: unknown table 'nope' (tables: users, ")


def test_unknown_object_is_one_line(project: Project):
    project.write(objects={"Renewal__c": {"table": "subscriptions"}})
    assert project.fails() == ("connectors.sf.objects.Renewal__c: Renewal__c is not visible to this login (NOT_FOUND: "
                               "The requested resource does not exist); check the API name and the login's object "
                               "permissions")


def test_untrusted_certificate_is_one_line(project: Project):
    import trustme

    trustme.CA().cert_pem.write_to_path(str(project.folder / "other-ca.pem"))
    project.write(ca_bundle="other-ca.pem", retries=0)
    assert project.fails().startswith("TLS verification failed for 127.0.0.1:")


def test_ca_bundle_wins_over_requests_ca_bundle_and_the_environment_is_used_without_it(
        project: Project, monkeypatch, clean: dict):
    import trustme

    other = project.folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    project.sync()  # ca_bundle: the emulator's CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(project.ca))
    project.write(ca_bundle=None)
    project.sync()
    assert project.snapshot() == clean


# -- mapping -------------------------------------------------------------------------------------------


def test_custom_object_custom_fields_and_multi_currency(tmp_path: Path, migrated: Path, tls_ca, monkeypatch):
    org = build_org(multi_currency=True)
    org.define("Subscription__c", {"Id": "id", "IsDeleted": "boolean", "Name": "string",
                                   "Account__c": ("reference", "Account"), "MRR__c": "currency",
                                   "Start__c": "date", "Status__c": "picklist", "Seats__c": "double",
                                   "CreatedDate": "datetime", "LastModifiedDate": "datetime",
                                   "SystemModstamp": "datetime"})
    account = next(iter(org.records["Account"]))
    stamp = sf_datetime(datetime(2025, 3, 1, tzinfo=UTC))
    sub = org.insert("Subscription__c", Name="Pro", Account__c=account, MRR__c=490.0, Start__c="2025-03-01",
                     Status__c="active", Seats__c=7.0, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
    with Emulator(org, tls=tls_ca) as api:
        org.url = api.url
        p = Project(tmp_path, sqlite_store(migrated, tmp_path / "store.db"), api, org, tls_ca, monkeypatch)
        p.write(objects={
            "Subscription__c": {"table": "subscriptions", "columns": {"account_id": "Account__c", "plan": "Name",
                                                                      "mrr": "MRR__c", "started_at": "Start__c",
                                                                      "status": "Status__c"}},
            "Account": {"columns": {"segment": "Tier__c", "owner_id": "Owner.Email"}},
            "Case": {"enabled": False},
        })
        p.sync()
    row = p.rows("subscriptions")[sub]
    assert (row["account_id"], row["plan"], row["mrr"], row["status"], row["extra"]) == (
        account, "Pro", 490.0, "active", {"Seats__c": 7.0, "SystemModstamp": "2025-03-01T00:00:00.000+00:00"})
    assert row["started_at"] == datetime(2025, 3, 1, tzinfo=UTC)
    acct = p.rows("accounts")[account]
    source = org.records["Account"][account]
    assert acct["segment"] == source["Tier__c"]
    assert acct["owner_id"] == org.records["User"][source["OwnerId"]]["Email"]  # a relationship field
    assert acct["extra"]["OwnerId"] == source["OwnerId"]
    assert {d["id"]: d["currency"] for d in p.rows("deals").values()} == {
        i: d["CurrencyIsoCode"] for i, d in org.records["Opportunity"].items()}
    assert not p.rows("tickets")


def test_the_standard_mapping_names_what_it_leaves_empty_for_the_metrics(project: Project):
    report = project.sync()
    assert ("  note: Case: no value for tickets.first_response_at (empty in every row), needed by "
            "first_response_time\n") in report
    assert report.count("no value for") == 1  # every other column a loaded metric needs is mapped


def test_a_custom_object_on_deals_without_won_and_closed_is_refused_until_mapped(project: Project, org: Org):
    org.define("Deal__c", {"Id": "id", "IsDeleted": "boolean", "Name": "string", "Amount__c": "currency",
                           "Won__c": "boolean", "Closed__c": "boolean", "CreatedDate": "datetime",
                           "LastModifiedDate": "datetime", "SystemModstamp": "datetime"})
    stamp = sf_datetime(datetime(2025, 3, 1, tzinfo=UTC))
    deal = org.insert("Deal__c", Name="Big", Amount__c=900.0, Won__c=True, Closed__c=True, CreatedDate=stamp,
                      LastModifiedDate=stamp, SystemModstamp=stamp)
    project.write(objects={"Deal__c": {"table": "deals", "columns": {"name": "Name", "amount": "Amount__c"}}})
    assert project.fails() == (
        "Deal__c: no value for deals.is_closed, deals.is_won, so every row would read as is_closed = false in "
        "pipeline_value, sales_cycle_length, sales_velocity, stage_length, win_rate, is_won = false in "
        "avg_deal_size, close_rate, lead_conversion_rate, quota_attainment, sales_cycle_length, sales_velocity, "
        "sales_volume, win_rate; map a source column to each, derive it, or set it as a constant")
    assert deal not in project.rows("deals")
    project.write(objects={"Deal__c": {"table": "deals", "columns": {"name": "Name", "amount": "Amount__c",
                                                                    "is_won": "Won__c", "is_closed": "Closed__c"}}})
    project.sync()
    assert (project.rows("deals")[deal]["is_won"], project.rows("deals")[deal]["is_closed"]) == (True, True)


def test_an_object_too_wide_for_a_rest_url_is_read_through_bulk(tmp_path: Path, migrated: Path, tls_ca, monkeypatch):
    org = build_org()
    wide = {f"Custom_Measure_Number_{n:03}__c": "double" for n in range(700)}  # ~20,000 characters of SELECT
    org.define("Usage__c", {"Id": "id", "IsDeleted": "boolean", "Account__c": ("reference", "Account"),
                            "Amount__c": "currency", **wide, "CreatedDate": "datetime", "LastModifiedDate": "datetime",
                            "SystemModstamp": "datetime"})
    stamp = sf_datetime(datetime(2025, 3, 1, tzinfo=UTC))
    usage = org.insert("Usage__c", Account__c=next(iter(org.records["Account"])), Amount__c=12.5,
                       Custom_Measure_Number_699__c=3.0, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
    with Emulator(org, tls=tls_ca) as api:
        org.url = api.url
        p = Project(tmp_path, sqlite_store(migrated, tmp_path / "store.db"), api, org, tls_ca, monkeypatch)
        p.write(objects={"Usage__c": {"table": "orders", "columns": {"account_id": "Account__c", "amount": "Amount__c"}}})
        err = p.sync()
    assert "sf/Usage__c: 1 read, 1 written\n  note: the SELECT of its 707 fields is too long for a REST URL: " \
           "read through Bulk 2.0\n" in err
    [job] = [r.json()["query"] for r in api.requests if r.method == "POST" and r.path.endswith("/jobs/query")]
    assert job.startswith("SELECT Id, IsDeleted, Account__c, Amount__c, Custom_Measure_Number_000__c") and \
        job.split(" FROM ")[1].startswith("Usage__c")
    assert not [r for r in api.requests if "Usage__c" in (r.arg("q") or "") and "COUNT()" not in r.arg("q")]
    row = p.rows("orders")[usage]
    assert (row["amount"], row["extra"]["Custom_Measure_Number_699__c"]) == (12.5, 3.0)


def test_example_config_validates(monkeypatch):
    for name in ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN"):
        monkeypatch.setenv(name, f"{name.lower()}-from-env")
    config = Path(__file__).parents[2] / "config" / "salesforce.yaml"
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "from-env" not in result.output


# -- resuming --------------------------------------------------------------------------------------


def _states(project: Project) -> dict[str, tuple]:
    engine = create_engine(project.store_url)
    with engine.connect() as conn:
        rows = conn.execute(select(SyncState.stream, SyncState.cursor, SyncState.state)).all()
    engine.dispose()
    return {stream: (cursor, state) for stream, cursor, state in rows}


def test_cursors_end_at_the_sync_start(project: Project):
    project.sync()
    start = project.runs()[-1]["started_at"].replace(tzinfo=UTC)  # exact: the window's end was rounded up
    read_whole = ("User", "OpportunityStage")
    assert _states(project) == {name: (start.isoformat(), {"whole": True} if name in read_whole else None)
                                for name in READ_ORDER}


def test_interrupted_bulk_job_resumes_at_its_locator(project: Project, clean: dict, api: Emulator, org: Org):
    project.write(bulk_threshold=5, bulk_page_size=15)
    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    api.fail(403, limit, match=lambda r: r.path.endswith("/results") and r.arg("locator") == "30")
    project.fails()
    cursor, state = _states(project)["Lead"]  # the first object read with more than two pages
    assert cursor is None and state["locator"] == "30" and state["bulk_job"] in org.jobs
    assert len(project.rows("leads")) == 30  # the two pages committed before the refusal
    api.requests.clear()
    project.sync()
    lead_job = state["bulk_job"]
    lead_calls = [(r.method, r.arg("locator")) for r in api.requests if lead_job in r.path]
    # state, wait, pages 3 and 4
    assert lead_calls == [("GET", None), ("GET", None), ("GET", "30"), ("GET", "45"), ("DELETE", None)]
    assert not any(" FROM Lead" in r.body.decode() for r in api.requests if r.method == "POST")
    assert project.snapshot() == clean


def test_interrupted_stage_history_resumes_after_the_last_whole_opportunity(project: Project, clean: dict,
                                                                            api: Emulator, org: Org):
    org.page_size = 50
    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    api.fail(403, limit, match=lambda r: r.path.endswith("-100") and "OpportunityHistory" in org.soql[-1])
    project.fails()
    _, state = _states(project)["OpportunityHistory"]
    ids = [r["OpportunityId"] for r in sorted(live(org, "OpportunityHistory"),
                                              key=lambda r: (r["OpportunityId"], parse_dt(r["CreatedDate"])))]
    # two pages (100 rows) were committed; the opportunity that row 100 belongs to may continue on page 3
    complete = ids[99] if ids[99] != ids[100] else next(i for i in reversed(ids[:100]) if i != ids[100])
    assert state["after"] == complete
    before = len(org.soql)
    project.sync()
    history = next(q for q in org.soql[before:] if "FROM OpportunityHistory" in q)
    assert f"AND OpportunityId > '{state['after']}' ORDER BY OpportunityId, CreatedDate, Id" in history
    assert project.snapshot() == clean


def test_a_sync_more_than_30_days_later_says_which_deletes_it_cannot_see(project: Project, org: Org):
    project.sync()
    month_ago = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    engine = create_engine(project.store_url)
    with engine.begin() as conn:
        conn.execute(SyncState.__table__.update().where(SyncState.stream == "Contact").values(
            cursor=month_ago.isoformat()))
    engine.dispose()
    gone = live(org, "Contact")[1]["Id"]
    org.hard_delete("Contact", gone, datetime.now(UTC) - timedelta(days=2))
    err = project.sync()
    assert f"  note: getDeleted reaches back 30 days only: hard deletes between " \
           f"{month_ago - timedelta(seconds=600):%Y-%m-%d %H:%M} and " in err
    assert project.rows("contacts")[gone]["is_deleted"] is True  # within the 30 days: still found
    details = project.runs()[-1]["details"]["Contact"]
    assert details["errors"] == [] and details["notes"][0].startswith("getDeleted reaches back 30 days only")


# -- start_date: reference data arrives whatever the window ----------------------------------------

#: A start_date after every user, stage, account and contact of the test org last changed.
MID_2025 = datetime(2025, 7, 1, tzinfo=UTC)


def changed_since(org: Org, sobject: str, moment: datetime) -> list[dict[str, Any]]:
    return [r for r in live(org, sobject) if parse_dt(r["SystemModstamp"]) >= moment]


def rows_of(snapshot_rows: list, ids: set[str]) -> list:
    """The rows of a snapshot table (values as repr) whose id is one of ``ids``."""
    wanted = {repr(i) for i in ids}
    return [row for row in snapshot_rows if dict(row)["id"] in wanted]


def reads_by_id(queries: list[str]) -> list[tuple[str, list[str]]]:
    """(object, ids) of each query by Id among ``queries`` (REST queries and Bulk jobs alike)."""
    return [(q.split(" FROM ")[1].split()[0], re.findall(r"'(\w+)'", q)) for q in queries if " WHERE Id IN (" in q]


def expected_from(org: Org, moment: datetime) -> dict[str, set[str]]:
    """Independently: the ids a sync from ``moment`` must store, table by table."""
    deals, cases, leads = (changed_since(org, o, moment) for o in ("Opportunity", "Case", "Lead"))
    contacts = {c["Id"] for c in changed_since(org, "Contact", moment)} | {c["ContactId"] for c in cases}
    accounts = ({a["Id"] for a in changed_since(org, "Account", moment)} | {r["AccountId"] for r in deals + cases}
                | {org.records["Contact"][i]["AccountId"] for i in contacts}
                | {lead["ConvertedAccountId"] for lead in leads if lead["ConvertedAccountId"]})
    deal_ids = {d["Id"] for d in deals}
    return {"users": set(org.records["User"]), "pipeline_stages": set(org.records["OpportunityStage"]),
            "accounts": accounts, "contacts": contacts, "deals": deal_ids, "leads": {lead["Id"] for lead in leads},
            "tickets": {c["Id"] for c in cases},
            "deal_stage_changes": {i for i, c in expected_stage_changes(org).items() if c[0] in deal_ids}}


def clean_rows_from(moment: datetime, org: Org, clean: dict[str, list]) -> dict[str, list]:
    """What a sync from ``moment`` must store: the rows a sync of everything (``clean``) writes, for those ids."""
    return {table: rows_of(clean[table], ids) for table, ids in expected_from(org, moment).items()}


def test_start_date_still_brings_every_user_and_stage_and_the_accounts_and_contacts_rows_point_at(
        project_any_store: Project, org: Org, clean: dict):
    p = project_any_store
    p.write(start_date=MID_2025.date().isoformat())
    expected = expected_from(org, MID_2025)
    assert not changed_since(org, "User", MID_2025) and not changed_since(org, "Account", MID_2025)
    old_contacts = expected["contacts"] - {c["Id"] for c in changed_since(org, "Contact", MID_2025)}
    old_accounts = expected["accounts"] - {a["Id"] for a in changed_since(org, "Account", MID_2025)}
    assert len(old_contacts) == 15 and len(old_accounts) == 19  # of 40 and 20: what the window leaves out
    since = len(org.soql)

    err = p.sync()

    assert p.snapshot() == clean_rows_from(MID_2025, org, clean)
    deals = p.rows("deals").values()
    assert {d["owner_id"] for d in deals} <= p.rows("users").keys()  # no deal falls into team (none)
    assert {d["account_id"] for d in deals} <= p.rows("accounts").keys()
    # one query by Id per object: the contacts tickets point at, then the accounts all of them point at
    assert reads_by_id(org.soql[since:]) == [("Contact", sorted(old_contacts)), ("Account", sorted(old_accounts))]
    assert ("sf/Contact: 15 read, 15 written\n  note: records outside the window that tickets.contact_id point at, "
            "read by Id: 15\n") in err
    assert ("sf/Account: 19 read, 19 written\n  note: records outside the window that leads.converted_account_id, "
            "deals.account_id, tickets.account_id, contacts.account_id point at, read by Id: 19\n") in err
    assert "sf/User: 6 read, 6 written\n" in err and "sf/OpportunityStage: 6 read, 6 written\n" in err

    since = len(org.soql)
    p.sync()  # nothing is missing any more: no query by Id, and users and stages are read incrementally
    assert reads_by_id(org.soql[since:]) == []
    user_query = next(q for q in org.soql[since:] if " FROM User " in q and "COUNT()" not in q)
    assert " WHERE SystemModstamp >= " in user_query


def test_a_later_sync_reads_by_id_only_what_the_store_lacks_and_names_what_salesforce_lacks(project: Project,
                                                                                          org: Org):
    project.write(start_date=MID_2025.date().isoformat())
    project.sync()
    [unreferenced] = [a for a in live(org, "Account") if a["Id"] not in project.rows("accounts")]
    gone = org.insert("Account", Name="Gone Ltd")
    org.hard_delete("Account", gone, MID_2025)  # deleted for good before any sync saw it
    now = datetime.now(UTC) - timedelta(seconds=1)
    first, second = sorted(project.rows("deals"))[:2]
    org.touch("Opportunity", first, now, AccountId=unreferenced["Id"])  # an old account a deal now points at
    org.touch("Opportunity", second, now, AccountId=gone)
    since = len(org.soql)

    err = project.sync()

    # only these two: not the 19 accounts stored earlier
    assert reads_by_id(org.soql[since:]) == [("Account", sorted([unreferenced["Id"], gone]))]
    assert project.rows("accounts")[unreferenced["Id"]]["name"] == unreferenced["Name"]
    assert gone not in project.rows("accounts") and project.rows("deals")[second]["account_id"] == gone
    notes = ["records outside the window that leads.converted_account_id, deals.account_id, tickets.account_id, "
             "contacts.account_id point at, read by Id: 1",
             "ids in deals.account_id that match no Account this login can read (deleted for good, or hidden by "
             f"sharing rules), so their rows join no accounts row: 1, e.g. {gone}"]
    assert "sf/Account: 1 read, 1 written\n" + "".join(f"  note: {n}\n" for n in notes) in err
    run = project.runs()[-1]
    assert run["status"] == "success" and run["details"]["Account"]["notes"] == notes


def test_reads_by_id_are_cut_to_fit_a_rest_url(project: Project, org: Org, clean: dict, monkeypatch):
    monkeypatch.setattr(streams, "MAX_REST_QUERY", 600)  # room for 15 contact ids, or 13 account ids
    project.write(start_date=MID_2025.date().isoformat())
    since = len(org.soql)
    project.sync()
    reads = [q for q in org.soql[since:] if " WHERE Id IN (" in q]
    assert [(sobject, len(ids)) for sobject, ids in reads_by_id(reads)] == [
        ("Contact", 15), ("Account", 13), ("Account", 6)]
    assert all(len(urlencode({"q": q})) <= 600 for q in reads)
    assert project.snapshot() == clean_rows_from(MID_2025, org, clean)


def test_records_too_wide_for_a_rest_url_are_read_by_id_through_bulk(tmp_path: Path, migrated: Path, api: Emulator,
                                                                     org: Org, tls_ca, monkeypatch):
    for n in range(700):  # ~20,000 characters of SELECT: not one id fits beside it in a REST URL
        name = f"Custom_Measure_Number_{n:03}__c"
        org.schema["Account"][name] = {"name": name, "type": "double", "relationshipName": None, "referenceTo": []}
    everything = Project(tmp_path, sqlite_store(migrated, tmp_path / "all.db"), api, org, tls_ca, monkeypatch)
    everything.sync()
    windowed = Project(tmp_path, sqlite_store(migrated, tmp_path / "windowed.db"), api, org, tls_ca, monkeypatch)
    windowed.write(start_date=MID_2025.date().isoformat())
    api.requests.clear()
    err = windowed.sync()
    jobs = [r.json()["query"] for r in api.requests if r.method == "POST" and r.path.endswith("/jobs/query")]
    assert [(sobject, len(ids)) for sobject, ids in reads_by_id(jobs)] == [("Account", 19)]  # the 15 contacts: REST
    assert ("  note: records outside the window that leads.converted_account_id, deals.account_id, "
            "tickets.account_id, contacts.account_id point at, read by Id: 19\n") in err
    assert not org.jobs  # deleted once read
    expected = expected_from(org, MID_2025)["accounts"]
    assert windowed.snapshot()["accounts"] == rows_of(everything.snapshot()["accounts"], expected)


def test_a_sync_stopped_while_reading_by_id_ends_as_a_clean_run_after_a_rerun(project: Project, org: Org,
                                                                             clean: dict, api: Emulator):
    project.write(start_date=MID_2025.date().isoformat())
    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    api.fail(403, limit, match=lambda r: " FROM Account WHERE Id IN (" in (r.arg("q") or ""))
    assert project.fails().startswith("Salesforce API request limit exceeded (REQUEST_LIMIT_EXCEEDED)")
    # the window is committed with its cursor; the accounts that rows point at are still missing
    start = project.runs()[-1]["started_at"].replace(tzinfo=UTC)
    assert _states(project)["Account"] == (start.isoformat(), None) and not project.rows("accounts")
    project.sync()
    assert project.snapshot() == clean_rows_from(MID_2025, org, clean)


def test_a_store_an_older_version_synced_from_start_date_gets_what_it_missed(project: Project, org: Org,
                                                                            clean: dict):
    project.write(start_date=MID_2025.date().isoformat())
    project.sync()
    # as the older version left it: no user, stage or account older than start_date, cursors without the mark
    engine = create_engine(project.store_url)
    with engine.begin() as conn:
        for table in ("users", "pipeline_stages", "accounts"):
            conn.execute(ENTITIES[table].__table__.delete())
        conn.execute(SyncState.__table__.update().values(state=None))
    engine.dispose()
    project.sync()
    assert project.snapshot() == clean_rows_from(MID_2025, org, clean)
    assert _states(project)["User"][1] == {"whole": True}


# -- the window's end ------------------------------------------------------------------------------


def fix_clock(monkeypatch, moment: datetime) -> None:
    """``crmkpi sync`` starts at ``moment``: its windows end there."""
    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return moment.astimezone(tz)
    monkeypatch.setattr("crmkpi.sync.datetime", Clock)


def test_a_change_in_the_second_the_sync_starts_is_read_by_that_sync(project: Project, org: Org, monkeypatch):
    project.write(lookback_seconds=0)  # nothing re-read: the window's bounds alone must lose nothing
    started = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=600_000)
    case_id, account_id = live(org, "Case")[0]["Id"], live(org, "Account")[0]["Id"]
    org.touch("Case", case_id, started - timedelta(milliseconds=100), Priority="Urgent")  # that second, before it
    fix_clock(monkeypatch, started)
    project.sync()
    assert project.rows("tickets")[case_id]["priority"] == "Urgent"
    assert f"SystemModstamp < {window_end(started)}" in org.soql[-1]
    assert _states(project)["Case"] == (started.isoformat(), None)  # the exact start, not the rounded-up end

    # a change in that second after the sync read the object: the next window, floored, starts before it
    org.touch("Account", account_id, started + timedelta(milliseconds=200), Name="Late Ltd")
    fix_clock(monkeypatch, started + timedelta(seconds=3))
    project.sync()
    assert project.rows("accounts")[account_id]["name"] == "Late Ltd"


# -- objects the login cannot see ------------------------------------------------------------------


def invisible(sobject: str, answer: str, table: str, kept: bool = False, because: str | None = None) -> str:
    """The note of an object skipped because ``because`` (itself by default) is not visible."""
    stored = (f"{table} keep what earlier syncs stored and miss every change since" if kept else
              f"{table} get no rows from it, so KPIs on {table} count none from sf")
    return (f"{because or sobject} is not visible to this login ({answer}): {sobject} not synced; {stored}; grant the "
            f"login read access, or set objects.{sobject}.enabled: false")


NOT_FOUND = "NOT_FOUND: The requested resource does not exist"


def test_an_object_the_org_lacks_is_skipped_with_a_note(project_any_store: Project, org: Org, clean: dict):
    org.hide("Case")  # an org without Service Cloud
    err = project_any_store.sync()
    note = invisible("Case", NOT_FOUND, "tickets")
    assert f"sf/Case: 0 read, 0 written\n  note: {note}\n" in err
    run = project_any_store.runs()[-1]
    assert run["status"] == "success" and run["details"]["Case"]["notes"] == [note]
    assert project_any_store.snapshot() == {**clean, "tickets": []}  # everything else as usual


def test_an_object_the_login_may_no_longer_read_keeps_its_rows_and_says_so(project: Project, api: Emulator,
                                                                          clean: dict):
    project.sync()
    refusal = [{"message": "insufficient access rights on cross-reference id", "errorCode": "INSUFFICIENT_ACCESS"}]
    api.fail(403, refusal, match=lambda r: r.path.endswith("/sobjects/Case/describe"))
    err = project.sync()
    note = invisible("Case", "INSUFFICIENT_ACCESS: insufficient access rights on cross-reference id", "tickets",
                     kept=True)
    assert f"sf/Case: 0 read, 0 written\n  note: {note}\n" in err
    assert project.runs()[-1]["status"] == "success" and project.snapshot() == clean


def test_without_opportunities_their_stage_history_is_skipped_with_a_note_too(project: Project, org: Org,
                                                                            clean: dict):
    org.hide("Opportunity")
    err = project.sync()
    assert f"sf/Opportunity: 0 read, 0 written\n  note: {invisible('Opportunity', NOT_FOUND, 'deals')}\n" in err
    history = invisible("OpportunityHistory", NOT_FOUND, "deal_stage_changes", because="Opportunity")
    assert f"sf/OpportunityHistory: 0 read, 0 written\n  note: {history}\n" in err
    assert project.runs()[-1]["status"] == "success"
    assert project.snapshot() == {**clean, "deals": [], "deal_stage_changes": []}


@pytest.mark.parametrize("named, hidden", [("Case", "Case"), ("OpportunityHistory", "Opportunity")])
def test_an_object_the_config_names_that_the_login_cannot_see_is_an_error(project: Project, org: Org, named: str,
                                                                          hidden: str):
    org.hide(hidden)
    project.write(objects={named: {"enabled": True}})
    message = project.fails()
    assert message == (f"connectors.sf.objects.{named}: {hidden} is not visible to this login ({NOT_FOUND}); "
                       "check the API name and the login's object permissions")
    assert project.runs()[-1]["status"] == "failed" and project.runs()[-1]["error"] == message
