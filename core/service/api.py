"""The HTTP side of ``crmkpi serve``: health, Prometheus metrics, a read-only JSON API and the dashboard.

``/health`` stays open (a load balancer or Kubernetes probe asks it); everything under
``/api/v1`` needs the bearer token when one is configured, and the dashboard (:mod:`.web`, at ``/``)
the same token, typed into its login form. Latest values and series, what a
dashboard asks again and again, come from :mod:`.answers` on the event loop; the other handlers are
plain functions that FastAPI runs in its thread pool, each with its own store connection.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .. import __version__
from ..deliveries import channel_health
from ..engine import COMPARISONS, Run, explain, run_metrics
from ..errors import ConfigError, CrmkpiError, MetricError
from ..models import MetricResult
from ..periods import GRAINS
from ..segments import Segment
from ..redact import redact
from ..store import first_line
from ..suggest import did_you_mean
from . import prometheus
from .answers import Answers
from .jobs import Job, history
from .lifecycle import Heartbeat
from .scheduler import Scheduler
from .web.auth import LoginRequired, to_login
from .web.routes import dashboard
from .web.views import freshness, period_of


METRIC_ID = Path(description="a metric's id, e.g. win_rate (GET /api/v1/metrics lists them)")
PERIOD = Query(None, description="2025, 2025-Q4, 2025-11, 2025-W07, 2025-11-03, 2025-01-01..2025-03-31, or relative: "
                                 "last-month, previous-quarter, this-year-to-date, last-7-days, ...; "
                                 "default: reporting.default_period")


class ApiError(Exception):
    """An answer with a status and a one-line ``detail`` (404: unknown metric, 422: a bad parameter)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def create_app(job: Job, scheduler: Scheduler, heartbeat: Heartbeat, token: str | None,
               recheck: float = 1.0) -> FastAPI:
    """The app; `recheck`: how often, in seconds, kept answers are checked against the store."""
    app = FastAPI(title="crmkpi", version=__version__,
                  description="KPIs computed by crmkpi from the normalized CRM store, and the jobs that keep them.")

    @app.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
                             for error in exc.errors())
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(SQLAlchemyError)
    def _store_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        return JSONResponse({"detail": redact(f"the store did not answer: {first_line(exc)}")}, status_code=503)

    @app.get("/health", operation_id="health", tags=["service"])
    def health() -> JSONResponse:
        """Healthy when the scheduler loop is alive and recent and the store answers (503 otherwise)."""
        now = datetime.now(UTC)
        body: dict[str, Any] = {"scheduler": {"alive": heartbeat.alive(now, scheduler.running is not None),
                                              "last_tick": heartbeat.last_tick, "running": scheduler.running,
                                              "last_error": heartbeat.last_error}}
        try:
            body["connectors"] = _last_syncs(job)
            # a failing channel is reported, not unhealthy: restarting the service would not fix Slack
            body["channels"] = channel_health(job.store, list(job.config.channels))
            body["store"] = {"reachable": True}
        except Exception as exc:  # any failure to reach the store is the answer, not a 500
            body["store"] = {"reachable": False, "error": first_line(exc)}
        healthy = body["scheduler"]["alive"] and body["store"]["reachable"]
        body["status"] = "ok" if healthy else "unhealthy"
        return JSONResponse(jsonable_encoder(body), status_code=200 if healthy else 503)

    @app.get("/metrics", operation_id="prometheus_metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The latest KPI values, job runs and sync freshness in the Prometheus text format."""
        return PlainTextResponse(prometheus.exposition(job), media_type=prometheus.CONTENT_TYPE)

    answers = Answers(job.store, lambda: job.settings.current().today, recheck)
    app.include_router(_api(job, answers), dependencies=[Depends(_bearer(token))] if token else [])
    app.add_exception_handler(LoginRequired, to_login)
    app.include_router(dashboard(job, answers, token))
    return app


def _api(job: Job, answers: Answers) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["kpis"])

    @api.get("/metrics", operation_id="list_metrics")
    async def list_metrics() -> list[dict[str, Any]]:
        """The metric catalogue: units, direction, params."""
        return [_describe(metric) for metric in sorted(job.registry.metrics.values(), key=lambda m: m.id)]

    @api.get("/metrics/{metric_id}", operation_id="get_metric")
    async def get_metric(metric_id: str = METRIC_ID) -> dict[str, Any]:
        """One metric of the catalogue."""
        return _describe(_metric(job, metric_id))

    @api.get("/metrics/{metric_id}/latest", operation_id="latest_values", response_model=list[dict[str, Any]])
    async def latest(metric_id: str = METRIC_ID) -> Response:
        """The results of the latest saved run that computed the metric, each segment and period."""
        _metric(job, metric_id)
        return _json(await answers.get(("latest", metric_id), lambda: _latest(job, metric_id)))

    @api.get("/metrics/{metric_id}/series", operation_id="metric_series", response_model=list[dict[str, Any]])
    async def series(metric_id: str = METRIC_ID, period: str | None = PERIOD,
                     grain: str | None = Query(None, description=f"one of {', '.join(GRAINS)}; none: one value"),
                     segment: list[str] = Query([], description="a dimension to split by (owner, team, region, "
                                                                "stage, extra.FIELD, ...); repeatable"),
                     compare: str | None = Query(None, description="previous, year_ago or both")) -> Response:
        """The metric computed over `period` (default: the config's), split by `grain` and `segment`
        dimensions, with comparisons; nothing is saved. The answer is kept until a sync or a saved run
        changes the store (seen within a second) or the reporting day changes."""
        metric = _metric(job, metric_id)
        if grain is not None and grain not in GRAINS:
            raise ApiError(422, f"grain {grain!r}: expected one of {', '.join(GRAINS)}")
        if compare not in (None, "previous", "year_ago", "both"):
            raise ApiError(422, f"compare {compare!r}: expected previous, year_ago or both")
        comparisons = COMPARISONS if compare == "both" else (compare,) if compare else ()
        settings = job.settings.current()
        request = Run([metric], _period(job, period), {metric.id: job.config.params(metric.id)},
                      grain, tuple(segment), comparisons, job.targets(settings.today))
        key = ("series", metric.id, request.period, grain, request.segments, comparisons)
        return _json(await answers.get(key, lambda: _answer(
            lambda: run_metrics(job.store.engine, request, settings, persist=False))))

    @api.get("/metrics/{metric_id}/explain", operation_id="explain_value")
    def explain_value(metric_id: str = METRIC_ID, period: str | None = PERIOD,
                      segment: list[str] = Query([], description="DIMENSION=VALUE, e.g. owner=u-17; repeatable"),
                      limit: int = Query(10, ge=0, le=1000, description="first rows of each input")) -> dict[str, Any]:
        """The inputs behind one value (a period and a segment such as `owner=u-17`) and their first rows."""
        metric = _metric(job, metric_id)
        parts = dict(part.partition("=")[::2] for part in segment)
        if any("=" not in part for part in segment):
            raise ApiError(422, "segment: expected DIMENSION=VALUE, e.g. owner=u-17")
        found = _answer(lambda: explain(job.store.engine, metric, _period(job, period),
                                        job.config.params(metric.id),
                                        Segment.of({d: v or None for d, v in parts.items()}) if parts else None,
                                        job.settings.current(), limit))
        value = found.pop("value")
        return jsonable_encoder({**found, "value": value.value, "numerator": value.numerator,
                                 "denominator": value.denominator, "note": value.note})

    @api.get("/jobs", operation_id="list_job_runs", tags=["service"])
    def jobs(schedule: str | None = Query(None, description="only this schedule's runs"),
             limit: int = Query(20, ge=1, le=1000)) -> list[dict[str, Any]]:
        """The latest job runs, newest first."""
        return jsonable_encoder([run.model_dump() for run in history(job.store, schedule, limit)])

    return api


def _latest(job: Job, metric_id: str) -> list[dict[str, Any]]:
    results = MetricResult.__table__
    with job.store.engine.connect() as conn:
        run_id = conn.execute(select(results.c.run_id).where(results.c.metric == metric_id)
                              .order_by(results.c.computed_at.desc(), results.c.id.desc()).limit(1)).scalar()
        rows = conn.execute(select(results).where(results.c.run_id == run_id, results.c.metric == metric_id)
                            .order_by(results.c.period_start, results.c.id)).mappings().all()
    return [dict(row) for row in rows]


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _bearer(token: str):
    scheme = HTTPBearer(auto_error=False)

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "a valid bearer token is required (Authorization: Bearer <token>)")

    return check


def _metric(job: Job, metric_id: str):
    metric = job.registry.metrics.get(metric_id)
    if metric is None:
        raise ApiError(404, f"unknown metric {metric_id!r}{did_you_mean(metric_id, job.registry.metrics)}")
    return metric


def _period(job: Job, text: str | None):
    try:
        return period_of(job, text)
    except ConfigError as exc:
        raise ApiError(422, str(exc)) from None


def _answer(compute):
    """What `compute` returns; a mistake in the request (a dimension, a param) is a 422 naming it."""
    try:
        return compute()
    except (ConfigError, MetricError) as exc:
        raise ApiError(422, str(exc)) from None
    except CrmkpiError as exc:
        raise ApiError(503, str(exc)) from None


def _describe(metric) -> dict[str, Any]:
    return {"id": metric.id, "title": metric.title, "description": metric.description, "formula": metric.formula,
            "unit": metric.unit, "direction": metric.direction, "additive": metric.additive,
            "tables": list(metric.tables),
            "params": [{"name": p.name, "type": p.type.__name__, "default": p.default, "description": p.description,
                        "choices": list(p.choices) if p.choices else None} for p in metric.params]}


def _last_syncs(job: Job) -> dict[str, Any]:
    """Each connector's last successful sync, as the dashboard's freshness panel reads it (a store that does not
    answer raises)."""
    return {found.connector: {"last_success": found.last_success} for found in freshness(job)}
