"""The engine runs behind a report, assembled into a :class:`~.cards.Report`.

Three runs of :func:`crmkpi.engine.run_metrics`, each computing a metric's every cell in one
grouped pass where the metric has a grouped compute:

1. the period itself, with its previous-period and year-ago comparisons and the targets
   (the cards: the same cells as ``crmkpi run --period P --compare both``);
2. the trend: the last ``trend_count`` whole ``trend_grain`` parts ending with the part that
   holds the period's last day (``--period 2025-Q4``, months: 2025-01 to 2025-12);
3. with a dimension, the period split by it, with the same comparisons and targets
   (``crmkpi run --period P --segment D --compare both``).

A segment filter (``where``, e.g. ``{"team": "East"}``: the dashboard's) splits each run by its
dimensions too and keeps that segment's rows: the cells are the ones ``crmkpi run --segment team``
computes, never a number of their own.

The runs read one snapshot of the store: a sync committing meanwhile cannot make the cards and the
trend disagree. Nothing is saved to ``metric_results``: a report reads the store and leaves it as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Sequence

from sqlalchemy.engine import Connection, Engine

from ..engine import COMPARISONS, Run, Settings, failure_summary, run_metrics
from ..metrics import Metric
from ..periods import Calendar, Period
from ..store import reading
from ..targets import Target, segment_key
from .cards import Report, absent, breakdown, card, trend_points

#: How many parts a trend (a sparkline, a chart) shows.
TREND_PARTS = 12


def trend_window(calendar: Calendar, period: Period, grain: str, count: int = TREND_PARTS) -> list[Period]:
    """The ``count`` whole ``grain`` parts ending with the one that holds the period's last day."""
    parts = [calendar.containing(grain, period.last_day)]
    while len(parts) < count:
        parts.insert(0, calendar.previous(parts[0]))
    return parts


def build_report(engine: Engine | Connection, metrics: Sequence[Metric], period: Period, params: dict[str, dict[str, Any]],
                 targets: Sequence[Target], settings: Settings, *, dimension: str | None = None,
                 where: dict[str, Any] | None = None, trend_grain: str = "month", trend_count: int = TREND_PARTS,
                 stop_on_error: bool = False) -> Report:
    """Compute what a report shows, of the whole company or of the segment ``where``. A wrong dimension or param
    raises before anything is computed; a metric that fails shows its error on its card (``Report.failed``
    says which)."""
    metrics, where, fixed = list(metrics), where or {}, tuple(where or {})
    parts = trend_window(settings.calendar, period, trend_grain, trend_count)
    with reading(engine) as conn:
        def compute(request: Run) -> list[dict]:
            rows = run_metrics(conn, request, settings, persist=False, stop_on_error=stop_on_error)
            return narrowed(rows, where) if where else rows

        # The breakdown first: a dimension that names nothing is refused before the other runs take their time.
        split = compute(Run(metrics, period, params, None, tuple(dict.fromkeys((*fixed, dimension))), COMPARISONS,
                            list(targets))) if dimension else []
        main = compute(Run(metrics, period, params, None, fixed, COMPARISONS, list(targets)))
        trend = compute(Run(metrics, span_of(parts), params, trend_grain, fixed))
    shown = {result["metric"]: result for result in main}
    cards = tuple(card(shown[m.id], m, trend_points(trend, parts, m, targets, where)) if m.id in shown
                  else absent(m, period, where, settings.currency) for m in metrics)
    breakdowns = {m.id: breakdown(split, m, dimension) for m in metrics} if dimension else {}
    freshness = main[0]["data_freshness"] if main else None  # the oldest last successful sync
    return Report(period.label, period.start, period.end, trend_grain, dimension, cards, breakdowns,
                  datetime.now(UTC), freshness, settings.currency, failure_summary(main), where)


def span_of(parts: Sequence[Period]) -> Period:
    """One period from the first part's start to the last one's end."""
    return Period(parts[0].start, parts[-1].end, f"{parts[0].label}..{parts[-1].label}")


def narrowed(rows: list[dict], where: dict[str, Any]) -> list[dict]:
    """The rows of the segment ``where``, with its dimensions taken out of their segment (a breakdown by
    owner within team=East is labelled by owner alone). A row that failed for every segment (a dimension
    that does not apply to the metric's table) is kept: its error is the answer."""
    wanted = segment_key(where)
    kept = []
    for row in rows:
        segment = row["segment"]
        if segment and segment_key({d: segment.get(d) for d in where}) != wanted:
            continue
        kept.append({**row, "segment": {d: v for d, v in segment.items() if d not in where},
                     "segment_labels": {d: v for d, v in row["segment_labels"].items() if d not in where}})
    return kept
