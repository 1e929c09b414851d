"""The metric engine end to end: series by grain, comparisons, money conversion, persistence.

Everything runs through the real CLI (``crmkpi sync`` and ``crmkpi run``) over CSV files, on
SQLite and on PostgreSQL. The deals are few and hand-made so every value is checked by hand.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, date, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from conftest import KpiProject, store_url_for
from crmkpi.cli import cli
from crmkpi.engine import Run, Settings, comparison, run_metrics
from crmkpi.errors import ConfigError, MetricError
from crmkpi.metrics import Converted, Metric, MetricContext, Value, ratio
from crmkpi.models import MetricResult
from crmkpi.periods import Calendar
from crmkpi.report import render
from crmkpi.store import Store


def deal(id: str, created: str, outcome: str = "open", **more) -> dict:
    """A deal row; ``outcome`` is won, lost or open."""
    return {"id": id, "created_at": created, "is_closed": outcome != "open", "is_won": outcome == "won",
            "closed_at": more.pop("closed_at", ""), "amount": more.pop("amount", ""),
            "currency": more.pop("currency", ""), "is_deleted": more.pop("is_deleted", False), **more}


# Close rate by creation month (live deals only):
#   2023-Q2: 1 won of 4 -> 0.25; 2023-Q1, Q3, Q4: no deals
#   2024-01: 2/2   2024-02: none (a deleted won deal only)   2024-03: 1/3 (one created 23:00 UTC on the 31st)
#   2024-04: 1/4   2024-05: none   2024-06: 2/6   2024-07: 0/1   2024-10: 1/1   others: none
#   2024-Q1: 3/5 = 0.6   Q2: 3/10 = 0.3   Q3: 0/1 = 0.0   Q4: 1/1 = 1.0
CLOSE_RATE_DEALS = [
    deal("p1", "2023-04-10T00:00:00Z", "won"), deal("p2", "2023-05-10T00:00:00Z", "lost"),
    deal("p3", "2023-06-10T00:00:00Z"), deal("p4", "2023-06-20T00:00:00Z"),
    deal("j1", "2024-01-05T10:00:00Z", "won"), deal("j2", "2024-01-20T00:00:00Z", "won"),
    deal("f1", "2024-02-10T00:00:00Z", "won", is_deleted=True),
    deal("m1", "2024-03-01T00:00:00Z", "won"), deal("m2", "2024-03-10T00:00:00Z", "lost"),
    deal("m3", "2024-03-31T23:00:00Z"),
    deal("a1", "2024-04-01T00:00:00Z", "won"), deal("a2", "2024-04-02T00:00:00Z", "lost"),
    deal("a3", "2024-04-15T00:00:00Z"), deal("a4", "2024-04-30T23:59:59Z"),
    deal("n1", "2024-06-01T00:00:00Z", "won"), deal("n2", "2024-06-05T00:00:00Z", "won"),
    deal("n3", "2024-06-10T00:00:00Z", "lost"), deal("n4", "2024-06-11T00:00:00Z", "lost"),
    deal("n5", "2024-06-20T00:00:00Z"), deal("n6", "2024-06-30T12:00:00Z"),
    deal("jul1", "2024-07-15T00:00:00Z", "lost"),
    deal("o1", "2024-10-01T00:00:00Z", "won"),
]

# Win rate by amount, cohort=closed, in 2022 (created there too, far from the close-rate deals):
#   EUR: 1.1 from 2022-01-01, 1.2 from 2022-03-01 (a deleted 5.0 from 2022-02-01 is ignored)
#   GBP: 1.25 from 2022-01-01; CHF: 0.9 from 2022-09-01 only; SEK: a deleted rate only
#   Q1: won  w1 EUR 1000 on 02-15 -> 1100, w2 EUR 1000 on 03-01 00:00 -> 1200, w3 USD 500 -> 500   = 2800
#       lost l1 no currency 700 -> 700, l2 GBP 400 -> 500, l3 EUR 100 on 02-28 23:59 -> 110       = 1310
#       a deleted JPY deal (no rate at all) is ignored
#   Q3: CHF deals closed on 07-05 and 08-20, before CHF's first rate -> error naming 2022-07-05
#   Q4: a SEK deal on 10-10 (its only rate is deleted) -> error; a CHF deal on 11-01 converts
MONEY_DEALS = [
    deal("w1", "2022-01-02T00:00:00Z", "won", closed_at="2022-02-15T12:00:00Z", amount=1000, currency="EUR"),
    deal("w2", "2022-01-02T00:00:00Z", "won", closed_at="2022-03-01T00:00:00Z", amount=1000, currency="EUR"),
    deal("w3", "2022-01-02T00:00:00Z", "won", closed_at="2022-01-10T00:00:00Z", amount=500, currency="USD"),
    deal("l1", "2022-01-02T00:00:00Z", "lost", closed_at="2022-02-01T00:00:00Z", amount=700),
    deal("l2", "2022-01-02T00:00:00Z", "lost", closed_at="2022-03-20T00:00:00Z", amount=400, currency="GBP"),
    deal("l3", "2022-01-02T00:00:00Z", "lost", closed_at="2022-02-28T23:59:00Z", amount=100, currency="EUR"),
    deal("x1", "2022-01-02T00:00:00Z", "won", closed_at="2022-02-02T00:00:00Z", amount=999, currency="JPY",
         is_deleted=True),
    deal("c1", "2022-01-02T00:00:00Z", "won", closed_at="2022-08-20T00:00:00Z", amount=1000, currency="CHF"),
    deal("c2", "2022-01-02T00:00:00Z", "lost", closed_at="2022-07-05T09:00:00Z", amount=1000, currency="CHF"),
    deal("c3", "2022-01-02T00:00:00Z", "won", closed_at="2022-11-01T00:00:00Z", amount=1000, currency="CHF"),
    deal("s1", "2022-01-02T00:00:00Z", "won", closed_at="2022-10-10T00:00:00Z", amount=1000, currency="SEK"),
]
FX_RATES = [
    {"id": "eur1", "currency": "EUR", "rate_to_reporting": 1.1, "valid_from": "2022-01-01", "is_deleted": False},
    {"id": "eur2", "currency": "EUR", "rate_to_reporting": 1.2, "valid_from": "2022-03-01", "is_deleted": False},
    {"id": "eur3", "currency": "EUR", "rate_to_reporting": 5.0, "valid_from": "2022-02-01", "is_deleted": True},
    {"id": "gbp1", "currency": "GBP", "rate_to_reporting": 1.25, "valid_from": "2022-01-01", "is_deleted": False},
    {"id": "chf1", "currency": "CHF", "rate_to_reporting": 0.9, "valid_from": "2022-09-01", "is_deleted": False},
    {"id": "sek1", "currency": "SEK", "rate_to_reporting": 0.1, "valid_from": "2022-01-01", "is_deleted": True},
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One synced project per store, shared by this module's tests (they only add metric_results)."""
    folder = tmp_path_factory.mktemp(f"engine-{request.param}")
    with store_url_for(request.param, folder, request) as url:
        kpi = KpiProject(folder / "kpi", url)
        kpi.write("deals", CLOSE_RATE_DEALS + MONEY_DEALS)
        kpi.write("fx_rates", FX_RATES)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics")
            kpi.sync()
        yield kpi


def stored_results(kpi: KpiProject, run_id: str) -> list[MetricResult]:
    store = Store(kpi.store)
    try:
        with store.engine.connect() as conn:
            t = MetricResult.__table__
            return conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.period_start)).all()
    finally:
        store.engine.dispose()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- series by grain ----------------------------------------------------------------


MONTHS_2024 = [  # (label, value, numerator, denominator)
    ("2024-01", 1.0, 2, 2), ("2024-02", None, 0, 0), ("2024-03", 1 / 3, 1, 3), ("2024-04", 0.25, 1, 4),
    ("2024-05", None, 0, 0), ("2024-06", 2 / 6, 2, 6), ("2024-07", 0.0, 0, 1), ("2024-08", None, 0, 0),
    ("2024-09", None, 0, 0), ("2024-10", 1.0, 1, 1), ("2024-11", None, 0, 0), ("2024-12", None, 0, 0),
]


def test_a_year_by_month_is_twelve_results_in_order_with_empty_months(project):
    results = project.run("close_rate", "--period", "2024", "--grain", "month")
    assert [(r["period"], r["value"], r["numerator"], r["denominator"]) for r in results] == \
        [(label, pytest.approx(v) if v else v, n, d) for label, v, n, d in MONTHS_2024]
    assert all(r["grain"] == "month" and r["segment"] == {} for r in results)
    assert [r["note"] for r in results if r["value"] is None] == ["no deals created in the period"] * 6
    assert [r["note"] for r in results if r["value"] is not None] == [None] * 6
    assert results[0]["period_start"] == "2024-01-01T00:00:00+00:00"
    assert results[0]["period_end"] == "2024-02-01T00:00:00+00:00"
    assert results[-1]["period_end"] == "2025-01-01T00:00:00+00:00"
    assert len({r["run_id"] for r in results}) == 1

    stored = stored_results(project, results[0]["run_id"])
    assert len(stored) == 12
    assert [(r.period_start, r.period_end) for r in stored] == \
        [(utc(2024, m, 1), utc(2024 + (m == 12), m % 12 + 1, 1)) for m in range(1, 13)]
    assert {(r.metric, r.grain, r.unit) for r in stored} == {("close_rate", "month", "ratio")}
    assert [r.value for r in stored] == [pytest.approx(v) if v else v for _, v, _, _ in MONTHS_2024]
    assert [r.note for r in stored][:2] == [None, "no deals created in the period"]


def test_a_month_by_week_clips_the_edge_weeks(project):
    # March 2024 starts on a Friday; the deal created 23:00 UTC on the 31st is in the last week (W13)
    results = project.run("close_rate", "--period", "2024-03", "--grain", "week", "--no-save")
    assert [(r["period"], r["value"], r["denominator"], r["grain"]) for r in results] == [
        ("2024-03-01..2024-03-03", 1.0, 1, "week"),
        ("2024-W10", 0.0, 1, "week"),
        ("2024-W11", None, 0, "week"),
        ("2024-W12", None, 0, "week"),
        ("2024-W13", 0.0, 1, "week"),
    ]
    assert results[0]["period_end"] == "2024-03-04T00:00:00+00:00"


def test_the_reporting_timezone_moves_a_deal_into_the_next_month(project):
    project.configure("reporting:\n  timezone: Europe/Berlin\n")
    try:
        results = project.run("close_rate", "--period", "2024-Q1", "--grain", "month", "--no-save")
    finally:
        project.configure()
    # m3 (23:00 UTC on 31 March) is 1 April in Berlin
    assert [(r["period"], r["numerator"], r["denominator"]) for r in results] == \
        [("2024-01", 2, 2), ("2024-02", 0, 0), ("2024-03", 1, 2)]
    assert results[2]["period_end"] == "2024-03-31T22:00:00+00:00"  # midnight in Berlin (summer time)


# --- comparisons --------------------------------------------------------------------


def test_compare_both_over_quarters(project):
    results = project.run("close_rate", "--period", "2024", "--grain", "quarter", "--compare", "both")
    assert [r["period"] for r in results] == ["2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4"]
    q1, q2, q3, q4 = results
    # Q1 0.6: 2023-Q4 and 2023-Q1 have no deals -> no value, no change
    assert q1["value"] == pytest.approx(0.6)
    assert q1["previous"] == {"period": "2023-Q4", "value": None, "change": None, "change_pct": None}
    assert q1["year_ago"] == {"period": "2023-Q1", "value": None, "change": None, "change_pct": None}
    # Q2 0.3: previous 0.6 -> -0.30 (a fraction, not points), -50%; a year ago 0.25 -> +0.05, +20%
    assert q2["value"] == pytest.approx(0.3)
    assert q2["previous"] == {"period": "2024-Q1", "value": pytest.approx(0.6), "change": pytest.approx(-0.3),
                              "change_pct": pytest.approx(-0.5)}
    assert q2["year_ago"] == {"period": "2023-Q2", "value": 0.25, "change": pytest.approx(0.05),
                              "change_pct": pytest.approx(0.2)}
    # Q3 0.0: -0.30, -100%; no deals a year earlier
    assert q3["previous"] == {"period": "2024-Q2", "value": pytest.approx(0.3), "change": pytest.approx(-0.3),
                              "change_pct": pytest.approx(-1.0)}
    assert q3["year_ago"]["value"] is None and q3["year_ago"]["change"] is None
    # Q4 1.0 after 0.0: the change is +1.0 but there is no relative change from zero
    assert q4["previous"] == {"period": "2024-Q3", "value": 0.0, "change": 1.0, "change_pct": None}
    assert q4["year_ago"] == {"period": "2023-Q4", "value": None, "change": None, "change_pct": None}


def test_compare_previous_only_and_a_null_current_value(project):
    results = project.run("close_rate", "--period", "2024-04-01..2024-05-31",
                          "--grain", "month", "--compare", "previous", "--no-save")
    assert [r["period"] for r in results] == ["2024-04", "2024-05"]
    april, may = results
    assert "year_ago" not in april and "year_ago" not in may
    assert april["previous"] == {"period": "2024-03", "value": pytest.approx(1 / 3),
                                 "change": pytest.approx(0.25 - 1 / 3), "change_pct": pytest.approx(-0.25)}
    # May has no deals: its previous value is shown, but there is no change
    assert may["value"] is None
    assert may["previous"] == {"period": "2024-04", "value": 0.25, "change": None, "change_pct": None}


def test_compare_year_ago_of_a_range_and_a_clipped_part(project):
    results = project.run("close_rate", "--period", "2024-06-15..2024-07-31", "--grain", "month",
                          "--compare", "year_ago", "--no-save")
    # 2024-06-15..30: n5, n6 (open) -> 0/2; a year earlier (2023-06-15..30): p4 (open) -> 0/1
    assert [(r["period"], r["value"], r["year_ago"]["period"], r["year_ago"]["value"]) for r in results] == [
        ("2024-06-15..2024-06-30", 0.0, "2023-06-15..2023-06-30", 0.0),
        ("2024-07", 0.0, "2023-07", None),
    ]
    assert results[0]["year_ago"]["change"] == 0.0 and results[0]["year_ago"]["change_pct"] is None
    assert "previous" not in results[0]


def test_comparison_table_shows_points_for_ratios(project):
    result = project.invoke("run", "--metric", "close_rate", "--period", "2024", "--grain", "quarter",
                            "--compare", "both", "--no-save")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "vs previous period" in lines[0] and "vs year ago" in lines[0]
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")] for line in lines[2:]}
    assert rows["2024-Q1"][2:] == ["60.0%", "3", "5", "—", "—", ""]
    assert rows["2024-Q2"][2:] == ["30.0%", "3", "10", "-30.0 pts (-50.0%)", "+5.0 pts (+20.0%)", ""]
    assert rows["2024-Q3"][2:] == ["0.0%", "0", "1", "-30.0 pts (-100.0%)", "—", ""]
    assert rows["2024-Q4"][2:] == ["100.0%", "1", "1", "+100.0 pts", "—", ""]


def test_comparison_arithmetic():
    period = Calendar().parse("2024-Q1", today=date(2024, 5, 1))
    assert comparison(Value(200.0), Value(150.0), period) == \
        {"period": "2024-Q1", "value": 200.0, "change": -50.0, "change_pct": -0.25}
    # a negative earlier value: the relative change is against its size
    assert comparison(Value(-40.0), Value(-10.0), period)["change_pct"] == 0.75
    assert comparison(Value(None), Value(1.0), period)["change"] is None
    assert comparison(Value(1.0), Value(None), period) == \
        {"period": "2024-Q1", "value": 1.0, "change": None, "change_pct": None}
    assert comparison(Value(0.0), Value(5.0), period) == \
        {"period": "2024-Q1", "value": 0.0, "change": 5.0, "change_pct": None}


# --- money ----------------------------------------------------------------------------


def test_win_rate_by_amount_converts_each_row_at_its_dated_rate(project):
    result = project.one("win_rate", "--period", "2022-Q1", "--param", "by=amount", "--param", "cohort=closed",
                         "--no-save")
    assert result["numerator"] == pytest.approx(2800)
    assert result["denominator"] == pytest.approx(2800 + 1310)
    assert result["value"] == pytest.approx(2800 / 4110)
    assert result["params"] == {"by": "amount", "cohort": "closed"}
    months = project.run("win_rate", "--period", "2022-Q1", "--grain", "month", "--param", "by=amount",
                         "--param", "cohort=closed", "--no-save")
    # January: w3 (USD) alone; February: w1 at 1.1, l1 unconverted, l3 at 1.1; March: w2 at 1.2, l2 at 1.25
    assert [(r["numerator"], r["denominator"]) for r in months] == \
        [(500, 500), (pytest.approx(1100), pytest.approx(1100 + 700 + 110)),
         (pytest.approx(1200), pytest.approx(1200 + 500))]


@pytest.mark.parametrize("period, currency, day", [("2022-Q3", "CHF", "2022-07-05"), ("2022-Q4", "SEK", "2022-10-10"),
                                                   ("2022", "CHF", "2022-07-05")])
def test_a_missing_rate_fails_the_metric_naming_currency_and_date(project, period, currency, day):
    [row], summary = project.run_failing("win_rate", "--period", period, "--param", "by=amount",
                                         "--param", "cohort=closed")
    error = f"no fx_rates rate for {currency} on or before {day} (rates convert to the reporting currency USD)"
    assert (row["value"], row["numerator"], row["note"], row["error"]) == (None, None, None, error)
    assert summary == f"win_rate: {error}; no result computed"


@pytest.fixture
def rateless_in_march(kpi_any_store):
    """GBP rows in March 2025, whose first GBP rate is valid from April."""
    kpi = kpi_any_store
    kpi.write("deals", [
        {"id": "usd", "is_closed": "true", "is_won": "true", "created_at": "2025-02-01T00:00:00Z",
         "closed_at": "2025-03-10T00:00:00Z", "amount": 100, "currency": "USD", "account_id": "a1"},
        {"id": "gbp", "is_closed": "true", "is_won": "true", "created_at": "2025-02-02T00:00:00Z",
         "closed_at": "2025-03-12T00:00:00Z", "amount": 50, "currency": "GBP", "account_id": "a2"},
        {"id": "open", "is_closed": "false", "is_won": "false", "created_at": "2025-03-03T00:00:00Z",
         "amount": 70, "currency": "GBP", "account_id": "a2"},
        {"id": "april", "is_closed": "true", "is_won": "true", "created_at": "2025-03-04T00:00:00Z",
         "closed_at": "2025-04-02T00:00:00Z", "amount": 40, "currency": "GBP", "account_id": "a1"}])
    kpi.write("subscriptions", [{"id": "s1", "account_id": "a3", "started_at": "2025-03-05T00:00:00Z", "mrr": 10,
                                 "currency": "GBP"}])
    kpi.write("marketing_spend", [{"id": "m1", "spent_on": "2025-03-01", "amount": 100, "channel": "web"}])
    kpi.write("fx_rates", [{"id": "gbp", "currency": "GBP", "valid_from": "2025-04-01", "rate_to_reporting": 1.25}])
    kpi.sync()
    return kpi


@pytest.mark.parametrize("metric, day", [("sales_volume", "2025-03-12"), ("avg_deal_size", "2025-03-12"),
                                         ("marketing_roi", "2025-03-12"), ("pipeline_value", "2025-03-31"),
                                         ("net_new_revenue", "2025-03-05")])
def test_a_rate_checked_in_the_metrics_own_scan_fails_as_a_separate_check_would(rateless_in_march, metric, day):
    """The metrics that count rows without a rate in the query of their sum name the currency and first date."""
    error = f"no fx_rates rate for GBP on or before {day} (rates convert to the reporting currency USD)"
    params = ("--param", "attribution=all") if metric == "marketing_roi" else ()
    assert rateless_in_march.error(metric, "--period", "2025-03", *params) == error
    # rows without a rate outside the period's rows fail nothing: April's are converted
    assert rateless_in_march.one("pipeline_value", "--period", "2025-04")["value"] == pytest.approx(70 * 1.25)
    assert rateless_in_march.one("sales_volume", "--period", "2025-04")["value"] == pytest.approx(40 * 1.25)


def test_a_count_of_rows_without_a_rate_is_never_ignored():
    """Should the detailed check find nothing (the rows changed in between), the count alone fails the value."""
    converted = Converted(amount=None, unconverted=None, refuse=lambda: None, conn=None)
    converted.check(0)
    with pytest.raises(MetricError, match=r"^2 row\(s\) have no fx_rates rate to convert them to the reporting "
                                          r"currency$"):
        converted.check(2)


def test_money_by_row_through_a_metric_context(project):
    store = Store(project.store)
    try:
        with store.engine.connect() as conn:
            period = Calendar().parse("2022-Q1", today=date(2024, 1, 1))
            start, end = period.bounds()
            ctx = MetricContext(conn, period, start, end, {}, "USD")
            deals = ctx.table("deals")
            where = (ctx.in_period(deals.c.closed_at),)
            converted = ctx.money(deals, deals.c.amount, deals.c.closed_at, *where)
            rows = dict(conn.execute(select(deals.c.id, converted).where(*ctx.scope(deals), *where)).all())
            assert rows == {"w1": pytest.approx(1100), "w2": pytest.approx(1200), "w3": 500, "l1": 700,
                            "l2": pytest.approx(500), "l3": pytest.approx(110)}
            # in another reporting currency, USD rows need a rate of their own
            ctx = MetricContext(conn, period, start, end, {}, "EUR")
            with pytest.raises(MetricError, match=r"^no fx_rates rate for USD on or before 2022-01-10 "
                                                  r"\(rates convert to the reporting currency EUR\)$"):
                ctx.money(deals, deals.c.amount, deals.c.closed_at, *where)
    finally:
        store.engine.dispose()


# --- a failing metric does not stop the others --------------------------------------------


@pytest.fixture
def failing(kpi, install, monkeypatch) -> KpiProject:
    """A month without the EUR rate win_rate by amount needs, and a third-party metric whose compute raises."""
    install("acme-metrics", "1.0", {"acme": "raising_metric"})
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics,acme")
    kpi.write("deals", [
        deal("d1", "2024-01-05T00:00:00Z", "won", closed_at="2024-02-01T00:00:00Z", amount=1000, currency="EUR"),
        deal("d2", "2024-01-10T00:00:00Z", "lost", closed_at="2024-03-01T00:00:00Z", amount=500, currency="USD"),
    ])
    kpi.write("fx_rates", [{"id": "eur", "currency": "EUR", "rate_to_reporting": 1.1, "valid_from": "2024-02-15"}])
    kpi.sync()
    return kpi


FAILING_RUN = ("--metric", "close_rate", "--metric", "win_rate", "--metric", "weighted_pipeline", "--param",
               "win_rate.by=amount", "--param", "win_rate.cohort=closed", "--period", "2024-Q1", "--grain", "month")
NO_EUR_RATE = "no fx_rates rate for EUR on or before 2024-02-01 (rates convert to the reporting currency USD)"


def test_a_failing_metric_leaves_its_error_on_its_rows_and_the_others_are_computed_and_saved(failing):
    results, summary = failing.run_failing(None, *FAILING_RUN)
    assert [(r["metric"], r["period"], r["value"], r["error"]) for r in results] == [
        ("close_rate", "2024-01", 0.5, None),
        ("close_rate", "2024-02", None, None),
        ("close_rate", "2024-03", None, None),
        ("win_rate", "2024-01", None, None),
        ("win_rate", "2024-02", None, NO_EUR_RATE),
        ("win_rate", "2024-03", 0.0, None),
        ("weighted_pipeline", "2024-01", None, "KeyError: 'segment_weights'"),
        ("weighted_pipeline", "2024-02", None, "KeyError: 'segment_weights'"),
        ("weighted_pipeline", "2024-03", None, "KeyError: 'segment_weights'"),
    ]
    assert summary == f"win_rate: {NO_EUR_RATE}; 1 more metric failed (weighted_pipeline); " \
                      "5 other results computed and saved"
    saved = stored_results(failing, results[0]["run_id"])
    assert sorted((r.metric, r.period_start.month) for r in saved) == \
        [("close_rate", 1), ("close_rate", 2), ("close_rate", 3), ("win_rate", 1), ("win_rate", 3)]


def test_csv_and_the_table_carry_the_error_of_each_row(failing):
    result = failing.invoke("run", *FAILING_RUN, "--no-save", "--format", "csv")
    assert result.exit_code == 3
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["metric"], r["period"], r["error"]) for r in rows if r["error"]] == [
        ("win_rate", "2024-02", NO_EUR_RATE), *(("weighted_pipeline", f"2024-0{m}", "KeyError: 'segment_weights'")
                                                for m in (1, 2, 3))]
    result = failing.invoke("run", *FAILING_RUN, "--no-save")
    assert result.exit_code == 3
    feb = next(line for line in result.stdout.splitlines() if "Win rate" in line and "2024-02" in line)
    assert feb.split("│")[-1].strip().startswith("ERROR: no fx_rates rate for EUR on or before 2024-02-01")
    assert result.stderr.endswith("5 other results computed\n")  # not saved


def test_a_comparison_that_fails_is_the_rows_error(failing):
    [row], summary = failing.run_failing("win_rate", "--param", "by=amount", "--param", "cohort=closed",
                                         "--period", "2024-03", "--compare", "previous")
    assert (row["value"], row["error"]) == (0.0, f"previous period (2024-02): {NO_EUR_RATE}")
    assert row["previous"] == {"period": "2024-02", "value": None, "change": None, "change_pct": None,
                               "error": NO_EUR_RATE}
    assert summary == f"win_rate: previous period (2024-02): {NO_EUR_RATE}; no result computed"


def test_debug_raises_the_first_failure_with_its_traceback(failing):
    result = CliRunner().invoke(cli, ["--debug", "run", "--config", str(failing.config), "--metric",
                                      "weighted_pipeline", "--period", "2024"])
    assert result.exit_code == 1
    cause, _, raised = result.stderr.partition("The above exception was the direct cause of the following exception")
    assert cause.startswith("Traceback (most recent call last):") and "\nKeyError: " in cause
    assert "\ncrmkpi.errors.MetricError: " in raised


# --- the engine API directly ---------------------------------------------------------


def _count_deals(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    n = ctx.count("deals created", deals, ctx.in_period(deals.c.created_at))
    return Value(float(n))


DEALS_CREATED = Metric(id="test_deals_created", title="Deals created", description="count", formula="deals",
                       unit="count", direction="higher", tables=("deals",), compute=_count_deals, additive=True)
CLOSE_RATE = Metric(id="test_close_rate", title="Close rate", description="won / created", formula="won / created",
                    unit="ratio", direction="higher", tables=("deals",),
                    compute=lambda ctx: ratio(
                        ctx.count("won", ctx.table("deals"), ctx.in_period(ctx.table("deals").c.created_at),
                                  ctx.table("deals").c.is_won.is_(True)),
                        ctx.count("all", ctx.table("deals"), ctx.in_period(ctx.table("deals").c.created_at))))


def test_run_metrics_orders_metric_then_period_and_renders(project):
    store = Store(project.store)
    try:
        period = Calendar().parse("2024-Q2", today=date(2024, 1, 1))
        results = run_metrics(store.engine, Run([DEALS_CREATED, CLOSE_RATE], period, grain="month",
                                                compare=("previous",)), Settings(), persist=False)
    finally:
        store.engine.dispose()
    assert [(r["metric"], r["period"], r["value"], r["previous"]["value"]) for r in results] == [
        ("test_deals_created", "2024-04", 4.0, 3.0),
        ("test_deals_created", "2024-05", 0.0, 4.0),
        ("test_deals_created", "2024-06", 6.0, 0.0),
        ("test_close_rate", "2024-04", 0.25, pytest.approx(1 / 3)),
        ("test_close_rate", "2024-05", None, 0.25),
        ("test_close_rate", "2024-06", pytest.approx(1 / 3), None),
    ]
    assert results[0]["previous"] == {"period": "2024-03", "value": 3.0, "change": 1.0, "change_pct": 1 / 3}
    assert results[2]["previous"]["change_pct"] is None  # from zero
    assert all(r["target"] is None for r in results)
    table = render(results, "table", {m.id: m for m in (DEALS_CREATED, CLOSE_RATE)})
    # counts change in plain numbers, ratios in points; no change to or from a null value
    changes = [line.split("│")[5].strip() for line in table.splitlines()[2:]]
    assert changes == ["+1 (+33.3%)", "-4 (-100.0%)", "+6", "-8.3 pts (-25.0%)", "—", "—"]


def test_one_cell_uses_compute_and_more_cells_the_grouped_compute(project):
    """A grouped compute fills a run of several cells; a run of one cell (one period, no comparison, no
    split) reads only its rows through ``compute``. Both give the same value."""
    grids = []

    def grouped(grid):
        grids.append(len(grid.parts))
        counts = grid.by_part(grid.table("deals"), grid.table("deals").c.created_at, func.count())
        return {cell: Value(float(counts.get(cell, (0,))[0])) for cell in grid.cells}

    counted = dataclasses.replace(DEALS_CREATED, grouped=grouped)
    store = Store(project.store)
    try:
        april = Calendar().parse("2024-04", today=date(2024, 1, 1))
        [one] = run_metrics(store.engine, Run([counted], april), persist=False)
        assert (one["value"], grids) == (4.0, [])
        [compared] = run_metrics(store.engine, Run([counted], april, compare=("previous",)), persist=False)
        assert (compared["value"], compared["previous"]["value"], grids) == (4.0, 3.0, [2])
    finally:
        store.engine.dispose()


def test_metric_errors_name_the_metric(project):
    def fails(ctx):
        raise MetricError("no such thing")

    broken = Metric(id="test_broken", title="Broken", description="", formula="", unit="count",
                    direction="higher", tables=("deals",), compute=fails)
    store = Store(project.store)
    try:
        period = Calendar().parse("2024", today=date(2024, 1, 1))
        [row] = run_metrics(store.engine, Run([broken], period), persist=False)
        assert (row["metric"], row["value"], row["error"]) == ("test_broken", None, "no such thing")
        with pytest.raises(MetricError, match=r"^test_broken: no such thing$"):
            run_metrics(store.engine, Run([broken], period), persist=False, stop_on_error=True)
        with pytest.raises(ConfigError, match=r"^--segment 'channel': does not apply to deals$"):
            run_metrics(store.engine, Run([CLOSE_RATE], period, segments=("channel",)), persist=False)
    finally:
        store.engine.dispose()


def test_progress_is_reported_as_each_metric_starts(project):
    from crmkpi.metrics_plugins.sales import METRICS

    seen: list[tuple[str, int]] = []
    store = Store(project.store)
    try:
        run_metrics(store.engine, Run(list(METRICS), Calendar().parse("2024", today=date(2025, 1, 1))),
                    persist=False, progress=lambda metric, index: seen.append((metric.id, index)))
    finally:
        store.engine.dispose()
    assert seen == [("close_rate", 0), ("win_rate", 1)]


def test_a_metric_declares_only_columns_the_store_has():
    def compute(ctx):
        return Value(1.0)

    Metric("ok", "OK", "", "", "count", "higher", ("deals",), compute, needs=("deals.is_won",))
    with pytest.raises(ValueError, match="needs 'deals.won', which is not a column of the store"):
        Metric("bad", "Bad", "", "", "count", "higher", ("deals",), compute, needs=("deals.won",))
    with pytest.raises(ValueError, match="needs 'opportunities.amount'"):
        Metric("bad", "Bad", "", "", "count", "higher", ("deals",), compute, needs=("opportunities.amount",))
