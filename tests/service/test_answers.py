"""Answers the API keeps between requests: computed once, dropped when the store changes, never a
failure kept, a bounded number."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient

from conftest import KpiProject
from crmkpi.cli import App
from crmkpi.service.answers import Answers
from crmkpi.service.api import create_app
from crmkpi.service.commands import job
from crmkpi.service.lifecycle import Heartbeat
from crmkpi.service.scheduler import Scheduler

TOKEN = "tok-answers-not-a-real-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEAL = {"created_at": "2024-01-05T00:00:00Z", "closed_at": "2024-01-20T00:00:00Z", "is_closed": True,
        "amount": 1000, "owner_id": "u1"}
SERIES = "/api/v1/metrics/win_rate/series?period=2024-01"


@pytest.fixture
def project(kpi_any_store: KpiProject, monkeypatch) -> KpiProject:
    monkeypatch.setenv("CRMKPI_TEST_TOKEN", TOKEN)
    kpi_any_store.write("deals", [{**DEAL, "id": "d1", "is_won": True}, {**DEAL, "id": "d2", "is_won": False}])
    kpi_any_store.configure("reporting: {default_period: 2024-01}\nservice: {api_token: '${CRMKPI_TEST_TOKEN}'}\n")
    kpi_any_store.sync()
    return kpi_any_store


@pytest.fixture
def client(project: KpiProject):
    app = App(debug=False)
    config = app.config(str(project.config))
    scheduler = Scheduler(job(app, config))
    with TestClient(create_app(scheduler.job, scheduler, Heartbeat(15, last_tick=datetime.now(UTC)), TOKEN,
                               recheck=0.05)) as made:
        yield made
    scheduler.job.store.engine.dispose()


def value_within(client: TestClient, path: str, expected, seconds: float = 5.0) -> list:
    """The values ``path`` answers, polled until they are ``expected`` (a kept answer is replaced once the
    next read of the store's version sees the change)."""
    deadline = time.monotonic() + seconds
    while True:
        values = [row["value"] for row in client.get(path, headers=AUTH).json()]
        if values == expected or time.monotonic() > deadline:
            return values
        time.sleep(0.02)


def test_a_sync_replaces_the_kept_series(project: KpiProject, client: TestClient):
    first = client.get(SERIES, headers=AUTH).json()
    assert [r["value"] for r in first] == [0.5]
    assert client.get(SERIES, headers=AUTH).json() == first  # kept: same run id, same computed_at
    project.write("deals", [{**DEAL, "id": "d1", "is_won": True}, {**DEAL, "id": "d2", "is_won": True}])
    project.sync()
    assert value_within(client, SERIES, [1.0]) == [1.0]


def test_a_saved_run_replaces_the_kept_latest_values(project: KpiProject, client: TestClient):
    project.run("win_rate", "--period", "2024-01")
    assert value_within(client, "/api/v1/metrics/win_rate/latest", [0.5]) == [0.5]
    kept = client.get("/api/v1/metrics/win_rate/latest", headers=AUTH).json()
    project.run("win_rate", "--period", "2024-Q1", "--grain", "month")
    assert value_within(client, "/api/v1/metrics/win_rate/latest", [0.5, None, None]) == [0.5, None, None]
    assert client.get("/api/v1/metrics/win_rate/latest", headers=AUTH).json()[0]["run_id"] != kept[0]["run_id"]


def test_a_store_that_does_not_answer_is_a_503_naming_it(kpi: KpiProject, monkeypatch):
    monkeypatch.setenv("CRMKPI_TEST_TOKEN", TOKEN)
    kpi.configure("service: {api_token: '${CRMKPI_TEST_TOKEN}'}\n")
    app = App(debug=False)
    config = app.config(str(kpi.config))
    scheduler = Scheduler(job(app, config))
    client = TestClient(create_app(scheduler.job, scheduler, Heartbeat(15), TOKEN))
    scheduler.job.store.engine.dispose()
    for file in kpi.folder.parent.glob("kpi.db*"):  # a disk failure, or a copy over it
        file.write_bytes(b"not a database" * 512)
    answer = client.get("/api/v1/metrics/win_rate/latest", headers=AUTH)
    assert answer.status_code == 503
    assert answer.json() == {"detail": "the store did not answer: file is not a database"}


class FakeStore:
    """Only what the version read needs is replaced, by the ``version`` patched in below."""


@pytest.fixture
def versions(monkeypatch) -> list:
    current = [(1, None)]
    monkeypatch.setattr("crmkpi.service.answers.store_version", lambda store: current[0])
    return current


def test_concurrent_requests_compute_once(versions):
    calls, release = [], threading.Event()

    def compute():
        calls.append(1)
        release.wait(5)
        return {"value": 0.5}

    async def many():
        answers = Answers(FakeStore(), date.today)
        waiting = [asyncio.create_task(answers.get("k", compute)) for _ in range(20)]
        await asyncio.sleep(0.1)
        release.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(many()) == [b'{"value":0.5}'] * 20
    assert calls == [1]


def test_a_failure_reaches_every_waiter_and_is_not_kept(versions):
    calls = []

    def compute():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.1)
            raise ValueError("bad dimension")
        return [1]

    async def twice():
        answers = Answers(FakeStore(), date.today)
        first = await asyncio.gather(*(answers.get("k", compute) for _ in range(5)), return_exceptions=True)
        return first, await answers.get("k", compute)

    first, second = asyncio.run(twice())
    assert [str(e) for e in first] == ["bad dimension"] * 5
    assert second == b"[1]" and len(calls) == 2


def test_answers_are_kept_for_a_version_and_a_day_and_are_bounded(versions):
    days = [date(2026, 12, 5)]
    calls = []

    def compute(name):
        calls.append(name)
        return name

    async def scenario():
        answers = Answers(FakeStore(), lambda: days[0], recheck=0, capacity=2)
        assert await answers.get("a", lambda: compute("a")) == b'"a"'
        await answers.get("a", lambda: compute("a"))
        assert calls == ["a"]
        versions[0] = (2, None)  # a run was saved: the next request still gets the kept answer while the
        await answers.get("a", lambda: compute("a"))  # version is read, the one after gets a new one
        await asyncio.sleep(0.01)
        await answers.get("a", lambda: compute("a"))
        assert calls == ["a", "a"]
        days[0] = date(2026, 12, 6)  # midnight in the reporting zone: "last-7-days" moved
        await answers.get("a", lambda: compute("a"))
        await asyncio.sleep(0.01)
        await answers.get("a", lambda: compute("a"))
        assert calls == ["a", "a", "a"]
        for name in "bc":  # capacity 2: "a" is dropped
            await answers.get(name, lambda name=name: compute(name))
        await answers.get("a", lambda: compute("a"))
        assert calls == ["a", "a", "a", "b", "c", "a"]

    asyncio.run(scenario())
