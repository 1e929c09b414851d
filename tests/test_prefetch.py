"""The row worker: same rows and errors as in-process, and no process left behind."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from crmkpi import prefetch as prefetch_module
from crmkpi.cli import cli
from crmkpi.errors import SourceDataError
from crmkpi.normalize import FieldError
from crmkpi.prefetch import CHUNK_ROWS, PREFETCH_ENV, prefetch
from processes import processes


def children() -> list[tuple[int, str]]:
    """(pid, state) of this process's child processes, zombies included."""
    return [(p.pid, p.state) for p in processes() if p.ppid == os.getpid()]


@pytest.fixture(params=["forked", "in-process"])
def mode(request, monkeypatch) -> str:
    if request.param == "in-process":
        monkeypatch.setenv(PREFETCH_ENV, "0")
    else:
        assert prefetch_module.available(), "fork is available on the platforms the tests run on"
    return request.param


@pytest.fixture(autouse=True)
def no_children_left():
    assert children() == []
    yield
    assert children() == []


class Producer:
    """Yields ``count`` rows then optionally raises; counts in ``stats`` like a stream does."""

    def __init__(self, count: int, fail: BaseException | None = None, row=None) -> None:
        self.count, self.fail, self.row = count, fail, row or (lambda i: (f"id{i}", i, i * 1.5, None, i % 2 == 0))
        self.stats = {"made": 0, "pid": None}
        self.absorbed = []

    def __call__(self):
        self.stats["pid"] = os.getpid()
        for i in range(self.count):
            self.stats["made"] += 1
            yield self.row(i)
        if self.fail is not None:
            raise self.fail

    def run(self) -> list[list]:
        return list(prefetch(self, finish=lambda: dict(self.stats), absorb=self.absorbed.append))


def test_rows_come_back_in_order_in_chunks_with_the_producers_counters(mode):
    producer = Producer(CHUNK_ROWS * 3 + 7)
    batches = producer.run()
    rows = [row for batch in batches for row in batch]
    assert rows == [(f"id{i}", i, i * 1.5, None, i % 2 == 0) for i in range(CHUNK_ROWS * 3 + 7)]
    assert [len(b) for b in batches] == [CHUNK_ROWS] * 3 + [7]
    [stats] = producer.absorbed
    assert stats["made"] == CHUNK_ROWS * 3 + 7
    # the worker really is another process (and the in-process path really is not)
    assert (stats["pid"] != os.getpid()) == (mode == "forked")


def test_rows_of_other_objects_arrive_equal(mode):
    stamp = datetime(2024, 1, 1, 12, tzinfo=UTC)
    producer = Producer(CHUNK_ROWS + 1, row=lambda i: (str(i), stamp, {"k": [i]}))
    rows = [row for batch in producer.run() for row in batch]
    assert rows == [(str(i), stamp, {"k": [i]}) for i in range(CHUNK_ROWS + 1)]
    assert rows[0][1].tzinfo is not None


def test_no_rows():
    producer = Producer(0)
    assert producer.run() == [] and producer.absorbed[0]["made"] == 0


def test_forked_and_in_process_paths_give_identical_batches(monkeypatch):
    results = {}
    for setting in ("1", "0"):
        monkeypatch.setenv(PREFETCH_ENV, setting)
        producer = Producer(1000, row=lambda i: (f"r{i}", i / 7, None, "é" * (i % 3), datetime(2024, 1, 1 + i % 28)))
        results[setting] = (producer.run(), {k: v for k, v in producer.absorbed[0].items() if k != "pid"})
    assert results["1"] == results["0"]


@pytest.mark.parametrize("exc", [ValueError("bad value at row 300"), SourceDataError("deals.csv: line 301: boom"),
                                 FieldError("amount", "not a valid float: 'x'"), KeyboardInterrupt()])
def test_an_error_in_the_producer_is_raised_in_the_caller_after_the_rows_before_it(mode, exc):
    producer = Producer(300, fail=exc)
    received = []
    with pytest.raises(type(exc)) as info:
        for batch in prefetch(producer, finish=lambda: dict(producer.stats), absorb=producer.absorbed.append):
            received.extend(batch)
    assert type(info.value) is type(exc) and str(info.value) == str(exc)
    if isinstance(exc, FieldError):
        assert info.value.column == "amount"
    assert [r[0] for r in received] == [f"id{i}" for i in range(300)]
    assert producer.absorbed[-1]["made"] == 300  # counters still reach the caller


class Unpicklable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TwoArguments(Exception):  # pickles, but cannot be unpickled
    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


@pytest.mark.parametrize("exc, message", [(Unpicklable("source went away"), "Unpicklable: source went away"),
                                          (TwoArguments("page 3", "timeout"), "TwoArguments: page 3: timeout")])
def test_an_error_that_cannot_cross_the_pipe_arrives_as_a_runtime_error_with_its_message(exc, message):
    producer = Producer(3, fail=exc)
    with pytest.raises(RuntimeError) as info:
        producer.run()
    assert str(info.value) == message
    assert producer.absorbed[-1]["made"] == 3


def test_a_worker_that_dies_is_reported_with_its_exit_code():
    def produce():
        yield ("a",)
        os._exit(3)

    for _ in range(5):  # the pipe closes a moment before the exit code is known
        with pytest.raises(RuntimeError, match=r"^row worker exited unexpectedly \(exit code 3\)$"):
            list(prefetch(produce, finish=lambda: None, absorb=lambda _: None))


def test_a_consumer_that_stops_early_stops_the_worker():
    producer = Producer(100_000)
    batches = prefetch(producer, finish=lambda: None, absorb=lambda _: None)
    first = next(batches)
    assert len(first) == CHUNK_ROWS and len(children()) == 1
    batches.close()
    assert children() == []


def test_a_failing_worker_does_not_outlive_the_failure():
    producer = Producer(CHUNK_ROWS * 50, fail=ValueError("late failure"))
    batches = prefetch(producer, finish=lambda: None, absorb=lambda _: None)
    with pytest.raises(ValueError, match="late failure") as info:
        for _ in batches:
            pass
    assert children() == []  # while the error (and its traceback) is still alive
    assert info.value is not None


# -- through the files connector -------------------------------------------------------------


def store_rows(url: str) -> dict[str, list]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
                    for t in ("deals", "accounts", "orders")}
    finally:
        engine.dispose()


def test_the_files_connector_loads_the_same_store_with_and_without_the_worker(isolated, tmp_path, monkeypatch):
    data = isolated / "data"
    data.mkdir()
    deals = ["id,amount,is_won,is_closed,created_at,stage,note"]
    for i in range(1500):
        amount = "oops" if i % 250 == 7 else f"{i}.5"
        won = "true" if i % 3 else "false"
        deals.append(f"d{i:04},{amount},{won},{won},2024-01-01T{i % 24:02}:00:00+01:00,s{i % 5},{'n' * (i % 2)}")
    (data / "deals.csv").write_text("\n".join(deals) + "\n")
    accounts = "".join(f'{{"id": "a{i:03}", "name": "A{i}", "x": {i}}}\n' for i in range(600))
    (data / "accounts.jsonl").write_text(accounts)
    (isolated / "crmkpi.yaml").write_text(yaml.safe_dump({"connectors": {"f": {
        "type": "files", "path": "data", "on_error": "skip", "timezone": "Europe/Berlin"}}}))

    outputs, stores = {}, {}
    for setting in ("1", "0"):
        monkeypatch.setenv(PREFETCH_ENV, setting)
        url = f"sqlite:///{tmp_path / f'prefetch-{setting}.db'}"
        config = yaml.safe_load((isolated / "crmkpi.yaml").read_text())
        config["store"] = url
        (isolated / "crmkpi.yaml").write_text(yaml.safe_dump(config))
        result = CliRunner().invoke(cli, ["sync", "--config", str(isolated / "crmkpi.yaml")])
        assert result.exit_code == 0, result.output
        outputs[setting] = result.stderr.replace(url, "STORE")
        # synced_at (2nd column) is the time of each sync; everything else must match
        stores[setting] = {t: [r[:5] + r[6:] for r in rows] for t, rows in store_rows(url).items()}
    assert outputs["1"] == outputs["0"]
    assert "f/deals.csv: 1500 read, 1494 written, 6 skipped\n" in outputs["1"]
    assert "  skipped: deals.csv: line 9: column 'amount': not a valid float: 'oops'\n" in outputs["1"]
    assert "f/accounts.jsonl: 600 read, 600 written\n" in outputs["1"]
    assert stores["1"] == stores["0"]
    assert len(stores["1"]["deals"]) == 1494 and len(stores["1"]["accounts"]) == 600


def test_a_bad_row_found_by_the_worker_fails_the_sync_with_the_same_message(isolated, tmp_path, monkeypatch):
    data = isolated / "data"
    data.mkdir()
    rows = [f"a{i},{i}" for i in range(2000)]
    rows[1700] = "a1700,1.7.0"
    (data / "orders.csv").write_text("id,amount\n" + "\n".join(rows) + "\n")
    messages = {}
    for setting in ("1", "0"):
        monkeypatch.setenv(PREFETCH_ENV, setting)
        url = f"sqlite:///{tmp_path / f'fail-{setting}.db'}"
        (isolated / "crmkpi.yaml").write_text(yaml.safe_dump({"store": url, "connectors": {
            "files": {"type": "files", "path": "data"}}}))
        result = CliRunner().invoke(cli, ["sync", "--config", str(isolated / "crmkpi.yaml")])
        assert result.exit_code == 1
        messages[setting] = result.stderr
        assert store_rows(url)["orders"] == []  # rows the worker sent before the error are rolled back
        assert children() == []
    expected = "Error: orders.csv: line 1702: column 'amount': not a valid float: '1.7.0'\n"
    assert messages["1"] == messages["0"] == expected
