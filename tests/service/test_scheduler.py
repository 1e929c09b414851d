"""The scheduler with an injected clock: each occurrence once, catch-up, leases, DST, racing replicas."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from conftest import KpiProject
from crmkpi.cli import App
from crmkpi.config import Schedule
from crmkpi.models import JobRun
from crmkpi.service.commands import job
from crmkpi.service.scheduler import Scheduler, plan
from crmkpi.service.schedule import Timetable
from crmkpi.store import Store

RUNS = JobRun.__table__
DEALS = [{"id": "d1", "created_at": "2026-10-20T00:00:00Z", "is_closed": True, "is_won": True}]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def schedule(**settings) -> Schedule:
    return Schedule(metrics=["close_rate"], **{"cron": "* * * * *", **settings})


# --- plan: which due occurrences run -------------------------------------------------------------

def test_a_schedule_that_never_ran_runs_only_a_just_due_occurrence():
    every_hour = Timetable("0 * * * *", "UTC")
    assert [o.key for o in plan(schedule(cron="0 * * * *"), every_hour, None, utc(2026, 12, 5, 10, 20)).run] == [
        "2026-12-05T10:00"]
    late = plan(schedule(cron="0 * * * *", misfire_grace=600), every_hour, None, utc(2026, 12, 5, 10, 20))
    assert (late.run, late.skipped) == ([], 0)  # nothing was missed: it never ran


@pytest.mark.parametrize("catchup, runs, skipped", [
    ("latest", ["10:05"], (4, "10:01", "10:04")),
    ("all", ["10:03", "10:04", "10:05"], (2, "10:01", "10:02")),
    ("none", [], (5, "10:01", "10:05")),  # the latest is 15 minutes late, over the 10-minute grace
])
def test_catchup_after_downtime(catchup, runs, skipped):
    rule = schedule(cron="* * * * *", catchup=catchup, max_catchup=3, misfire_grace=600)
    # last recorded 10:00, then down until 10:20; occurrences every minute until 10:05 only
    timetable = Timetable("0-5 10 * * *", "UTC")
    due = plan(rule, timetable, utc(2026, 12, 5, 10, 0), utc(2026, 12, 5, 10, 20))
    assert [o.key[-5:] for o in due.run] == runs
    assert (due.skipped, due.first_skipped.key[-5:], due.last_skipped.key[-5:]) == skipped


def test_a_week_of_missed_minutes_is_counted_not_listed():
    due = plan(schedule(), Timetable("* * * * *", "UTC"), utc(2026, 11, 28), utc(2026, 12, 5))
    assert [o.key for o in due.run] == ["2026-12-05T00:00"]
    assert (due.skipped, due.first_skipped.key, due.last_skipped.key) == (7 * 1440 - 1, "2026-11-28T00:01",
                                                                          "2026-12-04T23:59")


# --- ticks against a real store ------------------------------------------------------------------

class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def project(kpi_any_store: KpiProject) -> KpiProject:
    kpi_any_store.write("deals", DEALS)
    kpi_any_store.sync()
    return kpi_any_store


def scheduler(project: KpiProject, clock: Clock, schedules: str) -> Scheduler:
    project.configure("schedules:\n" + schedules)
    app = App(debug=False)
    config = app.config(str(project.config))
    made = Scheduler(job(app, config), clock=clock,
                     say=lambda line, level=logging.INFO, **fields: made.events.append((line, level, fields)))
    made.events = []
    return made


def runs(project: KpiProject) -> list[tuple]:
    store = Store(project.store)
    try:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(RUNS.c.job, RUNS.c.occurrence, RUNS.c.status, RUNS.c.error)
                                                   .order_by(RUNS.c.id))]
    finally:
        store.engine.dispose()


MINUTELY = "  minutely:\n    cron: '* * * * *'\n    metrics: [close_rate]\n    period: last-month\n"


def test_each_occurrence_runs_once_and_catchup_records_the_gap(project: KpiProject):
    clock = Clock(utc(2026, 12, 5, 10, 0, 20))
    ticking = scheduler(project, clock, MINUTELY)
    assert [o.status for o in ticking.tick()] == ["success"]
    assert ticking.tick() == []  # same minute: already ran
    clock.now = utc(2026, 12, 5, 10, 3, 5)
    assert [o.status for o in ticking.tick()] == ["success"]
    assert runs(project) == [
        ("minutely", "2026-12-05T10:00", "success", None),
        ("minutely", "2026-12-05T10:02", "skipped", "2 occurrences from 2026-12-05T10:01 to 2026-12-05T10:02 not "
                                                    "run (catchup: latest, misfire_grace: 3600 s)"),
        ("minutely", "2026-12-05T10:03", "success", None),
    ]


def test_what_a_run_says_carries_its_schedule_occurrence_and_outcome(project: KpiProject):
    project.write("deals", [{**DEALS[0], "created_at": "not a date"}])
    ticking = scheduler(project, Clock(utc(2026, 12, 5, 10, 0, 20)),
                        "  minutely:\n    cron: '* * * * *'\n    sync: [crm]\n    metrics: [close_rate]\n")
    assert [o.status for o in ticking.tick()] == ["failed"]
    fields = {"schedule": "minutely", "occurrence": "2026-12-05T10:00", "run_id": 1}
    (started, *_, (ended, level, ended_fields)) = ticking.events
    assert started == ("minutely 2026-12-05T10:00: run 1 started", logging.INFO, {**fields, "status": "running"})
    assert ended.startswith("minutely 2026-12-05T10:00: run 1 failed: sync of crm failed: ") and "not a date" in ended
    assert (level, ended_fields) == (logging.ERROR, {**fields, "status": "failed"})


@pytest.mark.parametrize("zone, cron, start, expected", [
    ("America/New_York", "30 1 * * *", utc(2026, 11, 1, 3), [("2026-11-01T01:30", utc(2026, 11, 1, 5, 30))]),
    ("America/New_York", "30 2 * * *", utc(2026, 3, 8, 5), [("2026-03-08T02:30", utc(2026, 3, 8, 7))]),
    ("Europe/Berlin", "30 2 * * *", utc(2026, 10, 24, 23), [("2026-10-25T02:30", utc(2026, 10, 25, 0, 30))]),
    ("Europe/Berlin", "30 2 * * *", utc(2026, 3, 28, 23), [("2026-03-29T02:30", utc(2026, 3, 29, 1))]),
])
def test_dst_nights_run_once(project: KpiProject, zone, cron, start, expected):
    clock = Clock(start)
    ticking = scheduler(project, clock, f"  nightly:\n    cron: '{cron}'\n    timezone: {zone}\n"
                                        "    metrics: [close_rate]\n")
    ran = []
    while clock.now < start + timedelta(hours=6):  # a tick every 5 minutes through the night
        ran += [(o.run_id, clock.now) for o in ticking.tick()]
        clock.now += timedelta(minutes=5)
    [(key, due)] = expected
    assert [(job, occurrence, status) for job, occurrence, status, _ in runs(project)] == [
        ("nightly", key, "success")]
    [(_, when)] = ran
    assert due <= when < due + timedelta(minutes=5)


def test_a_dead_owners_run_is_failed_and_the_schedule_goes_on(project: KpiProject):
    clock = Clock(utc(2026, 12, 5, 10, 0, 10))
    ticking = scheduler(project, clock, MINUTELY)
    store = ticking.job.store
    with store.transaction() as conn:  # a replica on another host died holding the 09:59 run
        conn.execute(RUNS.insert().values(job="minutely", occurrence="2026-12-05T09:59", due_at=utc(2026, 12, 5, 9, 59),
                                          started_at=utc(2026, 12, 5, 9, 59), status="running",
                                          lease_owner="elsewhere:41:9", lease_expires_at=utc(2026, 12, 5, 10, 0, 5)))
    assert [o.status for o in ticking.tick()] == ["success"]
    assert runs(project) == [
        ("minutely", "2026-12-05T09:59", "failed", "lease expired at 2026-12-05 10:00:05 UTC: process elsewhere:41:9 "
                                                   "stopped renewing it (killed, or lost its database connection)"),
        ("minutely", "2026-12-05T10:00", "success", None),
    ]
    assert ticking.events[0] == ("run 1: its lease expired; marked failed", logging.WARNING,
                                 {"run_id": 1, "status": "failed"})


def test_a_live_run_is_never_overlapped(project: KpiProject):
    clock = Clock(utc(2026, 12, 5, 10, 0, 10))
    ticking = scheduler(project, clock, MINUTELY)
    with ticking.job.store.transaction() as conn:  # another replica is working on 09:59, lease renewed
        conn.execute(RUNS.insert().values(job="minutely", occurrence="2026-12-05T09:59", due_at=utc(2026, 12, 5, 9, 59),
                                          started_at=utc(2026, 12, 5, 9, 59), status="running",
                                          lease_owner="elsewhere:41:9", lease_expires_at=utc(2026, 12, 5, 10, 1)))
    assert ticking.tick() == []
    with ticking.job.store.transaction() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == 1).values(status="success"))
    clock.now = utc(2026, 12, 5, 10, 0, 30)
    assert [o.status for o in ticking.tick()] == ["success"]
    assert [r[1:3] for r in runs(project)] == [("2026-12-05T09:59", "success"), ("2026-12-05T10:00", "success")]


def test_replicas_racing_run_each_occurrence_exactly_once(project: KpiProject):
    clock = Clock(utc(2026, 12, 5, 10, 0, 1))
    replicas = [scheduler(project, clock, MINUTELY) for _ in range(3)]
    for minute in range(5):
        clock.now = utc(2026, 12, 5, 10, minute, 1)
        barrier = threading.Barrier(len(replicas))
        errors: list[BaseException] = []

        def race(replica: Scheduler) -> None:
            barrier.wait()
            try:
                replica.tick()
            except BaseException as exc:  # a failing replica must fail the test, not vanish in its thread
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(r,)) for r in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    assert runs(project) == [("minutely", f"2026-12-05T10:0{m}", "success", None) for m in range(5)]
