"""The service's loop and how it stops: ticks until told to stop, retrying a store that is away.

A stop request (SIGTERM, Ctrl-C) stops claiming at once; a job that is running may finish
within the stop timeout, after which it is interrupted (:class:`Stopped` is raised where it
runs: its sync rolls back and the run is recorded as failed). A second request interrupts at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Callable, Iterator

from sqlalchemy.exc import SQLAlchemyError

from ..errors import CrmkpiError
from ..store import first_line
from .scheduler import Scheduler

#: The longest wait between attempts while the store is unreachable.
MAX_RETRY_SECONDS = 300.0


@dataclass
class Heartbeat:
    """What ``/health`` knows of the loop: when it last completed a look at the schedules, and why not."""

    interval: float
    last_tick: datetime | None = None
    last_error: str | None = None

    def alive(self, now: datetime, busy: bool) -> bool:
        """A job is running (``busy``: a tick lasts as long as its job), or the last tick is recent."""
        if busy:
            return True
        recent = timedelta(seconds=max(3 * self.interval, 60))
        return self.last_tick is not None and now - self.last_tick <= recent


class Stopped(BaseException):
    """Raised in the main thread to interrupt a running job when the service must stop now.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` on the way may swallow it."""


@contextmanager
def graceful_stop(timeout: float) -> Iterator[threading.Event]:
    """An event set by the first SIGTERM/SIGINT; the job still running ``timeout`` seconds later (or at
    a second signal) is interrupted with :class:`Stopped`. The previous handlers come back afterwards."""
    stopping = threading.Event()

    def request(signum, frame) -> None:
        if stopping.is_set():
            raise Stopped(f"{signal.Signals(signum).name} again")
        stopping.set()
        signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.001))

    def interrupt(signum, frame) -> None:
        raise Stopped(f"still running {timeout:g} s after the stop request (--stop-timeout)")

    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, request), (signal.SIGINT, request), (signal.SIGALRM, interrupt))}
    try:
        yield stopping
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_until(scheduler: Scheduler, stopping: threading.Event, heartbeat: Heartbeat,
                say: Callable[..., None]) -> None:
    """Tick every ``interval`` seconds until ``stopping`` is set. A failing tick (the database went away)
    is reported and retried, backing off up to :data:`MAX_RETRY_SECONDS`: never a silent stall."""
    failures, interval = 0, heartbeat.interval
    while not stopping.is_set():
        try:
            scheduler.tick()
            failures, heartbeat.last_tick, heartbeat.last_error = 0, datetime.now(UTC), None
        except (CrmkpiError, SQLAlchemyError, OSError) as exc:
            failures += 1
            retry = min(interval * 2 ** (failures - 1), MAX_RETRY_SECONDS)
            heartbeat.last_error = first_line(exc)
            say(f"tick failed ({failures} in a row), retrying in {retry:g} s: {heartbeat.last_error}", logging.ERROR,
                failures=failures, retry_seconds=retry)
            stopping.wait(retry)
            continue
        stopping.wait(interval)
