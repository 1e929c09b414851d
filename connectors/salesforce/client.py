"""Talking to Salesforce: login, a retrying TLS session, the API budget, one-line errors.

simple-salesforce does the REST calls. We log in ourselves (its login helpers only know
``https://{domain}.salesforce.com``) and hand it the session id, so that every mode can
point at any login endpoint and an expired session is refreshed in one place, page by
page, for REST and Bulk calls alike.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import jwt
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed, SalesforceError, SalesforceExpiredSession, SalesforceMalformedRequest,
    SalesforceRefusedRequest, SalesforceResourceNotFound,
)
from simple_salesforce.login import SalesforceLogin, token_login
from simple_salesforce.util import exception_handler

from crmkpi.errors import ConfigError, ConnectorError
from crmkpi.redact import basic_credentials, redact, register

from .settings import SalesforceSettings

T = TypeVar("T")

#: Error codes describe answers for an sObject the org does not have (e.g. Case without Service Cloud) or
#: this login may not read: 404 NOT_FOUND as a rule, INVALID_TYPE and INSUFFICIENT_ACCESS from some orgs.
NOT_VISIBLE = ("NOT_FOUND", "INVALID_TYPE", "INSUFFICIENT_ACCESS")


class SalesforceLimitError(ConnectorError):
    """The org's API limit or this run's budget is used up; committed data stays committed."""


class ObjectNotVisible(ConnectorError):
    """describe found no such sObject for this login: the org lacks it, or the login may not read it."""

    def __init__(self, sobject: str, code: str, message: str) -> None:
        super().__init__(f"{sobject} is not visible to this login ({code}: {message})")
        self.sobject = sobject


class SalesforceSession(requests.Session):
    """A requests session that verifies TLS with the configured CA, counts calls and watches the quota.

    requests lets REQUESTS_CA_BUNDLE override ``session.verify``; a configured ``ca_bundle``
    must win over the environment, so it is applied when requests merges the two.
    """

    def __init__(self, settings: SalesforceSettings, ca_bundle: Path | None) -> None:
        super().__init__()
        self.ca_bundle = str(ca_bundle) if ca_bundle else None
        self.timeout = settings.timeout
        self.max_calls = settings.max_api_calls
        self.max_share = settings.max_daily_api_share
        self.calls = 0
        #: (used, limit) of the org's daily API requests, from the last Sforce-Limit-Info header.
        self.api_usage: tuple[int, int] | None = None
        adapter = HTTPAdapter(max_retries=settings.retry())
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca_bundle:
            merged["verify"] = self.ca_bundle
        return merged

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self._check_budget()
        self.calls += 1
        kwargs.setdefault("timeout", self.timeout)
        response = super().request(method, url, *args, **kwargs)
        usage = re.search(r"api-usage=(\d+)/(\d+)", response.headers.get("Sforce-Limit-Info", ""))
        if usage:
            self.api_usage = (int(usage[1]), int(usage[2]))
        return response

    def _check_budget(self) -> None:
        if self.max_calls is not None and self.calls >= self.max_calls:
            raise SalesforceLimitError(
                f"stopped after max_api_calls={self.max_calls} API calls; what was synced so far is committed "
                "and the next sync continues from there")
        if self.max_share is not None and self.api_usage and self.api_usage[1]:
            used, limit = self.api_usage
            if used >= self.max_share * limit:
                raise SalesforceLimitError(
                    f"the org has used {used} of its {limit} daily API requests (max_daily_api_share="
                    f"{self.max_share:g}); what was synced so far is committed and the next sync continues "
                    "from there")


class SalesforceClient:
    """One logged-in org: describe, paged SOQL, getDeleted and raw calls (Bulk 2.0), with re-login."""

    def __init__(self, settings: SalesforceSettings, base_dir: Path, name: str) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.where = f"connectors.{name}"  # how config errors name the block
        self.session = SalesforceSession(settings, settings.ca_file(base_dir))
        self._describes: dict[str, dict[str, Any]] = {}
        self.sf = self._call(self._connect)

    @property
    def can_refresh(self) -> bool:
        """Whether an expired session can be replaced by logging in again."""
        return self.settings.auth != "session"

    # -- login ------------------------------------------------------------------------------

    def _connect(self) -> Salesforce:
        s = self.settings
        if s.auth == "session":
            token, instance = s.access_token.get_secret_value(), self._instance_host()
        else:
            token, instance = self._login()
            register(token)  # the session id: an echoing server or a traceback may quote it
        return Salesforce(session_id=token, instance=instance, session=self.session, version=s.api_version)

    def _login(self) -> tuple[str, str]:
        s = self.settings
        endpoint = s.login_endpoint()
        token_url = f"{endpoint}/services/oauth2/token"
        if s.auth == "password":
            return SalesforceLogin(username=s.username, password=s.password.get_secret_value(),
                                   security_token=s.security_token.get_secret_value(), sf_version=s.api_version,
                                   session=self.session, scratch_url=endpoint)
        if s.auth == "jwt":
            claims = {"iss": s.consumer_key, "sub": s.username, "aud": s.audience(),
                      "exp": int((datetime.now(UTC) + timedelta(minutes=3)).timestamp())}
            assertion = jwt.encode(claims, self._private_key(), algorithm="RS256")
            register(assertion)  # a bearer credential for its three minutes
            data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
            return token_login(token_url, data, s.domain or "login", s.consumer_key, None, None, self.session)
        basic = basic_credentials(s.consumer_key, s.consumer_secret.get_secret_value())
        return token_login(token_url, {"grant_type": "client_credentials"}, s.domain or "login", s.consumer_key,
                           {"Authorization": f"Basic {basic}"}, None, self.session)

    def _instance_host(self) -> str:
        url = self.settings.instance_url or ""
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"{self.where}.instance_url: must be an https:// URL, got {url!r}")
        return parts.netloc

    def _private_key(self) -> bytes:
        path = self.base_dir / self.settings.private_key_file
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{self.where}.private_key_file: cannot read {path}: {exc.strerror}") from None
        register(key.decode("utf-8", "replace").strip())
        return key

    def _refresh(self) -> None:
        if not self.can_refresh:
            raise ConnectorError("the Salesforce access token expired or is invalid (INVALID_SESSION_ID); "
                                 "set a fresh access_token, or use auth password, jwt or client_credentials, "
                                 "which log in again by themselves")
        self.sf = self._connect()

    # -- calls ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], what: str = "login", relogin: bool = True) -> T:
        """Run one API call; on an expired session log in again and repeat it once."""
        try:
            return fn()
        except SalesforceExpiredSession:
            if not relogin:
                raise ConnectorError(f"Salesforce rejected the new session for {what} (INVALID_SESSION_ID)") from None
            self._call(self._refresh)
            return self._call(fn, what, relogin=False)
        except (SalesforceError, requests.exceptions.RequestException) as exc:
            raise _one_line(exc, what) from None

    def describe(self, sobject: str) -> dict[str, Any]:
        """The object's describe, asked once per sync; ObjectNotVisible when the login cannot see it."""
        if sobject not in self._describes:
            self._describes[sobject] = self._call(lambda: self._describe(sobject), f"describe {sobject}")
        return self._describes[sobject]

    def _describe(self, sobject: str) -> dict[str, Any]:
        try:
            return getattr(self.sf, sobject).describe()  # self.sf, not a bound method: it changes on re-login
        except (SalesforceResourceNotFound, SalesforceMalformedRequest, SalesforceRefusedRequest) as exc:
            code, message = _first_error(exc.content)
            if code in NOT_VISIBLE:
                raise ObjectNotVisible(sobject, code, message) from None
            raise

    def count(self, soql: str) -> int | None:
        """totalSize of a ``SELECT COUNT()`` query (deleted records included).

        None when Salesforce gave up counting (QUERY_TIMEOUT): that many records are the
        Bulk API's job anyway.
        """
        def ask() -> int | None:
            try:
                return self.sf.query(soql, include_deleted=True)["totalSize"]
            except SalesforceMalformedRequest as exc:
                if _first_error(exc.content)[0] == "QUERY_TIMEOUT":
                    return None
                raise
        return self._call(ask, "a count query")

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of records from /queryAll (deleted ones included), following nextRecordsUrl."""
        page = self._call(lambda: self.sf.query(soql, include_deleted=True), "a query")
        while True:
            yield page["records"]
            if page["done"]:
                return
            url = page["nextRecordsUrl"]
            page = self._call(lambda: self.sf.query_more(url, identifier_is_url=True), "a query page")

    def deleted(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """getDeleted: ids hard-deleted (or emptied from the recycle bin) between start and end."""
        return self._call(lambda: getattr(self.sf, sobject).deleted(start, end), f"getDeleted {sobject}")

    def rest(self, method: str, path: str, what: str, allow: tuple[int, ...] = (),
             **kwargs: Any) -> requests.Response:
        """A raw call below /services/data/vXX.X/ (Bulk 2.0); statuses in ``allow`` are returned, not raised."""
        extra_headers = kwargs.pop("headers", {})

        def call() -> requests.Response:
            headers = {"Authorization": f"Bearer {self.sf.session_id}", **extra_headers}
            response = self.session.request(method, f"{self.sf.base_url}{path}", headers=headers, **kwargs)
            if response.status_code >= 300 and response.status_code not in allow:
                exception_handler(response, what)
            return response
        return self._call(call, what)

    def pause(self) -> None:
        """Wait between Bulk job status checks."""
        time.sleep(self.settings.bulk_poll_seconds)


def _one_line(exc: Exception, what: str) -> ConnectorError:
    """The error a user sees for a failed call: one line, what failed and why, no secrets."""
    if isinstance(exc, SalesforceAuthenticationFailed):
        return ConnectorError(f"Salesforce login failed: {_short(f'{exc.code}: {exc.auth_message}', 300)}")
    if isinstance(exc, requests.exceptions.SSLError):
        return ConnectorError(f"TLS verification failed for {_url_host(exc)}: the server certificate is not "
                              "trusted; set ca_bundle to the CA that signed it")
    if isinstance(exc, requests.exceptions.RequestException):
        return ConnectorError(f"could not reach Salesforce at {_url_host(exc)} during {what}: {type(exc).__name__}")
    code, message = _first_error(exc.content)
    if isinstance(exc, SalesforceRefusedRequest):
        if code == "REQUEST_LIMIT_EXCEEDED":
            return SalesforceLimitError(
                f"Salesforce API request limit exceeded (REQUEST_LIMIT_EXCEEDED) during {what}; what was synced "
                "so far is committed; run the sync again once the limit has reset")
        return ConnectorError(f"Salesforce refused {what}: {code}: {message}")
    return ConnectorError(f"Salesforce error {exc.status} during {what}: {code}: {message}")


def _url_host(exc: requests.exceptions.RequestException) -> str:
    url = getattr(exc.request, "url", None) or ""
    return urlsplit(url).netloc or "the configured host"


def _first_error(content: Any) -> tuple[str, str]:
    """(errorCode, message) of a Salesforce error body ``[{"message": ..., "errorCode": ...}]``."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return _short(str(first.get("errorCode"))), _short(str(first.get("message", "")))
    return "UNKNOWN", _short(str(content), 200)


def _short(text: str, limit: int | None = None) -> str:
    """What a server said, on one line, secrets taken out before it is cut (a cut could split one)."""
    return " ".join(redact(text).split())[:limit]
