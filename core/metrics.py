"""The metric plugin API and the engine that runs metrics over the store.

A :class:`Metric` declares what it measures (the docs' metric reference is generated
from these declarations) and a ``compute`` function that runs SQL through SQLAlchemy
Core on the store and returns a :class:`Value`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Callable, Literal

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from .errors import MetricError
from .models import ENTITIES, MetricResult, SyncRun
from .periods import Period

Unit = Literal["ratio", "currency", "days", "hours", "count", "score", "points"]


@dataclass(frozen=True)
class Param:
    """A typed metric parameter: ``--param name=value`` or ``metrics.<id>.params`` in config."""

    name: str
    type: type
    default: Any
    description: str
    choices: tuple[Any, ...] | None = None

    def coerce(self, metric_id: str, raw: Any) -> Any:
        try:
            if self.type is bool and isinstance(raw, str):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1", "yes")
            else:
                value = self.type(raw)
        except (TypeError, ValueError):
            raise MetricError(f"{metric_id}: param {self.name}: expected {self.type.__name__}, got {raw!r}") from None
        if self.choices and value not in self.choices:
            options = ", ".join(map(str, self.choices))
            raise MetricError(f"{metric_id}: param {self.name}: {value!r} is not one of {options}")
        return value


@dataclass(frozen=True)
class Value:
    """A metric's result for one period. Ratios keep their numerator and denominator."""

    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    note: str | None = None


def ratio(numerator: float | None, denominator: float | None, *, empty: str = "denominator is zero") -> Value:
    """numerator / denominator, or a null value with a reason when it cannot be divided."""
    numerator, denominator = float(numerator or 0), float(denominator or 0)
    if denominator == 0:
        return Value(None, numerator, denominator, note=empty)
    return Value(numerator / denominator, numerator, denominator)


@dataclass
class MetricContext:
    """What a metric's ``compute`` gets: a connection, the period as UTC instants and its params."""

    conn: Connection
    period: Period
    start: datetime
    end: datetime
    params: dict[str, Any]
    reporting_currency: str = "USD"

    def table(self, name: str) -> Table:
        return ENTITIES[name].__table__

    def live(self, table: Table):
        """Rows not deleted in their source."""
        return table.c.is_deleted.is_(False)

    def in_period(self, column):
        return (column >= self.start) & (column < self.end)


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

    def __post_init__(self) -> None:
        unknown = set(self.tables) - set(ENTITIES)
        if unknown:
            raise ValueError(f"metric {self.id}: unknown tables {sorted(unknown)}")

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        by_name = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            known = ", ".join(by_name) or "none"
            raise MetricError(f"{self.id}: unknown param {unknown[0]!r} (params: {known})")
        return {p.name: p.coerce(self.id, given[p.name]) if p.name in given else p.default for p in self.params}


def run_metrics(engine, metrics: list[Metric], period: Period, params: dict[str, dict[str, Any]], *,
                timezone: str = "UTC", reporting_currency: str = "USD", persist: bool = True) -> list[dict]:
    """Compute each metric for the period; results are persisted under one run id and returned."""
    run_id = uuid.uuid4().hex
    start, end = period.bounds(timezone)
    computed_at = datetime.now(UTC)
    results = []
    with engine.connect() as conn:
        freshness = conn.execute(select(func.min(_last_success()))).scalar()
        for metric in metrics:
            resolved = metric.resolve_params(params.get(metric.id, {}))
            ctx = MetricContext(conn, period, start, end, resolved, reporting_currency)
            try:
                value = metric.compute(ctx)
            except MetricError:
                raise
            except Exception as exc:
                raise MetricError(f"{metric.id}: {type(exc).__name__}: {exc}") from exc
            results.append({
                "run_id": run_id, "metric": metric.id, "period": period.label,
                "period_start": start, "period_end": end, "grain": None, "segment": {},
                "value": value.value, "numerator": value.numerator, "denominator": value.denominator,
                "unit": metric.unit, "params": resolved, "note": value.note,
                "computed_at": computed_at, "data_freshness": freshness,
            })
    if persist and results:
        columns = set(MetricResult.__table__.columns.keys())
        with engine.begin() as conn:
            conn.execute(MetricResult.__table__.insert(), [{k: v for k, v in r.items() if k in columns}
                                                            for r in results])
    return results


def _last_success():
    """Per connector, the finish time of its last successful sync (a scalar subquery source)."""
    runs = SyncRun.__table__
    return (select(func.max(runs.c.finished_at).label("finished"))
            .where(runs.c.status == "success").group_by(runs.c.connector).subquery().c.finished)
