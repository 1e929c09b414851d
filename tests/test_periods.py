"""Reporting periods: every form ``Calendar.parse`` accepts, fiscal years, week starts, bad input.

"Today" is always passed in explicitly, so nothing here depends on the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from crmkpi.errors import ConfigError
from crmkpi.periods import Calendar, Period

TODAY = date(2024, 5, 15)  # a Wednesday in the second calendar quarter
D = date.fromisoformat


def parse(text: str, *, today: date = TODAY, fy: int = 1, week_start: str = "monday") -> Period:
    return Calendar(fy, week_start).parse(text, today=today)


def span(period: Period) -> tuple[str, str, str]:
    return period.start.isoformat(), period.end.isoformat(), period.label


# --- absolute periods -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024", ("2024-01-01", "2025-01-01", "2024")),
        ("fy2023", ("2023-01-01", "2024-01-01", "2023")),
        ("2024-Q1", ("2024-01-01", "2024-04-01", "2024-Q1")),
        ("2024-q4", ("2024-10-01", "2025-01-01", "2024-Q4")),
        ("2024-03", ("2024-03-01", "2024-04-01", "2024-03")),
        ("2024-12", ("2024-12-01", "2025-01-01", "2024-12")),
        ("2024-02", ("2024-02-01", "2024-03-01", "2024-02")),  # leap February
        ("2024-W05", ("2024-01-29", "2024-02-05", "2024-W05")),  # ISO week: Monday 29 January
        ("2024-w01", ("2024-01-01", "2024-01-08", "2024-W01")),
        ("2020-W53", ("2020-12-28", "2021-01-04", "2020-W53")),  # 2020 has 53 ISO weeks
        ("2025-W01", ("2024-12-30", "2025-01-06", "2025-W01")),  # ISO week 1 may start in December
        ("2024-03-15", ("2024-03-15", "2024-03-16", "2024-03-15")),
        ("2024-02-29", ("2024-02-29", "2024-03-01", "2024-02-29")),
        ("2024-01-01..2024-03-31", ("2024-01-01", "2024-04-01", "2024-01-01..2024-03-31")),
        ("2024-03-15..2024-03-15", ("2024-03-15", "2024-03-16", "2024-03-15..2024-03-15")),
    ],
)
def test_absolute_forms(text, expected):
    assert span(parse(text)) == expected


def test_absolute_forms_ignore_today_case_and_surrounding_space():
    assert parse("  2024-q2 ", today=date(1999, 1, 1)) == parse("2024-Q2", today=date(2031, 7, 4))
    assert span(parse("FY2024-Q2")) == ("2024-04-01", "2024-07-01", "2024-Q2")


def test_period_end_is_exclusive_and_last_day_is_inclusive():
    feb = parse("2024-02")
    assert feb.last_day == date(2024, 2, 29)
    assert (feb.end - feb.start).days == 29
    assert parse("2023-02").last_day == date(2023, 2, 28)
    assert parse("2024-01-01..2024-03-31").last_day == date(2024, 3, 31)


# --- relative periods -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("today", ("2024-05-15", "2024-05-16", "2024-05-15")),
        ("yesterday", ("2024-05-14", "2024-05-15", "2024-05-14")),
        ("this-day", ("2024-05-15", "2024-05-16", "2024-05-15")),
        ("last-day", ("2024-05-14", "2024-05-15", "2024-05-14")),
        ("this-week", ("2024-05-13", "2024-05-20", "2024-W20")),
        ("last-week", ("2024-05-06", "2024-05-13", "2024-W19")),
        ("this-month", ("2024-05-01", "2024-06-01", "2024-05")),
        ("last-month", ("2024-04-01", "2024-05-01", "2024-04")),
        ("this-quarter", ("2024-04-01", "2024-07-01", "2024-Q2")),
        ("last-quarter", ("2024-01-01", "2024-04-01", "2024-Q1")),
        ("this-year", ("2024-01-01", "2025-01-01", "2024")),
        ("last-year", ("2023-01-01", "2024-01-01", "2023")),
        ("LAST-MONTH", ("2024-04-01", "2024-05-01", "2024-04")),
    ],
)
def test_relative_forms(text, expected):
    assert span(parse(text)) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # to-date windows end after today (exclusive end = tomorrow)
        ("week-to-date", ("2024-05-13", "2024-05-16", "WTD 2024-05-15")),
        ("month-to-date", ("2024-05-01", "2024-05-16", "MTD 2024-05-15")),
        ("quarter-to-date", ("2024-04-01", "2024-05-16", "QTD 2024-05-15")),
        ("year-to-date", ("2024-01-01", "2024-05-16", "YTD 2024-05-15")),
    ],
)
def test_to_date_forms(text, expected):
    assert span(parse(text)) == expected


def test_relative_forms_cross_year_boundaries():
    jan = date(2024, 1, 10)
    assert span(parse("last-month", today=jan)) == ("2023-12-01", "2024-01-01", "2023-12")
    assert span(parse("last-quarter", today=jan)) == ("2023-10-01", "2024-01-01", "2023-Q4")
    assert span(parse("last-year", today=jan)) == ("2023-01-01", "2024-01-01", "2023")
    assert span(parse("yesterday", today=date(2024, 1, 1))) == ("2023-12-31", "2024-01-01", "2023-12-31")
    # ISO week 1 of 2025 starts on Monday 30 December 2024
    assert span(parse("this-week", today=date(2024, 12, 31))) == ("2024-12-30", "2025-01-06", "2025-W01")
    assert span(parse("last-week", today=date(2025, 1, 2))) == ("2024-12-23", "2024-12-30", "2024-W52")
    # on the first day of a month, month-to-date is that one day
    assert span(parse("month-to-date", today=date(2024, 3, 1))) == ("2024-03-01", "2024-03-02", "MTD 2024-03-01")


def test_relative_forms_follow_the_given_today():
    assert parse("this-month", today=date(2024, 7, 31)).start == date(2024, 7, 1)
    assert parse("this-month", today=date(2024, 8, 1)).start == date(2024, 8, 1)


# --- fiscal years -----------------------------------------------------------------


def test_fiscal_year_ends_in_the_calendar_year_it_is_named_after():
    assert span(parse("2024", fy=4)) == ("2023-04-01", "2024-04-01", "FY2024")
    assert span(parse("FY2024", fy=4)) == ("2023-04-01", "2024-04-01", "FY2024")
    assert span(parse("2024-Q1", fy=4)) == ("2023-04-01", "2023-07-01", "FY2024-Q1")
    assert span(parse("fy2024-q2", fy=4)) == ("2023-07-01", "2023-10-01", "FY2024-Q2")
    assert span(parse("2024-Q4", fy=4)) == ("2024-01-01", "2024-04-01", "FY2024-Q4")
    assert span(parse("2024-Q3", fy=7)) == ("2024-01-01", "2024-04-01", "FY2024-Q3")
    assert span(parse("2024", fy=12)) == ("2023-12-01", "2024-12-01", "FY2024")


def test_fiscal_year_leaves_months_weeks_and_days_alone():
    assert span(parse("2024-03", fy=4)) == span(parse("2024-03"))
    assert span(parse("2024-W05", fy=4)) == span(parse("2024-W05"))
    assert span(parse("2024-03-15", fy=4)) == span(parse("2024-03-15"))


def test_relative_periods_in_a_fiscal_year():
    # 15 May 2024 with an April start is in FY2025 Q1
    assert span(parse("this-year", fy=4)) == ("2024-04-01", "2025-04-01", "FY2025")
    assert span(parse("last-year", fy=4)) == ("2023-04-01", "2024-04-01", "FY2024")
    assert span(parse("this-quarter", fy=4)) == ("2024-04-01", "2024-07-01", "FY2025-Q1")
    assert span(parse("last-quarter", fy=4)) == ("2024-01-01", "2024-04-01", "FY2024-Q4")
    assert span(parse("year-to-date", fy=4)) == ("2024-04-01", "2024-05-16", "YTD 2024-05-15")
    assert span(parse("quarter-to-date", fy=4)) == ("2024-04-01", "2024-05-16", "QTD 2024-05-15")
    # the day before the fiscal year starts is the last quarter of the previous fiscal year
    assert span(parse("this-quarter", fy=4, today=date(2024, 3, 31))) == ("2024-01-01", "2024-04-01", "FY2024-Q4")
    assert span(parse("this-year", fy=4, today=date(2024, 3, 31))) == ("2023-04-01", "2024-04-01", "FY2024")


@pytest.mark.parametrize("fy", range(1, 13))
def test_fiscal_quarters_tile_the_fiscal_year(fy):
    cal = Calendar(fy)
    year = cal.year(2024)
    quarters = [cal.quarter(2024, q) for q in (1, 2, 3, 4)]
    assert quarters[0].start == year.start == date(2024 if fy == 1 else 2023, fy, 1)
    assert quarters[-1].end == year.end
    assert all(a.end == b.start for a, b in zip(quarters, quarters[1:]))
    # every day of the year is "contained" in the right quarter and year
    day = year.start
    while day < year.end:
        assert cal.containing("year", day) == year
        assert cal.containing("quarter", day) in quarters
        day += timedelta(days=17)


# --- week start -------------------------------------------------------------------


def test_sunday_weeks():
    # 1 January 2024 is a Monday: the Sunday week holding it starts on 31 December 2023
    assert span(parse("2024-W01", week_start="sunday")) == ("2023-12-31", "2024-01-07", "2024-W01")
    assert span(parse("2024-W05", week_start="sunday")) == ("2024-01-28", "2024-02-04", "2024-W05")
    assert span(parse("this-week", week_start="sunday")) == ("2024-05-12", "2024-05-19", "2024-W20")
    assert span(parse("last-week", week_start="sunday")) == ("2024-05-05", "2024-05-12", "2024-W19")
    assert span(parse("week-to-date", week_start="sunday")) == ("2024-05-12", "2024-05-16", "WTD 2024-05-15")
    # a Sunday is the first day of its own week
    assert parse("this-week", week_start="sunday", today=date(2024, 5, 12)).start == date(2024, 5, 12)
    assert parse("this-week", week_start="monday", today=date(2024, 5, 12)).start == date(2024, 5, 6)


def test_sunday_week_holding_new_year_is_week_one_of_the_new_year():
    cal = Calendar(week_start="sunday")
    week = cal.containing("week", date(2024, 1, 3))
    assert span(week) == ("2023-12-31", "2024-01-07", "2024-W01")
    # 2022 ends on a Saturday, so its last Sunday week is its own week 53
    assert span(cal.parse("2022-W53", today=TODAY)) == ("2022-12-25", "2023-01-01", "2022-W53")


@pytest.mark.parametrize("week_start", ["monday", "sunday"])
def test_week_labels_parse_back_to_the_same_week(week_start):
    cal = Calendar(week_start=week_start)
    day = date(2019, 12, 20)
    while day < date(2026, 1, 15):
        week = cal.containing("week", day)
        assert week.start <= day < week.end
        assert (week.end - week.start).days == 7
        assert week.start.weekday() == (0 if week_start == "monday" else 6)
        assert cal.parse(week.label, today=TODAY) == week, day
        day += timedelta(days=3)


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "   ", "2024-13", "2024-00", "2024-Q5", "2024-Q0", "2024-02-30", "2023-02-29", "2024/03", "24",
     "20245", "next-month", "last-decade", "this-fortnight", "2021-W53", "2024-W00", "2024-W54",
     "2024-01-01..", "..2024-01-01", "2024-01-01...2024-02-01", "2024-01..2024-03", "month-to-day"],
)
def test_bad_input_is_a_one_line_error_naming_it_and_the_accepted_forms(text):
    with pytest.raises(ConfigError) as err:
        parse(text)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"period {text!r}:")
    assert "2024-Q1" in message and "2024-01-01..2024-03-31" in message and "month-to-date" in message


@pytest.mark.parametrize("text", ["2024-W00", "2024-W53", "2024-W60", "2023-W53"])
def test_sunday_weeks_outside_the_year_are_rejected(text):
    with pytest.raises(ConfigError, match=r"^period '.*': expected"):
        parse(text, week_start="sunday")


def test_range_errors_say_what_is_wrong():
    with pytest.raises(ConfigError) as err:
        parse("2024-03-31..2024-01-01")
    assert str(err.value) == "period '2024-03-31..2024-01-01': ends before it starts"
    with pytest.raises(ConfigError) as err:
        parse("2024-02-30..2024-03-31")
    assert str(err.value) == "period '2024-02-30..2024-03-31': not a valid date"


# --- instants ---------------------------------------------------------------------


def test_bounds_are_utc_instants_of_local_midnights():
    march = parse("2024-03")
    assert march.bounds() == (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    # New York switched to daylight time on 10 March 2024: UTC-5 at the start, UTC-4 at the end
    start, end = march.bounds("America/New_York")
    assert (start, end) == (datetime(2024, 3, 1, 5, tzinfo=UTC), datetime(2024, 4, 1, 4, tzinfo=UTC))
    assert start.tzinfo is UTC and end.tzinfo is UTC
    start, end = parse("2024").bounds("Asia/Tokyo")
    assert (start, end) == (datetime(2023, 12, 31, 15, tzinfo=UTC), datetime(2024, 12, 31, 15, tzinfo=UTC))
