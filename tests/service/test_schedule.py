"""Occurrences of a cron schedule in a time zone, across both DST transitions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmkpi.service.schedule import Timetable


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def keyed(occurrences) -> list[tuple[str, str]]:
    return [(o.key, o.at.strftime("%Y-%m-%d %H:%M UTC")) for o in occurrences]


def test_new_york_autumn_01_30_runs_once_at_the_first():
    days = Timetable("30 1 * * *", "America/New_York").between(utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    # 1 November 2026: 01:30 EDT (05:30 UTC), then 01:30 EST (06:30 UTC); only the first
    assert keyed(days) == [("2026-11-01T01:30", "2026-11-01 05:30 UTC"), ("2026-11-02T01:30", "2026-11-02 06:30 UTC")]


def test_berlin_autumn_02_30_runs_once_at_the_first():
    days = Timetable("30 2 * * *", "Europe/Berlin").between(utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    # 25 October 2026: 02:30 CEST (00:30 UTC) and 02:30 CET (01:30 UTC); only the first
    assert keyed(days) == [("2026-10-25T02:30", "2026-10-25 00:30 UTC"), ("2026-10-26T02:30", "2026-10-26 01:30 UTC")]


@pytest.mark.parametrize("zone, cron, start, end, expected", [
    # 8 March 2026 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 runs at the jump, 07:00 UTC
    ("America/New_York", "30 2 * * *", utc(2026, 3, 7, 12), utc(2026, 3, 9, 12),
     [("2026-03-08T02:30", "2026-03-08 07:00 UTC"), ("2026-03-09T02:30", "2026-03-09 06:30 UTC")]),
    # 29 March 2026 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC)
    ("Europe/Berlin", "15 2 * * *", utc(2026, 3, 28, 12), utc(2026, 3, 30, 12),
     [("2026-03-29T02:15", "2026-03-29 01:00 UTC"), ("2026-03-30T02:15", "2026-03-30 00:15 UTC")]),
])
def test_a_wall_time_that_never_happens_runs_when_the_clocks_jump(zone, cron, start, end, expected):
    assert keyed(Timetable(cron, zone).between(start, end)) == expected


def test_every_half_hour_over_the_autumn_night_runs_each_wall_time_once():
    night = Timetable("*/30 * * * *", "America/New_York").between(utc(2026, 11, 1, 4, 40), utc(2026, 11, 1, 7, 40))
    # the repeated 01:00 and 01:30 (EST, 06:00 and 06:30 UTC) are the same occurrences again: not run
    assert keyed(night) == [("2026-11-01T01:00", "2026-11-01 05:00 UTC"), ("2026-11-01T01:30", "2026-11-01 05:30 UTC"),
                            ("2026-11-01T02:00", "2026-11-01 07:00 UTC"), ("2026-11-01T02:30", "2026-11-01 07:30 UTC")]


def test_next_from_inside_the_repeated_hour_skips_what_already_happened():
    timetable = Timetable("30 1 * * *", "America/New_York")
    during_second_0130 = utc(2026, 11, 1, 6, 10)  # 01:10 EST, after 01:30 EDT ran
    assert keyed([timetable.next(during_second_0130)]) == [("2026-11-02T01:30", "2026-11-02 06:30 UTC")]
    assert keyed([timetable.last(during_second_0130)]) == [("2026-11-01T01:30", "2026-11-01 05:30 UTC")]


def test_last_is_at_or_before_the_moment_and_none_when_long_gone():
    assert keyed([Timetable("* * * * *", "UTC").last(utc(2026, 11, 1, 6, 10))]) == [
        ("2026-11-01T06:10", "2026-11-01 06:10 UTC")]
    assert keyed([Timetable("0 0 29 2 *", "Asia/Kolkata").last(utc(2026, 11, 1))]) == [
        ("2024-02-29T00:00", "2024-02-28 18:30 UTC")]
    assert Timetable("0 0 29 2 *", "UTC").last(utc(2026, 11, 1)).key == "2024-02-29T00:00"


def test_weekly_in_a_zone_without_dst():
    mondays = Timetable("0 7 * * 1", "Asia/Kolkata").between(utc(2026, 12, 1), utc(2026, 12, 15))
    assert keyed(mondays) == [("2026-12-07T07:00", "2026-12-07 01:30 UTC"), ("2026-12-14T07:00", "2026-12-14 01:30 UTC")]
