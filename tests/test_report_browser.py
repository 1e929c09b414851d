"""``crmkpi report``'s file opened in a real headless Chromium with networking off: it renders whole, on its
own, and shows the numbers ``crmkpi run`` computes for the demo company.

The parsing tests (``test_report_html.py``) check what the file holds; this one checks what a reader
sees: every card laid out and visible, every chart drawn, nothing asked of any network.
"""

from __future__ import annotations

import pytest

from browser import chromium, demo, guarded, screenshot

PERIOD = "2025-Q4"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return demo(tmp_path_factory.mktemp("report-demo"))


def test_the_report_renders_offline_with_the_engines_numbers(project, tmp_path):
    out = tmp_path / "report.html"
    project.run("report", "--config", str(project.config), "--period", PERIOD, "--segment", "team",
                "--out", str(out))
    computed = {r["metric"]: r for r in project.results("--period", PERIOD, "--compare", "both")}
    with chromium() as browser:
        watch = guarded(browser, files=True, offline=True)
        page = watch.page()
        page.goto(out.as_uri())
        cards = page.eval_on_selector_all("article.card", """cards => cards.map(card => ({
            metric: card.dataset.metric, value: card.dataset.value,
            shown: card.querySelector('.value').innerText,
            box: card.getBoundingClientRect().height,
            previous: (card.querySelector('.change[data-kind=previous]') || {dataset: {}}).dataset.change,
        }))""")
        assert {c["metric"] for c in cards} == set(computed) and len(cards) == len(computed)
        for card in cards:
            row = computed[card["metric"]]
            expected = row["value"]
            assert (card["value"] == "") if expected is None else float(card["value"]) == pytest.approx(expected), \
                card["metric"]
            assert card["box"] > 50 and card["shown"]  # laid out, with its value showing
            change = (row.get("previous") or {}).get("change")
            assert (card["previous"] in (None, "")) if change is None else \
                float(card["previous"]) == pytest.approx(change), card["metric"]
        charts = page.eval_on_selector_all("section.detail svg.chart", "svgs => svgs.map(s => "
                                           "[s.getBoundingClientRect().width, s.querySelectorAll('circle.dot').length])")
        assert len(charts) == len(computed) and all(width > 200 for width, _ in charts)
        assert max(dots for _, dots in charts) == 12  # a year of months, each with its value
        screenshot(page, "report-2025-Q4")
        assert watch.left == [] and watch.seen == [out.as_uri()]  # the file itself, and nothing else
