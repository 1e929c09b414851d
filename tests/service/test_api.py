"""The HTTP API of ``crmkpi serve``: health, Prometheus metrics, the JSON API and its token."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import KpiProject
from crmkpi.cli import App, cli
from crmkpi.service.api import create_app
from crmkpi.service.commands import job
from crmkpi.service.lifecycle import Heartbeat
from crmkpi.service.scheduler import Scheduler

# January 2024: 2 deals created, both closed (1 won) in 15 and 20 days -> close rate 0.5, cycle 17.5 days;
# won revenue 1000 USD.
DEALS = [
    {"id": "d1", "created_at": "2024-01-05T00:00:00Z", "closed_at": "2024-01-20T00:00:00Z", "is_closed": True,
     "is_won": True, "amount": 1000, "owner_id": "u1"},
    {"id": "d2", "created_at": "2024-01-06T00:00:00Z", "closed_at": "2024-01-26T00:00:00Z", "is_closed": True,
     "is_won": False, "amount": 500, "owner_id": "u2"},
]
TOKEN = "tok-3f9a-not-a-real-token"


@pytest.fixture
def project(kpi_any_store: KpiProject, monkeypatch) -> KpiProject:
    monkeypatch.setenv("CRMKPI_TEST_TOKEN", TOKEN)
    kpi_any_store.write("deals", DEALS)
    kpi_any_store.configure("reporting: {default_period: 2024-01}\nservice: {api_token: '${CRMKPI_TEST_TOKEN}'}\n")
    kpi_any_store.sync()
    return kpi_any_store


@pytest.fixture
def client(project: KpiProject) -> TestClient:
    app = App(debug=False)
    config = app.config(str(project.config))
    heartbeat = Heartbeat(15, last_tick=datetime.now(UTC))
    scheduler = Scheduler(job(app, config))
    made = TestClient(create_app(scheduler.job, scheduler, heartbeat, config.service.api_token.get_secret_value()))
    made.heartbeat = heartbeat
    yield made
    scheduler.job.store.engine.dispose()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_health_is_open_and_names_what_is_wrong(client: TestClient):
    healthy = client.get("/health")
    assert healthy.status_code == 200
    body = healthy.json()
    assert (body["status"], body["scheduler"]["alive"], body["store"]) == ("ok", True, {"reachable": True})
    assert body["connectors"]["crm"]["last_success"] is not None
    client.heartbeat.last_tick = datetime.now(UTC) - timedelta(minutes=5)  # the loop stalled
    stalled = client.get("/health")
    assert (stalled.status_code, stalled.json()["status"], stalled.json()["scheduler"]["alive"]) == (
        503, "unhealthy", False)


def test_the_api_needs_the_token(client: TestClient):
    assert client.get("/api/v1/metrics").status_code == 401
    wrong = client.get("/api/v1/metrics", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()) == (
        401, {"detail": "a valid bearer token is required (Authorization: Bearer <token>)"})
    assert TOKEN not in wrong.text
    assert client.get("/api/v1/metrics", headers=AUTH).status_code == 200


def test_catalogue_and_unknown_metric(client: TestClient):
    catalogue = {m["id"]: m for m in client.get("/api/v1/metrics", headers=AUTH).json()}
    assert (catalogue["close_rate"]["unit"], catalogue["close_rate"]["direction"]) == ("ratio", "higher")
    assert [p["name"] for p in catalogue["win_rate"]["params"]] == ["by", "cohort"]
    missing = client.get("/api/v1/metrics/close_rat/series", headers=AUTH)
    assert (missing.status_code, missing.json()) == (404, {"detail": "unknown metric 'close_rat'; did you mean "
                                                                     "'close_rate' or 'csat' or 'upsell_rate'?"})


def test_series_by_grain_and_segment_with_validated_parameters(client: TestClient):
    monthly = client.get("/api/v1/metrics/close_rate/series", params={"period": "2024-Q1", "grain": "month"},
                         headers=AUTH).json()
    assert [(r["period"], r["value"]) for r in monthly] == [("2024-01", 0.5), ("2024-02", None), ("2024-03", None)]
    by_owner = client.get("/api/v1/metrics/close_rate/series", params={"segment": "owner"}, headers=AUTH).json()
    assert sorted((r["segment"]["owner"], r["value"]) for r in by_owner) == [("u1", 1.0), ("u2", 0.0)]
    for params, detail in [({"period": "2024-Q5"}, "period '2024-Q5': expected "),
                           ({"grain": "hour"}, "grain 'hour': expected one of day, week, month, quarter, year"),
                           ({"segment": "colour"}, "--segment 'colour'")]:
        bad = client.get("/api/v1/metrics/close_rate/series", params=params, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["detail"].startswith(detail), bad.json()


def test_latest_values_and_prometheus_in_base_units(project: KpiProject, client: TestClient):
    assert project.run(None, "--metric", "close_rate", "--metric", "sales_cycle_length", "--metric", "sales_volume",
                       "--period", "2024-01")
    latest = client.get("/api/v1/metrics/close_rate/latest", headers=AUTH).json()
    assert [(r["value"], r["numerator"], r["denominator"]) for r in latest] == [(0.5, 1.0, 2.0)]
    text = client.get("/metrics").text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples["crmkpi_close_rate_ratio"]) == 0.5
    assert float(samples["crmkpi_sales_cycle_length_seconds"]) == 15 * 86400  # won deals only: d1, 15 days
    assert float(samples["crmkpi_sales_volume_usd"]) == 1000
    assert float(samples['crmkpi_kpi_period_start_timestamp_seconds{metric="close_rate"}']) == \
        datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert float(samples['crmkpi_sync_last_success_timestamp_seconds{connector="crm"}']) > 0


def test_explain_one_cell(client: TestClient):
    found = client.get("/api/v1/metrics/close_rate/explain", params={"segment": "owner=u1", "limit": 1},
                       headers=AUTH).json()
    assert (found["value"], found["numerator"], found["denominator"], found["segment"]) == (1.0, 1.0, 1.0,
                                                                                           {"owner": "u1"})
    assert [(i["label"], i["rows"], i["first"][0][0]) for i in found["inputs"]] == [
        ("won deals created in the period", 1, "d1"), ("deals created in the period", 1, "d1")]


def test_a_parameter_fastapi_refuses_is_a_one_line_detail_too(client: TestClient):
    for path, detail in [("/api/v1/jobs?limit=0", "limit: Input should be greater than or equal to 1"),
                         ("/api/v1/metrics/close_rate/explain?limit=many",
                          "limit: Input should be a valid integer, unable to parse string as an integer")]:
        bad = client.get(path, headers=AUTH)
        assert (bad.status_code, bad.json()) == (422, {"detail": detail})


def test_openapi_has_clean_operation_ids(client: TestClient):
    ids = {op["operationId"] for path in client.get("/openapi.json").json()["paths"].values() for op in path.values()}
    assert ids == {"health", "prometheus_metrics", "list_metrics", "get_metric", "latest_values", "metric_series",
                   "explain_value", "list_job_runs"}


def test_serve_refuses_a_public_address_without_a_token(kpi: KpiProject):
    result = CliRunner().invoke(cli, ["serve", "--config", str(kpi.config), "--host", "0.0.0.0"])
    assert (result.exit_code, result.stderr) == (
        1, "Error: refusing to serve the API on 0.0.0.0 without a token: set service.api_token (or "
           "CRMKPI_API_TOKEN), or listen on 127.0.0.1\n")


def test_serve_says_when_its_port_is_taken(kpi: KpiProject):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--config", str(kpi.config), "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_series_by_one_custom_field_then_another_each_get_their_own_values(kpi: KpiProject, monkeypatch):
    """A long-running service compiles many statements: one for a custom field must never serve another."""
    kpi.write("deals", [{**deal, "color": color, "size": size}
                        for deal, color, size in zip(DEALS, ("red", "blue"), ("S", "L"))])
    kpi.configure("reporting: {default_period: 2024-01}\n", files="tables: {deals: {extra: [color, size]}}\n")
    kpi.sync()
    app = App(debug=False)
    config = app.config(str(kpi.config))
    scheduler = Scheduler(job(app, config))
    client = TestClient(create_app(scheduler.job, scheduler, Heartbeat(15), None))
    for field, values in [("extra.color", ["blue", "red"]), ("extra.size", ["L", "S"]),
                          ("extra.color", ["blue", "red"])]:
        answer = client.get("/api/v1/metrics/close_rate/series", params={"segment": field}).json()
        assert sorted(r["segment"][field] for r in answer) == values
    scheduler.job.store.engine.dispose()
