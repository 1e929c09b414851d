"""Kill trials: SIGKILL or SIGTERM a real ``crmkpi`` process at a random moment, re-run it, check the store.

A :class:`Workload` is one command (a sync, or ``crmkpi run``) against one store. Its clean run
gives the reference: each table's rows (``synced_at`` aside) or, for ``run``, the result set of a
run id. A trial empties the store the way the workload needs, starts the command in a session of
its own, kills it after a random delay, and checks that

- no process of the killed session is left (zombies aside: they hold nothing), and the killed
  process's stdout/stderr reach end of file (nothing holds them open);
- after SIGTERM the process said ``Terminated.`` (exit 143) and left no ``sync_runs`` row ``running``;
- the re-run finishes within a bound (a hang is a failure, never a stuck test);
- the store then equals the clean run's: no row lost, duplicated (an id the clean run has not) or
  changed; no ``sync_runs`` row ``running``; every run id's results complete, or absent.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, text

from crmkpi.models import ENTITIES
from processes import processes

CRMKPI = Path(sys.executable).parent / "crmkpi"
#: Trials per workload, signal and backend; `make test` runs few, `make reliability` many.
TRIALS_ENV = "CRMKPI_KILL_TRIALS"
#: The seed of the kill delays (default: a new one, printed); set it to replay a failure.
SEED_ENV = "CRMKPI_KILL_SEED"
#: A file to which each workload appends its figures (one line of text), for docs/reliability.md.
REPORT_ENV = "CRMKPI_KILL_REPORT"
#: Resolved now: the tests run in a folder of their own.
REPORT = Path(os.environ[REPORT_ENV]).resolve() if os.environ.get(REPORT_ENV) else None
SIGNALS = (signal.SIGKILL, signal.SIGTERM)
#: How long a killed process's session may take to disappear.
DEATH_BOUND = 1.0
#: The columns of metric_results that identify a result set's content (not its run id or time).
RESULT_COLUMNS = ("metric", "period_start", "period_end", "grain", "segment", "value", "numerator", "denominator",
                  "unit", "note", "target_status")


def trials_per_case(default: int) -> int:
    return int(os.environ.get(TRIALS_ENV, default))


def seeded_random(case: str) -> tuple[random.Random, int]:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"kill trials {case}: seed {seed} (replay: {SEED_ENV}={seed})")
    return random.Random(f"{seed}/{case}"), seed


@dataclass
class Outcome:
    """What the trials of one workload found; every count but ``trials`` and the landings must be zero."""

    trials: Counter = field(default_factory=Counter)  # signal name -> trials
    landed: Counter = field(default_factory=Counter)  # (signal, "mid-run" | "before the handler" | "after the end")
    lost: int = 0
    duplicated: int = 0
    changed: int = 0
    survivors: int = 0
    left_running: int = 0
    hangs: int = 0
    incomplete_results: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.problems.append(message)

    def summary(self) -> str:
        landed = ", ".join(f"{s} {where}: {n}" for (s, where), n in sorted(self.landed.items()))
        return (f"trials {dict(self.trials)}; landed {landed}; lost {self.lost}, duplicated {self.duplicated}, "
                f"changed {self.changed}, surviving processes {self.survivors}, runs left running "
                f"{self.left_running}, hangs {self.hangs}, incomplete result sets {self.incomplete_results}")


@dataclass
class Workload:
    """A command to kill, the store it writes, and how to empty that store between trials."""

    name: str
    store_url: str
    config: Path
    command: tuple[str, ...]  # the arguments after `crmkpi`, e.g. ("sync", "--config", ...)
    env: dict[str, str]
    reset: Callable[[], None]
    #: Compare the entity tables (syncs) or the result sets of run ids (`crmkpi run`).
    compare: str = "tables"
    clean_seconds: float = 0.0
    startup_seconds: float = 0.0
    reference: dict = field(default_factory=dict)

    # -- the clean run ---------------------------------------------------------------------------------

    def run_clean(self) -> None:
        """Time the command (the median of three clean runs) and the interpreter's start-up; keep the reference."""
        durations = []
        for _ in range(3):
            self.reset()
            started = time.monotonic()
            result = subprocess.run([str(CRMKPI), *self.command], env=self.env, capture_output=True, text=True,
                                    timeout=300)
            durations.append(time.monotonic() - started)
            assert result.returncode == 0, result.stderr
        self.clean_seconds = sorted(durations)[1]
        started = time.monotonic()
        subprocess.run([str(CRMKPI), "--version"], env=self.env, capture_output=True, check=True)
        self.startup_seconds = min(time.monotonic() - started, self.clean_seconds)
        self.reference = self.fingerprint()
        assert any(self.reference.values()), "the clean run wrote nothing to compare with"

    def delay(self, rnd: random.Random) -> float:
        """A moment to kill at: a fifth of them in the end of the start-up (before the CLI handles SIGTERM),
        the others while the command works."""
        work = self.clean_seconds - self.startup_seconds
        return self.startup_seconds + rnd.uniform(-0.25, 1.0) * work

    def fingerprint(self) -> dict:
        """tables: table -> id -> digest of the row; results: digest of a result set -> how many run ids."""
        engine = create_engine(self.store_url)
        try:
            with engine.connect() as conn:
                if self.compare == "results":
                    return _result_sets(conn)
                return {table: _rows(conn, table) for table in ENTITIES}
        finally:
            engine.dispose()

    # -- a trial -------------------------------------------------------------------------------------

    def trial(self, sig: signal.Signals, delay: float, outcome: Outcome, label: str) -> None:
        self.reset()
        outcome.trials[sig.name] += 1
        process = subprocess.Popen([str(CRMKPI), *self.command], env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(sig)
        try:  # end of file on both pipes: nothing of the killed tree holds them open
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_session(process.pid)
            _, stderr = process.communicate()
            outcome.fail("hangs", f"{label}: the killed process's output stayed open for 30 s")
        outcome.landed[(sig.name, _landing(process.returncode, sig))] += 1
        survivors = _session_members(process.pid, wait=DEATH_BOUND)
        if survivors:
            _kill_session(process.pid)
            outcome.fail("survivors", f"{label}: processes {survivors} outlived the killed one by {DEATH_BOUND} s")
        if process.returncode == 128 + signal.SIGTERM:
            if stderr.splitlines()[-1:] != ["Terminated."] or "Traceback" in stderr:
                outcome.problems.append(f"{label}: SIGTERM's output is not one line 'Terminated.': {stderr[-300:]!r}")
            if self.compare == "tables" and (running := self.running_runs()):
                outcome.fail("left_running", f"{label}: after SIGTERM, sync runs {running} are still 'running'")
        elif process.returncode not in (0, -sig):
            outcome.problems.append(f"{label}: exit status {process.returncode}: {stderr[-300:]!r}")
        self.rerun(outcome, label)

    def rerun(self, outcome: Outcome, label: str) -> None:
        bound = max(30.0, 5 * self.clean_seconds)
        try:
            result = subprocess.run([str(CRMKPI), *self.command], env=self.env, capture_output=True, text=True,
                                    timeout=bound, start_new_session=True)
        except subprocess.TimeoutExpired:
            outcome.fail("hangs", f"{label}: the re-run did not finish within {bound:.0f} s")
            return
        if result.returncode != 0:
            outcome.problems.append(f"{label}: the re-run failed: {result.stderr[-300:]!r}")
            return
        if self.compare == "tables" and (running := self.running_runs()):
            outcome.fail("left_running", f"{label}: after the re-run, sync runs {running} are still 'running'")
        self.check_store(outcome, label)

    def check_store(self, outcome: Outcome, label: str) -> None:
        now = self.fingerprint()
        if self.compare == "results":
            partial = {digest: n for digest, n in now.items() if digest not in self.reference}
            if partial:
                outcome.fail("incomplete_results", f"{label}: {len(partial)} run ids' result sets differ from a "
                                                   f"clean run's (partial or changed)")
            return
        for table, rows in self.reference.items():
            got = now[table]
            lost = rows.keys() - got.keys()
            extra = got.keys() - rows.keys()
            changed = [i for i in rows.keys() & got.keys() if rows[i] != got[i]]
            for kind, ids in (("lost", lost), ("duplicated", extra), ("changed", changed)):
                if ids:
                    setattr(outcome, kind, getattr(outcome, kind) + len(ids))
                    outcome.problems.append(f"{label}: {table}: {len(ids)} rows {kind}, e.g. {sorted(ids)[:3]}")

    def running_runs(self) -> list[int]:
        engine = create_engine(self.store_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text("SELECT id FROM sync_runs WHERE status = 'running'")).scalars())
        finally:
            engine.dispose()


def run_trials(workload: Workload, trials: int, rnd: random.Random, seed: int) -> Outcome:
    """``trials`` kills per signal, at random moments of a clean run's duration (:meth:`Workload.delay`)."""
    workload.run_clean()
    outcome = Outcome()
    for n in range(trials):
        for sig in SIGNALS:
            delay = workload.delay(rnd)
            workload.trial(sig, delay, outcome, f"{workload.name} trial {n} {sig.name} at {delay:.3f} s (seed {seed})")
    figures = (f"{workload.name}: seed {seed}, clean run {workload.clean_seconds:.2f} s (start-up "
               f"{workload.startup_seconds:.2f} s); {outcome.summary()}; problems {outcome.problems[:5]}")
    print(figures)
    if REPORT is not None:
        with REPORT.open("a", encoding="utf-8") as handle:
            handle.write(figures + "\n")
    return outcome


# -- resetting stores -----------------------------------------------------------------------------


def sqlite_reset(path: Path, template: Path) -> Callable[[], None]:
    """Put ``template`` (a migrated, maybe loaded, store) in place of the store at ``path``."""
    def reset() -> None:
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(template, path)
    return reset


def postgres_reset(url: str, tables: tuple[str, ...]) -> Callable[[], None]:
    """Empty ``tables``; a lock left by a killed sync makes this fail within seconds instead of waiting."""
    def reset() -> None:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
        finally:
            engine.dispose()
    return reset


# -- fingerprints ---------------------------------------------------------------------------------------


def _digest(values) -> str:
    return hashlib.sha256(repr(tuple(values)).encode()).hexdigest()


def _rows(conn, table: str) -> dict[str, str]:
    columns = [c.name for c in ENTITIES[table].__table__.columns if c.name != "synced_at"]
    rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table} ORDER BY source, id")).all()
    at = columns.index("id")
    found: dict[str, str] = {}
    for row in rows:
        key = f"{row[columns.index('source')]}/{row[at]}"
        found[key] = _digest(row) if key not in found else "repeated"
    return found


def _result_sets(conn) -> dict[str, int]:
    rows = conn.execute(text(f"SELECT run_id, {', '.join(RESULT_COLUMNS)} FROM metric_results")).all()
    by_run: dict[str, list[str]] = {}
    for row in rows:
        by_run.setdefault(row[0], []).append(_digest(row[1:]))
    return dict(Counter(_digest(sorted(digests)) for digests in by_run.values()))


# -- processes -----------------------------------------------------------------------------------------


def _landing(returncode: int, sig: signal.Signals) -> str:
    if returncode == 0:
        return "after the end"
    if returncode == -signal.SIGTERM:  # before the CLI installed its handler (interpreter start-up)
        return "before the handler"
    return "mid-run"


def _session_members(session: int, wait: float) -> list[int]:
    """Live (not zombie) processes of ``session``, after waiting up to ``wait`` seconds for them to go."""
    deadline = time.monotonic() + wait
    while True:
        members = [p.pid for p in processes() if p.session == session and p.state != "Z"]
        if not members or time.monotonic() > deadline:
            return members
        time.sleep(0.02)


def _kill_session(session: int) -> None:
    try:
        os.killpg(session, signal.SIGKILL)
    except ProcessLookupError:
        pass
