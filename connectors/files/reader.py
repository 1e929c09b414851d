"""Streaming readers for CSV and JSON Lines files, one stream per normalized table."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from crmkpi.connector import Checkpoint, StreamStats, SyncContext
from crmkpi.errors import ConnectorError, SourceDataError
from crmkpi.models import ENTITIES, SCHEMA_REVISION
from crmkpi.normalize import Derivation, FieldError, Layout, RecordRows, RowBuilder
from crmkpi.prefetch import prefetch

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

    def fingerprint(self) -> dict[str, Any]:
        """What the rows depend on: the file's bytes and how they are read."""
        with self.path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        options = self.options.model_dump_json() + self.layout.timezone + self.on_error
        return {"sha256": digest, "options": hashlib.sha256(options.encode()).hexdigest(),
                "schema": SCHEMA_REVISION}

    def read(self, cursor: str | None, state: dict | None) -> Iterator[list[tuple] | Checkpoint]:
        fingerprint = self.fingerprint()
        if state == fingerprint:  # committed by an earlier sync: nothing in the file can differ
            self.stats.unchanged = True
            yield Checkpoint(state=fingerprint)
            return
        encoding = self.options.encoding
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"  # also reads files saved with a byte order mark (Excel's "CSV UTF-8")
        try:
            with self.path.open(newline="", encoding=encoding) as handle:
                rows = self._csv_rows(handle) if self.format == "csv" else self._jsonl_rows(handle)
                yield from prefetch(rows, finish=lambda: self.stats, absorb=self._absorb)
        except UnicodeDecodeError as exc:
            raise SourceDataError(f"{self.name}: not {self.options.encoding} text ({exc.reason})") from None
        except OSError as exc:
            raise ConnectorError(f"{self.name}: {exc.strerror or exc}") from None
        yield Checkpoint(state=fingerprint)

    def _absorb(self, stats: StreamStats) -> None:
        self.stats = stats

    def _csv_rows(self, handle) -> Callable[[], Iterator[tuple]]:
        """Read the header here, so that ``columns`` is known; return the producer of the rows."""
        reader = csv.reader(handle, delimiter=self.options.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise SourceDataError(f"{self.name}: empty file, expected a header line") from None
        except csv.Error as exc:
            raise SourceDataError(f"{self.name}: line 1: {exc}") from None
        build = self._builder(header).build
        width = len(header)

        def rows() -> Iterator[tuple]:
            read = 0
            while True:  # resumes after a skipped bad row
                try:
                    for record in reader:
                        read += 1
                        if len(record) == width:
                            yield build(record)
                        elif record:
                            self._bad_row(reader.line_num, f"expected {width} fields, found {len(record)}")
                        else:
                            read -= 1  # blank line
                    break
                except csv.Error as exc:
                    self._bad_row(reader.line_num, exc)
                except FieldError as exc:
                    self._bad_row(reader.line_num, exc)
                finally:
                    self.stats.read = read

        return rows

    def _jsonl_rows(self, handle) -> Callable[[], Iterator[tuple]]:
        try:
            records = RecordRows(self.table, self.layout, source=self.context.name,
                                 synced_at=self.context.synced_at, encoder=self.context.encoder)
        except FieldError as exc:
            raise SourceDataError(f"{self.name}: {exc}") from None
        self.columns = records.columns

        def rows() -> Iterator[tuple]:
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
                try:
                    yield records.build(record)
                except FieldError as exc:
                    self._bad_row(line_no, exc)

        return rows


def discover(settings: FilesSettings, context: SyncContext) -> list[FileStream]:
    """One stream per table whose file is in the folder (or configured explicitly)."""
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
