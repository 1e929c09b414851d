"""Rendering results as JSON, CSV and a table, and explanations; the CLI's output formats."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from crmkpi.metrics import Metric, Value
from crmkpi.report import PUBLIC, format_value, render, render_explanation

START, END = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
FRESH = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)


def metric(id: str, unit: str, title: str | None = None) -> Metric:
    return Metric(id=id, title=title or id.replace("_", " ").title(), description="", formula="a / b", unit=unit,
                  direction="higher", tables=("deals",), compute=lambda ctx: Value(None))


METRICS = {m.id: m for m in (metric("close_rate", "ratio", "Close rate"), metric("revenue", "currency"),
                             metric("cycle", "days"), metric("tickets", "count"))}


def result(metric_id: str = "close_rate", value: float | None = 0.3, **more) -> dict:
    unit = METRICS[metric_id].unit
    row = {"run_id": "r" * 32, "metric": metric_id, "period": "2024", "period_start": START, "period_end": END,
           "grain": None, "segment": {}, "segment_labels": {}, "value": value, "numerator": 3.0, "denominator": 10.0,
           "unit": unit, "currency": "EUR" if unit == "currency" else None, "note": None, "error": None,
           "params": {}, "computed_at": FRESH, "data_freshness": FRESH, "target": None}
    row.update(more)
    if "segment_labels" not in more:  # values without labels are their own labels
        row["segment_labels"] = dict(row["segment"])
    return row


def change(period: str, value, change, pct) -> dict:
    return {"period": period, "value": value, "change": change, "change_pct": pct}


def table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    return [c.strip() for c in lines[0].split("┃")], [[c.strip() for c in line.split("│")] for line in lines[2:]]


# --- JSON -------------------------------------------------------------------------------


def test_json_has_the_public_keys_only():
    [row] = json.loads(render([result()], "json", METRICS))
    assert list(row) == ["metric", "period", "period_start", "period_end", "grain", "segment", "segment_labels",
                         "value", "unit", "currency", "numerator", "denominator", "note", "error", "params",
                         "data_freshness", "run_id"]
    assert list(row) == list(PUBLIC)
    assert row["period_start"] == "2024-01-01T00:00:00+00:00" and row["data_freshness"] == "2024-06-01T12:30:00+00:00"
    assert (row["value"], row["segment"], row["grain"], row["note"], row["error"], row["currency"]) == \
        (0.3, {}, None, None, None, None)
    [revenue] = json.loads(render([result("revenue", 12.5)], "json", METRICS))
    assert (revenue["unit"], revenue["currency"]) == ("currency", "EUR")


def test_json_adds_comparisons_and_target_only_when_present():
    rows = json.loads(render([
        result(previous=change("2023", 0.6, -0.3, -0.5)),
        result(previous=change("2023", 0.6, -0.3, -0.5), year_ago=change("2023", None, None, None),
               target={"value": 0.25, "period": "2024", "direction": "higher", "status": "on_track", "gap": 0.05}),
    ], "json", METRICS))
    assert list(rows[0]) == [*PUBLIC, "previous"]
    assert list(rows[1]) == [*PUBLIC, "previous", "year_ago", "target"]
    assert rows[1]["year_ago"] == {"period": "2023", "value": None, "change": None, "change_pct": None}
    assert rows[1]["target"]["status"] == "on_track"


# --- CSV --------------------------------------------------------------------------------


BASE_COLUMNS = ["metric", "period", "period_start", "period_end", "segment", "segment_labels", "value", "unit",
                "currency", "numerator", "denominator", "note", "error"]


def test_csv_columns_and_values():
    out = render([result(segment={"owner": "u1"}, segment_labels={"owner": "Ann"}),
                  result(value=None, note="no deals", segment={"owner": None}),
                  result(value=None, numerator=None, denominator=None, error="no fx_rates rate for EUR")],
                 "csv", METRICS)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == BASE_COLUMNS
    assert rows[0] == {"metric": "close_rate", "period": "2024", "period_start": "2024-01-01T00:00:00+00:00",
                       "period_end": "2025-01-01T00:00:00+00:00", "segment": '{"owner": "u1"}',
                       "segment_labels": '{"owner": "Ann"}', "value": "0.3", "unit": "ratio", "currency": "",
                       "numerator": "3.0", "denominator": "10.0", "note": "", "error": ""}
    assert (rows[1]["segment"], rows[1]["value"], rows[1]["note"]) == ('{"owner": null}', "", "no deals")
    assert (rows[2]["value"], rows[2]["error"]) == ("", "no fx_rates rate for EUR")
    assert not out.endswith("\n")
    assert render([result()], "csv", METRICS).splitlines()[1].split(",")[4] == ""  # no segment: empty


def test_csv_adds_comparison_and_target_columns_when_requested():
    out = render([result(previous=change("2023", 0.6, -0.3, -0.5), year_ago=change("2023", 0.25, 0.05, 0.2),
                         target={"value": 0.25, "period": "2024", "direction": "higher", "status": "on_track",
                                 "gap": 0.05})], "csv", METRICS)
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert list(row) == [*BASE_COLUMNS, "previous_period", "previous_value", "previous_change", "previous_change_pct",
                         "year_ago_period", "year_ago_value", "year_ago_change", "year_ago_change_pct",
                         "target_value", "target_status"]
    assert [row[k] for k in list(row)[13:]] == ["2023", "0.6", "-0.3", "-0.5", "2023", "0.25", "0.05", "0.2",
                                                "0.25", "on_track"]
    only_previous = render([result(previous=change("2023", None, None, None))], "csv", METRICS)
    assert only_previous.splitlines() == [",".join([*BASE_COLUMNS, "previous_period", "previous_value",
                                                    "previous_change", "previous_change_pct"]),
                                          "close_rate,2024,2024-01-01T00:00:00+00:00,2025-01-01T00:00:00+00:00,,,0.3,"
                                          "ratio,,3.0,10.0,,,2023,,,"]


# --- table ------------------------------------------------------------------------------


def test_table_has_only_the_columns_in_use():
    header, rows = table_rows(render([result()], "table", METRICS))
    assert header == ["Metric", "Period", "Value", "Numerator", "Denominator", "Note"]
    assert rows == [["Close rate", "2024", "30.0%", "3", "10", ""]]
    header, _ = table_rows(render([result(segment={"owner": "u1"})], "table", METRICS))
    assert header == ["Metric", "Period", "Segment", "Value", "Numerator", "Denominator", "Note"]
    header, _ = table_rows(render([result(year_ago=change("2023", 0.2, 0.1, 0.5))], "table", METRICS))
    assert header == ["Metric", "Period", "Value", "Numerator", "Denominator", "vs year ago", "Note"]
    header, _ = table_rows(render([result(target={"value": 0.25, "status": "on_track"})], "table", METRICS))
    assert header == ["Metric", "Period", "Value", "Numerator", "Denominator", "Target", "Note"]


def test_table_with_everything():
    out = render([
        result(segment={"owner": "u1"}, previous=change("2023", 0.6, -0.3, -0.5),
               year_ago=change("2023", 0.25, 0.05, 0.2), target={"value": 0.25, "status": "on_track"}),
        result(segment={"owner": None}, value=None, numerator=0.0, denominator=0.0, note="no deals",
               previous=change("2023", 0.5, None, None), target={"value": 0.25, "status": None}),
        result(segment={"owner": "u2"}, previous=change("2023", 0.0, 0.3, None)),
    ], "table", METRICS)
    header, rows = table_rows(out)
    assert header == ["Metric", "Period", "Segment", "Value", "Numerator", "Denominator", "vs previous period",
                      "vs year ago", "Target", "Note"]
    assert rows == [
        ["Close rate", "2024", "owner=u1", "30.0%", "3", "10", "-30.0 pts (-50.0%)", "+5.0 pts (+20.0%)",
         "on track (25.0%)", ""],
        ["Close rate", "2024", "owner=(none)", "—", "0", "0", "—", "—", "— (25.0%)", "no deals"],
        ["Close rate", "2024", "owner=u2", "30.0%", "3", "10", "+30.0 pts", "—", "", ""],
    ]


@pytest.mark.parametrize("metric_id, value, numerator, change_, pct, cells", [
    ("revenue", 1234.5, 1234.5, 1234.5, 0.25, ["1,234.50 EUR", "1,234.50", "+1,234.5 EUR (+25.0%)"]),
    ("revenue", 1000000.0, 1e6, -250.0, -0.0002, ["1,000,000.00 EUR", "1,000,000", "-250 EUR (-0.0%)"]),
    ("cycle", 3.25, 13.0, -1.5, -0.3157, ["3.2 days", "13", "-1.5 days (-31.6%)"]),
    ("tickets", 1234.0, 1234.0, 12.0, None, ["1,234", "1,234", "+12"]),
])
def test_table_formats_by_unit(metric_id, value, numerator, change_, pct, cells):
    _, [row] = table_rows(render([result(metric_id, value, numerator=numerator, denominator=None,
                                         previous=change("2023", 1.0, change_, pct))], "table", METRICS))
    assert [row[2], row[3], row[5]] == cells and row[4] == ""


@pytest.mark.parametrize("value, unit, text", [
    (None, "ratio", "—"), (0.3, "ratio", "30.0%"), (1 / 3, "ratio", "33.3%"), (1.5, "ratio", "150.0%"),
    (1234.567, "currency", "1,234.57 USD"), (3.25, "days", "3.2 days"), (36.0, "hours", "36.0 hours"),
    (2.5, "months", "2.5 months"), (42.0, "score", "42.0"), (-20.0, "points", "-20.0 points"),
    (1234.5, "count", "1,234"), (None, "days", "—"),
])
def test_format_value(value, unit, text):
    assert format_value(value, unit, "USD") == text


def test_segments_show_labels_and_the_id_where_two_values_share_one():
    _, rows = table_rows(render([
        result(segment={"owner": "U1", "stage": "s9"}, segment_labels={"owner": "Ann Lee", "stage": "Demo"}),
        result(segment={"owner": "U2", "stage": "s9"}, segment_labels={"owner": "Chris", "stage": "Demo"}),
        result(segment={"owner": "U3", "stage": None}, segment_labels={"owner": "Chris", "stage": None}),
        result(segment={"owner": None, "stage": "s9"}, segment_labels={"owner": None, "stage": "Demo"}),
    ], "table", METRICS))
    assert [row[2] for row in rows] == ["owner=Ann Lee, stage=Demo", "owner=Chris (U2), stage=Demo",
                                        "owner=Chris (U3), stage=(none)", "owner=(none), stage=Demo"]


# --- explanations -------------------------------------------------------------------------


def test_render_explanation_of_a_value_without_denominator():
    explanation = {"metric": "tickets", "period": "2024-Q1", "segment": {"team": "East", "region": None},
                   "segment_labels": {"team": "East", "region": None}, "currency": None,
                   "value": Value(5.0, note="approximate"), "params": {"open": True, "days": 7}, "inputs": [
                       {"label": "tickets", "table": "tickets", "rows": 1234, "columns": ["id", "channel", "x"],
                        "first": [("t1", None, None), ("t2", "chat", None)]}]}
    lines = render_explanation(explanation, METRICS["tickets"]).splitlines()
    assert lines[:5] == ["tickets: Tickets, 2024-Q1 (team=East, region=(none))", "", "Formula: a / b",
                         "Params: open=True, days=7", "Value: 5  (approximate)"]
    assert lines[6] == "tickets: 1,234 tickets rows, the first 2:"
    # a column empty in every shown row is left out; empty cells are blank
    assert [c.strip() for c in lines[7].split("┃")] == ["id", "channel"]
    assert [[c.strip() for c in line.split("│")] for line in lines[9:]] == [["t1", ""], ["t2", "chat"]]


# --- through the CLI ----------------------------------------------------------------------


@pytest.fixture
def project(kpi, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics")
    kpi.write("deals", [
        {"id": "q1", "created_at": "2023-02-01T00:00:00Z", "is_won": True, "is_closed": True},
        {"id": "q2", "created_at": "2023-02-02T00:00:00Z", "is_won": False, "is_closed": False},
        {"id": "r1", "created_at": "2024-02-01T00:00:00Z", "is_won": True, "is_closed": True},
        {"id": "r2", "created_at": "2024-02-02T00:00:00Z", "is_won": False, "is_closed": False},
        {"id": "r3", "created_at": "2024-03-02T00:00:00Z", "is_won": False, "is_closed": False},
        {"id": "r4", "created_at": "2024-03-03T00:00:00Z", "is_won": False, "is_closed": False},
    ])
    kpi.configure("targets:\n  - {metric: close_rate, period: 2024-Q1, value: 0.27}\n")
    kpi.sync()
    return kpi


def test_cli_json_keys_follow_what_was_asked(project):
    [plain] = project.run("close_rate", "--period", "2024-Q1", "--no-save")
    assert list(plain) == [*PUBLIC, "target"]
    [row] = project.run("close_rate", "--period", "2024-Q1", "--compare", "both", "--no-save")
    assert list(row) == [*PUBLIC, "previous", "year_ago", "target"]
    assert (row["value"], row["previous"]["value"], row["year_ago"]["value"]) == (0.25, None, 0.5)
    assert row["year_ago"] == {"period": "2023-Q1", "value": 0.5, "change": -0.25, "change_pct": -0.5}
    assert row["target"] == {"value": 0.27, "period": "2024-Q1", "direction": "higher", "status": "at_risk",
                             "gap": pytest.approx(-0.02)}
    assert len(row["run_id"]) == 32 and row["data_freshness"].endswith("+00:00")
    [other] = project.run("close_rate", "--period", "2024-02", "--compare", "previous", "--no-save")
    assert list(other) == [*PUBLIC, "previous"]


def test_cli_csv_and_table_follow_what_was_asked(project):
    out = project.invoke("run", "--metric", "close_rate", "--period", "2024-Q1", "--compare", "year_ago",
                         "--format", "csv", "--no-save").stdout
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert list(row) == [*BASE_COLUMNS, "year_ago_period", "year_ago_value", "year_ago_change",
                         "year_ago_change_pct", "target_value", "target_status"]
    assert [row[k] for k in list(row)[13:]] == ["2023-Q1", "0.5", "-0.25", "-0.5", "0.27", "at_risk"]
    out = project.invoke("run", "--metric", "close_rate", "--period", "2024-Q1", "--compare", "year_ago",
                         "--no-save").stdout
    header, rows = table_rows(out)
    assert header == ["Metric", "Period", "Value", "Numerator", "Denominator", "vs year ago", "Target", "Note"]
    assert rows == [["Close rate", "2024-Q1", "25.0%", "1", "4", "-25.0 pts (-50.0%)", "at risk (27.0%)", ""]]
