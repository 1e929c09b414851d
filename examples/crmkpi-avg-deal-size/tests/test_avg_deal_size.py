from crmkpi.testing import KpiStore

DEALS = [
    {"id": "d1", "owner_id": "u1", "amount": 1000, "currency": "EUR", "is_closed": True, "is_won": True,
     "closed_at": "2025-02-01"},
    {"id": "d2", "owner_id": "u2", "amount": 3000, "is_closed": True, "is_won": True, "closed_at": "2025-05-01"},
    {"id": "d3", "owner_id": "u2", "amount": 9000, "is_closed": True, "is_won": False, "closed_at": "2025-05-02"},
]
RATES = [{"id": "r1", "currency": "EUR", "rate_to_reporting": 1.1, "valid_from": "2024-01-01"}]


def test_the_average_won_deal_in_the_reporting_currency(crmkpi_store: KpiStore) -> None:
    crmkpi_store.load("deals", DEALS)
    crmkpi_store.load("fx_rates", RATES)
    cell = crmkpi_store.one("example_deal_size", "2025")
    assert (cell.value, cell.numerator, cell.denominator) == (2050.0, 4100.0, 2)
    by_owner = crmkpi_store.run("example_deal_size", "2025", segments="owner", params={"min_amount": 2000})
    assert [(c.segment["owner"], c.value) for c in by_owner] == [("u1", None), ("u2", 3000.0)]


def test_grouped_agrees_with_compute(crmkpi_store: KpiStore) -> None:
    crmkpi_store.load_sample()
    crmkpi_store.assert_grouped_agrees("example_deal_size", "2025", grain="quarter", segments="owner",
                                       compare="both")
