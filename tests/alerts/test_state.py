"""Alert states: the ok → firing → ok machine, its table, and evaluators that send each message once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import BaseModel

from conftest import KpiProject
from crmkpi.alerts import state
from crmkpi.alerts.conditions import Verdict
from crmkpi.alerts.evaluate import Evaluator, channel_sender, evaluator
from crmkpi.alerts.state import CellState, step
from crmkpi.cli import App, settings_of
from crmkpi.targets import of_config
from crmkpi.deliveries import Channel
from crmkpi.notify import Message, NotifierType
from crmkpi.store import Store

T0 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
FIRING = Verdict("firing", "0.25 is below 0.3", 0.25)
OK = Verdict("ok", "0.35 is ≥ 0.3", 0.35)
SKIPPED = Verdict("not_evaluated", "volume 12 below min_volume 30", 0.2)


def walk(verdicts: list[Verdict], every: timedelta = timedelta(hours=1),
         repeat: timedelta | None = None) -> list[tuple[str, str | None, str | None]]:
    """The (state, notice, key) after each verdict, evaluated ``every`` apart."""
    cell, seen = CellState("low", "team=na", since=T0), []
    for n, verdict in enumerate(verdicts):
        moved = step(cell, verdict, "2025-12", T0 + n * every, repeat)
        cell = moved.new
        seen.append((cell.state, moved.notice, moved.key))
    return seen


def test_fires_once_and_stays_quiet_while_firing():
    assert walk([OK, FIRING, FIRING, FIRING]) == [
        ("ok", None, None), ("firing", "firing", "firing-1"), ("firing", None, None), ("firing", None, None)]


def test_resolves_and_a_relapse_fires_again_under_a_new_occurrence():
    assert walk([FIRING, OK, OK, FIRING]) == [
        ("firing", "firing", "firing-1"), ("ok", "resolved", "firing-1-resolved"), ("ok", None, None),
        ("firing", "firing", "firing-2")]


def test_repeat_every_sends_again_once_it_has_passed():
    seen = walk([FIRING] * 6, every=timedelta(hours=10), repeat=timedelta(days=1))
    assert [(notice, key) for _, notice, key in seen] == [
        ("firing", "firing-1"), (None, None), (None, None), ("repeat", "firing-1-repeat-1"), (None, None),
        (None, None)]


def test_not_evaluated_keeps_the_state_and_records_why():
    cell = step(CellState("low", "team=na", since=T0), FIRING, "2025-12", T0, None).new
    moved = step(cell, SKIPPED, "2026-01", T0 + timedelta(days=31), None)
    assert (moved.new.state, moved.new.occurrence, moved.notice) == ("firing", "firing-1", None)
    assert moved.new.last_reason == "not evaluated: volume 12 below min_volume 30"
    assert moved.new.last_period == "2026-01"


def test_states_are_saved_compare_and_set(store: Store):
    fresh = CellState("low", "team=na", since=T0)
    fired = step(fresh, FIRING, "2025-12", T0, None).new
    assert state.save(store, None, fired)
    assert not state.save(store, None, fired)  # a second evaluator inserting the same cell loses
    resolved = step(fired, OK, "2025-12", T0 + timedelta(hours=1), None).new
    assert state.save(store, fired, resolved)
    assert not state.save(store, fired, resolved)  # it was read as firing, and is no longer
    [(key, saved)] = state.read(store).items()
    assert key == ("low", "team=na")
    assert (saved.state, saved.occurrence, saved.firings, saved.last_value) == ("ok", "firing-1", 1, 0.35)
    assert saved.since == T0 + timedelta(hours=1) and saved.last_notified_at == T0 + timedelta(hours=1)


# -- evaluators on one store ---------------------------------------------------------------------

DEALS = [  # January 2024: 1 won of 4 closed → win rate 0.25
    {"id": f"d{n}", "created_at": "2023-12-01T00:00:00Z", "closed_at": f"2024-01-{10 + n}T00:00:00Z",
     "is_closed": True, "is_won": n == 0, "amount": 100} for n in range(4)]
RULES = """
channels:
  ops: {type: webhook, url: "http://127.0.0.1:9/never-called"}
alerts:
  low-win-rate:
    metric: win_rate
    threshold: {below: 0.3}
    channels: [ops]
"""


class NoSettings(BaseModel):
    pass


class Recorder:
    """A notifier type that records what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def channel(self) -> Channel:
        return Channel("ops", NotifierType("recorder", "records", NoSettings, lambda m, s: self.sent.append(m)),
                       NoSettings())


@pytest.fixture
def project(kpi_any_store: KpiProject) -> KpiProject:
    kpi_any_store.write("deals", DEALS)
    kpi_any_store.configure(RULES)
    kpi_any_store.sync()
    return kpi_any_store


def make_evaluator(project: KpiProject, recorder: Recorder) -> Evaluator:
    app = App(debug=False)
    config = app.config(str(project.config))
    settings = settings_of(config)
    store = app.store(config)
    return evaluator(store, app.registry, config, settings, of_config(config, app.registry, settings),
                     channel_sender(store, {"ops": recorder.channel()}))


AS_OF = date(2024, 2, 10)


def test_a_second_evaluator_sends_nothing_again(project: KpiProject):
    recorder = Recorder()
    first = make_evaluator(project, recorder).evaluate(AS_OF)
    second = make_evaluator(project, recorder).evaluate(AS_OF)
    assert [(c.segment, c.period, c.state, c.notice) for c in first.cells] == [("", "2024-01", "firing", "firing")]
    assert [c.notice for c in second.cells] == [None]
    assert [(m.title, m.id) for m in recorder.sent] == [("[FIRING] low-win-rate: win_rate, 2024-01",
                                                         "low-win-rate/firing-1//ops")]


def test_two_evaluators_that_read_the_same_state_send_once(project: KpiProject, monkeypatch):
    """Both read 'no state' before either wrote: both decide to fire firing-1, the delivery key lets one send."""
    recorder = Recorder()
    a, b = make_evaluator(project, recorder), make_evaluator(project, recorder)
    before = state.read(a.store)
    monkeypatch.setattr(state, "read", lambda store, rules=None: before)
    assert [c.notice for c in a.evaluate(AS_OF).cells] == ["firing"]
    assert [c.notice for c in b.evaluate(AS_OF).cells] == ["firing"]
    assert len(recorder.sent) == 1
    monkeypatch.undo()
    [saved] = state.read(a.store).values()
    assert (saved.state, saved.occurrence, saved.firings) == ("firing", "firing-1", 1)


def test_a_crash_between_sending_and_saving_does_not_send_twice(project: KpiProject, monkeypatch):
    recorder = Recorder()
    save = state.save

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(state, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        make_evaluator(project, recorder).evaluate(AS_OF)
    monkeypatch.setattr(state, "save", save)
    after = make_evaluator(project, recorder).evaluate(AS_OF)
    assert [c.state for c in after.cells] == ["firing"]
    assert len(recorder.sent) == 1


def test_dry_run_neither_saves_nor_sends(project: KpiProject):
    recorder = Recorder()
    checked = make_evaluator(project, recorder).evaluate(AS_OF, dry_run=True)
    assert [(c.state, c.notice) for c in checked.cells] == [("firing", "firing")]
    assert recorder.sent == [] and state.read(make_evaluator(project, recorder).store) == {}


def test_a_failing_channel_is_counted_not_raised(project: KpiProject):
    def refuse(message, settings):
        raise RuntimeError("connection refused")

    app = App(debug=False)
    config = app.config(str(project.config))
    settings = settings_of(config)
    store = app.store(config)
    broken = Channel("ops", NotifierType("broken", "fails", NoSettings, refuse), NoSettings())
    from crmkpi.deliveries import Retry, deliver

    def send(channel, key, message):
        delivery = deliver(store, broken, key, message, retry=Retry(attempts=1))
        return None if delivery.ok else delivery.error

    checked = evaluator(store, app.registry, config, settings, [], send).evaluate(AS_OF)
    assert checked.summary()["failures"] == ["low-win-rate (all) → ops: RuntimeError: connection refused"]
    assert [c.state for c in checked.cells] == ["firing"]
