"""Targets (SMART goals): is a metric on track to reach its value by the end of the target's period?

A *level* metric (a rate, an average) is on track when its value already meets the
target, at risk within ``tolerance`` of it, off track beyond. An *additive* metric (a
count, revenue) is paced: by a date inside the target period it should have reached the
elapsed share of the target; the result says how much is still needed per day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .periods import Period

if TYPE_CHECKING:  # the engine and the config import this module
    from .config import Config
    from .engine import Settings
    from .plugins import Registry

Status = Literal["achieved", "on_track", "at_risk", "off_track", "missed"]


@dataclass(frozen=True)
class Target:
    metric: str
    value: float
    period: Period
    direction: Literal["higher", "lower"]
    segment: dict[str, Any] | None = None
    tolerance: float = 0.1

    def applies_to(self, metric: str, period: Period, segment: dict[str, Any]) -> bool:
        """A target judges results over its whole period or a to-date part of it, for its segment."""
        return (metric == self.metric and segment_key(self.segment or {}) == segment_key(segment)
                and period.start == self.period.start and period.end <= self.period.end)


def segment_key(segment: dict[str, Any]) -> dict[str, str | None]:
    """A segment compared by text: YAML reads ``owner: 17`` as a number, the store holds ids as text."""
    return {k: None if v is None else str(v) for k, v in segment.items()}


def evaluate(target: Target, value: float | None, period: Period, additive: bool, today: date) -> dict[str, Any]:
    result: dict[str, Any] = {"value": target.value, "period": target.period.label, "direction": target.direction}
    if value is None:
        return {**result, "status": None, "note": "no value to compare"}
    sign = 1 if target.direction == "higher" else -1
    gap = sign * (value - target.value)  # >= 0: target met
    if not additive:
        margin = abs(target.value) * target.tolerance
        status = "on_track" if gap >= 0 else "at_risk" if -gap <= margin else "off_track"
        return {**result, "status": status, "gap": value - target.value}
    days = (target.period.end - target.period.start).days
    # The share of the target period elapsed by the end of this result's period, or by today if earlier.
    reached = max(min(period.end, today + timedelta(days=1), target.period.end), period.start)
    elapsed = (reached - target.period.start).days
    expected = target.value * elapsed / days
    remaining_days = (target.period.end - reached).days
    still_needed = target.value - value
    result |= {"expected_to_date": expected, "remaining": still_needed}
    if gap >= 0:
        return {**result, "status": "achieved" if target.direction == "higher" else "on_track"}
    if remaining_days == 0 or target.direction == "lower":  # over a budget stays over it
        return {**result, "status": "missed"}
    pace_gap = sign * (value - expected)
    status = "on_track" if pace_gap >= 0 else "at_risk" if -pace_gap <= abs(expected) * target.tolerance \
        else "off_track"
    return {**result, "status": status, "needed_per_day": still_needed / remaining_days}


def of_config(config: Config, registry: Registry, settings: Settings) -> list[Target]:
    """The config's targets as of the reporting day ``settings.today``: a relative period (``this-year``) is
    read on that day, so a service asks again each day rather than keep the day it started on."""
    targets = []
    for t in config.targets:
        if t.period:
            window = settings.calendar.parse(t.period, today=settings.today)
        else:
            start = t.start or settings.calendar.containing("year", t.deadline).start
            window = Period(start, t.deadline + timedelta(days=1), f"{start}..{t.deadline}")
        direction = t.direction or registry.metric(t.metric).direction
        targets.append(Target(t.metric, t.value, window, direction, t.segment, t.tolerance))
    return targets
