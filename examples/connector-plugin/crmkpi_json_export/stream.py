"""One export file into its table: the records after the stream's cursor, in order, with checkpoints.

An export is a JSON object ``{"records": [...], "deleted": [...]}``. Each record is an object with the
table's columns by name (or as the ``columns:`` setting maps them), an ``id`` and an ``updated_at``; its
other fields are kept in ``extra``. ``deleted`` lists the ids of the records the CRM deleted: their rows
are flagged ``is_deleted`` (and kept) at the end of each sync.

Records are read in the order of their position, ``(updated_at, id)``. A checkpoint after every
``batch_size`` records commits them with the position of the last one: its ``updated_at`` as the cursor,
its id as the state. The next sync, or a sync resuming after a failure, reads the records after that
position only. Records updated at or after the sync's start are left for the next sync, so the cursor
never passes the start (a record changed during the sync is read again next time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator, cast
from zoneinfo import ZoneInfo

from crmkpi import (Checkpoint, ConnectorError, Coverage, FieldError, Layout, RecordRows, SourceDataError, StreamStats,
                    SyncContext)

from .settings import TABLE_NAMES, JsonExportSettings


def export_streams(context: SyncContext) -> list[ExportStream]:
    """A stream for each ``<table>.json`` of the export's folder; other JSON files are noted as not read."""
    settings = cast(JsonExportSettings, context.settings)  # validated by the type's settings model
    folder = context.base_dir / settings.path
    if not folder.is_dir():
        raise ConnectorError(f"connectors.{context.name}.path: folder not found: {folder}")
    files = sorted(path for path in folder.iterdir() if path.suffix == ".json")
    for path in files:
        if path.stem not in TABLE_NAMES:
            context.note(f"{path.name}: not read: not named after a table ({', '.join(TABLE_NAMES)})")
    streams = [ExportStream(path.stem, path, settings, context) for path in files if path.stem in TABLE_NAMES]
    if not streams:
        raise ConnectorError(f"connectors.{context.name}.path: no <table>.json in {folder} (e.g. deals.json)")
    return streams


@dataclass(frozen=True, order=True)
class Position:
    """Where a record stands in the order records are read: by ``updated_at``, then by id (records changed
    at the same moment are told apart, so a checkpoint between them loses none)."""

    updated_at: datetime
    id: str

    @classmethod
    def saved(cls, cursor: str | None, state: dict[str, Any] | None) -> Position | None:
        """The position a stream's last sync committed (None: it never synced)."""
        return None if cursor is None else cls(datetime.fromisoformat(cursor), (state or {}).get("id", ""))

    def checkpoint(self, deleted: tuple[str, ...] = ()) -> Checkpoint:
        return Checkpoint(cursor=self.updated_at.isoformat(), state={"id": self.id}, deleted=deleted)


class ExportStream:
    """The records of one export file, after the saved position, into ``table``."""

    def __init__(self, table: str, path: Path, settings: JsonExportSettings, context: SyncContext) -> None:
        self.table = table
        self.name = path.name
        self.path = path
        self.settings = settings
        self.context = context
        self.stats = StreamStats()
        self.coverage: Coverage | None = None
        # RecordRows parses and types each record as every crmkpi connector does (time zones, booleans,
        # numbers, extra); its columns are known before the first record.
        self.rows = RecordRows(table, Layout(columns=dict(settings.columns.get(table, {})), timezone=settings.timezone),
                               source=context.name, synced_at=context.synced_at, encoder=context.encoder)
        self.columns = self.rows.columns
        self._zone = ZoneInfo(settings.timezone)

    def read(self, cursor: str | None, state: dict[str, Any] | None) -> Iterator[list[tuple] | Checkpoint]:
        records, deleted = self._export()
        since = Position.saved(cursor, state)
        fresh, later = [], 0
        for record in records:
            position = self._position(record)
            if position is None or (since is not None and position <= since):
                continue
            if position.updated_at >= self.context.synced_at:
                later += 1
                continue
            fresh.append((position, record))
        fresh.sort(key=lambda item: item[0])

        last, batch, built = since, [], 0
        for position, record in fresh:
            self.stats.read += 1
            try:
                batch.append(self.rows.build(record))
                built += 1
            except FieldError as exc:
                self._bad(f"record {position.id!r}: {exc}")
            last = position
            if len(batch) == self.settings.batch_size:
                yield batch
                yield last.checkpoint()
                batch = []
        self._report(built, later)
        yield batch
        yield last.checkpoint(deleted) if last is not None else Checkpoint(deleted=deleted)

    def _export(self) -> tuple[list[Any], tuple[str, ...]]:
        """The export's records and deleted ids; a file that is no export fails the sync."""
        try:
            export = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConnectorError(f"{self.name}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise SourceDataError(f"{self.name}: not JSON: {exc}") from None
        if not isinstance(export, dict) or not isinstance(export.get("records", []), list):
            raise SourceDataError(f"{self.name}: expected an object with a list of records")
        deleted = export.get("deleted", [])
        if not isinstance(deleted, list) or not all(isinstance(i, (str, int)) and str(i) for i in deleted):
            raise SourceDataError(f"{self.name}: deleted: expected a list of ids")
        return export.get("records", []), tuple(str(i) for i in deleted)

    def _position(self, record: Any) -> Position | None:
        """A record's position, or None (reported as a bad record) when it has none."""
        if not isinstance(record, dict):
            self.stats.read += 1
            self._bad(f"expected a record (a JSON object), got {type(record).__name__}")
            return None
        id_field, stamp_field = self.rows.source_of("id"), self.rows.source_of("updated_at")
        id_, stamp = record.get(id_field), record.get(stamp_field)
        try:
            if id_ in (None, ""):
                raise ValueError(f"no {id_field!r}")
            moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
            if moment is None:
                raise ValueError(f"{stamp_field!r} is not an ISO 8601 datetime: {stamp!r}")
        except ValueError as exc:
            self.stats.read += 1
            self._bad(f"record {id_!r}: {exc} (a record needs one to be read in order)")
            return None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=self._zone)
        return Position(moment.astimezone(UTC), str(id_))

    def _bad(self, reason: str) -> None:
        """A record that cannot be written: skipped and listed in the sync report, or (on_error: fail) the
        end of the sync; the batches committed before it stay."""
        message = f"{self.name}: {reason}"
        if self.settings.on_error == "fail":
            raise SourceDataError(message)
        self.stats.skip(message)

    def _report(self, built: int, later: int) -> None:
        if built:  # which columns the records gave: known only from the records read (none: nothing to tell)
            self.coverage = Coverage(frozenset(self.rows.provided))
        if later:
            self.stats.note(f"{self.name}: {later} record(s) updated since the sync started, left for the next sync")
        if unknown := sorted(self.rows.extra_fields):
            self.stats.note(f"{self.name}: fields that are no column of {self.table}, kept in extra: "
                            f"{', '.join(unknown)}")
