"""The shared retry policy, against a real loopback server: what it retries and what it gives up on."""

from __future__ import annotations

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

from crmkpi.errors import ConfigError
from crmkpi.http import HttpSettings, retry_policy

from emulator import Emulator, Response


@pytest.fixture
def api():
    with Emulator(lambda request: Response(200, {"path": request.path, "body": request.json()})) as server:
        yield server


def session(retries: int = 3) -> requests.Session:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(max_retries=retry_policy(retries, backoff=0)))
    return s


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_for_post_too(api, status):
    api.fail(status, {"message": "busy"}, times=2, headers={"Retry-After": "0"})
    response = session().post(f"{api.url}/search", json={"q": 1})
    assert response.status_code == 200 and response.json() == {"path": "/search", "body": {"q": 1}}
    assert [r.method for r in api.requests] == ["POST"] * 3


def test_after_the_last_retry_the_error_response_is_returned_not_raised(api):
    api.fail(503, {"message": "down"}, times=10)
    response = session(retries=2).get(f"{api.url}/objects")
    assert response.status_code == 503 and response.json() == {"message": "down"}
    assert len(api.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(api, status):
    api.fail(status, {"message": "no"})
    assert session().get(f"{api.url}/objects").status_code == status
    assert len(api.requests) == 1


def test_the_policy_works_on_a_bare_urllib3_pool(api):
    # hubspot-api-client talks through urllib3 directly, not requests
    api.fail(429, {"message": "slow down"}, headers={"Retry-After": "0"})
    pool = urllib3.PoolManager(retries=retry_policy(3, backoff=0))
    response = pool.request("POST", f"{api.url}/batch", body=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 200 and len(api.requests) == 2


def test_a_long_retry_after_is_capped_at_the_longest_backoff(api, monkeypatch):
    waits = []
    monkeypatch.setattr("time.sleep", waits.append)
    api.fail(429, {"message": "daily limit"}, headers={"Retry-After": "3600"})
    pool = urllib3.PoolManager(retries=retry_policy(3, backoff=0, max_backoff=2.5))
    assert pool.request("GET", f"{api.url}/objects").status == 200
    assert waits == [2.5]


def test_connection_errors_are_retried_then_raised():
    pool = urllib3.PoolManager(retries=retry_policy(2, backoff=0))
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        pool.request("GET", "http://127.0.0.1:9/unreachable")  # discard port: refused


def test_the_ca_bundle_is_found_next_to_the_config_file(tmp_path):
    (tmp_path / "corp-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert HttpSettings(ca_bundle="corp-ca.pem").ca_file(tmp_path) == tmp_path / "corp-ca.pem"
    assert HttpSettings().ca_file(tmp_path) is None
    with pytest.raises(ConfigError, match="^ca_bundle: CA bundle file not found: .*/missing.pem$"):
        HttpSettings(ca_bundle="missing.pem").ca_file(tmp_path)


def test_the_settings_build_the_retry_policy():
    retry = HttpSettings(retries=2, backoff=0.5, max_backoff=7).retry()
    assert (retry.total, retry.backoff_factor, retry.backoff_max, "POST" in retry.allowed_methods) == (2, 0.5, 7, True)
