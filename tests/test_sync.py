"""Running a sync: runs recorded, state saved with the data it covers, failures roll back."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, select, text

from crmkpi import hookimpl
from crmkpi.config import ConnectorConfig
from crmkpi.connector import Checkpoint, ConnectorType, Coverage, StreamStats, SyncContext
from crmkpi.connectors.files.settings import FilesSettings
from crmkpi.errors import ConnectorError, SourceDataError
from crmkpi.metrics import Metric, Value
from crmkpi.models import SyncRun, SyncState
from crmkpi.normalize import Layout, RowBuilder
from crmkpi.plugins import load_registry
from crmkpi.store import Store
from crmkpi.sync import sync_connector
from processes import processes


# -- a scripted connector ------------------------------------------------------------------


class NoSettings(BaseModel):
    pass


class ScriptedStream:
    """Accounts from a script: lists of (id, name) are batches; Checkpoints, callables and exceptions run in turn."""

    name = "accounts-api"
    table = "accounts"

    def __init__(self, context: SyncContext, script: list, seen: list) -> None:
        self.builder = RowBuilder("accounts", ["id", "name"], Layout(), source=context.name,
                                  synced_at=context.synced_at, encoder=context.encoder)
        self.columns = self.builder.columns
        self.stats = StreamStats()
        self.script, self.seen = script, seen

    def read(self, cursor, state):
        self.seen.append((cursor, state))
        for step in self.script:
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, Checkpoint):
                yield step
            elif callable(step):
                step()
            else:
                self.stats.read += len(step)
                yield [self.builder.build(record) for record in step]


class ScriptedPlugin:
    def __init__(self, script: list, atomic: bool) -> None:
        self.script, self.atomic, self.seen = script, atomic, []

    @hookimpl
    def register_connectors(self, register):
        register(ConnectorType(name="scripted", description="test source", settings=NoSettings, atomic=self.atomic,
                               streams=lambda context: [ScriptedStream(context, self.script, self.seen)]))


def run_scripted(store: Store, script: list, atomic: bool = False, **options):
    plugin = ScriptedPlugin(script, atomic)
    registry = load_registry(extra={"scripted-test": plugin})
    report = sync_connector(store, registry, "api", ConnectorConfig("scripted", NoSettings()), Path.cwd(), **options)
    return report, plugin.seen


# -- reading the store from outside the sync's connection --------------------------------------


def query(store: Store, sql: str) -> list[tuple]:
    engine = create_engine(store.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def account_ids(store: Store) -> list[str]:
    return [r[0] for r in query(store, "SELECT id FROM accounts ORDER BY id")]


def states(store: Store) -> dict[tuple[str, str], tuple]:
    engine = create_engine(store.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(SyncState.__table__)).mappings().all()
    finally:
        engine.dispose()
    return {(r["connector"], r["stream"]): (r["cursor"], r["state"]) for r in rows}


def last_run(store: Store) -> dict:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(SyncRun.__table__).order_by(SyncRun.id.desc())).mappings().first())


def children() -> list[int]:
    return [p.pid for p in processes() if p.ppid == os.getpid()]


def files_connector(folder: Path, **settings) -> ConnectorConfig:
    return ConnectorConfig("files", FilesSettings(path=str(folder), **settings))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated SQLite store, made once: migrating takes longer than most of these tests."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    template = Store(f"sqlite:///{path}")
    with template.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    template.engine.dispose()
    return path


@pytest.fixture
def sqlite_store(tmp_path: Path, migrated: Path):
    """For behaviour that is the same on every backend (``store`` runs on SQLite and PostgreSQL)."""
    shutil.copyfile(migrated, tmp_path / "store.db")
    s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.engine.dispose()


@pytest.fixture(autouse=True)
def files_only(monkeypatch):
    """No metric plugin: the sync's mechanics, not the columns metrics need (tested with a scripted stream)."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files")


@pytest.fixture
def data(isolated: Path) -> Path:
    folder = isolated / "data"
    folder.mkdir()
    return folder


# -- runs ----------------------------------------------------------------------------------


def test_a_successful_sync_records_its_run(store, data):
    (data / "accounts.csv").write_text("id,name\na1,Acme\na2,Globex\n")
    (data / "deals.csv").write_text("id,amount\nd1,1\nd2,x\nd3,3\n")
    before = datetime.now(UTC)
    report = sync_connector(store, load_registry(), "crm", files_connector(data, on_error="skip"), data)
    run = last_run(store)
    assert run["id"] == report.run_id and run["connector"] == "crm" and run["status"] == "success"
    assert (run["rows_read"], run["rows_written"], run["rows_skipped"], run["error"]) == (5, 4, 1, None)
    started = run["started_at"].replace(tzinfo=UTC) if run["started_at"].tzinfo is None else run["started_at"]
    finished = run["finished_at"].replace(tzinfo=UTC) if run["finished_at"].tzinfo is None else run["finished_at"]
    assert before <= started <= finished <= datetime.now(UTC)
    assert run["details"] == {
        "accounts.csv": {"table": "accounts", "read": 2, "written": 2, "skipped": 0, "duplicates": 0,
                         "unchanged": False, "errors": [], "notes": []},
        "deals.csv": {"table": "deals", "read": 3, "written": 2, "skipped": 1, "duplicates": 0, "unchanged": False,
                      "errors": ["deals.csv: line 3: column 'amount': not a valid float: 'x'"], "notes": []},
    }
    assert report.written == 4 and [s.name for s in report.streams] == ["accounts.csv", "deals.csv"]
    assert set(states(store)) == {("crm", "accounts.csv"), ("crm", "deals.csv")}
    # every row written by this run carries its start as synced_at
    synced = {r[0] for r in query(store, "SELECT synced_at FROM accounts UNION SELECT synced_at FROM deals")}
    assert len(synced) == 1


def test_progress_reports_each_batch(sqlite_store, data):
    (data / "deals.csv").write_text("id\n" + "".join(f"d{i}\n" for i in range(600)))
    seen = []
    sync_connector(sqlite_store, load_registry(), "crm", files_connector(data), data,
                   progress=lambda stream, rows: seen.append((stream, rows)))
    assert {s for s, _ in seen} == {"deals.csv"} and sum(n for _, n in seen) == 600 and len(seen) >= 2


# -- atomic connectors -------------------------------------------------------------------------


def test_a_failed_atomic_sync_rolls_back_every_stream_and_its_state(store, data):
    (data / "accounts.csv").write_text("id,name\na1,Acme\n")
    (data / "deals.csv").write_text("id,created_at\nd1,2024-01-01\nd2,2024-01-01\nd3,someday\n")
    with pytest.raises(SourceDataError) as info:
        sync_connector(store, load_registry(), "crm", files_connector(data), data)
    message = ("deals.csv: line 4: column 'created_at': not a valid datetime: 'someday' "
               "(expected ISO 8601: set datetime_format, or formats.created_at)")
    assert str(info.value) == message
    assert account_ids(store) == [] and query(store, "SELECT id FROM deals") == [] and states(store) == {}
    run = last_run(store)
    assert (run["status"], run["error"]) == ("failed", message)
    # nothing was committed, so the run does not claim any row as written
    assert (run["rows_written"], run["details"]["accounts.csv"]["written"]) == (0, 0)
    assert run["details"]["accounts.csv"]["read"] == 1


def test_an_atomic_connector_commits_nothing_even_after_a_checkpoint(sqlite_store):
    script = [[("a1", "One")], Checkpoint(cursor="c1"), [("a2", "Two")], ValueError("page 3: HTTP 500")]
    with pytest.raises(ConnectorError, match=r"^connector 'api' failed: ValueError: page 3: HTTP 500$"):
        run_scripted(sqlite_store, script, atomic=True)
    assert account_ids(sqlite_store) == [] and states(sqlite_store) == {}
    run = last_run(sqlite_store)
    assert (run["status"], run["error"], run["rows_written"]) == ("failed", "ValueError: page 3: HTTP 500", 0)


# -- checkpointed (non-atomic) connectors ------------------------------------------------------


def test_state_is_committed_with_the_rows_it_covers_and_not_before(store):
    observed = {}
    script = [
        [("a1", "One"), ("a2", "Two")],
        lambda: observed.setdefault("before checkpoint", (account_ids(store), states(store))),
        Checkpoint(cursor="2024-01-02", state={"page": 2}),
        lambda: observed.setdefault("after checkpoint", (account_ids(store), states(store))),
        [("a3", "Three")],
        ValueError("page 3: HTTP 500"),
    ]
    with pytest.raises(ConnectorError, match="page 3: HTTP 500"):
        run_scripted(store, script)
    # While the first batch was being written, neither it nor its cursor was visible to others;
    # once the checkpoint passed, both were.
    assert observed["before checkpoint"] == ([], {})
    committed = {("api", "accounts-api"): ("2024-01-02", {"page": 2})}
    assert observed["after checkpoint"] == (["a1", "a2"], committed)
    # the batch after the checkpoint is lost with the failure; what was committed stays
    assert account_ids(store) == ["a1", "a2"] and states(store) == committed
    run = last_run(store)
    assert (run["status"], run["error"], run["rows_written"]) == ("failed", "ValueError: page 3: HTTP 500", 0)

    # The next sync resumes from the committed cursor.
    report, seen = run_scripted(store, [[("a3", "Three")], Checkpoint(cursor="2024-01-03")])
    assert seen == [("2024-01-02", {"page": 2})]
    assert account_ids(store) == ["a1", "a2", "a3"] and states(store)[("api", "accounts-api")][0] == "2024-01-03"
    assert (last_run(store)["status"], last_run(store)["rows_written"], report.written) == ("success", 1, 1)


def test_deleted_ids_are_flagged_with_the_checkpoint_and_never_removed(store):
    run_scripted(store, [[("a1", "One"), ("a2", "Two")], Checkpoint(cursor="c1")])
    observed = {}
    script = [Checkpoint(cursor="c2", deleted=("a1", "never-synced")),
              lambda: observed.setdefault("after", query(store, "SELECT id, is_deleted FROM accounts ORDER BY id"))]
    report, _ = run_scripted(store, script)
    # flagged in the checkpoint's transaction; an id the store never had is not invented
    assert [(i, bool(d)) for i, d in observed["after"]] == [("a1", True), ("a2", False)]
    assert report.written == 1 and states(store)[("api", "accounts-api")][0] == "c2"
    # flagging it again changes nothing; a record that comes back is undeleted by its row
    report, _ = run_scripted(store, [Checkpoint(cursor="c3", deleted=("a1",))])
    assert report.written == 0
    run_scripted(store, [[("a1", "One again")], Checkpoint(cursor="c4")])
    assert [(i, n, bool(d)) for i, n, d in query(store, "SELECT id, name, is_deleted FROM accounts ORDER BY id")] == [
        ("a1", "One again", False), ("a2", "Two", False)]


def test_an_interrupted_sync_keeps_what_it_committed_and_records_the_interruption(sqlite_store):
    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_scripted(sqlite_store, [[("a1", "One")], Checkpoint(cursor="c1"), [("a2", "Two")], interrupt])
    assert account_ids(sqlite_store) == ["a1"] and states(sqlite_store)[("api", "accounts-api")][0] == "c1"
    run = last_run(sqlite_store)
    assert (run["status"], run["error"], run["finished_at"] is not None) == ("failed", "interrupted", True)


def test_a_stream_without_a_final_checkpoint_saves_no_state(sqlite_store):
    report, _ = run_scripted(sqlite_store, [[("a1", "One")], Checkpoint(cursor="c1"), [("a2", "Two")]])
    # rows after the last checkpoint are committed, but the cursor stays where it was proven
    assert account_ids(sqlite_store) == ["a1", "a2"] and states(sqlite_store)[("api", "accounts-api")][0] == "c1"
    assert report.written == 2


def test_full_refresh_ignores_the_saved_cursor_and_rewrites_unchanged_rows(sqlite_store):
    run_scripted(sqlite_store, [[("a1", "One")], Checkpoint(cursor="c1")])
    report, seen = run_scripted(sqlite_store, [[("a1", "One")], Checkpoint(cursor="c2")])
    assert seen == [("c1", None)]
    report, seen = run_scripted(sqlite_store, [[("a1", "One")], Checkpoint(cursor="c3")], full_refresh=True)
    assert seen == [(None, None)] and report.written == 1


class WaitingPlugin:
    """A source that has to wait (as for an export job) before its rows come."""

    @hookimpl
    def register_connectors(self, register):
        def streams(context: SyncContext):
            context.status("accounts-api", "waiting for an export")
            return [ScriptedStream(context, [[("a1", "One")], Checkpoint()], [])]

        register(ConnectorType(name="scripted", description="test source", settings=NoSettings, streams=streams))


def test_a_stream_can_say_what_it_is_waiting_for(sqlite_store):
    heard = []
    registry = load_registry(extra={"waiting-test": WaitingPlugin()})
    sync_connector(sqlite_store, registry, "api", ConnectorConfig("scripted", NoSettings()), Path.cwd(),
                   status=lambda stream, message: heard.append((stream, message)))
    assert heard == [("accounts-api", "waiting for an export")] and account_ids(sqlite_store) == ["a1"]


def test_a_state_is_not_saved_when_writing_its_rows_fails(sqlite_store, monkeypatch):
    def broken(self, conn, table, columns, rows, guard=True):
        next(iter(rows))
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "upsert_rows", broken)
    with pytest.raises(ConnectorError, match=r"^connector 'api' failed: RuntimeError: disk full$"):
        run_scripted(sqlite_store, [[("a1", "One")], Checkpoint(cursor="c1")])
    assert states(sqlite_store) == {} and account_ids(sqlite_store) == []
    assert last_run(sqlite_store)["status"] == "failed"


def test_the_row_worker_does_not_outlive_a_failed_write(sqlite_store, data, monkeypatch):
    (data / "deals.csv").write_text("id,name\n" + "".join(f"d{i},deal number {i}\n" for i in range(20_000)))

    def broken(self, conn, table, columns, rows, guard=True):
        next(iter(rows))
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "upsert_rows", broken)
    with pytest.raises(ConnectorError, match="disk full") as info:
        sync_connector(sqlite_store, load_registry(), "crm", files_connector(data), data)
    assert info.value.__cause__ is not None  # the traceback (and the frames in it) is still alive here
    assert children() == []
    assert query(sqlite_store, "SELECT count(*) FROM deals") == [(0,)] and states(sqlite_store) == {}


def test_sync_state_is_one_row_per_stream_replaced_on_each_sync(sqlite_store):
    run_scripted(sqlite_store, [[("a1", "One")], Checkpoint(cursor="c1")])
    run_scripted(sqlite_store, [[("a2", "Two")], Checkpoint(cursor="c2", state={"n": 2})])
    with sqlite_store.engine.connect() as conn:
        rows = conn.execute(select(SyncState.__table__)).mappings().all()
    assert [(r["connector"], r["stream"], r["cursor"], r["state"]) for r in rows] == [
        ("api", "accounts-api", "c2", {"n": 2})]


# -- the columns the metrics need ----------------------------------------------------------------


class CoveredStream:
    """One deal, from a source that gives the columns ``provided`` (its coverage, known once reading starts)."""

    name = "opportunities"
    table = "deals"

    def __init__(self, context: SyncContext, provided: set[str], strict: bool, known_early: bool) -> None:
        builder = RowBuilder("deals", ["id"], Layout(), source=context.name, synced_at=context.synced_at,
                             encoder=context.encoder)
        self.columns, self.row = builder.columns, builder.build(["d1"])
        self.stats = StreamStats()
        self.coverage = None
        self._coverage = Coverage(frozenset(provided), strict, lambda column: f" (try {column.upper()})")
        self.known_early = known_early

    def read(self, cursor, state):
        if self.known_early:
            self.coverage = self._coverage
        yield [self.row]
        self.coverage = self._coverage  # e.g. JSON records: only the last one tells which fields there were
        yield Checkpoint()


class NeedsPlugin:
    def __init__(self, provided: set[str], strict: bool = False, known_early: bool = True) -> None:
        self.args = provided, strict, known_early

    @hookimpl
    def register_connectors(self, register):
        register(ConnectorType(name="covered", description="test source", settings=NoSettings, atomic=True,
                               streams=lambda context: [CoveredStream(context, *self.args)]))

    @hookimpl
    def register_metrics(self, register):
        never = lambda ctx: Value(None)  # noqa: E731
        register(Metric(id="wins", title="Wins", description="", formula="", unit="count", direction="higher",
                        tables=("deals",), compute=never, needs=("deals.is_won", "deals.closed_at")))
        register(Metric(id="sizes", title="Sizes", description="", formula="", unit="currency", direction="higher",
                        tables=("deals",), compute=never, needs=("deals.amount", "deals.closed_at",
                                                                 "deals.is_deleted")))


def sync_covered(store: Store, plugin: NeedsPlugin):
    registry = load_registry(extra={"needs-test": plugin})
    return sync_connector(store, registry, "api", ConnectorConfig("covered", NoSettings()), Path.cwd())


def test_a_needed_column_the_source_lacks_is_noted_with_the_metrics_that_need_it(sqlite_store):
    report = sync_covered(sqlite_store, NeedsPlugin({"id", "is_won", "amount"}))
    assert report.streams[0].notes == [
        "opportunities: no value for deals.closed_at (empty in every row), needed by sizes, wins (try CLOSED_AT)"]
    assert last_run(sqlite_store)["details"]["opportunities"]["notes"] == report.streams[0].notes


@pytest.mark.parametrize("known_early", [True, False])
def test_a_needed_column_whose_default_would_read_as_data_fails_the_sync(sqlite_store, known_early):
    with pytest.raises(SourceDataError) as info:
        sync_covered(sqlite_store, NeedsPlugin({"id", "closed_at", "amount"}, known_early=known_early))
    assert str(info.value) == ("opportunities: no value for deals.is_won, so every row would read as is_won = false "
                               "in wins; map a source column to it, derive it, or set it as a constant (try IS_WON)")
    assert query(sqlite_store, "SELECT id FROM deals") == []  # known late, it still rolls back


def test_with_a_strict_stream_a_missing_column_is_an_error(sqlite_store):
    with pytest.raises(SourceDataError, match=r"no value for deals.amount .*, needed by sizes \(try AMOUNT\) "
                                              r"\(strict\)$"):
        sync_covered(sqlite_store, NeedsPlugin({"id", "is_won", "closed_at"}, strict=True))


def test_a_stream_without_coverage_is_not_checked(sqlite_store):
    report, _ = run_scripted(sqlite_store, [[("a1", "Acme")], Checkpoint()])
    assert report.streams[0].notes == []


# -- the first load of a table -------------------------------------------------------------------


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """Every SQL statement the store's engines send, as sent."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield sent
    event.remove(Engine, "before_cursor_execute", record)


def indexes(store: Store) -> list[tuple]:
    return sorted(query(store, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))


def test_a_first_load_builds_the_indexes_after_the_rows_and_a_later_one_keeps_them(sqlite_store, data, statements):
    schema = indexes(sqlite_store)
    assert [name for name, _ in schema] == ["ix_deal_stage_changes_deal", "ix_deals_closed_at", "ix_deals_created_at",
                                            "ix_fx_rates_currency", "ix_job_runs_job", "ix_metric_results_metric_period",
                                            "ix_metric_results_run_id", "ix_notification_deliveries_channel",
                                            "ix_sync_runs_connector"]
    (data / "deals.csv").write_text("id,created_at\nd1,2024-01-01\nd2,2024-02-01\n")
    sync_connector(sqlite_store, load_registry(), "crm", files_connector(data), data)
    assert [s for s in statements if s.startswith(("DROP INDEX", "CREATE INDEX"))] == [
        "DROP INDEX ix_deals_created_at", "DROP INDEX ix_deals_closed_at",
        "CREATE INDEX ix_deals_created_at ON deals (created_at)", "CREATE INDEX ix_deals_closed_at ON deals (closed_at)"]
    assert indexes(sqlite_store) == schema
    assert query(sqlite_store, "SELECT id FROM deals INDEXED BY ix_deals_created_at WHERE created_at > '2024-01-15'") \
        == [("d2",)]  # built over the loaded rows
    statements.clear()
    (data / "deals.csv").write_text("id,created_at\nd1,2024-01-01\nd2,2024-02-01\nd3,2024-03-01\n")
    sync_connector(sqlite_store, load_registry(), "crm", files_connector(data), data)
    assert [s for s in statements if "INDEX" in s] == [] and indexes(sqlite_store) == schema


def test_a_failed_first_load_leaves_the_indexes_and_an_empty_table(sqlite_store, data):
    schema = indexes(sqlite_store)
    (data / "deals.csv").write_text("id,created_at\nd1,2024-01-01\nd2,someday\n")
    with pytest.raises(SourceDataError):
        sync_connector(sqlite_store, load_registry(), "crm", files_connector(data), data)
    assert indexes(sqlite_store) == schema and query(sqlite_store, "SELECT id FROM deals") == []


def test_postgresql_keeps_its_indexes_through_a_first_load(store, data, statements):
    (data / "deals.csv").write_text("id,created_at\nd1,2024-01-01\n")
    sync_connector(store, load_registry(), "crm", files_connector(data), data)
    dropped = [s for s in statements if s.startswith("DROP INDEX")]
    assert dropped == ([] if store.dialect == "postgresql" else ["DROP INDEX ix_deals_created_at",
                                                                  "DROP INDEX ix_deals_closed_at"])


def test_postgresql_plans_with_the_synced_rows_counted(store, data):
    """A sync that changes a good part of a table refreshes PostgreSQL's statistics of it at once: planned
    with the empty table's, a grouped metric's joins ran as nested loops for minutes."""
    if store.dialect != "postgresql":
        pytest.skip("statistics are refreshed on PostgreSQL only")
    (data / "deals.csv").write_text("id,created_at\n" + "".join(f"d{i},2024-01-01\n" for i in range(300)))
    sync_connector(store, load_registry(), "crm", files_connector(data), data)
    assert query(store, "SELECT reltuples FROM pg_class WHERE oid = 'deals'::regclass") == [(300,)]
    (data / "deals.csv").write_text("id,created_at\n" + "".join(f"d{i},2024-01-01\n" for i in range(310)))
    sync_connector(store, load_registry(), "crm", files_connector(data), data)  # 10 rows: below the threshold
    assert query(store, "SELECT reltuples FROM pg_class WHERE oid = 'deals'::regclass") == [(300,)]
