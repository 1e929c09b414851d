"""Grouped metrics: a whole series × segments × comparisons in one query per aggregate.

The per-cell path (:func:`crmkpi.engine.compute`) runs a metric's ``compute`` once per period part,
segment and comparison, each a full query: its cost grows with cells × rows. A metric that also
declares ``grouped`` describes its aggregation once, against a :class:`Grid`: the grid holds every
period part the run needs (the run's, and those its comparisons need) as a *calendar* — one row per
part with its bounds as UTC instants, computed by the reporting calendar exactly as the per-cell
path computes them, so time zones, DST, fiscal years and week starts agree — and the segments.
:meth:`Grid.by_part` places each row of a table in the part whose bounds hold its timestamp (a
balanced ``CASE`` tree, one scan; a join with the calendar when parts overlap or a condition
decides), groups by part and by the segment key of each row (:func:`crmkpi.segments.expression`,
the very expression the per-cell path filters on) and returns the aggregates per :class:`Cell`.
The metric turns them into one :class:`~crmkpi.metrics.Value` per cell, with the same values, numerators, denominators and notes as
its ``compute`` gives for that cell: a test computes every grouped metric both ways and compares.

A grouped metric raises :class:`~crmkpi.errors.MetricError` where its per-cell values would fail (a
missing fx rate); the engine then computes that metric cell by cell, so each failure lands on the
cells it concerns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from sqlalchemy import (Date, DateTime, Integer, Table, and_, case, column, exists, func, literal, literal_column, select,
                        values)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement

from . import segments
from .errors import MetricError
from .models import TABLES
from .periods import Period
from .sqlkit import SqlKit, evaluated_once, fx_rate, instant, interpolate, ranked_pair


#: Before any record: where :meth:`Grid.until_end` counts the rows without a timestamp.
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


def by_label(*columns: ColumnElement) -> list[ColumnElement]:
    """``GROUP BY`` terms naming labelled columns of the ``SELECT`` list, as :meth:`Grid.segment_key`'s.
    PostgreSQL matches a grouped expression with one of the list only when both read the same, and a
    custom field's name is a bound parameter each occurrence names anew."""
    return [literal_column(column.name) for column in columns]


class Cell(NamedTuple):
    """One value of a grouped run: the index of its period part in :attr:`Grid.parts`, and its segment's
    values in the order of :attr:`Grid.dimensions` (``()`` when the run is not split)."""

    part: int
    segment: tuple


@dataclass
class Grid(SqlKit):
    """What a grouped metric computes over: period parts, segments, params, the reporting settings."""

    conn: Connection
    parts: list[Period]
    #: Each part's ``[start, end)`` as UTC instants.
    bounds: list[tuple[datetime, datetime]]
    dimensions: tuple[str, ...]
    #: The segments to fill, as value tuples in the order of ``dimensions``.
    segments: list[tuple]
    params: dict[str, Any]
    reporting_currency: str = "USD"
    timezone: str = "UTC"
    today: date | None = None

    @property
    def cells(self) -> list[Cell]:
        return [Cell(part, segment) for part in range(len(self.parts)) for segment in self.segments]

    def table(self, name: str) -> Table:
        return TABLES[name]

    def live(self, table: Table) -> list[ColumnElement]:
        """Rows not deleted in their source (every row of a table without ``is_deleted``)."""
        return [table.c.is_deleted.is_(False)] if "is_deleted" in table.c else []

    def scope(self, table: Table) -> list[ColumnElement]:
        """The rows of every cell's segment: the live ones (``MetricContext.scope`` for a whole grid)."""
        return self.live(table)

    @cached_property
    def calendar(self):
        """The parts as rows ``(part, start, end, first, last)`` (a CTE): their bounds as instants, and their
        first and last reporting days for rows dated by day (quota periods, spend ranges). ``by_part`` joins
        it, and a metric whose rows belong to a part by a condition builds it from its columns."""
        rows = [(i, start, end, period.start, period.last_day)
                for i, ((start, end), period) in enumerate(zip(self.bounds, self.parts))]
        return values(column("part", Integer), column("start", DateTime()), column("end", DateTime()),
                      column("first", Date()), column("last", Date()), name="calendar").data(rows).cte("calendar")

    @cached_property
    def boundaries(self) -> list[datetime]:
        """Every part's start and end, distinct and in order."""
        return sorted({instant for bound in self.bounds for instant in bound})

    def boundary_rank(self, at: ColumnElement) -> ColumnElement:
        """How many of :attr:`boundaries` are at or before ``at`` (a balanced ``CASE`` tree; a null ``at`` ranks
        after all). Two instants compare the same way with every part's start and end exactly when their
        ranks are equal, so a metric can group rows by rank where it would join each row to the calendar:
        ``at < boundaries[j - 1]`` exactly when ``rank < j``."""
        def tree(low: int, high: int) -> ColumnElement:
            if low == high:
                return literal(low)
            middle = (low + high) // 2
            return case((at < instant(self.boundaries[middle]), tree(low, middle)), else_=tree(middle + 1, high))

        return tree(0, len(self.boundaries))

    def in_part(self, at: ColumnElement) -> ColumnElement:
        """``start <= at < end`` of the calendar's part: as ``MetricContext.in_period`` for one period."""
        return and_(at >= self.calendar.c.start, at < self.calendar.c.end)

    def segment_key(self, table: Table) -> list[ColumnElement]:
        return [segments.expression(table, d).label(f"segment_{i}") for i, d in enumerate(self.dimensions)]

    def by_part(self, table: Table, at: ColumnElement | None, *aggregates: ColumnElement,
                where: Iterable[ColumnElement] = (), on: ColumnElement | None = None) -> dict[Cell, Row]:
        """``aggregates`` over the live rows of ``table`` matching ``where``, per cell: the part whose
        ``[start, end)`` holds ``at`` (or, with ``on``, each part that condition on :attr:`calendar`
        matches) and the row's segment. Cells no row reaches are absent."""
        keys = self.segment_key(table)
        return self.by_cell(self._parted(table, at, on, where, *keys, *aggregates)
                            .group_by(literal_column("part"), *by_label(*keys)))

    def by_part_and_segment(self, table: Table, at: ColumnElement, by_part: Sequence[ColumnElement],
                            by_segment: Sequence[ColumnElement]) -> tuple[dict[Cell, Row], dict[tuple, tuple]]:
        """(``by_part`` per cell, as :meth:`by_part` places the live rows by ``at``; ``by_segment`` per segment
        over all its live rows, whatever their part: additive aggregates, counts say) in one scan of ``table``,
        where :meth:`by_part` and :meth:`by_segment` take one each. Segments no row reaches are absent."""
        part = self.part_of(at)
        if part is None:  # overlapping parts: a row may be in several
            return self.by_part(table, at, *by_part), self.by_segment(table, *by_segment)
        keys = self.segment_key(table)
        width = 1 + len(keys)
        per_cell: dict[Cell, Row] = {}
        per_segment: dict[tuple, tuple] = {}
        for row in self.conn.execute(select(part.label("part"), *keys, *by_part, *by_segment).where(*self.live(table))
                                     .group_by(literal_column("part"), *by_label(*keys))):
            segment, totals = tuple(row[1:width]), row[width + len(by_part):]
            if row[0] is not None:
                per_cell[Cell(row[0], segment)] = row[width:width + len(by_part)]
            per_segment[segment] = tuple(map(_plus, per_segment.get(segment, (None,) * len(totals)), totals))
        return per_cell, per_segment

    def by_part_once(self, table: Table, at: ColumnElement | None, value: ColumnElement,
                     aggregates: Callable[[ColumnElement], Sequence[ColumnElement]],
                     where: Iterable[ColumnElement] = (), on: ColumnElement | None = None) -> dict[Cell, Row]:
        """:meth:`by_part` of ``aggregates(v)``, ``v`` being ``value`` computed once per row (:func:`evaluated_once
        <crmkpi.sqlkit.evaluated_once>`): aggregates reading an expensive value several times (a duration, a
        correlated lookup) would otherwise compute it in each."""
        keys = self.segment_key(table)
        rows = evaluated_once(self._parted(table, at, on, where, *keys, value.label("value"))).subquery("valued")
        return self.aggregate(rows, *aggregates(rows.c.value))

    def by_cell(self, statement) -> dict[Cell, Row]:
        """The rows of a statement of the metric's own whose first columns are the part and the segment key
        (:meth:`segment_key`'s columns, in order), by cell; rows in no part are left out."""
        width = 1 + len(self.dimensions)
        return {Cell(row[0], tuple(row[1:width])): row[width:] for row in self.conn.execute(statement)
                if row[0] is not None}

    def aggregate(self, rows, *aggregates: ColumnElement) -> dict[Cell, Row]:
        """``aggregates`` per cell over a subquery of the metric's own whose columns include the part and
        the segment key (:meth:`segment_key`'s labels): rows already placed by :meth:`placed`, say."""
        groups = [rows.c.part, *(rows.c[f"segment_{i}"] for i in range(len(self.dimensions)))]
        return self.by_cell(select(*groups, *aggregates).group_by(*groups))

    def until_end(self, source, at: ColumnElement, keys: Sequence[ColumnElement], *sums: ColumnElement,
                  where: Iterable[ColumnElement] = ()) -> dict[Cell, tuple]:
        """Per cell, additive ``sums`` (counts, sums) over the rows of ``source`` matching ``where`` whose ``at``
        is before the part's end, or null: what exists at each part's as-of moment, segmented by ``keys``
        (:meth:`segment_key`'s columns, or a subquery's with their labels). One scan, where a join with the
        calendar reads each row once per part: rows are summed per span between consecutive distinct ends,
        and each part adds up the spans before its end. What changes at a later moment (a record that becomes
        a duplicate) is a second row with that moment as its ``at`` and the change as its sums. Cells no row
        reaches are absent."""
        ends = sorted({end for _, end in self.bounds})
        spans = replace(self, bounds=list(zip([BEGINNING, *ends], ends)))
        per_span = spans.by_cell(spans.placed(source, func.coalesce(at, instant(BEGINNING)), *keys, *sums, where=where)
                                 .group_by(literal_column("part"), *by_label(*keys)))
        found: dict[Cell, tuple] = {}
        for part, (_, end) in enumerate(self.bounds):
            last = ends.index(end)
            for cell, row in per_span.items():
                if cell.part <= last:
                    mine = Cell(part, cell.segment)
                    found[mine] = tuple(map(_plus, found.get(mine, (None,) * len(row)), row))
        return found

    def percentiles(self, table: Table, at: ColumnElement | None, value: ColumnElement, percent: int,
                    where: Iterable[ColumnElement] = (), on: ColumnElement | None = None
                    ) -> dict[Cell, tuple[float | None, int]]:
        """Per cell (as :meth:`by_part` finds them), :meth:`MetricContext.percentile
        <crmkpi.metrics.MetricContext.percentile>` of the non-null values of ``value`` over the live rows
        matching ``where``: (the percentile, how many values). Cells without a value are absent."""
        keys = self.segment_key(table)
        return self.percentiles_of(self._parted(table, at, on, where, *keys, value.label("value")).subquery("measured"),
                                   percent)

    def percentiles_of(self, rows, percent: int) -> dict[Cell, tuple[float | None, int]]:
        """:meth:`percentiles` of a subquery of the metric's own, whose columns are the part, the segment key
        (:meth:`segment_key`'s labels) and ``value``."""
        groups = [rows.c.part, *(rows.c[f"segment_{i}"] for i in range(len(self.dimensions)))]
        found: dict[Cell, list] = {}
        for row in self.conn.execute(ranked_pair(rows, rows.c.value, percent, groups)):
            if row[0] is not None:
                found.setdefault(Cell(row[0], tuple(row[1:len(groups)])), []).append(row[len(groups):])
        return {cell: interpolate(pair, percent) for cell, pair in found.items()}

    def part_of(self, at: ColumnElement) -> ColumnElement | None:
        """The index of the part whose ``[start, end)`` holds ``at`` (null: none), as a balanced tree of
        ``CASE``: a row is placed with log2(parts) comparisons in one scan of its table, where a join
        with the calendar would read the table once per part unless ``at`` is indexed. None when parts
        overlap (a period longer than a year and its year ago): rows then join the calendar."""
        ordered = sorted(range(len(self.bounds)), key=lambda i: self.bounds[i])
        if any(self.bounds[a][1] > self.bounds[b][0] for a, b in zip(ordered, ordered[1:])):
            return None

        def tree(low: int, high: int) -> ColumnElement:
            if low == high:
                start, end = self.bounds[ordered[low]]
                return case((and_(at >= instant(start), at < instant(end)), ordered[low]))
            middle = (low + high + 1) // 2
            return case((at < instant(self.bounds[ordered[middle]][0]), tree(low, middle - 1)),
                        else_=tree(middle, high))

        return tree(0, len(ordered) - 1)

    def in_any_part(self, at: ColumnElement) -> ColumnElement:
        """Whether some part holds ``at``: for a check over every cell's rows at once."""
        part = self.part_of(at)
        return part.is_not(None) if part is not None else exists(select(self.calendar.c.part).where(self.in_part(at)))

    def _parted(self, table: Table, at: ColumnElement | None, on: ColumnElement | None,
                where: Iterable[ColumnElement], *columns: ColumnElement):
        """:meth:`placed` over the live rows of ``table`` matching ``where``."""
        return self.placed(table, at, *columns, where=(*self.live(table), *where), on=on)

    def placed(self, source, at: ColumnElement | None, *columns: ColumnElement,
               where: Iterable[ColumnElement] = (), on: ColumnElement | None = None):
        """``SELECT part, *columns FROM source WHERE where``, each row with the index of the part whose
        ``[start, end)`` holds ``at`` (with ``on``: one row per part that condition on :attr:`calendar`
        matches). Rows in no part get a null part, or none; :meth:`by_cell` leaves them out. ``source`` is
        a table, or a join or subquery of the metric's own (whose rows it filters itself)."""
        part = self.part_of(at) if on is None else None
        if part is None:
            return (select(self.calendar.c.part, *columns)
                    .select_from(source.join(self.calendar, on if on is not None else self.in_part(at)))
                    .where(*where))
        first, last = min(start for start, _ in self.bounds), max(end for _, end in self.bounds)
        return (select(part.label("part"), *columns).select_from(source)  # the range lets an index on ``at`` narrow the scan
                .where(*where, at >= instant(first), at < instant(last)))

    def by_segment(self, table: Table, *aggregates: ColumnElement,
                   where: Iterable[ColumnElement] = ()) -> dict[tuple, Row]:
        """``aggregates`` over the live rows of ``table`` matching ``where``, per segment (whatever the period)."""
        keys = self.segment_key(table)
        statement = select(*keys, *aggregates).where(*self.live(table), *where)
        if keys:
            statement = statement.group_by(*by_label(*keys))
        return {tuple(row[:len(keys)]): row[len(keys):] for row in self.conn.execute(statement)}

    def left_out(self, rows: str, table: Table, *where: ColumnElement, then: str = "left out") -> dict[tuple, str]:
        """Per segment, :meth:`MetricContext.left_out <crmkpi.metrics.MetricContext.left_out>`'s note: how
        many of its rows matching ``where`` a value cannot use. Segments without such rows are absent."""
        return {key: left_out_note(count, rows, then) for key, (count,) in
                self.by_segment(table, func.count(), where=where).items() if count}

    def left_out_by_part(self, rows: str, table: Table, at: ColumnElement | None, *where: ColumnElement,
                         then: str = "left out", on: ColumnElement | None = None) -> dict[Cell, str]:
        """Per cell, :meth:`left_out`'s note on the live rows of ``table`` matching ``where`` that
        :meth:`by_part` places in it (by ``at``, or ``on``). Cells without such rows are absent."""
        counts = self.by_part(table, at, func.count(), where=where, on=on)
        return {cell: left_out_note(count, rows, then) for cell, (count,) in counts.items() if count}

    def money(self, table: Table, amount: ColumnElement, at: ColumnElement, *where: ColumnElement) -> ColumnElement:
        """``amount`` in the reporting currency at the ``fx_rates`` rate valid on ``at``, as
        :meth:`MetricContext.money <crmkpi.metrics.MetricContext.money>` converts it, for the live rows
        matching ``where`` (which places them in the grid's parts: :meth:`in_any_part`, say). If one of
        them is in a currency without a rate, this raises, and the engine computes the metric cell by
        cell instead."""
        rateless, factor = fx_rate(table, at, self.reporting_currency)
        missing = self.conn.execute(select(table.c.id).where(*self.live(table), *where, rateless).limit(1)).first()
        if missing:
            raise MetricError("a row lacks an fx rate: computed cell by cell")
        return amount * factor


def left_out_note(count: int, rows: str, then: str = "left out") -> str | None:
    """``"3 won deal(s) without closed_at left out"``: the note on ``count`` rows a value cannot use (or,
    ``then``, takes as 0) because a column it needs is empty; None for none."""
    return f"{count} {rows} {then}" if count else None


def _plus(total, value):
    """SQL's ``sum`` over several groups: null only when every group's is."""
    return value if total is None else total if value is None else total + value
