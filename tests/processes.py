"""Processes as Linux's /proc shows them: what the tests of forked workers and killed commands look at."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple


class Process(NamedTuple):
    pid: int
    state: str  # "Z": a zombie, which holds nothing (this container's init may not reap orphans)
    ppid: int
    session: int


def processes() -> Iterator[Process]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # the command name before ")" may hold spaces
        except OSError:  # it ended while we looked
            continue
        yield Process(int(stat.parent.name), fields[0], int(fields[1]), int(fields[3]))
