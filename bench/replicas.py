"""Two replicas of ``crmkpi serve`` on one PostgreSQL store: every occurrence runs exactly once.

The acceptance test of the scheduler's exactly-once claims, run for real (see bench/README.md
and docs/performance.md): two ``crmkpi serve`` processes on the same config and the same
PostgreSQL database, a schedule every minute for ``--minutes`` minutes. It checks that every
occurrence ran exactly once and that no two runs of a schedule overlapped.

Setup, in a temporary folder and a database of its own (``crmkpi_bench_replicas_<pid>``,
created on the ``--postgres`` server and dropped at the end, also on a failure or Ctrl-C):

* the sample company (``crmkpi sample-data``, ``--deals`` deals) read by a ``files``
  connector ``crm``;
* schedule ``every-minute`` (``* * * * *``): sync ``crm``, then win_rate, close_rate,
  churn_rate and pipeline_value for last-month; schedule ``every-2-minutes``
  (``*/2 * * * *``): sales_volume, avg_deal_size and sales_cycle_length, no sync, so the
  two schedules interleave. Reporting zone UTC; ``misfire_grace: 20``, so the occurrence
  due just before the start does not run (a schedule that never ran runs the latest
  occurrence within its grace) and exactly ``--minutes`` occurrences fall in the window;
* between two occurrences (from 20 s past the minute, when no run is going), every 100th
  deal of ``deals.csv`` gets a new amount and ``updated_at`` (the file is replaced
  atomically), so each sync has rows to write; the files connector skips a file whose bytes
  did not change, and would otherwise read nothing after the first run.

The replicas (``--interval 1 --lease <--lease>``, ports on 127.0.0.1, stderr and stdout
to a log file each) start 25-45 s past a minute and must answer ``/health`` before the next
one; the window holds the next ``--minutes`` minute boundaries. Once the last occurrence's
runs have finished, both get SIGTERM and must exit 0 within the stop timeout (30 s).

With ``--kill``, at occurrence ``(minutes + 1) // 2`` (before which every deal is changed,
so the sync has work) the replica that holds the ``every-minute`` run gets ``kill -9`` while
its sync is running. The other must mark the run failed once its lease runs out and go on;
that one failed run, with the lease-expired reason, is then the only run allowed not to
succeed.

Checks (``job_runs`` and ``deals`` read with psycopg): per schedule, the occurrences recorded
are exactly the expected minute keys, one row each, all ``success`` (none skipped, none by
hand, none left running, none outside the window); no two runs of a schedule overlap in
``[started_at, finished_at]``; both replicas' ``/health`` answered 200 at every poll (every
``--health-every`` s); no ``Traceback``, ``ERROR`` or ``tick failed`` in the logs; both exit 0;
the store's ``deals`` are exactly the final file's (same ids, same amounts: a clean sync).
Reported: runs per replica (``lease_owner`` holds host:pid), lag from ``due_at`` to
``started_at``, run times, rows synced.

Prints Markdown tables and PASS/FAIL lines; exit status 1 on any failure.

Usage: .venv/bin/python bench/replicas.py [--minutes 5] [--deals 2000] [--kill] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "CRMKPI_TEST_POSTGRES_URL"
CONNECTOR = "crm"
EVERY_MINUTE = "every-minute"
EVERY_2 = "every-2-minutes"
GRACE = 20  # misfire_grace of both schedules, seconds
LAUNCH_FROM, LAUNCH_UNTIL = 25, 45  # the replicas start this many seconds past a minute
MUTATE_AFTER = 20  # the data changes no earlier than this many seconds past a minute
CHANGE_EVERY = 100  # every 100th deal changes between two occurrences
STOP_TIMEOUT = 30.0  # crmkpi serve's default --stop-timeout
# Text logs prefix "error: "/"warning: " (older crmkpi: no level); JSON lines carry "level".
LOG_PROBLEMS = re.compile(r"Traceback|\bERROR\b|\berror: |tick failed|\bCRITICAL\b|\bcritical: |\bwarning: |"
                          r'"level": "(error|warning|critical)"')

CONFIG = """\
# Written by bench/replicas.py: two replicas of `crmkpi serve` on one PostgreSQL store.
store: {store}
reporting:
  currency: USD
  timezone: UTC
connectors:
  {connector}:
    type: files
    path: data
    tables:
      accounts: {{extra: [employee_band]}}
      deals: {{extra: [forecast_category]}}
schedules:
  {every_minute}:
    cron: "* * * * *"
    sync: [{connector}]
    metrics: [win_rate, close_rate, churn_rate, pipeline_value]
    period: last-month
    misfire_grace: {grace}
"""
SECOND_SCHEDULE = """\
  {every_2}:
    cron: "*/2 * * * *"
    metrics: [sales_volume, avg_deal_size, sales_cycle_length]
    period: last-month
    misfire_grace: {grace}
"""


# --------------------------------------------------------------------------------------
# The database


def database_urls(base: str, name: str) -> tuple[str, str, str]:
    """(psycopg conninfo of the server's maintenance database, of the bench database, crmkpi's store URL)."""
    from sqlalchemy.engine import make_url

    url = make_url(base)
    if url.get_backend_name() != "postgresql":
        raise SystemExit(f"--postgres: not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    plain = url.set(drivername="postgresql")
    return (plain.render_as_string(hide_password=False),
            plain.set(database=name).render_as_string(hide_password=False),
            url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False))


def create_database(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------
# The replicas and their health


@dataclass
class Replica:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    killed_at: float | None = None
    polls: int = 0
    bad_polls: list[str] = field(default_factory=list)
    max_latency: float = 0.0
    exit_seconds: float | None = None
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self, timeout: float = 5.0) -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=timeout) as answer:
                return answer.status, answer.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except OSError as exc:
            return None, f"{type(exc).__name__}: {exc}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(replica: Replica, crmkpi: str, config: Path, lease: float) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CRMKPI_API_TOKEN"}
    with replica.log.open("wb") as log:
        replica.proc = subprocess.Popen(
            [crmkpi, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(replica.port),
             "--interval", "1", "--lease", f"{lease:g}", "--stop-timeout", f"{STOP_TIMEOUT:g}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)  # Ctrl-C reaches the benchmark only; it stops them


class HealthPoller(threading.Thread):
    """GET /health of every replica not killed on purpose, every ``every`` seconds, until stopped."""

    def __init__(self, replicas: list[Replica], every: float) -> None:
        super().__init__(name="health", daemon=True)
        self.replicas, self.every, self.stop = replicas, every, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for replica in self.replicas:
                if replica.killed_at is not None:
                    continue
                began = time.monotonic()
                status, body = replica.health()
                if replica.killed_at is not None:  # killed while we asked
                    continue
                replica.polls += 1
                replica.max_latency = max(replica.max_latency, time.monotonic() - began)
                if status != 200:
                    replica.bad_polls.append(f"{_clock(time.time())} {status}: {body[:300]}")
            self.stop.wait(self.every)


# --------------------------------------------------------------------------------------
# The data


def change_deals(path: Path, minute: int, every: int) -> int:
    """Give every ``every``-th deal (a different set each minute) a new amount and updated_at; the file
    is replaced atomically, so a sync reads the old bytes or the new. Returns how many changed."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    amount, updated = header.index("amount"), header.index("updated_at")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    changed = 0
    for index, row in enumerate(body):
        if (index + minute) % every == 0:
            row[amount] = f"{(float(row[amount]) if row[amount] else 0.0) + 1:.2f}"
            row[updated] = stamp
            changed += 1
    temporary = path.with_suffix(".csv.tmp")
    with temporary.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *body])
    os.replace(temporary, path)
    return changed


def file_deals(path: Path) -> dict[str, tuple[float | None, bool]]:
    """id -> (amount, is_deleted) of the deals in ``path``."""
    with path.open(newline="") as handle:
        return {row["id"]: (float(row["amount"]) if row["amount"] else None, row["is_deleted"] == "true")
                for row in csv.DictReader(handle)}


# --------------------------------------------------------------------------------------
# Time


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def minute_key(boundary: int) -> str:
    return datetime.fromtimestamp(boundary, UTC).strftime("%Y-%m-%dT%H:%M")


def sleep_until(epoch: float) -> None:
    while (left := epoch - time.time()) > 0:
        time.sleep(min(left, 1.0))


def aligned_launch() -> None:
    """Sleep until LAUNCH_FROM..LAUNCH_UNTIL seconds past a minute."""
    now = time.time()
    second = now % 60
    if second < LAUNCH_FROM:
        sleep_until(now - second + LAUNCH_FROM)
    elif second > LAUNCH_UNTIL:
        sleep_until(now - second + 60 + LAUNCH_FROM)


# --------------------------------------------------------------------------------------
# Watching the runs


class Runs:
    """job_runs and sync_runs, read over one autocommit connection."""

    def __init__(self, conninfo: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        self.conn = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)

    def close(self) -> None:
        self.conn.close()

    def exists(self) -> bool:
        return self.conn.execute("SELECT to_regclass('job_runs') IS NOT NULL AS present").fetchone()["present"]

    def of(self, job: str, key: str) -> list[dict]:
        return self.conn.execute("SELECT * FROM job_runs WHERE job = %s AND occurrence = %s",
                                 (job, key)).fetchall()

    def all(self) -> list[dict]:
        return self.conn.execute("SELECT * FROM job_runs ORDER BY job, started_at, id").fetchall()

    def syncs_running(self, since: datetime) -> list[dict]:
        return self.conn.execute("SELECT * FROM sync_runs WHERE connector = %s AND status = 'running' "
                                 "AND started_at >= %s", (CONNECTOR, since)).fetchall()

    def sync_run(self, run_id: int) -> dict:
        return self.conn.execute("SELECT * FROM sync_runs WHERE id = %s", (run_id,)).fetchone()

    def deals(self) -> dict[str, tuple[float | None, bool]]:
        rows = self.conn.execute("SELECT id, amount, is_deleted FROM deals WHERE source = %s", (CONNECTOR,))
        return {r["id"]: (r["amount"], r["is_deleted"]) for r in rows}


def wait_done(runs: Runs, job: str, key: str, deadline: float) -> dict | None:
    """The finished run of ``job``'s occurrence ``key`` (None at the deadline)."""
    while time.time() < deadline:
        rows = runs.of(job, key) if runs.exists() else []
        if rows and all(r["status"] != "running" for r in rows):
            return rows[0]
        time.sleep(0.2)
    return None


@dataclass
class Kill:
    key: str
    replica: str | None = None
    pid: int | None = None
    run_id: int | None = None
    sync_id: int | None = None
    at: float | None = None
    sync_status_after: str | None = None
    failed_after: float | None = None  # seconds from the kill until the run was marked failed
    problem: str | None = None


def kill_mid_sync(runs: Runs, replicas: list[Replica], kill: Kill, boundary: int, deadline: float) -> None:
    """kill -9 the replica holding ``every-minute``'s run of ``boundary`` while its sync runs."""
    since = datetime.fromtimestamp(boundary - 1, UTC)
    by_pid = {r.pid: r for r in replicas}
    while time.time() < deadline:
        claimed = [r for r in runs.of(EVERY_MINUTE, kill.key) if r["status"] == "running"]
        syncing = runs.syncs_running(since)
        if claimed and syncing:
            pid = owner_pid(claimed[0]["lease_owner"])
            sync = syncing[0]
            if sync["pid"] == pid and pid in by_pid:
                victim = by_pid[pid]
                victim.killed_at = time.time()
                os.kill(pid, signal.SIGKILL)
                kill.replica, kill.pid, kill.run_id, kill.sync_id = victim.name, pid, claimed[0]["id"], sync["id"]
                kill.at = victim.killed_at
                victim.proc.wait()
                kill.sync_status_after = runs.sync_run(sync["id"])["status"]
                return
        elif [r for r in runs.of(EVERY_MINUTE, kill.key) if r["status"] != "running"]:
            kill.problem = "the run finished before its sync was seen running"
            return
        time.sleep(0.02)
    kill.problem = "no running sync of the run seen before the deadline"


# --------------------------------------------------------------------------------------
# The checks


def owner_pid(owner: str | None) -> int | None:
    """The pid in a lease owner ``host:pid:start``."""
    parts = (owner or "").rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} / {max(values):.2f}" if values else "n/a"


def analyse(rows: list[dict], expected: dict[str, list[str]], replicas: list[Replica],
            kill: Kill | None) -> tuple[list[str], list[tuple[str, bool, str]]]:
    """The per-schedule table lines and the (check, passed, detail) list."""
    names = {r.pid: r.name for r in replicas}
    lines = ["| schedule | cron | occurrences expected | ran | success | failed | skipped | duplicates | overlaps "
             "| runs per replica | lag due→start, median / max s | run time, median / max s "
             "| rows synced per run, median / max |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    checks = []
    crons = {EVERY_MINUTE: "* * * * *", EVERY_2: "*/2 * * * *"}
    for job, keys in expected.items():
        mine = [r for r in rows if r["job"] == job]
        by_key: dict[str | None, list[dict]] = {}
        for r in mine:
            by_key.setdefault(r["occurrence"], []).append(r)
        duplicates = {k: len(v) for k, v in by_key.items() if len(v) > 1}
        missing = [k for k in keys if k not in by_key]
        unexpected = sorted(str(k) for k in by_key if k not in keys)
        statuses = [r["status"] for r in mine]
        allowed_failed = [r for r in mine if kill and job == EVERY_MINUTE and r["id"] == kill.run_id]
        not_success = [r for r in mine if r["status"] != "success" and r not in allowed_failed]
        ordered = sorted(mine, key=lambda r: (r["started_at"], r["id"]))
        overlaps, latest = [], None  # latest: the run finishing last among those started before
        for r in ordered:
            if latest is not None and (latest["finished_at"] is None or r["started_at"] < latest["finished_at"]):
                overlaps.append((latest["occurrence"], r["occurrence"]))
            if latest is None or r["finished_at"] is None or \
                    (latest["finished_at"] is not None and r["finished_at"] > latest["finished_at"]):
                latest = r
        per_replica: dict[str, int] = {}
        for r in mine:
            who = names.get(owner_pid(r["lease_owner"]), r["lease_owner"] or "none")
            per_replica[who] = per_replica.get(who, 0) + 1
        lags = [_seconds(r["started_at"], r["due_at"]) for r in mine if r["due_at"]]
        took = [_seconds(r["finished_at"], r["started_at"]) for r in mine
                if r["finished_at"] and r["status"] == "success"]
        synced = [r["rows_synced"] for r in mine if r["status"] == "success" and r["rows_synced"] is not None]
        lines.append(
            f"| {job} | `{crons[job]}` | {len(keys)} | {len(by_key)} | {statuses.count('success')} | "
            f"{statuses.count('failed')} | {statuses.count('skipped')} | {sum(v - 1 for v in duplicates.values())} | "
            f"{len(overlaps)} | {', '.join(f'{n} {c}' for n, c in sorted(per_replica.items()))} | {_fmt(lags)} | "
            f"{_fmt(took)} | "
            + (f"{statistics.median(synced):,.0f} / {max(synced):,}" if synced and job == EVERY_MINUTE else "–")
            + " |")
        checks.append((f"{job}: every expected occurrence ({len(keys)}: {keys[0][11:] if keys else '-'} to "
                       f"{keys[-1][11:] if keys else '-'} UTC) recorded exactly once, none outside the window",
                       not missing and not duplicates and not unexpected,
                       f"missing {missing or 'none'}, duplicated {duplicates or 'none'}, unexpected "
                       f"{unexpected or 'none'}"))
        allowed = " (but the killed run)" if kill and job == EVERY_MINUTE else ""
        checks.append((f"{job}: every run succeeded{allowed}", not not_success,
                       "; ".join(f"{r['occurrence']} {r['status']}: {r['error']}" for r in not_success) or
                       f"{statuses.count('success')} success"))
        checks.append((f"{job}: no two runs overlap", not overlaps, f"overlapping: {overlaps}" if overlaps else
                       f"{len(ordered)} runs, each started after the previous finished"))
    return lines, checks


def _same_deal(stored: tuple[float | None, bool] | None, source: tuple[float | None, bool]) -> bool:
    if stored is None or stored[1] != source[1]:
        return False
    if stored[0] is None or source[0] is None:
        return stored[0] is source[0]
    return abs(stored[0] - source[0]) < 0.005


def log_problems(replicas: list[Replica], kill: Kill | None) -> list[str]:
    """Log lines saying something went wrong, but the expiry of the killed run's lease (expected with --kill)."""
    expected = f"run {kill.run_id}: its lease expired; marked failed" if kill and kill.run_id else None
    found = []
    for replica in replicas:
        text = replica.log.read_text(errors="replace") if replica.log.exists() else ""
        found += [f"{replica.name}: {line}" for line in text.splitlines()
                  if LOG_PROBLEMS.search(line) and not (expected and expected in line)]
    return found


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=5, help="occurrences of the every-minute schedule (default 5)")
    parser.add_argument("--deals", type=int, default=2000, help="deals in the sample data (default 2000)")
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_ENV) or LOCAL_POSTGRES,
                        help=f"a PostgreSQL server URL; its database is only used to create and drop the "
                        f"benchmark's own (default ${POSTGRES_ENV}, else {LOCAL_POSTGRES})")
    parser.add_argument("--lease", type=float, default=15.0, help="crmkpi serve --lease, seconds (default 15)")
    parser.add_argument("--kill", action="store_true", help="kill -9 the replica running the middle occurrence's "
                        "sync; the other must fail that run after the lease and go on")
    parser.add_argument("--no-second-schedule", action="store_true", help="only the every-minute schedule")
    parser.add_argument("--health-every", type=float, default=2.0, help="seconds between /health polls (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (config, data, logs)")
    parser.add_argument("--crmkpi", default=str(Path(sys.executable).with_name("crmkpi")),
                        help="the crmkpi command (default: next to this Python)")
    args = parser.parse_args(argv)
    if args.minutes < 1 or (args.kill and args.minutes < 2):
        parser.error("--minutes must be at least 1 (2 with --kill)")
    if not 1 <= args.lease <= 40:
        parser.error("--lease must be 1 to 40 s: a killed run must be failed before the next occurrence")

    def terminated(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, terminated)
    name = f"crmkpi_bench_replicas_{os.getpid()}"
    admin, conninfo, store_url = database_urls(args.postgres, name)
    work = Path(tempfile.mkdtemp(prefix="crmkpi-bench-replicas-")).resolve()
    replicas = [Replica("A", free_port(), work / "replica-A.log"), Replica("B", free_port(), work / "replica-B.log")]
    created = False
    try:
        create_database(admin, name)
        created = True
        return _run(args, work, conninfo, store_url, replicas)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for replica in replicas:
            if replica.alive():
                replica.proc.terminate()
        for replica in replicas:
            if replica.proc is not None:
                try:
                    replica.proc.wait(STOP_TIMEOUT + 10)
                except subprocess.TimeoutExpired:
                    replica.proc.kill()
                    replica.proc.wait()
        if created:
            drop_database(admin, name)
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path, conninfo: str, store_url: str, replicas: list[Replica]) -> int:
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    began = time.time()
    data = work / "data"
    subprocess.run([args.crmkpi, "sample-data", "--out", str(data), "--deals", str(args.deals)], check=True,
                   stdout=subprocess.DEVNULL)
    config = work / "config.yaml"
    text = CONFIG.format(store=store_url, connector=CONNECTOR, every_minute=EVERY_MINUTE, grace=GRACE)
    if not args.no_second_schedule:
        text += SECOND_SCHEDULE.format(every_2=EVERY_2, grace=GRACE)
    config.write_text(text)
    deals_csv = data / "deals.csv"

    aligned_launch()
    launched = time.time()
    first = (int(launched) // 60 + 1) * 60
    boundaries = [first + 60 * i for i in range(args.minutes)]
    expected = {EVERY_MINUTE: [minute_key(b) for b in boundaries]}
    if not args.no_second_schedule:
        expected[EVERY_2] = [minute_key(b) for b in boundaries if (b // 60) % 2 == 0]
    kill_index = (args.minutes + 1) // 2 - 1 if args.kill else None  # 0-based
    kill = Kill(minute_key(boundaries[kill_index])) if kill_index is not None else None
    print(f"{len(replicas)} replicas of crmkpi serve on {store_url.rsplit('/', 1)[-1]} (lease {args.lease:g} s), "
          f"{args.deals:,} deals; launched {_clock(launched)} UTC, occurrences {expected[EVERY_MINUTE][0][11:]} to "
          f"{expected[EVERY_MINUTE][-1][11:]} UTC" + (f", kill -9 at {kill.key[11:]}" if kill else ""), flush=True)

    for replica in replicas:
        start(replica, args.crmkpi, config, args.lease)
    problems: list[str] = []
    poller = HealthPoller(replicas, args.health_every)
    runs = None
    try:
        for replica in replicas:
            while (status := replica.health(timeout=2)[0]) != 200 and time.time() < first - 5 and replica.alive():
                time.sleep(0.2)
            if status != 200:
                raise SystemExit(f"replica {replica.name} not healthy before the first occurrence "
                                 f"(exit status {replica.proc.poll()}):\n{replica.log.read_text()}")
        ready = time.time()
        print(f"both replicas answer /health 200 at {_clock(ready)} UTC, {ready - launched:.1f} s after launch",
              flush=True)
        poller.start()
        runs = Runs(conninfo)
        for index, boundary in enumerate(boundaries):
            key = minute_key(boundary)
            deadline = boundary + 55
            if index == kill_index:
                sleep_until(boundary - 1)
                kill_mid_sync(runs, replicas, kill, boundary, deadline)
                if kill.problem:
                    problems.append(f"--kill at {key}: {kill.problem}")
                else:
                    print(f"  {key[11:]}: kill -9 replica {kill.replica} (pid {kill.pid}) at {_clock(kill.at)}, "
                          f"holding run {kill.run_id}, sync run {kill.sync_id} "
                          f"({kill.sync_status_after} right after the kill)", flush=True)
            else:
                sleep_until(boundary)
            done = {job: wait_done(runs, job, key, deadline) for job, keys in expected.items() if key in keys}
            if kill and index == kill_index and kill.at is not None and done.get(EVERY_MINUTE):
                kill.failed_after = time.time() - kill.at  # within 0.2 s: wait_done polls that often
            for job, run in done.items():
                if run is None:
                    problems.append(f"{job} {key}: no finished run by {_clock(deadline)} UTC")
                else:
                    print(f"  {key[11:]} {job}: run {run['id']} {run['status']}, "
                          f"{_seconds(run['finished_at'], run['started_at']):.2f} s"
                          + (f", {run['rows_synced']:,} rows synced" if job == EVERY_MINUTE
                             and run["rows_synced"] is not None else "")
                          + (f": {run['error']}" if run["error"] else ""), flush=True)
            if index + 1 < len(boundaries):  # new data for the next occurrence's sync
                sleep_until(boundary + MUTATE_AFTER)
                every = 1 if index + 1 == kill_index else CHANGE_EVERY
                if time.time() < boundaries[index + 1] - 10:
                    change_deals(deals_csv, index, every)
                else:
                    problems.append(f"no time left to change the data before {minute_key(boundaries[index + 1])}")
        stop_by = boundaries[-1] + 60 - 2
        if time.time() > stop_by:
            problems.append(f"the last runs finished after {_clock(stop_by)} UTC: the next occurrence may be claimed")
    finally:
        poller.stop.set()
        if poller.is_alive():
            poller.join()
    # SIGTERM both, together, and time their exits.
    stopping = time.time()
    for replica in replicas:
        if replica.alive() and replica.killed_at is None:
            replica.proc.send_signal(signal.SIGTERM)
    for replica in replicas:
        if replica.killed_at is not None:
            replica.returncode = replica.proc.returncode
            continue
        try:
            replica.returncode = replica.proc.wait(STOP_TIMEOUT + 5)
            replica.exit_seconds = time.time() - stopping
        except subprocess.TimeoutExpired:
            problems.append(f"replica {replica.name} still running {STOP_TIMEOUT + 5:g} s after SIGTERM")
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg())

    rows = runs.all()
    stored = runs.deals()
    killed_sync = runs.sync_run(kill.sync_id) if kill and kill.sync_id else None
    server = runs.conn.execute("SHOW server_version").fetchone()["server_version"].split()[0]
    runs.close()
    final = file_deals(deals_csv)

    lines, checks = analyse(rows, expected, replicas, kill)
    by_hand = [r for r in rows if r["occurrence"] is None]
    other_jobs = [r for r in rows if r["job"] not in expected]
    checks.append(("no run by hand, none of another schedule, none left running",
                   not by_hand and not other_jobs and not any(r["status"] == "running" for r in rows),
                   f"{len(rows)} job_runs rows in all"))
    owners = {r.pid: r.name for r in replicas}
    lines += ["", "| replica | pid | port | runs | /health polls | not 200 | slowest /health s | end | exit status "
              "| exit after SIGTERM s |", "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for replica in replicas:
        count = sum(1 for r in rows if owner_pid(r["lease_owner"]) == replica.pid)
        end = "kill -9" if replica.killed_at is not None else "SIGTERM"
        lines.append(f"| {replica.name} | {replica.pid} | {replica.port} | {count} | {replica.polls} | "
                     f"{len(replica.bad_polls)} | {replica.max_latency:.2f} | {end} | {replica.returncode} | "
                     + (f"{replica.exit_seconds:.2f}" if replica.exit_seconds is not None else "–") + " |")
    unknown = {r["lease_owner"] for r in rows if r["lease_owner"] and owner_pid(r["lease_owner"]) not in owners}
    checks.append(("every run was claimed by one of the two replicas", not unknown,
                   f"unknown owners: {sorted(unknown)}" if unknown else "yes"))
    bad = [f"{r.name} {line}" for r in replicas for line in r.bad_polls]
    checks.append((f"both replicas answered /health 200 at every poll (every {args.health_every:g} s)",
                   not bad and all(r.polls for r in replicas),
                   "; ".join(bad) or ", ".join(f"{r.name}: {r.polls} polls" for r in replicas)))
    logged = log_problems(replicas, kill)
    checks.append(("no Traceback, error, warning or 'tick failed' in the logs"
                   + (" (but the killed run's lease expiry)" if kill else ""), not logged,
                   "; ".join(logged[:10]) or "none"))
    stopped = [r for r in replicas if r.killed_at is None]
    checks.append((f"after SIGTERM, exit status 0 within the stop timeout ({STOP_TIMEOUT:g} s)",
                   all(r.returncode == 0 and r.exit_seconds is not None and r.exit_seconds <= STOP_TIMEOUT
                       for r in stopped),
                   ", ".join(f"{r.name}: {r.returncode}" + (f" after {r.exit_seconds:.2f} s" if r.exit_seconds
                                                              is not None else "") for r in stopped)))
    wrong = sorted(i for i, row in final.items() if not _same_deal(stored.get(i), row))
    extra = sorted(i for i in stored if i not in final)
    deleted = sum(1 for _, is_deleted in final.values() if is_deleted)
    checks.append(("the store's deals are the final file's: same ids, amounts and is_deleted",
                   not wrong and not extra,
                   f"{len(stored):,} stored ({deleted} deleted in the source), {len(final):,} in the file; "
                   f"{len(wrong)} differ {wrong[:5]}, {len(extra)} extra {extra[:5]}"))
    if kill:
        ok = (kill.problem is None and kill.sync_status_after == "running" and kill.run_id is not None)
        failed = next((r for r in rows if r["id"] == kill.run_id), None)
        reason = failed["error"] if failed else None
        ok = ok and failed is not None and failed["status"] == "failed" and "lease expired" in (reason or "")
        survivor = next((r for r in replicas if r.killed_at is None), None)
        marked = survivor is not None and survivor.log.exists() and \
            f"run {kill.run_id}: its lease expired; marked failed" in survivor.log.read_text()
        checks.append((f"--kill: replica killed mid-sync at {kill.key[11:]}; the other marked its run failed "
                       "(lease expired) and went on", ok and marked,
                       kill.problem or f"replica {kill.replica} killed at {_clock(kill.at)} UTC with sync run "
                       f"{kill.sync_id} {kill.sync_status_after}; run {kill.run_id} "
                       f"{failed['status'] if failed else 'missing'}"
                       + (f" {kill.failed_after:.1f} s after the kill" if kill.failed_after else "")
                       + f": {reason}; survivor's log says so: {marked}"))
        # The killed sync rolled back; the next sync, holding the connector's lock, records it as failed.
        sync_ok = killed_sync is not None and killed_sync["status"] == "failed"
        checks.append(("--kill: the killed sync is recorded failed by the next sync", sync_ok,
                       f"sync run {kill.sync_id}: " + (f"{killed_sync['status']}: {killed_sync['error']}"
                                                       if killed_sync else "missing")))
    checks += [(p, False, "") for p in problems]

    print()
    print(f"Started {datetime.fromtimestamp(began, UTC):%Y-%m-%d %H:%M:%S} UTC, {time.time() - began:.0f} s in all; "
          f"Python {sys.version.split()[0]}, PostgreSQL {server}, {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
          f"before {load_before}, after {load_after}")
    print()
    print("\n".join(lines))
    print()
    for check, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {check}" + (f": {detail}" if detail else ""))
    failed = [c for c in checks if not c[1]]
    if failed:
        for replica in replicas:
            print(f"\n--- log of replica {replica.name} ({replica.log}) ---")
            print(replica.log.read_text(errors="replace") if replica.log.exists() else "(none)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
