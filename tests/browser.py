"""A real headless Chromium for the dashboard's and the report's tests, and the demo company they look at.

The browser is Debian's ``chromium`` (``.ci/run`` installs it), driven by Playwright with
``executable_path``: Playwright never downloads a browser here. Without one, the browser tests
skip saying so, unless ``CRMKPI_REQUIRE_BROWSER`` is set (CI sets it): then they fail.

Every page is opened in a context that lets only loopback (or, for a report, only its own
``file://``) through and records anything else it was asked for, so a test can assert that no
request left the machine. Screenshots go to ``build/test-artifacts/`` (or ``$CRMKPI_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from conftest import ALL_BUILTINS

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("CRMKPI_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_path() -> str:
    found = os.environ.get("CRMKPI_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "no Chromium: apt-get install chromium (or set CRMKPI_TEST_CHROMIUM)"
    if os.environ.get("CRMKPI_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Guarded:
    """A browser context whose requests are checked: ``left`` lists each one that was not allowed (and
    was aborted), ``seen`` every URL asked for."""

    context: object
    seen: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def page(self):
        return self.context.new_page()


def guarded(browser, *, files: bool = False, **options) -> Guarded:
    """A new context that lets loopback HTTP through (``files``: only ``file://`` URLs instead)."""
    context = browser.new_context(**options)
    watch = Guarded(context)

    def route(route) -> None:
        url = route.request.url
        watch.seen.append(url)
        parts = urlsplit(url)
        allowed = parts.scheme == "file" if files else (parts.scheme in ("http", "https")
                                                         and parts.hostname in LOOPBACK)
        if allowed or parts.scheme == "data":
            route.continue_()
        else:
            watch.left.append(url)
            route.abort()

    context.route("**/*", route)
    return watch


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, path  # a blank page is a few hundred bytes
    return path


def crmkpi(*args: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "crmkpi.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Demo:
    """The demo config (a copy of ``config/demo.yaml``) synced from the bundled sample company."""

    folder: Path
    config: Path
    env: dict[str, str]

    def run(self, *args: str) -> str:
        return crmkpi(*args, env=self.env, cwd=self.folder)

    def results(self, *args: str) -> list[dict]:
        return json.loads(self.run("run", "--config", str(self.config), "--format", "json", *args))


def demo(folder: Path) -> Demo:
    (folder / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "demo.yaml", folder / "config" / "demo.yaml")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "CRMKPI_LOAD_PLUGINS": ALL_BUILTINS,
           "CRMKPI_DEMO_DATA": str(folder / "build" / "demo-data")}
    made = Demo(folder, folder / "config" / "demo.yaml", env)
    made.run("sample-data", "--out", env["CRMKPI_DEMO_DATA"])
    made.run("sync", "--config", str(made.config))
    return made


@contextmanager
def serving(project: Demo, token: str) -> Iterator[str]:
    """``crmkpi serve`` on the project, on a free loopback port, until the block ends; yields its base URL."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "crmkpi.cli", "serve", "--config", str(project.config),
                               "--port", str(port)], cwd=project.folder, env={**project.env, "CRMKPI_API_TOKEN": token},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        finally:
            server.kill()
            server.stderr.close()


def get_json(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)
