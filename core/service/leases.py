"""Claiming job runs exactly once, and the leases that tell a live run from a dead one.

A run is claimed by inserting its ``job_runs`` row: the unique ``(job, occurrence)`` makes one
of any number of racing replicas win. Claims of one job are serialized (a PostgreSQL advisory
lock, SQLite's write lock), so two runs of a job never overlap. The owner renews its lease
while it works; a lease that runs out means the process died (or lost the database), and the
next look at the job marks the run failed, saying so.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Iterator

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..models import JobRun
from ..redact import redact
from ..store import Store, aware_utc, lock_transaction

RUNS = JobRun.__table__
#: How long a run stays claimed without a renewal; the owner renews it every third of that.
LEASE = timedelta(seconds=60)


def owner_id() -> str:
    """This process, as leases name it: ``host:pid:start`` (its start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"


def busy(store: Store, job: str) -> bool:
    """Whether a run of ``job`` is running (call :func:`expire` first)."""
    with store.engine.connect() as conn:
        return _running(conn, job)


def claim(store: Store, job: str, now: datetime, *, occurrence: str | None = None, due_at: datetime | None = None,
          lease: timedelta = LEASE) -> int | None:
    """Insert a running row for ``job`` (an occurrence, or a run by hand) and return its id; None when the
    occurrence is already claimed or another run of the job is running (call :func:`expire` first)."""
    with store.transaction() as conn:
        lock_transaction(conn, f"job {job}")  # one claim of a job at a time: runs never overlap
        if _running(conn, job):
            return None
        try:
            with conn.begin_nested():
                return conn.execute(RUNS.insert().values(
                    job=job, occurrence=occurrence, due_at=due_at, started_at=now, status="running",
                    lease_owner=owner_id(), lease_expires_at=now + lease)).inserted_primary_key[0]
        except IntegrityError:  # another replica claimed this occurrence first
            return None


def record_skipped(store: Store, job: str, occurrence: str, due_at: datetime, now: datetime, reason: str) -> None:
    """A row for occurrences that will not run (what ``catchup`` left out), so the history shows the gap."""
    with store.transaction() as conn:
        try:
            with conn.begin_nested():
                conn.execute(RUNS.insert().values(job=job, occurrence=occurrence, due_at=due_at, started_at=now,
                                                  finished_at=now, status="skipped", error=reason))
        except IntegrityError:  # another replica recorded it
            pass


def finish(store: Store, run_id: int, status: str, error: str | None, rows_synced: int | None,
           results_saved: int | None, alerts: dict | None = None, report: dict | None = None) -> None:
    with store.transaction() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(
            status=status, error=error and redact(error), finished_at=datetime.now(UTC), lease_expires_at=None,
            rows_synced=rows_synced, results_saved=results_saved, alerts=alerts, report=report))


def expire(store: Store, now: datetime) -> list[int]:
    """Mark failed the running runs whose lease ran out; returns their ids.

    A run of a process on this host that is still alive is left alone: its renewal may be waiting
    for SQLite's write lock behind its own sync.
    """
    with store.transaction() as conn:
        stale = conn.execute(select(RUNS.c.id, RUNS.c.lease_owner, RUNS.c.lease_expires_at)
                             .where(RUNS.c.status == "running", RUNS.c.lease_expires_at <= now)).all()
        expired = []
        for run_id, owner, until in stale:
            if _alive_here(owner):
                continue
            until = aware_utc(until)
            conn.execute(update(RUNS).where(RUNS.c.id == run_id, RUNS.c.status == "running").values(
                status="failed", finished_at=until,  # its last sign of life
                error=f"lease expired at {until:%Y-%m-%d %H:%M:%S} UTC: process {owner} stopped renewing it "
                      "(killed, or lost its database connection)"))
            expired.append(run_id)
    return expired


@contextmanager
def holding(store: Store, run_id: int, lease: timedelta = LEASE) -> Iterator[None]:
    """Renew the run's lease every third of ``lease`` while the block runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease.total_seconds() / 3):
            try:
                with store.transaction() as conn:
                    conn.execute(update(RUNS).where(RUNS.c.id == run_id, RUNS.c.status == "running")
                                 .values(lease_expires_at=datetime.now(UTC) + lease))
            except Exception:  # the next renewal retries; an expired lease is what others will see
                continue

    renewer = threading.Thread(target=renew, name=f"lease-{run_id}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def last_due(store: Store, job: str) -> datetime | None:
    """When the latest recorded occurrence of ``job`` was due (run, failed or skipped); None: never."""
    with store.engine.connect() as conn:
        return aware_utc(conn.execute(select(func.max(RUNS.c.due_at))
                                      .where(RUNS.c.job == job, RUNS.c.occurrence.is_not(None))).scalar())


def _running(conn: Connection, job: str) -> bool:
    """Whether a run of ``job`` is marked running (after :func:`expire`, only live ones are)."""
    return conn.execute(select(RUNS.c.id).where(RUNS.c.job == job, RUNS.c.status == "running")
                        .limit(1)).first() is not None


def _alive_here(owner: str | None) -> bool:
    """Whether ``owner`` is a process of this host that still runs (the same process, not a reused pid)."""
    host, pid, started = ((owner or "").rsplit(":", 2) + ["", "", ""])[:3]
    return host == socket.gethostname() and pid.isdigit() and started != "?" and _started(int(pid)) == started


def _started(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot (Linux /proc); "?" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rpartition(")")[2].split()[19]  # field 22; the command name before ")" may hold spaces
