"""The state of each rule × segment cell (``alert_states``) and its transitions.

ok → firing sends ``firing`` under a new occurrence (``firing-N``: the Nth firing of the cell); firing → ok sends
``resolved`` and re-arms the cell, so a relapse fires again as ``firing-N+1``; while firing nothing is sent
unless ``repeat_every`` has passed since the last message (``firing-N-repeat-K``, K counting the repeat
periods since it started firing). A cell that cannot be evaluated keeps its state; only its reason is recorded.

Occurrences are numbered from the stored state, not from a clock: two evaluators that read the same state
derive the same delivery keys, and the deliveries table lets one of them send. The state is written after
sending, compare-and-set on what was read, so a crash between the two repeats the same key (not sent again).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..models import AlertState
from ..store import Store, aware_utc
from .conditions import Verdict

STATES = AlertState.__table__
Notice = Literal["firing", "resolved", "repeat"]


@dataclass(frozen=True)
class CellState:
    rule: str
    segment: str
    state: Literal["ok", "firing"] = "ok"
    since: datetime | None = None
    occurrence: str | None = None
    firings: int = 0
    last_notified_at: datetime | None = None
    last_value: float | None = None
    last_reason: str | None = None
    last_period: str | None = None
    evaluated_at: datetime | None = None


@dataclass(frozen=True)
class Step:
    """A cell's next state, and the message due (with its occurrence key), if any."""

    new: CellState
    notice: Notice | None = None
    key: str | None = None


def step(old: CellState, verdict: Verdict, period: str, now: datetime, repeat_every: timedelta | None) -> Step:
    seen = replace(old, last_reason=verdict.reason, last_period=period, evaluated_at=now,
                   last_value=verdict.value if verdict.value is not None else old.last_value)
    if verdict.state == "not_evaluated":
        return Step(replace(seen, last_reason=f"not evaluated: {verdict.reason}"))
    if verdict.state == "firing" and old.state == "ok":
        occurrence = f"firing-{old.firings + 1}"
        return Step(replace(seen, state="firing", since=now, occurrence=occurrence, firings=old.firings + 1,
                            last_notified_at=now), "firing", occurrence)
    if verdict.state == "ok" and old.state == "firing":
        return Step(replace(seen, state="ok", since=now, last_notified_at=now), "resolved",
                    f"{old.occurrence}-resolved")
    if verdict.state == "firing" and repeat_every is not None:
        last = old.last_notified_at or old.since or now
        if now - last >= repeat_every:
            repeat = max(int((now - (old.since or now)) / repeat_every), 1)
            return Step(replace(seen, last_notified_at=now), "repeat", f"{old.occurrence}-repeat-{repeat}")
    return Step(seen)


def read(store: Store, rules: list[str] | None = None) -> dict[tuple[str, str], CellState]:
    query = select(STATES)
    if rules is not None:
        query = query.where(STATES.c.rule.in_(rules))
    with store.engine.connect() as conn:
        return {(row["rule"], row["segment"]): _state(row) for row in conn.execute(query).mappings()}


def _state(row) -> CellState:
    times = {k: aware_utc(row[k]) for k in ("since", "last_notified_at", "evaluated_at")}
    return CellState(row["rule"], row["segment"], row["state"], times["since"], row["occurrence"], row["firings"],
                     times["last_notified_at"], row["last_value"], row["last_reason"], row["last_period"],
                     times["evaluated_at"])


def save(store: Store, old: CellState | None, new: CellState) -> bool:
    """Write ``new`` if the row is still ``old`` (None: there is none yet); False when another evaluator
    changed it first (its write stands)."""
    values = {k: getattr(new, k) for k in ("state", "since", "occurrence", "firings", "last_notified_at",
                                           "last_value", "last_reason", "last_period", "evaluated_at")}
    with store.transaction() as conn:
        if old is None:
            try:
                with conn.begin_nested():
                    conn.execute(STATES.insert().values(rule=new.rule, segment=new.segment, **values))
                return True
            except IntegrityError:
                return False
        changed = conn.execute(update(STATES).where(
            STATES.c.rule == old.rule, STATES.c.segment == old.segment, STATES.c.state == old.state,
            STATES.c.firings == old.firings).values(**values))
        return changed.rowcount == 1
