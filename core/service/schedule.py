"""When a schedule runs: its occurrences, identified by their wall-clock time in the schedule's zone.

croniter does the cron arithmetic on naive wall-clock times, where a day always has 24 hours;
this module then finds the instant each one happens. Around DST that needs care, and it is where
schedulers fail their users: on the autumn day a 01:30 happens twice (a schedule keyed on its wall
time runs once, at the first), and on the spring day a 02:30 never happens (it runs at the moment
the clocks jump, the next valid time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Iterator
from zoneinfo import ZoneInfo

from croniter import croniter

from ..config import Reporting, Schedule


@dataclass(frozen=True, order=True)
class Occurrence:
    """One run of a schedule: due at ``at`` (UTC), known by its wall-clock time ``local``."""

    at: datetime
    local: datetime  # naive, in the schedule's zone

    @property
    def key(self) -> str:
        """The occurrence's identity (``2026-11-01T01:30``): the same for every replica, whatever its clock."""
        return self.local.isoformat(timespec="minutes")


@dataclass(frozen=True)
class Timetable:
    """A cron expression read in a time zone."""

    cron: str
    timezone: str

    @classmethod
    def of(cls, schedule: Schedule, reporting: Reporting) -> Timetable:
        """A configured schedule's timetable: in its own zone, else the reporting zone."""
        return cls(schedule.cron, schedule.timezone or reporting.timezone)

    def after(self, moment: datetime) -> Iterator[Occurrence]:
        """The occurrences due strictly after ``moment`` (an aware datetime), in order, without end."""
        zone = ZoneInfo(self.timezone)
        # Start an hour early in wall time: after a fall-back the wall clock repeats an hour, and a
        # wall time that comes "again" must be found (and then dropped below, as already due).
        times = croniter(self.cron, moment.astimezone(zone).replace(tzinfo=None) - timedelta(hours=1))
        while True:
            local = times.get_next(datetime)
            at = instant(local, zone)
            if at > moment:
                yield Occurrence(at, local)

    def between(self, start: datetime, end: datetime) -> list[Occurrence]:
        """The occurrences due in ``(start, end]``."""
        found = []
        for occurrence in self.after(start):
            if occurrence.at > end:
                return found
            found.append(occurrence)

    def next(self, moment: datetime) -> Occurrence:
        return next(self.after(moment))

    def last(self, moment: datetime) -> Occurrence | None:
        """The latest occurrence due at or before ``moment`` (None if there is none in the past 5 years)."""
        zone = ZoneInfo(self.timezone)
        times = croniter(self.cron, moment.astimezone(zone).replace(tzinfo=None) + timedelta(hours=1))
        horizon = moment - timedelta(days=5 * 366)
        while True:
            local = times.get_prev(datetime)
            at = instant(local, zone)
            if at <= moment:
                return Occurrence(at, local) if at > horizon else None


def instant(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a wall-clock time happens in ``zone``: the first of two after a fall-back; for a
    time skipped by a spring-forward, the moment the clocks jump past it."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return first
    # Skipped: fold=1 reads it with the offset after the jump, which lands before the jump; fold=0
    # lands after it. The jump is the first instant in between whose wall time is past ``local``.
    low, high = local.replace(tzinfo=zone, fold=1).astimezone(UTC), first
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= local:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)
