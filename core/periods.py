"""Reporting periods: parsing ``2024``, ``2024-Q1``, ``2024-03``, ``2024-W05``, ranges and relative names.

Periods are calendar dates in the reporting timezone, half-open ``[start, end)``; quarters
and years follow the fiscal-year start month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from .errors import ConfigError

GRAINS = ("day", "week", "month", "quarter", "year")
#: The years a period may lie in: its previous and year-ago periods, and its bounds in any time zone,
#: must still be dates Python can hold (years 1 to 9999).
MIN_YEAR, MAX_YEAR = 1000, 9998
#: The most parts a series (``--grain``) may have: a century of days is a mistake, not a report.
MAX_PARTS = 5000


@dataclass(frozen=True)
class Period:
    """A span of reporting days, ``start`` to ``end`` (exclusive), as ``crmkpi run --period`` names it."""

    start: date
    end: date  # exclusive
    label: str
    #: The calendar unit this period is one whole of (None for ranges and to-date windows).
    grain: str | None = None

    def bounds(self, timezone: str = "UTC") -> tuple[datetime, datetime]:
        """The period as UTC instants (start inclusive, end exclusive)."""
        tz = ZoneInfo(timezone)
        return (datetime.combine(self.start, datetime.min.time(), tz).astimezone(UTC),
                datetime.combine(self.end, datetime.min.time(), tz).astimezone(UTC))

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)


@dataclass(frozen=True)
class Calendar:
    fiscal_year_start_month: int = 1
    week_start: str = "monday"

    def year(self, fiscal_year: int) -> Period:
        """Fiscal year N ends in calendar year N (FY2024 with an April start: 2023-04-01..2024-03-31)."""
        m = self.fiscal_year_start_month
        start = date(fiscal_year if m == 1 else fiscal_year - 1, m, 1)
        return Period(start, _add_months(start, 12), f"{fiscal_year}" if m == 1 else f"FY{fiscal_year}", "year")

    def quarter(self, fiscal_year: int, q: int) -> Period:
        start = _add_months(self.year(fiscal_year).start, 3 * (q - 1))
        label = f"{fiscal_year}-Q{q}" if self.fiscal_year_start_month == 1 else f"FY{fiscal_year}-Q{q}"
        return Period(start, _add_months(start, 3), label, "quarter")

    def week(self, year: int, week: int) -> Period:
        if self.week_start == "monday":
            start = date.fromisocalendar(year, week, 1)
        else:  # Sunday weeks: week 1 holds January 1st; a week belongs to the year its Saturday is in
            jan1 = date(year, 1, 1)
            start = jan1 - timedelta(days=(jan1.weekday() + 1) % 7) + timedelta(weeks=week - 1)
            if week < 1 or (start + timedelta(days=6)).year != year:
                raise ValueError(f"{year} has no week {week}")
        return Period(start, start + timedelta(days=7), f"{year}-W{week:02d}", "week")

    def containing(self, grain: str, day: date) -> Period:
        if grain == "day":
            return Period(day, day + timedelta(days=1), day.isoformat(), "day")
        if grain == "month":
            start = day.replace(day=1)
            return Period(start, _add_months(start, 1), start.strftime("%Y-%m"), "month")
        if grain == "week":
            offset = day.weekday() if self.week_start == "monday" else (day.weekday() + 1) % 7
            start = day - timedelta(days=offset)
            if self.week_start == "monday":
                year, week = start.isocalendar()[:2]
            else:
                year = (start + timedelta(days=6)).year
                week = (start - self.week(year, 1).start).days // 7 + 1
            return Period(start, start + timedelta(days=7), f"{year}-W{week:02d}", "week")
        starts_next_year = self.fiscal_year_start_month > 1 and day.month >= self.fiscal_year_start_month
        fiscal_year = day.year + starts_next_year
        if grain == "year":
            return self.year(fiscal_year)
        months_in = (day.month - self.fiscal_year_start_month) % 12
        return self.quarter(fiscal_year, months_in // 3 + 1)

    def parse(self, text: str, today: date) -> Period:
        """Parse a period; raises ConfigError naming the accepted forms, or the years a period may lie in."""
        try:
            period = self._parse(text, today)
        except (ValueError, OverflowError):  # a date that cannot exist, e.g. in year 0
            period = None
        if period is None or period.start < date(MIN_YEAR, 1, 1) or period.end > date(MAX_YEAR + 1, 1, 1):
            raise ConfigError(f"period {text!r}: a period must lie within the years {MIN_YEAR} to {MAX_YEAR} "
                              f"(its previous and year-ago periods too)")
        return period

    def _parse(self, text: str, today: date) -> Period:
        spec = text.strip().lower()
        if m := re.fullmatch(r"(?:fy)?(\d{4})", spec):
            return self.year(int(m[1]))
        if m := re.fullmatch(r"(?:fy)?(\d{4})-q([1-4])", spec):
            return self.quarter(int(m[1]), int(m[2]))
        if m := re.fullmatch(r"(\d{4})-(\d{2})", spec):
            if 1 <= int(m[2]) <= 12:
                return self.containing("month", date(int(m[1]), int(m[2]), 1))
        if m := re.fullmatch(r"(\d{4})-w(\d{2})", spec):
            try:
                return self.week(int(m[1]), int(m[2]))
            except ValueError:
                pass
        if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", spec):
            try:
                start, last = date.fromisoformat(m[1]), date.fromisoformat(m[2])
            except ValueError:
                raise ConfigError(f"period {text!r}: not a valid date") from None
            if last < start:
                raise ConfigError(f"period {text!r}: ends before it starts")
            return _range(start, last + timedelta(days=1))
        if m := re.fullmatch(r"\d{4}-\d{2}-\d{2}", spec):
            try:
                return self.containing("day", date.fromisoformat(spec))
            except ValueError:
                pass
        if m := re.fullmatch(r"(this|last|previous)-(day|week|month|quarter|year)|today|yesterday", spec):
            if spec in ("today", "yesterday"):
                return self.containing("day", today - timedelta(days=spec == "yesterday"))
            current = self.containing(m[2], today)
            return current if m[1] == "this" else self.containing(m[2], current.start - timedelta(days=1))
        if m := re.fullmatch(r"(?:this-)?(week|month|quarter|year)-to-date", spec):
            current = self.containing(m[1], today)
            return Period(current.start, today + timedelta(days=1), f"{m[1][0].upper()}TD {today.isoformat()}")
        if m := re.fullmatch(r"last-(\d{1,3})-(days|weeks|months)", spec):
            return self._trailing(int(m[1]), m[2], today, text)
        raise ConfigError(
            f"period {text!r}: expected 2024, 2024-Q1, 2024-03, 2024-W05, 2024-03-15, "
            "2024-01-01..2024-03-31, this-/last-day|week|month|quarter|year, month-to-date or last-7-days"
        )

    def _trailing(self, count: int, unit: str, today: date, text: str) -> Period:
        """The ``count`` whole days or weeks ending yesterday, or the ``count`` whole months before this one:
        a schedule's trailing window never includes a day that is not over."""
        if count < 1:
            raise ConfigError(f"period {text!r}: the number must be 1 or more")
        if unit == "months":
            end = self.containing("month", today).start
            return _range(_add_months(end, -count), end)
        return _range(today - timedelta(days=count * (7 if unit == "weeks" else 1)), today)

    def split(self, period: Period, grain: str) -> list[Period]:
        """The ``grain`` periods covering ``period``, in order; the first and last are clipped to it."""
        parts: list[Period] = []
        day = period.start
        while day < period.end:
            if len(parts) == MAX_PARTS:
                raise ConfigError(f"--grain {grain} splits {period.label} into more than {MAX_PARTS:,} parts: "
                                  f"choose a shorter --period or a coarser --grain")
            whole = self.containing(grain, day)
            if whole.start < period.start or whole.end > period.end:
                whole = _range(max(whole.start, period.start), min(whole.end, period.end))
            parts.append(whole)
            day = whole.end
        return parts

    def previous(self, period: Period) -> Period:
        """The period just before: the previous month for a month, else a window as long, ending where it starts."""
        if period.grain:
            return self.containing(period.grain, period.start - timedelta(days=1))
        return _range(period.start - (period.end - period.start), period.start)

    def year_ago(self, period: Period) -> Period:
        """The same period one year earlier (the same fiscal quarter, week number, or dates)."""
        if period.grain in ("year", "quarter", "month", "day"):
            return self.containing(period.grain, _minus_year(period.start))
        if period.grain == "week":
            number = int(period.label.rsplit("W", 1)[1])
            year = int(period.label[:4]) - 1
            try:
                return self.week(year, number)
            except ValueError:  # week 53 of a year whose predecessor has 52
                return self.week(year, number - 1)
        return _range(_minus_year(period.start), _minus_year(period.end - timedelta(days=1)) + timedelta(days=1))


def _range(start: date, end: date) -> Period:
    return Period(start, end, f"{start.isoformat()}..{(end - timedelta(days=1)).isoformat()}")


def _minus_year(day: date) -> date:
    return day.replace(year=day.year - 1, day=28 if (day.month, day.day) == (2, 29) else day.day)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
