"""Running a schedule's steps (sync, then metrics, then alerts) and recording each run in ``job_runs``.

A run syncs the schedule's connectors, then computes its metrics for its period relative to the
day the run is for, and saves the results, then evaluates its alert rules as of that day. A failed
sync stops the run before any metric is computed: KPIs over a half-synced store would look current
and be wrong. A failed run is told to the schedule's ``on_failure`` channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Callable

from sqlalchemy import select

from ..config import Config, Schedule
from ..deliveries import Delivery, DeliveryKey, Retry, deliver
from ..engine import COMPARISONS, Run, Settings, failure_summary, run_metrics, save_results
from ..errors import CrmkpiError
from ..models import JobRun
from ..notify import Message
from ..plugins import Registry
from ..store import Store
from ..targets import Target
from . import leases


@dataclass
class JobOutcome:
    """What one run of a schedule did."""

    run_id: int
    error: str | None = None
    rows_synced: int = 0
    results_saved: int = 0
    #: What the alerts step did (:meth:`AlertOutcome.summary`); None: the schedule has none.
    alerts: dict | None = None
    #: The notifications the run delivered (:meth:`Job.notify`); a failed one does not fail the run.
    notifications: list[Delivery] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "failed" if self.error else "success"

    @property
    def notification_errors(self) -> list[str]:
        """``channel: error`` for each notification that was not sent (failed, or its outcome unknown)."""
        return [f"{d.channel}: {d.error}" for d in self.notifications if not d.ok]


@dataclass
class Job:
    """Everything a run of the config's schedules needs."""

    store: Store
    registry: Registry
    config: Config
    settings: Settings
    targets: list[Target]
    #: How long a claimed run stays claimed without a renewal (``crmkpi serve --lease``).
    lease: timedelta = leases.LEASE
    #: How a failed notification is retried.
    retry: Retry = Retry()

    def run_now(self, name: str, say: Callable[[str], None] = lambda line: None) -> JobOutcome:
        """Run schedule ``name`` by hand, for today; refused while another run of it holds its lease."""
        now = datetime.now(UTC)
        leases.expire(self.store, now)
        run_id = leases.claim(self.store, name, now, lease=self.lease)
        if run_id is None:
            raise CrmkpiError(f"job {name} is running already (see `crmkpi jobs history {name}`)")
        return self.run(name, run_id, self.settings.today, say)

    def run(self, name: str, run_id: int, today: date, say: Callable[[str], None] = lambda line: None) -> JobOutcome:
        """Run claimed run ``run_id`` of schedule ``name`` for the reporting day ``today``, holding its lease;
        the outcome is recorded whatever happens."""
        outcome = JobOutcome(run_id)
        try:
            with leases.holding(self.store, run_id, self.lease):
                self._steps(self.config.schedules[name], today, outcome, say)
        except CrmkpiError as exc:
            outcome.error = str(exc)
        except BaseException as exc:  # Ctrl-C, SIGTERM, a bug: recorded, then on its way
            outcome.error = f"interrupted: {type(exc).__name__}: {exc}".rstrip(": ")
            self._finish(outcome)
            raise
        self._finish(outcome)
        return outcome

    def notify(self, outcome: JobOutcome, channel: str, key: DeliveryKey, message: Message) -> Delivery:
        """Deliver ``message`` to the config's ``channel`` once per ``key`` (what alert rules call), listed in the
        run's ``outcome``; a failing channel never raises nor fails the run (``/health`` shows it)."""
        delivery = deliver(self.store, self.config.channels[channel], key, message, retry=self.retry)
        outcome.notifications.append(delivery)
        return delivery

    def _steps(self, schedule: Schedule, today: date, outcome: JobOutcome, say: Callable[[str], None]) -> None:
        from ..sync import sync_connector

        config = self.config
        for connector in schedule.sync:
            try:
                report = sync_connector(self.store, self.registry, connector, config.connectors[connector],
                                        config.base_dir)
            except CrmkpiError as exc:
                skipped = "; metrics not computed" if schedule.metrics else ""
                raise CrmkpiError(f"sync of {connector} failed: {exc}{skipped}") from None
            outcome.rows_synced += report.written
            say(f"{connector}: {report.written} rows changed")
        if schedule.metrics:
            self._compute(schedule, today, outcome, say)
        if schedule.alerts:
            self._alerts(schedule, today, outcome, say)

    def _compute(self, schedule: Schedule, today: date, outcome: JobOutcome, say: Callable[[str], None]) -> None:
        period = self.settings.calendar.parse(schedule.period, today=today)
        metrics = [self.registry.metric(metric_id) for metric_id in schedule.metrics]
        params = {m.id: {**(self.config.metrics or {}).get(m.id, {}), **schedule.params.get(m.id, {})}
                  for m in metrics}
        compare = COMPARISONS if schedule.compare == "both" else (schedule.compare,) if schedule.compare else ()
        request = Run(metrics, period, params, schedule.grain, tuple(schedule.segments), compare, self.targets)
        results = run_metrics(self.store.engine, request, replace(self.settings, today=today), persist=False)
        outcome.results_saved = save_results(self.store.engine, results)
        failed = len({r["metric"] for r in results if r["error"]})
        say(f"{period.label}: {outcome.results_saved} results saved"
            + (f", {failed} metric{'s' * (failed > 1)} failed" if failed else ""))
        outcome.error = failure_summary(results)

    def _alerts(self, schedule: Schedule, today: date, outcome: JobOutcome, say: Callable[[str], None]) -> None:
        """Evaluate the schedule's rules as of ``today``; a failing channel is counted, not an error of the run."""
        from ..alerts.evaluate import evaluator

        checked = evaluator(self.store, self.registry, self.config, self.settings, self.targets,
                            self._sender(outcome)).evaluate(today, schedule.alerts)
        outcome.alerts = checked.summary()
        say(checked.line())

    def _finish(self, outcome: JobOutcome) -> None:
        leases.finish(self.store, outcome.run_id, outcome.status, outcome.error, outcome.rows_synced,
                      outcome.results_saved, outcome.alerts)
        if outcome.error:
            try:
                self._tell_failure(outcome)
            except Exception:  # noqa: BLE001 - the run is recorded; telling of it must not fail it twice
                pass

    def _tell_failure(self, outcome: JobOutcome) -> None:
        """The failed run, to its schedule's ``on_failure`` channels, keyed by the run (sent once)."""
        with self.store.engine.connect() as conn:
            run = conn.execute(select(JobRun.__table__).where(JobRun.__table__.c.id == outcome.run_id)).first()
        if run is None or not self.config.schedules[run.job].on_failure:
            return
        from ..alerts.evaluate import tell_job_failure

        tell_job_failure(self.config, run.job, run.occurrence or f"run-{run.id}", outcome.error or "",
                         self._sender(outcome))

    def _sender(self, outcome: JobOutcome) -> Callable[[str, DeliveryKey, Message], str | None]:
        """How the run's alerts send: :meth:`notify`, listing each delivery in ``outcome``."""
        def send(channel: str, key: DeliveryKey, message: Message) -> str | None:
            delivery = self.notify(outcome, channel, key, message)
            return None if delivery.ok else delivery.error or delivery.status
        return send


def history(store: Store, name: str | None = None, limit: int = 20) -> list[JobRun]:
    """The latest runs, newest first (of one schedule, or of all); runs whose process died show as failed."""
    leases.expire(store, datetime.now(UTC))
    runs = JobRun.__table__
    query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    if name is not None:
        query = query.where(runs.c.job == name)
    with store.engine.connect() as conn:
        return [JobRun(**row._mapping) for row in conn.execute(query)]
