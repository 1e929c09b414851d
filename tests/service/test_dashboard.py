"""The dashboard's pages over HTTP (no browser): the login and its cookie, the query's one-line errors,
a segment filter with no rows, the freshness and job-run panels, escaping, and answers kept until a sync.

The numbers themselves are checked in a real browser against the API (``test_dashboard_browser.py``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from html import unescape

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import KpiProject
from crmkpi.cli import App, cli
from crmkpi.service.api import create_app
from crmkpi.service.commands import job
from crmkpi.service.lifecycle import Heartbeat
from crmkpi.service.scheduler import Scheduler

TOKEN = "tok-7c1e-not-a-real-token"
HOSTILE_TEAM = '<img src=x onerror="alert(1)">'
DEALS = [
    {"id": "d1", "created_at": "2024-01-05T00:00:00Z", "closed_at": "2024-01-20T00:00:00Z", "is_closed": True,
     "is_won": True, "amount": 1000, "owner_id": "u1"},
    {"id": "d2", "created_at": "2024-01-06T00:00:00Z", "closed_at": "2024-01-26T00:00:00Z", "is_closed": True,
     "is_won": False, "amount": 500, "owner_id": "u2"},
    {"id": "d3", "created_at": "2024-01-07T00:00:00Z", "closed_at": "2024-01-27T00:00:00Z", "is_closed": True,
     "is_won": True, "amount": 700, "owner_id": "u2"},
]
USERS = [{"id": "u1", "name": "Ann Lee", "team": "east"}, {"id": "u2", "name": "Bo Chan", "team": HOSTILE_TEAM}]
SETUP = """\
reporting: {default_period: 2024-01}
metrics: {close_rate: {}, sales_volume: {}}
schedules:
  nightly: {cron: "0 2 * * *", sync: [crm], metrics: [close_rate]}
"""


def client_for(project: KpiProject, token: str | None) -> TestClient:
    app = App(debug=False)
    config = app.config(str(project.config))
    scheduler = Scheduler(job(app, config))
    return TestClient(create_app(scheduler.job, scheduler, Heartbeat(15, last_tick=datetime.now(UTC)), token,
                                 recheck=0), follow_redirects=False)


@pytest.fixture
def project(kpi_any_store: KpiProject) -> KpiProject:
    """The test's project on SQLite, and on PostgreSQL when CRMKPI_TEST_POSTGRES_URL is set."""
    kpi_any_store.write("deals", DEALS)
    kpi_any_store.write("users", USERS)
    kpi_any_store.configure(SETUP)
    kpi_any_store.sync()
    return kpi_any_store


@pytest.fixture
def client(project: KpiProject) -> TestClient:
    return client_for(project, TOKEN)


def signed(client: TestClient) -> TestClient:
    client.cookies.set("crmkpi_token", TOKEN)
    return client


def cards(page: str) -> dict[str, str]:
    return dict(re.findall(r'<article class="card" data-metric="([^"]+)" data-value="([^"]*)"', page))


def alert(page: str) -> str:
    return unescape(re.search(r'role="alert">([^<]*)<', page).group(1))


def test_pages_need_the_token_and_the_login_sets_it_as_a_strict_cookie(client: TestClient):
    refused = client.get("/kpi/close_rate", params={"by": "owner"})
    assert (refused.status_code, refused.headers["location"]) == (303, "/login?next=%2Fkpi%2Fclose_rate%3Fby%3Downer")
    wrong = client.post("/login", data={"token": "nope", "next": "/kpi/close_rate?by=owner"})
    assert (wrong.status_code, alert(wrong.text)) == (401, "That is not the API token.")
    assert "set-cookie" not in wrong.headers and TOKEN not in wrong.text
    good = client.post("/login", data={"token": TOKEN, "next": "/kpi/close_rate?by=owner"})
    assert (good.status_code, good.headers["location"]) == (303, "/kpi/close_rate?by=owner")
    cookie = good.headers["set-cookie"]
    assert cookie.startswith(f"crmkpi_token={TOKEN};") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/kpi/close_rate", params={"by": "owner"}).status_code == 200  # the cookie is kept
    client.cookies.clear()
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200  # or the bearer header
    client.cookies.set("crmkpi_token", "stale")
    assert client.get("/").status_code == 303
    out = client.post("/logout")
    assert out.headers["location"] == "/login" and 'crmkpi_token=""' in out.headers["set-cookie"]


@pytest.mark.parametrize("next_path", ["//evil.example/", "https://evil.example/", "/\\evil.example", ""])
def test_the_login_sends_nowhere_but_this_site(client: TestClient, next_path: str):
    answer = client.post("/login", data={"token": TOKEN, "next": next_path})
    assert answer.headers["location"] == "/"


def test_without_a_token_the_dashboard_is_open(project: KpiProject):
    open_client = client_for(project, None)
    page = open_client.get("/")
    assert page.status_code == 200 and "Log out" not in page.text
    assert cards(page.text) == {"close_rate": "0.6666666666666666", "sales_volume": "1700.0"}


def test_a_page_loads_nothing_and_runs_nothing(client: TestClient):
    page = signed(client).get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'none'" in policy
    assert "<script" not in page.text and not re.search(r'(src|href)="(https?:)?//', page.text)
    assert page.headers["cache-control"] == "no-store"


def test_a_hostile_team_name_is_text(client: TestClient):
    page = signed(client).get("/kpi/close_rate", params={"by": "team"}).text
    assert HOSTILE_TEAM not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


@pytest.mark.parametrize("query, status, problem", [
    ({"period": "2024-13"}, 422, "period '2024-13': expected "),
    ({"grain": "hour"}, 422, "grain 'hour': expected one of day, week, month, quarter, year"),
    ({"segment": "team"}, 422, "segment 'team': expected DIMENSION=VALUE, e.g. team=East"),
    ({"segment": "colour=red"}, 422, "--segment 'colour': no column, alias or custom field has that name"),
    ({"by": "tem"}, 422, "by 'tem': not a dimension; did you mean 'team'"),
    ({"sort": "size"}, 422, "sort 'size': expected one of value, label, previous, year_ago"),
    ({"order": "up"}, 422, "order 'up': expected asc or desc"),
    ({"explain": "u1"}, 422, "explain 'u1': expected DIMENSION=VALUE"),
])
def test_a_wrong_query_is_one_line_on_the_page(client: TestClient, query: dict, status: int, problem: str):
    page = signed(client).get("/kpi/close_rate", params=query)
    assert page.status_code == status and alert(page.text).startswith(problem), alert(page.text)
    assert "\n" not in alert(page.text)


def test_an_unknown_kpi_is_404_with_its_name(client: TestClient):
    page = signed(client).get("/kpi/close_rat")
    assert (page.status_code, alert(page.text)) == (404, "unknown metric 'close_rat'")


def test_a_segment_without_rows_says_so_instead_of_a_zero(client: TestClient):
    page = signed(client).get("/", params={"segment": "team=west"}).text
    assert cards(page) == {"close_rate": "", "sales_volume": ""}
    assert page.count("no team=west rows in 2024-01") == 2
    east = signed(client).get("/", params={"segment": "team=east"}).text
    assert cards(east) == {"close_rate": "1.0", "sales_volume": "1000.0"}  # d1, Ann Lee's


def test_the_breakdown_sorts_and_explains_a_cell(client: TestClient):
    page = signed(client).get("/kpi/sales_volume", params={"by": "owner", "sort": "label", "order": "asc"}).text
    assert re.findall(r'<th scope="row">([^<]+)</th><td class="num"', page) == ["Ann Lee", "Bo Chan"]
    by_value = signed(client).get("/kpi/sales_volume", params={"by": "owner"}).text
    assert re.findall(r'<tr data-segment="[^"]*" data-value="([^"]*)"', by_value) == ["1000.0", "700.0"]
    explained = signed(client).get("/kpi/close_rate", params={"by": "owner", "explain": "owner=u2"}).text
    assert re.search(r'class="value-line" data-value="([^"]*)"', explained).group(1) == "0.5"
    assert "Explain: 2024-01, owner=Bo Chan" in unescape(explained)
    assert "Close rate: 50.0% = 1 / 2" in unescape(explained)


def test_freshness_and_job_runs(project: KpiProject, client: TestClient):
    ran = CliRunner().invoke(cli, ["jobs", "run", "nightly", "--config", str(project.config)])
    assert ran.exit_code == 0, ran.output
    project.write("deals", [*DEALS, {**DEALS[0], "id": "d9", "created_at": "not-a-date"}])
    assert project.invoke("sync").exit_code != 0
    page = unescape(signed(client).get("/").text)
    freshness = re.search(r'<tr data-connector="crm">(.*?)</tr>', page).group(1)
    assert re.search(r'data-last-success="\d{4}-\d\d-\d\dT', freshness) and "failed" in freshness
    assert "deals.csv" in freshness and "not-a-date" in freshness  # the latest sync's error, beside the last good one
    assert re.search(r'<tr data-status="success"><th scope="row">nightly</th>', page)


def test_a_page_is_kept_until_a_sync_changes_the_store(project: KpiProject, client: TestClient, monkeypatch):
    from crmkpi.service.web import views

    computed = []
    real = views.overview
    monkeypatch.setattr(views, "overview", lambda *args: computed.append(1) or real(*args))
    first = signed(client).get("/").text
    assert signed(client).get("/").text == first and len(computed) == 1  # kept
    project.write("deals", [*DEALS, {**DEALS[0], "id": "d4", "amount": 300}])
    project.sync()
    deadline = time.monotonic() + 10  # the store's version is read again in the background: seen soon after
    while cards(signed(client).get("/").text)["sales_volume"] != "2000.0":
        assert time.monotonic() < deadline, "the page never showed the synced deal"
        time.sleep(0.05)
    assert len(computed) == 2


def test_over_https_the_cookie_is_secure(project: KpiProject):
    https = client_for(project, TOKEN)
    https.base_url = https.base_url.copy_with(scheme="https")
    cookie = https.post("/login", data={"token": TOKEN, "next": "/"}).headers["set-cookie"]
    assert "Secure" in cookie
    plain = client_for(project, TOKEN).post("/login", data={"token": TOKEN, "next": "/"}).headers["set-cookie"]
    assert "Secure" not in plain
