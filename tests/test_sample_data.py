"""The sample dataset: deterministic, in the files layout, and internally consistent."""

from __future__ import annotations

import csv
import re
import tracemalloc
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import pytest

from crmkpi.models import ENTITIES
from crmkpi.sample_data import CUSTOM_COLUMNS, DEMO_SEED, generate
from crmkpi.store import column_kinds

WINDOW_START, WINDOW_END = "2024-01-01T00:00:00Z", "2025-12-31T23:59:00Z"


def read(folder, table) -> list[dict[str, str]]:
    with open(folder / f"{table}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def by_id(rows):
    return {row["id"]: row for row in rows}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return folder, generate(folder)


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    counts = [generate(tmp_path / name, seed=seed, deals=300) for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    assert counts[0] == counts[1]
    for table in ENTITIES:
        assert (tmp_path / "a" / f"{table}.csv").read_bytes() == (tmp_path / "b" / f"{table}.csv").read_bytes()
    differing = [t for t in ENTITIES
                 if (tmp_path / "a" / f"{t}.csv").read_bytes() != (tmp_path / "c" / f"{t}.csv").read_bytes()]
    assert {"accounts", "deals", "deal_stage_changes"} <= set(differing)
    assert DEMO_SEED == 42


def test_returned_counts_match_the_files(demo):
    folder, counts = demo
    assert set(counts) == set(ENTITIES)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.csv" for t in ENTITIES)
    for table, count in counts.items():
        assert len(read(folder, table)) == count, table
    assert counts["deals"] == 2000
    assert counts["users"] == 19 and counts["pipeline_stages"] == 6 and counts["fx_rates"] == 75
    assert counts["quotas"] == 12 * 8  # a quota per rep per quarter
    assert 300 < counts["accounts"] < 1200
    assert counts["deal_stage_changes"] > counts["deals"]


def test_headers_are_model_columns_then_documented_custom_columns(demo):
    folder, _ = demo
    for table, model in ENTITIES.items():
        with open(folder / f"{table}.csv", newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
        model_columns = [c.name for c in model.__table__.columns if c.name not in ("source", "synced_at", "extra")]
        custom = list(CUSTOM_COLUMNS.get(table, ()))
        assert header[0] == "id"
        assert set(model_columns) - {"is_deleted"} <= set(header), table
        assert header[len(header) - len(custom):] == custom, table
        assert set(header) - set(custom) <= set(model_columns), table
    assert CUSTOM_COLUMNS == {"accounts": ("employee_band",), "deals": ("forecast_category",)}


def test_values_parse_as_their_column_kind(demo):
    folder, _ = demo
    parsers = {
        "datetime": lambda v: v.endswith("Z") and parse_time(v).utcoffset() == timedelta(0),
        "date": lambda v: len(v) == 10 and date.fromisoformat(v),
        "bool": lambda v: v in ("true", "false"),
        "float": float, "int": int, "str": str,
    }
    for table in ENTITIES:
        kinds = column_kinds(table)
        for row in read(folder, table):
            for column, value in row.items():
                if value and column in kinds:
                    assert parsers.get(kinds[column], str)(value) is not False, (table, column, value)
            assert row["updated_at"] >= row["created_at"], (table, row["id"])
    for row in read(folder, "deals") + read(folder, "orders"):
        assert re.fullmatch(r"\d+\.\d\d", row["amount"]), row


def test_deals_and_their_stage_histories_agree(demo):
    folder, _ = demo
    deals = by_id(read(folder, "deals"))
    accounts, users = by_id(read(folder, "accounts")), by_id(read(folder, "users"))
    history = defaultdict(list)
    for change in read(folder, "deal_stage_changes"):
        history[change["deal_id"]].append((change["entered_at"], change["stage"]))
    assert set(history) == set(deals)
    stages = [s["stage"] for s in sorted(read(folder, "pipeline_stages"), key=lambda s: int(s["display_order"]))]
    assert stages == ["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"]
    for deal_id, deal in deals.items():
        assert deal["account_id"] in accounts and users[deal["owner_id"]]["role"] == "rep"
        assert accounts[deal["account_id"]]["owner_id"] == deal["owner_id"]
        changes = history[deal_id]
        times = [at for at, _ in changes]
        assert times == sorted(times) and times[0] == deal["created_at"]
        assert all(a[1] != b[1] for a, b in zip(changes, changes[1:])), "a change must change the stage"
        assert WINDOW_START <= deal["created_at"] and times[-1] <= WINDOW_END
        last_stage = changes[-1][1]
        assert deal["stage"] == last_stage
        if deal["is_closed"] == "true":
            assert last_stage == ("closed_won" if deal["is_won"] == "true" else "closed_lost")
            assert deal["closed_at"] == times[-1]
            assert deal["forecast_category"] in ("closed", "omitted")
        else:
            assert last_stage not in ("closed_won", "closed_lost") and deal["closed_at"] == ""
            assert deal["is_won"] == "false"
    count = Counter((d["deal_type"], d["stage"]) for d in deals.values())
    assert {t for t, _ in count} == {"new_business", "renewal", "upsell"}
    assert count["new_business", "closed_won"] > 50 and count["new_business", "closed_lost"] > 50
    assert sum(n for (_, stage), n in count.items() if not stage.startswith("closed")) > 50
    re_entries = sum(1 for changes in history.values() if len({s for _, s in changes}) < len(changes))
    assert re_entries > 20
    assert 0 < sum(d["is_deleted"] == "true" for d in deals.values()) < 30
    currencies = Counter(d["currency"] for d in deals.values())
    assert currencies["USD"] > currencies["EUR"] > 0 and currencies["GBP"] > 0


def test_references_point_at_existing_rows(demo):
    folder, _ = demo
    accounts, contacts = by_id(read(folder, "accounts")), by_id(read(folder, "contacts"))
    users, deals = by_id(read(folder, "users")), by_id(read(folder, "deals"))
    for table in ("contacts", "tickets", "subscriptions", "orders", "survey_responses"):
        assert all(row["account_id"] in accounts for row in read(folder, table)), table
    for table in ("tickets", "survey_responses"):
        for row in read(folder, table):
            assert contacts[row["contact_id"]]["account_id"] == row["account_id"]
    assert {users[t["owner_id"]]["role"] for t in read(folder, "tickets")} == {"agent"}
    assert {users[q["owner_id"]]["team"] for q in read(folder, "quotas")} == {"na", "emea", "apac"}
    converted = [lead for lead in read(folder, "leads") if lead["status"] == "converted"]
    assert len(converted) > 100
    for lead in converted:
        deal = deals[lead["converted_deal_id"]]
        assert deal["account_id"] == lead["converted_account_id"] and deal["deal_type"] == "new_business"
        assert lead["created_at"] <= lead["converted_at"] == deal["created_at"]


def test_subscriptions_renew_from_the_previous_term_end(demo):
    folder, _ = demo
    subscriptions = read(folder, "subscriptions")
    starts = {(s["account_id"], s["started_at"]) for s in subscriptions}
    assert {s["status"] for s in subscriptions} == {"active", "renewed", "ended", "cancelled"}
    for sub in subscriptions:
        term = parse_time(sub["term_end"]) - parse_time(sub["started_at"])
        assert term in (timedelta(days=365), timedelta(days=366))
        if sub["status"] == "renewed":
            assert sub["ended_at"] == sub["term_end"] and (sub["account_id"], sub["term_end"]) in starts
        elif sub["status"] == "cancelled":
            assert sub["started_at"] < sub["ended_at"] < sub["term_end"]
        elif sub["status"] == "active":
            assert sub["ended_at"] == ""
    won_accounts = {d["account_id"] for d in read(folder, "deals") if d["is_won"] == "true"}
    assert won_accounts <= {s["account_id"] for s in subscriptions}


def test_surveys_tickets_and_reference_tables_look_real(demo):
    folder, _ = demo
    scores = defaultdict(set)
    for response in read(folder, "survey_responses"):
        scores[response["survey"], response["scale_max"]].add(int(response["score"]))
    assert scores.keys() == {("nps", "10"), ("csat", "5")}
    assert scores["nps", "10"] == set(range(11)) and scores["csat", "5"] == set(range(1, 6))
    for ticket in read(folder, "tickets"):
        assert (ticket["resolved_at"] != "") == (ticket["status"] == "resolved")
        if ticket["first_response_at"]:
            assert ticket["created_at"] < ticket["first_response_at"] <= (ticket["resolved_at"] or WINDOW_END)
    rates = read(folder, "fx_rates")
    assert Counter(r["currency"] for r in rates) == {"USD": 25, "EUR": 25, "GBP": 25}
    # Every dated amount has a rate on or before it: the rates start before the oldest subscription.
    first_rate = min(r["valid_from"] for r in rates)
    assert all(first_rate <= s["started_at"][:10] for s in read(folder, "subscriptions"))
    assert all(first_rate <= o["ordered_at"][:10] for o in read(folder, "orders"))
    assert {float(r["rate_to_reporting"]) for r in rates if r["currency"] == "USD"} == {1.0}
    spend = read(folder, "marketing_spend")
    assert all(bool(s["spent_on"]) != bool(s["period_start"] and s["period_end"]) for s in spend)
    assert {s["channel"] for s in spend} == {"paid_search", "paid_social", "content", "email", "events"}


def test_stage_changes_per_deal_sets_the_history_size(tmp_path):
    counts = generate(tmp_path, deals=2000, stage_changes_per_deal=5.0)
    assert counts["deals"] == 2000
    assert abs(counts["deal_stage_changes"] - 10_000) <= 500
    entered = defaultdict(list)
    for change in read(tmp_path, "deal_stage_changes"):
        entered[change["deal_id"]].append(change["entered_at"])
    assert all(times == sorted(times) for times in entered.values())


def test_memory_stays_flat_while_streaming(tmp_path):
    tracemalloc.start()
    try:
        counts = generate(tmp_path, deals=5000, stage_changes_per_deal=5.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    written = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert counts["deal_stage_changes"] == 25_000
    assert peak < 4_000_000 < written
