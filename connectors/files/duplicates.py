"""Finding ids that repeat within one file without holding the ids.

A set of a million id strings costs about 80 MB. Instead each row adds the 64-bit
``hash()`` of its id to one of 256 compact arrays (8 bytes a row); at the end, each array
is checked for repeats on its own. Two different ids share a 64-bit hash about once in
10^8 files of a million rows, so a repeated hash is only a candidate: a second pass over
the file (made only when there are candidates) confirms which ids repeat and on which lines.
The hashes are only compared within one process (str hashes are salted per interpreter).
"""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Any, Callable

_BUCKETS = 256


class IdHashes:
    def __init__(self) -> None:
        self._buckets = [array("q") for _ in range(_BUCKETS)]
        appends: list[Callable[[int], None]] = [b.append for b in self._buckets]

        def add(key: Any) -> None:
            h = hash(key)
            appends[h & (_BUCKETS - 1)](h)

        #: Add one id (called for every row, hence a closure over the arrays rather than a method).
        self.add = add

    def repeated(self) -> set[int]:
        """The hashes added more than once."""
        found: set[int] = set()
        for bucket in self._buckets:
            if len(set(bucket)) < len(bucket):
                found.update(h for h, n in Counter(bucket).items() if n > 1)
        return found
