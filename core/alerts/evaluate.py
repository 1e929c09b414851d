"""Evaluating the config's alert rules now: compute, judge each cell, move its state, send what is due.

Messages go through ``send(channel, key, message)``; the service's is :func:`channel_sender`, the
notification deliveries (recorded under their key before they are sent, so a second evaluator or a run after
a crash never sends one twice). A failing channel is counted, never raised: the job carries on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Callable

from ..deliveries import Channel, DeliveryKey, deliver
from ..engine import Settings
from ..metrics import Metric
from ..notify import Message
from ..store import Store
from ..targets import Target
from . import conditions, state, windows
from .conditions import Verdict
from .rules import AlertRule

#: Sends ``message`` to the channel named, under ``key``; returns the error, or None when it was delivered
#: (or had been already).
Send = Callable[[str, DeliveryKey, Message], str | None]


@dataclass(frozen=True)
class CellReport:
    """One rule × segment cell: what was judged and what happened."""

    rule: str
    segment: str
    period: str
    verdict: Verdict
    state: str
    notice: str | None = None


@dataclass
class AlertOutcome:
    cells: list[CellReport] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def count(self, **match: Any) -> int:
        return sum(all(getattr(c, k) == v for k, v in match.items()) for c in self.cells)

    def summary(self) -> dict[str, Any]:
        """As the job run records it."""
        return {"evaluated": sum(c.verdict.state != "not_evaluated" for c in self.cells),
                "firing": self.count(state="firing"), "fired": self.count(notice="firing"),
                "resolved": self.count(notice="resolved"), "repeated": self.count(notice="repeat"),
                "not_evaluated": sum(c.verdict.state == "not_evaluated" for c in self.cells),
                "failures": self.failures}

    def line(self) -> str:
        s = self.summary()
        failed = f", {len(s['failures'])} deliveries failed" if s["failures"] else ""
        return (f"alerts: {s['evaluated']} cells evaluated, {s['firing']} firing ({s['fired']} new, {s['repeated']} "
                f"repeated), {s['resolved']} resolved, {s['not_evaluated']} not evaluated{failed}")


def channel_sender(store: Store, channels: dict[str, Channel]) -> Send:
    def send(channel: str, key: DeliveryKey, message: Message) -> str | None:
        delivery = deliver(store, channels[channel], key, message)
        return None if delivery.ok else delivery.error or delivery.status
    return send


@dataclass
class Evaluator:
    store: Store
    rules: dict[str, AlertRule]
    metrics: dict[str, Metric]
    #: The config's params per metric, under each rule's own.
    params: dict[str, dict[str, Any]]
    settings: Settings
    targets: list[Target]
    send: Send
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def evaluate(self, today: date, names: list[str] | None = None, dry_run: bool = False) -> AlertOutcome:
        """Evaluate the rules (``names``, or all) as of the reporting day ``today``. ``dry_run``: judge and
        report, but neither write a state nor send."""
        rules = {n: r for n, r in self.rules.items() if names is None or n in names}
        needs = {name: self._need(rule, today) for name, rule in rules.items()}
        needs = windows.shared(needs)
        requests: dict[windows.Request, set[str]] = {}
        for found in needs.values():
            if found.request is not None:
                requests.setdefault(found.request, set()).update(found.compare)
        settings = replace(self.settings, today=today)
        computed = windows.compute(self.store.engine, self.metrics, requests, settings, self.targets)
        states = state.read(self.store, list(rules))
        outcome = AlertOutcome()
        now = self.clock()
        for name, rule in rules.items():
            found = needs[name]
            labels = computed[found.request].labels if found.request in computed else {}
            for segment, verdict in self._verdicts(rule, found, computed.get(found.request)).items():
                old = states.get((name, segment))
                moved = state.step(old or state.CellState(name, segment, since=now), verdict, found.latest.label,
                                   now, timedelta(seconds=rule.repeat_seconds) if rule.repeat_seconds else None)
                if not dry_run:
                    if moved.notice:
                        self._notify(rule, name, segment, labels.get(segment, segment), moved, outcome)
                    state.save(self.store, old, moved.new)
                outcome.cells.append(CellReport(name, segment, found.latest.label, verdict, moved.new.state,
                                                moved.notice))
        return outcome

    def _need(self, rule: AlertRule, today: date) -> windows.Need:
        metric = self.metrics[rule.metric]
        params = {**self.params.get(rule.metric, {}), **rule.params}
        return windows.need(rule, metric, metric.resolve_params(params), self.settings.calendar, today,
                            self.targets)

    def _verdicts(self, rule: AlertRule, found: windows.Need,
                  computed: windows.Computed | None) -> dict[str, Verdict]:
        if found.why_not or computed is None or computed.error:
            return {_fixed(rule): Verdict("not_evaluated", found.why_not or (computed.error if computed else "")
                                          or "not computed")}
        return {segment: judge(rule, self.metrics[rule.metric], rows, found.latest.label)
                for segment, rows in windows.cells(rule, computed).items()}

    def _notify(self, rule: AlertRule, name: str, segment: str, label: str, moved: state.Step,
                outcome: AlertOutcome) -> None:
        message = _message(rule, name, segment, label, moved)
        for channel in rule.channels:
            try:
                error = self.send(channel, DeliveryKey(name, moved.key or "", segment), message)
            except Exception as exc:  # a sender must not stop the other cells, nor the job
                error = f"{type(exc).__name__}: {exc}"
            if error:
                outcome.failures.append(f"{name} {segment or '(all)'} → {channel}: {error}")


def _fixed(rule: AlertRule) -> str:
    """The cell a rule that computed nothing reports under: its one segment, else the unsplit one."""
    return windows.segment_key(rule.segment) if isinstance(rule.segment, dict) else \
        (f"{rule.segment}=*" if rule.segment else "")


def judge(rule: AlertRule, metric: Metric, rows: list[dict[str, Any]], period: str) -> Verdict:
    """One cell's verdict from its rows (oldest first; the last is the period judged)."""
    if not rows:
        return Verdict("not_evaluated", f"no result for {period}")
    latest = rows[-1]
    stopped = conditions.gate(latest, rule.min_volume)
    if stopped:
        return stopped
    value = latest["value"]
    if rule.threshold:
        return conditions.threshold(value, rule.threshold.above, rule.threshold.below)
    if rule.change:
        before = latest.get(rule.change.against) or {}
        label = f"{windows_title(rule.change.against)} ({before.get('period', '?')})"
        return conditions.change(value, before.get("value"), label, rule.change.worse_by, metric.direction)
    if rule.target:
        return conditions.target_status(value, latest.get("target"))
    assert rule.anomaly is not None
    history = [None if r["error"] else r["value"] for r in rows]
    return conditions.anomaly(history, rule.anomaly.periods, rule.anomaly.mads, rule.anomaly.min_spread)


def windows_title(kind: str) -> str:
    return {"previous": "the previous period", "year_ago": "a year ago"}[kind]


def _message(rule: AlertRule, name: str, segment: str, label: str, moved: state.Step) -> Message:
    """The cell's notice, its segment by name (``owner=Ann Lee``); the ids it stands for (``owner=U002``), which
    the state and the delivery key use, are a field when they differ."""
    new = moved.new
    head = {"firing": "FIRING", "resolved": "RESOLVED", "repeat": "STILL FIRING"}[moved.notice or "firing"]
    where = f" ({label})" if label else ""
    fields = {"occurrence": new.occurrence or "", "since": f"{new.since:%Y-%m-%d %H:%M} UTC" if new.since else ""}
    if label != segment:
        fields["segment ids"] = segment
    return Message(title=f"[{head}] {name}: {rule.metric}{where}, {new.last_period}",
                   text=f"{rule.metric}{where} for {new.last_period}: {new.last_reason}",
                   rule=name, metric=rule.metric, segment=label or None,
                   value=None if new.last_value is None else conditions.fmt(new.last_value), fields=fields)


def evaluator(store: Store, registry: Any, config: Any, settings: Settings, targets: list[Target],
              send: Send | None = None) -> Evaluator:
    """The config's rules, sending through its channels (or ``send``)."""
    return Evaluator(store, config.alerts, registry.metrics, config.metrics or {}, settings, targets,
                     send or channel_sender(store, config.channels))


def tell_job_failure(config: Any, job: str, occurrence: str, error: str, send: Send) -> list[str]:
    """A failed run of schedule ``job`` to its ``on_failure`` channels, under the delivery key (``job:<name>``,
    the run's occurrence, "", channel): a run is claimed once, so it is told once. Returns the failed sends."""
    message = Message(title=f"[JOB FAILED] {job} {occurrence}", text=f"Job {job} ({occurrence}) failed: {error}",
                      rule=f"job:{job}", fields={"occurrence": occurrence})
    failures = []
    for channel in config.schedules[job].on_failure:
        try:
            problem = send(channel, DeliveryKey(f"job:{job}", occurrence), message)
        except Exception as exc:  # the run is recorded already; a channel must not undo that
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            failures.append(f"{channel}: {problem}")
    return failures
