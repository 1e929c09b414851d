"""Customer metrics (metrics_plugins/customers.py): hand-computed cases through the real CLI.

The subscription book used by most tests, over the period 2024 (customers at an instant t: a
subscription with started_at < t and ended_at null or >= t):

| account | region/owner | subscriptions (started → ended, MRR)                       | 2024            |
|---------|--------------|------------------------------------------------------------|-----------------|
| a1      | EU / u1      | 2023-01-01 → running, 100                                  | kept            |
| a2      | EU / u2      | 2023-03-01 → 2024-05-01, 50                                | lost            |
| a3      | US / u1      | 2023-06-01 → 2024-02-01, 80; 2024-02-01 → running, 120     | kept, expands   |
| a4      | US / u2      | 2022-01-01 → 2024-03-01, 40; 2024-06-01 → running, 20      | left, came back |
| a5      | EU / u1      | 2024-03-01 → 2024-09-01, 30                                | new, lost       |
| a6      | US / u2      | 2024-04-01 → running, 60                                   | new             |
| a8      | EU / u1      | 2023-01-01 → 2025-01-01, 10 (ends at the period end)       | kept            |
| a9      | US / u2      | 2024-01-01 00:00 → running, 90 EUR (starts at the start)   | new             |
| a10     | US / u1      | 2023-01-01 → 2024-06-01, deleted in the source             | ignored         |
| a11     | EU / u2      | 2023-01-01 → 2024-01-01 00:00, 10 (ends at the start)      | lost            |
| a12     | (none)       | 2024-05-01 → running, 1000, deleted in the source          | ignored         |

S (customers at start) = a1 a2 a3 a4 a8 a11 = 6; E (at end) = a1 a3 a4 a6 a8 a9 = 6;
lost = a2 a11; joined and lost = a5; new N = a5 a6 a9.
"""

from __future__ import annotations

import pytest

SUBSCRIPTIONS = [
    {"id": "s1", "account_id": "a1", "started_at": "2023-01-01", "ended_at": None, "mrr": 100},
    {"id": "s2", "account_id": "a2", "started_at": "2023-03-01", "ended_at": "2024-05-01", "mrr": 50},
    {"id": "s3", "account_id": "a3", "started_at": "2023-06-01", "ended_at": "2024-02-01", "mrr": 80},
    {"id": "s3b", "account_id": "a3", "started_at": "2024-02-01", "ended_at": None, "mrr": 120},
    {"id": "s4", "account_id": "a4", "started_at": "2022-01-01", "ended_at": "2024-03-01", "mrr": 40},
    {"id": "s4b", "account_id": "a4", "started_at": "2024-06-01", "ended_at": None, "mrr": 20},
    {"id": "s5", "account_id": "a5", "started_at": "2024-03-01", "ended_at": "2024-09-01", "mrr": 30},
    {"id": "s6", "account_id": "a6", "started_at": "2024-04-01", "ended_at": None, "mrr": 60},
    {"id": "s8", "account_id": "a8", "started_at": "2023-01-01", "ended_at": "2025-01-01", "mrr": 10},
    {"id": "s9", "account_id": "a9", "started_at": "2024-01-01", "ended_at": None, "mrr": 90, "currency": "EUR"},
    {"id": "s10", "account_id": "a10", "started_at": "2023-01-01", "ended_at": "2024-06-01", "mrr": 500,
     "is_deleted": "true"},
    {"id": "s11", "account_id": "a11", "started_at": "2023-01-01", "ended_at": "2024-01-01", "mrr": 10},
    {"id": "s12", "account_id": "a12", "started_at": "2024-05-01", "ended_at": None, "mrr": 1000,
     "is_deleted": "true"},
]
ACCOUNTS = [{"id": a, "region": r, "owner_id": o} for a, r, o in [
    ("a1", "EU", "u1"), ("a2", "EU", "u2"), ("a3", "US", "u1"), ("a4", "US", "u2"), ("a5", "EU", "u1"),
    ("a6", "US", "u2"), ("a8", "EU", "u1"), ("a9", "US", "u2"), ("a10", "US", "u1"), ("a11", "EU", "u2")]]


def _deal(id_, account, owner, deal_type, won, closed, deleted=False):
    return {"id": id_, "account_id": account, "owner_id": owner, "deal_type": deal_type, "is_won": won,
            "is_closed": True, "closed_at": closed, "is_deleted": deleted}


DEALS = [
    _deal("d1", "a1", "u1", "upsell", True, "2024-05-01"),
    _deal("d7", "a1", "u1", "upsell", True, "2024-07-01"),
    _deal("d2", "a2", "u1", "Cross_Sell", True, "2024-02-01"),  # u1's deal on u2's account: counts for u2
    _deal("d9", "a3", "u1", "expansion", True, "2024-10-01"),
    _deal("d3", "a3", "u1", "renewal", True, "2024-02-01"),
    _deal("d4", "a4", "u2", "upsell", False, "2024-04-01"),  # lost
    _deal("d5", "a6", "u2", "upsell", True, "2024-08-01"),  # a6 was not a customer at the start
    _deal("d6", "a8", "u1", "expansion", True, "2023-12-15"),  # before the period
    _deal("d8", "a11", "u2", "upsell", True, "2024-03-01", deleted=True),
]
FX = [{"id": "eur", "currency": "EUR", "rate_to_reporting": 1.1, "valid_from": "2023-01-01"}]
ORDERS = [
    {"id": "o1", "account_id": "a1", "ordered_at": "2023-06-01", "amount": 20, "cost": 10},
    {"id": "o2", "account_id": "a1", "ordered_at": "2024-02-01", "amount": 100, "cost": 60},
    {"id": "o3", "account_id": "a1", "ordered_at": "2024-08-01", "amount": 50, "cost": 20},
    {"id": "o4", "account_id": "a2", "ordered_at": "2024-03-01", "amount": 30, "cost": 33},
    {"id": "o4b", "account_id": "a2", "ordered_at": "2024-04-01", "amount": 999, "cost": 0},
    {"id": "o5", "account_id": "a3", "ordered_at": "2024-05-01", "amount": 0, "cost": 5},
    {"id": "o6", "account_id": "a4", "ordered_at": "2024-06-01", "amount": 40, "cost": None},
    {"id": "o7", "account_id": "a1", "ordered_at": "2024-09-01", "amount": 1000, "cost": 0, "is_deleted": "true"},
    {"id": "o9", "account_id": "a12", "ordered_at": "2024-10-01", "amount": 5000, "cost": 0, "is_deleted": "true"},
    {"id": "o8", "account_id": None, "ordered_at": "2024-07-01", "amount": 500, "cost": 100},
]


def book(kpi, orders: bool = False) -> None:
    kpi.write("accounts", ACCOUNTS)
    kpi.write("subscriptions", SUBSCRIPTIONS)
    kpi.write("deals", DEALS)
    kpi.write("fx_rates", FX)
    if orders:
        # o4b would make a2 the biggest spender; the margin and CLV tests leave it out.
        kpi.write("orders", [o for o in ORDERS if o["id"] != "o4b"])
    kpi.sync()


def sides(result: dict) -> tuple:
    return result["value"], result["numerator"], result["denominator"]


def by_segment(results: list[dict], dimension: str) -> dict:
    return {r["segment"][dimension]: r for r in results}


# --- churn, retention, upsell, MRR retention (both stores) ---------------------------------------------


def test_churn_retention_upsell_hand_computed(kpi_any_store):
    book(kpi_any_store)
    churn = kpi_any_store.one("churn_rate", "--period", "2024")
    assert sides(churn) == (pytest.approx(2 / 6), 2, 6)  # a2, a11 of a1 a2 a3 a4 a8 a11; s10 deleted
    include = kpi_any_store.one("churn_rate", "--period", "2024", "--param", "new_and_lost=include")
    assert sides(include) == (pytest.approx(3 / 6), 3, 6)  # + a5, joined and lost
    retention = kpi_any_store.one("retention_rate", "--period", "2024")
    assert sides(retention) == (pytest.approx(0.5), 3, 6)  # (E 6 − N 3) / S 6
    upsell = kpi_any_store.one("upsell_rate", "--period", "2024")
    assert sides(upsell) == (pytest.approx(0.5), 3, 6)  # a1 (twice), a2, a3; not a6 (new), a8 (2023), d8 deleted
    renewals = kpi_any_store.one("upsell_rate", "--period", "2024", "--param", "deal_types=renewal")
    assert sides(renewals) == (pytest.approx(1 / 6), 1, 6)
    mrr = kpi_any_store.one("upsell_rate", "--period", "2024", "--param", "evidence=mrr")
    assert sides(mrr) == (pytest.approx(1 / 6), 1, 6)  # a3: 80 -> 120
    results = {r["metric"]: r for r in kpi_any_store.run(
        None, "--metric", "net_mrr_retention", "--metric", "gross_mrr_retention", "--period", "2024")}
    # start: a1 100 + a2 50 + a3 80 + a4 40 + a8 10 + a11 10 = 290
    assert sides(results["net_mrr_retention"]) == (pytest.approx(250 / 290), 250, 290)  # 100+0+120+20+10+0
    assert sides(results["gross_mrr_retention"]) == (pytest.approx(210 / 290), 210, 290)  # 100+0+80+20+10+0


def test_upsell_deals_without_an_account_are_counted_in_the_note(kpi_any_store):
    book(kpi_any_store)
    kpi_any_store.write("deals", [*DEALS, _deal("x1", None, "u1", "upsell", True, "2024-03-01"),
                                  _deal("x2", None, "u2", "expansion", True, "2024-04-01"),
                                  _deal("x3", None, "u2", "upsell", True, "2023-04-01"),  # before the period
                                  _deal("x4", None, "u2", "upsell", False, "2024-04-01"),  # lost
                                  _deal("x5", None, "u2", "upsell", True, "2024-04-01", deleted=True)])
    kpi_any_store.sync()
    upsell = kpi_any_store.one("upsell_rate", "--period", "2024")
    assert (*sides(upsell), upsell["note"]) == (
        pytest.approx(0.5), 3, 6, "2 won upsell/cross_sell/expansion deal(s) closed in the period without account_id "
                                  "left out")


def test_boundaries_belong_to_the_period_that_contains_them(kpi):
    book(kpi)
    # a11 ended at 2024-01-01 00:00: lost in 2024, so in 2023 it is kept; a8 ends at 2025-01-01 00:00: lost in 2025
    y2023 = kpi.one("churn_rate", "--period", "2023")
    # customers at 2023-01-01: a4 (2022) only; s1, s8, s10(deleted), s11 start on 2023-01-01: new in 2023
    assert sides(y2023) == (0.0, 0, 1)
    y2025 = kpi.one("churn_rate", "--period", "2025")
    assert sides(y2025) == (pytest.approx(1 / 6), 1, 6)  # a8 of a1 a3 a4 a6 a8 a9
    retention_2023 = kpi.one("retention_rate", "--period", "2023")
    # E at 2024-01-01: a1 a2 a3 a4 a8 a11 = 6; N: a1 a2 a3 a8 a11 = 5 (first started in 2023); S 1
    assert sides(retention_2023) == (1.0, 1, 1)


def test_customer_metrics_by_region_and_owner(kpi):
    book(kpi)
    churn = by_segment(kpi.run("churn_rate", "--period", "2024", "--segment", "region"), "region")
    assert sides(churn["EU"]) == (0.5, 2, 4)  # a2, a11 of a1 a2 a8 a11
    assert sides(churn["US"]) == (0.0, 0, 2)  # a3, a4
    retention = by_segment(kpi.run("retention_rate", "--period", "2024", "--segment", "owner"), "owner")
    # u1: S a1 a3 a8, E a1 a3 a8, N a5 -> 2/3; u2: S a2 a4 a11, E a4 a6 a9, N a6 a9 -> 1/3
    assert sides(retention["u1"]) == (pytest.approx(2 / 3), 2, 3)
    assert sides(retention["u2"]) == (pytest.approx(1 / 3), 1, 3)
    upsell = by_segment(kpi.run("upsell_rate", "--period", "2024", "--segment", "owner"), "owner")
    assert set(upsell) == {"u1", "u2"}
    assert sides(upsell["u1"]) == (pytest.approx(2 / 3), 2, 3)  # a1, a3 of a1 a3 a8
    assert sides(upsell["u2"]) == (pytest.approx(1 / 3), 1, 3)  # a2 (deal owned by u1) of a2 a4 a11
    net = by_segment(kpi.run("net_mrr_retention", "--period", "2024", "--segment", "region"), "region")
    assert sides(net["EU"]) == (pytest.approx(110 / 170), 110, 170)
    assert sides(net["US"]) == (pytest.approx(140 / 120), 140, 120)
    gross = by_segment(kpi.run("gross_mrr_retention", "--period", "2024", "--segment", "region"), "region")
    assert sides(gross["EU"]) == (pytest.approx(110 / 170), 110, 170)
    assert sides(gross["US"]) == (pytest.approx(100 / 120), 100, 120)


def test_empty_periods_are_null_with_a_reason(kpi):
    book(kpi, orders=True)
    for metric, reason in [("churn_rate", "no customers at the period start"),
                           ("retention_rate", "no customers at the period start"),
                           ("upsell_rate", "no customers at the period start"),
                           ("renewal_rate", "no subscription came up for renewal"),
                           ("net_mrr_retention", "no MRR at the period start"),
                           ("gross_mrr_retention", "no MRR at the period start"),
                           ("clv", "no orders"),
                           ("profit_margin_per_customer", "no customer with revenue")]:
        result = kpi.one(metric, "--period", "2019")
        assert result["value"] is None and reason in result["note"], (metric, result)
    zero = kpi.one("net_new_revenue", "--period", "2019")
    assert zero["value"] == 0 and "no new customers" in zero["note"]


def test_nothing_loaded_is_null(kpi):
    kpi.write("accounts", ACCOUNTS)
    kpi.sync()
    for metric in ("churn_rate", "upsell_rate", "renewal_rate", "net_mrr_retention", "clv"):
        assert kpi.one(metric, "--period", "2024")["value"] is None
    for new_means in ("first_subscription", "first_order"):
        result = kpi.one("net_new_revenue", "--period", "2024", "--param", f"new_means={new_means}")
        assert result["value"] is None and "loaded" in result["note"]


def test_explain_lists_the_rows(kpi):
    book(kpi, orders=True)
    for metric, args in [("churn_rate", ["--param", "new_and_lost=include"]), ("retention_rate", []),
                         ("upsell_rate", ["--segment", "owner=u2"]), ("upsell_rate", ["--param", "evidence=mrr"]),
                         ("renewal_rate", []), ("net_mrr_retention", []), ("clv", []),
                         ("net_new_revenue", []), ("profit_margin_per_customer", [])]:
        result = kpi.invoke("explain", metric, "--period", "2024", *args)
        assert result.exit_code == 0, (metric, result.output)
    lost = kpi.invoke("explain", "churn_rate", "--period", "2024")
    assert "s2" in lost.output and "s11" in lost.output


# --- renewal rate -------------------------------------------------------------------------------------


RENEWALS = [
    # r1: successor 9 days after term_end; r2: status only; r3: successor 76 days late; r4: nothing
    {"id": "r1", "account_id": "b1", "started_at": "2023-03-01", "term_end": "2024-03-01", "ended_at": "2024-03-01",
     "status": "ended"},
    {"id": "r1b", "account_id": "b1", "started_at": "2024-03-10", "term_end": "2025-03-10", "status": "active"},
    {"id": "r2", "account_id": "b2", "started_at": "2023-05-01", "term_end": "2024-05-01", "status": "Renewed"},
    {"id": "r3", "account_id": "b3", "started_at": "2023-07-01", "term_end": "2024-07-01", "ended_at": "2024-07-01",
     "status": "ended"},
    {"id": "r3b", "account_id": "b3", "started_at": "2024-09-15", "term_end": "2025-09-15", "status": "active"},
    {"id": "r4", "account_id": "b4", "started_at": "2023-08-01", "term_end": "2024-08-01", "ended_at": "2024-08-01",
     "status": "ended"},
    {"id": "r5", "account_id": "b5", "started_at": "2022-12-01", "term_end": "2023-12-01", "status": "renewed"},
    {"id": "r6", "account_id": "b6", "started_at": "2023-10-01", "term_end": "2024-10-01", "status": "renewed",
     "is_deleted": "true"},
    {"id": "r7", "account_id": "b7", "started_at": "2098-06-01", "term_end": "2099-06-01"},
]


def test_renewal_rate_evidence_and_grace(kpi):
    kpi.write("accounts", [{"id": f"b{i}", "region": "EU" if i <= 2 else "US"} for i in range(1, 8)])
    kpi.write("subscriptions", RENEWALS)
    kpi.sync()
    cases = [([], 2), (["evidence=successor"], 1), (["evidence=status"], 1), (["grace_days=90"], 3),
             (["evidence=successor", "grace_days=8"], 0)]
    for params, renewed in cases:
        args = [a for p in params for a in ("--param", p)]
        assert sides(kpi.one("renewal_rate", "--period", "2024", *args)) == (renewed / 4, renewed, 4), params
    regions = by_segment(kpi.run("renewal_rate", "--period", "2024", "--segment", "region"), "region")
    assert sides(regions["EU"]) == (1.0, 2, 2)  # r1, r2
    assert sides(regions["US"]) == (0.0, 0, 2)  # r3, r4; r6 deleted
    future = kpi.one("renewal_rate", "--period", "2099")
    assert future["value"] is None and "1 subscription(s)" in future["note"] and "not due" in future["note"]
    assert kpi.fails("run", "--metric", "renewal_rate", "--period", "2024", "--param", "grace_days=-1") == \
        "renewal_rate: param grace_days: must be 0 or more, got -1"


def test_renewal_rate_acceptance(kpi_any_store):
    """1,000 up for renewal in 2023 of which 900 renew, then 1,000 in 2024 of which 600: 90%, 60%, −30 points."""
    rows = []
    for i in range(1000):
        term_end = f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}"
        renews = i < 900
        rows.append({"id": f"a-{i}", "account_id": f"acc-{i}", "started_at": f"2022{term_end[4:]}",
                     "term_end": term_end, "ended_at": term_end, "status": "renewed" if renews else "ended"})
        if renews:
            next_end = f"2024{term_end[4:]}"
            again = i < 600
            rows.append({"id": f"b-{i}", "account_id": f"acc-{i}", "started_at": term_end, "term_end": next_end,
                         "ended_at": next_end, "status": "renewed" if again else "ended"})
            if again:
                rows.append({"id": f"c-{i}", "account_id": f"acc-{i}", "started_at": next_end,
                             "term_end": f"2025{term_end[4:]}", "ended_at": None, "status": "active"})
    for j in range(100):
        rows.append({"id": f"n-{j}", "account_id": f"new-{j}", "started_at": f"2023-{1 + j % 12:02d}-15",
                     "term_end": f"2024-{1 + j % 12:02d}-15", "ended_at": f"2024-{1 + j % 12:02d}-15",
                     "status": "ended"})
    kpi_any_store.write("subscriptions", rows)
    kpi_any_store.sync()
    assert sides(kpi_any_store.one("renewal_rate", "--period", "2023")) == (pytest.approx(0.9), 900, 1000)
    assert sides(kpi_any_store.one("renewal_rate", "--period", "2024")) == (pytest.approx(0.6), 600, 1000)
    compared = kpi_any_store.one("renewal_rate", "--period", "2024", "--compare", "year_ago")
    assert compared["year_ago"]["value"] == pytest.approx(0.9)
    assert compared["year_ago"]["change"] == pytest.approx(-0.30)


# --- orders: CLV, margin, new revenue -----------------------------------------------------------------


def test_clv_acceptance(kpi_any_store):
    """2,500 orders of 40.00, 5 per customer over 500 accounts, lifespan 4 → 800; at 35.00 and 6 years → 1,050."""
    def orders(amount):
        return [{"id": f"o-{k}", "account_id": f"acc-{k % 500}", "amount": f"{amount:.2f}",
                 "ordered_at": f"2024-{1 + k % 12:02d}-{1 + k % 28:02d}"} for k in range(2500)]
    kpi_any_store.write("orders", orders(40))
    kpi_any_store.sync()
    result = kpi_any_store.one("clv", "--period", "2024", "--param", "lifespan_years=4")
    assert sides(result) == (pytest.approx(800), pytest.approx(400_000), 500)  # revenue 100,000 × 4 / 500
    assert result["unit"] == "currency"
    kpi_any_store.write("orders", orders(35))
    kpi_any_store.sync()
    result = kpi_any_store.one("clv", "--period", "2024", "--param", "lifespan_years=6")
    assert sides(result) == (pytest.approx(1050), pytest.approx(525_000), 500)
    # no subscriptions loaded: the lifespan cannot be derived
    derived = kpi_any_store.one("clv", "--period", "2024")
    assert derived["value"] is None and "lifespan_years" in derived["note"]


def test_clv_derives_the_lifespan_from_churn(kpi):
    book(kpi, orders=True)
    # 2024 orders with an account: a1 150, a2 30, a3 0, a4 40 = 220 over 4 customers (o7 deleted, o8 no account);
    # annual churn 2024 = 2/6 -> lifespan 3 years
    derived = kpi.one("clv", "--period", "2024")
    assert sides(derived) == (pytest.approx(165), pytest.approx(660), 4)
    assert "lifespan 3.00 years" in derived["note"]
    assert sides(kpi.one("clv", "--period", "2024", "--param", "lifespan_years=2")) == (110, 440, 4)
    owners = by_segment(kpi.run("clv", "--period", "2024", "--segment", "owner", "--param", "lifespan_years=2"),
                        "owner")
    assert sides(owners["u1"]) == (150, 300, 2)  # a1 150 + a3 0
    assert sides(owners["u2"]) == (70, 140, 2)  # a2 30 + a4 40
    assert kpi.fails("run", "--metric", "clv", "--period", "2024", "--param", "lifespan_years=-1") == \
        "clv: param lifespan_years: must be 0 or more, got -1"


def test_profit_margin_per_customer(kpi):
    book(kpi, orders=True)
    # a1 (150 − 80) / 150; a2 (30 − 33) / 30; a4 40 without cost -> 1; a3 has no revenue; o7 deleted; o8 no account
    margins = 70 / 150 - 0.1 + 1.0
    result = kpi.one("profit_margin_per_customer", "--period", "2024")
    assert sides(result) == (pytest.approx(margins / 3), pytest.approx(margins), 3)
    assert "1 customer(s) with zero or negative revenue" in result["note"]
    assert "1 order(s) without a cost" in result["note"]
    regions = by_segment(kpi.run("profit_margin_per_customer", "--period", "2024", "--segment", "region"), "region")
    assert sides(regions["EU"]) == (pytest.approx((70 / 150 - 0.1) / 2), pytest.approx(70 / 150 - 0.1), 2)
    assert sides(regions["US"]) == (1.0, 1.0, 1)  # a4; a3 left out


def test_profit_margin_converts_currencies(kpi):
    kpi.write("orders", [
        {"id": "x1", "account_id": "c1", "ordered_at": "2024-02-01", "amount": 100, "cost": 40, "currency": "EUR"},
        {"id": "x2", "account_id": "c1", "ordered_at": "2024-03-01", "amount": 110, "cost": 110},
        {"id": "x3", "account_id": "c2", "ordered_at": "2024-03-01", "amount": 50, "cost": 10, "currency": "GBP"},
    ])
    kpi.write("fx_rates", FX)
    kpi.sync()
    # no GBP rate: the metric fails, naming the currency
    assert "no fx_rates rate for GBP" in kpi.error("profit_margin_per_customer", "--period", "2024")
    kpi.write("fx_rates", [*FX, {"id": "gbp", "currency": "GBP", "rate_to_reporting": 1.25,
                                 "valid_from": "2024-01-01"}])
    kpi.sync()
    # c1: revenue 110 + 110, cost 44 + 110 -> 66 / 220 = 0.3; c2: 0.8
    assert sides(kpi.one("profit_margin_per_customer", "--period", "2024")) == (
        pytest.approx(0.55), pytest.approx(1.1), 2)


def test_net_new_revenue(kpi):
    book(kpi, orders=True)
    kpi.write("orders", ORDERS)
    kpi.sync()
    # first subscriptions started in 2024: a5 30 + a6 60 + a9 90 EUR × 1.1; not a3's or a4's second one, not a12's
    # (deleted)
    result = kpi.one("net_new_revenue", "--period", "2024")
    assert result["value"] == pytest.approx(189) and result["unit"] == "currency"
    first_order = kpi.one("net_new_revenue", "--period", "2024", "--param", "new_means=first_order")
    # a2's first 30 (not o4b), a3 0, a4 40; a1 first ordered in 2023; o9 deleted
    assert first_order["value"] == pytest.approx(70)
    quarters = kpi.run("net_new_revenue", "--period", "2024", "--grain", "quarter", "--param", "new_means=first_order")
    assert [q["value"] for q in quarters] == [30, 40, 0, 0]  # additive: the quarters sum to the year
    owners = by_segment(kpi.run("net_new_revenue", "--period", "2024", "--segment", "owner"), "owner")
    assert owners["u1"]["value"] == pytest.approx(30)  # a5
    assert owners["u2"]["value"] == pytest.approx(159)  # a6 60 + a9 99
