"""example_deal_size, tested with crmkpi's pytest fixtures (crmkpi_store): per owner and quarter, in the
reporting currency and time zone, with and without a minimum amount, grouped and cell by cell alike."""

from __future__ import annotations

import pytest

from crmkpi.testing import KpiStore


def deal(id: str, owner: str, amount: float, currency: str, closed: str, won: bool = True,
         deleted: bool = False) -> dict:
    return {"id": id, "owner_id": owner, "amount": amount, "currency": currency, "is_closed": True, "is_won": won,
            "created_at": "2025-01-05T10:00:00Z", "closed_at": closed, "is_deleted": deleted}


@pytest.fixture
def store(crmkpi_store: KpiStore) -> KpiStore:
    # Two owners, deals in euros (1.10 USD until April, 1.20 from May), a lost deal and a deleted one.
    crmkpi_store.load("deals", [
        deal("d1", "u1", 1000, "USD", "2025-02-01T10:00:00Z"),
        deal("d2", "u2", 3000, "USD", "2025-03-01T10:00:00Z"),
        deal("d3", "u1", 500, "EUR", "2025-04-01T10:00:00Z"),
        deal("d4", "u1", 9000, "USD", "2025-04-02T10:00:00Z", won=False),
        deal("d5", "u2", 2000, "EUR", "2025-05-03T10:00:00Z"),
        deal("d6", "u2", 8000, "USD", "2025-05-03T10:00:00Z", deleted=True),
    ])
    crmkpi_store.load("fx_rates", [
        {"id": "r1", "currency": "EUR", "rate_to_reporting": 1.10, "valid_from": "2024-01-01"},
        {"id": "r2", "currency": "EUR", "rate_to_reporting": 1.20, "valid_from": "2025-05-01"},
    ])
    return crmkpi_store


EMPTY = {(quarter, owner): (None, None) for quarter in ("2025-Q3", "2025-Q4") for owner in ("u1", "u2")}


@pytest.mark.parametrize("min_amount, expected", [
    (0, {("2025-Q1", "u1"): (1000.0, 1), ("2025-Q1", "u2"): (3000.0, 1),
         ("2025-Q2", "u1"): (550.0, 1), ("2025-Q2", "u2"): (2400.0, 1), **EMPTY}),
    # 500 EUR on April 1st is 550 USD: under a minimum of 600 in the reporting currency
    (600, {("2025-Q1", "u1"): (1000.0, 1), ("2025-Q1", "u2"): (3000.0, 1),
           ("2025-Q2", "u1"): (None, None), ("2025-Q2", "u2"): (2400.0, 1), **EMPTY}),
])
def test_per_owner_and_quarter_in_the_reporting_currency(store: KpiStore, min_amount: float, expected: dict) -> None:
    cells = store.assert_grouped_agrees("example_deal_size", "2025", grain="quarter", segments="owner",
                                        params={"min_amount": min_amount}, compare="both")
    assert {(cell.period, cell.segment["owner"]): (cell.numerator, cell.denominator) for cell in cells} == expected


def test_a_year_without_won_deals(store: KpiStore) -> None:
    cell = store.one("example_deal_size", "2023")
    assert (cell.value, cell.note) == (None, "no deals won in the period")


def test_the_periods_are_the_reporting_time_zones(crmkpi_store: KpiStore) -> None:
    # 2025-03-31T20:00Z is April 1st, 05:00, in Tokyo: in the first quarter in UTC, in the second in Tokyo.
    crmkpi_store.load("deals", [deal("d1", "u1", 1000, "USD", "2025-03-31T20:00:00Z")])
    for timezone, quarter in (("UTC", "2025-Q1"), ("Asia/Tokyo", "2025-Q2")):
        cells = crmkpi_store.assert_grouped_agrees("example_deal_size", "2025", grain="quarter", timezone=timezone)
        assert [cell.period for cell in cells if cell.value is not None] == [quarter]
        assert crmkpi_store.one("example_deal_size", quarter, timezone=timezone).value == 1000.0
