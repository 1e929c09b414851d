"""What each rule computes: one engine run per (metric, params, grain, segment, window), shared by the rules
that ask for the same, and the rows of each segment cell.

A rule looks at the latest *complete* period of its grain in the reporting time zone: on 2026-12-06 with
``grain: month`` that is 2026-11 (December is not over). A change rule adds its comparison; an anomaly rule
needs the ``periods`` before it too; a target rule judges the target whose period holds that period, over
its to-date part (the target's start to the period's end), as ``crmkpi run`` judges a to-date period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from ..engine import Run, Settings, run_metrics
from ..errors import CrmkpiError
from ..metrics import Metric
from ..periods import Calendar, Period
from ..targets import Target
from .rules import AlertRule


def latest_complete(calendar: Calendar, grain: str, today: date) -> Period:
    """The last whole period of ``grain`` that ended before ``today``."""
    return calendar.previous(calendar.containing(grain, today))


def trailing(calendar: Calendar, latest: Period, count: int) -> Period:
    """``count`` whole periods of ``latest``'s grain, ending with it."""
    first = latest
    for _ in range(count - 1):
        first = calendar.previous(first)
    return Period(first.start, latest.end, f"{first.label}..{latest.label}")


@dataclass(frozen=True)
class Request:
    """One engine run several rules can share."""

    metric: str
    params: str  # as JSON, so that equal params group
    grain: str | None
    dimensions: tuple[str, ...]
    period: Period


@dataclass
class Computed:
    """The rows of one request by segment key, oldest period first; or why it could not run."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Need:
    """What one rule asks of the engine (``why_not``: it cannot ask, e.g. no target covers the period)."""

    request: Request | None
    compare: tuple[str, ...]
    latest: Period
    why_not: str | None = None


def segment_key(segment: dict[str, Any]) -> str:
    """``team=East`` (several: ``region=EMEA,team=East``; a row without a value: ``team=``); "" unsplit."""
    return ",".join(f"{d}={'' if v is None else v}" for d, v in segment.items())


def need(rule: AlertRule, metric: Metric, params: dict[str, Any], calendar: Calendar, today: date,
         targets: list[Target]) -> Need:
    latest = latest_complete(calendar, rule.grain, today)
    text = json.dumps(params, sort_keys=True, default=str)
    if rule.target is not None:
        covering = [t for t in targets if t.metric == metric.id and t.period.start <= latest.start < t.period.end]
        if not covering:
            return Need(None, (), latest, f"no target of {metric.id} covers {latest.label}")
        window = covering[0].period
        end = min(latest.end, window.end)
        period = window if end == window.end else \
            Period(window.start, end, f"{window.label} to {(end - timedelta(days=1)).isoformat()}")
        return Need(Request(metric.id, text, None, rule.dimensions, period), (), latest)
    count = rule.anomaly.periods + 1 if rule.anomaly else 1
    compare = (rule.change.against,) if rule.change else ()
    return Need(Request(metric.id, text, rule.grain, rule.dimensions, trailing(calendar, latest, count)), compare,
                latest)


def shared(needs: dict[str, Need]) -> dict[str, Need]:
    """The rules' needs with one request per (metric, params, grain, segment) of a series: the longest window
    of those asking (an anomaly rule's periods serve a threshold rule, whose period is the last of them)."""
    longest: dict[tuple, Request] = {}
    for found in needs.values():
        request = found.request
        if request is not None and request.grain is not None:
            key = (request.metric, request.params, request.grain, request.dimensions)
            if key not in longest or request.period.start < longest[key].period.start:
                longest[key] = request
    return {name: replace(found, request=longest[(found.request.metric, found.request.params, found.request.grain,
                                                  found.request.dimensions)])
            if found.request is not None and found.request.grain is not None else found
            for name, found in needs.items()}


def compute(engine: Engine, metrics: dict[str, Metric], requests: dict[Request, set[str]], settings: Settings,
            targets: list[Target]) -> dict[Request, Computed]:
    """Each request once, with the union of the comparisons its rules need; a request that cannot run
    (a dimension no row has) says why instead of stopping the others."""
    computed = {}
    for request, compare in requests.items():
        run = Run([metrics[request.metric]], request.period, {request.metric: json.loads(request.params)},
                  request.grain, request.dimensions, tuple(sorted(compare)), targets)
        try:
            results = run_metrics(engine, run, settings, persist=False)
        except CrmkpiError as exc:
            computed[request] = Computed(error=str(exc))
            continue
        found = Computed()
        for row in sorted(results, key=lambda r: r["period_start"]):
            key = segment_key(row["segment"])
            found.rows.setdefault(key, []).append(row)
            found.labels[key] = segment_key({d: row["segment_labels"].get(d, v) for d, v in row["segment"].items()})
        computed[request] = found
    return computed


def cells(rule: AlertRule, computed: Computed) -> dict[str, list[dict[str, Any]]]:
    """The segment cells a rule judges: every one of its dimension's, or the one value it names."""
    if not isinstance(rule.segment, dict):
        return computed.rows
    wanted = segment_key({d: None if v is None else str(v) for d, v in rule.segment.items()})
    return {key: rows for key, rows in computed.rows.items() if key == wanted} or {wanted: []}

