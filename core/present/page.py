"""A report as one self-contained HTML page: inline CSS and SVG, no script, no external request.

The page is cards first (one per KPI: value, changes, target, sparkline), then a section per
KPI with its trend chart and, when asked for, its breakdown. Elements carry the engine's raw
numbers in ``data-*`` attributes (``data-metric``, ``data-value``, ``data-change``,
``data-status``) so that tools and tests read the numbers without parsing formatted text.
"""

from __future__ import annotations

import json
import re
from string import Template

from .. import __version__
from ..report import format_value
from .cards import Breakdown, Card, Change, Progress, Report
from .markup import Html, element, number, render
from .svg import line_chart, sparkline

ARROWS = {"up": "▲", "down": "▼", "flat": "■"}

#: Works on a phone (one column) up to a wide screen; prints (and renders to PDF) on A4.
STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --card: #fff; --bg: #f6f8fa;
  --good: #1a7f37; --bad: #cf222e; --warn: #9a6700; --accent: #0969da; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --line: #3d444d; --card: #151b23; --bg: #0d1117;
    --good: #3fb950; --bad: #f85149; --warn: #d29922; --accent: #4493f8; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 1rem; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header, main, footer { max-width: 72rem; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 0 0 .25rem; }
h3 { font-size: .95rem; font-weight: 600; margin: 0; color: var(--muted); }
.meta, .sub, .note, footer { color: var(--muted); font-size: .85rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: .75rem;
  margin: 1rem 0 2rem; }
.card, .detail { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8rem;
  break-inside: avoid; }
.card a { color: inherit; text-decoration: none; }
.value { font-size: 1.7rem; font-weight: 650; margin: .2rem 0; font-variant-numeric: tabular-nums; }
.value.missing { color: var(--muted); }
.error { color: var(--bad); font-size: .85rem; overflow-wrap: anywhere; }
.note { overflow-wrap: anywhere; }
.changes { list-style: none; padding: 0; margin: .3rem 0; font-size: .85rem; }
.change { font-variant-numeric: tabular-nums; }
.good { color: var(--good); } .bad { color: var(--bad); } .neutral { color: var(--muted); }
.vs { color: var(--muted); }
.target { font-size: .85rem; margin: .4rem 0; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: 1rem; color: #fff; background: var(--muted); }
.status-on_track .badge, .status-achieved .badge { background: var(--good); }
.status-at_risk .badge { background: var(--warn); }
.status-off_track .badge, .status-missed .badge { background: var(--bad); }
.bar { position: relative; height: .45rem; background: var(--line); border-radius: .3rem; margin: .3rem 0; }
.bar .fill { position: absolute; inset: 0 auto 0 0; border-radius: .3rem; background: var(--accent); }
.bar .pace { position: absolute; top: -.2rem; bottom: -.2rem; width: 2px; background: var(--fg); }
svg { display: block; width: 100%; height: auto; overflow: visible; }
.sparkline { height: 2.4rem; margin-top: .4rem; }
.sparkline .spark { stroke: var(--accent); stroke-width: 1.5; fill: none; vector-effect: non-scaling-stroke; }
.sparkline .lone, .sparkline .last { fill: var(--accent); }
.chart { max-height: 18rem; }
.chart .series { stroke: var(--accent); stroke-width: 2; fill: none; }
.chart .target { stroke: var(--warn); stroke-width: 1.5; stroke-dasharray: 6 4; fill: none; }
.chart circle.target { fill: var(--warn); }
.chart .dot, .chart .lone.series { fill: var(--accent); }
.chart .grid { stroke: var(--line); }
.chart text { font-size: 11px; fill: var(--muted); }
.details { display: grid; gap: .75rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; margin-top: .6rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
th[aria-sort]::after { content: " ▾"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
@media (max-width: 40rem) { body { padding: .5rem; } .value { font-size: 1.5rem; } .optional { display: none; } }
@page { size: A4; margin: 12mm; }
@media print { body { background: #fff; } .card, .detail { border-color: #999; } }
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$style</style>
</head>
<body>
$body
</body>
</html>
""")


def report_page(report: Report) -> str:
    """The whole page. Every value inserted is escaped markup (see :mod:`.markup`)."""
    heading = f"KPI report {report.period}"
    body = [element("header", element("h1", heading), element("p", meta_text(report), class_="meta")),
            element("main",
                    element("section", [card_html(c) for c in report.cards], class_="cards",
                            aria_label="KPI cards"),
                    element("section", [detail_html(c, report) for c in report.cards], class_="details")),
            element("footer", element("p", f"crmkpi {__version__}"))]
    return PAGE.substitute(title=render(heading), style=STYLE, body=render(body))


def meta_text(report: Report) -> str:
    parts = [f"{report.period_start:%Y-%m-%d} to {report.period_end:%Y-%m-%d} (exclusive)"]
    if report.currency:
        parts.append(f"amounts in {report.currency}")
    if report.data_freshness:
        parts.append(f"data as of {report.data_freshness:%Y-%m-%d %H:%M} UTC")
    if report.generated_at:
        parts.append(f"generated {report.generated_at:%Y-%m-%d %H:%M} UTC")
    return " · ".join(parts)


def anchor(metric: str) -> str:
    """An id for the metric's section (plugin ids are free text)."""
    return "detail-" + re.sub(r"[^A-Za-z0-9_-]", "-", metric)


def card_html(card: Card, href: str | None = None) -> Html:
    """A KPI's card; its title links to ``href`` (default: the card's section further down the report)."""
    def fmt(value: float | None) -> str:
        return format_value(value, card.unit, card.currency)

    missing = card.value is None
    return element(
        "article",
        element("h3", element("a", card.title, href=href or f"#{anchor(card.metric)}")),
        element("p", card.value_text, class_="value missing" if missing else "value", title=card.period),
        element("p", f"Error: {card.error}", class_="error") if card.error else None,
        element("p", card.note, class_="note") if card.note else None,
        element("ul", [change_html(c) for c in card.changes], class_="changes") if card.changes else None,
        target_html(card.target) if card.target else None,
        sparkline(card.trend, fmt) if card.trend else None,
        class_="card", data_metric=card.metric, data_value=number(card.value), data_unit=card.unit,
        data_direction=card.direction, data_period=card.period,
    )


def change_html(change: Change) -> Html:
    arrow = ARROWS.get(change.movement or "", "")
    return element(
        "li", element("span", arrow, aria_hidden="true") if arrow else None, f" {change.text} ",
        element("span", f"vs {change.title} ({change.period}: {change.before_text})", class_="vs"),
        element("span", f" {change.error}", class_="error") if change.error else None,
        class_=f"change {change.tone}", data_kind=change.kind, data_change=number(change.change),
        data_tone=change.tone,
    )


def target_html(target: Progress) -> Html:
    status = target.status or "none"
    bar = None
    if target.share is not None:
        pace = element("span", class_="pace", style=f"left:{target.expected_share:.1%}",
                       title="where the pace says it should be by now") \
            if target.expected_share is not None else None
        bar = element("div", element("span", class_="fill", style=f"width:{target.share:.1%}"), pace,
                      class_="bar", role="progressbar", aria_valuemin=0, aria_valuemax=100,
                      aria_valuenow=round(target.share * 100, 1))
    return element(
        "div", element("p", element("span", target.status_text, class_="badge"),
                       f" target {target.target_text} for {target.period}"),
        bar, element("p", target.detail, class_="detail-text note"),
        class_=f"target status-{status}", data_status=status, data_target=number(target.target),
    )


def detail_html(card: Card, report: Report) -> Html:
    def fmt(value: float | None) -> str:
        return format_value(value, card.unit, card.currency)

    trend = f"{card.trend[0].label} to {card.trend[-1].label}" if card.trend else ""
    has_target = any(p.target is not None for p in card.trend)
    sub = f"By {report.trend_grain}, {trend}" + ("; dashed: the target" + (
        " (its share of each part for a total)" if has_target else "") if has_target else "")
    breakdown = report.breakdowns.get(card.metric)
    return element(
        "section", element("h2", card.title), element("p", sub, class_="sub"),
        line_chart(card.trend, fmt, title=f"{card.title} by {report.trend_grain}") if card.trend else None,
        breakdown_html(breakdown, card) if breakdown else None,
        class_="detail", id=anchor(card.metric), data_metric=card.metric,
    )


def breakdown_html(breakdown: Breakdown, card: Card) -> Html:
    heading = element("h3", f"{card.period} by {breakdown.dimension}")
    if breakdown.error:
        return element("div", heading, element("p", f"No breakdown: {breakdown.error}", class_="error"),
                       class_="breakdown")
    kinds = list(dict.fromkeys(c.kind for row in breakdown.rows for c in row.changes))
    titles = {c.kind: c.title for row in breakdown.rows for c in row.changes}
    targeted = any(row.target for row in breakdown.rows)
    head = [element("th", breakdown.dimension, scope="col"),
            element("th", "Value", scope="col", class_="num", aria_sort="descending"),
            *(element("th", f"vs {titles[k]}", scope="col", class_="num optional") for k in kinds),
            element("th", "Target", scope="col") if targeted else None,
            element("th", "Note", scope="col", class_="optional")]
    rows = []
    for row in breakdown.rows:
        by_kind = {c.kind: c for c in row.changes}
        rows.append(element(
            "tr", element("th", row.label, scope="row"), element("td", row.value_text, class_="num"),
            *(element("td", by_kind[k].text, class_=f"num optional {by_kind[k].tone}",
                      data_kind=k, data_change=number(by_kind[k].change)) if k in by_kind
              else element("td", "—", class_="num optional") for k in kinds),
            element("td", f"{row.target.status_text} ({row.target.target_text})" if row.target else "",
                    data_status=row.target.status if row.target else None) if targeted else None,
            element("td", "; ".join(filter(None, [row.note, row.error and f"Error: {row.error}"])),
                    class_="optional"),
            data_metric=card.metric, data_segment=json.dumps(row.segment, sort_keys=True),
            data_value=number(row.value),
        ))
    table = element("table", element("thead", element("tr", head)), element("tbody", rows))
    return element("div", heading, element("div", table, class_="scroll"), class_="breakdown")
