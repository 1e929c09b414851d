"""The engine runs behind a report, assembled into a :class:`~.cards.Report`.

Three runs of :func:`crmkpi.engine.run_metrics`, each computing a metric's every cell in one
grouped pass where the metric has a grouped compute:

1. the period itself, with its previous-period and year-ago comparisons and the targets
   (the cards: the same cells as ``crmkpi run --period P --compare both``);
2. the trend: the last ``trend_count`` whole ``trend_grain`` parts ending with the part that
   holds the period's last day (``--period 2025-Q4``, months: 2025-01 to 2025-12);
3. with a dimension, the period split by it, with the same comparisons and targets
   (``crmkpi run --period P --segment D --compare both``).

Nothing is saved to ``metric_results``: a report reads the store and leaves it as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Sequence

from sqlalchemy.engine import Engine

from ..engine import COMPARISONS, Run, Settings, failure_summary, run_metrics
from ..metrics import Metric
from ..periods import Calendar, Period
from ..targets import Target
from .cards import Report, breakdown, card, trend_points

#: How many parts a trend (a sparkline, a chart) shows.
TREND_PARTS = 12


def trend_window(calendar: Calendar, period: Period, grain: str, count: int = TREND_PARTS) -> list[Period]:
    """The ``count`` whole ``grain`` parts ending with the one that holds the period's last day."""
    parts = [calendar.containing(grain, period.last_day)]
    while len(parts) < count:
        parts.insert(0, calendar.previous(parts[0]))
    return parts


def build_report(engine: Engine, metrics: Sequence[Metric], period: Period, params: dict[str, dict[str, Any]],
                 targets: Sequence[Target], settings: Settings, *, dimension: str | None = None,
                 trend_grain: str = "month", trend_count: int = TREND_PARTS,
                 stop_on_error: bool = False) -> Report:
    """Compute what a report shows. A wrong dimension or param raises before anything is computed; a metric
    that fails shows its error on its card (``Report.failed`` says which)."""
    metrics = list(metrics)

    def compute(request: Run) -> list[dict]:
        return run_metrics(engine, request, settings, persist=False, stop_on_error=stop_on_error)

    # The breakdown first: a dimension that names nothing is refused before the other runs take their time.
    split = compute(Run(metrics, period, params, None, (dimension,), COMPARISONS, list(targets))) \
        if dimension else []
    main = compute(Run(metrics, period, params, compare=COMPARISONS, targets=list(targets)))
    parts = trend_window(settings.calendar, period, trend_grain, trend_count)
    span = Period(parts[0].start, parts[-1].end, f"{parts[0].label}..{parts[-1].label}")
    trend = compute(Run(metrics, span, params, trend_grain))
    by_id = {m.id: m for m in metrics}
    cards = tuple(card(result, by_id[result["metric"]], trend_points(trend, parts, by_id[result["metric"]], targets))
                  for result in main)
    breakdowns = {m.id: breakdown(split, m, dimension) for m in metrics} if dimension else {}
    freshness = main[0]["data_freshness"] if main else None  # the oldest last successful sync
    return Report(period.label, period.start, period.end, trend_grain, dimension, cards, breakdowns,
                  datetime.now(UTC), freshness, settings.currency, failure_summary(main))
