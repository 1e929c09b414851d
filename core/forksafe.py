"""What a forked worker lets go of, so that it can never outlive or outlast its parent.

A child made by ``fork`` inherits every open file descriptor of its parent: the database
sockets, the sync lock file, the terminal or pipe on stdout/stderr. Holding them after the
parent died keeps the parent's PostgreSQL session (and the locks of its open transaction)
alive, keeps the sync lock, and keeps a reader such as ``| tee`` waiting for end of file.

Owners of such descriptors register them with :func:`release_in_child`; the worker calls
:func:`detach` first thing. The child only closes its own copies: closing a descriptor
sends nothing (unlike closing a psycopg connection, which would end the parent's session)
and releases no lock the parent holds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import weakref
from typing import Any, Callable

#: Linux's prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1

#: owner -> how to find its descriptor now (None once the owner closed it).
_inherited: weakref.WeakKeyDictionary[Any, Callable[[Any], int | None]] = weakref.WeakKeyDictionary()


def release_in_child(owner: Any, descriptor: Callable[[Any], int | None]) -> None:
    """Close ``descriptor(owner)`` in forked workers for as long as ``owner`` lives.

    The descriptor is looked up at fork time, not now: a number remembered from earlier could
    meanwhile belong to another file."""
    _inherited[owner] = descriptor


def detach(parent_pid: int, keep: tuple[int, ...]) -> None:
    """In a freshly forked worker: die with the parent, leave signals to it, let go of what it holds.

    ``keep``: descriptors the worker itself uses (its end of the pipe)."""
    _die_with_parent(parent_pid)
    # Ctrl-C and SIGTERM are the parent's to handle; it stops the worker itself (SIGKILL) when it is done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for owner, descriptor in list(_inherited.items()):
        try:
            fd = descriptor(owner)
        except Exception:  # the owner is closed or broken: nothing of it to let go of
            continue
        if fd is not None and fd >= 0 and fd not in keep:
            _close(fd)
    # Nothing the worker writes is shown; holding the parent's stdout/stderr would keep a pipe reader waiting.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(devnull, fd)
    os.close(devnull)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); elsewhere the broken pipe stops it."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # the C library the interpreter runs on
    except (OSError, AttributeError):  # no prctl (macOS, BSD): the worker stops at its next write instead
        prctl = None
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
