"""Running metrics: periods split by grain, segments, comparisons, targets, persistence, explain.

Every value comes from one call of a metric's ``compute`` for one period and one
segment value; comparisons are the same call for the previous period or the same
period a year earlier. Results are persisted to ``metric_results`` under one run id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from . import segments
from .errors import CrmkpiError, MetricError
from .metrics import TABLES, Metric, MetricContext, Value
from .models import MetricResult, SyncRun
from .periods import Calendar, Period
from .targets import Target, evaluate

COMPARISONS = ("previous", "year_ago")


@dataclass
class Run:
    """What to compute: metrics over a period, optionally split by grain and segment."""

    metrics: list[Metric]
    period: Period
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    grain: str | None = None
    segment: str | None = None
    compare: tuple[str, ...] = ()
    targets: list[Target] = field(default_factory=list)


@dataclass
class Settings:
    """How to compute: the reporting calendar, zone, currency and day."""

    calendar: Calendar = field(default_factory=Calendar)
    timezone: str = "UTC"
    currency: str = "USD"
    today: date | None = None


def run_metrics(engine: Engine, run: Run, settings: Settings | None = None, *, persist: bool = True,
                progress: Callable[[Metric, int], None] | None = None) -> list[dict]:
    """Compute every metric for every (period, segment); results are persisted under one run id and returned.

    ``progress(metric, index)`` is called as each metric starts.
    """
    settings = settings or Settings()
    today = settings.today or datetime.now(UTC).date()
    run_id = uuid.uuid4().hex
    computed_at = datetime.now(UTC)
    periods = settings.calendar.split(run.period, run.grain) if run.grain else [run.period]
    results = []
    with engine.connect() as conn:
        freshness = data_freshness(conn)
        for index, metric in enumerate(run.metrics):
            if progress is not None:
                progress(metric, index)
            params = metric.resolve_params(run.params.get(metric.id, {}))
            for segment in _segments(conn, metric, params, run.segment):
                for period in periods:
                    value = compute(conn, metric, period, params, segment, settings, today)
                    result = {
                        "run_id": run_id, "metric": metric.id, "period": period.label,
                        "period_start": period.bounds(settings.timezone)[0],
                        "period_end": period.bounds(settings.timezone)[1], "grain": run.grain,
                        "segment": segment.as_dict() if segment else {}, "value": value.value,
                        "numerator": value.numerator, "denominator": value.denominator, "unit": metric.unit,
                        "note": value.note, "params": params, "computed_at": computed_at,
                        "data_freshness": freshness,
                    }
                    for kind in run.compare:
                        other = (settings.calendar.previous if kind == "previous" else settings.calendar.year_ago)(
                            period)
                        result[kind] = comparison(compute(conn, metric, other, params, segment, settings, today),
                                                  value, other)
                    # A target over exactly this period wins over one this period is only a to-date part of.
                    target = next((t for t in sorted(run.targets, key=lambda t: t.period.end != period.end)
                                   if t.applies_to(metric.id, period, result["segment"])), None)
                    result["target"] = evaluate(target, value.value, period, metric.additive, today) if target else None
                    results.append(result)
    if persist and results:
        columns = set(MetricResult.__table__.columns.keys())
        with engine.begin() as conn:
            conn.execute(MetricResult.__table__.insert(), [
                {**{k: v for k, v in r.items() if k in columns},
                 "target_status": r["target"]["status"] if r["target"] else None} for r in results])
    return results


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
        return metric.compute(ctx)
    except MetricError as exc:
        if str(exc).startswith(f"{metric.id}:"):
            raise
        raise MetricError(f"{metric.id}: {exc}") from None
    except CrmkpiError:
        raise
    except Exception as exc:
        raise MetricError(f"{metric.id}: {type(exc).__name__}: {exc}") from exc


def comparison(before: Value, now: Value, period: Period) -> dict[str, Any]:
    """The earlier value and the change to now: absolute (in the metric's unit) and relative."""
    change = None if now.value is None or before.value is None else now.value - before.value
    relative = None if change is None or not before.value else change / abs(before.value)
    return {"period": period.label, "value": before.value, "change": change, "change_pct": relative}


def _segments(conn: Connection, metric: Metric, params: dict[str, Any],
              dimension: str | None) -> list[segments.Segment | None]:
    """The dimension's values in the metric's main table: its first, or the one its ``table`` param picks."""
    if dimension is None:
        return [None]
    chosen = params.get("table")
    table = TABLES[chosen if isinstance(chosen, str) and chosen in TABLES else metric.tables[0]]
    try:
        found = segments.values(conn, table, dimension)
    except MetricError as exc:
        raise MetricError(f"{metric.id}: {exc}") from None
    return [segments.Segment(dimension, value) for value in found]


def data_freshness(conn: Connection) -> datetime | None:
    """The oldest of the connectors' last successful syncs: how old the freshest complete picture is."""
    runs = SyncRun.__table__
    last = (select(func.max(runs.c.finished_at).label("finished"))
            .where(runs.c.status == "success").group_by(runs.c.connector).subquery())
    return conn.execute(select(func.min(last.c.finished))).scalar()


def explain(engine: Engine, metric: Metric, period: Period, params: dict[str, Any],
            segment: segments.Segment | None, settings: Settings | None = None, limit: int = 10) -> dict[str, Any]:
    """The value, and for each input the number of rows and the first ``limit`` of them."""
    settings = settings or Settings()
    today = settings.today or datetime.now(UTC).date()
    with engine.connect() as conn:
        resolved = metric.resolve_params(params)
        ctx = context(conn, metric, period, resolved, segment, settings, today)
        value = _call(metric, ctx)
        inputs = []
        for item in ctx.inputs:
            columns = [c for c in item.table.c if c.name not in ("source", "synced_at", "updated_at", "extra",
                                                                  "is_deleted")]
            rows = conn.execute(select(*columns).where(*item.where).order_by(*item.table.primary_key.columns)
                                .limit(limit)).all()
            total = conn.execute(select(func.count()).select_from(item.table).where(*item.where)).scalar()
            inputs.append({"label": item.label, "table": item.table.name, "rows": total,
                           "columns": [c.name for c in columns], "first": [tuple(r) for r in rows]})
    return {"metric": metric.id, "period": period.label, "segment": segment.as_dict() if segment else {},
            "value": value, "params": resolved, "inputs": inputs}
