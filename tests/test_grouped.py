"""Grouped metrics agree with the per-cell path, their oracle: every value, numerator, denominator, note,
error, comparison and target, across grains, segments, comparisons, time zones, fiscal years and week
starts, on the sample company and on random datasets, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, strategies as st

from conftest import ALL_BUILTINS, KpiProject, property_settings, store_url_for
from crmkpi.engine import COMPARISONS, Run, Settings, run_metrics
from crmkpi.periods import Calendar
from crmkpi.plugins import load_registry
from crmkpi.sample_data import generate
from crmkpi.store import Store

VOLATILE = ("run_id", "computed_at")


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
        return load_registry()


def grouped_metrics(registry) -> list:
    return sorted((m for m in registry.metrics.values() if m.grouped), key=lambda m: m.id)


def param_variants(metric) -> list[dict]:
    """The defaults, and each choice of each param with choices on its own."""
    return [{}] + [{p.name: choice} for p in metric.params if p.choices for choice in p.choices
                   if choice != p.default]


def both_ways(store: Store, run: Run, settings: Settings) -> tuple[list[dict], list[dict]]:
    """The results of ``run`` grouped and cell by cell; floats rounded to 12 significant digits, as a sum's
    last bits depend on the order the database adds its rows in (PostgreSQL's differs between the two)."""
    grouped = run_metrics(store.engine, run, settings, persist=False, grouped=True)
    per_cell = run_metrics(store.engine, run, settings, persist=False, grouped=False)
    return comparable(grouped), comparable(per_cell)


def comparable(value):
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def test_the_built_in_grouped_metrics(registry):
    assert [m.id for m in grouped_metrics(registry)] == ["avg_deal_size", "close_rate", "sales_volume", "win_rate"]


# --- the sample company -----------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def company(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(f"grouped-{request.param}")
    with store_url_for(request.param, folder, request) as url:
        kpi = KpiProject(folder / "kpi", url)
        generate(kpi.data, seed=7, deals=400)
        kpi.configure(files="tables:\n  accounts: {extra: [employee_band]}\n  deals: {extra: [forecast_category]}\n")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
            kpi.sync()
        store = Store(url)
        yield store
        store.engine.dispose()


CALENDARS = {
    "UTC": Settings(Calendar(), "UTC", today=date(2026, 6, 1)),
    # both DST changes of 2025 fall inside the periods below
    "New York": Settings(Calendar(), "America/New_York", today=date(2026, 6, 1)),
    "Kolkata, April fiscal year, Sunday weeks": Settings(Calendar(4, "sunday"), "Asia/Kolkata", today=date(2026, 6, 1)),
}
#: Every grain, dimension kind (a column, an alias, through the owner, through the account, a custom field of
#: the row and of its account, two at once) and calendar, each case with both comparisons.
CASES = [
    ("UTC", None, ()), ("UTC", "month", ("owner",)), ("UTC", "quarter", ("stage",)),
    ("UTC", "year", ("extra.forecast_category",)),
    ("New York", "day", ()), ("New York", "week", ("team",)), ("New York", "month", ("region", "pipeline")),
    ("Kolkata, April fiscal year, Sunday weeks", "week", ("lead_source",)),
    ("Kolkata, April fiscal year, Sunday weeks", "quarter", ("extra.employee_band",)),
    ("Kolkata, April fiscal year, Sunday weeks", "year", ("owner",)),
]


@pytest.mark.parametrize("zone, grain, dimensions", CASES)
def test_the_sample_company_both_ways(company: Store, registry, zone, grain, dimensions):
    settings = CALENDARS[zone]
    for metric in grouped_metrics(registry):
        # a day grain over March: New York's spring DST change
        period = settings.calendar.parse("2025-03" if grain == "day" else "2025", today=settings.today)
        for params in param_variants(metric):
            run = Run([metric], period, {metric.id: params}, grain, dimensions, COMPARISONS)
            grouped, per_cell = both_ways(company, run, settings)
            assert grouped == per_cell, (metric.id, params, grain, dimensions)
            assert any(r["value"] is not None for r in grouped), (metric.id, params, grain, dimensions)


def test_a_missing_rate_fails_the_same_cells_both_ways(company: Store, registry):
    """An EUR deal won in 2025-06 without a rate: only June's cells (and what compares with June) fail."""
    with company.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE deals SET currency = 'XTS' WHERE id = (SELECT min(id) FROM deals "
                             "WHERE is_won AND closed_at >= '2025-06-01' AND closed_at < '2025-07-01')"
                             if company.dialect == "postgresql" else
                             "UPDATE deals SET currency = 'XTS' WHERE id = (SELECT min(id) FROM deals "
                             "WHERE is_won = 1 AND closed_at >= '2025-06-01' AND closed_at < '2025-07-01')")
    try:
        settings = CALENDARS["UTC"]
        run = Run([load_win_rate(registry)], settings.calendar.parse("2025", today=settings.today),
                  {"win_rate": {"by": "amount"}}, "month", ("team",), COMPARISONS)
        grouped, per_cell = both_ways(company, run, settings)
        assert grouped == per_cell
        failed = [(r["period"], r["error"]) for r in grouped if r["error"]]
        assert [period for period, _ in failed] == ["2025-06", "2025-07"]  # the deal's team; July compares with June
        assert failed[0][1].startswith("no fx_rates rate for XTS on or before 2025-06-")
        assert failed[1][1].startswith("previous period (2025-06): no fx_rates rate for XTS")
    finally:
        with company.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE deals SET currency = 'USD' WHERE currency = 'XTS'")


def load_win_rate(registry):
    return registry.metrics["win_rate"]


# --- random datasets ---------------------------------------------------------------------------------

START = datetime(2024, 1, 1, tzinfo=UTC)
moments = st.one_of(
    st.none(),
    st.integers(0, 3 * 365 * 24 * 4).map(lambda quarter_hours: START + timedelta(minutes=15 * quarter_hours)),
    # around the 2025 DST changes in New York and the year's edges, to the minute
    st.sampled_from([datetime(2025, 3, 9, 6, 59), datetime(2025, 3, 9, 7, 0), datetime(2025, 11, 2, 5, 30),
                     datetime(2025, 11, 2, 6, 0), datetime(2025, 1, 1, 0, 0), datetime(2024, 12, 31, 23, 59),
                     datetime(2025, 3, 31, 18, 30), datetime(2025, 4, 1, 0, 0)]).map(lambda d: d.replace(tzinfo=UTC)),
)
deal = st.fixed_dictionaries({
    "created_at": moments, "closed_at": moments, "is_closed": st.booleans(), "is_won": st.booleans(),
    "amount": st.one_of(st.none(), st.integers(0, 10**6).map(lambda cents: cents / 100)),
    "currency": st.sampled_from([None, "USD", "EUR"]), "owner_id": st.sampled_from([None, "u1", "u2", "u3"]),
    "pipeline": st.sampled_from([None, "new", "renewal"]), "is_deleted": st.booleans(),
})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def empty_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(f"grouped-random-{request.param}")
    with store_url_for(request.param, folder, request) as url:
        store = Store(url)
        yield store
        store.engine.dispose()


def load(store: Store, deals: list[dict]) -> None:
    """Replace the store's deals, users and rates with these (users u1..u3 in two teams; EUR rates from 2024-06)."""
    rows = {
        "deals": [{"id": f"d{i}", **d} for i, d in enumerate(deals)],
        "users": [{"id": "u1", "team": "east"}, {"id": "u2", "team": "west"}, {"id": "u3", "team": "east"}],
        "fx_rates": [{"id": "r1", "currency": "EUR", "valid_from": date(2024, 6, 1), "rate_to_reporting": 1.1},
                     {"id": "r2", "currency": "EUR", "valid_from": date(2025, 3, 9), "rate_to_reporting": 1.07}],
    }
    with store.transaction() as conn:
        for table, table_rows in rows.items():
            conn.exec_driver_sql(f"DELETE FROM {table}")
            columns = ["source", "synced_at", "is_deleted", *sorted({k for r in table_rows for k in r} - {"is_deleted"})]
            encoded = []
            for row in table_rows:
                row = {"source": "crm", "synced_at": datetime.now(UTC), "is_deleted": False, **row}
                encoded.append(tuple(encode(store, row[c]) if c in row else None for c in columns))
            store.upsert_rows(conn, table, columns, encoded)


def encode(store: Store, value):
    if isinstance(value, datetime):
        return store.encoder("datetime")(value)
    if isinstance(value, date):
        return store.encoder("date")(value) if store.encoder("date") else value
    return value


@property_settings(default=6)
@given(deals=st.lists(deal, max_size=40), zone=st.sampled_from(list(CALENDARS)),
       split=st.sampled_from([("month", ("owner",)), ("week", ("team",)), ("day", ()), ("quarter", ("pipeline",)),
                              (None, ("owner", "pipeline"))]))
def test_random_datasets_both_ways(empty_store: Store, registry, deals, zone, split):
    load(empty_store, deals)
    settings = CALENDARS[zone]
    grain, dimensions = split
    period = settings.calendar.parse("2025-Q1" if grain == "day" else "2025", today=settings.today)
    for metric in grouped_metrics(registry):
        for params in param_variants(metric):
            run = Run([metric], period, {metric.id: params}, grain, dimensions, COMPARISONS)
            try:
                grouped, per_cell = both_ways(empty_store, run, settings)
            except Exception as exc:  # a dimension no row fills is refused: the same both ways
                with pytest.raises(type(exc), match=str(exc)):
                    run_metrics(empty_store.engine, run, settings, persist=False, grouped=False)
                continue
            assert grouped == per_cell, (metric.id, params)
