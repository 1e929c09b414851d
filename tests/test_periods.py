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
        ("previous-quarter", ("2024-01-01", "2024-04-01", "2024-Q1")),
        ("previous-month", ("2024-04-01", "2024-05-01", "2024-04")),
        # trailing windows: whole days ending yesterday, or whole months before this one
        ("last-7-days", ("2024-05-08", "2024-05-15", "2024-05-08..2024-05-14")),
        ("last-1-days", ("2024-05-14", "2024-05-15", "2024-05-14..2024-05-14")),
        ("last-2-weeks", ("2024-05-01", "2024-05-15", "2024-05-01..2024-05-14")),
        ("last-3-months", ("2024-02-01", "2024-05-01", "2024-02-01..2024-04-30")),
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
        ("this-quarter-to-date", ("2024-04-01", "2024-05-16", "QTD 2024-05-15")),
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


def test_trailing_windows_cross_year_boundaries_and_refuse_zero():
    assert span(parse("last-3-months", today=date(2024, 2, 29))) == ("2023-11-01", "2024-02-01",
                                                                      "2023-11-01..2024-01-31")
    assert span(parse("last-10-days", today=date(2024, 1, 3))) == ("2023-12-24", "2024-01-03",
                                                                    "2023-12-24..2024-01-02")
    with pytest.raises(ConfigError, match=r"^period 'last-0-days': the number must be 1 or more$"):
        parse("last-0-days")
    with pytest.raises(ConfigError, match=r"^period 'last-1000-days': expected "):
        parse("last-1000-days")


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


# --- split: a period as a series of smaller ones ------------------------------------


def parts(period: Period, grain: str, cal: Calendar | None = None) -> list[tuple[str, str, str, str | None]]:
    return [(p.start.isoformat(), p.end.isoformat(), p.label, p.grain)
            for p in (cal or Calendar()).split(period, grain)]


def test_split_a_year_into_quarters_and_months():
    year = parse("2024")
    assert parts(year, "quarter") == [
        ("2024-01-01", "2024-04-01", "2024-Q1", "quarter"),
        ("2024-04-01", "2024-07-01", "2024-Q2", "quarter"),
        ("2024-07-01", "2024-10-01", "2024-Q3", "quarter"),
        ("2024-10-01", "2025-01-01", "2024-Q4", "quarter"),
    ]
    months = parts(year, "month")
    assert [m[2] for m in months] == [f"2024-{n:02d}" for n in range(1, 13)]
    assert months[1] == ("2024-02-01", "2024-03-01", "2024-02", "month")  # leap February, whole
    assert months[-1] == ("2024-12-01", "2025-01-01", "2024-12", "month")
    days = Calendar().split(year, "day")
    assert len(days) == 366 and days[59].label == "2024-02-29" and days[59].grain == "day"


def test_split_a_quarter_into_weeks_clips_the_edge_weeks_to_ranges():
    # 1 January 2025 is a Wednesday and 31 March 2025 a Monday: both edge weeks are partial
    weeks = parts(parse("2025-Q1"), "week")
    assert len(weeks) == 14
    assert weeks[0] == ("2025-01-01", "2025-01-06", "2025-01-01..2025-01-05", None)
    assert weeks[1] == ("2025-01-06", "2025-01-13", "2025-W02", "week")
    assert [w[2] for w in weeks[1:13]] == [f"2025-W{n:02d}" for n in range(2, 14)]
    assert weeks[12] == ("2025-03-24", "2025-03-31", "2025-W13", "week")
    assert weeks[13] == ("2025-03-31", "2025-04-01", "2025-03-31..2025-03-31", None)
    # 2024-Q1 starts on a Monday and ends on a Sunday: thirteen whole weeks
    assert [w[2] for w in parts(parse("2024-Q1"), "week")] == [f"2024-W{n:02d}" for n in range(1, 14)]


def test_split_a_range_into_months_clips_the_first_and_last():
    assert parts(parse("2024-01-15..2024-04-10"), "month") == [
        ("2024-01-15", "2024-02-01", "2024-01-15..2024-01-31", None),
        ("2024-02-01", "2024-03-01", "2024-02", "month"),
        ("2024-03-01", "2024-04-01", "2024-03", "month"),
        ("2024-04-01", "2024-04-11", "2024-04-01..2024-04-10", None),
    ]


def test_split_by_a_coarser_or_the_same_grain():
    assert parts(parse("2024-03-15"), "month") == [("2024-03-15", "2024-03-16", "2024-03-15..2024-03-15", None)]
    # ISO week 5 of 2024 straddles January and February
    assert parts(parse("2024-W05"), "month") == [
        ("2024-01-29", "2024-02-01", "2024-01-29..2024-01-31", None),
        ("2024-02-01", "2024-02-05", "2024-02-01..2024-02-04", None),
    ]
    assert Calendar().split(parse("2024-03"), "month") == [parse("2024-03")]
    # the last ISO week of 2024 is 2025-W01: a year split by week ends with a clipped stub
    assert parts(parse("2024"), "week")[-2:] == [
        ("2024-12-23", "2024-12-30", "2024-W52", "week"),
        ("2024-12-30", "2025-01-01", "2024-12-30..2024-12-31", None),
    ]


def test_split_a_fiscal_year_starting_in_april():
    cal = Calendar(4)
    year = cal.parse("2025", today=TODAY)
    assert parts(year, "quarter", cal) == [
        ("2024-04-01", "2024-07-01", "FY2025-Q1", "quarter"),
        ("2024-07-01", "2024-10-01", "FY2025-Q2", "quarter"),
        ("2024-10-01", "2025-01-01", "FY2025-Q3", "quarter"),
        ("2025-01-01", "2025-04-01", "FY2025-Q4", "quarter"),
    ]
    months = parts(year, "month", cal)
    assert [m[2] for m in months] == ["2024-04", "2024-05", "2024-06", "2024-07", "2024-08", "2024-09",
                                      "2024-10", "2024-11", "2024-12", "2025-01", "2025-02", "2025-03"]
    # a calendar quarter is not a fiscal quarter: split by fiscal quarter, it is clipped
    assert parts(cal.parse("2024-02-15..2024-05-14", today=TODAY), "quarter", cal) == [
        ("2024-02-15", "2024-04-01", "2024-02-15..2024-03-31", None),
        ("2024-04-01", "2024-05-15", "2024-04-01..2024-05-14", None),
    ]


def test_split_into_sunday_weeks():
    cal = Calendar(week_start="sunday")
    # January 2024: Monday the 1st .. Wednesday the 31st
    assert parts(cal.parse("2024-01", today=TODAY), "week", cal) == [
        ("2024-01-01", "2024-01-07", "2024-01-01..2024-01-06", None),
        ("2024-01-07", "2024-01-14", "2024-W02", "week"),
        ("2024-01-14", "2024-01-21", "2024-W03", "week"),
        ("2024-01-21", "2024-01-28", "2024-W04", "week"),
        ("2024-01-28", "2024-02-01", "2024-01-28..2024-01-31", None),
    ]
    # December 2022 ends on a Saturday: its last Sunday week is 2022-W53, whole
    assert parts(cal.parse("2022-12", today=TODAY), "week", cal)[-1] == \
        ("2022-12-25", "2023-01-01", "2022-W53", "week")


@pytest.mark.parametrize("fy, week_start", [(1, "monday"), (4, "monday"), (10, "sunday")])
@pytest.mark.parametrize("text", ["2024", "2025-Q1", "2024-02", "2024-W09", "2024-02-29", "2023-11-20..2024-03-03",
                                  "year-to-date", "month-to-date"])
def test_split_parts_are_contiguous_and_cover_the_period_exactly(text, fy, week_start):
    cal = Calendar(fy, week_start)
    period = cal.parse(text, today=date(2024, 2, 29))
    for grain in ("day", "week", "month", "quarter", "year"):
        split = cal.split(period, grain)
        assert split[0].start == period.start and split[-1].end == period.end, (grain, split)
        assert all(a.end == b.start for a, b in zip(split, split[1:])), grain
        for part in split:
            whole = cal.containing(grain, part.start)
            assert whole.start <= part.start < part.end <= whole.end
            if (part.start, part.end) == (whole.start, whole.end):
                assert part == whole  # a whole period keeps its label and grain
            else:
                assert part.grain is None and part.label == f"{part.start}..{part.last_day}"
        assert sum((p.end - p.start).days for p in split) == (period.end - period.start).days


# --- previous and year_ago ----------------------------------------------------------


def around(text: str, *, today: date = TODAY, fy: int = 1, week_start: str = "monday") -> tuple[tuple, tuple]:
    cal = Calendar(fy, week_start)
    period = cal.parse(text, today=today)
    previous, year_ago = cal.previous(period), cal.year_ago(period)
    return ((*span(previous), previous.grain), (*span(year_ago), year_ago.grain))


@pytest.mark.parametrize(
    "text, previous, year_ago",
    [
        ("2024", ("2023-01-01", "2024-01-01", "2023", "year"), ("2023-01-01", "2024-01-01", "2023", "year")),
        ("2024-Q1", ("2023-10-01", "2024-01-01", "2023-Q4", "quarter"),
         ("2023-01-01", "2023-04-01", "2023-Q1", "quarter")),
        ("2024-Q3", ("2024-04-01", "2024-07-01", "2024-Q2", "quarter"),
         ("2023-07-01", "2023-10-01", "2023-Q3", "quarter")),
        ("2024-03", ("2024-02-01", "2024-03-01", "2024-02", "month"), ("2023-03-01", "2023-04-01", "2023-03", "month")),
        ("2024-01", ("2023-12-01", "2024-01-01", "2023-12", "month"), ("2023-01-01", "2023-02-01", "2023-01", "month")),
        ("2024-02", ("2024-01-01", "2024-02-01", "2024-01", "month"), ("2023-02-01", "2023-03-01", "2023-02", "month")),
        ("2024-W01", ("2023-12-25", "2024-01-01", "2023-W52", "week"),
         ("2023-01-02", "2023-01-09", "2023-W01", "week")),
        ("2024-W09", ("2024-02-19", "2024-02-26", "2024-W08", "week"),
         ("2023-02-27", "2023-03-06", "2023-W09", "week")),
        # week 53: the week before 2021-W01 is 2020-W53; a year before 2020-W53 (2019 has 52) is 2019-W52
        ("2021-W01", ("2020-12-28", "2021-01-04", "2020-W53", "week"),
         ("2019-12-30", "2020-01-06", "2020-W01", "week")),
        ("2020-W53", ("2020-12-21", "2020-12-28", "2020-W52", "week"),
         ("2019-12-23", "2019-12-30", "2019-W52", "week")),
        ("2026-W53", ("2026-12-21", "2026-12-28", "2026-W52", "week"),
         ("2025-12-22", "2025-12-29", "2025-W52", "week")),
        # days; 29 February's year-ago is 28 February
        ("2024-03-01", ("2024-02-29", "2024-03-01", "2024-02-29", "day"),
         ("2023-03-01", "2023-03-02", "2023-03-01", "day")),
        ("2024-02-29", ("2024-02-28", "2024-02-29", "2024-02-28", "day"),
         ("2023-02-28", "2023-03-01", "2023-02-28", "day")),
        ("2024-01-01", ("2023-12-31", "2024-01-01", "2023-12-31", "day"),
         ("2023-01-01", "2023-01-02", "2023-01-01", "day")),
        # ranges: the previous one is as long and ends where it starts; a year ago keeps the dates
        ("2024-01-01..2024-03-31", ("2023-10-02", "2024-01-01", "2023-10-02..2023-12-31", None),
         ("2023-01-01", "2023-04-01", "2023-01-01..2023-03-31", None)),
        ("2024-02-01..2024-02-29", ("2024-01-03", "2024-02-01", "2024-01-03..2024-01-31", None),
         ("2023-02-01", "2023-03-01", "2023-02-01..2023-02-28", None)),
        ("2024-02-29..2024-03-05", ("2024-02-23", "2024-02-29", "2024-02-23..2024-02-28", None),
         ("2023-02-28", "2023-03-06", "2023-02-28..2023-03-05", None)),
        ("2024-03-10..2024-03-10", ("2024-03-09", "2024-03-10", "2024-03-09..2024-03-09", None),
         ("2023-03-10", "2023-03-11", "2023-03-10..2023-03-10", None)),
        # to-date windows (today: Wednesday 15 May 2024) are ranges too
        ("month-to-date", ("2024-04-16", "2024-05-01", "2024-04-16..2024-04-30", None),
         ("2023-05-01", "2023-05-16", "2023-05-01..2023-05-15", None)),
        ("quarter-to-date", ("2024-02-16", "2024-04-01", "2024-02-16..2024-03-31", None),
         ("2023-04-01", "2023-05-16", "2023-04-01..2023-05-15", None)),
        ("year-to-date", ("2023-08-18", "2024-01-01", "2023-08-18..2023-12-31", None),
         ("2023-01-01", "2023-05-16", "2023-01-01..2023-05-15", None)),
        ("week-to-date", ("2024-05-10", "2024-05-13", "2024-05-10..2024-05-12", None),
         ("2023-05-13", "2023-05-16", "2023-05-13..2023-05-15", None)),
    ],
)
def test_previous_and_year_ago(text, previous, year_ago):
    assert around(text) == (previous, year_ago)


def test_year_to_date_on_29_february_compares_with_28_february():
    assert around("year-to-date", today=date(2024, 2, 29))[1] == \
        ("2023-01-01", "2023-03-01", "2023-01-01..2023-02-28", None)
    assert around("month-to-date", today=date(2024, 2, 29)) == (
        ("2024-01-03", "2024-02-01", "2024-01-03..2024-01-31", None),
        ("2023-02-01", "2023-03-01", "2023-02-01..2023-02-28", None),
    )


def test_previous_and_year_ago_in_a_fiscal_year():
    assert around("2025", fy=4) == (("2023-04-01", "2024-04-01", "FY2024", "year"),
                                    ("2023-04-01", "2024-04-01", "FY2024", "year"))
    assert around("2025-Q1", fy=4) == (("2024-01-01", "2024-04-01", "FY2024-Q4", "quarter"),
                                       ("2023-04-01", "2023-07-01", "FY2024-Q1", "quarter"))
    assert around("2025-Q4", fy=4) == (("2024-10-01", "2025-01-01", "FY2025-Q3", "quarter"),
                                       ("2024-01-01", "2024-04-01", "FY2024-Q4", "quarter"))


def test_previous_and_year_ago_of_sunday_weeks():
    assert around("2024-W01", week_start="sunday") == (("2023-12-24", "2023-12-31", "2023-W52", "week"),
                                                      ("2023-01-01", "2023-01-08", "2023-W01", "week"))
    # 2022 has a Sunday week 53; 2021 does not
    assert around("2023-W01", week_start="sunday")[0] == ("2022-12-25", "2023-01-01", "2022-W53", "week")
    assert around("2022-W53", week_start="sunday") == (("2022-12-18", "2022-12-25", "2022-W52", "week"),
                                                      ("2021-12-19", "2021-12-26", "2021-W52", "week"))


@pytest.mark.parametrize("grain", ["day", "week", "month", "quarter", "year"])
@pytest.mark.parametrize("fy, week_start", [(1, "monday"), (7, "sunday")])
def test_previous_of_a_whole_period_ends_where_it_starts(grain, fy, week_start):
    cal = Calendar(fy, week_start)
    day = date(2019, 1, 3)
    while day < date(2027, 1, 1):
        period = cal.containing(grain, day)
        previous = cal.previous(period)
        assert previous.end == period.start and previous.grain == grain
        ago = cal.year_ago(period)
        assert ago.grain == grain and ago.start < period.start
        assert 358 <= (period.start - ago.start).days <= 371
        day += timedelta(days=11)
