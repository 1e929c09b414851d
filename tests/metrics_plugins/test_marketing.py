"""Marketing KPIs (cac, cac_payback_months, cost_per_lead, cost_per_sale, marketing_roi), hand-computed.

The data set, for March 2024 (reporting currency USD; EUR is 1.1 from 2024-01-01, 1.2 from 2024-03-15):

spend in March 2024 = 3,200
  s1  2024-03-05  paid_search  1,000 USD                 -> 1,000
  s2  2024-03-20  events         500 EUR at 1.2          ->   600
  s3  2024-02-15..2024-03-15 sales 3,100 over 30 days, 15 in March -> 1,550
  s6  2024-03-25 (period_start only: one day) display 50 ->    50
  s4  2024-04-01 (April), s5 deleted: not counted
customers acquired in March (first won deal of the account closed in March) = 3
  a1 (d1), a3 (d4; d5 is its second), a5 (d8; its earlier won d7 is deleted)
  not: a2 (first won in January), a4 (lost), a6 (its only won deal is deleted), d10 (no account)
"""

from __future__ import annotations

import pytest

SPEND = [
    {"id": "s1", "spent_on": "2024-03-05", "channel": "paid_search", "campaign": "brand", "amount": 1000,
     "currency": "USD", "market": "us"},
    {"id": "s2", "spent_on": "2024-03-20", "channel": "events", "amount": 500, "currency": "EUR", "market": "eu"},
    {"id": "s3", "period_start": "2024-02-15", "period_end": "2024-03-15", "channel": "sales", "amount": 3100,
     "market": "us"},
    {"id": "s4", "spent_on": "2024-04-01", "channel": "paid_search", "amount": 9999, "market": "us"},
    {"id": "s5", "spent_on": "2024-03-10", "channel": "paid_search", "amount": 7777, "market": "us",
     "is_deleted": "true"},
    {"id": "s6", "period_start": "2024-03-25", "channel": "display", "amount": 50, "market": "eu"},
]
FX = [
    {"id": "eur1", "currency": "EUR", "rate_to_reporting": 1.1, "valid_from": "2024-01-01"},
    {"id": "eur2", "currency": "EUR", "rate_to_reporting": 1.2, "valid_from": "2024-03-15"},
]


def deal(id, account, closed, *, won=True, amount=1000, currency="USD", source=None, market=None, deleted=False):
    return {"id": id, "account_id": account, "owner_id": "u1", "amount": amount, "currency": currency,
            "is_closed": "true", "is_won": "true" if won else "false", "closed_at": closed,
            "created_at": "2023-12-01T00:00:00Z", "lead_source": source, "market": market,
            "is_deleted": "true" if deleted else "false"}


DEALS = [
    deal("d1", "a1", "2024-03-10T12:00:00Z", amount=2000, source="paid_search", market="us"),
    deal("d2", "a2", "2024-01-05T12:00:00Z", source="paid_search", market="us"),
    deal("d3", "a2", "2024-03-12T12:00:00Z", amount=1000, source="referral", market="eu"),
    deal("d4", "a3", "2024-03-02T12:00:00Z", amount=1500, currency="EUR", source="Events", market="eu"),
    deal("d5", "a3", "2024-03-20T12:00:00Z", amount=500, market="us"),
    deal("d6", "a4", "2024-03-08T12:00:00Z", won=False, amount=4000, source="paid_search"),
    deal("d7", "a5", "2024-02-01T12:00:00Z", deleted=True),
    deal("d8", "a5", "2024-03-15T12:00:00Z", amount=800, source="sales", market="us"),
    deal("d9", "a6", "2024-03-25T12:00:00Z", amount=5000, source="paid_search", deleted=True),
    deal("d10", None, "2024-03-26T12:00:00Z", amount=300, source="web"),
]
SUBSCRIPTIONS = [
    {"id": "sub1", "account_id": "a1", "mrr": 100, "started_at": "2024-03-10T00:00:00Z"},
    {"id": "sub1b", "account_id": "a1", "mrr": 50, "started_at": "2024-03-25T00:00:00Z"},   # within 30 days
    {"id": "sub1c", "account_id": "a1", "mrr": 70, "started_at": "2024-05-01T00:00:00Z"},   # later: not first month
    {"id": "sub2", "account_id": "a2", "mrr": 200, "started_at": "2023-12-01T00:00:00Z"},
    {"id": "sub3", "account_id": "a3", "mrr": 300, "currency": "EUR", "started_at": "2024-03-05T00:00:00Z"},  # 330
    {"id": "sub4", "account_id": "a7", "mrr": 80, "started_at": "2024-03-20T00:00:00Z"},
    {"id": "sub5", "account_id": "a8", "mrr": 0, "started_at": "2024-03-28T00:00:00Z"},
    {"id": "sub6", "account_id": "a9", "mrr": 999, "started_at": "2024-03-28T00:00:00Z", "is_deleted": "true"},
]
LEADS = [
    {"id": "l1", "lead_source": "web", "created_at": "2024-03-01T09:00:00Z"},
    {"id": "l2", "lead_source": "paid_search", "created_at": "2024-03-11T09:00:00Z", "market": "us"},
    {"id": "l3", "lead_source": "events", "created_at": "2024-03-31T23:00:00Z", "market": "eu"},
    {"id": "l4", "lead_source": "paid_search", "created_at": "2024-03-12T09:00:00Z", "is_deleted": "true"},
    {"id": "l5", "lead_source": "paid_search", "created_at": "2024-02-28T09:00:00Z"},
]


@pytest.fixture
def march(kpi_any_store):
    kpi = kpi_any_store
    kpi.write("marketing_spend", SPEND)
    kpi.write("fx_rates", FX)
    kpi.write("deals", DEALS)
    kpi.write("subscriptions", SUBSCRIPTIONS)
    kpi.write("leads", LEADS)
    kpi.write("accounts", [{"id": "a1", "market": "us"}, {"id": "a3", "market": "eu"}, {"id": "a5", "market": "us"}])
    kpi.sync()
    return kpi


def sides(row):
    return row["value"], row["numerator"], row["denominator"]


def test_cac_hand_computed(march):
    row = march.one("cac", "--period", "2024-03")
    assert row["value"] == pytest.approx(3200 / 3)
    # d10 has no account: it cannot make anyone a customer, and the note counts it
    assert (row["numerator"], row["denominator"], row["unit"], row["note"]) == \
        (pytest.approx(3200), 3, "currency", "1 won deal(s) closed in the period without account_id left out")
    # marketing only: leave the 'sales' rows out (1,000 + 600 + 50)
    row = march.one("cac", "--period", "2024-03", "--param", "channels=paid_search, Events,display")
    assert sides(row) == (pytest.approx(1650 / 3), pytest.approx(1650), 3)
    # first subscriptions started in March: a1, a3, a7, a8 (a9's is deleted)
    row = march.one("cac", "--period", "2024-03", "--param", "new_customer=first_subscription")
    assert sides(row) == (pytest.approx(800), pytest.approx(3200), 4)


def test_cac_counts_the_rows_that_cannot_make_a_customer(march):
    march.write("subscriptions", [*SUBSCRIPTIONS,
                                  {"id": "no_account", "mrr": 10, "started_at": "2024-03-02T00:00:00Z"},
                                  {"id": "no_start", "account_id": "a7", "mrr": 10},
                                  {"id": "deleted", "mrr": 10, "started_at": "2024-03-02T00:00:00Z", "is_deleted": "true"}])
    march.sync()
    row = march.one("cac", "--period", "2024-03", "--param", "new_customer=first_subscription")
    assert (*sides(row), row["note"]) == (pytest.approx(800), pytest.approx(3200), 4,
                                          "2 subscription(s) without account_id or started_at left out")
    # the same rows, whatever the period: they are in none
    row = march.one("cac", "--period", "2024-02", "--param", "new_customer=first_subscription")
    assert row["note"] == "no customers acquired in the period; 2 subscription(s) without account_id or started_at left out"


def test_cac_prorates_ranges_across_periods(march):
    # s3 covers 30 days: 15 in February (1,550), 15 in March; February has no other spend and no new customer
    # (d7, a5's won deal of February, is deleted); January: a2's first won deal, no spend
    rows = march.run("cac", "--period", "2024-Q1", "--grain", "month")
    assert [(r["period"], r["value"], r["numerator"], r["denominator"], r["note"]) for r in rows] == [
        ("2024-01", None, None, None, rows[0]["note"]),
        ("2024-02", None, pytest.approx(1550), 0, "no customers acquired in the period"),
        ("2024-03", pytest.approx(3200 / 3), pytest.approx(3200), 3,
         "1 won deal(s) closed in the period without account_id left out"),
    ]
    assert rows[0]["note"].startswith("no marketing spend recorded in the period")
    assert "marketing_spend.csv" in rows[0]["note"]
    # the quarter holds the whole of s3
    assert sides(march.one("cac", "--period", "2024-Q1")) == (pytest.approx(4750 / 4), pytest.approx(4750), 4)


def test_cac_segment_by_a_custom_field(march):
    rows = march.run("cac", "--period", "2024-03", "--segment", "extra.market")
    assert [(r["segment"], r["value"], r["numerator"], r["denominator"]) for r in rows] == [
        ({"extra.market": "eu"}, pytest.approx(650), pytest.approx(650), 1),      # s2 + s6; a3 (d4)
        ({"extra.market": "us"}, pytest.approx(1275), pytest.approx(2550), 2),    # s1 + s3; a1 (d1), a5 (d8)
    ]
    # spend has no owner: the error says so rather than splitting nonsense
    assert march.fails("run", "--metric", "cac", "--period", "2024-03", "--segment", "owner") == \
        "--segment 'owner': does not apply to marketing_spend"


def test_cac_payback_months(march):
    # CAC 3,200 / 3; first-month MRR: a1 100 + 50, a3 300 EUR at 1.1 = 330, a5 none -> 480 / 3 = 160
    row = march.one("cac_payback_months", "--period", "2024-03")
    assert sides(row) == (pytest.approx(3200 / 480), pytest.approx(3200 / 3), pytest.approx(160))
    assert row["unit"] == "months"
    row = march.one("cac_payback_months", "--period", "2024-03", "--param", "gross_margin=0.8")
    assert sides(row) == (pytest.approx(3200 / 384), pytest.approx(3200 / 3), pytest.approx(128))
    # first subscriptions: a1 150, a3 330, a7 80, a8 0 -> 560 / 4 = 140; CAC 800
    row = march.one("cac_payback_months", "--period", "2024-03", "--param", "new_customer=first_subscription")
    assert sides(row) == (pytest.approx(800 / 140), pytest.approx(800), pytest.approx(140))
    # segments apply to every table read: an account-level custom field reaches deals and subscriptions alike
    rows = march.run("cac_payback_months", "--period", "2024-03", "--segment", "extra.market")
    assert [(r["segment"], r["value"], r["numerator"], r["denominator"]) for r in rows] == [
        ({"extra.market": "eu"}, pytest.approx(650 / 330), pytest.approx(650), pytest.approx(330)),  # a3
        ({"extra.market": "us"}, pytest.approx(17), pytest.approx(1275), pytest.approx(75)),  # a1 150, a5 0
    ]
    assert "gross_margin: expected a fraction in (0, 1], got 1.5" in march.fails(
        "run", "--metric", "cac_payback_months", "--period", "2024-03", "--param", "gross_margin=1.5")


def test_cost_per_lead(march):
    # leads created in March: l1, l2, l3 (l4 deleted, l5 February)
    assert sides(march.one("cost_per_lead", "--period", "2024-03")) == (pytest.approx(3200 / 3),
                                                                          pytest.approx(3200), 3)
    # attribution=channel: leads from a channel with spend in March (paid_search, events, sales, display): l2, l3
    assert sides(march.one("cost_per_lead", "--period", "2024-03", "--param", "attribution=channel")) == \
        (pytest.approx(1600), pytest.approx(3200), 2)
    # one channel's cost per lead
    assert sides(march.one("cost_per_lead", "--period", "2024-03", "--param", "channels=paid_search",
                           "--param", "attribution=channel")) == (pytest.approx(1000), pytest.approx(1000), 1)
    rows = march.run("cost_per_lead", "--period", "2024-03", "--segment", "extra.market")
    assert [(r["segment"], r["value"], r["denominator"]) for r in rows] == [
        ({"extra.market": "eu"}, pytest.approx(650), 1), ({"extra.market": "us"}, pytest.approx(2550), 1)]


def test_cost_per_sale(march):
    # won in March: d1, d3, d4, d5, d8, d10 (d6 lost, d9 deleted)
    assert sides(march.one("cost_per_sale", "--period", "2024-03")) == (pytest.approx(3200 / 6),
                                                                          pytest.approx(3200), 6)
    # by lead_source (case-insensitive): d1 paid_search, d4 Events, d8 sales
    assert sides(march.one("cost_per_sale", "--period", "2024-03", "--param", "attribution=channel")) == \
        (pytest.approx(3200 / 3), pytest.approx(3200), 3)


def test_marketing_roi(march):
    # attributed won revenue: d1 2,000 + d4 1,500 EUR at 1.1 (2024-03-02) 1,650 + d8 800 = 4,450
    row = march.one("marketing_roi", "--period", "2024-03")
    assert sides(row) == (pytest.approx(1250 / 3200), pytest.approx(1250), pytest.approx(3200))
    assert row["unit"] == "ratio"
    # every won deal: + d3 1,000 + d5 500 + d10 300 = 6,250
    assert sides(march.one("marketing_roi", "--period", "2024-03", "--param", "attribution=all")) == \
        (pytest.approx(3050 / 3200), pytest.approx(3050), pytest.approx(3200))
    # on margin: 4,450 x 0.8 = 3,560
    assert march.one("marketing_roi", "--period", "2024-03", "--param", "gross_margin=0.8")["value"] == \
        pytest.approx(360 / 3200)
    # paid search alone: 2,000 won against 1,000 spent
    assert march.one("marketing_roi", "--period", "2024-03", "--param", "channels=paid_search")["value"] == \
        pytest.approx(1.0)


METRICS = ("cac", "cac_payback_months", "cost_per_lead", "cost_per_sale", "marketing_roi")


def test_empty_period_is_null_with_a_reason(kpi):
    kpi.write("marketing_spend", SPEND)
    kpi.write("fx_rates", FX)
    kpi.write("deals", DEALS)
    kpi.sync()
    rows = kpi.run(None, *(arg for m in METRICS for arg in ("--metric", m)), "--period", "2023-06")
    assert [r["metric"] for r in rows] == list(METRICS)
    for row in rows:
        assert row["value"] is None and row["note"].startswith("no marketing spend recorded in the period"), row


def test_spend_without_anything_to_divide_by(kpi):
    kpi.write("marketing_spend", SPEND)
    kpi.sync()
    # April: s4 only, nothing acquired, no leads, no sales
    assert sides(kpi.one("cac", "--period", "2024-04")) == (None, 9999, 0)
    # and each says which table is empty
    assert kpi.one("cac_payback_months", "--period", "2024-04")["note"] == \
        "no customers acquired in the period; no deals in the store; no subscriptions in the store"
    assert kpi.one("cost_per_lead", "--period", "2024-04")["note"] == \
        "no leads created in the period; no leads in the store"
    assert kpi.one("cost_per_sale", "--period", "2024-04")["note"] == \
        "no deals won in the period; no deals in the store"
    # ROI is defined: nothing won against 9,999 spent
    assert sides(kpi.one("marketing_roi", "--period", "2024-04")) == (-1.0, -9999, 9999)


def test_payback_without_subscriptions_is_null(kpi):
    kpi.write("marketing_spend", SPEND)
    kpi.write("fx_rates", FX)
    kpi.write("deals", DEALS)
    kpi.sync()
    row = kpi.one("cac_payback_months", "--period", "2024-03")
    assert row["value"] is None and row["note"] == "the new customers have no first-month MRR (subscriptions); " \
        "1 won deal(s) closed in the period without account_id left out; no subscriptions in the store"


def test_data_the_metrics_cannot_use(kpi):
    kpi.configure(files="tables: {marketing_spend: {allow: [end_before_start]}}")  # the sync would refuse it
    kpi.write("marketing_spend", [
        {"id": "ok", "spent_on": "2024-03-05", "amount": 100},
        {"id": "undated", "channel": "events", "amount": 100},
        {"id": "gbp", "spent_on": "2024-05-05", "amount": 100, "currency": "GBP"},
        {"id": "backwards", "period_start": "2024-06-30", "period_end": "2024-06-01", "amount": 100},
    ])
    kpi.write("leads", [{"id": "l1", "created_at": "2024-03-01T00:00:00Z"}])
    kpi.sync()
    row = kpi.one("cost_per_lead", "--period", "2024-03")
    assert sides(row) == (100, 100, 1)
    assert row["note"] == "1 marketing_spend rows without spent_on or period_start were left out"
    assert kpi.error("cost_per_lead", "--period", "2024-05") == \
        "no fx_rates rate for GBP on or before 2024-05-05 (rates convert to the reporting currency USD)"
    assert kpi.error("cac", "--period", "2024-06") == \
        "marketing_spend row 'backwards': period_end is before period_start"


def test_explain_lists_the_rows_behind_each_side(march):
    result = march.invoke("explain", "cac_payback_months", "--period", "2024-03")
    assert result.exit_code == 0, result.output
    assert "marketing spend in the period: 4 marketing_spend rows" in result.output
    assert "won deals that are their account's first, closed in the period: 3 deals rows" in result.output
    assert "subscriptions of the new customers started in their first 30 days: 3 subscriptions rows" in result.output
