"""The dashboard's HTML: server-rendered pages with inline SVG charts, no script.

Cards, charts and tables are :mod:`crmkpi.present`'s, the pieces of ``crmkpi report``, so the
dashboard and a report show the same thing the same way. The controls are plain GET forms and
links (the period, the segment filter, the breakdown, its order), so a page is a URL that can be
bookmarked or sent, and the whole dashboard works without JavaScript, offline, on a phone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Sequence
from urllib.parse import urlencode

from ... import __version__
from ...models import JobRun
from ...periods import GRAINS
from ...present.cards import Card, SegmentRow
from ...present.markup import Html, element, number, render
from ...present.page import PAGE, STYLE, card_html, meta_text
from ...present.svg import line_chart, sparkline
from ...report import format_value, segment_text, title
from .views import Asked, Freshness, KpiPage, Option, Overview

DASHBOARD_STYLE = STYLE + """
.top { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline; gap: .5rem; }
.controls { display: flex; flex-wrap: wrap; gap: .5rem; align-items: flex-end; margin: .75rem 0; }
.controls label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); }
input, select, button { font: inherit; min-height: 2.2rem; padding: .25rem .5rem; color: var(--fg);
  background: var(--card); border: 1px solid var(--line); border-radius: 6px; max-width: 100%; }
button { background: var(--accent); border-color: var(--accent); color: #fff; cursor: pointer; }
button.quiet { background: none; color: var(--accent); }
.problem { background: var(--card); border: 1px solid var(--bad); border-radius: 8px; padding: .6rem .8rem; }
section.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8rem;
  margin-bottom: .75rem; }
.multiples { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .5rem; }
.multiple { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .5rem; }
.multiple p { margin: 0; font-size: .85rem; overflow-wrap: anywhere; }
th a { color: inherit; }
.run-success { color: var(--good); } .run-failed { color: var(--bad); } .run-running { color: var(--warn); }
code { overflow-wrap: anywhere; }
.login { max-width: 22rem; margin: 3rem auto; display: grid; gap: .6rem; }
"""

def url(path: str, **query: Any) -> str:
    """``path?k=v`` with the query's set values (None and '' left out)."""
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(given)}" if given else path


def where_text(where: dict[str, Any]) -> str | None:
    """The segment filter as its query parameter: ``team=East``."""
    return ", ".join(f"{d}={'' if v is None else v}" for d, v in where.items()) or None


def kept(asked: Asked) -> dict[str, Any]:
    """What a link keeps of the page's query: period, segment filter, trend grain."""
    return {"period": asked.period, "segment": where_text(asked.where),
            "grain": None if asked.grain == "month" else asked.grain}


def kpi_url(metric: str, asked: Asked, **more: Any) -> str:
    return url(f"/kpi/{metric}", **kept(asked), **more)


def page(heading: str, *body: Any, signed_in: bool = False) -> str:
    logout = element("form", element("button", "Log out", type="submit", class_="quiet"),
                     method="post", action="/logout") if signed_in else None
    return PAGE.substitute(title=render(f"{heading} · crmkpi"), style=DASHBOARD_STYLE, body=render([
        *body, element("footer", element("p", f"crmkpi {__version__}"), logout)]))


def overview_page(view: Overview, *, signed_in: bool) -> str:
    report, asked = view.report, view.asked
    heading = f"KPIs {report.period}" + (f" · {_filter_label(report.where, view.options)}" if report.where else "")
    return page(heading, element("header", element("div", element("h1", heading), class_="top"),
                                 element("p", meta_text(report), class_="meta"), controls("/", asked, view.options)),
                element("main",
                        _problem(report.failed and f"Some KPIs failed: {report.failed}"),
                        element("section", [card_html(c, kpi_url(c.metric, asked)) for c in report.cards],
                                class_="cards", aria_label="KPI cards"),
                        freshness_html(view.freshness), runs_html(view.runs)),
                signed_in=signed_in)


def kpi_html(view: KpiPage, *, signed_in: bool) -> str:
    report, asked, metric = view.report, view.asked, view.metric
    card = report.cards[0]
    heading = card.title + (f" · {_filter_label(report.where, view.options)}" if report.where else "")
    fmt = _formatter(card)
    chart = element("section", element("h2", f"By {report.trend_grain}"),
                    line_chart(card.trend, fmt, title=f"{card.title} by {report.trend_grain}"),
                    class_="panel", id="trend", data_metric=metric.id) if card.trend else None
    return page(heading,
                element("header",
                        element("p", element("a", "← All KPIs", href=url("/", **kept(asked)))),
                        element("h1", heading), element("p", meta_text(report), class_="meta"),
                        controls(f"/kpi/{metric.id}", asked, view.options, view.dimensions)),
                element("main",
                        element("section", card_html(card, "#trend"), class_="cards"), chart,
                        definition_html(view), breakdown_section(view), explanation_html(view)),
                signed_in=signed_in)


def error_page(heading: str, problem: str, asked: Asked | None, options: Sequence[Option] = (),
               dimensions: Sequence[str] = (), *, action: str = "/", signed_in: bool) -> str:
    return page(heading, element("header", element("h1", heading),
                                 controls(action, asked, options, dimensions) if asked else None),
                element("main", _problem(problem), element("p", element("a", "All KPIs", href="/"))),
                signed_in=signed_in)


def login_page(next_path: str, problem: str | None = None) -> str:
    return page("Log in", element("main", element(
        "form", element("h1", "crmkpi"), _problem(problem),
        element("label", "API token", element("input", type="password", name_="token", autocomplete="current-password",
                                               required=True, autofocus=True), class_="controls"),
        element("input", type="hidden", name_="next", value=next_path),
        element("button", "Log in", type="submit"), method="post", action="/login", class_="login")))


def controls(action: str, asked: Asked, options: Sequence[Option], dimensions: Sequence[str] = ()) -> Html:
    """The period, segment filter and trend grain (and on a KPI page the breakdown): a GET form."""
    chosen = where_text(asked.where)
    segment = element("select", element("option", "Whole company", value=""),
                      [element("option", o.label, value=o.value, selected=o.value == chosen) for o in options],
                      name_="segment")
    grain = element("select", [element("option", g, value=g, selected=g == asked.grain) for g in GRAINS],
                    name_="grain")
    by = element("label", "Break down by", element(
        "select", [element("option", d, value=d, selected=d == asked.by) for d in dimensions], name_="by")) \
        if dimensions else None
    return element("form", element("label", "Period", element(
        "input", name_="period", value=asked.period or "", placeholder="default", list="periods", size=14)),
                   _periods(), element("label", "Segment", segment), element("label", "Trend by", grain), by,
                   element("button", "Show", type="submit"), method="get", action=action, class_="controls")


def _periods() -> Html:
    suggestions = ("this-month", "last-month", "this-quarter", "last-quarter", "this-year", "last-year", "month-to-date",
                   "last-7-days")
    return element("datalist", [element("option", value=s) for s in suggestions], id="periods")


def freshness_html(found: Sequence[Freshness]) -> Html:
    rows = [element("tr", element("th", f.connector, scope="row"),
                    element("td", _when(f.last_success) if f.last_success else "never",
                            data_last_success=f.last_success.isoformat() if f.last_success else ""),
                    element("td", f.last_status or "no sync yet", class_=f"run-{f.last_status}"),
                    element("td", f.last_error or "", class_="optional"),
                    data_connector=f.connector)
            for f in found]
    return element("section", element("h2", "Data freshness"), element("div", element(
        "table", element("thead", element("tr", [element("th", h, scope="col") for h in (
            "Connector", "Last successful sync", "Latest sync", "Error")])), element("tbody", rows)),
        class_="scroll"), class_="panel", id="freshness")


def runs_html(runs: Sequence[JobRun]) -> Html:
    if not runs:
        return element("section", element("h2", "Recent job runs"),
                       element("p", "No job has run yet (crmkpi serve runs the config's schedules).", class_="note"),
                       class_="panel", id="runs")
    rows = [element("tr", element("th", run.job, scope="row"), element("td", _when(run.started_at)),
                    element("td", run.status, class_=f"run-{run.status}"),
                    element("td", _count(run.rows_synced), class_="num optional"),
                    element("td", _count(run.results_saved), class_="num optional"),
                    element("td", run.error or "", class_="optional"), data_status=run.status)
            for run in runs]
    return element("section", element("h2", "Recent job runs"), element("div", element(
        "table", element("thead", element("tr", [element("th", h, scope="col", class_=c) for h, c in (
            ("Schedule", None), ("Started", None), ("Outcome", None), ("Rows synced", "num optional"),
            ("Results saved", "num optional"), ("Error", "optional"))])), element("tbody", rows)),
        class_="scroll"), class_="panel", id="runs")


def definition_html(view: KpiPage) -> Html:
    metric = view.metric
    facts = [("Formula", element("code", metric.formula)), ("Unit", metric.unit),
             ("Better when", "higher" if metric.direction == "higher" else "lower"),
             ("Additive", "yes: a period's value is the sum of its parts" if metric.additive else "no"),
             ("Reads", ", ".join(metric.tables))]
    return element("section", element("h2", "Definition"), element("p", metric.description),
                   element("table", element("tbody", [element("tr", element("th", k, scope="row"), element("td", v))
                                                      for k, v in facts])),
                   class_="panel", id="definition")


def breakdown_section(view: KpiPage) -> Html:
    asked, card, found = view.asked, view.report.cards[0], view.breakdown
    heading = element("h2", f"{card.period} by {asked.by}")
    if found is None:
        return element("section", heading, element("p", "No breakdown.", class_="note"), class_="panel")
    if found.error:
        return element("section", heading, _problem(f"No breakdown: {found.error}"), class_="panel",
                       id="breakdown")
    kinds = [kind for kind in ("previous", "year_ago") if any(c.kind == kind for r in view.rows for c in r.changes)]
    titles = {c.kind: c.title for r in view.rows for c in r.changes}
    head = [_sortable(asked.by, "label", view), _sortable("Value", "value", view, "num"),
            *(_sortable(f"vs {titles[k]}", k, view, "num optional") for k in kinds),
            element("th", "Target", scope="col", class_="optional"), element("th", "", scope="col")]
    body = [_row_html(row, kinds, view) for row in view.rows]
    table = element("table", element("thead", element("tr", head)), element("tbody", body), class_="breakdown")
    fmt = _formatter(card)
    shown = element("p", f"The first {len(view.multiples)} of {len(view.rows)}, highest first.", class_="note") \
        if len(view.multiples) < len(view.rows) else None
    small = element("div", [element("div", element("p", m.row.label), element("p", m.row.value_text, class_="num"),
                                     sparkline(m.points, fmt), class_="multiple",
                                     data_segment=json.dumps(m.row.segment, sort_keys=True))
                            for m in view.multiples], class_="multiples", aria_label=f"trend of each {asked.by}")
    return element("section", heading, element("div", table, class_="scroll"),
                   element("h3", f"Each {asked.by} by {view.report.trend_grain}"), shown, small,
                   class_="panel", id="breakdown", data_metric=view.metric.id)


def _row_html(row: SegmentRow, kinds: Sequence[str], view: KpiPage) -> Html:
    by_kind = {c.kind: c for c in row.changes}
    explain = ", ".join(f"{d}={'' if v is None else v}" for d, v in row.segment.items())
    return element(
        "tr", element("th", row.label, scope="row"),
        element("td", row.value_text, class_="num", title=row.note or row.error or None),
        *(element("td", by_kind[k].text, class_=f"num optional {by_kind[k].tone}",
                  data_kind=k, data_change=number(by_kind[k].change)) if k in by_kind
          else element("td", "—", class_="num optional") for k in kinds),
        element("td", f"{row.target.status_text} ({row.target.target_text})" if row.target else "",
                class_="optional"),
        element("td", element("a", "explain", href=kpi_url(view.metric.id, view.asked, by=view.asked.by,
                                                            explain=explain or "all") + "#explain")),
        data_segment=json.dumps(row.segment, sort_keys=True), data_value=number(row.value),
    )


def _sortable(text: str, key: str, view: KpiPage, css: str | None = None) -> Html:
    """A column heading that sorts by its column; a second click reverses the order."""
    asked = view.asked
    current = asked.sort == key
    descending = not asked.descending if current else key != "label"
    link = kpi_url(view.metric.id, asked, by=asked.by, sort=key, order="desc" if descending else "asc")
    return element("th", element("a", text, href=link + "#breakdown"), scope="col", class_=css,
                   aria_sort=("descending" if asked.descending else "ascending") if current else None)


def explanation_html(view: KpiPage) -> Html | None:
    found = view.explanation
    if found is None:
        return None
    value, metric = found["value"], view.metric
    where = segment_text(found["segment"], found["segment_labels"]) or "whole company"
    sides = "" if value.denominator is None else f" = {_plain(value.numerator)} / {_plain(value.denominator)}" \
        if value.numerator is not None else f" (of {_plain(value.denominator)})"
    inputs = []
    for item in found["inputs"]:
        shown = [i for i, _ in enumerate(item["columns"]) if any(r[i] is not None for r in item["first"])]
        caption = f"{item['label']}: {item['rows']:,} {item['table']} rows" + (
            f", the first {len(item['first'])}" if item["first"] else "")
        table = element("table", element("caption", caption), element("thead", element("tr", [
            element("th", item["columns"][i], scope="col") for i in shown])), element("tbody", [
                element("tr", [element("td", "" if r[i] is None else _plain(r[i])) for i in shown])
                for r in item["first"]]), data_table=item["table"], data_rows=item["rows"])
        inputs.append(element("div", table, class_="scroll"))
    return element("section", element("h2", f"Explain: {found['period']}, {where}"),
                   element("p", f"{title(metric, found['params'])}: "
                           f"{format_value(value.value, metric.unit, found['currency'])}{sides}",
                           class_="value-line", data_value=number(value.value)),
                   element("p", value.note, class_="note") if value.note else None,
                   element("p", "Params: " + (", ".join(f"{k}={v}" for k, v in found["params"].items()) or "none"),
                           class_="note"),
                   *inputs, class_="panel", id="explain")


def _problem(text: str | None) -> Html | None:
    return element("p", text, class_="problem", role="alert") if text else None


def _filter_label(where: dict[str, Any], options: Sequence[Option]) -> str:
    value = where_text(where)
    return next((o.label for o in options if o.value == value), value or "")


def _formatter(card: Card):
    return lambda value: format_value(value, card.unit, card.currency)


def _when(moment: datetime) -> str:
    """A moment as a time, never as an age: a page is kept until the store changes, and "5 min ago" would
    grow false while it is."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _plain(value: Any) -> str:
    return f"{value:,.6g}" if isinstance(value, float) else str(value)
