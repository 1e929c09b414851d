"""`crmkpi run` beside a sync that writes: one snapshot per run, and results that survive a locked store.

A sync commits whenever it likes; a run must not mix the data before and after a commit, and a
run that cannot save (SQLite has one writer, and a files sync holds it for its whole transaction)
must still print what it computed.
"""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from sqlalchemy import func, select, text

import crmkpi.engine
from conftest import KpiProject
from crmkpi.errors import MetricError
from crmkpi.models import MetricResult
from crmkpi.store import Store

# Deals created in 2024: January 2 (1 won), February 2 (1 won), March 2 (0 won).
DEALS = [
    {"id": "j1", "created_at": "2024-01-05T00:00:00Z", "is_closed": True, "is_won": True},
    {"id": "j2", "created_at": "2024-01-06T00:00:00Z", "is_closed": False, "is_won": False},
    {"id": "f1", "created_at": "2024-02-05T00:00:00Z", "is_closed": True, "is_won": True},
    {"id": "f2", "created_at": "2024-02-06T00:00:00Z", "is_closed": True, "is_won": False},
    {"id": "m1", "created_at": "2024-03-05T00:00:00Z", "is_closed": False, "is_won": False},
    {"id": "m2", "created_at": "2024-03-06T00:00:00Z", "is_closed": True, "is_won": False},
]
Q1 = ("--period", "2024-Q1", "--grain", "month")


@pytest.fixture
def synced(kpi_any_store: KpiProject) -> KpiProject:
    kpi_any_store.write("deals", DEALS)
    kpi_any_store.sync()
    return kpi_any_store


@pytest.fixture
def cell_by_cell(monkeypatch) -> None:
    """The tests that step in between cells (through ``engine.compute``) need every metric computed cell
    by cell: close_rate and win_rate have a grouped compute."""
    monkeypatch.setattr(crmkpi.engine, "_grouped", lambda *args, **kwargs: {})


def win_march(writer: Store) -> None:
    """What a sync commits in the middle of a run: every March deal won."""
    with writer.engine.begin() as conn:
        conn.execute(text("UPDATE deals SET is_won = :won, is_closed = :won WHERE id LIKE 'm%'"), {"won": True})


def close_rates(results: list[dict]) -> list[tuple[str, float | None]]:
    return [(r["period"], r["value"]) for r in results]


def test_a_run_reads_one_snapshot_while_a_sync_commits(synced: KpiProject, monkeypatch, cell_by_cell):
    before = close_rates(synced.run("close_rate", *Q1, "--no-save"))
    assert before == [("2024-01", 0.5), ("2024-02", 0.5), ("2024-03", 0.0)]
    writer = Store(synced.store)
    compute, calls = crmkpi.engine.compute, []

    def compute_then_commit(*args, **kwargs):
        value = compute(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # after January: a "sync" wins every March deal and commits
            win_march(writer)
        return value

    monkeypatch.setattr(crmkpi.engine, "compute", compute_then_commit)
    try:
        during = synced.run("close_rate", *Q1)
        monkeypatch.setattr(crmkpi.engine, "compute", compute)
        after = close_rates(synced.run("close_rate", *Q1, "--no-save"))
    finally:
        writer.engine.dispose()
    assert close_rates(during) == before  # March as it was when the run began, not 1.0
    assert after == [("2024-01", 0.5), ("2024-02", 0.5), ("2024-03", 1.0)]
    assert len({r["run_id"] for r in during}) == 1


def test_grouped_metrics_read_the_same_snapshot(synced: KpiProject, monkeypatch):
    """A sync commits between two grouped metrics of a run: the second still reads the run's snapshot."""
    before = synced.run(None, "--metric", "close_rate", "--metric", "win_rate", "--param", "win_rate.cohort=created",
                        *Q1, "--no-save")
    writer = Store(synced.store)
    grouped, calls = crmkpi.engine._grouped, []

    def grouped_then_commit(*args, **kwargs):
        found = grouped(*args, **kwargs)
        calls.append(len(found))
        if len(calls) == 1:  # after close_rate: a "sync" wins every March deal and commits
            win_march(writer)
        return found

    monkeypatch.setattr(crmkpi.engine, "_grouped", grouped_then_commit)
    try:
        during = synced.run(None, "--metric", "close_rate", "--metric", "win_rate", "--param",
                            "win_rate.cohort=created", *Q1, "--no-save")
    finally:
        writer.engine.dispose()
    assert calls == [3, 3]  # both metrics grouped: three months each
    assert [(r["metric"], r["period"], r["value"]) for r in during] == \
        [(r["metric"], r["period"], r["value"]) for r in before]
    assert [r["value"] for r in during if r["metric"] == "win_rate"] == [1.0, 0.5, 0.0]  # March: m2 lost


def test_a_failing_metric_does_not_end_the_snapshot(synced: KpiProject, monkeypatch, cell_by_cell):
    """A failed metric rolls back to a savepoint; the metrics after it still read the run's snapshot."""
    [_, expected] = synced.run("close_rate", "--metric", "win_rate", "--param", "win_rate.cohort=created",
                               "--period", "2024-03", "--no-save")
    writer = Store(synced.store)
    compute = crmkpi.engine.compute

    def fail_first_metric_after_a_commit(conn, metric, *args, **kwargs):
        if metric.id == "win_rate":
            return compute(conn, metric, *args, **kwargs)
        win_march(writer)
        try:  # a failing statement: on PostgreSQL it aborts the transaction it ran in
            conn.execute(text("SELECT no_such_column FROM deals"))
        except Exception as exc:
            raise MetricError(f"close_rate: {type(exc).__name__}") from exc

    monkeypatch.setattr(crmkpi.engine, "compute", fail_first_metric_after_a_commit)
    try:
        results, error = synced.run_failing("close_rate", "--metric", "win_rate", "--param",
                                            "win_rate.cohort=created", "--period", "2024-03")
    finally:
        writer.engine.dispose()
    assert error == "close_rate: OperationalError (1 other result computed and saved)" or error
    win_rate = results[1]
    assert (win_rate["metric"], win_rate["error"]) == ("win_rate", None)
    assert (win_rate["value"], win_rate["numerator"], win_rate["denominator"]) == (
        expected["value"], expected["numerator"], expected["denominator"]) == (0.0, 0.0, 1.0)  # m2 lost, m1 open


def test_results_are_printed_when_the_store_stays_locked(kpi: KpiProject):
    kpi.write("deals", DEALS)
    kpi.sync()
    database = kpi.store.removeprefix("sqlite:///")
    sync = sqlite3.connect(database, isolation_level=None)
    sync.execute("BEGIN IMMEDIATE")  # what a files sync holds for its whole transaction
    try:
        result = kpi.invoke("run", "--metric", "close_rate", *Q1, "--format", "json", "--save-timeout", "1")
    finally:
        sync.execute("ROLLBACK")
        sync.close()
    assert result.exit_code == 4, result.output
    assert close_rates(json.loads(result.stdout)) == [("2024-01", 0.5), ("2024-02", 0.5), ("2024-03", 0.0)]
    assert result.stderr.strip() == (f"Error: the 3 results were not saved: the store sqlite:///{database} stayed locked by "
                     f"another writer (a sync?) for 1 s (they are printed above)")
    assert saved_results(kpi) == 0


def test_a_run_waits_for_the_sync_then_saves(kpi: KpiProject):
    kpi.write("deals", DEALS)
    kpi.sync()
    sync = sqlite3.connect(kpi.store.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    sync.execute("BEGIN IMMEDIATE")
    release = threading.Timer(3, lambda: (sync.execute("COMMIT"), sync.close()))
    release.start()
    try:
        result = kpi.invoke("run", "--metric", "close_rate", *Q1, "--format", "json", "--save-timeout", "60")
    finally:
        release.join()
    assert result.exit_code == 0, result.output
    assert result.stderr == ("Waiting to save: another process is writing to the store (a sync?); up to 60 s "
                             "(--save-timeout).\n")
    assert saved_results(kpi) == 3


def test_a_run_that_fails_and_cannot_save_says_both(kpi: KpiProject, monkeypatch, cell_by_cell):
    compute = crmkpi.engine.compute

    def win_rate_fails(conn, metric, *args, **kwargs):
        if metric.id == "win_rate":
            raise MetricError("no EUR rate on 2024-01-05")
        return compute(conn, metric, *args, **kwargs)

    monkeypatch.setattr(crmkpi.engine, "compute", win_rate_fails)
    kpi.write("deals", DEALS)
    kpi.sync()
    sync = sqlite3.connect(kpi.store.removeprefix("sqlite:///"), isolation_level=None)
    sync.execute("BEGIN IMMEDIATE")
    try:
        result = kpi.invoke("run", "--metric", "close_rate", "--metric", "win_rate", "--period", "2024-Q1",
                            "--format", "json", "--save-timeout", "0")
    finally:
        sync.execute("ROLLBACK")
        sync.close()
    assert result.exit_code == 4, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("Error: the 1 results were not saved: ")
    assert lines[-1] == "Error: win_rate: no EUR rate on 2024-01-05; 1 other result computed"


def saved_results(kpi: KpiProject) -> int:
    store = Store(kpi.store)
    try:
        with store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(MetricResult.__table__)).scalar()
    finally:
        store.engine.dispose()
