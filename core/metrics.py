"""The metric plugin API: what a metric declares and what its ``compute`` receives.

A :class:`Metric` declares what it measures (the docs' metric reference is generated
from these declarations) and a ``compute`` function that runs SQL through SQLAlchemy
Core on the store and returns a :class:`Value`. The engine (:mod:`crmkpi.engine`)
calls it once per period and segment.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Callable, Literal

from sqlalchemy import Select, Table, and_, func, or_, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from . import segments
from .errors import MetricError
from .grouped import Cell, Grid, left_out_note
from .models import TABLES
from .sqlkit import SqlKit, fx_rate, interpolate, ranked_pair
from .periods import Period

Unit = Literal["ratio", "currency", "days", "hours", "months", "count", "score", "points"]



@dataclass(frozen=True)
class Param:
    """A typed metric parameter: ``--param name=value`` or ``metrics.<id>.params`` in config."""

    name: str
    type: type
    default: Any
    description: str
    choices: tuple[Any, ...] | None = None
    #: What else a value must satisfy: returns the problem with a value (None: fine), checked with the
    #: type before anything is computed (``crmkpi validate`` and ``crmkpi run`` report it).
    check: Callable[[Any], str | None] | None = None

    def coerce(self, metric_id: str, raw: Any) -> Any:
        try:
            if self.type is bool and isinstance(raw, str):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1", "yes")
            else:
                value = self.type(raw)
        except (TypeError, ValueError, OverflowError):
            raise MetricError(f"{metric_id}: param {self.name}: expected {self.type.__name__}, got {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value):  # JSON (output, metric_results) has no NaN
            raise MetricError(f"{metric_id}: param {self.name}: expected a finite number, got {raw!r}")
        if self.choices and value not in self.choices:
            options = ", ".join(map(str, self.choices))
            raise MetricError(f"{metric_id}: param {self.name}: {value!r} is not one of {options}")
        problem = self.check(value) if self.check else None
        if problem:
            raise MetricError(f"{metric_id}: param {self.name}: {problem}")
        return value


def at_least(minimum: float) -> Callable[[Any], str | None]:
    """A :class:`Param` check: the value is ``minimum`` or more."""
    return lambda value: None if value >= minimum else f"must be {minimum:g} or more, got {value:g}"


@dataclass(frozen=True)
class Value:
    """A metric's result for one period. Ratios and averages keep their numerator and denominator."""

    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    #: Why ``value`` is null (or anything else a reader must know about it).
    note: str | None = None

    def noted(self, *notes: str | None) -> Value:
        """The same value with ``notes`` appended to its note (empty ones and repeats ignored)."""
        return replace(self, note="; ".join(dict.fromkeys(n for n in (self.note, *notes) if n)) or None)


#: The percentiles a duration metric's ``stat`` param offers besides the mean.
PERCENTILES = {"median": 50, "p75": 75, "p90": 90, "p95": 95}


#: How a metric with a :func:`stat_param` documents it.
STAT_DOC = ("`stat=mean` (default) gives the mean, with the total as numerator and the count as denominator; "
            "`stat=median`, `p75`, `p90` or `p95` gives that percentile of the same durations (linear between "
            "the two nearest ranks, as PostgreSQL's percentile_cont), with a null numerator and the count as "
            "denominator. Durations are skewed: a few long ones pull the mean far above the typical one.")


def stat_param(measured: str) -> Param:
    """The ``stat`` param of a duration metric: the mean of what it measures, or a percentile."""
    return Param("stat", str, "mean", f"the mean of the {measured}, or their median or 75th, 90th or 95th "
                 "percentile (linear between ranks; numerator null, denominator the count)",
                 choices=("mean", *PERCENTILES))


def ratio(numerator: float | None, denominator: float | None, *, empty: str = "denominator is zero") -> Value:
    """numerator / denominator, or a null value with a reason when it cannot be divided."""
    numerator, denominator = float(numerator or 0), float(denominator or 0)
    if denominator == 0:
        return Value(None, numerator, denominator, note=empty)
    return Value(numerator / denominator, numerator, denominator)


def statistic(ctx: MetricContext, values: Select, total: float, count: int) -> Value:
    """What the ``stat`` param asks of the durations ``values`` selects (one column): their mean,
    ``total / count``, or a percentile, whose numerator is null and denominator the count."""
    return stat_value(ctx.params["stat"], total, count, lambda percent: ctx.percentile(values, percent))


def duration_sums(durations: ColumnElement, among: ColumnElement | None = None) -> tuple[ColumnElement, ...]:
    """Aggregates over durations: the total and the count of those that can be measured (0 or more),
    the count of the negative ones and of the missing ones (for the notes that count what is left out);
    ``among``: of the rows matching it only (the others are aggregated for something else)."""
    sums = (func.sum(durations).filter(durations >= 0), func.count(durations).filter(durations >= 0),
            func.count(durations).filter(durations < 0), func.count().filter(durations.is_(None)))
    return sums if among is None else tuple(total.filter(among) for total in sums)


def stat_value(stat: str, total: float, count: int, percentile: Callable[[int], tuple[float | None, int]]) -> Value:
    """:func:`statistic` from its parts: ``percentile(percent)`` gives (the percentile, the count),
    and is asked only when ``stat`` is not the mean (:meth:`Grid.percentiles <crmkpi.grouped.Grid.percentiles>`
    gives them for every cell)."""
    if stat == "mean":
        return Value(total / count, total, count)
    value, measured = percentile(PERCENTILES[stat])
    return Value(value, None, measured)


@dataclass(frozen=True)
class Input:
    """Rows behind one side of a metric (``crmkpi explain`` lists them)."""

    label: str
    table: Table
    where: tuple[ColumnElement, ...]


@dataclass
class MetricContext(SqlKit):
    """What a metric's ``compute`` gets: a connection, the period as UTC instants, params and segment."""

    conn: Connection
    period: Period
    start: datetime
    end: datetime
    params: dict[str, Any]
    reporting_currency: str = "USD"
    segment: segments.Segment | None = None
    #: The reporting day the run happens on (for "open as of today" measures).
    today: date | None = None
    #: The reporting time zone, in which days (and so the period) begin.
    timezone: str = "UTC"
    inputs: list[Input] = field(default_factory=list)

    def table(self, name: str) -> Table:
        return TABLES[name]

    def live(self, table: Table) -> ColumnElement:
        """Rows not deleted in their source (every row of a table without ``is_deleted``, like sync_runs)."""
        return table.c.is_deleted.is_(False) if "is_deleted" in table.c else true()

    def as_of(self) -> datetime:
        """The moment a snapshot measure is taken: the period end, or the end of today if that comes first."""
        return min(self.end, self.end_of_today())

    def in_period(self, column: ColumnElement) -> ColumnElement:
        """``start <= column < end``: the period's half-open window."""
        return (column >= self.start) & (column < self.end)

    def scope(self, table: Table) -> list[ColumnElement]:
        """Live rows of ``table`` within the segment being computed (if any)."""
        conditions = [self.live(table)]
        segment = segments.condition(table, self.segment)
        return conditions if segment is None else [*conditions, segment]

    def count(self, label: str, table: Table, *where: ColumnElement) -> int:
        """Count the in-scope rows matching ``where``; the rows are recorded as an input called ``label``."""
        where = (*self.scope(table), *where)
        self.inputs.append(Input(label, table, where))
        return self.conn.execute(select(func.count()).select_from(table).where(*where)).scalar() or 0

    def total(self, label: str, table: Table, expression: ColumnElement, *where: ColumnElement) -> float:
        """Sum ``expression`` over the in-scope rows matching ``where`` (0 when there are none)."""
        where = (*self.scope(table), *where)
        self.inputs.append(Input(label, table, where))
        return float(self.conn.execute(select(func.sum(expression)).where(*where)).scalar() or 0)

    def left_out(self, rows: str, table: Table, *where: ColumnElement, then: str = "left out") -> str | None:
        """``"3 won deal(s) without closed_at left out"``: a note counting the in-scope rows of ``table``
        matching ``where``, rows a value cannot use (or, ``then``, takes as 0) because a column it needs is
        empty; None when there is no such row. Empty columns must never move a value silently."""
        count = self.conn.execute(select(func.count()).select_from(table).where(*self.scope(table), *where)).scalar()
        return left_out_note(count, rows, then)

    def left_out_each(self, table: Table, missing: dict[str, ColumnElement]) -> list[str | None]:
        """:meth:`left_out` notes for several conditions, counted in one scan: ``{"order(s) without
        ordered_at left out": condition, ...}`` gives ``"2 order(s) without ordered_at left out"``."""
        # narrowed to the rows left out: each count's condition is then tested on few rows
        counts = self.conn.execute(select(*(func.count().filter(condition) for condition in missing.values()))
                                   .select_from(table).where(*self.scope(table), or_(*missing.values()))).one()
        return [f"{count} {note}" if count else None for note, count in zip(missing, counts)]

    def record(self, label: str, table: Table, *where: ColumnElement) -> None:
        """Declare the rows behind a side computed with a query of the metric's own."""
        self.inputs.append(Input(label, table, (*self.scope(table), *where)))

    def percentile(self, values: Select, percent: int) -> tuple[float | None, int]:
        """(the ``percent``-th percentile of the one column ``values`` selects, how many non-null values).

        Linear between the two nearest ranks, as PostgreSQL's ``percentile_cont`` and numpy's default
        (the median of an even count is the mean of the middle two). Computed the same way on every
        backend (SQLite has no percentile function): the two values are found by rank with window
        functions, and the interpolation is done here from the count, with integer arithmetic for the
        position: no approximation, and the same result from the same values on SQLite and PostgreSQL
        (durations themselves may differ in the last digits: SQLite's julianday keeps milliseconds).
        """
        measured = values.subquery("measured")
        return interpolate(self.conn.execute(ranked_pair(measured, measured.c[0], percent)).all(), percent)

    def money(self, table: Table, amount: ColumnElement, at: ColumnElement, *where: ColumnElement) -> ColumnElement:
        """``amount`` in the reporting currency, at the ``fx_rates`` rate valid on ``at``.

        A row in another currency without a rate on or before its date is an error
        naming the currency and date; a row without a currency is in the reporting currency.
        The rows checked are the in-scope rows matching ``where``: those the metric converts.
        """
        self._refuse_missing_rate(table, at, *where)
        return amount * fx_rate(table, at, self.reporting_currency)[1]

    def converted(self, table: Table, amount: ColumnElement, at: ColumnElement, *where: ColumnElement) -> Converted:
        """:meth:`money` checked in the metric's own query rather than in a scan of its own, for a metric that
        sums the amount anyway: its query selects ``converted.amount`` and runs as ``converted.one(query)``.
        ``where`` must hold every condition of that query (the error names the first currency and date
        among those rows)."""
        rateless, factor = fx_rate(table, at, self.reporting_currency)
        return Converted(amount * factor, func.count().filter(and_(rateless, *where)),
                         lambda: self._refuse_missing_rate(table, at, *where), self.conn)

    def _refuse_missing_rate(self, table: Table, at: ColumnElement, *where: ColumnElement) -> None:
        rateless, _ = fx_rate(table, at, self.reporting_currency)
        missing = self.conn.execute(
            select(table.c.currency, func.min(at)).where(*self.scope(table), *where, rateless)
            .group_by(table.c.currency).order_by(table.c.currency).limit(1)
        ).first()
        if missing:
            day = missing[1].date() if isinstance(missing[1], datetime) else str(missing[1])[:10]
            raise MetricError(f"no fx_rates rate for {missing[0]} on or before {day} "
                              f"(rates convert to the reporting currency {self.reporting_currency})")


@dataclass(frozen=True)
class Converted:
    """An amount in the reporting currency with the count that proves it (:meth:`MetricContext.converted`)."""

    amount: ColumnElement
    #: An aggregate: how many of the rows to convert have no rate (0, or the sum is wrong).
    unconverted: ColumnElement
    #: Raises :meth:`MetricContext.money`'s error (the first currency and date without a rate), if it finds one.
    refuse: Callable[[], None]
    conn: Connection

    def one(self, query: Select) -> tuple:
        """The one row of ``query`` (which sums :attr:`amount`), with :attr:`unconverted` counted in the same
        scan and checked (:meth:`check`) before the row is returned."""
        *row, unconverted = self.conn.execute(query.add_columns(self.unconverted)).one()
        self.check(unconverted)
        return tuple(row)

    def check(self, unconverted: int) -> None:
        """:meth:`MetricContext.money`'s error when the query counted rows without a rate."""
        if unconverted:
            self.refuse()
            raise MetricError(f"{unconverted} row(s) have no fx_rates rate to convert them to the reporting currency")


@dataclass(frozen=True)
class Metric:
    """A KPI. Register instances through the ``register_metrics`` hook."""

    id: str
    title: str
    description: str
    formula: str
    unit: Unit
    direction: Literal["higher", "lower"]
    tables: tuple[str, ...]
    compute: Callable[[MetricContext], Value]
    params: tuple[Param, ...] = field(default_factory=tuple)
    #: A period's value is the sum of its parts (counts, revenue): targets are paced over their period.
    additive: bool = False
    #: The columns (``"table.column"``) its value depends on with default params, besides ids and
    #: ``is_deleted``. A sync that loads one of these tables without the column names this metric,
    #: so that a file lacking ``is_won`` never reads silently as "no deal won".
    needs: tuple[str, ...] = ()
    #: The same values for every cell of a run at once (:mod:`crmkpi.grouped`): a dict with a
    #: :class:`~crmkpi.metrics.Value` for each of the grid's cells. Without it, ``compute`` runs per cell.
    grouped: Callable[[Grid], dict[Cell, Value]] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.tables) - set(TABLES)
        if unknown:
            raise ValueError(f"metric {self.id}: unknown tables {sorted(unknown)}")
        for need in self.needs:
            table, _, column = need.partition(".")
            if table not in TABLES or column not in TABLES[table].c:
                raise ValueError(f"metric {self.id}: needs {need!r}, which is not a column of the store")

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        by_name = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            known = ", ".join(by_name) or "none"
            raise MetricError(f"{self.id}: unknown param {unknown[0]!r} (params: {known})")
        return {p.name: p.coerce(self.id, given[p.name]) if p.name in given else p.default for p in self.params}
