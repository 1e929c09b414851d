"""The dashboard's routes: the overview at ``/``, a page per KPI at ``/kpi/{metric}``, the login.

A page is computed in a worker thread and kept, like the API's answers, until the store changes
(:mod:`..answers`): the first visitor after a sync waits for the engine, the others do not. A
mistake in the query (a period, a dimension) is the page's one-line error with status 422, shown
above the controls so that it can be corrected there.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import ConfigError, CrmkpiError, MetricError
from ..answers import Answers
from ..jobs import Job
from . import auth, pages, views

#: No script runs, nothing is loaded from elsewhere, no other site may frame the page.
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}

PERIOD = Query(None, description="the period, as crmkpi run --period takes it; default: the config's")
SEGMENT = Query(None, description="a segment filter, DIMENSION=VALUE (team=East)")
GRAIN = Query(None, description="the trend's parts (month by default)")


def html(body: str | bytes, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def dashboard(job: Job, answers: Answers, token: str | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    signed = token is not None
    private = [Depends(auth.require(token))]

    @router.get("/", dependencies=private)
    async def overview(period: str | None = PERIOD, segment: str | None = SEGMENT,
                       grain: str | None = GRAIN) -> Response:
        try:
            asked = views.Asked.of(period, segment, grain)
            key = ("page", "overview", repr(asked), job.settings.current().today)
            return html(await answers.get(key, lambda: pages.overview_page(views.overview(job, asked),
                                                                           signed_in=signed), str.encode))
        except (ConfigError, MetricError) as exc:
            return html(pages.error_page("KPIs", str(exc), _echo(period, segment, grain), _options(job),
                                         signed_in=signed), 422)
        except CrmkpiError as exc:
            return html(pages.error_page("KPIs", str(exc), None, signed_in=signed), 503)

    @router.get("/kpi/{metric_id}", dependencies=private)
    async def kpi(metric_id: str, period: str | None = PERIOD, segment: str | None = SEGMENT,
                  grain: str | None = GRAIN,
                  by: str | None = Query(None, description="the breakdown's dimension (team by default)"),
                  sort: str | None = Query(None, description="value, label, previous or year_ago"),
                  order: str | None = Query(None, description="asc or desc"),
                  explain: str | None = Query(None, description="the cell to explain: DIMENSION=VALUE, or all")
                  ) -> Response:
        metric = job.registry.metrics.get(metric_id)
        if metric is None:
            return html(pages.error_page("Unknown KPI", f"unknown metric {metric_id!r}", None,
                                         signed_in=signed), 404)
        try:
            asked = views.Asked.of(period, segment, grain, by, sort, order, explain)
            key = ("page", "kpi", metric.id, repr(asked), job.settings.current().today)
            return html(await answers.get(key, lambda: pages.kpi_html(views.kpi_page(job, metric, asked),
                                                                      signed_in=signed), str.encode))
        except (ConfigError, MetricError) as exc:
            return html(pages.error_page(metric.title, str(exc), _echo(period, segment, grain, by), _options(job),
                                         views.breakdown_dimensions(job), action=f"/kpi/{metric.id}",
                                         signed_in=signed), 422)
        except CrmkpiError as exc:
            return html(pages.error_page(metric.title, str(exc), None, signed_in=signed), 503)

    @router.get("/login")
    def login(next: str | None = Query(None)) -> Response:
        return html(pages.login_page(auth.safe_next(next)))

    @router.post("/login")
    async def log_in(request: Request) -> Response:
        given, next_path = await auth.login_form(request)
        if token is None:
            return RedirectResponse(next_path, status_code=303)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return html(pages.login_page(next_path, "That is not the API token."), 401)
        answer = RedirectResponse(next_path, status_code=303)
        auth.set_login(answer, request, token)
        return answer

    @router.post("/logout")
    def log_out() -> Response:
        answer = RedirectResponse("/login", status_code=303)
        auth.clear_login(answer)
        return answer

    return router


def _echo(period: str | None, segment: str | None, grain: str | None, by: str | None = None) -> views.Asked:
    """The controls of a page whose query was refused, holding the period typed (to be corrected there)."""
    return views.Asked(period, {}, grain if grain in views.GRAINS else "month", by or views.DEFAULT_BREAKDOWN)


def _options(job: Job) -> list[views.Option]:
    try:
        return views.filter_options(job)
    except Exception:  # noqa: BLE001 - the page says what was wrong with the query; the filter can wait
        return []
