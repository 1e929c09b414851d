"""A loopback HTTPS server for API emulators: each connector's tests give it an ``app``.

The app is a function from :class:`Request` to :class:`Response`. The server logs every
request (so tests can assert what a sync asked for) and can inject faults: the next
matching requests get a canned error instead of reaching the app.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.body).encode(), headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        return self.body or b"", headers


@dataclass
class Fault:
    response: Response
    times: int
    match: Callable[[Request], bool]


App = Callable[[Request], Response]


class Emulator:
    """``with Emulator(app, tls=ca) as api: api.url ...``; ``tls`` is a ``trustme.CA`` or None (plain HTTP)."""

    def __init__(self, app: App, tls: Any = None) -> None:
        self.app = app
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        #: Called with each request before it is answered (e.g. to kill a client mid-sync).
        self.on_request: Callable[[Request], None] | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.issue_cert("127.0.0.1", "localhost").configure_cert(context)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Emulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, status: int, body: Any = None, *, times: int = 1, headers: dict[str, str] | None = None,
             match: Callable[[Request], bool] = lambda request: True) -> None:
        """Answer the next ``times`` requests that ``match`` with this error instead."""
        with self._lock:
            self.faults.append(Fault(Response(status, body, headers or {}), times, match))

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    def _answer(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            for fault in self.faults:
                if fault.times > 0 and fault.match(request):
                    fault.times -= 1
                    return fault.response
        if self.on_request is not None:
            self.on_request(request)
        return self.app(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: with Nagle's algorithm the body would
            # wait for the client's delayed ACK, about 40 ms per answer.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                try:
                    response = emulator._answer(request)
                except Exception as exc:  # an emulator bug shows up as a 500 naming it, not a hang
                    response = Response(500, {"emulator_error": f"{type(exc).__name__}: {exc}"})
                payload, headers = response.encoded()
                self.send_response(response.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        return Handler


def write_ca_bundle(ca: Any, folder: Path) -> Path:
    """The CA's certificate as a PEM file, for ``ca_bundle:`` or ``REQUESTS_CA_BUNDLE``."""
    path = folder / "emulator-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path
