"""Lookups: columns of a table taken from another file of the folder, joined by key.

The lookup file is read whole when the sync starts and held in memory (only the columns it
gives), so it should be the smaller of the two, like the closed deals of a funnel export
beside its leads. Its values join each record of the table's file as extra fields, named
``<file>:<column>`` for mapped columns and by their own name for those kept in ``extra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from crmkpi.errors import SourceDataError

from .names import column_suggestion
from .records import CsvRecords, JsonlRecords, file_format, open_text
from .settings import Lookup

#: Joins a lookup's fields to one record (a CSV list or a JSON object) in place.
Join = Callable[[Any], None]


class LookupTable:
    """A lookup file's rows by key, with what the sync's records matched of them."""

    def __init__(self, lookup: Lookup, folder: Path) -> None:
        self.lookup = lookup
        self.name = lookup.file
        self.by = lookup.by or lookup.key
        self.fields = [*(f"{lookup.file}:{c}" for c in lookup.columns.values()), *lookup.extra]
        self.rows: dict[str, list[Any]] = {}
        self.empty_keys = 0
        self.matched: set[str] = set()
        self.found = 0  # records of the table's file that found a row
        self._read(folder / lookup.file)

    def _read(self, path: Path) -> None:
        wanted = [*self.lookup.columns.values(), *self.lookup.extra]
        lines: dict[str, int] = {}
        try:
            with open_text(path, self.lookup.encoding) as handle:
                if file_format(path, None) == "jsonl":
                    source: CsvRecords | JsonlRecords = JsonlRecords(handle)
                    values = lambda record: [record.get(c) for c in wanted]  # noqa: E731
                    key_of = lambda record: record.get(self.lookup.key)  # noqa: E731
                else:
                    source = CsvRecords(handle, self.name, self.lookup.delimiter, [self.lookup.key])
                    index = {c: i for i, c in enumerate(source.header)}
                    for column in (self.lookup.key, *wanted):
                        if column not in index:
                            raise SourceDataError(f"{self.name}: no column {column!r}"
                                                  + column_suggestion(column, source.header))
                    positions = [index[c] for c in wanted]
                    values = lambda record: [record[i] for i in positions]  # noqa: E731
                    key_of = lambda record, at=index[self.lookup.key]: record[at]  # noqa: E731
                for record in source.records(self._unreadable):
                    key = _key(key_of(record))
                    if key is None:
                        self.empty_keys += 1
                    elif key in lines:
                        raise SourceDataError(f"{self.name}: line {source.line}: {self.lookup.key} {key!r} is also on "
                                              f"line {lines[key]}; a lookup's key must be unique")
                    else:
                        lines[key] = source.line
                        self.rows[key] = values(record)
        except UnicodeDecodeError as exc:
            raise SourceDataError(f"{self.name}: not {self.lookup.encoding} text ({exc.reason})") from None

    def _unreadable(self, line: int, reason: str) -> None:
        raise SourceDataError(f"{self.name}: line {line}: {reason}")

    def joiner(self, table_file: str, header: list[str] | None) -> Join:
        """Add this lookup's fields to a record of the table's file (CSV with ``header``, else JSON)."""
        missing = [None] * len(self.fields)
        rows, matched = self.rows, self.matched
        if header is None:
            fields = self.fields

            def join(record: dict[str, Any]) -> None:
                key = _key(record.get(self.by))
                found = rows.get(key) if key is not None else None
                if found is not None:
                    matched.add(key)
                    self.found += 1
                record.update(zip(fields, found or missing))

            return join
        if self.by not in header:
            raise SourceDataError(f"{table_file}: no column {self.by!r} to look {self.name} up by"
                                  + column_suggestion(self.by, header))
        at = header.index(self.by)

        def join_list(record: list[Any]) -> None:
            found = rows.get(record[at])
            if found is not None:
                matched.add(record[at])
                self.found += 1
                record.extend(found)
            else:
                record.extend(missing)

        return join_list

    def unmatched(self) -> list[str]:
        """Keys of the lookup file that no record of the table's file had."""
        return [key for key in self.rows if key not in self.matched]


def _key(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
