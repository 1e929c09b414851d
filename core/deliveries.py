"""Delivering a message to a channel at most once per key, whoever tries: replicas, retries, a run after a crash.

The delivery's row is inserted before anything is sent. The unique key ``(rule, occurrence, segment,
channel)`` lets any number of senders race and one win; the others send nothing. The winner sends,
retrying transient failures with backoff, and records the outcome: ``sent``, or ``failed`` with the
(redacted) error. If it dies mid-send, its row stays ``pending``: once that row is older than the lease,
the next sender to find it marks it ``unknown`` and does not send. The receiver may or may not have the
message, and sending it twice is worse than missing it once (an on-call paged twice learns to ignore
pages; a missing one shows in ``/health`` and in ``crmkpi notify status``).

Nothing here raises into the caller (the scheduler): every failure is an outcome.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Callable

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .errors import NotifierError
from .models import NotificationDelivery
from .notify import Message, NotifierType
from .redact import redact
from .store import Store, aware_utc, first_line

DELIVERIES = NotificationDelivery.__table__
#: How long a pending delivery is taken to be in progress; older, its sender is taken to have died.
LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Channel:
    """A configured channel: its name in the config, its notifier type and its validated settings."""

    name: str
    type: NotifierType
    settings: BaseModel


@dataclass(frozen=True)
class DeliveryKey:
    """What makes a delivery one: the rule, which firing of it, the segment (``""``: none), the channel."""

    rule: str
    occurrence: str
    segment: str = ""

    def text(self, channel: str) -> str:
        """The key as one string (a receiver's idempotency key)."""
        return "/".join((self.rule, self.occurrence, self.segment, channel))


@dataclass(frozen=True)
class Retry:
    """How often and how soon a failed send is tried again: ``attempts`` in all, waiting ``backoff`` seconds
    after the first failure, doubling each time up to ``max_backoff``."""

    attempts: int = 3
    backoff: float = 2.0
    max_backoff: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.backoff * 2 ** (failures - 1), self.max_backoff)


@dataclass(frozen=True)
class Delivery:
    """What :func:`deliver` did. ``status``: ``sent``; ``failed`` (``error`` says why); ``duplicate`` (another
    sender owns the key: sent, sending, or failed already, ``error`` says which); ``unknown`` (its sender died
    mid-send: not sent again)."""

    channel: str
    status: str
    id: int | None = None
    attempts: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("sent", "duplicate")


def deliver(store: Store, channel: Channel, key: DeliveryKey, message: Message, *, retry: Retry = Retry(),
            lease: timedelta = LEASE, sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Send ``message`` to ``channel`` unless a delivery of ``key`` to it was recorded already; never raises
    (but Ctrl-C and SIGTERM, which leave the row pending)."""
    now = datetime.now(UTC)
    try:
        delivery_id = _claim(store, channel.name, key, now)
    except SQLAlchemyError as exc:
        return Delivery(channel.name, "failed", error=redact(f"store: {first_line(exc)}; not sent"))
    if delivery_id is None:
        return _owned_elsewhere(store, channel.name, key, now, lease)
    message = replace(message, id=key.text(channel.name))
    error, attempts = None, 0
    while attempts < retry.attempts:
        attempts += 1
        _update(store, delivery_id, attempts=attempts, updated_at=datetime.now(UTC))
        try:
            channel.type.send(message, channel.settings)
        except Exception as exc:  # a third-party notifier may raise anything: an outcome, never the caller's
            error = _describe(exc)
            if not getattr(exc, "retry", True) or attempts == retry.attempts:
                break
            sleep(retry.delay(attempts))
        else:
            sent = datetime.now(UTC)
            if not _update(store, delivery_id, status="sent", sent_at=sent, updated_at=sent, last_error=None):
                return Delivery(channel.name, "sent", delivery_id, attempts,
                                "sent, but the store did not record it: it will show as unknown")
            return Delivery(channel.name, "sent", delivery_id, attempts)
    _update(store, delivery_id, status="failed", last_error=error, updated_at=datetime.now(UTC))
    return Delivery(channel.name, "failed", delivery_id, attempts, error)


def _claim(store: Store, channel: str, key: DeliveryKey, now: datetime) -> int | None:
    """Insert the pending row of the delivery and return its id; None when the key is taken."""
    try:
        with store.engine.begin() as conn:
            return conn.execute(DELIVERIES.insert().values(
                rule=key.rule, occurrence=key.occurrence, segment=key.segment, channel=channel, status="pending",
                attempts=0, owner=f"{socket.gethostname()}:{os.getpid()}", created_at=now,
                updated_at=now)).inserted_primary_key[0]
    except IntegrityError:
        return None


def _owned_elsewhere(store: Store, channel: str, key: DeliveryKey, now: datetime, lease: timedelta) -> Delivery:
    """The outcome for a key someone else inserted: nothing is sent; a pending row past its lease becomes
    ``unknown``."""
    where = (DELIVERIES.c.rule == key.rule, DELIVERIES.c.occurrence == key.occurrence,
             DELIVERIES.c.segment == key.segment, DELIVERIES.c.channel == channel)
    try:
        with store.engine.begin() as conn:
            row = conn.execute(select(DELIVERIES).where(*where)).mappings().one()
            if row["status"] == "pending" and aware_utc(row["updated_at"]) <= now - lease:
                conn.execute(update(DELIVERIES).where(*where, DELIVERIES.c.status == "pending").values(
                    status="unknown", updated_at=now,
                    last_error=f"its sender ({row['owner']}) stopped mid-send; whether it was delivered is unknown, "
                               "and it is not sent again"))
                return Delivery(channel, "unknown", row["id"], row["attempts"],
                                "a sender died mid-send: not sent again")
    except SQLAlchemyError as exc:
        return Delivery(channel, "failed", error=redact(f"store: {first_line(exc)}; not sent"))
    owned = {"sent": "sent already", "pending": f"being sent by {row['owner']}", "failed": "failed already",
             "unknown": "its outcome is unknown"}.get(row["status"], row["status"])
    return Delivery(channel, "duplicate", row["id"], row["attempts"], f"delivery {row['id']} {owned}; not sent again")


def _update(store: Store, delivery_id: int, **values: Any) -> bool:
    """Record a step of a delivery; False when the store refused (the row keeps its last state)."""
    try:
        with store.engine.begin() as conn:
            conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id).values(**values))
        return True
    except SQLAlchemyError:
        return False


def _describe(exc: Exception) -> str:
    """One redacted line: a notifier's own message, or the type and message of anything else it raised."""
    text = str(exc) if isinstance(exc, NotifierError) else f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split()) or type(exc).__name__)


def channel_health(store: Store, channels: list[str]) -> dict[str, dict[str, Any]]:
    """Each channel's state from its deliveries (every replica's): ``ok`` is false when its latest finished
    delivery failed or has an unknown outcome, with that ``last_error``; ``last_sent_at``: its latest success."""
    finished = DELIVERIES.c.status.in_(("sent", "failed", "unknown"))
    with store.engine.connect() as conn:
        latest = dict(conn.execute(select(DELIVERIES.c.channel, func.max(DELIVERIES.c.id)).where(finished)
                                   .group_by(DELIVERIES.c.channel)).all())
        sent = dict(conn.execute(select(DELIVERIES.c.channel, func.max(DELIVERIES.c.sent_at))
                                 .where(DELIVERIES.c.status == "sent").group_by(DELIVERIES.c.channel)).all())
        rows = {row["channel"]: row for row in conn.execute(
            select(DELIVERIES).where(DELIVERIES.c.id.in_(list(latest.values())))).mappings()} if latest else {}
    health = {}
    for name in channels:
        row = rows.get(name)
        failing = row is not None and row["status"] != "sent"
        health[name] = {"ok": not failing, "last_error": row["last_error"] if failing else None,
                        "last_failed_at": aware_utc(row["updated_at"]) if failing else None,
                        "last_sent_at": aware_utc(sent.get(name))}
    return health
