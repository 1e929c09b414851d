"""Running a schedule's steps (sync, then metrics) and recording each run in ``job_runs``.

A run syncs the schedule's connectors, then computes its metrics for its period relative to the
day the run is for, and saves the results. A failed sync stops the run before any metric is
computed: KPIs over a half-synced store would look current and be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Callable

from sqlalchemy import select, update

from ..config import Config, Schedule
from ..engine import COMPARISONS, Run, Settings, run_metrics, save_results
from ..errors import CrmkpiError
from ..models import JobRun
from ..plugins import Registry
from ..store import Store
from ..targets import Target


@dataclass
class JobOutcome:
    """What one run of a schedule did."""

    run_id: int
    status: str = "running"
    #: ``crm: 120 rows changed`` per connector synced, and what went wrong.
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    results_saved: int = 0


def run_schedule(store: Store, registry: Registry, config: Config, name: str, settings: Settings,
                 targets: list[Target], *, today: date, say: Callable[[str], None] = lambda line: None) -> JobOutcome:
    """Run schedule ``name`` for the reporting day ``today``; the outcome is recorded whatever happens."""
    from ..sync import sync_connector

    schedule = config.schedules[name]
    outcome = JobOutcome(_start(store, name))
    try:
        for connector in schedule.sync:
            try:
                report = sync_connector(store, registry, connector, config.connectors[connector], config.base_dir)
            except CrmkpiError as exc:
                skipped = "; metrics not computed" if schedule.metrics else ""
                raise CrmkpiError(f"sync of {connector} failed: {exc}{skipped}") from None
            _tell(outcome, say, f"{connector}: {report.written} rows changed")
        if schedule.metrics:
            _compute(store, registry, config, schedule, settings, targets, today, outcome, say)
    except CrmkpiError as exc:
        outcome.error = str(exc)
    except BaseException as exc:  # Ctrl-C, a bug: recorded, then on its way
        outcome.error = f"interrupted: {type(exc).__name__}: {exc}".rstrip(": ")
        _finish(store, outcome, "failed")
        raise
    _finish(store, outcome, "failed" if outcome.error else "success")
    return outcome


def _compute(store: Store, registry: Registry, config: Config, schedule: Schedule, settings: Settings,
             targets: list[Target], today: date, outcome: JobOutcome, say: Callable[[str], None]) -> None:
    period = settings.calendar.parse(schedule.period, today=today)
    metrics = [registry.metric(metric_id) for metric_id in schedule.metrics]
    params = {m.id: {**(config.metrics or {}).get(m.id, {}), **schedule.params.get(m.id, {})} for m in metrics}
    compare = COMPARISONS if schedule.compare == "both" else (schedule.compare,) if schedule.compare else ()
    request = Run(metrics, period, params, schedule.grain, tuple(schedule.segments), compare, targets)
    results = run_metrics(store.engine, request, settings, persist=False)
    outcome.results_saved = save_results(store.engine, results)
    failed = list(dict.fromkeys(r["metric"] for r in results if r["error"]))
    _tell(outcome, say, f"{period.label}: {outcome.results_saved} results saved"
                        + (f", {len(failed)} metric{'s' * (len(failed) > 1)} failed" if failed else ""))
    if failed:
        first = next(r for r in results if r["error"])
        outcome.error = f"{first['metric']}: {first['error']}" + (
            f"; {len(failed) - 1} more failed ({', '.join(failed[1:])})" if failed[1:] else "")


def _tell(outcome: JobOutcome, say: Callable[[str], None], line: str) -> None:
    outcome.lines.append(line)
    say(line)


def _start(store: Store, name: str) -> int:
    with store.transaction() as conn:
        return conn.execute(JobRun.__table__.insert().values(job=name, started_at=datetime.now(UTC),
                                                             status="running")).inserted_primary_key[0]


def _finish(store: Store, outcome: JobOutcome, status: str) -> None:
    outcome.status = status
    runs = JobRun.__table__
    with store.transaction() as conn:
        conn.execute(update(runs).where(runs.c.id == outcome.run_id)
                     .values(status=status, finished_at=datetime.now(UTC), error=outcome.error))


def history(store: Store, name: str | None = None, limit: int = 20) -> list[JobRun]:
    """The latest runs, newest first (of one schedule, or of all)."""
    runs = JobRun.__table__
    query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    if name is not None:
        query = query.where(runs.c.job == name)
    with store.engine.connect() as conn:
        return [JobRun(**row._mapping) for row in conn.execute(query)]
