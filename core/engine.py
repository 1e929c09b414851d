"""Running metrics: periods split by grain, segments, comparisons, targets, persistence, explain.

Every value comes from one call of a metric's ``compute`` for one period and one
segment (a combination of dimension values); comparisons are the same call for the
previous period or the same period a year earlier. Every call reads the same snapshot of
the store, so a sync committing meanwhile cannot make two values of one run disagree.
Results are persisted to ``metric_results`` under one run id, in one transaction. A metric
that fails leaves an error on its own rows and the others are computed: one broken plugin
or missing rate does not cost the run.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from contextlib import contextmanager
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import Table, event, func, select
from sqlalchemy.engine import Connection, Engine

from . import segments
from .errors import ConfigError, CrmkpiError, MetricError, StoreError
from .grouped import Cell, Grid
from .metrics import TABLES, Metric, MetricContext, Value
from .models import MetricResult, SyncRun
from .periods import Calendar, Period
from .redact import redact
from .store import insert_waiting, reading
from .targets import Target, evaluate

COMPARISONS = ("previous", "year_ago")


@dataclass
class Run:
    """What to compute: metrics over a period, optionally split by grain and by dimensions."""

    metrics: list[Metric]
    period: Period
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    grain: str | None = None
    #: Dimensions to split by (``--segment``, repeatable): one row per combination of values that occurs.
    segments: tuple[str, ...] = ()
    compare: tuple[str, ...] = ()
    targets: list[Target] = field(default_factory=list)


@dataclass
class Settings:
    """How to compute: the reporting calendar, zone, currency and day."""

    calendar: Calendar = field(default_factory=Calendar)
    timezone: str = "UTC"
    currency: str = "USD"
    today: date | None = None

    def current(self) -> Settings:
        """These settings on the reporting day it is now, in the reporting zone (a service outlives the
        day it started on)."""
        return replace(self, today=datetime.now(ZoneInfo(self.timezone)).date())


@dataclass
class _Split:
    """How one metric is split: its segments (None: unsplit) and their labels, or why it cannot be split."""

    table: str
    segments: list[segments.Segment | None] = field(default_factory=lambda: [None])
    labels: dict[str, dict[Any, str]] = field(default_factory=dict)
    note: str | None = None
    #: Per dimension: whether some row has a value for it.
    filled: list[bool] = field(default_factory=list)
    error: str | None = None


def run_metrics(engine: Engine | Connection, run: Run, settings: Settings | None = None, *, persist: bool = True,
                progress: Callable[[Metric, int], None] | None = None, stop_on_error: bool = False,
                grouped: bool = True, show_sql: Callable[[Metric, str, Any], None] | None = None) -> list[dict]:
    """Compute every metric for every (period, segment); results are persisted under one run id and returned.

    What was asked is checked first (params, dimensions): a mistake there raises before anything is
    computed. A metric that then fails (a plugin raising, a missing fx rate) does not stop the others:
    its rows carry ``error``, a null value, and are not persisted. ``stop_on_error`` raises the first
    failure instead (``crmkpi --debug``). ``progress(metric, index)`` is called as each metric starts.
    A metric with a grouped compute fills all its cells at once (``grouped=False``: cell by cell, the
    tests' oracle). A run of one cell (one period, no comparison, no split) uses the per-cell compute,
    which reads only that cell's rows: with 1,000,000 deals it was faster for most metrics than a grid
    of one part (docs/performance.md). ``show_sql(metric, statement, parameters)`` is called with each SQL
    statement a metric's values run (``crmkpi run --show-sql``). Given a connection instead of an engine,
    the run reads through it: runs that must agree share one :func:`~crmkpi.store.snapshot`.
    """
    settings = settings or Settings()
    periods = settings.calendar.split(run.period, run.grain) if run.grain else [run.period]
    params = {metric.id: metric.resolve_params(run.params.get(metric.id, {})) for metric in run.metrics}
    results = []
    with reading(engine) as conn:
        cells = _Cells(conn, run, settings, settings.today or datetime.now(UTC).date(), stop_on_error,
                       uuid.uuid4().hex, datetime.now(UTC), data_freshness(conn), empty_tables(conn))
        splits = _splits(conn, run.metrics, params, run.segments)
        for index, metric in enumerate(run.metrics):
            if progress is not None:
                progress(metric, index)
            split = splits[metric.id]
            one_cell = len(periods) == 1 and not run.compare and len(split.segments) == 1
            with _statements(conn, metric, show_sql):
                try:
                    cells.known = _grouped(conn, metric, params[metric.id], split, periods, run.compare, settings,
                                           cells.today, stop_on_error) \
                        if grouped and metric.grouped and not split.error and not one_cell else {}
                except MetricError as exc:  # grouped returned the wrong type: the metric's every cell says so
                    if stop_on_error:
                        raise
                    cells.known, split = {}, replace(split, error=str(exc).removeprefix(f"{metric.id}: "))
                results += [cells.result(metric, params[metric.id], split, segment, period)
                            for segment in split.segments for period in periods]
    if persist:
        save_results(engine.engine if isinstance(engine, Connection) else engine, results)
    return results


#: Statements of the engine's own bookkeeping, not of a metric's values.
_SAVEPOINTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@contextmanager
def _statements(conn: Connection, metric: Metric, show: Callable[[Metric, str, Any], None] | None) -> Iterator[None]:
    """Within it, ``show`` sees each statement the connection runs for ``metric``."""
    if show is None:
        yield
        return

    def before(_conn, _cursor, statement: str, parameters, _context, _many) -> None:
        if not statement.lstrip().upper().startswith(_SAVEPOINTS):
            show(metric, statement, parameters)

    event.listen(conn, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(conn, "before_cursor_execute", before)


#: How long ``save_results`` waits by default for a store another process is writing to.
SAVE_TIMEOUT = 300.0


def save_results(engine: Engine, results: list[dict], timeout: float = SAVE_TIMEOUT,
                 waiting: Callable[[float], None] | None = None) -> int:
    """Persist the results without an error in one transaction (all of a run's rows or none); returns how many.

    While another process writes to the store, saving waits up to ``timeout`` seconds, calling
    ``waiting(seconds waited)`` now and then.
    """
    saved = [r for r in results if not r["error"]]
    if not saved:
        return 0
    columns = set(MetricResult.__table__.columns.keys())
    rows = [{**{k: v for k, v in r.items() if k in columns},
             "target_status": r["target"]["status"] if r["target"] else None} for r in saved]
    try:
        insert_waiting(engine, MetricResult.__table__, rows, timeout, waiting)
    except StoreError as exc:
        raise StoreError(f"the {len(rows)} results were not saved: {exc}") from None
    return len(rows)


def failure_summary(results: list[dict]) -> str | None:
    """``win_rate: <its error>; 2 more metrics failed (a, b)``: the first failure and which other metrics
    failed; None when none did."""
    failed = list(dict.fromkeys(r["metric"] for r in results if r["error"]))
    if not failed:
        return None
    first = next(r for r in results if r["error"])
    more = f"; {len(failed) - 1} more metric{'s' * (len(failed) > 2)} failed ({', '.join(failed[1:])})" \
        if failed[1:] else ""
    return f"{first['metric']}: {first['error']}{more}"


#: How a comparison is named in messages and in the table's column headers.
TITLES = {"previous": "previous period", "year_ago": "year ago"}


@dataclass
class _Cells:
    """Computes the results of one run, one (metric, segment, period) at a time."""

    conn: Connection
    run: Run
    settings: Settings
    today: date
    stop_on_error: bool
    run_id: str
    computed_at: datetime
    freshness: datetime | None
    #: The entity tables without a live row (a metric needing one says so).
    empty: set[str]
    #: The values of the metric being computed that its grouped compute found, by (period, segment).
    known: dict[tuple[Period, segments.Segment | None], Value] = field(default_factory=dict)

    def result(self, metric: Metric, params: dict[str, Any], split: _Split, segment: segments.Segment | None,
               period: Period) -> dict[str, Any]:
        settings = self.settings
        start, end = period.bounds(settings.timezone)
        value, error = (None, split.error) if split.error else self.attempt(metric, period, params, segment)
        if value is not None:
            value = value.noted(split.note, *_empty_notes(metric, self.empty))
        result = {
            "run_id": self.run_id, "metric": metric.id, "period": period.label, "period_start": start,
            "period_end": end, "grain": self.run.grain, "segment": segment.as_dict() if segment else {},
            "segment_labels": {d: split.labels[d].get(v, v) for d, v in segment.parts} if segment else {},
            "value": value.value if value else None, "numerator": value.numerator if value else None,
            "denominator": value.denominator if value else None, "unit": metric.unit,
            "currency": settings.currency if metric.unit == "currency" else None,
            "note": value.note if value else None, "error": error, "params": params,
            "computed_at": self.computed_at, "data_freshness": self.freshness,
        }
        for kind in self.run.compare if value is not None else ():
            other = (settings.calendar.previous if kind == "previous" else settings.calendar.year_ago)(period)
            before, failed = self.attempt(metric, other, params, segment)
            result[kind] = comparison(before or Value(None), value, other)
            if failed:
                result[kind]["error"] = failed
                result["error"] = result["error"] or f"{TITLES[kind]} ({other.label}): {failed}"
        # A target over exactly this period wins over one this period is only a to-date part of.
        target = next((t for t in sorted(self.run.targets, key=lambda t: t.period.end != period.end)
                       if t.applies_to(metric.id, period, result["segment"])), None)
        result["target"] = evaluate(target, result["value"], period, metric.additive, self.today) if target else None
        return result

    def attempt(self, metric: Metric, period: Period, params: dict[str, Any],
                segment: segments.Segment | None) -> tuple[Value | None, str | None]:
        """The metric's value, or None and the error (without the metric's name) when it fails."""
        if (period, segment) in self.known:
            return self.known[period, segment], None
        # A savepoint, not a rollback: PostgreSQL refuses every later statement of a transaction a
        # statement failed in, and rolling the whole transaction back would leave the run's snapshot.
        savepoint = self.conn.begin_nested()
        try:
            value = compute(self.conn, metric, period, params, segment, self.settings, self.today)
        except MetricError as exc:
            savepoint.rollback()
            if self.stop_on_error:
                raise
            return None, redact(str(exc).removeprefix(f"{metric.id}: "))  # printed in the results
        savepoint.commit()
        return value, None


def _grouped(conn: Connection, metric: Metric, params: dict[str, Any], split: _Split, periods: list[Period],
             compare: tuple[str, ...], settings: Settings, today: date,
             stop_on_error: bool) -> dict[tuple[Period, segments.Segment | None], Value]:
    """Every cell's value from the metric's grouped compute: the run's periods and their comparisons,
    each segment. Empty when it raised: the cells are then computed one by one, so that a failure
    (a missing fx rate) lands on the cells it concerns, as the per-cell path reports it. What it returned
    being no dict of Cell to Value raises a MetricError: computing cell by cell would hide the bug."""
    others = [settings.calendar.previous if kind == "previous" else settings.calendar.year_ago for kind in compare]
    parts = list(dict.fromkeys([*periods, *(other(period) for period in periods for other in others)]))
    dimensions = tuple(d for d, _ in split.segments[0].parts) if split.segments[0] else ()
    keys = {tuple(v for _, v in s.parts) if s else (): s for s in split.segments}
    grid = Grid(conn, parts, [p.bounds(settings.timezone) for p in parts], dimensions, list(keys), params,
                settings.currency, settings.timezone, today)
    savepoint = conn.begin_nested()  # as in _Cells.attempt: a failed statement must not end the snapshot
    try:
        found = metric.grouped(grid)
    except Exception as exc:
        savepoint.rollback()
        if stop_on_error and not isinstance(exc, MetricError):
            raise
        return {}
    savepoint.commit()
    if not isinstance(found, dict):
        raise MetricError(f"{metric.id}: grouped returned {type(found).__name__}, expected a dict of Cell to Value")
    for cell, value in found.items():
        if not isinstance(cell, Cell) or not isinstance(value, Value):
            raise MetricError(f"{metric.id}: grouped returned a dict of {type(cell).__name__} to "
                              f"{type(value).__name__}, expected a dict of Cell to Value")
    return {(parts[cell.part], keys[cell.segment]): value for cell, value in found.items()}


def empty_tables(conn: Connection) -> set[str]:
    """The entity tables without a live row."""
    return {name for name, table in TABLES.items() if "is_deleted" in table.c
            and conn.execute(select(table.c.id).where(table.c.is_deleted.is_(False)).limit(1)).first() is None}


def _empty_notes(metric: Metric, empty: set[str]) -> list[str]:
    """``no tickets in the store`` for each table the metric needs that holds no live row."""
    needed = dict.fromkeys(need.partition(".")[0] for need in metric.needs)
    return [f"no {table} in the store" for table in needed if table in empty]


def compute(conn: Connection, metric: Metric, period: Period, params: dict[str, Any],
            segment: segments.Segment | None, settings: Settings, today: date) -> Value:
    ctx = context(conn, metric, period, params, segment, settings, today)
    return _call(metric, ctx)


def context(conn: Connection, metric: Metric, period: Period, params: dict[str, Any],
            segment: segments.Segment | None, settings: Settings, today: date) -> MetricContext:
    start, end = period.bounds(settings.timezone)
    return MetricContext(conn, period, start, end, params, settings.currency, segment, today, settings.timezone)


def _call(metric: Metric, ctx: MetricContext) -> Value:
    try:
        value = metric.compute(ctx)
    except MetricError as exc:
        if str(exc).startswith(f"{metric.id}:"):
            raise
        raise MetricError(f"{metric.id}: {exc}") from None
    except CrmkpiError:
        raise
    except Exception as exc:
        raise MetricError(f"{metric.id}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, Value):
        raise MetricError(f"{metric.id}: compute returned {type(value).__name__}, expected Value")
    return value


def same_results(a: Any, b: Any, scale: float = 1.0) -> bool:
    """Whether two results (rows of :func:`run_metrics`, or any of their values) are equal, floats to 1e-12
    relatively: a sum's last bits depend on the order the database adds its rows in, which differs between
    a grouped query and one per cell. A comparison's change is a difference of two such sums, so its last
    bits are those of the values it compares (``scale``). How the tests and ``bench/grouped.py`` compare
    the two ways."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12 * scale)
    if isinstance(a, dict) and isinstance(b, dict):
        scale = max(abs(a.get("value") or 0), 1.0) if "change" in a else 1.0
        return a.keys() == b.keys() and all(same_results(a[k], b[k], scale if k == "change" else 1.0) for k in a)
    return a == b


def comparison(before: Value, now: Value, period: Period) -> dict[str, Any]:
    """The earlier value and the change to now: absolute (in the metric's unit) and relative."""
    change = None if now.value is None or before.value is None else now.value - before.value
    relative = None if change is None or not before.value else change / abs(before.value)
    return {"period": period.label, "value": before.value, "change": change, "change_pct": relative}


def _splits(conn: Connection, metrics: list[Metric], params: dict[str, dict[str, Any]],
            dimensions: tuple[str, ...]) -> dict[str, _Split]:
    """Each metric's segments; a dimension that names nothing, or that no metric's rows fill, is refused."""
    if not dimensions:
        return {metric.id: _Split(metric.tables[0]) for metric in metrics}
    if len(set(dimensions)) < len(dimensions):
        raise ConfigError(f"--segment: {', '.join(dimensions)} names a dimension twice")
    for dimension in dimensions:
        segments.check(conn, dimension)
    by_table: dict[str, _Split] = {}  # metrics of one table share its segments (a query over the whole table)
    splits = {metric.id: _split(conn, metric, params[metric.id], dimensions, by_table) for metric in metrics}
    for i, dimension in enumerate(dimensions):
        if not any(split.filled and split.filled[i] for split in splits.values()):
            reasons = dict.fromkeys((split.error or f"no {split.table} row has a value for it")
                                    .removeprefix(f"segment {dimension!r} ") for split in splits.values())
            raise ConfigError(f"--segment {dimension!r}: {'; '.join(reasons)}")
    return splits


def _split(conn: Connection, metric: Metric, params: dict[str, Any], dimensions: tuple[str, ...],
           by_table: dict[str, _Split]) -> _Split:
    """The combinations of the dimensions' values in the metric's main table: its first, or the one its
    ``table`` param picks (found once per table in ``by_table``)."""
    chosen = params.get("table")
    table = TABLES[chosen if isinstance(chosen, str) and chosen in TABLES else metric.tables[0]]
    if table.name not in by_table:
        by_table[table.name] = _split_of(conn, table, dimensions)
    return by_table[table.name]


def _split_of(conn: Connection, table: Table, dimensions: tuple[str, ...]) -> _Split:
    try:
        for dimension in dimensions:
            segments.expression(table, dimension)
    except MetricError as exc:
        return _Split(table.name, segments=[None], error=str(exc))
    combinations = segments.values(conn, table, dimensions) or [(None,) * len(dimensions)]
    filled = [any(c[i] is not None for c in combinations) for i in range(len(dimensions))]
    note = "; ".join(f"no {table.name} row has a value for {d}" for d, f in zip(dimensions, filled) if not f)
    return _Split(table.name, [segments.Segment(tuple(zip(dimensions, c))) for c in combinations],
                  {d: segments.labels(conn, d) for d in dimensions}, note or None, filled)


def data_freshness(conn: Connection) -> datetime | None:
    """The oldest of the connectors' last successful syncs: how old the freshest complete picture is."""
    runs = SyncRun.__table__
    last = (select(func.max(runs.c.finished_at).label("finished"))
            .where(runs.c.status == "success").group_by(runs.c.connector).subquery())
    return conn.execute(select(func.min(last.c.finished))).scalar()


def explain(engine: Engine | Connection, metric: Metric, period: Period, params: dict[str, Any],
            segment: segments.Segment | None, settings: Settings | None = None, limit: int = 10) -> dict[str, Any]:
    """The value, and for each input the number of rows and the first ``limit`` of them."""
    settings = settings or Settings()
    today = settings.today or datetime.now(UTC).date()
    with reading(engine) as conn:
        resolved = metric.resolve_params(params)
        parts = segment.parts if segment else ()
        for dimension, _ in parts:
            segments.check(conn, dimension)
        labels = {d: segments.labels(conn, d).get(v, v) for d, v in parts}
        ctx = context(conn, metric, period, resolved, segment, settings, today)
        value = _call(metric, ctx).noted(*_empty_notes(metric, empty_tables(conn)))
        inputs = []
        for item in ctx.inputs:
            columns = [c for c in item.table.c if c.name not in ("source", "synced_at", "updated_at", "extra",
                                                                  "is_deleted")]
            rows = conn.execute(select(*columns).where(*item.where).order_by(*item.table.primary_key.columns)
                                .limit(limit)).all()
            total = conn.execute(select(func.count()).select_from(item.table).where(*item.where)).scalar()
            inputs.append({"label": item.label, "table": item.table.name, "rows": total,
                           "columns": [c.name for c in columns], "first": [tuple(r) for r in rows]})
    return {"metric": metric.id, "period": period.label, "segment": dict(parts), "segment_labels": labels,
            "value": value, "currency": settings.currency if metric.unit == "currency" else None,
            "params": resolved, "inputs": inputs}
