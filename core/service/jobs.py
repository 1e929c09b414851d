"""Running a schedule's steps (sync, then metrics, then alerts, then a report) and recording each run in
``job_runs``.

A run syncs the schedule's connectors, then computes its metrics for its period relative to the
day the run is for, and saves the results, then evaluates its alert rules as of that day, then
writes its report and sends it. A failed sync stops the run before any metric is computed: KPIs
over a half-synced store would look current and be wrong. The report comes last: it takes the
longest (three engine runs per metric), and alerts should not wait for it nor be skipped when its
file cannot be written. A failed run is told to the schedule's ``on_failure`` channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Callable

from sqlalchemy import select

from ..config import Config, Schedule, ScheduledReport
from ..deliveries import Delivery, DeliveryKey, Retry, deliver
from ..engine import COMPARISONS, Run, Settings, failure_summary, run_metrics, save_results
from ..errors import CrmkpiError
from ..models import JobRun
from ..metrics import Metric
from ..notify import Message
from ..plugins import Registry
from ..store import Store
from ..targets import Target, of_config
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
    #: What the report step did: ``path``, the file written, and ``deliveries``, each channel's outcome
    #: (``sent``, ``failed: <why>``, ``duplicate: <why>``, ...); None: no report was written.
    report: dict | None = None
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
    #: How long a claimed run stays claimed without a renewal (``crmkpi serve --lease``).
    lease: timedelta = leases.LEASE
    #: How a failed notification is retried.
    retry: Retry = Retry()

    def targets(self, today: date) -> list[Target]:
        """The config's targets as of the reporting day ``today``: a service outlives the day it started on,
        and a target for ``this-year`` must be next year's once the year turns."""
        return of_config(self.config, self.registry, replace(self.settings, today=today))

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
                self._steps(name, today, outcome, say)
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

    def _steps(self, name: str, today: date, outcome: JobOutcome, say: Callable[[str], None]) -> None:
        from ..sync import sync_connector

        config = self.config
        schedule = config.schedules[name]
        for connector in schedule.sync:
            try:
                report = sync_connector(self.store, self.registry, connector, config.connectors[connector],
                                        config.base_dir)
            except CrmkpiError as exc:
                skipped = "".join(("; metrics not computed" if schedule.metrics else "",
                                   "; report not written" if schedule.report else ""))
                raise CrmkpiError(f"sync of {connector} failed: {exc}{skipped}") from None
            outcome.rows_synced += report.written
            say(f"{connector}: {report.written} rows changed")
        if schedule.metrics:
            self._compute(schedule, today, outcome, say)
        if schedule.alerts:
            self._alerts(schedule, today, outcome, say)
        if schedule.report:
            self._report(name, schedule, schedule.report, today, outcome, say)

    def _compute(self, schedule: Schedule, today: date, outcome: JobOutcome, say: Callable[[str], None]) -> None:
        period = self.settings.calendar.parse(schedule.period, today=today)
        metrics = [self.registry.metric(metric_id) for metric_id in schedule.metrics]
        compare = COMPARISONS if schedule.compare == "both" else (schedule.compare,) if schedule.compare else ()
        request = Run(metrics, period, self._params(schedule, metrics), schedule.grain, tuple(schedule.segments),
                      compare, self.targets(today))
        results = run_metrics(self.store.engine, request, replace(self.settings, today=today), persist=False)
        outcome.results_saved = save_results(self.store.engine, results)
        failed = len({r["metric"] for r in results if r["error"]})
        say(f"{period.label}: {outcome.results_saved} results saved"
            + (f", {failed} metric{'s' * (failed > 1)} failed" if failed else ""))
        outcome.error = failure_summary(results)

    def _alerts(self, schedule: Schedule, today: date, outcome: JobOutcome, say: Callable[[str], None]) -> None:
        """Evaluate the schedule's rules as of ``today``; a failing channel is counted, not an error of the run."""
        from ..alerts.evaluate import evaluator

        checked = evaluator(self.store, self.registry, self.config, self.settings, self.targets(today),
                            self._sender(outcome)).evaluate(today, schedule.alerts)
        outcome.alerts = checked.summary()
        say(checked.line())

    def _report(self, name: str, schedule: Schedule, step: ScheduledReport, today: date, outcome: JobOutcome,
                say: Callable[[str], None]) -> None:
        """Write the schedule's report (``step``) as of ``today`` and send it to its channels, once per occurrence
        and channel. A report that cannot be built or written fails the run; a failing channel does not."""
        from . import report_step

        ids = step.metrics or schedule.metrics or self.config.metric_ids(self.registry.metrics)
        metrics = [self.registry.metric(metric_id) for metric_id in ids]
        written = report_step.write(self.store, self.config.base_dir, name, step, step.period or schedule.period,
                                    metrics, self._params(schedule, metrics), self.targets(today),
                                    replace(self.settings, today=today))
        outcome.report = {"path": str(written.path), "deliveries": {}}
        if written.report.failed:
            outcome.error = outcome.error or f"report {written.report.period}: {written.report.failed}"
        _, occurrence = self._claimed(outcome.run_id)
        message = report_step.message(written, name, occurrence)
        for channel in step.channels:
            delivery = self.notify(outcome, channel, DeliveryKey(f"report:{name}", occurrence), message)
            outcome.report["deliveries"][channel] = delivery.status + (f": {delivery.error}" if delivery.error
                                                                       else "")
        sent = "".join(f"; {channel} {status}" for channel, status in outcome.report["deliveries"].items())
        say(f"report {written.report.period}: wrote {written.path}{sent}")

    def _params(self, schedule: Schedule, metrics: list[Metric]) -> dict[str, dict]:
        """Each metric's params: the config's, under the schedule's own."""
        return {m.id: {**self.config.params(m.id), **schedule.params.get(m.id, {})} for m in metrics}

    def _claimed(self, run_id: int) -> tuple[str, str]:
        """The schedule of run ``run_id`` and what its deliveries are keyed by: its occurrence, claimed once by one
        replica (``run-<id>`` for a run by hand), so that an occurrence sends each message once however often it
        is run."""
        runs = JobRun.__table__
        with self.store.engine.connect() as conn:
            job, occurrence = conn.execute(select(runs.c.job, runs.c.occurrence).where(runs.c.id == run_id)).one()
        return job, occurrence or f"run-{run_id}"

    def _finish(self, outcome: JobOutcome) -> None:
        leases.finish(self.store, outcome.run_id, outcome.status, outcome.error, outcome.rows_synced,
                      outcome.results_saved, outcome.alerts, outcome.report)
        if outcome.error:
            try:
                self._tell_failure(outcome)
            except Exception:  # noqa: BLE001 - the run is recorded; telling of it must not fail it twice
                pass

    def _tell_failure(self, outcome: JobOutcome) -> None:
        """The failed run, to its schedule's ``on_failure`` channels, keyed by the run (sent once)."""
        job, occurrence = self._claimed(outcome.run_id)
        if not self.config.schedules[job].on_failure:
            return
        from ..alerts.evaluate import tell_job_failure

        tell_job_failure(self.config, job, occurrence, outcome.error or "", self._sender(outcome))

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
