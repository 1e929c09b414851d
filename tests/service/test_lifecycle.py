"""How ``crmkpi serve`` runs and stops: signals, the stop timeout, a store that goes away."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Callable

import pytest
from sqlalchemy import select

from conftest import ALL_BUILTINS, KpiProject
from crmkpi.errors import StoreError
from crmkpi.models import JobRun
from crmkpi.service.lifecycle import Heartbeat, Stopped, graceful_stop, serve_until
from crmkpi.store import Store


def test_a_stop_request_sets_the_event_and_interrupts_after_the_timeout():
    before = signal.getsignal(signal.SIGTERM)
    with graceful_stop(0.3) as stopping:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        with pytest.raises(Stopped, match=r"^still running 0.3 s after the stop request \(--stop-timeout\)$"):
            time.sleep(10)  # a job that does not finish
        assert stopping.is_set()
        assert 0.35 <= time.monotonic() - started < 3
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_request_interrupts_at_once():
    with graceful_stop(60) as stopping:
        os.kill(os.getpid(), signal.SIGINT)
        assert stopping.is_set()
        with pytest.raises(Stopped, match=r"^SIGINT again$"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)


class FlakyScheduler:
    """Fails its first ticks as a lost database would, then stops the loop."""

    def __init__(self, failures: int, stopping: threading.Event) -> None:
        self.failures, self.stopping, self.ticks = failures, stopping, 0

    def tick(self) -> list:
        self.ticks += 1
        if self.ticks <= self.failures:
            raise StoreError("store postgresql://crmkpi@db/kpi: connection refused")
        self.stopping.set()
        return []


def test_a_lost_store_is_reported_and_retried_with_backoff():
    stopping = threading.Event()
    lines: list[str] = []
    flaky = FlakyScheduler(2, stopping)
    heartbeat = Heartbeat(0.05)
    serve_until(flaky, stopping, heartbeat, lambda line, *level, **fields: lines.append(line))
    assert flaky.ticks == 3
    assert heartbeat.last_tick is not None and heartbeat.last_error is None
    assert lines == [
        "tick failed (1 in a row), retrying in 0.05 s: store postgresql://crmkpi@db/kpi: connection refused",
        "tick failed (2 in a row), retrying in 0.1 s: store postgresql://crmkpi@db/kpi: connection refused",
    ]


def messages(err: str, log_format: str) -> list[str]:
    """The messages of ``crmkpi serve``'s stderr: after the time in text lines; in JSON lines, each a JSON
    object with its time, level and logger."""
    if log_format == "text":
        return [line.split(" ", 1)[1] for line in err.splitlines()]
    events = [json.loads(line) for line in err.splitlines()]
    assert all(datetime.fromisoformat(e["time"]) and e["level"] == "info" and e["logger"] == "crmkpi.serve"
               for e in events), events
    return [e["message"] for e in events]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_runs_a_due_occurrence_and_exits_0_on_sigterm(kpi_any_store: KpiProject, tmp_path, log_format):
    project = kpi_any_store
    project.write("deals", [{"id": "d1", "created_at": "2026-10-20T00:00:00Z", "is_closed": True, "is_won": True}])
    project.configure("schedules:\n  minutely:\n    cron: '* * * * *'\n    sync: [crm]\n    metrics: [close_rate]\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CRMKPI_LOAD_PLUGINS": ALL_BUILTINS}
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "crmkpi.cli", "serve", "--config", str(project.config),
                               "--interval", "0.2", "--port", str(port), "--log-format", log_format],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _statuses(project):
            time.sleep(0.2)
        while time.monotonic() < deadline and _statuses(project) == ["running"]:
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            health = json.load(answer)
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=10)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert _statuses(project) == ["success"]
    lines = messages(err, log_format)
    assert lines[0].startswith("minutely: * * * * * (UTC), next ")
    assert any(line.endswith(": crm: 1 rows changed") for line in lines), lines
    assert any(line.endswith(": run 1 success") for line in lines), lines
    assert lines[-1] == "stopped"
    assert (health["status"], health["store"], list(health["connectors"])) == ("ok", {"reachable": True}, ["crm"])
    assert out == ""
    if log_format == "json":
        [ended] = [json.loads(line) for line in err.splitlines() if json.loads(line)["message"].endswith("success")]
        assert {k: ended[k] for k in ("schedule", "run_id", "status")} == {"schedule": "minutely", "run_id": 1,
                                                                           "status": "success"}


def _statuses(project: KpiProject) -> list[str]:
    store = Store(project.store)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(select(JobRun.__table__.c.status).order_by(JobRun.__table__.c.id)).scalars())
    except Exception:  # not migrated yet: the server is still starting
        return []
    finally:
        store.engine.dispose()


ROOT = Path(__file__).parents[2]


def test_the_systemd_unit_of_the_deployment_guide_starts_and_stops_cleanly(tmp_path):
    """The ExecStart of docs/deployment.md, run as systemd would (its folder, its environment), then stopped
    with SIGTERM: /health answers 200 and the process exits 0."""
    guide = (ROOT / "docs" / "deployment.md").read_text()
    [exec_start] = [line for line in guide.splitlines() if line.startswith("ExecStart=")]
    err = _serves_and_stops(exec_start.removeprefix("ExecStart=/srv/crmkpi/.venv/bin/crmkpi ").split(), {},
                            tmp_path)
    assert err.splitlines()[-1].endswith(" stopped")


def test_the_dockerfile_command_starts_with_its_environment_and_stops_cleanly(tmp_path):
    """What the image runs (its CMD, WORKDIR and ENV, its files where COPY puts them), without a container
    runtime: refused without a token as the image sets a public address, then serving with one."""
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    instructions = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    for *sources, target in [args.split() for op, args in instructions if op == "COPY"]:
        assert all((ROOT / source).exists() for source in sources), sources
        assert target == "./" or sources == [target], (sources, target)  # the same layout as here
    [workdir] = [args for op, args in instructions if op == "WORKDIR"]
    assert workdir == "/srv/crmkpi"  # the repository's root here
    env = dict(pair.split("=", 1) for op, args in instructions if op == "ENV" for pair in args.split())
    [command] = [json.loads(args) for op, args in instructions if op == "CMD"]
    assert command[0] == "crmkpi"
    env["CRMKPI_DATA"] = str(tmp_path / "data")  # the image's /data volume
    refused = _serves_and_stops(command[1:], env, tmp_path, status=1)
    assert refused == "Error: refusing to serve the API on 0.0.0.0 without a token: set service.api_token " \
                      "(or CRMKPI_API_TOKEN), or listen on 127.0.0.1\n"
    err = _serves_and_stops(command[1:], {**env, "CRMKPI_API_TOKEN": "tok-docker-not-a-real-token"}, tmp_path)
    assert json.loads(err.splitlines()[-1])["message"] == "stopped"


def test_serve_on_the_demo_config_exposes_its_kpis_and_guards_the_api(tmp_path):
    """The issue's acceptance: `crmkpi serve --config config/demo.yaml` after `make demo`'s sync and run
    (a copy of the config, so that its ../build is this test's)."""
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "demo.yaml", tmp_path / "config" / "demo.yaml")
    config = str(tmp_path / "config" / "demo.yaml")
    env = {"CRMKPI_DEMO_DATA": str(tmp_path / "build" / "demo-data"), "CRMKPI_API_TOKEN": "tok-demo-not-a-real-token"}
    cli = [sys.executable, "-m", "crmkpi.cli"]
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CRMKPI_LOAD_PLUGINS": ALL_BUILTINS, **env}
    for step in (["sample-data", "--out", env["CRMKPI_DEMO_DATA"], "--deals", "300"], ["sync", "--config", config],
                 ["run", "--config", config, "--period", "2025"]):
        subprocess.run([*cli, *step], env=base, check=True, capture_output=True)
    seen = {}

    def look(port: int) -> None:
        def get(path: str, token: str | None = None) -> tuple[int, bytes]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as refused:
                return refused.code, refused.read()

        seen["metrics"] = get("/metrics")[1].decode()
        seen["no token"] = get("/api/v1/metrics/win_rate/latest")
        seen["latest"] = get("/api/v1/metrics/win_rate/latest", env["CRMKPI_API_TOKEN"])

    _serves_and_stops(["serve", "--config", config], env, tmp_path, while_serving=look)
    samples = dict(line.rsplit(" ", 1) for line in seen["metrics"].splitlines() if line and line[0] != "#")
    [saved] = json.loads(seen["latest"][1])
    assert float(samples["crmkpi_win_rate_ratio"]) == pytest.approx(saved["value"]) and 0 < saved["value"] < 1
    assert {"crmkpi_net_new_revenue_usd", "crmkpi_sales_cycle_length_seconds", "crmkpi_nps_points"} <= set(samples)
    assert seen["no token"] == (401, b'{"detail":"a valid bearer token is required (Authorization: Bearer <token>)"}')


def _serves_and_stops(command: list[str], env: dict[str, str], tmp_path: Path, status: int = 0,
                      while_serving: Callable[[int], None] = lambda port: None) -> str:
    """Run ``crmkpi`` with ``command`` from the repository's root on the sample data; unless it exits
    at once with ``status``, wait for /health to answer 200, call ``while_serving(port)`` and stop it
    with SIGTERM. Its stderr."""
    from crmkpi.sample_data import generate

    if not (tmp_path / "data").exists():
        generate(tmp_path / "data", seed=42, deals=50)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CRMKPI_LOAD_PLUGINS": ALL_BUILTINS,
           "CRMKPI_DATA": str(tmp_path / "data"), "CRMKPI_STORE_URL": f"sqlite:///{tmp_path / 'service.db'}", **env}
    server = subprocess.Popen([sys.executable, "-m", "crmkpi.cli", *command, "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        health = None
        deadline = time.monotonic() + 30
        while health is None and server.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    health = (answer.status, json.load(answer)["status"])
            except OSError:
                time.sleep(0.2)
        if health is not None:
            while_serving(port)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == status, err
    assert status != 0 or health == (200, "ok"), err
    return err
