"""SQL a metric builds on, the same for one cell (:class:`~crmkpi.metrics.MetricContext`) and for a
whole grid (:class:`~crmkpi.grouped.Grid`): portable durations, date-only timestamps, percentiles
found by rank, and conversion to the reporting currency."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Date, DateTime, Select, Table, Time, and_, case, cast, exists, func, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.operators import custom_op

from .models import FxRate


def instant(moment: datetime) -> ColumnElement:
    """A bound instant typed as the store's timestamps, so that SQLite compares it as their stored text."""
    return literal(moment, DateTime())


class SqlKit:
    """Dialect-aware expressions and the reporting day; subclasses provide ``conn``, ``timezone`` (the
    reporting time zone) and ``today`` (the reporting day the run happens on; None: the current one)."""

    conn: Connection
    timezone: str
    today: date | None

    def start_of_today(self) -> datetime:
        """The instant the reporting day of the run begins (UTC)."""
        zone = ZoneInfo(self.timezone)
        today = self.today or datetime.now(zone).date()
        return datetime.combine(today, time(), zone).astimezone(UTC)

    def end_of_today(self) -> datetime:
        """The instant the reporting day after today begins (UTC)."""
        zone = ZoneInfo(self.timezone)
        today = self.today or datetime.now(zone).date()
        return datetime.combine(today + timedelta(days=1), time(), zone).astimezone(UTC)

    def materialized(self, cte):
        """``cte`` computed once, where the database understands ``WITH name AS MATERIALIZED`` (SQLite 3.35+,
        PostgreSQL 12+): a CTE read more than once, or read per row of another query, is otherwise evaluated
        each time."""
        version = self.conn.dialect.server_version_info or ()
        return cte.prefix_with("MATERIALIZED") if version >= ((3, 35) if self.conn.dialect.name == "sqlite"
                                                                else (12,)) else cte

    def scanned(self, column: ColumnElement) -> ColumnElement:
        """``column`` as SQLite cannot read it through an index (``+column``), for a join with a calendar of
        parts: reading each part's rows through the index on ``column`` (most of the table, by a random
        lookup per row) costs several times one scan. PostgreSQL plans this by its statistics."""
        if self.conn.dialect.name != "sqlite":
            return column
        return UnaryExpression(column, operator=custom_op("+"), type_=column.type)

    def days_between(self, start: ColumnElement, end: ColumnElement) -> ColumnElement:
        """``end - start`` in (fractional) days, in the store's SQL dialect."""
        if self.conn.dialect.name == "sqlite":
            return func.julianday(end) - func.julianday(start)
        return func.extract("epoch", end - start) / 86400.0

    def whole_days_between(self, start: ColumnElement, end: ColumnElement) -> ColumnElement:
        """The days from ``start``'s UTC date to ``end``'s (a whole number), in the store's SQL dialect."""
        if self.conn.dialect.name == "sqlite":
            return func.julianday(func.date(end)) - func.julianday(func.date(start))
        return cast(func.timezone("UTC", end), Date) - cast(func.timezone("UTC", start), Date)

    def days_between_dates(self, first: ColumnElement, last: ColumnElement) -> ColumnElement:
        """``last - first`` in whole days, for two date expressions (not timestamps: :meth:`whole_days_between`)."""
        if self.conn.dialect.name == "sqlite":
            return func.julianday(last) - func.julianday(first)
        return last - first  # PostgreSQL: date - date is an integer number of days

    def is_date_only(self, column: ColumnElement) -> ColumnElement:
        """Whether a timestamp is exactly midnight UTC: how the store holds a value that is only a date
        (Salesforce's CloseDate, a files column without a time)."""
        if self.conn.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text
            return func.substr(column, 12) == "00:00:00.000000"
        return cast(func.timezone("UTC", column), Time) == time()


def evaluated_once(rows: Select) -> Select:
    """``rows`` kept a subquery whose columns are computed once per row: SQLite and PostgreSQL otherwise merge a
    subquery into the query reading it and evaluate a column's expression again in every aggregate that reads
    it (four aggregates of one duration took twice the time of one). Neither merges a subquery with an
    ``OFFSET``, and neither writes its rows anywhere for it."""
    return rows.offset(0)


def ranked_pair(rows, value: ColumnElement, percent: int, partition: Sequence[ColumnElement] = ()):
    """From the subquery ``rows``, the (at most) two non-null ``value``s around the ``percent``-th
    percentile of each ``partition`` group: a select of ``*partition, x, n`` ordered by group and rank."""
    ranked = select(*partition, value.label("x"),
                    func.row_number().over(partition_by=partition or None, order_by=value).label("rank"),
                    func.count().over(partition_by=partition or None).label("n")
                    ).select_from(rows).where(value.is_not(None)).subquery("ranked")
    below = (ranked.c.n - 1) * percent // 100 + 1  # the rank at or just below the percentile
    groups = [ranked.c[c.name] for c in partition]
    return (select(*groups, ranked.c.x, ranked.c.n).where(ranked.c.rank.between(below, below + 1))
            .order_by(*groups, ranked.c.rank))


def interpolate(pair: Sequence[Any], percent: int) -> tuple[float | None, int]:
    """(the percentile, the count) from :func:`ranked_pair`'s one or two rows ``(x, n)`` of one group.

    Linear between the two nearest ranks, as PostgreSQL's ``percentile_cont`` and numpy's default;
    the position in integer arithmetic, so SQLite and PostgreSQL agree on the same values."""
    if not pair:
        return None, 0
    count = int(pair[0][-1])
    low, high = float(pair[0][-2]), float(pair[-1][-2])
    return low + ((count - 1) * percent % 100) / 100 * (high - low), count


def fx_rate(table: Table, at: ColumnElement, reporting_currency: str) -> tuple[ColumnElement, ColumnElement]:
    """(whether a row is in a foreign currency without a rate valid on ``at``, the factor converting its
    amounts to ``reporting_currency``: the latest valid rate, or 1)."""
    fx = FxRate.__table__
    valid = (fx.c.currency == table.c.currency, fx.c.valid_from <= at, fx.c.is_deleted.is_(False))
    foreign = func.coalesce(table.c.currency, reporting_currency) != reporting_currency
    rate = select(fx.c.rate_to_reporting).where(*valid).order_by(fx.c.valid_from.desc()).limit(1)
    return and_(foreign, ~exists(select(fx.c.id).where(*valid))), case((foreign, rate.scalar_subquery()), else_=1.0)
