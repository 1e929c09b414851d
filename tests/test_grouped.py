"""Grouped metrics agree with the per-cell path, their oracle: every value, numerator, denominator, note,
error, comparison and target, across grains, segments, comparisons, time zones, fiscal years and week
starts, on the sample company and on random datasets, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, strategies as st

from conftest import ALL_BUILTINS, BUILT_IN_GROUPED, KpiProject, property_settings, store_url_for
from crmkpi.engine import COMPARISONS, Run, Settings, run_metrics, same_results
from crmkpi.errors import ConfigError, MetricError
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
    """The defaults, each other choice of each param with choices on its own, and each flag flipped."""
    return [{}] + [{p.name: choice} for p in metric.params if p.choices for choice in p.choices
                   if choice != p.default] + [{p.name: not p.default} for p in metric.params if p.type is bool]


def both_ways(store: Store, run: Run, settings: Settings) -> tuple[list[dict], list[dict]]:
    """The results of ``run`` grouped and cell by cell, without what differs between any two runs. A grouped
    compute failing otherwise than with a MetricError (SQL a database refuses, say) fails the test: the
    engine would quietly compute cell by cell, and the comparison would compare the oracle with itself."""
    def stripped(results: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in results]

    failures: list[BaseException] = []

    def watched(metric):
        def grouped(grid):
            try:
                return metric.grouped(grid)
            except MetricError:
                raise
            except Exception as exc:
                failures.append(exc)
                raise
        return replace(metric, grouped=grouped)

    grouped = run_metrics(store.engine, replace(run, metrics=[watched(m) for m in run.metrics]), settings,
                          persist=False, grouped=True)
    assert not failures, failures[0]
    return stripped(grouped), stripped(run_metrics(store.engine, run, settings, persist=False, grouped=False))


def agree(store: Store, run: Run, settings: Settings) -> list[dict] | None:
    """Asserts that ``run`` gives the same results both ways, and returns them; None when both refuse it
    alike (a dimension that applies to none of its metrics' tables)."""
    try:
        grouped, per_cell = both_ways(store, run, settings)
    except ConfigError as refused:
        with pytest.raises(ConfigError, match=re.escape(str(refused))):
            run_metrics(store.engine, run, settings, persist=False, grouped=False)
        return None
    differences = [(a["period"], a["segment"], key, a[key], b[key]) for a, b in zip(grouped, per_cell)
                   for key in a if not same_results(a[key], b[key])]
    assert len(grouped) == len(per_cell) and not differences, (run.metrics[0].id, run.params, run.grain,
                                                               run.segments, differences[:3])
    return grouped


def test_the_built_in_grouped_metrics(registry):
    assert [m.id for m in grouped_metrics(registry)] == BUILT_IN_GROUPED


# --- the sample company -----------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def company(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(f"grouped-{request.param}")
    with store_url_for(request.param, folder, request) as url:
        kpi = KpiProject(folder / "kpi", url)
        generate(kpi.data, seed=7, deals=400)
        add_team_quotas(kpi.data / "quotas.csv")
        kpi.configure(files="tables:\n  accounts: {extra: [employee_band]}\n  deals: {extra: [forecast_category]}\n")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
            kpi.sync()
        store = Store(url)
        yield store
        store.engine.dispose()


def add_team_quotas(path) -> None:
    """The sample company's quotas are its reps', by quarter: add team quotas, by quarter for one team and by
    month in euros for another, so that ``level=team`` and the month grain have values too."""
    months = [date(2025, month, 1) for month in range(1, 13)]
    ends = [*months[1:], date(2026, 1, 1)]
    rows = [("na", start, ends[i + 2] - timedelta(days=1), 2_000_000, "USD") for i, start in enumerate(months)
            if i % 3 == 0] + [("emea", start, end - timedelta(days=1), 300_000, "EUR") for start, end in zip(months, ends)]
    with open(path, "a") as quotas:
        for n, (team, start, last, amount, currency) in enumerate(rows):
            quotas.write(f"TQ{n},2024-12-01T00:00:00Z,2024-12-01T00:00:00Z,,{team},{start},{last},{amount},{currency}\n")


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
    ("Kolkata, April fiscal year, Sunday weeks", "week", ()),
    ("Kolkata, April fiscal year, Sunday weeks", "month", ("lead_source",)),
    ("Kolkata, April fiscal year, Sunday weeks", "quarter", ("extra.employee_band",)),
    ("Kolkata, April fiscal year, Sunday weeks", "year", ("owner",)),
]


#: Shorter periods for the finer grains (the per-cell oracle is slow): both hold New York's spring DST change.
PERIODS = {"day": "2025-03", "week": "2025-Q1", "month": "2025-03-01..2025-11-30"}


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{z}-{g}-{'+'.join(d)}" for z, g, d in CASES])
def test_the_sample_company_both_ways(company: Store, registry, case):
    zone, grain, dimensions = CASES[case]
    settings = CALENDARS[zone]
    for metric in grouped_metrics(registry):
        period = settings.calendar.parse(PERIODS.get(grain, "2025"), today=settings.today)
        variants = param_variants(metric)  # the defaults and the others in turn: each case one of them
        for params in [variants[case % len(variants)]]:
            found = agree(company, Run([metric], period, {metric.id: params}, grain, dimensions, COMPARISONS),
                          settings)
            # the comparison means something: values (or an error a variant gets in every cell), not only
            # empty cells; a day or a week can lack surveys, and the company's one sync is after every period
            assert found is None or grain in ("day", "week") or metric.id == "days_since_sync" or \
                any(r["value"] is not None or r["error"] for r in found), (metric.id, grain)


def test_parts_that_overlap_join_the_calendar(company: Store, registry):
    """18 months and their year ago overlap: rows are placed by joining the calendar, not by CASE."""
    settings = CALENDARS["New York"]
    period = settings.calendar.parse("2024-03-01..2025-08-31", today=settings.today)
    year_ago = settings.calendar.year_ago(period)
    assert year_ago.end > period.start
    for metric in grouped_metrics(registry):
        agree(company, Run([metric], period, {}, None, ("team",), COMPARISONS), settings)


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
        grouped = agree(company, run, settings)
        failed = [(r["period"], r["error"]) for r in grouped if r["error"]]
        assert [period for period, _ in failed] == ["2025-06", "2025-07"]  # the deal's team; July compares with June
        assert failed[0][1].startswith("no fx_rates rate for XTS on or before 2025-06-")
        assert failed[1][1].startswith("previous period (2025-06): no fx_rates rate for XTS")
    finally:
        with company.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE deals SET currency = 'USD' WHERE currency = 'XTS'")


def test_a_missing_rate_of_a_subscription_without_account_fails_the_same_cells_both_ways(company: Store, registry):
    """A subscription without an account counts for nobody, but converting MRR checks its rate, per cell too."""
    false = "false" if company.dialect == "postgresql" else "0"
    with company.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO subscriptions (source, id, is_deleted, currency, mrr, started_at, ended_at) "
                             f"VALUES ('crm', 'orphan', {false}, 'XTS', 100, '2025-03-10 00:00:00.000000', "
                             "'2025-04-20 00:00:00.000000')")
    try:
        settings = CALENDARS["UTC"]
        run = Run([registry.metrics["gross_mrr_retention"]], settings.calendar.parse("2025", today=settings.today),
                  {}, "month", (), COMPARISONS)
        failed = [(r["period"], r["error"]) for r in agree(company, run, settings) if r["error"]]
        # running at March's end and April's start; May compares with April
        assert [period for period, _ in failed] == ["2025-03", "2025-04", "2025-05"]
        assert failed[0][1].startswith("no fx_rates rate for XTS on or before 2025-03-10")
    finally:
        with company.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM subscriptions WHERE id = 'orphan'")


def test_open_stays_count_in_the_part_holding_today(company: Store, registry):
    """With ``open_stays=until_today`` an open deal's current stay counts in today's part, whatever the grain."""
    settings = CALENDARS["New York"]
    period = settings.calendar.parse("2026-05-18..2026-06-07", today=settings.today)
    for grain, holding_today in (("day", "2026-06-01"), ("week", "2026-W23")):
        found = agree(company, Run([registry.metrics["stage_length"]], period,
                                   {"stage_length": {"open_stays": "until_today"}}, grain, ("owner",), ()), settings)
        measured = {r["period"]: r["denominator"] for r in found if r["denominator"]}
        assert list(measured) == [holding_today], measured  # no stay of the sample company ends in May 2026


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
    "account_id": st.sampled_from([None, "a1", "a2", "a3", "a4"]), "deal_type": st.sampled_from([None, "upsell", "New"]),
    "stage": st.sampled_from([None, "demo", "proposal", "won"]),
})

ticket = st.fixed_dictionaries({
    "created_at": moments, "resolved_at": moments, "first_response_at": moments,
    "owner_id": st.sampled_from([None, "u1", "u2", "u3"]), "channel": st.sampled_from([None, "email", "chat"]),
    "is_deleted": st.booleans(),
})

#: Stage changes of the random deals (and of deals the store lacks: d40 and up), entered at the same moments.
stage_change = st.fixed_dictionaries({
    "deal_id": st.integers(0, 44).map(lambda i: f"d{i}"), "stage": st.sampled_from(["demo", "proposal", "won"]),
    "entered_at": moments.filter(lambda moment: moment is not None), "is_deleted": st.booleans(),
})

#: Orders and subscriptions of accounts a1..a4 (and of none), at the same moments.
account = st.sampled_from([None, "a1", "a2", "a3", "a4"])
order = st.fixed_dictionaries({
    "account_id": account, "ordered_at": moments, "amount": st.one_of(st.none(), st.integers(-100, 10**4)),
    "cost": st.one_of(st.none(), st.integers(0, 10**4)), "currency": st.sampled_from([None, "USD", "EUR"]),
    "is_deleted": st.booleans(),
})
subscription = st.fixed_dictionaries({
    "account_id": account, "started_at": moments, "ended_at": moments, "term_end": moments,
    "mrr": st.one_of(st.none(), st.integers(0, 10**4)), "currency": st.sampled_from([None, "USD", "EUR"]),
    "status": st.sampled_from([None, "active", "renewed"]), "is_deleted": st.booleans(),
})

lead = st.fixed_dictionaries({
    "created_at": moments, "converted_at": moments, "owner_id": st.sampled_from([None, "u1", "u2", "u3"]),
    "converted_deal_id": st.one_of(st.none(), st.integers(0, 44).map(lambda i: f"d{i}")),
    "converted_account_id": account, "is_deleted": st.booleans(),
})

#: Quotas of reps and teams over months, quarters and odd spans (two of one holder may overlap: an error).
quota = st.builds(
    lambda holder, start, days, amount, currency, deleted: {
        "owner_id": holder if holder.startswith("u") else None, "team": "east" if holder != "west" else "west",
        "period_start": start, "period_end": start + timedelta(days=days), "amount": amount, "currency": currency,
        "is_deleted": deleted},
    st.sampled_from(["u1", "u2", "u3", "east", "west"]),
    st.sampled_from([date(2024, 12, 1), date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 31), date(2025, 4, 1)]),
    st.sampled_from([0, 27, 30, 89, 364]), st.one_of(st.none(), st.integers(0, 10**6)),
    st.sampled_from([None, "USD", "EUR"]), st.booleans())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def empty_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(f"grouped-random-{request.param}")
    with store_url_for(request.param, folder, request) as url:
        store = Store(url)
        yield store
        store.engine.dispose()


def load(store: Store, deals: list[dict], tickets: list[dict], stage_changes: list[dict], quotas: list[dict],
         orders: list[dict], subscriptions: list[dict], leads: list[dict]) -> None:
    """Replace the store's rows with these, and users, accounts, stages and rates (users u1..u3 in two teams;
    accounts a1..a4 owned by them; "won" a closed stage; EUR rates from 2024-06)."""
    rows = {
        "orders": [{"id": f"o{i}", **o} for i, o in enumerate(orders)],
        "leads": [{"id": f"l{i}", **one} for i, one in enumerate(leads)],
        "subscriptions": [{"id": f"s{i}", **sub} for i, sub in enumerate(subscriptions)],
        "accounts": [{"id": "a1", "owner_id": "u1"}, {"id": "a2", "owner_id": "u2"}, {"id": "a3", "owner_id": "u3"},
                     {"id": "a4"}],
        "quotas": [{"id": f"q{i}", **q} for i, q in enumerate(quotas)],
        "deals": [{"id": f"d{i}", **d} for i, d in enumerate(deals)],
        "tickets": [{"id": f"t{i}", **t} for i, t in enumerate(tickets)],
        "deal_stage_changes": [{"id": f"c{i}", **c} for i, c in enumerate(stage_changes)],
        "pipeline_stages": [{"id": "s1", "stage": "won", "is_closed": True, "is_won": True},
                            {"id": "s2", "stage": "demo", "is_closed": False, "is_won": False, "probability": 0.25},
                            {"id": "s3", "stage": "proposal", "is_closed": False, "is_won": False, "probability": 0.5}],
        "users": [{"id": "u1", "team": "east"}, {"id": "u2", "team": "west"}, {"id": "u3", "team": "east"}],
        "fx_rates": [{"id": "r1", "currency": "EUR", "valid_from": date(2024, 6, 1), "rate_to_reporting": 1.1},
                     {"id": "r2", "currency": "EUR", "valid_from": date(2025, 3, 9), "rate_to_reporting": 1.07}],
    }
    with store.transaction() as conn:
        for table, table_rows in rows.items():
            conn.exec_driver_sql(f"DELETE FROM {table}")
            given = sorted({k for r in table_rows for k in r} - {"is_deleted"})
            columns = ["source", "synced_at", "is_deleted", *given]
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
@given(data=st.data(), deals=st.lists(deal, max_size=40), tickets=st.lists(ticket, max_size=30),
       stage_changes=st.lists(stage_change, max_size=60), quotas=st.lists(quota, max_size=6),
       orders=st.lists(order, max_size=30), subscriptions=st.lists(subscription, max_size=20),
       leads=st.lists(lead, max_size=30),
       zone=st.sampled_from(list(CALENDARS)),
       split=st.sampled_from([("month", ("owner",)), ("month", ("stage",)), ("week", ("team",)), ("day", ()), ("quarter", ("pipeline",)),
                              (None, ("owner", "pipeline"))]))
def test_random_datasets_both_ways(empty_store: Store, registry, data, deals, tickets, stage_changes, quotas, orders,
                                   subscriptions, leads, zone, split):
    load(empty_store, deals, tickets, stage_changes, quotas, orders, subscriptions, leads)
    settings = CALENDARS[zone]
    grain, dimensions = split
    period = settings.calendar.parse("2025-Q1" if grain == "day" else "2025", today=settings.today)
    for metric in grouped_metrics(registry):
        for params in [data.draw(st.sampled_from(param_variants(metric)), label=metric.id)]:
            agree(empty_store, Run([metric], period, {metric.id: params}, grain, dimensions, COMPARISONS), settings)
