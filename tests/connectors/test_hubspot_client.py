"""The HubSpot client on its own: rate limits, OAuth refresh timing, retries, secrets."""

from __future__ import annotations

import time

import pytest
import yaml
from click.testing import CliRunner

from crmkpi.cli import cli
from crmkpi.connectors.hubspot.client import HubSpotClient, RateLimiter
from crmkpi.connectors.hubspot.settings import HubSpotSettings

from emulator import Emulator, write_ca_bundle
from hubspot_api import sample_portal

SEARCH = {"filterGroups": [], "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
          "properties": ["dealname"], "limit": 10}


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def portal():
    return sample_portal()


@pytest.fixture
def api(portal, tls_ca):
    with Emulator(portal.app, tls=tls_ca) as server:
        yield server


def settings(api: Emulator, tls_ca, folder, **values) -> HubSpotSettings:
    return HubSpotSettings(**{"access_token": "pat-test-token", "host": api.url, "start_date": "all", "backoff": 0,
                              "ca_bundle": str(write_ca_bundle(tls_ca, folder)), **values})


def test_rate_limiter_spaces_calls():
    clock = FakeClock()
    limiter = RateLimiter(5, clock, clock.sleep)
    for _ in range(3):
        limiter.wait()
    clock.now += 10  # idle time is not saved up into a burst
    limiter.wait()
    limiter.wait()
    assert clock.sleeps == [0.2, 0.2, 0.2]


def test_search_has_its_own_stricter_budget(api, tls_ca, tmp_path):
    clock = FakeClock()
    client = HubSpotClient(settings(api, tls_ca, tmp_path, search_requests_per_second=4, requests_per_second=10),
                           clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert len(client.search_page("deals", SEARCH)["results"]) == 10
    for _ in range(2):
        client.list_page("deals", properties=["dealname"])
    assert clock.sleeps == [0.25, 0.25, 0.1]


def test_oauth_token_is_refreshed_five_minutes_before_it_expires(api, portal, tls_ca, tmp_path):
    portal.clients["cid"] = ("secret", "refresh")
    clock = FakeClock()
    client = HubSpotClient(settings(api, tls_ca, tmp_path, access_token=None, client_id="cid",
                                    client_secret="secret", refresh_token="refresh"), clock=clock, sleep=clock.sleep)

    def grants() -> int:
        return len([r for r in api.requests if r.path == "/oauth/v1/token"])

    client.pipelines("deals")
    assert grants() == 1
    clock.now = 1499.0  # 30-minute tokens: 5 minutes and a second left
    client.pipelines("deals")
    assert grants() == 1
    clock.now = 1500.5
    client.pipelines("deals")
    assert grants() == 2
    tokens = [r.headers["authorization"] for r in api.requests if r.path.startswith("/crm/")]
    assert tokens == ["Bearer oauth-access-1", "Bearer oauth-access-1", "Bearer oauth-access-2"]


@pytest.mark.parametrize("status", [429, 502])
def test_transient_failures_of_get_and_post_are_retried(api, tls_ca, tmp_path, status):
    client = HubSpotClient(settings(api, tls_ca, tmp_path, retries=3, requests_per_second=1000,
                                    search_requests_per_second=1000))
    expected_search = client.search_page("deals", SEARCH)
    expected_list = client.list_page("deals", properties=["dealname"], limit=5)
    api.requests.clear()
    body = {"status": "error", "message": "slow down", "category": "RATE_LIMITS"} if status == 429 else "bad gateway"
    api.fail(status, body, times=3, headers={"Retry-After": "0"}, match=lambda r: r.method == "POST")
    assert client.search_page("deals", SEARCH) == expected_search
    api.fail(status, body, times=2, headers={"Retry-After": "0"}, match=lambda r: r.method == "GET")
    assert client.list_page("deals", properties=["dealname"], limit=5) == expected_list
    assert [r.method for r in api.requests] == ["POST"] * 4 + ["GET"] * 3


def test_secrets_stay_out_of_reprs_and_validate(api, tls_ca, tmp_path, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "hubspot")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "very-secret-value")
    values = settings(api, tls_ca, tmp_path, access_token=None, client_id="cid",
                      client_secret="very-secret-value", refresh_token="refresh-secret-value")
    assert "very-secret-value" not in repr(values) and "refresh-secret-value" not in str(values.model_dump())
    config = tmp_path / "crmkpi.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 's.db'}", "connectors": {"hub": {
        "type": "hubspot", "client_id": "cid", "client_secret": "${HUBSPOT_CLIENT_SECRET}",
        "refresh_token": "refresh-secret-value", "start_date": "2024-01-01"}}}))
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "very-secret-value" not in result.output and "refresh-secret-value" not in result.output


def test_a_long_retry_after_is_capped_at_max_backoff(api, tls_ca, tmp_path):
    client = HubSpotClient(settings(api, tls_ca, tmp_path, retries=1, max_backoff=0.05))
    api.fail(429, {"status": "error", "message": "daily limit", "category": "RATE_LIMITS"}, times=1,
             headers={"Retry-After": "3600"})
    started = time.monotonic()
    assert len(client.pipelines("deals")["results"]) == 1
    assert time.monotonic() - started < 2 and len(api.requests) == 2
