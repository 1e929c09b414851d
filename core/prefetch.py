"""Run a row producer in a forked worker so that parsing overlaps with writing.

Rows come back in lists (batches), the unit a stream hands to the store.

A sync's two halves each take one core: building rows is pure Python, writing them
is the database driver. On platforms with ``fork`` the producer runs in a child
process and sends rows back in pickled chunks through a pipe; elsewhere (or when
disabled with ``CRMKPI_PREFETCH=0``) it runs in-process. Exceptions raised by the
producer are re-raised in the caller, after the rows sent before them.

The worker never outlives the sync: it dies with its parent (:mod:`crmkpi.forksafe`), lets go
of the parent's database sockets, lock file and stdout/stderr, and leaves SIGINT/SIGTERM to the
parent, which kills it when it stops reading.
"""

from __future__ import annotations

import gc
import marshal
import multiprocessing
import os
import pickle
from typing import Any, Callable, Iterator

from . import forksafe

PREFETCH_ENV = "CRMKPI_PREFETCH"
# Small batches stay in the CPU cache; 256 rows was the fastest of 256..4096 measured.
CHUNK_ROWS = 256

_DONE, _ERROR = 0, 1
# Rows of plain values go through marshal, three times cheaper to write than pickle;
# rows holding other objects (datetimes for PostgreSQL) fall back to pickle.
_MARSHAL, _PICKLE = b"M", b"P"


def available() -> bool:
    return os.environ.get(PREFETCH_ENV, "1") != "0" and "fork" in multiprocessing.get_all_start_methods()


def prefetch(produce: Callable[[], Iterator[Any]], finish: Callable[[], Any],
             absorb: Callable[[Any], None]) -> Iterator[list[Any]]:
    """Yield what ``produce()`` yields, in lists. ``finish()`` runs in the worker after the last
    item and its result is handed to ``absorb`` in the caller (e.g. counters kept by the producer)."""
    if not available():
        try:
            yield from batched(produce(), CHUNK_ROWS)
        finally:
            absorb(finish())
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(target=_work, args=(produce, finish, sender, receiver, os.getpid()), daemon=True)
    # The worker shares the parent's memory until either writes to it; a garbage collection in the
    # worker would write to every object the parent made (tens of MB copied). Frozen, they are
    # never collected there; the parent unfreezes its own at once.
    gc.freeze()
    try:
        worker.start()
    finally:
        gc.unfreeze()
    sender.close()
    try:
        while True:
            try:
                message = receiver.recv_bytes()
            except EOFError:
                worker.join(5)  # the pipe closes a moment before the exit code is known
                raise RuntimeError(f"row worker exited unexpectedly (exit code {worker.exitcode})") from None
            if message[:1] == _MARSHAL:
                yield marshal.loads(memoryview(message)[1:])
                continue
            kind, payload = pickle.loads(memoryview(message)[1:])
            if kind is None:
                yield payload
            elif kind == _DONE:
                absorb(payload)
                return
            else:
                absorb(payload[1])
                raise payload[0]
    finally:
        receiver.close()
        if worker.is_alive():
            worker.kill()  # it ignores SIGTERM (see forksafe.detach)
        worker.join()


def _work(produce: Callable[[], Iterator[Any]], finish: Callable[[], Any], sender, receiver,
          parent_pid: int) -> None:
    # Only the parent reads: with its copy of the read end closed here, a dead parent makes the next
    # write fail (BrokenPipeError) instead of blocking forever on a full pipe.
    receiver.close()
    forksafe.detach(parent_pid, keep=(sender.fileno(),))
    chunk: list[Any] = []
    try:
        for item in produce():
            chunk.append(item)
            if len(chunk) >= CHUNK_ROWS:
                _send_rows(sender, chunk)
                chunk = []
        if chunk:
            _send_rows(sender, chunk)
        _send(sender, _DONE, finish())
    except BrokenPipeError:  # the parent is gone: nobody is left to hand anything to
        return
    except BaseException as exc:  # handed to the caller, who decides
        if chunk:
            _send_rows(sender, chunk)
        try:
            pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))  # it must arrive as itself
            _send(sender, _ERROR, (exc, finish()))
        except Exception:  # an exception that cannot be pickled (or unpickled)
            _send(sender, _ERROR, (RuntimeError(f"{type(exc).__name__}: {exc}"), finish()))
    finally:
        sender.close()


def _send_rows(sender, chunk: list[Any]) -> None:
    try:
        sender.send_bytes(_MARSHAL + marshal.dumps(chunk))
    except ValueError:
        _send(sender, None, chunk)


def _send(sender, kind: int | None, payload: Any) -> None:
    sender.send_bytes(_PICKLE + pickle.dumps((kind, payload), pickle.HIGHEST_PROTOCOL))


def batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items; like the worker, hands over the items made before an error, then raises it."""
    chunk = []
    try:
        for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                batch, chunk = chunk, []
                yield batch
    except BaseException:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk
