"""What ``crmkpi serve`` logs: one line per event on stderr, as text or as JSON lines, redacted.

Text reads well in a terminal and in ``journalctl``::

    2026-12-05T01:30:02Z nightly 2026-12-05T01:30: run 7 started
    2026-12-05T01:30:09Z error: nightly 2026-12-05T01:30: run 7 failed: crm: ...

JSON lines need no parsing rule in a log collector (journald, Docker, Loki, CloudWatch), and carry
the event's fields beside the message::

    {"time": "2026-12-05T01:30:09.120Z", "level": "error", "logger": "crmkpi.serve",
     "message": "nightly 2026-12-05T01:30: run 7 failed: ...", "schedule": "nightly",
     "occurrence": "2026-12-05T01:30", "run_id": 7, "status": "failed"}

uvicorn's own warnings and errors (a handler that failed, a port problem) go the same way.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Iterator

from ..redact import redact

FORMATS = ("text", "json")
LOGGER = logging.getLogger("crmkpi.serve")


def say(line: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event of the service; ``fields`` (schedule, occurrence, run_id, ...) go into JSON lines."""
    LOGGER.log(level, line, extra={"fields": fields})


class TextLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        line = f"{_time(record):%Y-%m-%dT%H:%M:%SZ} {level}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {"time": _time(record).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                **getattr(record, "fields", {})}
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(body, ensure_ascii=False, default=str))


@contextmanager
def logging_to_stderr(form: str) -> Iterator[None]:
    """While the block runs, the service's events (and uvicorn's warnings) go to stderr in ``form``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if form == "json" else TextLines())
    routed = {LOGGER: logging.INFO, logging.getLogger("uvicorn"): logging.WARNING}
    before = {logger: (logger.level, logger.propagate) for logger in routed}
    for logger, level in routed.items():
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # not again through a handler of the root logger
    try:
        yield
    finally:
        for logger, (level, propagate) in before.items():
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _time(record: logging.LogRecord) -> datetime:
    return datetime.fromtimestamp(record.created, UTC)
