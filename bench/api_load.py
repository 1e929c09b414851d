"""API load test: ``crmkpi serve``'s ``/api/v1`` under 100 concurrent clients on loopback.

Target (issue 12): latest values and a series, each for ``--duration`` seconds (30) with
``--clients`` (100) concurrent keep-alive connections: zero errors, at least 500 requests/s and a
99th-percentile latency under 100 ms. Measured side by side in the same run against a baseline:
the same server answering ``/api/v1/metrics/{id}`` (one metric's description, which never reads
the store), so the ratio shows what reading and computing KPIs costs on top of the web stack.

Set-up (untimed): the sample company (``crmkpi sample-data``, ``--deals``) synced into a new
SQLite store, ``crmkpi run`` saving a year of results, then ``crmkpi serve`` with a bearer token,
as a child process. The load comes from this process: one asyncio event loop, ``--clients``
connections, each sending its next request as soon as the previous answer is read (closed
loop, no think time), HTTP/1.1 written and parsed by hand so the client costs little CPU.

Phases, one after the other, on the same server: ``baseline``, ``latest``
(``/api/v1/metrics/win_rate/latest``), ``series`` (win rate in 2025 by month and team, with
both comparisons), ``mixed`` (each request picks one of a dashboard's URLs: latest values and
series of several metrics, grains and segments), and ``saving``: ``mixed`` while another process
saves a new run of those metrics every ``--save-every`` seconds, as a schedule does, so every
kept answer goes stale and is computed again under load; and ``dashboard``: the dashboard's HTML
pages (the overview, filtered, and KPI pages with breakdowns and explain), which have no target. Every answer must be 200 and
byte-identical to the answer fetched once before the phase (in ``saving``: equal to it but for
the run id and the time it was computed); anything else counts as an error.

Reported per phase: requests, errors, requests/s, latency p50/p90/p99/max, how long the first
answer to each URL took (computed, not kept yet), the CPU seconds the server and the client
used, and the machine's CPU stall (``/proc/pressure/cpu``): the client and the saving runs share
the two CPUs with the server, so the figures are a floor for a server on its own.

Usage: .venv/bin/python bench/api_load.py [--clients 100] [--duration 30] [--deals 2000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRMKPI = [sys.executable, "-m", "crmkpi.cli"]
MIN_RPS, MAX_P99_MS = 500, 100

SERIES = "/api/v1/metrics/win_rate/series?period=2025&grain=month&segment=team&compare=both"
PHASES = {
    "baseline": ["/api/v1/metrics/win_rate"],
    "latest": ["/api/v1/metrics/win_rate/latest"],
    "series": [SERIES],
    "mixed": [f"/api/v1/metrics/{metric}/latest" for metric in
              ("win_rate", "close_rate", "sales_cycle_length", "churn_rate", "nps", "pipeline_value")]
             + [SERIES, "/api/v1/metrics/close_rate/series?period=2025&grain=quarter&segment=owner",
                "/api/v1/metrics/sales_cycle_length/series?period=2025&grain=month",
                "/api/v1/metrics/churn_rate/series?period=2025&grain=quarter&compare=previous",
                "/api/v1/metrics/pipeline_value/series?period=2025-Q4&grain=month&segment=region"],
}
PHASES["saving"] = PHASES["mixed"]
#: The dashboard's pages (HTML, kept like the API's answers): the overview, filtered, and KPI pages.
PHASES["dashboard"] = ["/", "/?segment=team%3Demea", "/?period=2025-Q4&grain=week", "/kpi/win_rate?by=owner",
                       "/kpi/net_new_revenue?by=team&sort=label", "/kpi/churn_rate?by=region&explain=all"]
TARGETED = ("latest", "series", "mixed")
VOLATILE = ("id", "run_id", "computed_at")  # what a new run of the same metrics on the same data changes


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    first_answer: float = 0.0
    saves: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    stall: float = 0.0

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else float("nan")


# --- the client -------------------------------------------------------------------------------------

def request_bytes(path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Accept: application/json\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    length = {k.strip().lower(): v.strip() for k, v in headers.items()}.get("content-length")
    if length is None:
        raise ValueError("no Content-Length")
    return status, await reader.readexactly(int(length))


async def client(port: int, paths: list[str], expected: dict[str, bytes], token: str, deadline: float,
                 phase: Phase, rng: random.Random) -> None:
    requests = {path: request_bytes(path, token) for path in paths}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            path = rng.choice(paths)
            started = time.perf_counter()
            try:
                writer.write(requests[path])
                status, body = await read_response(reader)
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                phase.error(f"{type(exc).__name__}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if status != 200:
                phase.error(f"HTTP {status}")
            elif body != expected[path] and not (phase.name == "saving" and same_values(body, expected[path])):
                phase.error("answer differs from the one fetched before the phase")
            else:
                phase.latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


def same_values(body: bytes, expected: bytes) -> bool:
    def values(answer: bytes) -> list:
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in json.loads(answer)]
    return values(body) == values(expected)


async def save_runs(config: Path, every: float, deadline: float, phase: Phase) -> None:
    """A new saved run of the mixed phase's metrics every ``every`` seconds until ``deadline``."""
    metrics = sorted({path.split("/")[4] for path in PHASES["mixed"]})
    while time.perf_counter() + every < deadline:
        await asyncio.sleep(every)
        saving = await asyncio.create_subprocess_exec(
            *CRMKPI, "run", "--config", str(config), "--period", "2025", "--grain", "quarter",
            *[arg for metric in metrics for arg in ("--metric", metric)], stdout=asyncio.subprocess.DEVNULL)
        if await saving.wait() != 0:
            phase.error(f"crmkpi run exited with status {saving.returncode}")
        phase.saves += 1


async def load(port: int, phase: Phase, paths: list[str], expected: dict[str, bytes], token: str,
               args: argparse.Namespace, config: Path) -> None:
    deadline = time.perf_counter() + args.duration
    started = time.perf_counter()
    writer = [save_runs(config, args.save_every, deadline, phase)] if phase.name == "saving" else []
    await asyncio.gather(*(client(port, paths, expected, token, deadline, phase, random.Random(i))
                           for i in range(args.clients)), *writer)
    phase.seconds = time.perf_counter() - started


# --- measuring ----------------------------------------------------------------------------------------

def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_stall_us() -> int:
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return 0
    return int(some.rsplit("total=", 1)[1])


def get(port: int, path: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def run_phase(server: subprocess.Popen, port: int, token: str, name: str, args: argparse.Namespace,
              config: Path) -> Phase:
    phase, paths, expected = Phase(name), PHASES[name], {}
    for path in paths:  # also warms what the server keeps between requests, as a dashboard's first load does
        started = time.perf_counter()
        status, body = get(port, path, token)
        phase.first_answer = max(phase.first_answer, time.perf_counter() - started)
        if status != 200:
            sys.exit(f"{path}: HTTP {status}: {body[:300]!r}")
        expected[path] = body
    server_cpu, client_cpu, stall = process_cpu(server.pid), time.process_time(), cpu_stall_us()
    asyncio.run(load(port, phase, paths, expected, token, args, config))
    phase.server_cpu = process_cpu(server.pid) - server_cpu
    phase.client_cpu = time.process_time() - client_cpu
    phase.stall = (cpu_stall_us() - stall) / 1e6 / phase.seconds
    return phase


# --- set-up -------------------------------------------------------------------------------------------

def crmkpi(*args: str) -> None:
    done = subprocess.run([*CRMKPI, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"crmkpi {' '.join(args)} exited with status {done.returncode}:\n{done.stderr}")


def prepare(work: Path, deals: int, port: int, token: str) -> Path:
    data = work / "data"
    crmkpi("sample-data", "--out", str(data), "--deals", str(deals))
    config = work / "service.yaml"
    config.write_text(f"""\
store: sqlite:///{work / 'store.db'}
reporting: {{currency: USD, timezone: UTC, default_period: "2025"}}
connectors:
  crm:
    type: files
    path: {data}
    tables:
      accounts: {{extra: [employee_band]}}
      deals: {{extra: [forecast_category]}}
service: {{host: 127.0.0.1, port: {port}, api_token: {token}}}
""")
    crmkpi("sync", "--config", str(config))
    crmkpi("run", "--config", str(config), "--period", "2025", "--grain", "quarter")
    return config


def start_server(config: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    server = subprocess.Popen([*CRMKPI, "serve", "--config", str(config)], stdout=subprocess.DEVNULL,
                              stderr=log.open("w"), env={**os.environ, "CRMKPI_API_TOKEN": token})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"crmkpi serve exited with status {server.returncode}:\n{log.read_text()}")
        try:
            if get(port, "/health", token)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.kill()
    sys.exit(f"crmkpi serve did not become healthy in 60 s:\n{log.read_text()}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- report -------------------------------------------------------------------------------------------

def report(phases: list[Phase], args: argparse.Namespace) -> bool:
    base = phases[0]
    print(f"\n{args.clients} clients, {args.duration:g} s per phase, {args.deals} deals; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| phase | requests | errors | requests/s | × baseline | p50 ms | p90 ms | p99 ms | max ms "
          "| first answer ms | server CPU s | client CPU s | CPU stall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in phases:
        print(f"| {p.name}{f' ({p.saves} runs saved)' if p.saves else ''} | {p.requests} "
              f"| {sum(p.errors.values())} | {p.rps:.0f} | {p.rps / base.rps:.2f} "
              f"| {p.percentile(.5):.1f} | {p.percentile(.9):.1f} | {p.percentile(.99):.1f} "
              f"| {max(p.latencies, default=0) * 1000:.1f} | {p.first_answer * 1000:.0f} | {p.server_cpu:.1f} "
              f"| {p.client_cpu:.1f} | {p.stall:.0%} |")
    ok = True
    print("\n| target | measured | result |\n|---|---|---|")
    for p in phases:
        checks = [("zero errors", f"{sum(p.errors.values())} {dict(p.errors) or ''}".strip(), not p.errors)]
        if p.name in TARGETED:
            checks += [(f"≥ {MIN_RPS} requests/s", f"{p.rps:.0f}/s", p.rps >= MIN_RPS),
                       (f"p99 < {MAX_P99_MS} ms", f"{p.percentile(.99):.1f} ms", p.percentile(.99) < MAX_P99_MS)]
        for target, measured, passed in checks:
            print(f"| {p.name}: {target} | {measured} | {'PASS' if passed else 'FAIL'} |")
            ok &= passed
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--deals", type=int, default=2000)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated, from " + ", ".join(PHASES))
    parser.add_argument("--save-every", type=float, default=5.0, metavar="SECONDS",
                        help="in the saving phase, how often a new run is saved")
    parser.add_argument("--work", type=Path, help="keep the store and the server's log here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="crmkpi-api-load-"))
    work.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_urlsafe(24)
    config = prepare(work, args.deals, port, token)
    server = start_server(config, port, token, work / "serve.log")
    try:
        phases = [run_phase(server, port, token, name, args, config)
                  for name in ["baseline", *[n for n in args.phases.split(",") if n != "baseline"]]]
    finally:
        server.send_signal(signal.SIGTERM)
        status = server.wait(60)
        if status != 0:
            print(f"crmkpi serve exited with status {status}; log in {work / 'serve.log'}")
    ok = report(phases, args) and status == 0
    if not args.work:
        shutil.rmtree(work)
    sys.exit(0 if ok or not args.check else 1)


if __name__ == "__main__":
    main()
