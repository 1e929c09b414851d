"""The dashboard in a real headless Chromium, served by a real ``crmkpi serve`` on the demo company.

Each number a page shows is checked against the JSON API's answer for the same cell, through the
``data-*`` attributes the cards, charts and tables carry; what the browser fetched is checked to
have stayed on loopback. Screenshots (desktop and phone) go to ``build/test-artifacts/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from browser import chromium, demo, get_json, guarded, screenshot, serving

TOKEN = "tok-dashboard-not-a-real-token"
PERIOD = "2025"  # the demo config's default period
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(demo(tmp_path_factory.mktemp("demo")), TOKEN) as base:
        yield base


def api(served: str, path: str):
    return get_json(f"{served}/api/v1{path}", TOKEN)


def logged_in(browser, served: str, **options):
    watch = guarded(browser, **options)
    page = watch.page()
    page.goto(f"{served}/")
    assert page.url.startswith(f"{served}/login?next=")  # the token first
    page.fill("input[name=token]", TOKEN)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{served}/")
    return watch, page


def number(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


def same(shown: float | None, expected: float | None) -> bool:
    """The page's number is the API's: both missing, or equal to the float's last digits."""
    return shown is None and expected is None or (
        shown is not None and expected is not None and shown == pytest.approx(expected, rel=1e-9))


def whole_company(rows: list[dict]) -> dict:
    [row] = [r for r in rows if not r["segment"]]
    return row


def test_login_refuses_a_wrong_token_and_log_out_signs_out(browser, served):
    watch = guarded(browser)
    page = watch.page()
    page.goto(f"{served}/kpi/win_rate")
    page.fill("input[name=token]", "not-the-token")
    page.click("form.login button[type=submit]")
    assert page.inner_text("[role=alert]") == "That is not the API token."
    page.fill("input[name=token]", TOKEN)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{served}/kpi/win_rate")  # back where the visitor was going
    [cookie] = watch.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("crmkpi_token", True, "Strict")
    page.click("text=Log out")
    page.wait_for_url(f"{served}/login")
    page.goto(f"{served}/")
    assert page.url.startswith(f"{served}/login")
    assert watch.left == []
    watch.context.close()


def test_every_card_shows_the_apis_value_and_changes(browser, served):
    watch, page = logged_in(browser, served)
    catalog = {m["id"] for m in api(served, "/metrics")}
    cards = page.eval_on_selector_all("article.card", """cards => cards.map(card => ({
        metric: card.dataset.metric, value: card.dataset.value,
        shown: card.querySelector('.value').innerText,
        visible: card.getBoundingClientRect().height > 0,
        changes: Object.fromEntries([...card.querySelectorAll('.change')].map(c => [c.dataset.kind, c.dataset.change])),
        status: card.querySelector('.target') ? card.querySelector('.target').dataset.status : null,
        points: card.querySelector('svg.sparkline') ? Number(card.querySelector('svg.sparkline').dataset.points) : 0,
    }))""")
    assert {c["metric"] for c in cards} == catalog and len(cards) == len(catalog)
    compared = 0
    for card in cards:
        row = whole_company(api(served, f"/metrics/{card['metric']}/series?period={PERIOD}&compare=both"))
        assert same(number(card["value"]), row["value"]), card["metric"]
        assert card["visible"] and card["shown"]
        for kind in ("previous", "year_ago"):
            expected = (row.get(kind) or {}).get("change")
            assert same(number(card["changes"].get(kind)), expected), (card["metric"], kind)
        assert card["status"] == (row["target"]["status"] or "none" if row.get("target") else None), card["metric"]
        compared += row["value"] is not None
    assert compared >= 25  # the demo company gives most KPIs a value
    by_id = {c["metric"]: c for c in cards}
    assert by_id["win_rate"]["status"] == "at_risk" and by_id["net_new_revenue"]["status"] == "achieved"
    assert by_id["win_rate"]["points"] == 12  # a sparkline of the last 12 months, each with a value
    assert page.locator("#freshness tr[data-connector=demo] td").first.get_attribute("data-last-success")
    screenshot(page, "dashboard-overview")
    assert watch.left == [] and all(url.startswith(served) for url in watch.seen)
    watch.context.close()


def test_kpi_page_chart_breakdown_sorting_and_explain(browser, served):
    watch, page = logged_in(browser, served)
    page.click("article.card[data-metric=net_new_revenue] h3 a")
    page.wait_for_url(f"{served}/kpi/net_new_revenue")
    page.select_option("select[name=by]", "owner")
    page.click("form.controls button[type=submit]")
    page.wait_for_url("**/kpi/net_new_revenue?*by=owner*")

    # The chart: a point per month of the trend, each the API's value for that month.
    months = api(served, "/metrics/net_new_revenue/series?period=2025-01-01..2025-12-31&grain=month")
    dots = page.eval_on_selector_all("#trend svg.chart circle.dot",
                                     "dots => dots.map(d => [d.dataset.period, Number(d.dataset.value)])")
    assert [label for label, _ in dots] == [r["period"] for r in months] and len(dots) == 12
    for (_, value), row in zip(dots, months):
        assert value == pytest.approx(row["value"], rel=1e-9)
    assert page.locator("#trend svg.chart polyline.target").count() >= 1  # the 450,000 target's monthly share

    # The breakdown of an additive metric sums to its total, and each row is the API's value for the owner.
    total = number(page.get_attribute("article.card", "data-value"))
    rows = page.eval_on_selector_all("#breakdown tbody tr", "rows => rows.map(r => [r.dataset.segment, "
                                                             "r.dataset.value, r.querySelector('th').innerText])")
    assert len(rows) >= 5
    assert sum(number(v) or 0 for _, v, _ in rows) == pytest.approx(total, rel=1e-9)
    split = {json.dumps(r["segment"], sort_keys=True): r["value"]
             for r in api(served, f"/metrics/net_new_revenue/series?period={PERIOD}&segment=owner")}
    assert {s: number(v) for s, v, _ in rows} == pytest.approx(split, rel=1e-9)
    values = [number(v) for _, v, _ in rows]
    assert values == sorted(values, key=lambda v: (v is None, -(v or 0)))  # highest first
    assert page.locator("#breakdown .multiple").count() == len(rows)  # a small trend per owner

    page.click("#breakdown thead th >> text=owner")  # sorted by name
    names = page.eval_on_selector_all("#breakdown tbody th", "cells => cells.map(c => c.innerText)")
    assert names == sorted(names, key=str.casefold) and sorted(names) == sorted(n for _, _, n in rows)
    page.click("#breakdown thead th >> text=owner")  # again: reversed
    assert page.eval_on_selector_all("#breakdown tbody th", "cells => cells.map(c => c.innerText)") == names[::-1]

    # Explain a row: the value behind it, and the records it counted.
    first_segment, first_value, _ = rows[0]
    page.click(f"#breakdown tbody tr[data-segment='{first_segment}'] >> text=explain")
    assert number(page.get_attribute("#explain .value-line", "data-value")) == pytest.approx(number(first_value))
    assert page.locator("#explain table[data-table=subscriptions] tbody tr").count() >= 1
    screenshot(page, "dashboard-kpi-net_new_revenue")
    assert watch.left == []
    watch.context.close()


def test_the_segment_filter_shows_that_segments_cells(browser, served):
    watch, page = logged_in(browser, served)
    page.select_option("select[name=segment]", "team=emea")
    page.click("form.controls button[type=submit]")
    page.wait_for_url("**/?*segment=team*")
    assert "team: emea" in page.inner_text("h1")
    split = api(served, f"/metrics/win_rate/series?period={PERIOD}&segment=team&compare=both")
    [emea] = [r for r in split if r["segment"] == {"team": "emea"}]
    card = page.locator("article.card[data-metric=win_rate]")
    assert number(card.get_attribute("data-value")) == pytest.approx(emea["value"], rel=1e-9)
    assert number(card.locator(".change[data-kind=previous]").get_attribute("data-change")) == \
        pytest.approx(emea["previous"]["change"], rel=1e-9)
    card.locator("h3 a").click()  # the KPI page keeps the filter
    page.wait_for_url(f"**/kpi/win_rate?*segment={quote('team=emea')}*")
    assert number(page.get_attribute("article.card", "data-value")) == pytest.approx(emea["value"], rel=1e-9)
    assert watch.left == []
    watch.context.close()


def test_a_wrong_period_is_one_line_above_the_controls(browser, served):
    watch, page = logged_in(browser, served)
    page.fill("input[name=period]", "2025-13")
    answer = None
    with page.expect_response(lambda r: "period=2025-13" in r.url) as answered:
        page.click("form.controls button[type=submit]")
    answer = answered.value
    assert answer.status == 422
    assert page.inner_text("[role=alert]").startswith("period '2025-13':")
    assert page.input_value("input[name=period]") == "2025-13"  # kept, to be corrected
    watch.context.close()


def test_usable_on_a_phone(browser, served):
    watch, page = logged_in(browser, served, **PHONE)
    for path, name in (("/", "phone-overview"), ("/kpi/win_rate?by=owner", "phone-kpi-win_rate")):
        page.goto(f"{served}{path}")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)  # nothing wider than the screen: no sideways scrolling
        columns = page.evaluate("new Set([...document.querySelectorAll('article.card')]"
                                ".map(c => c.getBoundingClientRect().left)).size")
        assert columns == 1  # one column of cards
        screenshot(page, name)
    assert watch.left == []
    watch.context.close()


def test_every_url_in_the_dashboard_guide_opens_without_an_error(browser, served):
    guide = (Path(__file__).resolve().parents[2] / "docs" / "dashboard.md").read_text()
    urls = re.findall(r"^\| `(/[^`]*)` \|", guide, re.M)
    assert len(urls) >= 8
    watch, page = logged_in(browser, served)
    for path in urls:
        answer = page.goto(f"{served}{path}")
        assert answer.status == 200 and page.locator("article.card").count() >= 1, path
        if "segment=team" in path and "/kpi/" not in path:  # marketing spend and syncs have no team: said once
            assert page.inner_text("[role=alert]").startswith("Some KPIs failed: cac: segment 'team' does not "
                                                              "apply to marketing_spend"), path
        else:
            assert page.locator("[role=alert]").count() == 0, path
    page.goto(f"{served}/kpi/win_rate?by=owner&explain=all")
    assert page.locator("#explain").count() == 1
    assert watch.left == []
    watch.context.close()
