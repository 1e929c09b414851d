"""``/metrics``: what the store knows, in the Prometheus text format, read at each scrape.

Names follow Prometheus' rules: a ``crmkpi_`` prefix, base units (durations in seconds, ratios
as ratios, never percents), the unit as a suffix. Only whole-company values are exposed: a label
per owner or account would put ids in labels and grow the series without bound; the JSON API
has the segments. Each value's period is given as two timestamps, not as a label that changes
every period.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import String, cast, func, select

from ..models import JobRun, MetricResult, SyncRun
from ..store import aware_utc
from .jobs import Job

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: unit -> (name suffix, factor to the base unit)
UNITS = {"ratio": ("_ratio", 1.0), "days": ("_seconds", 86400.0), "hours": ("_seconds", 3600.0),
         "months": ("_months", 1.0), "count": ("", 1.0), "score": ("_score", 1.0), "points": ("_points", 1.0)}


def exposition(job: Job) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(job))
    return generate_latest(registry)


class _StoreCollector:
    def __init__(self, job: Job) -> None:
        self.job = job

    def collect(self):
        with self.job.store.engine.connect() as conn:
            yield from self._kpis(conn)
            yield from self._jobs(conn)
            yield from self._syncs(conn)

    def _kpis(self, conn):
        results = MetricResult.__table__
        whole_company = results.c.segment.is_(None) | cast(results.c.segment, String).in_(("{}", "null"))
        newest = (select(results.c.metric, func.max(results.c.id).label("id")).where(whole_company)
                  .group_by(results.c.metric).subquery())
        rows = conn.execute(select(results.c.metric, results.c.value, results.c.unit, results.c.period_start,
                                   results.c.period_end)
                            .join(newest, results.c.id == newest.c.id).order_by(results.c.metric)).all()
        starts = GaugeMetricFamily("crmkpi_kpi_period_start_timestamp_seconds",
                                   "Start of the period of each exposed KPI value", labels=["metric"])
        ends = GaugeMetricFamily("crmkpi_kpi_period_end_timestamp_seconds",
                                 "End (exclusive) of the period of each exposed KPI value", labels=["metric"])
        currency = self.job.settings.currency.lower()
        for metric_id, value, unit, start, end in rows:
            metric = self.job.registry.metrics.get(metric_id)
            if value is None or metric is None:
                continue
            suffix, factor = (f"_{currency}", 1.0) if unit == "currency" else UNITS.get(unit, ("", 1.0))
            gauge = GaugeMetricFamily(f"crmkpi_{metric_id}{suffix}", f"{metric.title}: the latest saved "
                                      "whole-company value (its period: crmkpi_kpi_period_*)")
            gauge.add_metric([], value * factor)
            starts.add_metric([metric_id], _epoch(start))
            ends.add_metric([metric_id], _epoch(end))
            yield gauge
        yield from (starts, ends)

    def _jobs(self, conn):
        runs = JobRun.__table__
        finished = runs.c.finished_at.is_not(None)
        counts = CounterMetricFamily("crmkpi_job_runs", "Job runs by schedule and outcome", labels=["schedule", "status"])
        durations = SummaryMetricFamily("crmkpi_job_run_duration_seconds", "How long finished job runs took",
                                        labels=["schedule", "status"])
        last_success = GaugeMetricFamily("crmkpi_job_last_success_timestamp_seconds",
                                         "When each schedule last succeeded", labels=["schedule"])
        lag = GaugeMetricFamily("crmkpi_job_lag_seconds", "How late the latest scheduled run started",
                                labels=["schedule"])
        for schedule, status, count in conn.execute(select(runs.c.job, runs.c.status, func.count())
                                                    .group_by(runs.c.job, runs.c.status)):
            counts.add_metric([schedule, status], count)
        totals: dict[tuple[str, str], list[float]] = {}
        for row in conn.execute(select(runs.c.job, runs.c.status, runs.c.started_at, runs.c.finished_at)
                                .where(finished, runs.c.status != "skipped")):
            count_sum = totals.setdefault((row.job, row.status), [0, 0.0])
            count_sum[0] += 1
            count_sum[1] += (aware_utc(row.finished_at) - aware_utc(row.started_at)).total_seconds()
        for labels, (count, total) in totals.items():
            durations.add_metric(list(labels), count, total)
        for schedule, when in conn.execute(select(runs.c.job, func.max(runs.c.finished_at))
                                           .where(runs.c.status == "success").group_by(runs.c.job)):
            last_success.add_metric([schedule], _epoch(when))
        latest = select(runs.c.job, func.max(runs.c.id).label("id")).where(runs.c.due_at.is_not(None),
                                                                           runs.c.status != "skipped") \
            .group_by(runs.c.job).subquery()
        for schedule, due, started in conn.execute(select(runs.c.job, runs.c.due_at, runs.c.started_at)
                                                   .join(latest, runs.c.id == latest.c.id)):
            lag.add_metric([schedule], max((aware_utc(started) - aware_utc(due)).total_seconds(), 0.0))
        yield from (counts, durations, last_success, lag)

    def _syncs(self, conn):
        runs = SyncRun.__table__
        last = GaugeMetricFamily("crmkpi_sync_last_success_timestamp_seconds",
                                 "When each connector last synced successfully", labels=["connector"])
        for connector, when in conn.execute(select(runs.c.connector, func.max(runs.c.finished_at))
                                            .where(runs.c.status == "success").group_by(runs.c.connector)):
            last.add_metric([connector], _epoch(when))
        yield last


def _epoch(moment: datetime) -> float:
    return aware_utc(moment).timestamp()
