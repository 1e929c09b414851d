"""Pure verdicts: does one rule fire on one segment cell, is it ok, or can it not say (and why)?

Every function takes numbers the engine computed and returns a :class:`Verdict`; nothing here reads the store,
so each condition is tested with plain numbers.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal, Sequence

#: Scales a MAD to a standard deviation's size for normally distributed values (1 / Φ⁻¹(3/4)).
MAD_SCALE = 1.4826
#: The target statuses a ``target: status_change`` rule fires on.
BAD_STATUSES = ("at_risk", "off_track", "missed")

State = Literal["firing", "ok", "not_evaluated"]


@dataclass(frozen=True)
class Verdict:
    state: State
    reason: str
    value: float | None = None


def fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:.6g}"


def gate(row: dict[str, Any], min_volume: float | None) -> Verdict | None:
    """Why a computed cell cannot be judged (a metric error, a null value, too little volume); None: it can."""
    if row.get("error"):
        return Verdict("not_evaluated", f"metric error: {row['error']}")
    if row.get("value") is None:
        return Verdict("not_evaluated", f"no value ({row.get('note') or 'null'})")
    if min_volume is not None:
        volume = row.get("denominator")
        if volume is None or volume < min_volume:
            return Verdict("not_evaluated", f"volume {fmt(volume)} below min_volume {fmt(min_volume)}",
                           row["value"])
    return None


def threshold(value: float, above: float | None, below: float | None) -> Verdict:
    if above is not None and value > above:
        return Verdict("firing", f"{fmt(value)} is above {fmt(above)}", value)
    if below is not None and value < below:
        return Verdict("firing", f"{fmt(value)} is below {fmt(below)}", value)
    bounds = " and ".join(f"{word} {fmt(b)}" for word, b in (("≤", above), ("≥", below)) if b is not None)
    return Verdict("ok", f"{fmt(value)} is {bounds}", value)


def change(value: float, before: float | None, label: str, worse_by: float,
           direction: Literal["higher", "lower"]) -> Verdict:
    """Relative change against ``before`` (``label``: which period), worse in the metric's ``direction``: for a
    lower-is-better metric a rise is worse. A null or zero earlier value has no relative change."""
    if before is None:
        return Verdict("not_evaluated", f"no value for {label} to compare with", value)
    if before == 0:
        return Verdict("not_evaluated", f"{label} was 0: no relative change", value)
    relative = (value - before) / abs(before)
    worse = -relative if direction == "higher" else relative
    text = f"{fmt(value)} vs {fmt(before)} {label} ({relative:+.1%}; {direction} is better)"
    if worse >= worse_by - 1e-9:  # a drop of exactly 20% computes as 19.99999...%: "by 20% or more" includes it
        return Verdict("firing", f"{text}: worse by {worse:.1%}, at least {worse_by:.1%}", value)
    return Verdict("ok", text, value)


def target_status(value: float, target: dict[str, Any] | None) -> Verdict:
    if target is None:
        return Verdict("not_evaluated", "no target for this cell and period", value)
    status = target.get("status")
    if status is None:
        return Verdict("not_evaluated", f"target not judged: {target.get('note') or 'no status'}", value)
    text = f"{fmt(value)} against the target {fmt(target['value'])} ({target['period']}): {status}"
    return Verdict("firing" if status in BAD_STATUSES else "ok", text, value)


@dataclass(frozen=True)
class Band:
    median: float
    mad: float
    low: float
    high: float


def robust_band(history: Sequence[float], mads: float, min_spread: float = 0.0) -> Band:
    """median ± max(mads × 1.4826 × MAD, min_spread) of ``history``."""
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    half = max(mads * MAD_SCALE * mad, min_spread)
    return Band(median, mad, median - half, median + half)


def anomaly(values: Sequence[float | None], periods: int, mads: float, min_spread: float = 0.0) -> Verdict:
    """``values``: the cell's series, oldest first, the latest last; the band is drawn from the ``periods``
    before the latest. Too few of them with a value, or no spread at all (MAD 0 and no ``min_spread``), and the
    rule cannot say."""
    *history, latest = values
    known = [v for v in history[-periods:] if v is not None]
    if latest is None:
        return Verdict("not_evaluated", "no value for the latest period")
    if len(known) < periods:
        return Verdict("not_evaluated", f"too few periods: {len(known)} of the {periods} before the latest have "
                                        f"a value ({periods} needed)", latest)
    band = robust_band(known, mads, min_spread)
    if band.high == band.low:
        return Verdict("not_evaluated", f"no spread: the MAD of the {periods} values before is 0 (median "
                                        f"{fmt(band.median)}); set anomaly.min_spread to alert on a move", latest)
    text = (f"{fmt(latest)} vs the band {fmt(band.low)}..{fmt(band.high)} (median {fmt(band.median)}, "
            f"MAD {fmt(band.mad)} of {periods} periods)")
    if latest < band.low or latest > band.high:
        return Verdict("firing", f"{text}: outside", latest)
    return Verdict("ok", f"{text}: inside", latest)
