"""Reading the records of a CSV or JSON Lines file, each with the line it is on.

A record that cannot be read (a CSV line with the wrong number of fields, a line that is not
a JSON object) is handed to a callback with its line number and reason, and reading goes on.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TextIO

from crmkpi.errors import SourceDataError
from crmkpi.normalize import MAX_JSON_DEPTH

#: The delimiters tried on a CSV header when the file's is not configured.
DELIMITERS = (",", ";", "\t", "|")

#: ``unreadable(line, reason)``: a record that could not be read.
Unreadable = Callable[[int, str], None]


def open_text(path: Path, encoding: str) -> TextIO:
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # also reads files saved with a byte order mark (Excel's "CSV UTF-8")
    return path.open(newline="", encoding=encoding)


def file_format(path: Path, configured: str | None) -> str:
    return configured or ("jsonl" if path.suffix in (".jsonl", ".ndjson") else "csv")


class CsvRecords:
    """A CSV file's header, then its records (lists of strings).

    Without a configured ``delimiter``, the header picks one of :data:`DELIMITERS`: the one whose
    split names one of ``wanted`` (the columns the id is read from), else the one giving the
    most columns.
    """

    def __init__(self, handle: TextIO, name: str, delimiter: str | None, wanted: Sequence[str]) -> None:
        if delimiter is None:
            first = handle.readline()
            delimiter = detect_delimiter(first, wanted)
            handle.seek(0)
        self.delimiter = delimiter
        self.reader = csv.reader(handle, delimiter=delimiter)
        try:
            self.header: list[str] = next(self.reader)
        except StopIteration:
            raise SourceDataError(f"{name}: empty file, expected a header line") from None
        except csv.Error as exc:
            raise SourceDataError(f"{name}: line 1: {exc}") from None
        repeated = sorted(f for f, count in Counter(self.header).items() if count > 1)
        if repeated:  # a record would keep only one of the columns' values
            shown = "; ".join(f"{f!r} in columns {', '.join(str(n) for n, g in enumerate(self.header, 1) if g == f)}"
                              for f in repeated)
            raise SourceDataError(f"{name}: line 1: the header repeats a name ({shown}): rename the columns apart")
        self.read = 0  # records, readable or not (blank lines are none)

    @property
    def line(self) -> int:
        """The line the current record ends on."""
        return self.reader.line_num

    def records(self, unreadable: Unreadable) -> Iterator[list[str]]:
        reader = self.reader
        width = len(self.header)
        while True:  # resumes after a line the csv module rejects
            try:
                for record in reader:
                    if len(record) == width:
                        self.read += 1
                        yield record
                    elif record:
                        self.read += 1
                        unreadable(reader.line_num, f"expected {width} fields, found {len(record)}")
                return
            except csv.Error as exc:
                self.read += 1
                unreadable(reader.line_num, str(exc))


class JsonlRecords:
    """A JSON Lines file's records (dicts)."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.line = 0
        self.read = 0

    def records(self, unreadable: Unreadable) -> Iterator[dict[str, Any]]:
        for self.line, text in enumerate(self.handle, start=1):
            if not text.strip():
                continue
            self.read += 1
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError("expected a JSON object")
                if "\\u" in text:  # an escape may stand for half a surrogate pair, which is no character
                    json.dumps(record, ensure_ascii=False).encode()
            except UnicodeEncodeError as exc:
                unreadable(self.line, f"invalid JSON: {exc.object[exc.start:exc.end]!r} is half of a surrogate "
                                      f"pair, not a character")
                continue
            except ValueError as exc:
                unreadable(self.line, f"invalid JSON: {exc}")
                continue
            except RecursionError:
                unreadable(self.line, f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
                continue
            yield record


def detect_delimiter(header: str, wanted: Sequence[str]) -> str:
    best, most = ",", 1
    for delimiter in DELIMITERS:
        fields = next(csv.reader([header], delimiter=delimiter), [])
        if len(fields) > 1 and any(f.strip() in wanted for f in fields):
            return delimiter
        if len(fields) > most:
            best, most = delimiter, len(fields)
    return best


def ignore(line: int, reason: str) -> None:
    """For a second pass: the first reported the records it could not read."""
