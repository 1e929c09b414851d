"""The HubSpot API through hubspot-api-client: auth, host, TLS, retries, rate limits, errors.

Every call returns the response's JSON as plain dicts (``_preload_content=False``): the
store wants dicts, and skipping the client's model classes keeps big syncs fast.
Transient failures (429 with ``Retry-After``, 5xx, connection errors) are retried by
urllib3 with :func:`crmkpi.http.retry_policy`, which, unlike urllib3's default, retries
POST too (search and batch read are POSTs). Whatever still fails becomes a one-line
:class:`ConnectorError` that never contains a secret.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import urllib3
from hubspot.crm import objects as objects_api
from hubspot.crm import owners as owners_api
from hubspot.crm import pipelines as pipelines_api
from hubspot.crm.associations import v4 as associations_api
from hubspot import oauth as oauth_api

from crmkpi.errors import ConfigError, ConnectorError
from crmkpi.redact import redact, register

from .settings import HubSpotSettings

#: Each API package of the client raises its own ApiException class.
API_ERRORS = tuple(package.ApiException for package in (objects_api, owners_api, pipelines_api, associations_api,
                                                        oauth_api))

#: The read scope each object needs (HubSpot's names).
SCOPES = {"companies": "crm.objects.companies.read", "contacts": "crm.objects.contacts.read",
          "deals": "crm.objects.deals.read", "tickets": "tickets", "owners": "crm.objects.owners.read",
          "leads": "crm.objects.leads.read"}

#: Refresh an OAuth access token this long before HubSpot says it expires (they last 30 minutes).
REFRESH_EARLY = 300.0


class RateLimiter:
    """Spaces calls at least ``1 / rate`` seconds apart; ``clock`` and ``sleep`` can be faked in tests."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        now = self.clock()
        if now < self._next:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def ca_bundle(settings: HubSpotSettings, base_dir: Path) -> str | None:
    """The CA file to verify HubSpot with: configured, else from the environment, else the system's.

    urllib3 reads neither variable itself, so a machine set up for requests or OpenSSL works too.
    """
    configured = settings.ca_file(base_dir)
    if configured:
        return str(configured)
    path = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    if path and not os.path.isfile(path):
        raise ConfigError(f"SSL_CERT_FILE/REQUESTS_CA_BUNDLE: CA bundle file not found: {path}")
    return path or None


class HubSpotClient:
    """The calls a sync makes, each rate limited, authenticated and turned into JSON."""

    def __init__(self, settings: HubSpotSettings, base_dir: Path = Path("."), *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.host = settings.host
        self.clock = clock
        self.limits = {"search": RateLimiter(settings.search_requests_per_second, clock, sleep),
                       "other": RateLimiter(settings.requests_per_second, clock, sleep)}
        self._refresh_token = settings.refresh_token.get_secret_value() if settings.refresh_token else None
        self._expires_at = 0.0
        cafile = ca_bundle(settings, base_dir)
        retry = settings.retry()

        clients: dict[Any, Any] = {}  # one connection pool per API package

        def api(package: Any, name: str) -> Any:
            if package not in clients:
                config = package.Configuration(host=self.host, ssl_ca_cert=cafile)
                config.retries = retry
                clients[package] = package.ApiClient(configuration=config)
            return getattr(package, name)(api_client=clients[package])

        self.objects = api(objects_api, "BasicApi")
        self.search_api = api(objects_api, "SearchApi")
        self.batch_api = api(objects_api, "BatchApi")
        self.associations_api = api(associations_api, "BatchApi")
        self.pipelines_api = api(pipelines_api, "PipelinesApi")
        self.owners_api = api(owners_api, "OwnersApi")
        self.oauth_api = api(oauth_api, "TokensApi")
        self._apis = [self.objects, self.search_api, self.batch_api, self.associations_api, self.pipelines_api,
                      self.owners_api]
        if settings.access_token is not None:
            self._set_token(settings.access_token.get_secret_value())

    # -- the calls ---------------------------------------------------------------------------

    def list_page(self, object_type: str, *, properties: list[str], after: str | None = None,
                  history: list[str] | None = None, archived: bool = False, limit: int = 100) -> dict:
        """GET /crm/v3/objects/{type}: one page, oldest id first."""
        what = f"listing {'archived ' if archived else ''}{object_type}"
        return self._call("other", what, object_type, self.objects.get_page, object_type, limit=limit, after=after,
                          properties=properties, properties_with_history=history, archived=archived)

    def search_page(self, object_type: str, request: dict) -> dict:
        """POST /crm/v3/objects/{type}/search with a request body as HubSpot documents it."""
        return self._call("search", f"searching {object_type}", object_type, self.search_api.do_search,
                          object_type, request)

    def batch_read(self, object_type: str, ids: list[str], *, properties: list[str],
                   history: list[str] | None = None) -> dict:
        """POST /crm/v3/objects/{type}/batch/read (HubSpot allows 50 ids when reading history)."""
        body = {"inputs": [{"id": i} for i in ids], "properties": properties,
                "propertiesWithHistory": history or []}
        return self._call("other", f"batch reading {object_type}", object_type, self.batch_api.read,
                          object_type, body)

    def associations(self, from_type: str, to_type: str, ids: list[str]) -> dict:
        """POST /crm/v4/associations/{from}/{to}/batch/read for up to 1,000 ids."""
        return self._call("other", f"reading {from_type} to {to_type} associations", from_type,
                          self.associations_api.get_page, from_type, to_type, {"inputs": [{"id": i} for i in ids]})

    def pipelines(self, object_type: str) -> dict:
        """GET /crm/v3/pipelines/{type}: every pipeline with its stages."""
        return self._call("other", f"reading {object_type} pipelines", object_type, self.pipelines_api.get_all,
                          object_type)

    def owners_page(self, *, after: str | None, archived: bool) -> dict:
        """GET /crm/v3/owners: one page of active or of archived owners."""
        return self._call("other", f"listing {'archived ' if archived else ''}owners", "owners",
                          self.owners_api.get_page, after=after, limit=100, archived=archived)

    # -- auth ----------------------------------------------------------------------------------

    def _set_token(self, token: str) -> None:
        for api in self._apis:
            api.api_client.configuration.access_token = token

    def _refresh(self) -> None:
        """Trade the refresh token for a fresh access token (HubSpot's tokens last 30 minutes)."""
        tokens = self._send("other", "refreshing the OAuth token", None, self.oauth_api.create,
                            grant_type="refresh_token", client_id=self.settings.client_id,
                            client_secret=self.settings.client_secret.get_secret_value(),
                            refresh_token=self._refresh_token)
        try:
            token, lifetime = tokens["access_token"], float(tokens.get("expires_in", 1800))
        except (KeyError, TypeError, ValueError):
            raise ConnectorError("HubSpot OAuth token refresh returned no access_token") from None
        register(token)
        register(tokens.get("refresh_token"))  # HubSpot may rotate it
        self._refresh_token = tokens.get("refresh_token") or self._refresh_token
        self._expires_at = self.clock() + lifetime
        self._set_token(token)

    def _call(self, kind: str, what: str, object_type: str, method: Callable, *args: Any, **kwargs: Any) -> dict:
        oauth = self._refresh_token is not None
        if oauth and self.clock() >= self._expires_at - REFRESH_EARLY:
            self._refresh()
        try:
            return self._send(kind, what, object_type, method, *args, **kwargs)
        except _Unauthorized:
            if not oauth:
                raise ConnectorError("HubSpot rejected the access token (401): check access_token, "
                                     "the private app's token may be revoked or rotated") from None
        self._refresh()  # revoked or expired early: refresh once, then give up
        try:
            return self._send(kind, what, object_type, method, *args, **kwargs)
        except _Unauthorized:
            raise ConnectorError("HubSpot rejected a freshly refreshed OAuth access token (401): "
                                 "check the app's installation and scopes") from None

    def _send(self, kind: str, what: str, object_type: str | None, method: Callable, *args: Any,
              **kwargs: Any) -> dict:
        self.limits[kind].wait()
        label = f"HubSpot {what}"
        try:
            response = method(*args, _preload_content=False, _request_timeout=self.settings.timeout, **kwargs)
        except API_ERRORS as exc:
            if not exc.status:  # 0: the client's wrapper of a TLS failure
                raise ConnectorError(_clean(f"{label}: {_network_reason(exc, self.host)}")) from None
            raise self._failure(label, object_type, exc.status, exc.body) from None
        except urllib3.exceptions.HTTPError as exc:  # no answer, even after the retries
            raise ConnectorError(_clean(f"{label}: {_network_reason(exc, self.host)}")) from None
        try:
            return json.loads(response.data)
        except ValueError:
            raise ConnectorError(f"{label}: HubSpot sent a response that is not JSON") from None

    def _failure(self, label: str, object_type: str | None, status: int, body: Any) -> Exception:
        if status == 401:
            return _Unauthorized()
        message, category = _error_text(body)
        detail = f": {message}" if message else ""
        if status == 403:
            scope = SCOPES.get(object_type or "", f"crm.objects.{object_type}.read")
            return ConnectorError(_clean(f"{label}: refused (403 {category or 'FORBIDDEN'}){detail} "
                                         f"(grant the app the {scope} scope, or disable the object)"))
        if status == 429:
            return ConnectorError(_clean(f"{label}: rate limit still exceeded after "
                                         f"{self.settings.retries} retries (429){detail}"))
        return ConnectorError(_clean(f"{label}: answered {status}{detail}"))


def _clean(text: str) -> str:
    """One line, without any secret the server or a library might have echoed."""
    return " ".join(redact(text).split())


class _Unauthorized(Exception):
    """A 401, handled by :meth:`HubSpotClient._call` (refresh once, or fail clearly)."""


def _error_text(body: Any) -> tuple[str | None, str | None]:
    """``message`` and ``category`` of HubSpot's JSON error body, else the raw text, shortened."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return None, None
    body = redact(str(body))  # before it is shortened: a cut could leave part of a secret
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body)[:200], None
    if isinstance(data, dict):
        return (str(data.get("message") or "")[:300] or None), data.get("category")
    return str(body)[:200], None


def _network_reason(exc: Exception, host: str) -> str:
    """Why a request never got an answer, e.g. refused, unknown host, or an untrusted certificate."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, urllib3.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(reason):
        return (f"TLS certificate of {host} not trusted ({_short(reason)}); set ca_bundle: to the CA that "
                f"signs it")
    return f"cannot reach HubSpot at {host} ({_short(reason)})"


def _short(reason: Any) -> str:
    text = str(reason)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verify failed"
    return text.rsplit(": ", 1)[-1][:160]
