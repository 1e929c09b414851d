"""pipeline_coverage, tested with crmkpi's pytest fixtures (crmkpi_store): hand-made deals and quotas in two
currencies, per owner and per team, both ways; and on the sample company, against the built-in metrics it
is made of."""

from __future__ import annotations

import pytest

from crmkpi.testing import KpiStore

USERS = [{"id": "u1", "team": "east"}, {"id": "u2", "team": "west"}]
# EUR is worth 1.10 USD until March 14th 2025, 1.20 from March 15th.
RATES = [{"id": "r1", "currency": "EUR", "rate_to_reporting": 1.10, "valid_from": "2024-01-01"},
         {"id": "r2", "currency": "EUR", "rate_to_reporting": 1.20, "valid_from": "2025-03-15"}]
QUOTAS = [
    {"id": "q1", "owner_id": "u1", "team": "east", "period_start": "2025-01-01", "period_end": "2025-03-31",
     "amount": 10000, "currency": "USD"},
    # 8,000 EUR at the rate of its start: 8,800 USD
    {"id": "q2", "owner_id": "u2", "team": "west", "period_start": "2025-01-01", "period_end": "2025-03-31",
     "amount": 8000, "currency": "EUR"},
    {"id": "q3", "team": "east", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 15000},
    {"id": "q4", "owner_id": "u1", "team": "east", "period_start": "2025-04-01", "period_end": "2025-06-30",
     "amount": 12000},
]


def deal(id: str, owner: str, amount: float | None, created: str, closed: str | None = None, won: bool = False,
         currency: str = "USD") -> dict:
    return {"id": id, "owner_id": owner, "amount": amount, "currency": currency, "created_at": created,
            "closed_at": closed, "is_closed": closed is not None, "is_won": won}


DEALS = [
    deal("d1", "u1", 4000, "2025-01-02", "2025-02-10", won=True),
    deal("d2", "u1", 9000, "2025-01-05"),                        # open
    deal("d3", "u1", 3000, "2025-02-01", currency="EUR"),        # open: 3,600 USD at March 31st's rate
    deal("d4", "u2", 1000, "2025-01-08", "2025-03-01", won=True, currency="EUR"),  # won: 1,100 USD
    deal("d5", "u2", 7700, "2025-01-10", "2025-04-15", won=True),  # won after the quarter: open at its end
    deal("d6", "u2", 5000, "2025-01-12", "2025-02-20"),          # lost
    deal("d7", "u1", 2000, "2025-04-02"),                        # created after the quarter
    deal("d8", "u2", None, "2025-01-03"),                        # open, without amount
    deal("d9", "u1", 13000, "2025-04-03", "2025-05-01", won=True),
]


@pytest.fixture
def store(crmkpi_store: KpiStore) -> KpiStore:
    for table, rows in (("users", USERS), ("fx_rates", RATES), ("quotas", QUOTAS), ("deals", DEALS)):
        crmkpi_store.load(table, rows)
    return crmkpi_store


def test_per_owner_in_the_reporting_currency(store: KpiStore) -> None:
    cells = {cell.segment["owner"]: cell for cell in store.run("pipeline_coverage", "2025-Q1", segments="owner")}
    # u1: 9,000 + 3,600 open over 10,000 - 4,000
    assert (cells["u1"].value, cells["u1"].numerator, cells["u1"].denominator) == (2.1, 12600, 6000)
    # u2: 7,700 open over 8,800 - 1,100; the deal without amount is said to be left out
    assert (cells["u2"].value, cells["u2"].numerator, cells["u2"].denominator) == (1.0, 7700, 7700)
    assert cells["u2"].note == "1 open deal(s) without amount left out"


def test_the_whole_company_adds_the_reps_up(store: KpiStore) -> None:
    cell = store.one("pipeline_coverage", "2025-Q1")
    assert (cell.numerator, cell.denominator) == (20300, 13700)
    assert cell.value == pytest.approx(20300 / 13700)


def test_per_team_with_team_quotas(store: KpiStore) -> None:
    cells = {cell.segment["team"]: cell for cell in store.run("pipeline_coverage", "2025-Q1", segments="team",
                                                                params={"level": "team"})}
    assert (cells["east"].numerator, cells["east"].denominator) == (12600, 15000 - 4000)
    assert cells["west"].value is None
    assert cells["west"].note.startswith("no team quota lies within the period")


def test_a_met_quota_leaves_nothing_to_cover(store: KpiStore) -> None:
    cells = {cell.segment["owner"]: cell for cell in store.run("pipeline_coverage", "2025-Q2", segments="owner")}
    assert (cells["u1"].value, cells["u1"].denominator) == (None, 12000 - 13000)
    assert cells["u1"].note == "the quota is met: none remains to cover"


def test_a_missing_rate_is_an_error_of_the_metric(crmkpi_store: KpiStore) -> None:
    crmkpi_store.load("quotas", QUOTAS[:1])
    crmkpi_store.load("deals", [deal("d1", "u1", 500, "2025-01-02", currency="GBP")])
    cell = crmkpi_store.one("pipeline_coverage", "2025-Q1")
    assert cell.error == ("no fx_rates rate for GBP on or before 2025-03-31 (rates convert to the reporting "
                          "currency USD)")


@pytest.mark.parametrize("segments, params", [("owner", {}), ("team", {"level": "team"}), ((), {})])
def test_grouped_agrees_with_compute(store: KpiStore, segments, params) -> None:
    store.assert_grouped_agrees("pipeline_coverage", "2025", grain="quarter", segments=segments, params=params,
                                compare="both")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> KpiStore:
    store = KpiStore(tmp_path_factory.mktemp("sample"))
    store.load_sample()
    yield store
    store.close()


def test_on_the_sample_company_both_ways(sample: KpiStore) -> None:
    cells = sample.assert_grouped_agrees("pipeline_coverage", "2025", grain="quarter", segments="owner")
    assert any(cell.value for cell in cells)


def test_made_of_pipeline_value_and_quota_attainment(sample: KpiStore) -> None:
    coverage = sample.run("pipeline_coverage", "2025", grain="quarter")
    pipeline = sample.run("pipeline_value", "2025", grain="quarter")
    attainment = sample.run("quota_attainment", "2025", grain="quarter")
    for mine, open_deals, quota in zip(coverage, pipeline, attainment):
        assert mine.numerator == pytest.approx(open_deals.value)
        assert mine.denominator == pytest.approx(quota.denominator - quota.numerator)
