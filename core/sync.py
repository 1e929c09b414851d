"""Running a connector's sync: streams into the store, state saved with the data it covers."""

from __future__ import annotations

import functools
import itertools
import os
import socket
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from .config import ConnectorConfig
from . import synclock
from .connector import Checkpoint, ConnectorType, Stream, StreamStats, SyncContext
from .errors import ConnectorError, CrmkpiError, SourceDataError, Terminated
from .models import ENTITIES, SyncRun
from .plugins import Registry
from .redact import redact
from .store import Store, aware_utc, column_defaults, save_state
from .synclock import SyncBusy

#: The key of ``sync_runs.details`` under which the connector's own notes are kept (beside its streams').
CONNECTOR_NOTES = "(connector)"
#: table -> column -> ids of the loaded metrics that need it (``Metric.needs``).
Needs = dict[str, dict[str, list[str]]]

#: Progress callback: (stream name, rows just loaded).
Progress = Callable[[str, int], None]
#: Status callback: (stream name, what it is waiting for).
Status = Callable[[str, str], None]


@dataclass
class StreamReport:
    """One stream's own counts (its :class:`StreamStats`) and the rows the store changed."""

    name: str
    table: str
    stats: StreamStats = field(default_factory=StreamStats)
    written: int = 0

    read = property(lambda self: self.stats.read)
    skipped = property(lambda self: self.stats.skipped)
    duplicates = property(lambda self: self.stats.duplicates)
    distinct = property(lambda self: self.stats.read - self.stats.skipped - self.stats.duplicates)
    unchanged = property(lambda self: self.stats.unchanged)
    errors = property(lambda self: self.stats.errors)
    notes = property(lambda self: self.stats.notes)


@dataclass
class SyncReport:
    connector: str
    run_id: int
    streams: list[StreamReport] = field(default_factory=list)
    #: The connector's notes about its source as a whole (:meth:`SyncContext.note`).
    notes: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return sum(s.written for s in self.streams)


def sync_connector(store: Store, registry: Registry, name: str, cfg: ConnectorConfig, base_dir: Path,
                   *, full_refresh: bool = False, progress: Progress | None = None,
                   status: Status | None = None) -> SyncReport:
    """Sync one configured connector; raises a CrmkpiError (after recording it) on failure.

    Refused (:class:`SyncBusy`, naming the other run) while another process syncs the connector."""
    ctype = registry.connector_type(cfg.type)
    with synclock.try_lock(store, name) as free:
        if not free:
            raise SyncBusy(_busy(store, name))
        end_dead_runs(store, name)
        try:
            return _sync(store, registry, ctype, name, cfg, base_dir, full_refresh, progress, status)
        except KeyboardInterrupt as exc:  # e.g. while the run was being recorded: it is still ours, we hold the lock
            _fail_running(store, name, lambda run: _stopped(exc))
            raise


def _sync(store: Store, registry: Registry, ctype: ConnectorType, name: str, cfg: ConnectorConfig,
          base_dir: Path, full_refresh: bool, progress: Progress | None, status: Status | None) -> SyncReport:
    started = datetime.now(UTC)
    context = SyncContext(name=name, settings=cfg.settings, base_dir=base_dir, synced_at=started,
                          encoder=store.encoder, full_refresh=full_refresh,
                          dangling=functools.partial(store.dangling_references, name))
    if status is not None:
        context.status = status
    run_id = _start_run(store, name, started)
    report = SyncReport(connector=name, run_id=run_id, notes=context.notes)
    needs = _needs(registry)
    try:
        streams = ctype.streams(context)
        if ctype.atomic:
            try:
                with store.transaction() as conn:
                    for stream in streams:
                        report.streams.append(_load_stream(store, conn, name, stream, context, progress, needs))
                    Terminated.check()
            except BaseException:
                for s in report.streams:  # rolled back: nothing was written
                    s.written = 0
                raise
        else:
            for stream in streams:
                report.streams.append(_load_stream(store, None, name, stream, context, progress, needs))
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM in a long API sync: what was committed stays, the run says so
        _finish_run(store, run_id, report, "failed", _stopped(exc))
        raise
    except Exception as exc:
        if Terminated.requested:  # the signal's exception surfaced as another (psycopg leaving its pipeline)
            _finish_run(store, run_id, report, "failed", _stopped(Terminated()))
            raise Terminated() from exc
        if isinstance(exc, CrmkpiError):
            _finish_run(store, run_id, report, "failed", str(exc))
            raise
        _finish_run(store, run_id, report, "failed", f"{type(exc).__name__}: {exc}")
        raise ConnectorError(f"connector {name!r} failed: {type(exc).__name__}: {exc}") from exc
    written: dict[str, int] = {}
    for stream in report.streams:
        written[stream.table] = written.get(stream.table, 0) + stream.written
    store.refresh_statistics(written)
    _finish_run(store, run_id, report, "success", None)
    return report


def _load_stream(store: Store, conn: Connection | None, connector: str, stream: Stream,
                 context: SyncContext, progress: Progress | None, needs: Needs) -> StreamReport:
    """Load one stream; with ``conn`` inside that transaction, else one transaction per checkpoint."""
    report = StreamReport(stream.name, stream.table)
    state = None if context.full_refresh else store.get_state(connector, stream.name)
    items = stream.read(state.cursor if state else None, state.state if state else None)
    notes: list[str] = []
    covered = False
    try:
        while True:
            checkpoint: list[Checkpoint] = []
            batches = _until_checkpoint(items, checkpoint, stream.name, progress)
            first = next(batches, None)  # reading starts here, so the stream knows its columns after it
            covered = covered or _check_coverage(stream, needs, notes)  # before writing, when it can tell
            if first is None and not checkpoint:
                break
            with nullcontext(conn) if conn is not None else store.transaction() as target, \
                    store.bulk_load(target, stream.table):
                if first is not None:
                    rows = itertools.chain(first, itertools.chain.from_iterable(batches))
                    report.written += store.upsert_rows(target, stream.table, stream.columns, rows,
                                                        guard=not context.full_refresh)
                if checkpoint and checkpoint[0].deleted:
                    report.written += store.mark_deleted(target, stream.table, connector, checkpoint[0].deleted,
                                                         context.synced_at)
                if checkpoint:
                    save_state(target, connector, stream.name, checkpoint[0].cursor, checkpoint[0].state)
                Terminated.check()  # not committed after a SIGTERM, even one a finalizer swallowed
    finally:
        close = getattr(items, "close", None)
        if close is not None:  # on a failure, stop the stream (and any row worker) now, not at garbage collection
            close()
    report.stats = stream.stats  # final only now: the row worker hands its counts back at the end
    if not covered:
        _check_coverage(stream, needs, notes)
    for note in notes:
        report.stats.note(note)
    if report.stats.duplicates:  # a repeated id wrote its row more than once: count the rows instead
        report.written = _rows_written(store, conn, stream.table, connector, context.synced_at)
    return report


def _needs(registry: Registry) -> Needs:
    needs: Needs = {}
    for metric in registry.metrics.values():
        for need in metric.needs:
            table, _, column = need.partition(".")
            needs.setdefault(table, {}).setdefault(column, []).append(metric.id)
    return needs


def _check_coverage(stream: Stream, needs: Needs, notes: list[str]) -> bool:
    """Name the columns the loaded metrics need that ``stream`` gives no value; False while it cannot tell.

    A missing column is a note: it is NULL in every row, which the metrics read as missing data.
    It is an error where the column's default would read as real data (a deal without ``is_won``
    stored as not won), and with a strict stream.
    """
    coverage = getattr(stream, "coverage", None)
    if coverage is None:
        return False
    defaults = column_defaults(stream.table)
    misread = []
    for column, metrics in sorted(needs.get(stream.table, {}).items()):
        if column in coverage.provided or column == "is_deleted":  # a source without it deletes nothing: right
            continue
        users = ", ".join(sorted(metrics))
        if column in defaults:
            misread.append((column, users))
            continue
        message = f"{stream.name}: no value for {stream.table}.{column} (empty in every row), needed by {users}"
        if coverage.strict:
            raise SourceDataError(f"{message}{coverage.hint(column)} (strict)")
        notes.append(message + coverage.hint(column))
    if misread:
        raise SourceDataError(
            f"{stream.name}: no value for {', '.join(f'{stream.table}.{c}' for c, _ in misread)}, so every row would "
            f"read as {', '.join(f'{c} = {str(defaults[c]).lower()} in {users}' for c, users in misread)}; "
            f"map a source column to {'each' if len(misread) > 1 else 'it'}, derive it, or set it as a constant"
            + "".join(coverage.hint(c) for c, _ in misread))
    return True


def _rows_written(store: Store, conn: Connection | None, table: str, connector: str, synced_at: datetime) -> int:
    """Rows of ``table`` this sync wrote: a row written twice (its id repeated) counts once."""
    t = ENTITIES[table].__table__
    query = select(func.count()).select_from(t).where(t.c.source == connector, t.c.synced_at == synced_at)
    if conn is not None:
        return conn.execute(query).scalar() or 0
    with store.engine.connect() as fresh:
        return fresh.execute(query).scalar() or 0


def _until_checkpoint(items: Iterator, found: list[Checkpoint], name: str,
                      progress: Progress | None) -> Iterator[list[tuple]]:
    for item in items:
        if isinstance(item, Checkpoint):
            found.append(item)
            return
        if progress is not None:
            progress(name, len(item))
        yield item


def _start_run(store: Store, connector: str, started: datetime) -> int:
    with store.transaction() as conn:
        result = conn.execute(SyncRun.__table__.insert().values(connector=connector, started_at=started,
                                                                 status="running", pid=os.getpid(),
                                                                 host=socket.gethostname()))
        return result.inserted_primary_key[0]


def _finish_run(store: Store, run_id: int, report: SyncReport, status: str, error: str | None) -> None:
    _redact_report(report)
    details: dict[str, Any] = {
        s.name: {"table": s.table, "read": s.read, "written": s.written, "skipped": s.skipped,
                 "duplicates": s.duplicates, "unchanged": s.unchanged, "errors": s.errors, "notes": s.notes}
        for s in report.streams
    }
    if report.notes:
        details[CONNECTOR_NOTES] = {"notes": report.notes}
    with store.transaction() as conn:
        conn.execute(
            update(SyncRun.__table__).where(SyncRun.__table__.c.id == run_id).values(
                finished_at=datetime.now(UTC), status=status, error=error and redact(error), details=details,
                rows_read=sum(s.read for s in report.streams),
                rows_written=report.written,
                rows_skipped=sum(s.skipped for s in report.streams),
            )
        )


def _redact_report(report: SyncReport) -> None:
    """Notes and skip reasons may quote what a source answered: no secret in them is stored or printed."""
    lists = [report.notes] + [texts for s in report.streams for texts in (s.stats.notes, s.stats.errors)]
    for texts in lists:
        texts[:] = [redact(text) for text in texts]


# -- runs whose process is gone, and the one that is running --------------------------------------


def end_dead_runs(store: Store, connector: str) -> int:
    """Mark ``connector``'s runs still ``running`` as failed; call it holding the connector's sync lock,
    which proves that their process is gone, whichever host it ran on. Returns how many there were."""
    def reason(run: Any) -> str:
        process = f" (pid {run.pid} on {run.host})" if run.pid is not None else ""
        return f"its process{process} ended without finishing the sync (killed, or the machine stopped)"

    return _fail_running(store, connector, reason)


def _fail_running(store: Store, connector: str, reason: Callable[[Any], str]) -> int:
    runs = SyncRun.__table__
    with store.transaction() as conn:
        running = conn.execute(select(runs.c.id, runs.c.pid, runs.c.host)
                               .where(runs.c.connector == connector, runs.c.status == "running")).all()
        for run in running:
            conn.execute(update(runs).where(runs.c.id == run.id).values(
                status="failed", finished_at=datetime.now(UTC), error=reason(run)))
    return len(running)


def _stopped(interrupt: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"


def _busy(store: Store, connector: str) -> str:
    """Who holds ``connector``'s sync lock, from its ``running`` row."""
    running = _last_run(store, connector, running=True)
    if running is None:  # the other process has the lock but has not recorded its run yet
        return f"connector {connector!r} is being synced by another process, which is starting; try again later"
    return (f"connector {connector!r} is being synced by another process ({_process(running)}, started "
            f"{_utc(running.started_at)}, sync run {running.id}); wait for it to finish, or stop it")


def sync_status(store: Store, connectors: list[str]) -> list[str]:
    """One line per connector: its last run; runs whose process is gone are marked failed first."""
    lines = []
    for connector in connectors:
        with synclock.try_lock(store, connector) as free:
            if free:
                end_dead_runs(store, connector)
        run = _last_run(store, connector, running=not free)
        if run is None:
            lines.append(f"{connector}: never synced" if free else f"{connector}: a sync is starting")
        elif run.status == "running":
            lines.append(f"{connector}: running since {_utc(run.started_at)} ({_process(run)}, sync run {run.id})")
        else:
            outcome = f": {run.error}" if run.error else f", {run.rows_read} rows read, {run.rows_written} written"
            lines.append(f"{connector}: {run.status}, started {_utc(run.started_at)}, finished "
                         f"{_utc(run.finished_at)} (sync run {run.id}){outcome}")
    return lines


def _last_run(store: Store, connector: str, running: bool = False) -> Any:
    runs = SyncRun.__table__
    query = select(runs).where(runs.c.connector == connector).order_by(runs.c.id.desc()).limit(1)
    if running:
        query = query.where(runs.c.status == "running")
    with store.engine.connect() as conn:
        return conn.execute(query).first()


def _process(run: Any) -> str:
    return f"pid {run.pid} on host {run.host}" if run.pid is not None else "process unknown"


def _utc(moment: datetime | None) -> str:
    return "never" if moment is None else f"{aware_utc(moment).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
