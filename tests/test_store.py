"""The store: URLs, pragmas, transactions, sync state, the bulk upsert and its value encoders, metric results."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from crmkpi.errors import MetricError, StoreError
from crmkpi.engine import Run, Settings, run_metrics
from crmkpi.metrics import Metric, MetricContext, Param, Value, ratio
from crmkpi.models import Deal, MarketingSpend, MetricResult, PipelineStage, SyncRun, SyncState
from crmkpi.periods import Period
from crmkpi.store import Store, column_kinds, resolve_url, save_state

T0 = datetime(2024, 1, 10, 9, 15, 30, 123456, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
SYNC_1 = datetime(2024, 2, 1, 8, 0, tzinfo=UTC)
SYNC_2 = datetime(2024, 2, 2, 8, 0, tzinfo=UTC)


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_postgres_store(postgres_server_url: str):
    """One migrated PostgreSQL database for this module (a fresh database per test costs ~0.5 s)."""
    name = f"crmkpi_test_store_{uuid.uuid4().hex[:12]}"
    server = resolve_url(postgres_server_url, Path("."))
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    s = Store(make_url(server).set(database=name).render_as_string(hide_password=False))
    try:
        yield s
    finally:
        s.engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """A migrated, empty store: a new SQLite file, or the module's PostgreSQL database with its tables emptied."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'store.db'}")
        yield s
        s.engine.dispose()
        return
    s = request.getfixturevalue("shared_postgres_store")
    with s.engine.begin() as conn:
        for table in SQLModel.metadata.tables:
            conn.execute(text(f"DELETE FROM {table}"))
    yield s




def encode(store: Store, table: str, record: dict[str, Any]) -> tuple[list[str], tuple]:
    """A DB-ready row as the row builders make it: each value through ``store.encoder(kind)``."""
    kinds = column_kinds(table)
    values = []
    for name, value in record.items():
        enc = store.encoder(kinds[name])
        values.append(enc(value) if enc is not None and value is not None else value)
    return list(record), tuple(values)


def upsert(store: Store, table: str, records: list[dict[str, Any]], guard: bool = True) -> int:
    encoded = [encode(store, table, r) for r in records]
    columns = encoded[0][0]
    assert all(c == columns for c, _ in encoded)
    with store.transaction() as conn:
        return store.upsert_rows(conn, table, columns, [row for _, row in encoded], guard=guard)


def deal(id: str = "d1", source: str = "crm", **values: Any) -> dict[str, Any]:
    return {"source": source, "id": id, "name": "Big deal", "amount": 100.0, "updated_at": T0,
            "is_deleted": False, "is_closed": False, "is_won": False, "synced_at": SYNC_1, **values}


def deals(store: Store) -> dict[tuple[str, str], Deal]:
    with Session(store.engine) as session:
        return {(d.source, d.id): d for d in session.exec(select(Deal)).scalars()}


def raw(store: Store, sql: str, **params: Any) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


# -- resolve_url ---------------------------------------------------------------------------


def test_relative_sqlite_path_is_taken_from_the_config_folder(tmp_path: Path):
    base = tmp_path / "project" / "config"
    assert resolve_url("sqlite:///data/crm.db", base) == f"sqlite:///{base / 'data' / 'crm.db'}"
    assert resolve_url("sqlite:///../crm.db", base) == f"sqlite:///{tmp_path / 'project' / 'crm.db'}"
    assert resolve_url("sqlite:///crm.db", Path(".")) == f"sqlite:///{Path.cwd() / 'crm.db'}"
    odd = resolve_url("sqlite:///my data/crm#1.db", base)  # characters a URL escapes survive the round trip
    assert make_url(odd).database == str(base / "my data" / "crm#1.db")


def test_absolute_and_memory_sqlite_urls_are_kept(tmp_path: Path):
    absolute = f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}"
    assert resolve_url(absolute, tmp_path / "config") == absolute
    assert make_url(resolve_url("sqlite:///:memory:", tmp_path)).database == ":memory:"
    assert resolve_url("sqlite://", tmp_path) == "sqlite://"


@pytest.mark.parametrize("url", [None, ""])
def test_default_store_is_crmkpi_db_next_to_the_config(tmp_path: Path, url: str | None):
    assert resolve_url(url, tmp_path / "cfg") == f"sqlite:///{tmp_path / 'cfg' / 'crmkpi.db'}"
    assert resolve_url(url, Path("rel")) == f"sqlite:///{Path.cwd() / 'rel' / 'crmkpi.db'}"


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://u:p%40ss@db.example:5433/crm", "postgresql+psycopg://u:p%40ss@db.example:5433/crm"),
    ("postgresql+psycopg2://u@db/crm", "postgresql+psycopg://u@db/crm"),
    ("postgresql+psycopg://u:pw@db/crm?sslmode=require", "postgresql+psycopg://u:pw@db/crm?sslmode=require"),
])
def test_postgresql_urls_use_psycopg_3(tmp_path: Path, given: str, expected: str):
    resolved = resolve_url(given, tmp_path)
    assert resolved == expected
    assert make_url(resolved).password == make_url(given).password  # kept for connecting


@pytest.mark.parametrize("url", ["not a url", "postgresql://crm:s3cret@db.example:port/crm"])
def test_bad_url_is_a_one_line_store_error_without_the_password(tmp_path: Path, url: str):
    with pytest.raises(StoreError) as info:
        resolve_url(url, tmp_path)
    message = str(info.value)
    assert message.startswith("store: not a database URL")
    assert "\n" not in message and "s3cret" not in message


def test_unparseable_url_given_to_store_is_a_store_error():
    with pytest.raises(StoreError, match="cannot open store"):
        Store("not a url")


def test_unknown_database_kind_is_a_store_error_without_the_password():
    with pytest.raises(StoreError) as info:
        Store("oracle+nosuchdriver://crm:s3cret@db.example/crm")
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message and "db.example" in message


def test_unreachable_postgresql_is_a_clear_one_line_store_error():
    with pytest.raises(StoreError) as info:
        Store(resolve_url("postgresql://crm:s3cret@127.0.0.1:1/crm", Path(".")))
    message = str(info.value)
    assert message.startswith("cannot open store postgresql+psycopg://crm:***@127.0.0.1:1/crm: ")
    assert "\n" not in message and "s3cret" not in message


def test_missing_postgresql_database_is_a_store_error(postgres_server_url: str):
    url = make_url(resolve_url(postgres_server_url, Path("."))).set(database="crmkpi_no_such_db_x")
    with pytest.raises(StoreError) as info:
        Store(url.render_as_string(hide_password=False))
    assert "crmkpi_no_such_db_x" in str(info.value) and "\n" not in str(info.value)


def test_sqlite_in_a_missing_folder_is_a_store_error(tmp_path: Path):
    with pytest.raises(StoreError) as info:
        Store(resolve_url("sqlite:///no/such/folder/crm.db", tmp_path))
    assert "cannot open store" in str(info.value) and "\n" not in str(info.value)


def test_store_at_a_relative_path_lands_next_to_the_config(tmp_path: Path):
    (tmp_path / "cfg" / "data").mkdir(parents=True)
    s = Store(resolve_url("sqlite:///data/crm.db", tmp_path / "cfg"))
    s.engine.dispose()
    assert (tmp_path / "cfg" / "data" / "crm.db").is_file()
    assert not (Path.cwd() / "data").exists()


def test_describe_hides_the_password(store: Store):
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite":
        assert Store(store.url, migrate=False).describe() == store.url
    else:
        s = Store(url.set(password="s3cret").render_as_string(hide_password=False), migrate=False)
        assert "s3cret" not in s.describe() and "***" in s.describe()


# -- SQLite pragmas ----------------------------------------------------------------------------


def test_sqlite_file_store_uses_wal(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'crm.db'}")
    try:
        with s.engine.connect() as a, s.engine.connect() as b:  # every pooled connection, not just the first
            for conn in (a, b):
                assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
                assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
                assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        s.engine.dispose()


# -- transactions and sync state ---------------------------------------------------------------------


def test_exception_in_transaction_rolls_everything_back(store: Store):
    upsert(store, "deals", [deal("kept")])
    columns, row = encode(store, "deals", deal("d1"))
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as conn:
            assert store.upsert_rows(conn, "deals", columns, [row]) == 1
            save_state(conn, "crm", "deals", "c1", {"n": 1})
            conn.execute(SyncRun.__table__.insert().values(connector="crm", started_at=T0, status="running"))
            raise RuntimeError("boom")
    assert set(deals(store)) == {("crm", "kept")}
    assert store.get_state("crm", "deals") is None
    assert raw(store, "SELECT count(*) FROM sync_runs") == [(0,)]


def test_database_error_in_transaction_is_a_store_error_and_rolls_back(store: Store):
    columns, row = encode(store, "deals", deal("d1"))
    with pytest.raises(StoreError) as info:
        with store.transaction() as conn:
            store.upsert_rows(conn, "deals", columns, [row])
            save_state(conn, "crm", "deals", "c1")
            conn.execute(Deal.__table__.insert().values(source="crm", id="d1", is_deleted=False,
                                                       is_closed=False, is_won=False))
    assert "\n" not in str(info.value)
    assert deals(store) == {}
    assert store.get_state("crm", "deals") is None


def test_sync_state_round_trips(store: Store):
    assert store.get_state("crm", "deals") is None
    before = datetime.now(UTC)
    with store.transaction() as conn:
        save_state(conn, "crm", "deals", "2024-01-10T09:15:30Z", {"after": "d9", "pages": [1, 2], "done": False})
        save_state(conn, "crm", "accounts", None)
        save_state(conn, "other", "deals", "o1")
    state = store.get_state("crm", "deals")
    assert isinstance(state, SyncState)
    assert (state.connector, state.stream, state.cursor) == ("crm", "deals", "2024-01-10T09:15:30Z")
    assert state.state == {"after": "d9", "pages": [1, 2], "done": False}
    assert state.updated_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= state.updated_at <= datetime.now(UTC) + timedelta(seconds=1)
    accounts = store.get_state("crm", "accounts")
    assert (accounts.cursor, accounts.state) == (None, None)
    assert store.get_state("other", "deals").cursor == "o1"
    assert store.get_state("crm", "tickets") is None

    with store.transaction() as conn:  # saving again replaces the stream's state
        save_state(conn, "crm", "deals", "c2", None)
    state = store.get_state("crm", "deals")
    assert (state.cursor, state.state) == ("c2", None)
    assert raw(store, "SELECT count(*) FROM sync_state") == [(3,)]
    assert store.get_state("other", "deals").cursor == "o1"


# -- upserts ---------------------------------------------------------------------------------


def test_upsert_inserts_rows(store: Store):
    assert upsert(store, "deals", [deal("d1"), deal("d2", amount=250.5, is_won=True, is_closed=True)]) == 2
    rows = deals(store)
    assert set(rows) == {("crm", "d1"), ("crm", "d2")}
    d2 = rows["crm", "d2"]
    assert (d2.name, d2.amount, d2.is_won, d2.is_closed, d2.is_deleted) == ("Big deal", 250.5, True, True, False)
    assert (d2.updated_at, d2.synced_at) == (T0, SYNC_1)


def test_reupserting_unchanged_rows_changes_nothing(store: Store):
    upsert(store, "deals", [deal("d1"), deal("d2")])
    # A re-sync: same updated_at, a later synced_at. The guard leaves the rows alone.
    assert upsert(store, "deals", [deal("d1", synced_at=SYNC_2), deal("d2", synced_at=SYNC_2)]) == 0
    assert {k: d.synced_at for k, d in deals(store).items()} == {("crm", "d1"): SYNC_1, ("crm", "d2"): SYNC_1}


def test_guard_compares_content_and_full_refresh_rewrites(store: Store):
    upsert(store, "deals", [deal("d1", extra={"tier": "gold"})])
    # Same updated_at but other values (a hand-edited file): the edit is applied.
    assert upsert(store, "deals", [deal("d1", name="Renamed", extra={"tier": "gold"}, synced_at=SYNC_2)]) == 1
    assert (deals(store)["crm", "d1"].name, deals(store)["crm", "d1"].synced_at) == ("Renamed", SYNC_2)
    # Only synced_at differs: nothing is written. A changed custom field is a change.
    same = deal("d1", name="Renamed", extra={"tier": "gold"}, synced_at=SYNC_1)
    assert upsert(store, "deals", [same]) == 0
    assert upsert(store, "deals", [{**same, "extra": {"tier": "silver"}}]) == 1
    # Without the guard (full refresh) every row is written.
    assert upsert(store, "deals", [{**same, "extra": {"tier": "silver"}}], guard=False) == 1
    assert upsert(store, "deals", [{**same, "extra": {"tier": "silver"}, "synced_at": SYNC_2}], guard=False) == 1
    assert deals(store)["crm", "d1"].synced_at == SYNC_2


def test_changed_updated_at_replaces_values(store: Store):
    upsert(store, "deals", [deal("d1"), deal("d2")])
    changed = deal("d1", name="Bigger deal", amount=999.25, stage="won", is_won=True, is_closed=True,
                   closed_at=T1, updated_at=T1, synced_at=SYNC_2)
    assert upsert(store, "deals", [changed, deal("d2", stage=None, closed_at=None, synced_at=SYNC_2)]) == 1
    rows = deals(store)
    d1 = rows["crm", "d1"]
    assert (d1.name, d1.amount, d1.stage, d1.is_won, d1.is_closed, d1.closed_at, d1.updated_at, d1.synced_at) == \
        ("Bigger deal", 999.25, "won", True, True, T1, T1, SYNC_2)
    assert rows["crm", "d2"].synced_at == SYNC_1
    # "Differs", not "is newer": an older stamp from the source is applied too.
    assert upsert(store, "deals", [deal("d1", name="Rolled back", updated_at=T0)]) == 1
    assert deals(store)["crm", "d1"].name == "Rolled back"


def test_upsert_updates_only_the_given_columns(store: Store):
    upsert(store, "deals", [deal("d1", stage="proposal", currency="EUR")])
    # NOT NULL columns must always be given (the row builders fill their defaults), the rest may be left out.
    partial = {"source": "crm", "id": "d1", "updated_at": T1, "amount": 5.0, "is_deleted": False,
               "is_closed": False, "is_won": False}
    assert upsert(store, "deals", [partial]) == 1
    d1 = deals(store)["crm", "d1"]
    assert (d1.amount, d1.stage, d1.currency, d1.name, d1.updated_at) == (5.0, "proposal", "EUR", "Big deal", T1)


def test_deletion_is_applied_even_with_the_same_updated_at(store: Store):
    upsert(store, "deals", [deal("d1")])
    assert upsert(store, "deals", [deal("d1", is_deleted=True, synced_at=SYNC_2)]) == 1
    d1 = deals(store)["crm", "d1"]
    assert (d1.is_deleted, d1.synced_at) == (True, SYNC_2)
    assert upsert(store, "deals", [deal("d1", is_deleted=False)]) == 1  # restored
    assert deals(store)["crm", "d1"].is_deleted is False


def test_rows_without_updated_at_apply_when_they_differ(store: Store):
    upsert(store, "deals", [deal("d1", updated_at=None)])
    assert upsert(store, "deals", [deal("d1", updated_at=None, name="Second")]) == 1
    assert deals(store)["crm", "d1"].name == "Second"
    assert upsert(store, "deals", [deal("d1", updated_at=None, name="Second", synced_at=SYNC_2)]) == 0
    # From a stamp to no stamp and back: both differ.
    upsert(store, "deals", [deal("d2")])
    assert upsert(store, "deals", [deal("d2", updated_at=None, name="No stamp")]) == 1
    assert upsert(store, "deals", [deal("d2", updated_at=T1, name="Stamped")]) == 1
    d2 = deals(store)["crm", "d2"]
    assert (d2.name, d2.updated_at) == ("Stamped", T1)


def test_same_id_in_two_sources_is_two_rows(store: Store):
    assert upsert(store, "deals", [deal("d1", source="salesforce", amount=1.0),
                                   deal("d1", source="hubspot", amount=2.0)]) == 2
    rows = deals(store)
    assert {k: d.amount for k, d in rows.items()} == {("salesforce", "d1"): 1.0, ("hubspot", "d1"): 2.0}
    assert upsert(store, "deals", [deal("d1", source="hubspot", amount=3.0, updated_at=T1)]) == 1
    assert {k: d.amount for k, d in deals(store).items()} == {("salesforce", "d1"): 1.0, ("hubspot", "d1"): 3.0}


def test_guard_on_another_table(store: Store):
    row = {"source": "crm", "id": "s1", "pipeline": "p", "stage": "won", "updated_at": T0,
           "is_deleted": False, "is_closed": True, "is_won": True}
    assert upsert(store, "pipeline_stages", [row]) == 1
    assert upsert(store, "pipeline_stages", [row]) == 0
    assert upsert(store, "pipeline_stages", [{**row, "label": "Won"}]) == 1
    with Session(store.engine) as session:
        stage = session.get(PipelineStage, ("crm", "s1"))
    assert (stage.label, stage.is_deleted, stage.is_won) == ("Won", False, True)


def test_upsert_sql_guard(store: Store):
    distinct = "IS NOT" if store.dialect == "sqlite" else "IS DISTINCT FROM"
    sql = store.upsert_sql("deals", ["source", "id", "name", "updated_at", "is_deleted", "extra", "synced_at"])
    assert "ON CONFLICT (source, id) DO UPDATE SET name = excluded.name" in sql
    json = "" if store.dialect == "sqlite" else "::text"
    assert sql.endswith(f" WHERE deals.name {distinct} excluded.name OR deals.updated_at {distinct} "
                        f"excluded.updated_at OR deals.is_deleted {distinct} excluded.is_deleted"
                        f" OR deals.extra{json} {distinct} excluded.extra{json}")
    assert "WHERE" not in store.upsert_sql("deals", ["source", "id", "name", "updated_at"], guard=False)
    assert "WHERE" not in store.upsert_sql("deals", ["source", "id", "synced_at"])


def test_upsert_into_unknown_table_is_a_store_error(store: Store):
    with store.transaction() as conn:
        with pytest.raises(StoreError, match="unknown table 'sync_runs'"):
            store.upsert_rows(conn, "sync_runs", ["id"], [(1,)])


# -- encoders -----------------------------------------------------------------------------------


AWARE_PLUS_2 = datetime(2024, 1, 10, 11, 15, 30, 123456, tzinfo=timezone(timedelta(hours=2)))


def _orm_deal(store: Store, id: str, when: datetime) -> None:
    with Session(store.engine) as session:
        session.add(Deal(source="orm", id=id, updated_at=when, closed_at=when))
        session.commit()


@pytest.mark.parametrize("value", [T0, T0.replace(tzinfo=None), AWARE_PLUS_2], ids=["utc", "naive", "plus2"])
def test_fast_path_datetimes_read_back_like_orm_ones(store: Store, value: datetime):
    _orm_deal(store, "orm", T0)
    upsert(store, "deals", [deal("fast", updated_at=value, closed_at=value)])
    rows = deals(store)
    for key in [("orm", "orm"), ("crm", "fast")]:
        assert rows[key].updated_at == T0 and rows[key].closed_at == T0
        assert rows[key].updated_at.utcoffset() == timedelta(0)
    # SQL comparisons across the two write paths, and against bound parameters.
    assert raw(store, "SELECT count(*) FROM deals d JOIN deals o ON d.updated_at = o.updated_at "
                      "WHERE d.id = 'fast' AND o.id = 'orm'") == [(1,)]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(Deal.updated_at == T0)).scalar() == 2
        assert conn.execute(select(func.count()).where(Deal.updated_at >= T0 - timedelta(microseconds=1),
                                                       Deal.updated_at < T0 + timedelta(microseconds=1))).scalar() == 2
    if store.dialect == "sqlite":  # the very text SQLAlchemy writes
        assert raw(store, "SELECT DISTINCT updated_at FROM deals") == [("2024-01-10 09:15:30.123456",)]


ISO_TEXTS = [
    ("2024-01-10", datetime(2024, 1, 10, tzinfo=UTC)),
    ("2024-01-10T09:15:30", datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)),
    ("2024-01-10 09:15:30", datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)),
    ("2024-01-10T09:15:30Z", datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)),
    ("2024-01-10T09:15:30+00:00", datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)),
    ("2024-01-10T09:15:30-00:00", datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)),
    ("2024-01-10T11:15:30+02:00", datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)),
    ("2024-01-10T04:15:30-05:00", datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)),
    ("2024-01-10T09:15:30.123456", datetime(2024, 1, 10, 9, 15, 30, 123456, tzinfo=UTC)),
    ("2024-01-10T09:15:30.12345", datetime(2024, 1, 10, 9, 15, 30, 123450, tzinfo=UTC)),
    ("2024-01-10T09:15:30.1234Z", datetime(2024, 1, 10, 9, 15, 30, 123400, tzinfo=UTC)),
    ("2024-01-10T09:15:30.5+00:00", datetime(2024, 1, 10, 9, 15, 30, 500000, tzinfo=UTC)),
    ("2024-01-10T09:15", datetime(2024, 1, 10, 9, 15, tzinfo=UTC)),
    ("2024-01-10T23:30:00-02:00", datetime(2024, 1, 11, 1, 30, tzinfo=UTC)),
]


def _upsert_iso(store: Store) -> None:
    iso = store.encoder("iso_datetime")
    columns = ["source", "id", "updated_at", "is_deleted", "is_closed", "is_won"]
    rows = [("iso", str(n), iso(t), False, False, False) for n, (t, _) in enumerate(ISO_TEXTS)]
    with store.transaction() as conn:
        assert store.upsert_rows(conn, "deals", columns, rows) == len(ISO_TEXTS)


def test_iso_datetime_text_reads_back_as_utc(store: Store):
    _upsert_iso(store)
    for n, (_, expected) in enumerate(ISO_TEXTS):
        _orm_deal(store, str(n), expected)
    rows = deals(store)
    for n, (given, expected) in enumerate(ISO_TEXTS):
        got = rows["iso", str(n)].updated_at
        assert (given, got, got.utcoffset()) == (given, expected, timedelta(0))
    # Every fast-path value equals the ORM-written one in SQL.
    matched = raw(store, "SELECT count(*) FROM deals d JOIN deals o ON o.id = d.id AND d.updated_at = o.updated_at "
                         "WHERE d.source = 'iso' AND o.source = 'orm'")
    assert matched == [(len(ISO_TEXTS),)]
    if store.dialect == "sqlite":
        assert raw(store, "SELECT d.id, d.updated_at FROM deals d WHERE d.source = 'iso' ORDER BY d.id") == \
            raw(store, "SELECT o.id, o.updated_at FROM deals o WHERE o.source = 'orm' ORDER BY o.id")


@pytest.fixture
def new_york_local_time():
    """The machine's local zone is not UTC: zone-less values must still mean UTC."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_zone_less_values_are_utc_whatever_the_local_zone(store: Store, new_york_local_time):
    _upsert_iso(store)
    upsert(store, "deals", [deal("naive", updated_at=datetime(2024, 1, 10, 9, 15, 30))])
    rows = deals(store)
    assert rows["crm", "naive"].updated_at == datetime(2024, 1, 10, 9, 15, 30, tzinfo=UTC)
    for n, (_, expected) in enumerate(ISO_TEXTS):
        assert rows["iso", str(n)].updated_at == expected


def test_invalid_iso_text_raises_value_error(store: Store):
    iso = store.encoder("iso_datetime")
    for bad in ["2024-13-01", "yesterday", "2024-01-10T25:00:00"]:
        with pytest.raises(ValueError):
            iso(bad)


def test_dates_round_trip_like_orm_ones(store: Store):
    spent = date(2024, 2, 29)
    with Session(store.engine) as session:
        session.add(MarketingSpend(source="orm", id="m1", spent_on=spent, period_start=date(2024, 2, 1)))
        session.commit()
    row = {"source": "crm", "id": "m1", "spent_on": spent, "period_start": date(2024, 2, 1), "amount": 10.0,
           "channel": "ads", "is_deleted": False, "updated_at": T0}
    assert upsert(store, "marketing_spend", [row]) == 1
    with Session(store.engine) as session:
        got = {(m.source, m.id): (m.spent_on, m.period_start) for m in session.exec(select(MarketingSpend)).scalars()}
    assert got == {("orm", "m1"): (spent, date(2024, 2, 1)), ("crm", "m1"): (spent, date(2024, 2, 1))}
    assert raw(store, "SELECT count(*) FROM marketing_spend WHERE spent_on = :d", d=spent) == [(2,)]
    if store.dialect == "sqlite":
        assert raw(store, "SELECT DISTINCT spent_on FROM marketing_spend") == [("2024-02-29",)]


def test_numbers_booleans_and_json_round_trip(store: Store):
    extra = {"tier": "gold", "seats": 12, "ratio": 0.125, "tags": ["a", "é", "中"], "nested": {"x": None, "ok": True}}
    values = dict(amount=1234567.891011, is_won=True, is_closed=True, extra=extra)
    upsert(store, "deals", [deal("fast", **values), deal("zero", amount=0.1, extra=None)])
    with Session(store.engine) as session:
        session.add(Deal(source="orm", id="orm", **values))
        session.commit()
    rows = deals(store)
    for key in [("crm", "fast"), ("orm", "orm")]:
        d = rows[key]
        assert (d.amount, d.is_won, d.is_closed, d.is_deleted, d.extra) == (1234567.891011, True, True, False, extra)
        assert type(d.is_won) is bool
    assert (rows["crm", "zero"].amount, rows["crm", "zero"].extra, rows["crm", "zero"].is_won) == (0.1, None, False)
    # Booleans and numbers compare in SQL across both paths.
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(Deal.is_won.is_(True), Deal.amount == 1234567.891011)).scalar() == 2
    with Session(store.engine) as session:
        session.add(PipelineStage(source="orm", id="s1", display_order=3, probability=0.35))
        session.commit()
    upsert(store, "pipeline_stages", [{"source": "crm", "id": "s1", "display_order": 3, "probability": 0.35,
                                       "is_deleted": False, "is_closed": False, "is_won": False}])
    assert raw(store, "SELECT source, display_order, probability FROM pipeline_stages ORDER BY source") == \
        [("crm", 3, 0.35), ("orm", 3, 0.35)]


def test_missing_json_is_sql_null_whichever_path_wrote_it(store: Store):
    upsert(store, "deals", [deal("fast", extra=None)])
    with Session(store.engine) as session:
        session.add(Deal(source="orm", id="orm"))
        session.commit()
    assert raw(store, "SELECT source FROM deals WHERE extra IS NULL ORDER BY source") == [("crm",), ("orm",)]


def test_json_encoder_is_compact_and_keeps_unicode_values(store: Store):
    dump = store.encoder("json")
    assert dump(None) is None
    assert dump({"a": [1, 2], "when": date(2024, 1, 2)}) == '{"a":[1,2],"when":"2024-01-02"}'


# -- metric results ---------------------------------------------------------------------------


def _win_rate(ctx: MetricContext) -> Value:
    d = ctx.table("deals")
    closed = ctx.live(d) & ctx.in_period(d.c.closed_at)
    if ctx.params["closed_only"]:
        closed &= d.c.is_closed.is_(True)
    won = ctx.conn.execute(select(func.count()).where(closed, d.c.is_won.is_(True))).scalar()
    total = ctx.conn.execute(select(func.count()).where(closed)).scalar()
    return ratio(won, total)


WIN_RATE = Metric(id="test_win_rate", title="Win rate", description="won / closed", formula="won / closed",
                  unit="ratio", direction="higher", tables=("deals",), compute=_win_rate,
                  params=(Param("closed_only", bool, True, "only closed deals"),))
EMPTY = Metric(id="test_empty", title="Empty", description="nothing", formula="0 / 0", unit="ratio",
               direction="higher", tables=("deals",), compute=lambda ctx: ratio(0, 0))
BERLIN_JANUARY = Period(date(2024, 1, 1), date(2024, 2, 1), "2024-01")


def _seed_metrics(store: Store) -> None:
    upsert(store, "deals", [
        deal("won", is_closed=True, is_won=True, closed_at=datetime(2024, 1, 10, tzinfo=UTC)),
        deal("lost", is_closed=True, closed_at=datetime(2024, 1, 20, tzinfo=UTC)),
        deal("won-open", is_closed=False, is_won=True, closed_at=datetime(2024, 1, 21, tzinfo=UTC)),
        # 00:30 on February 1st in Berlin: outside January there.
        deal("late", is_closed=True, is_won=True, closed_at=datetime(2024, 1, 31, 23, 30, tzinfo=UTC)),
        deal("deleted", is_closed=True, is_won=True, is_deleted=True, closed_at=datetime(2024, 1, 5, tzinfo=UTC)),
    ])
    runs = SyncRun.__table__
    with store.transaction() as conn:
        conn.execute(runs.insert(), [
            dict(connector="crm", started_at=SYNC_1 - timedelta(hours=1), finished_at=SYNC_1, status="success"),
            dict(connector="crm", started_at=SYNC_2, finished_at=SYNC_2 + timedelta(days=3), status="success"),
            dict(connector="files", started_at=SYNC_2 - timedelta(hours=1), finished_at=SYNC_2, status="success"),
            dict(connector="files", started_at=SYNC_2, finished_at=SYNC_2 + timedelta(days=5), status="failed"),
            dict(connector="files", started_at=SYNC_2, finished_at=None, status="running"),
        ])


def test_run_metrics_persists_results(store: Store):
    _seed_metrics(store)
    before = datetime.now(UTC)
    results = run_metrics(store.engine, Run([WIN_RATE, EMPTY], BERLIN_JANUARY,
                                              {"test_win_rate": {"closed_only": "false"}}),
                          Settings(timezone="Europe/Berlin"))
    after = datetime.now(UTC)
    start, end = datetime(2023, 12, 31, 23, tzinfo=UTC), datetime(2024, 1, 31, 23, tzinfo=UTC)
    assert [(r["metric"], r["value"], r["numerator"], r["denominator"]) for r in results] == \
        [("test_win_rate", 2 / 3, 2.0, 3.0), ("test_empty", None, 0.0, 0.0)]

    with Session(store.engine) as session:
        stored = session.exec(select(MetricResult).order_by(MetricResult.id)).scalars().all()
    assert len(stored) == 2
    win, empty = stored
    run_id = results[0]["run_id"]
    assert len(run_id) == 32 and {r.run_id for r in stored} == {run_id}
    assert (win.metric, win.period_start, win.period_end, win.grain, win.segment, win.unit) == \
        ("test_win_rate", start, end, None, {}, "ratio")
    assert (win.value, win.numerator, win.denominator, win.note) == (pytest.approx(2 / 3), 2.0, 3.0, None)
    assert win.params == {"closed_only": False}
    assert before <= win.computed_at <= after and win.computed_at.utcoffset() == timedelta(0)
    # Freshness: the oldest of each connector's last successful sync (failed and running runs do not count).
    assert win.data_freshness == SYNC_2
    assert (empty.metric, empty.value, empty.numerator, empty.denominator, empty.note, empty.params) == \
        ("test_empty", None, 0.0, 0.0, "denominator is zero", {})
    assert (empty.computed_at, empty.data_freshness, empty.period_start) == (win.computed_at, SYNC_2, start)
    # Query by metric and period, as the report does, against bound aware datetimes.
    with store.engine.connect() as conn:
        t = MetricResult.__table__
        assert conn.execute(select(t.c.value).where(t.c.metric == "test_win_rate", t.c.period_start == start)
                            ).scalar() == pytest.approx(2 / 3)

    again = run_metrics(store.engine, Run([WIN_RATE], BERLIN_JANUARY), Settings(timezone="Europe/Berlin"))
    assert again[0]["run_id"] != run_id
    assert (again[0]["value"], again[0]["params"]) == (0.5, {"closed_only": True})  # won 1 of 2 closed
    assert raw(store, "SELECT count(*) FROM metric_results") == [(3,)]


def test_run_metrics_without_persist_or_syncs(store: Store):
    results = run_metrics(store.engine, Run([WIN_RATE], BERLIN_JANUARY), persist=False)
    assert results[0]["data_freshness"] is None and results[0]["value"] is None
    assert raw(store, "SELECT count(*) FROM metric_results") == [(0,)]
    run_metrics(store.engine, Run([WIN_RATE], BERLIN_JANUARY))
    with Session(store.engine) as session:
        stored = session.exec(select(MetricResult)).scalars().one()
    assert (stored.data_freshness, stored.value, stored.note) == (None, None, "denominator is zero")
    assert stored.period_start == datetime(2024, 1, 1, tzinfo=UTC)  # default timezone UTC


def test_a_failing_metric_persists_only_the_others(store: Store):
    def broken(ctx: MetricContext) -> Value:
        raise ZeroDivisionError("oops")

    bad = Metric(id="test_broken", title="Broken", description="", formula="", unit="count", direction="higher",
                 tables=("deals",), compute=broken)
    win, failed = run_metrics(store.engine, Run([WIN_RATE, bad], BERLIN_JANUARY))
    assert (win["error"], failed["error"], failed["value"]) == (None, "ZeroDivisionError: oops", None)
    assert raw(store, "SELECT metric FROM metric_results") == [("test_win_rate",)]
    # stop_on_error (crmkpi --debug) raises the first failure instead, and nothing of that run is saved
    with pytest.raises(MetricError, match="test_broken: ZeroDivisionError: oops"):
        run_metrics(store.engine, Run([WIN_RATE, bad], BERLIN_JANUARY), stop_on_error=True)
    assert raw(store, "SELECT count(*) FROM metric_results") == [(1,)]
