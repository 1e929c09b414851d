"""A sync's process life: killed (SIGKILL, SIGTERM), run twice at once, asked for its status.

Regression tests of issue 15: through the real CLI, in a subprocess, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from crmkpi import sync as sync_module
from crmkpi.cli import cli
from crmkpi.errors import StoreError, Terminated
from crmkpi.store import Store
from storecheck import one_line_error, sync_runs
from processes import processes

CRMKPI = Path(sys.executable).parent / "crmkpi"
#: A files sync of this many sample deals takes seconds: long enough to be killed mid-write.
DEALS = 4000


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("sample") / "data"
    subprocess.run([str(CRMKPI), "sample-data", "--out", str(data), "--deals", str(DEALS)], check=True,
                   capture_output=True)
    return data


@pytest.fixture
def config(isolated: Path, store_url: str, sample: Path) -> Path:
    path = isolated / "crmkpi.yaml"
    path.write_text(yaml.safe_dump({"store": store_url, "connectors": {"crm": {"type": "files", "path": str(sample)}}}))
    return path


def start_sync(config: Path) -> subprocess.Popen:
    """`crmkpi sync` in a session of its own, returned once it has recorded its run and forked its worker."""
    process = subprocess.Popen([str(CRMKPI), "sync", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not children(process.pid):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sync never started its row worker"
        time.sleep(0.01)
    return process


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    return [p.pid for p in processes() if p.ppid == pid and p.state != "Z"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie holds nothing (this container's init may not reap orphans)


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def sync(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(CRMKPI), "sync", "--config", str(config), *args], capture_output=True, text=True,
                          timeout=timeout)


def assert_terminated_and_rolled_back(store_url: str) -> None:
    """The sync's run failed as terminated, and the files sync, one transaction, left no deal."""
    [run] = sync_runs(store_url)
    assert (run["status"], run["error"]) == ("failed", "terminated (SIGTERM)")
    assert run["finished_at"] is not None
    engine = create_engine(store_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deals")).scalar() == 0
    engine.dispose()


def test_sigkill_mid_write_the_worker_dies_with_the_sync_and_the_next_sync_is_not_held_up(config: Path,
                                                                                          store_url: str):
    process = start_sync(config)
    workers = children(process.pid)
    process.send_signal(signal.SIGKILL)
    # communicate() reads to end of file: it would hang while a worker held the sync's stdout/stderr
    process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert gone_within(workers, 1.0), f"row worker {workers} outlived the killed sync"

    started = time.monotonic()
    again = sync(config, timeout=60)  # on PostgreSQL this waited forever on the killed transaction's locks
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 30
    first, second = sync_runs(store_url)
    assert first["status"] == "failed" and first["pid"] == process.pid and first["host"] == socket.gethostname()
    assert first["error"] == (f"its process (pid {process.pid} on {socket.gethostname()}) ended without finishing "
                              f"the sync (killed, or the machine stopped)")
    assert second["status"] == "success" and second["rows_read"] > DEALS


def test_sigterm_is_one_line_no_worker_left_and_the_run_failed(config: Path, store_url: str):
    process = start_sync(config)
    workers = children(process.pid)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (143, "Terminated.\n")
    assert gone_within(workers, 1.0)
    assert_terminated_and_rolled_back(store_url)


def test_sigterm_while_the_run_is_being_recorded_still_fails_the_run(config: Path, store_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch):
    """The window the kill trials found: the data is committed, the run's success not yet."""
    record = sync_module._finish_run

    def terminated_on_success(store, run_id, report, status, error) -> None:
        if status == "success":
            raise Terminated()
        record(store, run_id, report, status, error)

    monkeypatch.setattr(sync_module, "_finish_run", terminated_on_success)
    result = CliRunner().invoke(cli, ["sync", "--config", str(config)])
    assert (result.exit_code, result.stderr) == (143, "Terminated.\n")
    [run] = sync_runs(store_url)
    assert (run["status"], run["error"]) == ("failed", "terminated (SIGTERM)")


def test_a_sigterm_whose_exception_a_finalizer_swallows_still_stops_the_sync(config: Path, store_url: str,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """A CI run once saw a SIGTERMed sync exit 0 after "Exception ignored in ...": the signal landed in a
    finalizer, where Python prints the exception and goes on. The handler's flag stops it at the commit."""
    class SignalledWhileFinalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, inside the finalizer, and its exception is swallowed

    check = sync_module._check_coverage

    signalled = []

    def coverage_then_signal(*args, **kwargs):
        if not signalled:  # once: a second SIGTERM finds the default action, which ends the process
            signalled.append(SignalledWhileFinalized())
            signalled[0] = None  # collected at once: the finalizer runs here
        return check(*args, **kwargs)

    monkeypatch.setattr(sync_module, "_check_coverage", coverage_then_signal)
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_type))
    result = CliRunner().invoke(cli, ["sync", "--config", str(config)])
    assert (result.exit_code, result.stderr) == (143, "Terminated.\n")
    assert swallowed == [Terminated]  # what made the sync go on before
    assert_terminated_and_rolled_back(store_url)


def test_a_sigterm_that_surfaces_as_a_store_error_is_still_a_sigterm(config: Path, store_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """A kill trial saw psycopg, interrupted by the signal in pipeline mode, raise "cannot exit pipeline mode
    while busy" instead: the command said a store error and exited 1."""
    def interrupted_mid_query(*args, **kwargs):
        Terminated.requested = True  # what the handler did before its exception was replaced
        raise StoreError("store: sending query failed: cannot exit pipeline mode while busy")

    monkeypatch.setattr(Store, "upsert_rows", interrupted_mid_query)
    result = CliRunner().invoke(cli, ["sync", "--config", str(config)])
    assert (result.exit_code, result.stderr) == (143, "Terminated.\n")
    [run] = sync_runs(store_url)
    assert (run["status"], run["error"]) == ("failed", "terminated (SIGTERM)")


def test_a_second_sync_of_the_connector_is_refused_naming_the_running_one(config: Path, store_url: str):
    process = start_sync(config)
    try:
        result = CliRunner().invoke(cli, ["sync", "--config", str(config)])
        message = one_line_error(result)
        host = socket.gethostname()
        assert re.fullmatch(
            rf"connector 'crm' is being synced by another process \(pid {process.pid} on host {re.escape(host)}, "
            rf"started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC, sync run 1\); wait for it to finish, or stop it",
            message), message
        status = CliRunner().invoke(cli, ["sync", "--config", str(config), "--status"])
        assert status.exit_code == 0
        assert re.fullmatch(rf"crm: running since .* UTC \(pid {process.pid} on host {re.escape(host)}, sync run 1\)\n",
                            status.stdout), status.stdout
    finally:
        process.kill()
        process.communicate()
    [run] = sync_runs(store_url)  # the refused sync recorded nothing
    assert run["status"] == "running"


def test_status_marks_a_killed_run_failed(config: Path, store_url: str):
    process = start_sync(config)
    deadline = time.monotonic() + 30  # killed once its run is recorded (a CI run once saw a child before that)
    while not sync_runs(store_url) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.communicate()
    result = CliRunner().invoke(cli, ["sync", "--config", str(config), "--status"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"crm: failed, started .* UTC, finished .* UTC \(sync run 1\): its process "
                        rf"\(pid {process.pid} on {re.escape(socket.gethostname())}\) ended without finishing the "
                        r"sync \(killed, or the machine stopped\)\n", result.stdout), result.stdout
    [run] = sync_runs(store_url)
    assert run["status"] == "failed"


def test_status_of_a_connector_never_synced(isolated: Path, tmp_path: Path):
    config = isolated / "crmkpi.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 's.db'}",
                                      "connectors": {"crm": {"type": "files", "path": str(isolated)}}}))
    result = CliRunner().invoke(cli, ["sync", "--config", str(config), "--status"])
    assert (result.exit_code, result.stdout) == (0, "crm: never synced\n")


# -- PostgreSQL sessions -----------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_sessions_have_lock_and_idle_transaction_timeouts_and_no_jit_the_url_can_override(postgres_url: str):
    def settings(url: str) -> tuple:
        store = Store(url)
        with store.engine.connect() as conn:
            found = tuple(conn.execute(text(f"SHOW {name}")).scalar()
                          for name in ("lock_timeout", "idle_in_transaction_session_timeout", "jit"))
        store.engine.dispose()
        return found

    assert settings(postgres_url) == ("1min", "10min", "off")
    assert settings(postgres_url + "?options=-c%20lock_timeout%3D5s%20-c%20jit%3Don") == ("5s", "10min", "on")


@pytest.mark.postgres
def test_a_lock_held_elsewhere_fails_the_sync_with_one_line_after_the_lock_timeout(isolated: Path,
                                                                                 postgres_url: str, sample: Path):
    Store(postgres_url).engine.dispose()
    config = isolated / "crmkpi.yaml"
    config.write_text(yaml.safe_dump({"store": postgres_url + "?options=-c%20lock_timeout%3D1s",
                                      "connectors": {"crm": {"type": "files", "path": str(sample)}}}))
    blocker = create_engine(postgres_url)
    with blocker.begin() as conn:
        conn.execute(text("LOCK TABLE deals IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        result = sync(config, timeout=60)
        assert time.monotonic() - started < 30
    blocker.dispose()
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert re.fullmatch(r"Error: store postgresql\+psycopg://postgres@[^ ]+: writing deals: canceling statement due "
                        r"to lock timeout", line), line
