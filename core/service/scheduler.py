"""The scheduler: which occurrences are due, and running each exactly once.

Every tick: runs whose lease ran out are marked failed; then, per schedule, the occurrences due
since its latest recorded one are found, ``catchup`` decides which of them run (the others get
one ``skipped`` row that counts them), and each is claimed before it runs, so replicas never run
one twice and never overlap two runs of a schedule. A schedule that never ran does not replay
the past: only an occurrence within ``misfire_grace`` of now runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from ..config import Schedule
from . import leases
from .jobs import Job, JobOutcome
from .schedule import Occurrence, Timetable


@dataclass
class Plan:
    """What a tick does with one schedule's due occurrences."""

    run: list[Occurrence]
    #: How many due occurrences will not run, the first and the last of them.
    skipped: int = 0
    first_skipped: Occurrence | None = None
    last_skipped: Occurrence | None = None


def plan(schedule: Schedule, timetable: Timetable, last_due: datetime | None, now: datetime) -> Plan:
    """Which occurrences due after ``last_due`` (the latest recorded; None: never ran) run now."""
    grace = timedelta(seconds=schedule.misfire_grace)
    if last_due is None:
        return Plan(timetable.between(now - grace, now)[-1:])
    first, tail, count = _scan(timetable, last_due, now, keep=schedule.max_catchup + 1)
    if schedule.catchup == "none":
        run = [o for o in tail[-1:] if now - o.at <= grace]
    elif schedule.catchup == "latest":
        run = tail[-1:]
    else:
        run = tail[-schedule.max_catchup:]
    if count == len(run):
        return Plan(run)
    # Runs are always the latest occurrences, so the first one due is among the skipped.
    return Plan(run, count - len(run), first, [o for o in tail if o not in run][-1])


def _scan(timetable: Timetable, after: datetime, now: datetime,
          keep: int) -> tuple[Occurrence | None, list[Occurrence], int]:
    """(the first occurrence due in ``(after, now]``, the last ``keep`` of them, how many in all): a
    schedule every minute after a week of downtime is counted, not listed."""
    first, tail, count = None, [], 0
    for occurrence in timetable.after(after):
        if occurrence.at > now:
            break
        first = first or occurrence
        tail = [*tail[-(keep - 1):], occurrence] if keep > 1 else [occurrence]
        count += 1
    return first, tail, count


@dataclass
class Scheduler:
    job: Job
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Told each event: ``say(line, level=logging.INFO, **fields)`` (:func:`.logs.say`).
    say: Callable[..., None] = lambda line, level=logging.INFO, **fields: None
    #: The schedule whose run is in progress (``/health`` reports it).
    running: str | None = None

    def tick(self) -> list[JobOutcome]:
        """Expire dead runs, then run each schedule's due occurrences; returns what ran."""
        store, config = self.job.store, self.job.config
        now = self.clock()
        for run_id in leases.expire(store, now):
            self.say(f"run {run_id}: its lease expired; marked failed", logging.WARNING, run_id=run_id,
                     status="failed")
        outcomes = []
        for name, schedule in config.schedules.items():
            timetable = Timetable.of(schedule, config.reporting)
            if leases.busy(store, name):
                continue  # the next tick sees what is due then
            due = plan(schedule, timetable, leases.last_due(store, name), now)
            if due.skipped:
                reason = (f"{due.skipped} occurrence{'s' * (due.skipped > 1)} from {due.first_skipped.key} to "
                          f"{due.last_skipped.key} not run (catchup: {schedule.catchup}, misfire_grace: "
                          f"{schedule.misfire_grace} s)")
                leases.record_skipped(store, name, due.last_skipped.key, due.last_skipped.at, now, reason)
                self.say(f"{name}: {reason}", logging.WARNING, schedule=name, occurrence=due.last_skipped.key,
                         status="skipped", skipped=due.skipped)
            for occurrence in due.run:
                outcome = self._run(name, occurrence)
                if outcome is None:
                    break
                outcomes.append(outcome)
        return outcomes

    def _run(self, name: str, occurrence: Occurrence) -> JobOutcome | None:
        run_id = leases.claim(self.job.store, name, self.clock(), occurrence=occurrence.key, due_at=occurrence.at,
                              lease=self.job.lease)
        if run_id is None:  # another replica has it
            return None
        fields = {"schedule": name, "occurrence": occurrence.key, "run_id": run_id}
        self.say(f"{name} {occurrence.key}: run {run_id} started", status="running", **fields)
        day = occurrence.at.astimezone(ZoneInfo(self.job.config.reporting.timezone)).date()
        self.running = name
        try:
            outcome = self.job.run(name, run_id, day, say=lambda line: self.say(f"{name} {occurrence.key}: {line}",
                                                                                 **fields))
        finally:
            self.running = None
        self.say(f"{name} {occurrence.key}: run {run_id} {outcome.status}" + (f": {outcome.error}" if outcome.error
                                                                               else ""),
                 logging.ERROR if outcome.error else logging.INFO, status=outcome.status, **fields)
        for problem in outcome.notification_errors:  # the run stands; the channel's failure is reported
            self.say(f"{name} {occurrence.key}: notification not sent: {problem}", logging.WARNING, **fields)
        return outcome
