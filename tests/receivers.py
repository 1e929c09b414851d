"""Loopback receivers for notifications: an HTTP server that records the posts it gets (and answers with the
statuses a test asks for), and an SMTP server that records the mail it accepts."""

from __future__ import annotations

import base64
import json
import re
import socketserver
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietServer(ThreadingHTTPServer):
    """Keeps a request's error (a client that hung up first) instead of printing it: printed from the server's
    thread, it landed in the stderr of a CLI command a test was running (CliRunner swaps ``sys.stderr``)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.errors: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(traceback.format_exc())


class HttpReceiver:
    """``statuses``: the answer to each request in turn (then 200); ``delay``: seconds before answering."""

    def __init__(self, statuses: tuple[int, ...] = (), delay: float = 0.0, echo: bool = False) -> None:
        self.posts: list[dict[str, Any]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                time.sleep(delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                # a broken gateway that reflects the request: the URL's secret path comes back
                answer = (f"failed for {self.path}" if echo else "ok").encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink(socketserver.ThreadingTCPServer):
    """Enough SMTP for smtplib: EHLO, AUTH PLAIN (``login``: the user and password it accepts), MAIL, RCPT,
    DATA, QUIT. ``mail``: (from, recipients, the message's bytes) for each message accepted."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpSession)
        self.login = login
        self.mail: list[tuple[str, list[str], bytes]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def __enter__(self) -> SmtpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()


class _SmtpSession(socketserver.StreamRequestHandler):
    server: SmtpSink

    def say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.say("220 sink ESMTP")
        sender, recipients = "", []
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.say("250-sink")
                self.say("250 AUTH PLAIN")
            elif verb == "AUTH":
                parts = command.split()
                if len(parts) < 3:
                    self.say("334 ")
                    parts.append(self.rfile.readline().strip().decode())
                _, user, password = base64.b64decode(parts[2]).decode().split("\0")
                self.say("235 ok" if self.server.login == (user, password) else "535 5.7.8 authentication failed")
            elif verb == "MAIL":
                sender = re.search(r"<([^>]*)>", command)[1]
                recipients = []
                self.say("250 ok")
            elif verb == "RCPT":
                recipients.append(re.search(r"<([^>]*)>", command)[1])
                self.say("250 ok")
            elif verb == "DATA":
                self.say("354 end with .")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                self.server.mail.append((sender, recipients, b"".join(lines)))
                self.say("250 queued")
            elif verb == "QUIT":
                self.say("221 bye")
                return
            else:
                self.say("250 ok")
