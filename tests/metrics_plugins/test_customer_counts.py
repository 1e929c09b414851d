"""The customers of every cell (metrics_plugins/customer_counts.py) against their definition, on random books.

The grouped churn, retention and clv compare with their per-cell path in tests/test_grouped.py; here the
counts themselves meet a plain-Python oracle of ``customers._states`` on many more books and grids than
that test can afford: subscriptions starting and ending exactly at, or a minute around, the parts'
bounds, of zero or negative length, open, overlapping and meeting; parts that tile, overlap, nest or
repeat.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, strategies as st

from crmkpi.grouped import Cell, Grid
from crmkpi.metrics_plugins.customer_counts import CustomerCounts, customer_counts
from crmkpi.periods import Period
from crmkpi.store import Store

from conftest import property_settings, store_url_for

DAYS = [date(2024, 12, 1), date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1), date(2026, 1, 1)]
BOUNDS = [datetime.combine(day, datetime.min.time(), UTC) for day in DAYS]
MINUTE = timedelta(minutes=1)
#: Every bound, a minute before and after it, and far before and after them all.
instants = st.sampled_from([moment + shift for moment in BOUNDS for shift in (-MINUTE, timedelta(0), MINUTE)]
                           + [datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)])
OWNERS = {"a1": "u1", "a2": "u1", "a3": "u2", "a4": None}
subscription = st.fixed_dictionaries({
    "account_id": st.sampled_from([None, *OWNERS]), "started_at": st.one_of(st.none(), instants),
    "ended_at": st.one_of(st.none(), instants), "is_deleted": st.booleans()})
#: Parts as pairs of distinct days, in order: they may tile, overlap, nest or repeat.
part = st.lists(st.sampled_from(range(len(DAYS))), min_size=2, max_size=2, unique=True).map(sorted)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    with store_url_for(request.param, tmp_path_factory.mktemp(f"customers-{request.param}"), request) as url:
        store = Store(url)
        yield store
        store.engine.dispose()


@property_settings(default=40)
@given(subscriptions=st.lists(subscription, max_size=12), parts=st.lists(part, min_size=1, max_size=5),
       by_owner=st.booleans())
def test_counts_match_their_definition(store: Store, subscriptions, parts, by_owner):
    load(store, subscriptions)
    periods = [Period(DAYS[first], DAYS[last], f"{first}-{last}") for first, last in parts]
    with store.engine.connect() as conn:
        grid = Grid(conn, periods, [p.bounds() for p in periods], ("owner",) if by_owner else (), [], {})
        found = customer_counts(grid)
    live = [s for s in subscriptions if not s["is_deleted"] and s["account_id"] and s["started_at"]]
    expected = {}
    for index, (start, end) in enumerate(grid.bounds):
        for account in {s["account_id"] for s in live}:
            mine = [s for s in live if s["account_id"] == account]
            cell = Cell(index, (OWNERS[account],) if by_owner else ())
            counts = expected.get(cell, CustomerCounts())
            expected[cell] = CustomerCounts(*(a + b for a, b in zip(counts, flags(mine, start, end))))
    assert found == {cell: counts for cell, counts in expected.items() if any(counts)}


def flags(subscriptions: list[dict], start: datetime, end: datetime) -> CustomerCounts:
    """One account's contribution to a window's counts, as ``customers._states`` defines its flags."""
    def customer_at(moment):
        return any(s["started_at"] < moment and (s["ended_at"] is None or s["ended_at"] >= moment)
                   for s in subscriptions)
    at_start, at_end = customer_at(start), customer_at(end)
    joined = any(start <= s["started_at"] < end and (s["ended_at"] is None or s["ended_at"] > s["started_at"])
                 for s in subscriptions)
    new = start <= min(s["started_at"] for s in subscriptions) < end
    return CustomerCounts(at_start, at_end, at_start and not at_end, not at_start and joined and not at_end, new)


def load(store: Store, subscriptions: list[dict]) -> None:
    """Replace the store's subscriptions and accounts with these (accounts a1..a4 owned as :data:`OWNERS`)."""
    encode = store.encoder("datetime")
    rows = {"accounts": [{"id": account, "owner_id": owner} for account, owner in OWNERS.items()],
            "subscriptions": [{"id": f"s{i}", **s} for i, s in enumerate(subscriptions)]}
    with store.transaction() as conn:
        for table, table_rows in rows.items():
            conn.exec_driver_sql(f"DELETE FROM {table}")
            columns = ["source", "synced_at", "is_deleted", "id",
                       *sorted({k for r in table_rows for k in r} - {"is_deleted", "id"})]
            encoded = [tuple(encode(v) if isinstance(v, datetime) else v for v in
                             ["crm", datetime.now(UTC), r.get("is_deleted", False), r["id"],
                              *(r.get(c) for c in columns[4:])]) for r in table_rows]
            store.upsert_rows(conn, table, columns, encoded)
