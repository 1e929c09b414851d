"""Opening, migrating and writing the normalized store.

Small writes go through SQLModel sessions. Bulk ingest goes through the DB-API
``executemany`` under SQLAlchemy's connection: an upsert keyed on ``(source, id)``
that leaves a row alone when none of its values changed, so re-syncing unchanged
data writes nothing and is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import (JSON, Boolean, Date, DateTime, Float, Integer, Table, TypeDecorator, create_engine, event,
                        exists, inspect, select, text, update)
from sqlalchemy.engine import Connection, Engine, make_url
from pydantic_core import PydanticUndefined
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from . import forksafe
from .errors import StoreError
from .models import ENTITIES, SCHEMA_REVISION, SyncState

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: What a normalized column holds, as the row builders and bulk writer see it.
ColumnKind = str  # "str" | "float" | "int" | "bool" | "datetime" | "date" | "json"


def column_kinds(table: str) -> dict[str, ColumnKind]:
    """Column name -> kind for a normalized entity table."""
    kinds = {}
    for col in ENTITIES[table].__table__.columns:
        t = col.type.impl if isinstance(col.type, TypeDecorator) else col.type
        if isinstance(t, DateTime):
            kinds[col.name] = "datetime"
        elif isinstance(t, Date):
            kinds[col.name] = "date"
        elif isinstance(t, Boolean):
            kinds[col.name] = "bool"
        elif isinstance(t, Float):
            kinds[col.name] = "float"
        elif isinstance(t, Integer):
            kinds[col.name] = "int"
        elif isinstance(t, JSON):
            kinds[col.name] = "json"
        else:
            kinds[col.name] = "str"
    return kinds


def required_columns(table: str) -> set[str]:
    """Columns a record must provide (the key plus the NOT NULL columns without a default)."""
    model = ENTITIES[table]
    return {
        name
        for name, f in model.model_fields.items()
        if f.is_required() and name != "source"
    } | {"id"}


def column_defaults(table: str) -> dict[str, Any]:
    """Defaults of the NOT NULL columns that have one (``is_deleted``, ``is_won``, ...)."""
    model = ENTITIES[table]
    return {
        col.name: model.model_fields[col.name].default
        for col in model.__table__.columns
        if not col.nullable and model.model_fields[col.name].default not in (None, PydanticUndefined)
    }


def resolve_url(url: str | None, base_dir: Path) -> str:
    """The store URL, with relative SQLite paths taken from the config's folder."""
    if not url:
        return f"sqlite:///{(base_dir / 'crmkpi.db').resolve()}"
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(f"store: not a database URL: {_mask_password(url)!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str((base_dir / path).resolve()))
        return parsed.render_as_string(hide_password=False)
    if parsed.drivername in ("postgresql", "postgresql+psycopg2"):  # SQLAlchemy 2.0 defaults to psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


#: PostgreSQL session settings a store URL's own ``?options=-c name=value`` overrides. A statement waits
#: at most a minute for a lock (a sync of another connector never takes the rows this one writes, so a
#: longer wait means something is stuck), and a transaction left open and idle for 10 minutes (a client
#: stopped, or cut off by the network) is ended by the server so that its locks do not block the next sync.
#: No JIT: a metric's statement (a grouped one above all: correlated lookups, CASE trees) is estimated
#: costly enough to compile, and compiling took longer than running it (the whole catalog by month and
#: team at 100,000 deals: 38 s with JIT, 20 s without; docs/performance.md).
POSTGRES_SESSION = {"lock_timeout": "60s", "idle_in_transaction_session_timeout": "10min", "jit": "off"}


def _postgres_options(url: str) -> str:
    """The libpq ``options`` of a session: ours first, so that the URL's own settings win."""
    own = make_url(url).query.get("options", "")
    own = " ".join(own) if isinstance(own, tuple) else own
    return " ".join([*(f"-c {name}={value}" for name, value in POSTGRES_SESSION.items()), own]).strip()


def _release_socket_in_workers(dbapi_conn, _record) -> None:
    """A forked row worker closes its copy of this connection's socket (see :mod:`crmkpi.forksafe`)."""
    forksafe.release_in_child(dbapi_conn, lambda conn: None if conn.closed else conn.pgconn.socket)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Store:
    """A migrated normalized store behind one SQLAlchemy engine."""

    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = url
        try:
            postgres = make_url(url).get_backend_name() == "postgresql"
            connect_args = {"options": _postgres_options(url)} if postgres else {}
            self.engine: Engine = create_engine(url, connect_args=connect_args)
        except Exception as exc:
            raise StoreError(f"cannot open store {_describe(url)}: {first_line(exc)}") from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.dialect == "postgresql":
            event.listen(self.engine, "connect", _release_socket_in_workers)
        if migrate:
            self.migrate()

    def describe(self) -> str:
        return _describe(self.url)

    def revision(self) -> str | None:
        """The schema revision the store is at (None for an empty database)."""
        try:
            with self.engine.connect() as conn:
                if not self.engine.dialect.has_table(conn, "alembic_version"):
                    return None
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {self.describe()}: {first_line(exc)}") from None

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema; a store already at the newest revision costs one query."""
        if revision == "head" and self.revision() == SCHEMA_REVISION:
            return
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        try:
            with self.engine.begin() as conn:
                lock_transaction(conn, "migration")  # replicas starting together: one migrates, the others find it done
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate store {self.describe()}: {first_line(exc)}") from None
        except CommandError as exc:  # e.g. a revision written by a newer crmkpi
            raise StoreError(f"cannot migrate store {self.describe()} (schema revision {self.revision()!r}): "
                             f"{first_line(exc)}") from None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.describe()}: {first_line(exc)}") from None

    # -- values as the DB-API driver wants them ---------------------------------

    def encoder(self, kind: ColumnKind) -> Callable[[Any], Any] | None:
        """Turn a Python value (naive datetimes are UTC) into a driver parameter; None = as is.

        ``iso_datetime`` encodes ISO 8601 text whose zone-less values are UTC straight
        from the text: the hot path of file and API syncs.
        """
        if kind == "json":
            return _dump_json
        if kind == "iso_datetime":
            encode = self.encoder("datetime")
            if self.dialect == "sqlite":
                return _sqlite_iso_text
            return lambda text: encode(datetime.fromisoformat(text)).astimezone(UTC)
        if self.dialect == "sqlite":
            if kind == "datetime":
                return _sqlite_datetime
            if kind == "date":
                return date.isoformat
            return None
        if kind == "datetime":
            return aware_utc
        return None

    # -- bulk upsert --------------------------------------------------------------

    def upsert_sql(self, table: str, columns: list[str], guard: bool = True) -> str:
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("source", "id"))
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marker for _ in columns)}) "
            f"ON CONFLICT (source, id) DO UPDATE SET {updates}"
        )
        compared = [c for c in columns if c not in ("source", "id", "synced_at")]
        if guard and compared:
            # Only rows whose content differs are rewritten: a re-sync of unchanged data writes nothing,
            # and an edit is applied even when the source did not move updated_at.
            distinct = "IS NOT" if self.dialect == "sqlite" else "IS DISTINCT FROM"
            json_columns = {c for c, kind in column_kinds(table).items() if kind == "json"}
            cast = "" if self.dialect == "sqlite" else "::text"  # PostgreSQL's json has no equality
            sql += " WHERE " + " OR ".join(
                f"{table}.{c}{cast if c in json_columns else ''} {distinct} "
                f"excluded.{c}{cast if c in json_columns else ''}" for c in compared)
        return sql

    def upsert_rows(self, conn: Connection, table: str, columns: list[str], rows: Iterable[tuple],
                    guard: bool = True) -> int:
        """Upsert DB-ready rows inside the caller's transaction; returns rows changed."""
        if table not in ENTITIES:
            raise StoreError(f"unknown table {table!r}")
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.executemany(self.upsert_sql(table, columns, guard), rows)
            return max(cursor.rowcount, 0)
        except self.engine.dialect.dbapi.Error as exc:  # the driver's own (e.g. a lock timeout): one line
            raise StoreError(f"store {self.describe()}: writing {table}: {first_line(exc)}") from None
        finally:
            cursor.close()

    @contextmanager
    def bulk_load(self, conn: Connection, table: str) -> Iterator[None]:
        """Around a load into ``table`` in the caller's transaction: on SQLite, when the table is empty, its
        secondary indexes are dropped first and built again after.

        Their keys (``created_at``, ``closed_at``) arrive in random order, and inserting each into a B-tree
        larger than the page cache reads and writes pages over and over; building an index afterwards is one
        sort. The drop is part of the transaction, so a failure or a kill brings the indexes back with the
        empty table. Incremental loads (into a table that has rows) are left alone, and so is PostgreSQL,
        where dropping an index would block every reader of the table until the sync commits.
        """
        if self.dialect != "sqlite" or conn.exec_driver_sql(f"SELECT 1 FROM {table} LIMIT 1").first():
            yield
            return
        made = {}  # name -> its CREATE INDEX statement, for the indexes created by crmkpi's schema
        for _, name, unique, origin, *_ in conn.exec_driver_sql(f"PRAGMA index_list({table})").all():
            if not unique and origin == "c":
                made[name] = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).scalar()
        if made and not conn.connection.driver_connection.in_transaction:
            conn.exec_driver_sql("BEGIN")  # the driver begins one only before an INSERT: the DROP must be in it
        for name in made:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        yield
        for sql in made.values():
            conn.exec_driver_sql(sql)

    def refresh_statistics(self, written: dict[str, int]) -> None:
        """On PostgreSQL, ``ANALYZE`` each table a sync has just changed (``written``: rows per table) by more
        than autovacuum's threshold (50 rows and 10% of the rows it last counted), without waiting for
        autovacuum: a run right after the first load is otherwise planned for empty tables, with nested
        loops over what are hash joins."""
        if self.dialect != "postgresql":
            return
        with self.engine.begin() as conn:
            for table, rows in written.items():
                if table not in ENTITIES or rows <= 50:
                    continue
                counted = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%(table)s)",
                                               {"table": table}).scalar() or 0
                if rows > 50 + 0.1 * max(counted, 0):
                    conn.exec_driver_sql(f"ANALYZE {table}")

    def mark_deleted(self, conn: Connection, table: str, source: str, ids: Iterable[str],
                     synced_at: datetime) -> int:
        """Flag rows the source deleted (keeping them); returns rows changed."""
        if table not in ENTITIES:
            raise StoreError(f"unknown table {table!r}")
        t = ENTITIES[table].__table__
        changed = 0
        ids = list(ids)
        for start in range(0, len(ids), 500):  # stays under every backend's bound-parameter limit
            chunk = ids[start:start + 500]
            changed += conn.execute(
                update(t).where(t.c.source == source, t.c.id.in_(chunk), t.c.is_deleted.is_(False))
                .values(is_deleted=True, synced_at=synced_at)
            ).rowcount
        return changed

    def dangling_references(self, source: str, table: str, column: str, target: str) -> list[str]:
        """Distinct ``table.column`` values of ``source``'s live rows that are no ``id`` of its ``target`` rows."""
        rows, targets = ENTITIES[table].__table__, ENTITIES[target].__table__
        value = rows.c[column]
        query = (select(value).distinct()
                 .where(rows.c.source == source, rows.c.is_deleted.is_(False), value.is_not(None),
                        ~exists().where(targets.c.source == source, targets.c.id == value))
                 .order_by(value))
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    # -- sync state ------------------------------------------------------------------

    def get_state(self, connector: str, stream: str) -> SyncState | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(SyncState).where(SyncState.connector == connector, SyncState.stream == stream)
            ).first()
        return SyncState(**row._mapping) if row else None

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see the store as it was at the first one.

    A run makes hundreds of queries; a sync committing meanwhile must not make two of its
    values disagree. PostgreSQL gives that with REPEATABLE READ. SQLite's driver leaves SELECTs
    outside any transaction, so each would see the latest commit; an explicit BEGIN holds one
    WAL read snapshot until the connection closes (writers are not blocked by it).
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        elif engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        yield conn


@contextmanager
def reading(source: Engine | Connection) -> Iterator[Connection]:
    """A snapshot to read from: ``source`` itself when it is a connection (a caller's several runs then read
    one state of the store, as a report's cards and trend must), else a new :func:`snapshot`."""
    if isinstance(source, Connection):
        yield source
        return
    with snapshot(source) as conn:
        yield conn


def insert_waiting(engine: Engine, table: Table, rows: list[dict[str, Any]], timeout: float,
                   waiting: Callable[[float], None] | None = None) -> None:
    """Insert ``rows`` in one transaction, waiting up to ``timeout`` seconds for another writer.

    SQLite has one writer at a time, and a files sync holds the write lock for its whole
    transaction. Each attempt waits briefly, so that ``waiting(seconds waited)`` tells the
    caller early; a failure is a one-line :class:`StoreError`.
    """
    started = time.monotonic()
    while True:
        attempt = min(_WRITE_ATTEMPT_SECONDS, max(timeout - (time.monotonic() - started), 0.1))
        try:
            with engine.begin() as conn, _busy_timeout(conn, attempt):
                conn.execute(table.insert(), rows)
            return
        except SQLAlchemyError as exc:
            waited = time.monotonic() - started
            # SQLite's "database is locked": another connection holds the write lock
            locked = isinstance(exc, OperationalError) and "locked" in str(exc.orig)
            store = engine.url.render_as_string(hide_password=True)
            if not locked:
                raise StoreError(f"store {store}: {first_line(exc)}") from None
            if waited >= timeout:
                raise StoreError(f"the store {store} stayed locked by another writer (a sync?) for {waited:.0f} s"
                                 ) from None
            if waiting is not None:
                waiting(waited)


#: SQLite's busy wait per attempt of ``insert_waiting``.
_WRITE_ATTEMPT_SECONDS = 2.0


@contextmanager
def _busy_timeout(conn: Connection, seconds: float) -> Iterator[None]:
    """SQLite's busy timeout for this connection, restored afterwards (it goes back to the pool)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    conn.exec_driver_sql(f"PRAGMA busy_timeout={int(seconds * 1000)}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={before}")


def lock_key(name: str) -> int:
    """A named lock's id: 6 bytes of a hash, a valid PostgreSQL advisory lock key (and file offset)."""
    return int.from_bytes(hashlib.blake2b(f"crmkpi {name}".encode(), digest_size=6).digest(), "big")


def lock_transaction(conn: Connection, name: str) -> None:
    """Hold the lock ``name`` until the caller's transaction ends: concurrent holders of one name take
    turns (a PostgreSQL advisory lock; on SQLite, the one write lock, taken before the first read)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key(name),))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the driver would begin only at the first write


def save_state(conn: Connection, connector: str, stream: str, cursor: str | None,
               state: dict | None = None) -> None:
    """Write a stream's cursor in the caller's (data) transaction."""
    table = SyncState.__table__
    conn.execute(table.delete().where(table.c.connector == connector, table.c.stream == stream))
    conn.execute(table.insert().values(connector=connector, stream=stream, cursor=cursor, state=state,
                                       updated_at=datetime.now(UTC)))


def _dump_json(value: Any) -> str | None:
    # NaN and Infinity are not JSON: SQLite would store text its JSON functions reject, PostgreSQL refuses it.
    return None if value is None else json.dumps(value, default=str, separators=(",", ":"), allow_nan=False)


def _sqlite_datetime(value: datetime | None) -> str | None:
    # The exact text SQLAlchemy's SQLite DateTime writes, so SQL comparisons against bound
    # parameters order correctly. Values are naive UTC or aware at offset zero; slicing
    # off the "+00:00" is much cheaper than datetime.replace().
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_iso_text(text: str) -> str:
    value = datetime.fromisoformat(text)  # validates; the common shapes are then sliced, not formatted
    if not value.utcoffset() and text[4] == "-" and text[7] == "-":
        size = len(text)
        if size == 10:
            return text + " 00:00:00.000000"
        if (size in (19, 20, 25) and text[10] in "T " and text[13] == ":" and text[16] == ":"
                and text[19:20] in ("", "Z", "+", "-")):
            return f"{text[:10]} {text[11:19]}.000000"
    return _sqlite_datetime(value)


def aware_utc(value: datetime | None) -> datetime | None:
    """A datetime read back from the store as aware UTC (SQLite's driver gives naive UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _describe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return repr(_mask_password(url))


def _mask_password(url: str) -> str:
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (the driver's own, under SQLAlchemy's wrapper)."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
