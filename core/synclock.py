"""One sync per connector at a time, with a lock that dies with the process holding it.

PostgreSQL: a session-level advisory lock on a connection of its own, which the server releases
when the session ends (the process exiting or killed closes the socket). SQLite: a POSIX record
lock on a ``<database>.lock`` file beside the database, one byte per connector, which the kernel
releases when the process ends (and, POSIX locks being per process and file, when the process
closes any handle of that file: so a process takes one connector's lock at a time). Neither can be
left behind by a killed sync, so "the lock is free" proves that no sync of the connector is running,
on any host that shares the store.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import make_url

from . import forksafe
from .errors import StoreError
from .store import Store, lock_key


class SyncBusy(StoreError):
    """Another process is syncing the connector."""


def _key(connector: str) -> int:
    return lock_key(f"sync {connector}")


@contextmanager
def try_lock(store: Store, connector: str) -> Iterator[bool]:
    """Hold the connector's sync lock for the block if it is free: yields whether it was got."""
    if store.dialect == "postgresql":
        with _advisory_lock(store, connector) as got:
            yield got
        return
    path = _lock_file(store)
    if path is None:  # an in-memory database belongs to one process
        yield True
        return
    with _file_lock(path, connector) as got:
        yield got


@contextmanager
def _advisory_lock(store: Store, connector: str) -> Iterator[bool]:
    # Autocommit: the session holds the lock, not a transaction, which idle_in_transaction_session_timeout would end.
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _key(connector)}).scalar()
        try:
            yield bool(got)
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _key(connector)})


def _lock_file(store: Store) -> Path | None:
    database = make_url(store.url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database + ".lock")


@contextmanager
def _file_lock(path: Path, connector: str) -> Iterator[bool]:
    try:
        handle = open(path, "a+b")
    except OSError as exc:
        raise StoreError(f"cannot open the sync lock file {path}: {exc.strerror or exc}") from None
    with handle:
        forksafe.release_in_child(handle, lambda h: None if h.closed else h.fileno())
        try:  # record locks are not inherited by a forked worker, and end with the process
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _key(connector), os.SEEK_SET)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN, 1, _key(connector), os.SEEK_SET)
