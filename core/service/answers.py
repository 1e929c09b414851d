"""The JSON API's answers, kept between requests until the store changes.

A dashboard asks the same few questions over and over; reading or computing each from the store
for every request would cap the API at a handful of requests per second. An answer is kept as its
encoded JSON under its request and the store's *version*: the newest saved result, the newest
finished sync and the reporting day (relative periods move with it). The version is read again
every ``recheck`` seconds, so an answer reflects a sync or a run by any process (another replica,
the CLI) about that soon. Requests for an answer being computed wait for that one computation
instead of starting their own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from datetime import date
from typing import Any, Callable, Hashable

from fastapi.encoders import jsonable_encoder
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from ..models import MetricResult, SyncRun
from ..store import Store


def encode(value: Any) -> bytes:
    """JSON as FastAPI's own responses encode it."""
    return json.dumps(jsonable_encoder(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def store_version(store: Store) -> tuple:
    """What changes whenever a saved result or a synced record may have: the newest result's id and
    the newest end of a sync (a sync writes its records and its end in one transaction)."""
    results, syncs = MetricResult.__table__, SyncRun.__table__
    with store.engine.connect() as conn:
        return tuple(conn.execute(select(select(func.max(results.c.id)).scalar_subquery(),
                                         select(func.max(syncs.c.finished_at)).scalar_subquery())).one())


class Answers:
    def __init__(self, store: Store, today: Callable[[], date], recheck: float = 1.0, capacity: int = 256) -> None:
        self.store, self.today, self.recheck, self.capacity = store, today, recheck, capacity
        self._kept: OrderedDict[Hashable, tuple[tuple, bytes]] = OrderedDict()
        self._pending: dict[tuple, asyncio.Future[bytes]] = {}
        self._version: tuple | None = None
        self._checked = float("-inf")
        self._refreshing: asyncio.Task | None = None

    async def get(self, key: Hashable, compute: Callable[[], Any],
                  encoding: Callable[[Any], bytes] = encode) -> bytes:
        """The answer to ``key`` as ``encoding`` gives it (JSON; the dashboard's pages: HTML): kept, or
        ``compute()`` run once in a worker thread. An exception of ``compute`` reaches every request waiting
        for it and is not kept."""
        version = await self._current_version()
        kept = self._kept.get(key)
        if kept is not None and kept[0] == version:
            self._kept.move_to_end(key)
            return kept[1]
        pending = self._pending.get((key, version))
        if pending is not None:
            return await asyncio.shield(pending)
        future = self._pending[(key, version)] = asyncio.get_running_loop().create_future()
        try:
            answer = await run_in_threadpool(lambda: encoding(compute()))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            del self._pending[(key, version)]
        future.set_result(answer)
        self._kept[key] = (version, answer)
        self._kept.move_to_end(key)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)
        return answer

    async def _current_version(self) -> tuple:
        """The store's version as last read. Past ``recheck`` it is read again in the background while
        requests go on with the one known (a read waits behind every request in the thread pool's
        queue); a request waits only when no version is known: at first, or after a failed read."""
        if self._version is None:
            await self._refresh()
            return self._version
        if time.monotonic() - self._checked >= self.recheck and self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        return self._version

    async def _refresh(self) -> None:
        self._checked = time.monotonic()
        try:
            self._version = (*await run_in_threadpool(store_version, self.store), self.today())
        except Exception:
            self._version = None  # the next request reads it again, and answers the failure
            raise

    def _refreshed(self, task: asyncio.Task) -> None:
        self._refreshing = None
        if not task.cancelled():
            task.exception()  # retrieved: a failure is answered by the next request's own read
