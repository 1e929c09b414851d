"""What the dashboard's pages show, computed from the store: the numbers are the engine's.

A page's cards, trend and breakdown come from :func:`crmkpi.present.build.build_report`, the
same runs as ``crmkpi report`` (and the same cells as ``crmkpi run``); the small multiples are one
more grouped run, the trend split by the breakdown's dimension; explain is
:func:`crmkpi.engine.explain`. Nothing here is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from ...engine import Run, Settings, explain, run_metrics
from ...errors import ConfigError
from ...metrics import Metric
from ...models import ENTITIES, JobRun, SyncRun
from ...periods import GRAINS, Period
from ...present.build import build_report, narrowed, span_of, trend_window
from ...present.cards import Breakdown, Report, SegmentRow, trend_points
from ...present.svg import Point
from ...segments import DIMENSIONS, Segment, custom_fields, labels, values
from ...store import snapshot
from ...suggest import did_you_mean
from ..jobs import Job, history

#: The dimensions the segment filter offers, with the values that deals have.
FILTER_DIMENSIONS = ("team", "region", "owner")
#: The breakdown a KPI page shows unless another is chosen.
DEFAULT_BREAKDOWN = "team"
#: Small multiples drawn at most (the highest values first); the table lists every row.
MULTIPLES = 24
SORTS = ("value", "label", "previous", "year_ago")
RECENT_RUNS = 10


@dataclass(frozen=True)
class Asked:
    """A page's query: the period, the segment filter, the trend grain; on a KPI page also the breakdown's
    dimension and order, and the cell to explain."""

    period: str | None = None
    where: dict[str, Any] = field(default_factory=dict)
    grain: str = "month"
    by: str = DEFAULT_BREAKDOWN
    sort: str = "value"
    descending: bool = True
    explain: dict[str, Any] | None = None

    @classmethod
    def of(cls, period: str | None, segment: str | None, grain: str | None, by: str | None = None,
           sort: str | None = None, order: str | None = None, explain: str | None = None) -> Asked:
        """From the query's texts; a wrong one is a :class:`ConfigError` naming it."""
        if grain and grain not in GRAINS:
            raise ConfigError(f"grain {grain!r}: expected one of {', '.join(GRAINS)}")
        if sort and sort not in SORTS:
            raise ConfigError(f"sort {sort!r}: expected one of {', '.join(SORTS)}")
        if order and order not in ("asc", "desc"):
            raise ConfigError(f"order {order!r}: expected asc or desc")
        return cls(period or None, cell(segment, "segment") if segment else {}, grain or "month",
                   by or DEFAULT_BREAKDOWN, sort or "value", order != "asc",
                   None if explain is None else {} if explain in ("", "all") else cell(explain, "explain"))


def cell(text: str, name: str) -> dict[str, Any]:
    """One ``DIMENSION=VALUE`` part: ``team=East`` (``team=``: the rows without a team)."""
    dimension, equals, value = text.partition("=")
    if not equals or not dimension:
        raise ConfigError(f"{name} {text!r}: expected DIMENSION=VALUE, e.g. team=East")
    return {dimension: value or None}


@dataclass(frozen=True)
class Option:
    """A segment the filter offers: ``team=East``, shown as ``team: East``."""

    value: str
    label: str


@dataclass(frozen=True)
class Freshness:
    connector: str
    last_success: datetime | None
    last_status: str | None
    last_error: str | None


@dataclass(frozen=True)
class Overview:
    report: Report
    asked: Asked
    options: list[Option]
    freshness: list[Freshness]
    runs: list[JobRun]


@dataclass(frozen=True)
class Multiple:
    """One breakdown row's trend, drawn small beside the others."""

    row: SegmentRow
    points: tuple[Point, ...]


@dataclass(frozen=True)
class KpiPage:
    metric: Metric
    report: Report
    asked: Asked
    options: list[Option]
    dimensions: list[str]
    rows: list[SegmentRow]
    breakdown: Breakdown | None
    multiples: list[Multiple]
    explanation: dict[str, Any] | None


def period_of(job: Job, text: str | None) -> Period:
    settings = job.settings.current()
    return settings.calendar.parse(text or job.config.reporting.default_period, today=settings.today)


def overview(job: Job, asked: Asked) -> Overview:
    metrics = [job.registry.metric(i) for i in job.config.metric_ids(sorted(job.registry.metrics))]
    settings = job.settings.current()
    report = build_report(job.store.engine, metrics, period_of(job, asked.period),
                          {m.id: job.config.params(m.id) for m in metrics}, job.targets(settings.today), settings,
                          where=asked.where, trend_grain=asked.grain)
    return Overview(report, asked, filter_options(job), freshness(job), history(job.store, None, RECENT_RUNS))


def kpi_page(job: Job, metric: Metric, asked: Asked) -> KpiPage:
    dimensions = breakdown_dimensions(job)  # custom fields scan the store: done here, where the page is kept
    if asked.by not in dimensions:
        raise ConfigError(f"by {asked.by!r}: not a dimension{did_you_mean(asked.by, dimensions)}")
    period, settings, params = period_of(job, asked.period), job.settings.current(), job.config.params(metric.id)
    with snapshot(job.store.engine) as conn:  # the card, the breakdown, its trends and explain agree
        report = build_report(conn, [metric], period, {metric.id: params}, job.targets(settings.today), settings,
                              dimension=asked.by, where=asked.where, trend_grain=asked.grain)
        found = report.breakdowns.get(metric.id)
        rows = ordered(found, asked) if found else []
        explanation = None
        if asked.explain is not None:
            parts = {**asked.where, **asked.explain}
            explanation = explain(conn, metric, period, params, Segment.of(parts) if parts else None, settings,
                                  limit=20)
        small = multiples(conn, metric, period, asked, settings, job.config.params(metric.id), rows) if rows else []
    return KpiPage(metric, report, asked, filter_options(job), dimensions, rows, found, small, explanation)


def ordered(found: Breakdown, asked: Asked) -> list[SegmentRow]:
    """The breakdown's rows in the asked order; rows without a value (or change) always last."""
    def key(row: SegmentRow):
        if asked.sort == "label":
            return (False, row.label.casefold())
        number = row.value if asked.sort == "value" else next(
            (c.change for c in row.changes if c.kind == asked.sort), None)
        return (number is None, 0.0 if number is None else -number if asked.descending else number)

    rows = sorted(found.rows, key=key)
    if asked.sort == "label" and asked.descending:
        rows.reverse()
    return rows


def multiples(conn: Connection, metric: Metric, period: Period, asked: Asked, settings: Settings,
              params: dict[str, Any], rows: list[SegmentRow]) -> list[Multiple]:
    """The trend of each of the first :data:`MULTIPLES` rows, from one run split by the breakdown's dimension."""
    parts = trend_window(settings.calendar, period, asked.grain)
    dimensions = tuple(dict.fromkeys((*asked.where, asked.by)))
    trend = run_metrics(conn, Run([metric], span_of(parts), {metric.id: params}, asked.grain, dimensions), settings,
                        persist=False)
    trend = narrowed(trend, asked.where) if asked.where else trend
    return [Multiple(row, trend_points(trend, parts, metric, (), row.segment)) for row in rows[:MULTIPLES]]


def filter_options(job: Job) -> list[Option]:
    """The segments a dashboard can be narrowed to: each value that a live deal has of each filter dimension."""
    deals = ENTITIES["deals"].__table__
    found = []
    with job.store.engine.connect() as conn:
        for dimension in FILTER_DIMENSIONS:
            names = labels(conn, dimension)
            found += [Option(f"{dimension}={value}", f"{dimension}: {names.get(value, value)}")
                      for (value,) in values(conn, deals, [dimension]) if value is not None]
    return found


def breakdown_dimensions(job: Job) -> list[str]:
    with job.store.engine.connect() as conn:
        return [*DIMENSIONS, *(f"extra.{name}" for name in custom_fields(conn))]


def freshness(job: Job) -> list[Freshness]:
    """Each configured connector's last successful sync, and how its latest sync ended."""
    runs = SyncRun.__table__
    with job.store.engine.connect() as conn:
        success = dict(conn.execute(select(runs.c.connector, func.max(runs.c.finished_at))
                                    .where(runs.c.status == "success").group_by(runs.c.connector)).all())
        newest = select(runs.c.connector, func.max(runs.c.id).label("id")).group_by(runs.c.connector).subquery()
        latest = {row.connector: row for row in conn.execute(
            select(runs.c.connector, runs.c.status, runs.c.error).join(newest, runs.c.id == newest.c.id))}
    return [Freshness(name, success.get(name), getattr(latest.get(name), "status", None),
                      getattr(latest.get(name), "error", None)) for name in job.config.connectors]
