"""The connector API: what a connector plugin registers and what a sync asks of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal, Protocol

from pydantic import AfterValidator, BaseModel


def _aware(value: datetime | str) -> datetime | str:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


#: The ``start_date:`` of an incremental connector: where its first sync starts reading
#: (an ISO date or datetime, UTC when it has no offset), or ``all``. Connectors make it
#: required: a silent default start date leaves old records out without anyone noticing.
StartDate = Annotated[datetime | Literal["all"], AfterValidator(_aware)]


@dataclass(frozen=True)
class Checkpoint:
    """Yielded by a stream: everything before it may be committed, with this cursor saved.

    ``deleted`` lists ids the source deleted (hard deletes, archived records) whose rows
    are marked ``is_deleted`` in the same transaction; rows are never removed.
    """

    cursor: str | None = None
    state: dict[str, Any] | None = None
    deleted: tuple[str, ...] = ()


@dataclass
class StreamStats:
    """What one stream's read did, for the sync report: rows read and skipped (with the first reasons), notes."""

    read: int = 0
    skipped: int = 0
    #: Rows that repeated the id of an earlier row of the stream (so ``read - skipped - duplicates``
    #: rows are distinct); the sync then counts the rows written from the store.
    duplicates: int = 0
    #: The source had not changed since the last committed sync, so nothing was read.
    unchanged: bool = False
    #: The first few reasons rows were skipped, for the sync report.
    errors: list[str] = field(default_factory=list)
    #: What the user should know although nothing failed, e.g. a limit of what the source can tell.
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, keep: int = 20) -> None:
        self.skipped += 1
        if len(self.errors) < keep:
            self.errors.append(reason)

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)


@dataclass(frozen=True)
class Coverage:
    """Which columns a stream's source gives values for, so the sync can name what metrics will miss.

    ``provided``: the normalized columns whose values come from the source (mapped, derived or
    constant); the other columns of the table hold NULL, or their default, in every row.
    ``strict``: what the sync finds missing is an error instead of a note. ``hint(column)``: where
    the source may hold a missing column (a did-you-mean), or "".
    """

    provided: frozenset[str]
    strict: bool = False
    hint: Callable[[str], str] = lambda column: ""


class Stream(Protocol):
    """One source object feeding one normalized table.

    ``read`` yields batches (lists of DB-ready tuples in ``columns`` order, see
    :class:`crmkpi.normalize.RowBuilder`) and :class:`Checkpoint` markers. ``columns``
    must be set by the time the first batch is yielded.

    A stream may also have a ``coverage`` attribute (:class:`Coverage`), set once its read has
    started or, at the latest, when it has ended. The sync checks it against the columns the
    loaded metrics need (``Metric.needs``) after the first batch and at the end; a stream that
    knows it before reading any record can yield an empty first batch to have it checked then.
    Without it, every column counts as provided.
    """

    name: str
    table: str
    columns: list[str]
    stats: StreamStats

    def read(self, cursor: str | None, state: dict[str, Any] | None) -> Iterator[list[tuple] | Checkpoint]: ...


@dataclass
class SyncContext:
    """What the core hands a connector for one sync."""

    name: str
    settings: BaseModel
    base_dir: Path
    synced_at: datetime
    encoder: Callable[[str], Callable[[Any], Any] | None]
    full_refresh: bool = False
    #: ``status(stream, message)``: what a stream is waiting for (a Bulk job, a rate limit), shown
    #: beside its progress on a terminal, so a long wait does not look like a hang.
    status: Callable[[str, str], None] = lambda stream, message: None
    #: ``dangling(table, column, target)``: the distinct ``column`` values of this connector's live
    #: rows in ``table`` that no row of its ``target`` table has as ``id`` (committed rows only):
    #: references to records the store lacks, for a connector to fetch.
    dangling: Callable[[str, str, str], list[str]] = lambda table, column, target: []
    #: What the user should know about the source as a whole (e.g. files no table reads), for the report.
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)


@dataclass(frozen=True)
class ConnectorType:
    """A kind of source, registered through the ``register_connectors`` hook.

    ``settings`` validates the connector's block of the config (everything except
    ``type``); ``streams`` returns the streams of one sync. With ``atomic`` the whole
    sync commits as one transaction (a failure leaves the store untouched); otherwise
    each :class:`Checkpoint` commits.
    """

    name: str
    description: str
    settings: type[BaseModel]
    streams: Callable[[SyncContext], list[Stream]]
    atomic: bool = False
