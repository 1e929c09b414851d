"""``crmkpi report``: one self-contained HTML file whose every number is the engine's.

Through the real CLI over the sample company (with a hostile region and user name mixed in),
the cards, changes, targets, sparklines, charts and breakdowns are read back from the page's
``data-*`` attributes with ``html.parser`` and compared with ``crmkpi run --format json`` for
the same cells.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import ALL_BUILTINS
from crmkpi.cli import cli
from crmkpi.present.cards import Card, Change, Progress, progress, tone
from crmkpi.present.files import PDF_EXTRA
from crmkpi.present.page import card_html
from crmkpi.present.svg import Point, runs, sparkline
from crmkpi.report import format_value, segment_text
from crmkpi.sample_data import generate

HOSTILE_REGION = "<script>alert(1)</script>"
HOSTILE_NAME = 'Eve "<b>&amp;</b>" O\'Neil'
ENV = {"CRMKPI_LOAD_PLUGINS": ALL_BUILTINS}
CONFIG = """\
store: sqlite:///{db}
reporting: {{currency: USD, timezone: UTC, default_period: "2025"}}
connectors:
  demo: {{type: files, path: data}}
targets:
  - {{metric: win_rate, value: 0.45, period: "2025"}}
  - {{metric: net_new_revenue, value: 450000, period: "2025"}}
  - {{metric: churn_rate, value: 0.15, period: "2025"}}
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), env=ENV, catch_exceptions=False)


def _rewrite(path: Path, change) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for index, row in enumerate(rows):
        change(index, row)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def company(tmp_path_factory) -> Path:
    """The sample company, synced, with a region and a user name that are markup."""
    folder = tmp_path_factory.mktemp("report")
    generate(folder / "data", seed=42, deals=2000)
    _rewrite(folder / "data" / "accounts.csv",
             lambda i, row: row.update(region=HOSTILE_REGION) if i % 7 == 0 else None)
    _rewrite(folder / "data" / "users.csv", lambda i, row: row.update(name=HOSTILE_NAME) if i == 1 else None)
    config = folder / "crmkpi.yaml"
    config.write_text(CONFIG.format(db=folder / "store.db"), encoding="utf-8")
    result = invoke("sync", "--config", str(config))
    assert result.exit_code == 0, result.output
    return config


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and all(child.attrs.get(k.rstrip("_").replace("_", "-")) == v
                                                         for k, v in attrs.items()):
                found.append(child)
            found += child.all(tag, **attrs)
        return found

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def full_text(self) -> str:
        return self.text + "".join(child.full_text() for child in self.children)


class _Tree(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(Node("#text", {}, text=data))


def parse(text: str) -> Node:
    tree = _Tree()
    tree.feed(text)
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    return tree.root


def report(config: Path, out: Path, *args: str) -> tuple[str, Node]:
    result = invoke("report", "--config", str(config), "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Wrote {out} (")
    text = out.read_text(encoding="utf-8")
    return text, parse(text)


def run_json(config: Path, *args: str) -> list[dict[str, Any]]:
    result = invoke("run", "--config", str(config), "--no-save", "--format", "json", *args)
    assert result.exit_code in (0, 3), result.output  # 3: a metric does not apply to a dimension
    return json.loads(result.stdout)


def value_of(attribute: str) -> float | None:
    return None if attribute == "" else float(attribute)


@pytest.fixture(scope="module")
def year_report(company, tmp_path_factory) -> tuple[str, Node]:
    return report(company, tmp_path_factory.mktemp("out") / "report.html", "--period", "2025", "--segment", "region")


@pytest.fixture(scope="module")
def directions() -> dict[str, str]:
    result = invoke("metrics", "list", "--json")
    return {m["id"]: m["direction"] for m in json.loads(result.stdout)}


def test_every_card_shows_the_value_run_computes_for_the_same_cell(company, year_report):
    _, page = year_report
    expected = run_json(company, "--period", "2025", "--compare", "both")
    cards = {card.attrs["data-metric"]: card for card in page.all("article", class_="card")}
    assert list(cards) == [r["metric"] for r in expected]
    for row in expected:
        card = cards[row["metric"]]
        assert value_of(card.attrs["data-value"]) == row["value"], row["metric"]
        [shown] = [p for p in card.all("p") if "value" in p.classes()]
        assert shown.full_text() == format_value(row["value"], row["unit"], row["currency"])
        if row["value"] is None:  # a null is its note, never a zero
            assert row["note"] and row["note"] in card.full_text()
        changes = {li.attrs["data-kind"]: li for li in card.all("li")}
        for kind in ("previous", "year_ago"):
            assert value_of(changes[kind].attrs["data-change"]) == row[kind]["change"], (row["metric"], kind)


def test_changes_are_coloured_by_the_metrics_direction(year_report, directions):
    _, page = year_report
    seen = set()
    for li in page.all("li"):
        if "data-change" not in li.attrs:
            continue
        change = value_of(li.attrs["data-change"])
        metric = next(c for c in page.all("article") if li in c.all("li")).attrs["data-metric"]
        wanted = "neutral" if not change else \
            "good" if (change > 0) == (directions[metric] == "higher") else "bad"
        assert li.attrs["data-tone"] == wanted and wanted in li.classes()
        seen.add((directions[metric], wanted))
    assert ("lower", "good") in seen or ("lower", "bad") in seen  # churn and costs are among them
    assert tone(-0.01, "lower") == "good" and tone(0.01, "lower") == "bad"
    assert tone(0.01, "higher") == "good" and tone(None, "higher") == tone(0.0, "lower") == "neutral"


def test_targets_show_their_status_and_the_chart_its_line(company, year_report):
    _, page = year_report
    expected = {r["metric"]: r for r in run_json(company, "--period", "2025", "-m", "win_rate", "-m",
                                                 "net_new_revenue", "-m", "churn_rate")}
    for metric, row in expected.items():
        [card] = page.all("article", data_metric=metric)
        [target] = [d for d in card.all("div") if "target" in d.classes()]
        assert target.attrs["data-status"] == row["target"]["status"]
        assert value_of(target.attrs["data-target"]) == row["target"]["value"]
        assert f"target {format_value(row['target']['value'], row['unit'], row['currency'])}" in target.full_text()
        [section] = page.all("section", data_metric=metric)
        assert section.all("polyline", **{"class": "target"}), metric
    [win] = page.all("section", data_metric="win_rate")
    [line] = win.all("polyline", **{"class": "target"})
    assert len({y for _, y in (p.split(",") for p in line.attrs["points"].split())}) == 1  # a level: flat
    [close] = page.all("article", data_metric="close_rate")
    assert not [d for d in close.all("div") if "target" in d.classes()]  # no target, no status


def test_additive_progress_paces_and_says_what_is_needed_per_day():
    result = {"unit": "count", "currency": None, "value": 40.0,
              "target": {"value": 120, "period": "2026", "direction": "higher", "expected_to_date": 60.0,
                         "remaining": 80.0, "status": "off_track", "needed_per_day": 0.4}}
    shown = progress(result)
    assert (shown.share, shown.expected_share, shown.status_text) == (1 / 3, 0.5, "off track")
    assert shown.detail == "expected by now: 60; needs 0.4 per day to reach 120"
    level = {"unit": "ratio", "currency": None, "value": 0.2,
             "target": {"value": 0.15, "period": "2025", "direction": "lower", "status": "off_track", "gap": 0.05}}
    assert progress(level).share == pytest.approx(0.75)
    assert progress(level).detail == "+5.0 pts vs target"


def test_sparklines_have_a_point_per_period_with_a_value(company, year_report):
    _, page = year_report
    series = run_json(company, "--period", "2025", "--grain", "month")
    for card in page.all("article", class_="card"):
        metric = card.attrs["data-metric"]
        values = [r["value"] for r in series if r["metric"] == metric]
        assert len(values) == 12
        [spark] = card.all("svg")
        drawn = sum(len(line.attrs["points"].split()) for line in spark.all("polyline")) \
            + len([c for c in spark.all("circle") if "lone" in c.classes()])
        assert int(spark.attrs["data-points"]) == drawn == sum(v is not None for v in values), metric
        [chart] = page.all("section", data_metric=metric)[0].all("svg")
        dots = [value_of(c.attrs["data-value"]) for c in chart.all("circle", **{"class": "dot"})]
        assert dots == [v for v in values if v is not None], metric


def test_a_null_value_is_a_gap_in_the_line_not_a_zero():
    assert runs([1.0, None, 2.0, 3.0, None]) == [[0], [2, 3]]
    page = parse(sparkline([Point("a", 1.0), Point("b", None), Point("c", 2.0), Point("d", 3.0)], str))
    [svg] = page.all("svg")
    assert svg.attrs["data-points"] == "3"
    assert [len(p.attrs["points"].split()) for p in svg.all("polyline")] == [2]
    assert len([c for c in svg.all("circle") if "lone" in c.classes()]) == 1


def test_the_breakdown_is_runs_segmented_values_with_labels_by_name(company, year_report):
    _, page = year_report
    expected = run_json(company, "--period", "2025", "--segment", "region", "--compare", "both")
    for metric in ("win_rate", "churn_rate", "net_new_revenue"):
        rows = [r for r in expected if r["metric"] == metric]
        [section] = page.all("section", data_metric=metric)
        shown = {tr.attrs["data-segment"]: tr for tr in section.all("tr") if "data-segment" in tr.attrs}
        assert set(shown) == {json.dumps(r["segment"], sort_keys=True) for r in rows}
        for row in rows:
            tr = shown[json.dumps(row["segment"], sort_keys=True)]
            assert value_of(tr.attrs["data-value"]) == row["value"]
            label = segment_text(row["segment"], row["segment_labels"]).removeprefix("region=")
            assert tr.all("th")[0].full_text() == label
        values = [value_of(tr.attrs["data-value"]) for tr in shown.values()]
        assert [v for v in values if v is not None] == sorted((v for v in values if v is not None), reverse=True)


def test_a_breakdown_by_owner_shows_names_and_says_where_it_does_not_apply(company, tmp_path):
    text, page = report(company, tmp_path / "r.html", "--period", "2025", "--segment", "owner",
                        "-m", "win_rate", "-m", "days_since_sync")
    names = [tr.all("th")[0].full_text() for tr in page.all("section", data_metric="win_rate")[0].all("tr")
             if "data-segment" in tr.attrs]
    assert HOSTILE_NAME in names and not any(name.startswith("U0") for name in names)
    [section] = page.all("section", data_metric="days_since_sync")
    assert "No breakdown: segment 'owner' does not apply to sync_runs" in section.full_text()


def test_user_data_is_escaped_everywhere(year_report):
    text, page = year_report
    assert HOSTILE_REGION not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert not page.all("script") and not page.all("b")
    labels = {tr.all("th")[0].full_text() for tr in page.all("tr") if "data-segment" in tr.attrs}
    assert HOSTILE_REGION in labels


def test_a_card_with_an_error_or_a_note_shows_it_escaped_and_no_number():
    failed = Card("m<x>", "Title <i>", "ratio", "higher", None, "2025", None, "—", "note <u>", "boom <s>", (), None)
    page = parse(card_html(failed))
    [card] = page.all("article")
    assert card.attrs["data-value"] == "" and card.attrs["data-metric"] == "m<x>"
    assert "Error: boom <s>" in card.full_text() and "note <u>" in card.full_text()
    assert "0" not in [p.full_text() for p in card.all("p")] and not page.all("i") and not page.all("s")
    change = Change("previous", "previous period", "2024", None, "—", None, "—", None, "neutral", "no fx <rate>")
    target = Progress(None, "no status", 0.5, "50.0%", "2025", None, None, "no value to compare")
    page = parse(card_html(Card("m", "T", "ratio", "higher", None, "2025", None, "—", None, None, (change,), target)))
    assert "no fx <rate>" in page.full_text() and page.all("div", data_status="none")


def test_the_file_loads_nothing_and_runs_nothing(year_report):
    text, page = year_report
    for node in page.all():
        assert node.tag not in ("script", "link", "img", "iframe", "object", "embed", "base"), node.tag
        for name in ("src", "href", "xlink:href", "action", "srcset"):
            assert node.attrs.get(name, "#").startswith("#"), (node.tag, name, node.attrs[name])
        assert not any(name.startswith("on") for name in node.attrs), node.tag
    assert "@import" not in text and "url(" not in text
    assert "http://" not in text and "https://" not in text
    [meta] = [m for m in page.all("meta") if m.attrs.get("name") == "viewport"]  # phones: responsive
    assert "width=device-width" in meta.attrs["content"] and "@media (max-width:" in text


def test_the_trend_is_the_last_twelve_parts_of_the_trend_grain(company, tmp_path):
    _, page = report(company, tmp_path / "q.html", "--period", "2025-Q4", "-m", "win_rate", "--trend-grain", "quarter")
    [chart] = page.all("section", data_metric="win_rate")[0].all("svg")
    periods = [c.attrs["data-period"] for c in chart.all("circle", **{"class": "dot"})]
    quarters = run_json(company, "-m", "win_rate", "--period", "2023-01-01..2025-12-31", "--grain", "quarter")
    assert periods == [r["period"] for r in quarters if r["value"] is not None]
    assert len(quarters) == 12 and quarters[-1]["period"] == "2025-Q4"
    [card] = page.all("article")
    assert value_of(card.attrs["data-value"]) == run_json(company, "-m", "win_rate", "--period", "2025-Q4")[0]["value"]


@pytest.mark.parametrize(("args", "message"), [
    (["--period", "2025-13"], "period '2025-13': expected 2024, 2024-Q1, 2024-03, 2024-W05, 2024-03-15, "
                              "2024-01-01..2024-03-31, this-/last-day|week|month|quarter|year, month-to-date or "
                              "last-7-days"),
    (["--period", "2025", "--segment", "regoin"], None),
    (["--period", "2025", "--metric", "nope"], None),
])
def test_bad_input_is_one_line_and_writes_nothing(company, tmp_path, args, message):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "report.html"
    out.write_text("the previous report", encoding="utf-8")
    result = invoke("report", "--config", str(company), "--out", str(out), *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output
    if message:
        assert lines[0] == f"Error: {message}"
    assert out.read_text(encoding="utf-8") == "the previous report"
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]


def test_an_unwritable_out_is_refused_before_anything_is_computed(company, tmp_path, monkeypatch):
    import crmkpi.present.build

    monkeypatch.setattr(crmkpi.present.build, "run_metrics", lambda *a, **k: pytest.fail("computed"))
    missing = tmp_path / "missing" / "r.html"
    result = invoke("report", "--config", str(company), "--out", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"Error: --out {missing}: the folder {missing.parent} does not exist\n"
    result = invoke("report", "--config", str(company), "--out", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr  # click's usage error
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = invoke("report", "--config", str(company), "--out", str(locked / "r.html"))
        assert result.stderr == f"Error: --out {locked / 'r.html'}: not writable\n"


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(company, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "report.html"
    out.write_text("the previous report", encoding="utf-8")

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    result = invoke("report", "--config", str(company), "--out", str(out), "-m", "win_rate")
    assert result.exit_code == 1 and result.stderr == f"Error: --out {out}: No space left on device\n"
    assert out.read_text(encoding="utf-8") == "the previous report"
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]


def test_pdf_without_the_extra_is_a_one_line_error(company, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import fails as if not installed
    result = invoke("report", "--config", str(company), "--out", str(tmp_path / "r.pdf"), "--format", "pdf")
    assert result.exit_code == 1 and result.stderr == f"Error: --format pdf {PDF_EXTRA}\n"
    assert not (tmp_path / "r.pdf").exists()


def test_pdf_renders_the_same_page(company, tmp_path):
    pytest.importorskip("weasyprint")
    out = tmp_path / "r.pdf"
    result = invoke("report", "--config", str(company), "--out", str(out), "--format", "pdf", "--period", "2025",
                    "-m", "win_rate", "-m", "churn_rate")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-") and len(out.read_bytes()) > 5000
