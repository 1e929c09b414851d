"""The secret scan: no configured or runtime secret, in any encoding, leaves the process or reaches the store.

Every CLI command runs, in success and failure cases, with and without ``--debug``, with a
config that holds distinctive secrets of every kind: Salesforce password, security token,
consumer secret, access token and JWT private key; HubSpot private-app token, OAuth client
secret and refresh token; the store URL's password. The syncs also run against an echoing
HTTPS server whose login, token and API endpoints answer errors (400/401/403/500, HTML and
JSON) that reflect the whole request, headers and body. Then stdout, stderr, every log record
(the root logger at DEBUG: urllib3 and the API clients included) and every row of every table
of the store are searched for each secret in each encoding a server could echo it in.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote, quote_plus

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import make_url

import crmkpi.redact
from crmkpi.cli import cli
from crmkpi.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "connectors"))  # the API emulators live there

from conftest import ALL_BUILTINS, temporary_database  # noqa: E402
from emulator import Emulator, Request, Response, write_ca_bundle  # noqa: E402
from hubspot_api import Portal, sample_portal  # noqa: E402
from salesforce_api import Org, build_org  # noqa: E402

pytestmark = pytest.mark.reliability

#: The configured secrets, named after where they go; all longer than crmkpi.redact.MIN_LENGTH.
SECRETS = {
    "SF_PASSWORD": "SEKRET-pw-7f3a9",
    "SF_SECURITY_TOKEN": "SEKRET-tok-41c8e",
    "SF_CONSUMER_SECRET": "SEKRET-cs/2b6e4+",  # characters that URL and form encoding change
    "SF_ACCESS_TOKEN": "00D!SEKRET-at-9d0c3",
    "HUBSPOT_TOKEN": "pat-SEKRET-4a7f1",
    "HUBSPOT_CLIENT_SECRET": "SEKRET-hcs-8e2b7&<x>",  # characters that HTML and XML escaping change
    "HUBSPOT_REFRESH_TOKEN": "SEKRET-rt-3f9a6",
    "STORE_PASSWORD": "SEKRET-db-6c2d0",
    "API_TOKEN": "SEKRET-api-5b1e8",
}
SF_USER, SF_KEY, HS_CLIENT = "ana@example.com", "CK-SECRETSCAN", "app-client"
#: A header that carries a credential, with its value left in.
CREDENTIAL_HEADER = re.compile(r"(?i)\b(?:proxy-)?authorization\W{0,12}(?:basic|bearer)\s+(?!\[redacted\])\S")


# -- the scanner -------------------------------------------------------------------------------------


def encodings(secret: str) -> set[str]:
    """The forms a secret can take in an echoed request or an error: as it is, URL- and form-encoded,
    JSON-, HTML- and XML-escaped, base64, and one line at a time for a multi-line key."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1], html.escape(secret),
             html.escape(secret, quote=False), base64.b64encode(secret.encode()).decode()}
    forms.update(line for line in secret.splitlines() if len(line) >= crmkpi.redact.MIN_LENGTH)
    return forms


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """Each secret (by name) or credential header found in ``text``, with the form it was found in."""
    found = [f"{name} as {form!r}" for name, secret in secrets.items() for form in sorted(encodings(secret))
             if form in text]
    found += [f"credential header {match[0]!r}" for match in CREDENTIAL_HEADER.finditer(text)]
    return found


def store_dump(url: str) -> str:
    """Every row of every table of the store, as text."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(f"{table.name}: {row!r}" for table in meta.sorted_tables
                             for row in conn.execute(select(table)))
    finally:
        engine.dispose()


def test_the_scanner_finds_each_secret_in_each_encoding():
    secrets = {"pw": "SEKRET-a/b&c d<e>"}
    for form in encodings(secrets["pw"]):
        assert leaks(f"error: {form}.", secrets) == [f"pw as {form!r}"]
    assert leaks("nothing here", secrets) == []
    assert leaks('{"Authorization": "Bearer abc"}', {}) == ["credential header 'Authorization\": \"Bearer a'"]
    assert leaks("authorization: Bearer [redacted]", {}) == []


# -- the servers ----------------------------------------------------------------------------------------


#: How the echoing server answers: status and body format.
ECHOES = [(400, "json"), (401, "html"), (403, "json-list"), (500, "html")]


def reflection(request: Request, body_first: bool) -> str:
    """The whole request as a misbehaving proxy would show it; the body first, or the head first."""
    head = "\n".join([f"{request.method} {request.path}?{request.query}",
                      *(f"{name}: {value}" for name, value in request.headers.items())])
    body = request.body.decode("utf-8", "replace")
    return f"{body}\n\n{head}" if body_first else f"{head}\n\n{body}"


def echo(status: int, kind: str, request: Request) -> Response:
    """An error answer reflecting the request: JSON puts the body first (so that an error message cut
    short still holds it), HTML the request line and headers."""
    text = reflection(request, body_first=kind != "html")
    if kind == "html":
        return Response(status, f"<html><body><h1>Request rejected</h1><pre>{html.escape(text)}</pre></body></html>",
                        {"Content-Type": "text/html"})
    details = {"headers": request.headers, "body": request.body.decode("utf-8", "replace")}
    if kind == "json-list":  # Salesforce's REST error shape
        return Response(status, [{"errorCode": "ECHO", "message": text, "request": details}])
    # the shapes of OAuth token endpoints and of HubSpot errors at once
    return Response(status, {"error": text, "error_description": text, "message": text, "category": "ECHO",
                             "request": details})


def is_login(request: Request) -> bool:
    return request.path in ("/services/oauth2/token", "/oauth/v1/token") or request.path.startswith("/services/Soap/")


@dataclass
class Server:
    """One HTTPS server for both APIs: the Salesforce org, the HubSpot portal, or an echo of each request."""

    org: Org
    portal: Portal
    #: None: answer normally; else (status, format, which requests: is_login or an API call).
    echoing: tuple[int, str, Callable[[Request], bool]] | None = None
    assertions: list[str] = field(default_factory=list)

    def __call__(self, request: Request) -> Response:
        if b"assertion=" in request.body:  # a signed JWT login: a bearer credential for a few minutes
            self.assertions.append(re.search(rb"assertion=([^&]+)", request.body)[1].decode())
        if self.echoing and self.echoing[2](request):
            return echo(self.echoing[0], self.echoing[1], request)
        if request.path.startswith("/services/"):
            return self.org(request)
        return self.portal.app(request)


# -- the project ----------------------------------------------------------------------------------------


class Scan:
    """One config with every connector, the CLI run against it, and everything it printed or logged."""

    def __init__(self, folder: Path, store_url: str, server: Server, api: Emulator, ca: Path,
                 private_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.store_url, self.server = folder, store_url, server
        self.output: list[str] = []
        self.runs = 0
        for name, value in SECRETS.items():
            monkeypatch.setenv(name, value)
        (folder / "server.key").write_text(private_key, encoding="utf-8")
        self.private_key = private_key
        sf = {"type": "salesforce", "start_date": "all", "login_url": api.url, "ca_bundle": ca.name, "backoff": 0,
              "retries": 1, "bulk_poll_seconds": 0}
        hs = {"type": "hubspot", "start_date": "all", "host": api.url, "ca_bundle": ca.name, "backoff": 0,
              "retries": 1, "requests_per_second": 10_000, "search_requests_per_second": 10_000}
        self.connectors = {
            "sf_password": {**sf, "username": SF_USER, "password": "${SF_PASSWORD}",
                            "security_token": "${SF_SECURITY_TOKEN}"},
            "sf_client": {**sf, "auth": "client_credentials", "consumer_key": SF_KEY,
                          "consumer_secret": "${SF_CONSUMER_SECRET}"},
            "sf_jwt": {**sf, "auth": "jwt", "username": SF_USER, "consumer_key": SF_KEY,
                       "private_key_file": "server.key"},
            "sf_session": {**sf, "instance_url": api.url, "access_token": SECRETS["SF_ACCESS_TOKEN"]},  # inline
            "hs_token": {**hs, "access_token": "${HUBSPOT_TOKEN}"},
            "hs_oauth": {**hs, "client_id": HS_CLIENT, "client_secret": "${HUBSPOT_CLIENT_SECRET}",
                         "refresh_token": "${HUBSPOT_REFRESH_TOKEN}"},
        }
        self.config = folder / "crmkpi.yaml"
        self.write(store_url)

    def write(self, store_url: str, **extra: Any) -> None:
        self.config.write_text(yaml.safe_dump({"store": store_url, "connectors": self.connectors, **extra}),
                               encoding="utf-8")

    def cli(self, *args: str, config: bool = True, debug: bool = False, expect: int | tuple[int, ...] = 0) -> str:
        """Run ``crmkpi [--debug] COMMAND [--config C] ARGS``, keep what it printed, check its exit status."""
        command = [*(["--debug"] if debug else []), args[0], *(["--config", str(self.config)] if config else []),
                   *args[1:]]
        logging.getLogger("urllib3").setLevel(logging.NOTSET)  # a HubSpot client sets it to WARNING when made
        result = CliRunner().invoke(cli, command)
        self.runs += 1
        self.output.append(f"$ crmkpi {' '.join(command)}\n{result.stdout}{result.stderr}")
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert result.exit_code in expected, (command, result.output, result.exception)
        if debug and result.exit_code == 1:
            assert "Traceback (most recent call last):" in result.stderr, result.stderr
        return result.stdout + result.stderr

    def secrets(self) -> dict[str, str]:
        """The configured secrets and those the run obtained: session ids, OAuth tokens, JWT assertions."""
        found = dict(SECRETS)
        found["SF_PRIVATE_KEY"] = self.private_key
        found["SF_BASIC"] = base64.b64encode(f"{SF_KEY}:{SECRETS['SF_CONSUMER_SECRET']}".encode()).decode()
        found.update({f"SF_SESSION_{n}": token for n, token in enumerate(sorted(self.server.org.tokens))
                      if token != SECRETS["SF_ACCESS_TOKEN"]})
        found.update({f"HS_ACCESS_{n}": token for n, token in enumerate(sorted(self.server.portal.tokens))
                      if token.startswith("oauth-access-")})
        found.update({f"SF_JWT_{n}": assertion for n, assertion in enumerate(self.server.assertions)})
        return found


@pytest.fixture(scope="module")
def private_key() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, public


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log record of the process, at DEBUG, as a user's logging config would write it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root, urllib3 = logging.getLogger(), logging.getLogger("urllib3")
    levels = root.level, urllib3.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(levels[0])
    urllib3.setLevel(levels[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def scan(request: pytest.FixtureRequest, tmp_path: Path, tls_ca, private_key, monkeypatch) -> Iterator[Scan]:
    """A Scan on SQLite and on PostgreSQL (whose URL carries the store password; the test server trusts
    loopback connections, so the password is given but not asked for)."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    pem, public = private_key
    org, portal = build_org(), sample_portal()
    org.credentials = {"username": SF_USER, "password": SECRETS["SF_PASSWORD"],
                       "security_token": SECRETS["SF_SECURITY_TOKEN"], "consumer_key": SF_KEY,
                       "consumer_secret": SECRETS["SF_CONSUMER_SECRET"]}
    org.public_key = public
    org.tokens.add(SECRETS["SF_ACCESS_TOKEN"])
    portal.tokens = {SECRETS["HUBSPOT_TOKEN"]}
    portal.clients[HS_CLIENT] = (SECRETS["HUBSPOT_CLIENT_SECRET"], SECRETS["HUBSPOT_REFRESH_TOKEN"])
    server = Server(org, portal)
    with Emulator(server, tls=tls_ca) as api:
        org.url = api.url
        ca = write_ca_bundle(tls_ca, tmp_path)
        if request.param == "sqlite":
            yield Scan(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", server, api, ca, pem, monkeypatch)
            return
        with temporary_database(request.getfixturevalue("postgres_server_url")) as url:
            url = make_url(url).set(password=SECRETS["STORE_PASSWORD"]).render_as_string(hide_password=False)
            yield Scan(tmp_path, url, server, api, ca, pem, monkeypatch)


#: The connectors that log in (or refresh a token) before their first API call.
LOGINS = ("sf_password", "sf_client", "sf_jwt", "hs_oauth")


def exercise(scan: Scan, debug: bool) -> None:
    """Every command, in success and failure cases, against the working and the echoing server."""
    folder, flag = scan.folder, "debug" if debug else "plain"
    # success
    scan.cli("init", "--path", str(folder / f"init-{flag}" / "crmkpi.yaml"), config=False, debug=debug)
    scan.cli("validate", debug=debug)
    for name in scan.connectors:
        scan.cli("sync", name, debug=debug)
    scan.cli("sync", debug=debug)
    scan.cli("run", "--metric", "win_rate", "--period", "2024", debug=debug)
    scan.cli("explain", "win_rate", "--period", "2024", debug=debug)
    scan.cli("plugins", config=False, debug=debug)
    scan.cli("plugins", "--json", config=False, debug=debug)
    scan.cli("metrics", "list", config=False, debug=debug)
    scan.cli("metrics", "show", "win_rate", config=False, debug=debug)
    scan.cli("sample-data", "--out", str(folder / f"sample-{flag}"), "--deals", "5", config=False, debug=debug)
    # failures a user can cause
    scan.cli("init", "--path", str(scan.config), config=False, debug=debug, expect=1)
    scan.cli("run", "--period", "bogus", debug=debug, expect=1)
    scan.cli("explain", "no_such_metric", debug=debug, expect=1)
    scan.cli("metrics", "show", "no_such_metric", config=False, debug=debug, expect=1)
    scan.cli("sample-data", "--out", str(scan.config), config=False, debug=debug, expect=2)
    scan.cli("sync", "no_such_connector", debug=debug, expect=1)
    scan.write(scan.store_url, reporting={"timezone": "Mars/Olympus"})
    scan.cli("validate", debug=debug, expect=1)
    scan.cli("sync", "sf_session", debug=debug, expect=1)
    # a store that cannot be reached, its password in the URL (nothing listens on port 1)
    scan.write(f"postgresql://crmkpi:{SECRETS['STORE_PASSWORD']}@127.0.0.1:1/kpi")
    scan.cli("validate", debug=debug)
    for command in (["sync", "sf_session"], ["run", "--period", "2024"], ["explain", "win_rate"]):
        scan.cli(*command, debug=debug, expect=1)
    scan.write(scan.store_url)
    # the echoing server: logins, token refreshes and API calls answered with the whole request
    for status, kind in ECHOES:
        scan.server.echoing = (status, kind, is_login)
        for name in LOGINS:
            scan.cli("sync", name, debug=debug, expect=1)
        scan.server.echoing = (status, kind, lambda request: not is_login(request))
        for name in scan.connectors:
            scan.cli("sync", name, "--full-refresh", debug=debug, expect=1)
        scan.server.echoing = None
    # jobs: a schedule's run keeps its error in job_runs, which the scan reads with the rest of the store
    scan.write(scan.store_url, service={"api_token": "${API_TOKEN}"}, schedules={
        "nightly": {"cron": "0 2 * * *", "sync": list(scan.connectors), "metrics": ["win_rate"], "period": "2024"}})
    jobs = ("--config", str(scan.config))
    scan.cli("jobs", "run", "nightly", *jobs, config=False, debug=debug)
    scan.cli("jobs", "list", *jobs, config=False, debug=debug)
    scan.server.echoing = (401, "html", lambda request: True)
    scan.cli("jobs", "run", "nightly", *jobs, config=False, debug=debug, expect=1)
    scan.server.echoing = None
    scan.cli("jobs", "history", *jobs, config=False, debug=debug)
    with socket.create_server(("127.0.0.1", 0)) as taken:  # serve, with its token, fails on a port in use
        scan.cli("serve", "--port", str(taken.getsockname()[1]), debug=debug, expect=1)
    scan.write(scan.store_url)


def test_no_secret_is_printed_logged_or_stored(scan: Scan, logs: io.StringIO):
    for debug in (False, True):
        exercise(scan, debug)
    secrets = scan.secrets()
    assert any(name.startswith("SF_SESSION_") for name in secrets) and any(n.startswith("SF_JWT_") for n in secrets)
    assert any(name.startswith("HS_ACCESS_") for name in secrets)
    assert scan.runs == 2 * COMMANDS_PER_PASS
    output, logged, stored = "\n".join(scan.output), logs.getvalue(), store_dump(scan.store_url)
    assert "[redacted]" in output and "[redacted]" in stored  # the echoes did reflect secrets
    assert "urllib3" in logged  # the libraries' debug logs were captured
    assert "sync_runs" in stored and "metric_results" in stored
    assert leaks(output, secrets) == []
    assert leaks(logged, secrets) == []
    assert leaks(stored, secrets) == []


#: Commands of one pass of ``exercise``: 10 succeed (+ a sync of each of the 6 connectors), 8 fail, 1 + 3
#: run with an unreachable store, 4 echo formats x (4 logins + 6 connectors' API calls), and the service's
#: commands: a job run, the job list, a job run against the echoing server, the history, serve refused.
COMMANDS_PER_PASS = 10 + 6 + 8 + 4 + len(ECHOES) * (len(LOGINS) + 6) + 5


def test_the_scan_finds_secrets_when_nothing_is_redacted(scan: Scan, logs: io.StringIO, monkeypatch):
    """The same scan fails on a build that registers no secret: the echoes put them in the output and store."""
    monkeypatch.setattr(crmkpi.redact, "MIN_LENGTH", 10_000)
    monkeypatch.setattr(crmkpi.redact, "_HEADER", re.compile("(?!)"))  # matches nothing
    scan.server.echoing = (400, "json", is_login)
    scan.cli("sync", "hs_oauth", expect=1)
    scan.server.echoing = (403, "json-list", lambda request: not is_login(request))
    scan.cli("sync", "sf_session", expect=1)
    output, stored = "\n".join(scan.output), store_dump(scan.store_url)
    for text in (output, stored):
        found = leaks(text, scan.secrets())
        assert "HUBSPOT_CLIENT_SECRET as 'SEKRET-hcs-8e2b7%26%3Cx%3E'" in found  # form-encoded
        assert "SF_ACCESS_TOKEN as '00D!SEKRET-at-9d0c3'" in found
        assert "credential header 'authorization: Bearer 0'" in found
