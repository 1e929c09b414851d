"""Rows a value leaves out because a column it needs is empty are counted in its note, across the catalog.

A zero or a null must say why; a value computed without some rows must say how many.
"""

from __future__ import annotations

import pytest

T, F = "true", "false"
DEALS = [
    {"id": "d1", "is_closed": T, "is_won": T, "created_at": "2025-01-05T00:00:00Z", "closed_at": "2025-01-20T00:00:00Z",
     "amount": 1000, "account_id": "a1"},
    {"id": "d2", "is_closed": T, "is_won": T, "created_at": "2025-01-06T00:00:00Z", "closed_at": "2025-01-21T00:00:00Z",
     "account_id": "a1"},  # no amount
    {"id": "d3", "is_closed": T, "is_won": T, "closed_at": "2025-01-22T00:00:00Z", "amount": 500},  # no created_at
    {"id": "d4", "is_closed": T, "is_won": T, "created_at": "2025-01-07T00:00:00Z", "amount": 300},  # no closed_at
    {"id": "d5", "is_closed": F, "is_won": F, "created_at": "2025-01-08T00:00:00Z"},  # open, no amount
    {"id": "d6", "is_closed": F, "is_won": F, "amount": 700},  # open, no created_at
    {"id": "d7", "is_closed": T, "is_won": F, "created_at": "2025-01-09T00:00:00Z", "closed_at": "2025-01-25T00:00:00Z",
     "amount": 200},
]


@pytest.fixture
def gaps(kpi_any_store):
    kpi_any_store.write("deals", DEALS)
    kpi_any_store.write("leads", [{"id": "l1", "created_at": "2025-01-02T00:00:00Z"},
                                  {"id": "l2", "created_at": "2025-01-03T00:00:00Z"}, {"id": "l3"}])
    kpi_any_store.write("tickets", [
        {"id": "t1", "created_at": "2025-01-02T00:00:00Z", "resolved_at": "2025-01-03T00:00:00Z"},
        {"id": "t2", "resolved_at": "2025-01-04T00:00:00Z"}])
    kpi_any_store.write("survey_responses", [
        {"id": "r1", "survey": "nps", "score": 9, "responded_at": "2025-01-10T00:00:00Z"},
        {"id": "r2", "survey": "nps", "responded_at": "2025-01-10T00:00:00Z"},
        {"id": "r3", "score": 3, "responded_at": "2025-01-10T00:00:00Z"},
        {"id": "r4", "survey": "nps", "score": 10}])
    kpi_any_store.sync()
    return kpi_any_store


def result(kpi, metric: str, *params: str) -> tuple:
    row = kpi.one(metric, "--period", "2025-01", *(arg for p in params for arg in ("--param", p)))
    return row["value"], row["note"]


def test_deals_without_the_dates_or_amounts_a_value_needs(gaps):
    assert result(gaps, "close_rate") == (0.6, "2 deal(s) without created_at (in no period) left out")
    assert result(gaps, "win_rate") == (0.75, "1 closed deal(s) without closed_at (in no period) left out")
    assert result(gaps, "win_rate", "by=amount") == (
        pytest.approx(1500 / 1700), "1 closed deal(s) without closed_at (in no period) left out; "
                                    "1 won or lost deal(s) without amount counted as 0")
    assert result(gaps, "sales_volume") == (1500, "1 won deal(s) without amount added nothing; "
                                                   "1 won deal(s) without closed_at (in no period) left out")
    assert result(gaps, "avg_deal_size") == (750, "1 won deal(s) without amount left out; "
                                                   "1 won deal(s) without closed_at (in no period) left out")
    assert result(gaps, "sales_cycle_length") == (
        pytest.approx(15), "1 won deal(s) without created_at left out; "
                           "1 won deal(s) without closed_at (in no period) left out")
    assert result(gaps, "pipeline_value") == (
        None, "no deal with an amount was open at the end of the period; 1 open deal(s) without amount left out; "
              "1 deal(s) without created_at (never open) left out")


def test_a_zero_conversion_rate_says_no_lead_has_a_conversion_date(gaps):
    assert result(gaps, "lead_conversion_rate", "into=any") == (
        0.0, "1 lead(s) without created_at (in no period) left out; "
             "none of the 2 lead(s) created in the period has converted_at")


def test_tickets_and_responses_without_the_columns_a_value_needs(gaps):
    assert result(gaps, "avg_resolution_time") == (
        pytest.approx(24), "1 ticket resolved in the period without created_at left out")
    assert result(gaps, "ticket_volume") == (1, "1 ticket(s) without created_at (in no period) left out")
    assert result(gaps, "nps") == (100, "1 promoters, 0 passives, 0 detractors; "
                                        "1 response(s) without responded_at (in no period) left out; "
                                        "1 response(s) in the period without a survey label (give them survey: "
                                        "nps) left out; 1 nps response(s) in the period without score left out")


def test_orders_and_subscriptions_without_the_columns_a_value_needs(kpi_any_store):
    kpi_any_store.write("orders", [
        {"id": "o1", "account_id": "a1", "ordered_at": "2025-01-05T00:00:00Z", "amount": 100},
        {"id": "o2", "ordered_at": "2025-01-06T00:00:00Z", "amount": 50},  # no account
        {"id": "o3", "account_id": "a1", "amount": 70},  # no date
        {"id": "o4", "account_id": "a2", "ordered_at": "2025-01-07T00:00:00Z"},  # no amount
    ])
    kpi_any_store.write("subscriptions", [
        {"id": "s1", "account_id": "a1", "started_at": "2024-06-01T00:00:00Z", "mrr": 10},
        {"id": "s2", "started_at": "2024-06-01T00:00:00Z", "mrr": 10},  # no account
        {"id": "s3", "account_id": "a2", "mrr": 10},  # no start
    ])
    kpi_any_store.sync()
    # a1 100 and a2 0 over two years: 100 per customer
    assert result(kpi_any_store, "clv", "lifespan_years=2") == (
        100, "1 order(s) in the period without account_id left out; 1 order(s) without ordered_at (in no period) "
             "left out; 1 order(s) in the period without amount counted as 0")
    assert result(kpi_any_store, "churn_rate") == (0.0, "2 subscription(s) without account_id or started_at left out")
    assert result(kpi_any_store, "renewal_rate") == (
        None, "no subscription came up for renewal (term_end) in the period; "
              "3 subscription(s) without term_end (never up for renewal) left out")
