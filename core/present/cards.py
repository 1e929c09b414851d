"""KPI cards built from the engine's results: what a card, a breakdown row or a chart shows.

The numbers are the engine's (``run_metrics`` rows, the same as ``crmkpi run --format json``)
and the texts are :mod:`crmkpi.report`'s (``format_value``, ``format_change``, ``title``,
``segment_text``): a card never shows a number the engine did not compute. A null value
keeps its note and a failed metric its error; neither is ever drawn as a zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Sequence

from ..engine import COMPARISONS, TITLES
from ..metrics import Metric
from ..periods import Period
from ..report import format_change, format_value, segment_text, shared_labels, title
from ..targets import Target, segment_key
from .svg import Point

Tone = Literal["good", "bad", "neutral"]
Movement = Literal["up", "down", "flat"]


@dataclass(frozen=True)
class Change:
    """A comparison with an earlier period, coloured by the metric's direction (churn down is good)."""

    kind: str  # "previous" or "year_ago"
    title: str  # "previous period"
    period: str  # the earlier period's label
    before: float | None
    before_text: str
    change: float | None
    text: str  # "+2.3 pts (+5.1%)", or "—" when either value is missing
    movement: Movement | None
    tone: Tone
    error: str | None = None


@dataclass(frozen=True)
class Progress:
    """Where a value stands against its target: status, how far along, and what it still needs."""

    status: str | None  # on_track, at_risk, off_track, achieved, missed; None without a value
    status_text: str
    target: float
    target_text: str
    period: str
    #: Bar fill, 0 to 1: the share of the target reached (additive), or how close the level is to it.
    share: float | None
    #: Additive targets: where the pace says the value should be by now, as a share of the target.
    expected_share: float | None
    detail: str


@dataclass(frozen=True)
class Card:
    metric: str
    title: str
    unit: str
    direction: str
    currency: str | None
    period: str
    value: float | None
    value_text: str
    note: str | None
    error: str | None
    changes: tuple[Change, ...]
    target: Progress | None
    #: The trend series (the sparkline and the chart), oldest first; its values are the trend run's.
    trend: tuple[Point, ...] = ()


@dataclass(frozen=True)
class SegmentRow:
    segment: dict[str, Any]
    label: str
    value: float | None
    value_text: str
    note: str | None
    error: str | None
    changes: tuple[Change, ...]
    target: Progress | None


@dataclass(frozen=True)
class Breakdown:
    """One metric split by a dimension: a row per value, highest value first (nulls last)."""

    metric: str
    dimension: str
    rows: tuple[SegmentRow, ...]
    #: Why the metric has no breakdown (the dimension does not apply to its table), when no row has a value.
    error: str | None = None


@dataclass(frozen=True)
class Report:
    """Everything a report page shows."""

    period: str
    period_start: date
    period_end: date  # exclusive
    trend_grain: str
    dimension: str | None
    cards: tuple[Card, ...]
    breakdowns: dict[str, Breakdown] = field(default_factory=dict)
    generated_at: datetime | None = None
    data_freshness: datetime | None = None
    currency: str | None = None
    #: ``win_rate: <error>; 2 more metrics failed (...)`` when a card's metric failed (None: none did).
    failed: str | None = None
    #: The segment the cards are of (``{"team": "East"}``); empty: the whole company.
    where: dict[str, Any] = field(default_factory=dict)


def tone(change: float | None, direction: str) -> Tone:
    """Good when the value moved the way the metric wants (up for win rate, down for churn and costs)."""
    if change is None or change == 0:
        return "neutral"
    return "good" if (change > 0) == (direction == "higher") else "bad"


def movement(change: float | None) -> Movement | None:
    return None if change is None else "up" if change > 0 else "down" if change < 0 else "flat"


def changes(result: dict[str, Any], metric: Metric) -> tuple[Change, ...]:
    found = []
    for kind in COMPARISONS:
        comparison = result.get(kind)
        if not comparison:
            continue
        change = comparison["change"]
        found.append(Change(kind, TITLES[kind], comparison["period"], comparison["value"],
                            format_value(comparison["value"], result["unit"], result["currency"]), change,
                            format_change(comparison, result["unit"], result["currency"]), movement(change),
                            tone(change, metric.direction), comparison.get("error")))
    return tuple(found)


def progress(result: dict[str, Any]) -> Progress | None:
    """The engine's target evaluation (``result["target"]``) as a card shows it; None without a target."""
    target = result.get("target")
    if not target:
        return None
    unit, currency, value, goal = result["unit"], result["currency"], result["value"], target["value"]
    status = target["status"]
    status_text = (status or "no status").replace("_", " ")
    goal_text = format_value(goal, unit, currency)
    share = expected = None
    if value is None:
        detail = target.get("note") or "no value to compare"
    elif "expected_to_date" in target:  # additive: paced over the target's period
        share = _share(value, goal)
        expected = _share(target["expected_to_date"], goal)
        detail = f"expected by now: {format_value(target['expected_to_date'], unit, currency)}"
        if target.get("needed_per_day") is not None:
            detail += f"; needs {_per_day(target['needed_per_day'], unit, currency)} per day to reach {goal_text}"
    else:  # a level: how close it is, from the side the metric wants
        share = _share(value, goal) if target["direction"] == "higher" else _share(goal, value)
        detail = f"{format_change({'change': target['gap'], 'change_pct': None}, unit, currency)} vs target"
    return Progress(status, status_text, goal, goal_text, target["period"], share, expected, detail)


def _share(part: float, whole: float) -> float | None:
    """part / whole clamped to [0, 1] (a bar cannot overflow); None when it cannot be divided."""
    if not whole or part is None:
        return None
    return min(max(part / whole, 0.0), 1.0)


def _per_day(value: float, unit: str, currency: str | None) -> str:
    """A daily pace: counts keep a decimal (0.4 deals a day is not 0)."""
    return f"{value:,.1f}" if unit == "count" else format_value(value, unit, currency)


def measured(result: dict[str, Any], metric: Metric) -> tuple:
    """What a card and a breakdown row show of one result, in their fields' order: value, value_text, note,
    error, changes, target."""
    return (result["value"], format_value(result["value"], result["unit"], result["currency"]), result["note"],
            result["error"], changes(result, metric), progress(result))


def card(result: dict[str, Any], metric: Metric, trend: Sequence[Point] = ()) -> Card:
    return Card(result["metric"], title(metric, result["params"]), result["unit"], metric.direction,
                result["currency"], result["period"], *measured(result, metric), tuple(trend))


def absent(metric: Metric, period: Period, where: dict[str, Any], currency: str | None) -> Card:
    """The card of a metric with no row in the segment ``where``: no value, and a note that says why."""
    wanted = ", ".join(f"{d}={'(none)' if v is None else v}" for d, v in where.items())
    return Card(metric.id, title(metric, {}), metric.unit, metric.direction,
                currency if metric.unit == "currency" else None, period.label, None, "—",
                f"no {wanted} rows in {period.label}", None, (), None)


def trend_points(results: Sequence[dict[str, Any]], parts: Sequence[Period], metric: Metric,
                 targets: Sequence[Target], segment: dict[str, Any] | None = None) -> tuple[Point, ...]:
    """The metric's trend series of ``segment`` (None: the whole company), one point per part in order, with
    the segment's target line's value at each."""
    wanted = segment_key(segment or {})
    by_label = {r["period"]: r for r in results if r["metric"] == metric.id and segment_key(r["segment"]) == wanted}
    points = []
    for part in parts:
        row = by_label.get(part.label)
        value = row["value"] if row and not row["error"] else None
        points.append(Point(part.label, value, target_line(targets, metric, part, segment)))
    return tuple(points)


def target_line(targets: Sequence[Target], metric: Metric, part: Period,
                segment: dict[str, Any] | None = None) -> float | None:
    """What the part should reach by the target of ``segment`` (None: the company-wide one) whose period holds
    it: the target itself for a level (a rate, an average), its pro-rata share for an additive metric (a 450,000
    year is about 37,000 a month). None outside every target's period."""
    wanted = segment_key(segment or {})
    for target in targets:
        if target.metric != metric.id or segment_key(target.segment or {}) != wanted or not (
                target.period.start <= part.start and part.end <= target.period.end):
            continue
        if not metric.additive:
            return target.value
        return target.value * (part.end - part.start).days / (target.period.end - target.period.start).days
    return None


def breakdown(results: Sequence[dict[str, Any]], metric: Metric, dimension: str) -> Breakdown:
    rows = [r for r in results if r["metric"] == metric.id]
    shared = shared_labels(rows)
    items = [SegmentRow(r["segment"], _label(r, dimension, shared), *measured(r, metric)) for r in rows]
    items.sort(key=lambda row: (row.value is None, -(row.value or 0.0), row.label))
    errors = {row.error for row in items}
    # A dimension that does not apply to the metric's table fails every row alike: said once.
    error = errors.pop() if len(errors) == 1 and None not in errors else None
    return Breakdown(metric.id, dimension, () if error else tuple(items), error)


def _label(result: dict[str, Any], dimension: str, shared: set[tuple[str, Any]]) -> str:
    """The segment as ``crmkpi run`` prints it, without the dimension's name: ``Ann Lee``, ``(none)``."""
    return segment_text(result["segment"], result["segment_labels"], shared).removeprefix(f"{dimension}=")

