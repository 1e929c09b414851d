"""Streaming readers for CSV and JSON Lines files, one stream per normalized table."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from crmkpi.connector import Checkpoint, StreamStats, SyncContext
from crmkpi.errors import ConnectorError, SourceDataError
from crmkpi.store import column_kinds
from crmkpi.normalize import Derivation, FieldError, Layout, RowBuilder

from .settings import FileOptions, FilesSettings


class FileStream:
    """Rows of one file; bad rows fail the sync or are skipped and counted."""

    def __init__(self, table: str, path: Path, fmt: str, options: FileOptions, settings: FilesSettings,
                 context: SyncContext) -> None:
        self.table = table
        self.name = path.name
        self.path = path
        self.format = fmt
        self.options = options
        self.on_error = options.on_error or settings.on_error
        self.context = context
        self.layout = Layout(
            columns=options.columns,
            values=options.values,
            derive={c: Derivation(d.from_, d.map, d.default) for c, d in options.derive.items()},
            constants=options.constants,
            datetime_format=options.datetime_format,
            date_format=options.date_format,
            timezone=options.timezone or settings.timezone,
        )
        self.stats = StreamStats()
        self.columns: list[str] = []

    def _builder(self, fields: list[str]) -> RowBuilder:
        try:
            builder = RowBuilder(self.table, fields, self.layout, source=self.context.name,
                                 synced_at=self.context.synced_at, encoder=self.context.encoder)
        except FieldError as exc:
            raise SourceDataError(f"{self.name}: {exc}") from None
        self.columns = builder.columns
        return builder

    def _bad_row(self, line: int, reason: Any) -> None:
        message = f"{self.name}: line {line}: {reason}"
        if self.on_error == "fail":
            raise SourceDataError(message)
        self.stats.skip(message)

    def read(self, cursor: str | None, state: dict | None) -> Iterator[tuple | Checkpoint]:
        stat = self.path.stat()
        try:
            with self.path.open(newline="", encoding=self.options.encoding) as handle:
                rows = self._csv_rows(handle) if self.format == "csv" else self._jsonl_rows(handle)
                yield from rows
        except UnicodeDecodeError as exc:
            raise SourceDataError(f"{self.name}: not {self.options.encoding} text ({exc.reason})") from None
        except OSError as exc:
            raise ConnectorError(f"{self.name}: {exc.strerror or exc}") from None
        yield Checkpoint(state={"size": stat.st_size, "mtime_ns": stat.st_mtime_ns})

    def _csv_rows(self, handle) -> Iterator[tuple]:
        reader = csv.reader(handle, delimiter=self.options.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise SourceDataError(f"{self.name}: empty file, expected a header line") from None
        except csv.Error as exc:
            raise SourceDataError(f"{self.name}: line 1: {exc}") from None
        build = self._builder(header).build
        width = len(header)
        stats = self.stats
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._bad_row(reader.line_num, exc)
                continue
            stats.read += 1
            if len(record) != width:
                if not record:
                    continue
                self._bad_row(reader.line_num, f"expected {width} fields, found {len(record)}")
                continue
            try:
                yield build(record)
            except FieldError as exc:
                self._bad_row(reader.line_num, exc)

    def _jsonl_rows(self, handle) -> Iterator[tuple]:
        # Every record is read against the same known fields, so records may omit any of
        # them; only the set of extra (unknown) keys needs a builder of its own.
        known = [self.layout.columns.get(c, c) for c in column_kinds(self.table)
                 if c not in ("source", "synced_at", "extra")]
        known += [d.source for d in self.layout.derive.values() if d.source not in known]
        known_set = set(known)
        builders: dict[tuple[str, ...], RowBuilder] = {}
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            self.stats.read += 1
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as exc:
                self._bad_row(line_no, f"invalid JSON: {exc}")
                continue
            extras = tuple(k for k in record if k not in known_set)
            builder = builders.get(extras)
            if builder is None:
                builder = builders[extras] = self._builder(known + list(extras))
            try:
                yield builder.build([record.get(f) for f in known] + [record[k] for k in extras])
            except FieldError as exc:
                self._bad_row(line_no, exc)


def discover(settings: FilesSettings, context: SyncContext) -> list[FileStream]:
    """One stream per table whose file is in the folder (or configured explicitly)."""
    from crmkpi.models import ENTITIES

    folder = Path(settings.path)
    if not folder.is_absolute():
        folder = context.base_dir / folder
    if not folder.is_dir():
        raise ConnectorError(f"connectors.{context.name}.path: folder not found: {folder}")
    streams = []
    for table in ENTITIES:
        options = settings.tables.get(table, FileOptions())
        if options.file:
            path = folder / options.file
            if not path.is_file():
                raise ConnectorError(f"connectors.{context.name}.tables.{table}.file: file not found: {path}")
        else:
            path = next((p for p in (folder / f"{table}.csv", folder / f"{table}.jsonl") if p.is_file()), None)
            if path is None:
                continue
        fmt = options.format or ("jsonl" if path.suffix in (".jsonl", ".ndjson") else "csv")
        streams.append(FileStream(table, path, fmt, options, settings, context))
    return streams
