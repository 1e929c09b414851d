"""Running the API's web server (uvicorn) beside the scheduler, in a thread of the same process.

The scheduler keeps the main thread: signals arrive there, and a job is interrupted there.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from fastapi import FastAPI

from ..errors import CrmkpiError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@contextmanager
def listening(app: FastAPI, host: str, port: int) -> Iterator[str]:
    """Serve ``app`` on ``host:port`` while the block runs; yields the address. A port that cannot be
    had is a one-line error before anything starts."""
    import uvicorn

    try:  # uvicorn would only log the failure from its thread; ask first, to say it in one line
        socket.create_server((host, port), reuse_port=False).close()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # create_server appends the address again
        raise CrmkpiError(f"cannot listen on {host}:{port}: {reason}") from None
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise CrmkpiError(f"the API did not start on {host}:{port}")
    try:
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
