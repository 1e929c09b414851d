"""Pipeline metrics (metrics_plugins/pipeline.py) through the real CLI: hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

T = "true"
F = "false"


def by_segment(results: list[dict], dimension: str) -> dict:
    return {r["segment"][dimension]: r for r in results}


def assert_value(result: dict, value, numerator=None, denominator=None) -> None:
    assert result["value"] == pytest.approx(value), result
    if numerator is not None:
        assert result["numerator"] == pytest.approx(numerator), result
    if denominator is not None:
        assert result["denominator"] == pytest.approx(denominator), result


def assert_empty(result: dict) -> None:
    assert result["value"] is None and result["note"], result


# -- stage_length ------------------------------------------------------------------------------

STAGES = [
    {"id": "s1", "pipeline": "default", "stage": "qualify", "probability": 0.1, "is_closed": F, "is_won": F},
    {"id": "s2", "pipeline": "default", "stage": "demo", "probability": 0.3, "is_closed": F, "is_won": F},
    {"id": "s3", "pipeline": "default", "stage": "proposal", "probability": 0.6, "is_closed": F, "is_won": F},
    {"id": "s4", "pipeline": "default", "stage": "closedwon", "probability": 1.0, "is_closed": T, "is_won": T},
    {"id": "s5", "pipeline": "default", "stage": "closedlost", "probability": 0.0, "is_closed": T, "is_won": F},
]


def stage_history(kpi) -> None:
    """d1 (open, owner u1): qualify → demo → qualify → proposal; d2 (won, owner u2): qualify → proposal →
    closedwon; d3 (open, u1): a qualify stay ending in February; d4 is deleted; one deleted change of d1."""
    kpi.write("deals", [
        {"id": "d1", "owner_id": "u1", "pipeline": "default", "stage": "proposal", "is_closed": F, "is_won": F,
         "created_at": "2025-01-01T00:00:00Z"},
        {"id": "d2", "owner_id": "u2", "pipeline": "default", "stage": "closedwon", "is_closed": T, "is_won": T,
         "created_at": "2025-01-02T00:00:00Z", "closed_at": "2025-01-10T00:00:00Z"},
        {"id": "d3", "owner_id": "u1", "pipeline": "default", "stage": "demo", "is_closed": F, "is_won": F,
         "created_at": "2025-01-30T00:00:00Z"},
        {"id": "d4", "owner_id": "u1", "pipeline": "default", "stage": "demo", "is_closed": F, "is_won": F,
         "created_at": "2025-01-01T00:00:00Z", "is_deleted": T},
    ])
    kpi.write("deal_stage_changes", [
        {"id": "c1", "deal_id": "d1", "stage": "qualify", "entered_at": "2025-01-01T00:00:00Z"},
        {"id": "c2", "deal_id": "d1", "stage": "demo", "entered_at": "2025-01-03T00:00:00Z"},
        {"id": "c3", "deal_id": "d1", "stage": "qualify", "entered_at": "2025-01-04T00:00:00Z"},
        {"id": "c4", "deal_id": "d1", "stage": "proposal", "entered_at": "2025-01-08T12:00:00Z"},
        {"id": "c5", "deal_id": "d2", "stage": "qualify", "entered_at": "2025-01-02T00:00:00Z"},
        {"id": "c6", "deal_id": "d2", "stage": "proposal", "entered_at": "2025-01-05T00:00:00Z"},
        {"id": "c7", "deal_id": "d2", "stage": "closedwon", "entered_at": "2025-01-10T00:00:00Z"},
        {"id": "c8", "deal_id": "d3", "stage": "qualify", "entered_at": "2025-01-30T00:00:00Z"},
        {"id": "c9", "deal_id": "d3", "stage": "demo", "entered_at": "2025-02-02T00:00:00Z"},
        {"id": "c10", "deal_id": "d4", "stage": "qualify", "entered_at": "2025-01-01T00:00:00Z"},
        {"id": "c11", "deal_id": "d4", "stage": "demo", "entered_at": "2025-01-11T00:00:00Z"},
        # deleted in the source: must not cut d1's first qualify stay in two
        {"id": "c12", "deal_id": "d1", "stage": "demo", "entered_at": "2025-01-02T00:00:00Z", "is_deleted": T},
    ])
    kpi.write("pipeline_stages", STAGES)
    kpi.sync()


def test_stage_length_acceptance_reentered_stage(kpi_any_store) -> None:
    """qualify stays ending in January: d1 2 days and 4.5 days (re-entry), d2 3 days."""
    stage_history(kpi_any_store)
    per_stay = kpi_any_store.one("stage_length", "--period", "2025-01", "--param", "stage=qualify")
    assert_value(per_stay, 9.5 / 3, 9.5, 3)
    assert per_stay["unit"] == "days"
    per_deal = kpi_any_store.one("stage_length", "--period", "2025-01", "--param", "stage=qualify",
                                 "--param", "per=deal")
    assert_value(per_deal, 9.5 / 2, 9.5, 2)  # d1: 2 + 4.5, d2: 3
    # percentiles of the stays 2, 3, 4.5 and of the deals' sums 3, 6.5
    median = kpi_any_store.one("stage_length", "--period", "2025-01", "--param", "stage=qualify",
                               "--param", "stat=median")
    assert (median["value"], median["numerator"], median["denominator"]) == (pytest.approx(3), None, 3)
    assert kpi_any_store.one("stage_length", "--period", "2025-01", "--param", "stage=qualify", "--param",
                             "stat=p75")["value"] == pytest.approx(3.75)
    assert kpi_any_store.one("stage_length", "--period", "2025-01", "--param", "stage=qualify", "--param",
                             "per=deal", "--param", "stat=median")["value"] == pytest.approx(4.75)
    # d3's qualify stay ends in February
    assert_value(kpi_any_store.one("stage_length", "--period", "2025-02", "--param", "stage=qualify"), 3, 3, 1)


def test_stage_length_segments_by_stage_and_owner(kpi_any_store) -> None:
    stage_history(kpi_any_store)
    stages = by_segment(kpi_any_store.run("stage_length", "--period", "2025-01", "--segment", "stage"), "stage")
    assert set(stages) == {"qualify", "demo", "proposal", "closedwon"}
    assert_value(stages["qualify"], 9.5 / 3, 9.5, 3)
    assert_value(stages["demo"], 1, 1, 1)  # d1's demo stay; d3's demo stay is still open
    assert_value(stages["proposal"], 5, 5, 1)  # d2; d1's proposal stay is open
    assert_empty(stages["closedwon"])  # a closed stage has no duration
    owners = by_segment(kpi_any_store.run("stage_length", "--period", "2025-01", "--segment", "owner",
                                          "--param", "stage=qualify"), "owner")
    assert set(owners) == {"u1", "u2"}  # d4 is deleted
    assert_value(owners["u1"], 3.25, 6.5, 2)
    assert_value(owners["u2"], 3, 3, 1)


def test_stage_segments_show_the_stage_labels(kpi) -> None:
    stage_history(kpi)
    kpi.write("pipeline_stages", [{**stage, "label": stage["stage"].title()} for stage in STAGES])
    kpi.sync()
    results = kpi.run("stage_length", "--period", "2025-01", "--segment", "stage")
    assert [(r["segment"]["stage"], r["segment_labels"]["stage"]) for r in results] == [
        ("closedwon", "Closedwon"), ("demo", "Demo"), ("proposal", "Proposal"), ("qualify", "Qualify")]
    table = kpi.invoke("run", "--metric", "stage_length", "--period", "2025-01", "--segment", "stage",
                       "--no-save").stdout
    assert [line.split("│")[2].strip() for line in table.splitlines()[2:]] == \
        ["stage=Closedwon", "stage=Demo", "stage=Proposal", "stage=Qualify"]
    assert [line.split("│")[3].strip() for line in table.splitlines()[2:]] == \
        ["—", "1.0 days", "5.0 days", "3.2 days"]


def test_stage_length_pooled_empty_and_explain(kpi) -> None:
    stage_history(kpi)
    # all stages: qualify 2 + 4.5 + 3, demo 1, proposal 5
    assert_value(kpi.one("stage_length", "--period", "2025-01"), 15.5 / 5, 15.5, 5)
    # per deal with pooled stages: (deal, stage) pairs d1/qualify 6.5, d1/demo 1, d2/qualify 3, d2/proposal 5
    assert_value(kpi.one("stage_length", "--period", "2025-01", "--param", "per=deal"), 15.5 / 4, 15.5, 4)
    assert_empty(kpi.one("stage_length", "--period", "2024"))
    assert_empty(kpi.one("stage_length", "--period", "2025-01", "--param", "stage=closedwon"))
    out = kpi.invoke("explain", "stage_length", "--period", "2025-01", "--param", "stage=qualify").output
    assert "c1" in out and "c3" in out and "c5" in out and "c8" not in out and "c12" not in out


def test_stage_length_closed_stage_reopened_and_final_stay_without_stage_table(kpi) -> None:
    """A lost deal reopened: the closedlost stay is left out (closed stage); a deal closed without a
    pipeline_stages row for its final stage: its final stay is left out (the deal is closed)."""
    kpi.write("deals", [
        {"id": "d5", "is_closed": F, "is_won": F, "stage": "qualify", "created_at": "2025-03-01T00:00:00Z"},
        {"id": "d6", "is_closed": T, "is_won": F, "stage": "gone", "created_at": "2025-03-01T00:00:00Z",
         "closed_at": "2025-03-03T00:00:00Z"},
    ])
    kpi.write("deal_stage_changes", [
        {"id": "c1", "deal_id": "d5", "stage": "qualify", "entered_at": "2025-03-01T00:00:00Z"},
        {"id": "c2", "deal_id": "d5", "stage": "closedlost", "entered_at": "2025-03-02T00:00:00Z"},
        {"id": "c3", "deal_id": "d5", "stage": "qualify", "entered_at": "2025-03-09T00:00:00Z"},
        {"id": "c4", "deal_id": "d5", "stage": "demo", "entered_at": "2025-03-11T00:00:00Z"},
        {"id": "c5", "deal_id": "d6", "stage": "qualify", "entered_at": "2025-03-01T00:00:00Z"},
        {"id": "c6", "deal_id": "d6", "stage": "gone", "entered_at": "2025-03-03T00:00:00Z"},
    ])
    kpi.write("pipeline_stages", STAGES)
    kpi.sync()
    # d5 qualify 1 + 2, d6 qualify 2; closedlost (7 days) and d6's final "gone" stay are left out
    assert_value(kpi.one("stage_length", "--period", "2025-03"), 5 / 3, 5, 3)


def test_stage_length_open_stays_until_today(kpi) -> None:
    today = datetime.now(UTC).date()
    entered = today - timedelta(days=2)
    kpi.write("deals", [
        {"id": "d1", "is_closed": F, "is_won": F, "created_at": f"{entered}T00:00:00Z"},
        {"id": "d2", "is_closed": T, "is_won": T, "created_at": f"{entered}T00:00:00Z",
         "closed_at": f"{entered}T12:00:00Z"},
    ])
    kpi.write("deal_stage_changes", [
        {"id": "c1", "deal_id": "d1", "stage": "demo", "entered_at": f"{entered}T00:00:00Z"},
        {"id": "c2", "deal_id": "d2", "stage": "demo", "entered_at": f"{entered}T00:00:00Z"},
        {"id": "c3", "deal_id": "d2", "stage": "won", "entered_at": f"{entered}T12:00:00Z"},
    ])
    kpi.sync()
    month = today.strftime("%Y-%m")
    # entered two days ago at midnight: measured until the end of today = 3 days; d2's demo stay 0.5 days
    until_today = kpi.one("stage_length", "--period", month, "--param", "open_stays=until_today")
    assert_value(until_today, 3.5 / 2, 3.5, 2)
    assert_value(kpi.one("stage_length", "--period", month), 0.5, 0.5, 1)  # exclude (default)
    # today alone: the period ends where the open stay's measure does, and still holds it
    assert_value(kpi.one("stage_length", "--period", str(today), "--param", "open_stays=until_today"), 3, 3, 1)
    # a period without today: the open stay has not ended in it
    last_year = str(today.year - 1)
    assert_empty(kpi.one("stage_length", "--period", last_year, "--param", "open_stays=until_today"))


# -- sales_cycle_length ------------------------------------------------------------------------

def cycle_deals(kpi) -> None:
    kpi.write("deals", [
        {"id": "w1", "owner_id": "u1", "is_closed": T, "is_won": T, "amount": 1000,
         "created_at": "2025-01-01T00:00:00Z", "closed_at": "2025-01-11T00:00:00Z"},  # 10 days
        {"id": "w2", "owner_id": "u2", "is_closed": T, "is_won": T, "amount": 3000,
         "created_at": "2024-12-01T00:00:00Z", "closed_at": "2025-01-31T12:00:00Z"},  # 61.5 days
        {"id": "l1", "owner_id": "u1", "is_closed": T, "is_won": F, "amount": 9000,
         "created_at": "2025-01-05T00:00:00Z", "closed_at": "2025-01-25T00:00:00Z"},  # 20 days, lost
        {"id": "w3", "owner_id": "u1", "is_closed": T, "is_won": T, "amount": 500,
         "created_at": "2025-01-05T00:00:00Z", "closed_at": "2025-02-01T00:00:00Z"},  # closed in February
        {"id": "o1", "owner_id": "u1", "is_closed": F, "is_won": F, "amount": 700,
         "created_at": "2025-01-05T00:00:00Z", "closed_at": "2025-01-20T00:00:00Z"},  # open: expected close
        {"id": "w4", "owner_id": "u1", "is_closed": T, "is_won": T, "amount": 100, "is_deleted": T,
         "created_at": "2025-01-01T00:00:00Z", "closed_at": "2025-01-02T00:00:00Z"},  # deleted
    ])
    kpi.sync()


def test_sales_cycle_length_acceptance(kpi_any_store) -> None:
    cycle_deals(kpi_any_store)
    won = kpi_any_store.one("sales_cycle_length", "--period", "2025-01")
    assert_value(won, 71.5 / 2, 71.5, 2)
    assert won["unit"] == "days" and won["note"] is None
    assert_value(kpi_any_store.one("sales_cycle_length", "--period", "2025-01", "--param", "deals=closed"),
                 91.5 / 3, 91.5, 3)


def test_sales_cycle_length_segments_empty_and_backwards(kpi) -> None:
    cycle_deals(kpi)
    owners = by_segment(kpi.run("sales_cycle_length", "--period", "2025-01", "--segment", "owner"), "owner")
    assert_value(owners["u1"], 10, 10, 1)
    assert_value(owners["u2"], 61.5, 61.5, 1)
    assert_empty(kpi.one("sales_cycle_length", "--period", "2024"))
    kpi.configure(files="tables: {deals: {allow: [closed_before_created]}}")  # the sync would refuse b1
    kpi.write("deals", [
        {"id": "b1", "is_closed": T, "is_won": T, "created_at": "2025-06-20T00:00:00Z",
         "closed_at": "2025-06-10T00:00:00Z"},  # imported history: closed before it was created
        {"id": "b2", "is_closed": T, "is_won": T, "created_at": "2025-06-01T00:00:00Z",
         "closed_at": "2025-06-05T00:00:00Z"},
    ])
    kpi.sync()
    result = kpi.one("sales_cycle_length", "--period", "2025-06")
    assert_value(result, 4, 4, 1)
    assert result["note"] == "1 won deal(s) closed before they were created left out"


def test_sales_cycle_percentiles(kpi_any_store) -> None:
    kpi_any_store.write("deals", [
        {"id": "m1", "owner_id": "u3", "is_closed": T, "is_won": T, "created_at": "2025-03-01T06:00:00Z",
         "closed_at": "2025-03-02T06:00:00Z"},  # 1 day
        {"id": "m2", "owner_id": "u3", "is_closed": T, "is_won": T, "created_at": "2025-03-01T06:00:00Z",
         "closed_at": "2025-03-03T06:00:00Z"},  # 2
        {"id": "m3", "owner_id": "u4", "is_closed": T, "is_won": T, "created_at": "2025-03-01T06:00:00Z",
         "closed_at": "2025-03-05T06:00:00Z"},  # 4
        {"id": "m4", "owner_id": "u4", "is_closed": T, "is_won": T, "created_at": "2025-02-01T06:00:00Z",
         "closed_at": "2025-03-31T06:00:00Z"},  # 58: one long cycle pulls the mean to 16.25
    ])
    kpi_any_store.sync()
    assert_value(kpi_any_store.one("sales_cycle_length", "--period", "2025-03"), 16.25, 65, 4)
    median = kpi_any_store.one("sales_cycle_length", "--period", "2025-03", "--param", "stat=median")
    assert (median["value"], median["numerator"], median["denominator"]) == (pytest.approx(3), None, 4)  # (2+4)/2
    p90 = kpi_any_store.one("sales_cycle_length", "--period", "2025-03", "--param", "stat=p90")
    assert p90["value"] == pytest.approx(4 + 0.7 * 54)  # rank 1 + 3 × 0.9 = 3.7
    owners = by_segment(kpi_any_store.run("sales_cycle_length", "--period", "2025-03", "--param", "stat=median",
                                          "--segment", "owner"), "owner")
    assert {owner: (r["value"], r["denominator"]) for owner, r in owners.items()} == \
        {"u3": (pytest.approx(1.5), 2), "u4": (pytest.approx(31), 2)}


def test_sales_cycle_from_salesforce_dates_and_stage_history(kpi_any_store) -> None:
    """Salesforce's CloseDate is a date (stored as midnight UTC), CreatedDate a timestamp: the cycle comes from
    the stage history's close moment where there is one, else in whole days, never date minus timestamp."""
    won = {"is_closed": T, "is_won": T, "stage": "Closed Won", "amount": 100}
    kpi_any_store.write("deals", [
        # history: entered Closed Won on 01-10 18:00 -> 9.125 days (not 01-11 00:00 - 01-01 15:00 = 9.375)
        {"id": "s1", **won, "created_at": "2025-01-01T15:00:00Z", "closed_at": "2025-01-11"},
        # no entry into its current stage in the history: whole days 01-02 .. 01-12 = 10 (not 9.625)
        {"id": "s2", **won, "created_at": "2025-01-02T09:00:00Z", "closed_at": "2025-01-12"},
        # a real timestamp (HubSpot's closedate): to it, 16.75 days
        {"id": "s3", **won, "created_at": "2025-01-03T12:00:00Z", "closed_at": "2025-01-20T06:00:00Z"},
        # re-entered Closed Won: the latest entry, 7.5 days
        {"id": "s4", **won, "created_at": "2025-01-01T00:00:00Z", "closed_at": "2025-01-08"},
        # its Closed Won entry is deleted in the source: whole days 01-05 .. 01-15 = 10
        {"id": "s5", **won, "created_at": "2025-01-05T22:00:00Z", "closed_at": "2025-01-15"},
    ])
    kpi_any_store.write("deal_stage_changes", [
        {"id": "h1", "deal_id": "s1", "stage": "Prospecting", "entered_at": "2025-01-01T15:00:00Z"},
        {"id": "h2", "deal_id": "s1", "stage": "Closed Won", "entered_at": "2025-01-10T18:00:00Z"},
        {"id": "h3", "deal_id": "s2", "stage": "Negotiation", "entered_at": "2025-01-05T00:00:00Z"},
        {"id": "h4", "deal_id": "s4", "stage": "Closed Won", "entered_at": "2025-01-05T00:00:00Z"},
        {"id": "h5", "deal_id": "s4", "stage": "Negotiation", "entered_at": "2025-01-06T00:00:00Z"},
        {"id": "h6", "deal_id": "s4", "stage": "Closed Won", "entered_at": "2025-01-08T12:00:00Z"},
        {"id": "h7", "deal_id": "s5", "stage": "Closed Won", "entered_at": "2025-01-14T10:00:00Z", "is_deleted": T},
    ])
    kpi_any_store.sync()
    total = 9.125 + 10 + 16.75 + 7.5 + 10
    assert_value(kpi_any_store.one("sales_cycle_length", "--period", "2025-01"), total / 5, total, 5)
    assert kpi_any_store.one("sales_cycle_length", "--period", "2025-01", "--param", "stat=median")["value"] == \
        pytest.approx(10)
    # sales velocity divides by the same cycle length
    assert kpi_any_store.one("sales_velocity", "--period", "2025-01")["denominator"] == pytest.approx(total / 5)


def test_sales_cycle_notes_deals_it_cannot_measure(kpi) -> None:
    kpi.write("deals", [
        {"id": "w1", "is_closed": T, "is_won": T, "created_at": "2025-01-01T00:00:00Z",
         "closed_at": "2025-01-11T00:00:00Z"},
        *({"id": f"x{i}", "is_closed": T, "is_won": T, "closed_at": "2025-01-20T00:00:00Z"} for i in range(3)),
        *({"id": f"y{i}", "is_closed": T, "is_won": T, "closed_at": "2025-02-20T00:00:00Z"} for i in range(2)),
    ])
    kpi.sync()
    january = kpi.one("sales_cycle_length", "--period", "2025-01")
    assert (january["value"], january["note"]) == (pytest.approx(10), "3 won deal(s) without created_at left out")
    # every won deal of February lacks a creation date: not "no deals won"
    february = kpi.one("sales_cycle_length", "--period", "2025-02")
    assert (february["value"], february["note"]) == \
        (None, "no won deal closed in the period could be measured; 2 won deal(s) without created_at left out")


# -- lead_conversion_rate ----------------------------------------------------------------------

def lead_data(kpi) -> None:
    kpi.write("deals", [
        {"id": "D1", "account_id": "A1", "is_closed": T, "is_won": T, "closed_at": "2025-02-10T00:00:00Z"},
        {"id": "D2", "account_id": "A2", "is_closed": T, "is_won": F, "closed_at": "2025-02-10T00:00:00Z"},
        {"id": "D3", "account_id": "A2", "is_closed": T, "is_won": T, "closed_at": "2025-04-01T00:00:00Z"},
        {"id": "D4", "account_id": "A3", "is_closed": T, "is_won": T, "closed_at": "2024-06-01T00:00:00Z"},
        {"id": "D5", "account_id": "A5", "is_closed": T, "is_won": T, "closed_at": "2025-03-01T00:00:00Z",
         "is_deleted": T},
    ])
    converted = "2025-02-01T00:00:00Z"
    kpi.write("leads", [
        # converted, its deal won: a customer
        {"id": "L1", "owner_id": "u1", "created_at": "2025-01-05T00:00:00Z", "converted_at": converted,
         "converted_deal_id": "D1", "converted_account_id": "A1"},
        # its deal lost, but its account won a later deal: a customer
        {"id": "L2", "owner_id": "u1", "created_at": "2025-01-06T00:00:00Z", "converted_at": converted,
         "converted_deal_id": "D2", "converted_account_id": "A2"},
        # merged into an account that had won before the conversion: converted, not a new customer
        {"id": "L3", "owner_id": "u1", "created_at": "2025-01-07T00:00:00Z", "converted_at": converted,
         "converted_account_id": "A3"},
        # converted without deal or account
        {"id": "L4", "owner_id": "u2", "created_at": "2025-02-07T00:00:00Z", "converted_at": converted},
        # not converted
        {"id": "L5", "owner_id": "u2", "created_at": "2025-03-07T00:00:00Z"},
        # its won deal is deleted
        {"id": "L8", "owner_id": "u2", "created_at": "2025-03-08T00:00:00Z", "converted_at": converted,
         "converted_deal_id": "D5", "converted_account_id": "A5"},
        # created before the cohort
        {"id": "L6", "owner_id": "u1", "created_at": "2024-12-30T00:00:00Z", "converted_at": converted,
         "converted_deal_id": "D1"},
        # deleted
        {"id": "L7", "owner_id": "u1", "created_at": "2025-01-08T00:00:00Z", "converted_at": converted,
         "converted_deal_id": "D1", "is_deleted": T},
    ])
    kpi.sync()


def test_lead_conversion_rate_acceptance(kpi_any_store) -> None:
    lead_data(kpi_any_store)
    customers = kpi_any_store.one("lead_conversion_rate", "--period", "2025-Q1")
    assert_value(customers, 2 / 6, 2, 6)  # L1, L2 of L1-L5, L8
    assert customers["unit"] == "ratio"
    assert customers["note"] == ("1 converted lead(s) created in the period without converted_deal_id or "
                                 "converted_account_id (cannot be customers) left out")  # L4
    assert_value(kpi_any_store.one("lead_conversion_rate", "--period", "2025-Q1", "--param", "into=any"),
                 5 / 6, 5, 6)


def test_lead_conversion_rate_segments_and_empty(kpi) -> None:
    lead_data(kpi)
    owners = by_segment(kpi.run("lead_conversion_rate", "--period", "2025-Q1", "--segment", "owner"), "owner")
    assert_value(owners["u1"], 2 / 3, 2, 3)
    assert_value(owners["u2"], 0, 0, 3)
    owners = by_segment(kpi.run("lead_conversion_rate", "--period", "2025-Q1", "--segment", "owner",
                                "--param", "into=any"), "owner")
    assert_value(owners["u1"], 1, 3, 3)
    assert_value(owners["u2"], 2 / 3, 2, 3)
    assert_empty(kpi.one("lead_conversion_rate", "--period", "2023"))
    out = kpi.invoke("explain", "lead_conversion_rate", "--period", "2025-Q1").output
    assert "L1" in out and "L2" in out


# -- quota_attainment --------------------------------------------------------------------------

def quota_data(kpi) -> None:
    kpi.write("users", [
        {"id": "u1", "name": "Ann", "team": "East"},
        {"id": "u2", "name": "Bob", "team": "East"},
        {"id": "u3", "name": "Cy", "team": "West"},
    ])
    kpi.write("quotas", [
        {"id": "q1", "owner_id": "u1", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 10000},
        {"id": "q2", "owner_id": "u2", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 20000},
        {"id": "q3", "owner_id": "u3", "team": "West", "period_start": "2025-01-01", "period_end": "2025-03-31",
         "amount": 5000},
        {"id": "q4", "team": "East", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 25000},
        {"id": "q5", "team": "West", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 6000},
        {"id": "q6", "owner_id": "u1", "period_start": "2025-04-01", "period_end": "2025-06-30", "amount": 10000},
        {"id": "q7", "owner_id": "u1", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 99999,
         "is_deleted": T},
    ])
    won = {"is_closed": T, "is_won": T}
    kpi.write("deals", [
        {"id": "d1", "owner_id": "u1", **won, "amount": 6000, "closed_at": "2025-01-15T00:00:00Z"},
        {"id": "d2", "owner_id": "u1", **won, "amount": 2000, "closed_at": "2025-03-31T23:00:00Z"},
        {"id": "d3", "owner_id": "u2", **won, "amount": 10000, "closed_at": "2025-02-15T00:00:00Z"},
        {"id": "d4", "owner_id": "u3", **won, "amount": 5000, "closed_at": "2025-03-01T00:00:00Z"},
        {"id": "d5", "owner_id": "u1", **won, "amount": 3000, "closed_at": "2025-05-01T00:00:00Z"},
        {"id": "d6", "owner_id": "u1", **won, "amount": 10000, "closed_at": "2025-02-01T00:00:00Z",
         "is_deleted": T},
        {"id": "d7", "owner_id": "u2", "is_closed": T, "is_won": F, "amount": 50000,
         "closed_at": "2025-02-01T00:00:00Z"},
    ])
    kpi.sync()


def test_quota_attainment_acceptance_per_rep_and_team(kpi_any_store) -> None:
    quota_data(kpi_any_store)
    assert_value(kpi_any_store.one("quota_attainment", "--period", "2025-Q1"), 23000 / 35000, 23000, 35000)
    reps = by_segment(kpi_any_store.run("quota_attainment", "--period", "2025-Q1", "--segment", "owner"), "owner")
    assert_value(reps["u1"], 0.8, 8000, 10000)
    assert_value(reps["u2"], 0.5, 10000, 20000)
    assert_value(reps["u3"], 1.0, 5000, 5000)
    assert_empty(reps[None])  # team quotas have no owner
    teams = by_segment(kpi_any_store.run("quota_attainment", "--period", "2025-Q1", "--segment", "team",
                                         "--param", "level=team"), "team")
    assert_value(teams["East"], 18000 / 25000, 18000, 25000)  # deals of u1 and u2
    assert_value(teams["West"], 5000 / 6000, 5000, 6000)
    assert_value(kpi_any_store.one("quota_attainment", "--period", "2025-Q1", "--param", "level=team"),
                 23000 / 31000, 23000, 31000)


def test_quota_attainment_year_partial_overlap_and_currency(kpi) -> None:
    quota_data(kpi)
    # the year adds up its quarters: q1, q2, q3 (Q1) and q6 (Q2); won 23000 in Q1 + 3000 in Q2
    assert_value(kpi.one("quota_attainment", "--period", "2025"), 26000 / 45000, 26000, 45000)
    month = kpi.one("quota_attainment", "--period", "2025-01")
    assert month["value"] is None and "only in part" in month["note"]
    assert_empty(kpi.one("quota_attainment", "--period", "2023"))
    kpi.write("quotas", [
        {"id": "q1", "owner_id": "u1", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 10000},
        {"id": "q9", "owner_id": "u1", "period_start": "2025-01-01", "period_end": "2025-01-31", "amount": 3000},
    ])
    kpi.sync()
    error = kpi.error("quota_attainment", "--period", "2025-Q1")
    assert "quotas overlap for owner u1" in error
    kpi.write("quotas", [
        {"id": "q1", "owner_id": "u1", "period_start": "2025-01-01", "period_end": "2025-03-31", "amount": 10000,
         "currency": "EUR"},
        {"id": "q9", "owner_id": "u1", "period_start": "2025-01-01", "period_end": "2025-01-31", "amount": 3000,
         "is_deleted": T},
    ])
    kpi.write("fx_rates", [{"id": "f1", "currency": "EUR", "rate_to_reporting": 1.2, "valid_from": "2024-12-01"}])
    kpi.sync()
    reps = by_segment(kpi.run("quota_attainment", "--period", "2025-Q1", "--segment", "owner"), "owner")
    assert_value(reps["u1"], 8000 / 12000, 8000, 12000)


# -- sales_volume, avg_deal_size ---------------------------------------------------------------

def revenue_deals(kpi) -> None:
    won = {"is_closed": T, "is_won": T}
    kpi.write("deals", [
        {"id": "r1", "owner_id": "u1", **won, "amount": 1000, "currency": "USD", "closed_at": "2025-01-05T00:00:00Z"},
        {"id": "r2", "owner_id": "u2", **won, "amount": 3000, "closed_at": "2025-01-06T00:00:00Z"},
        {"id": "r3", "owner_id": "u1", **won, "amount": 2000, "currency": "EUR", "closed_at": "2025-01-07T00:00:00Z"},
        {"id": "r4", "owner_id": "u1", **won, "closed_at": "2025-01-08T00:00:00Z"},  # no amount
        {"id": "r5", "owner_id": "u1", "is_closed": T, "is_won": F, "amount": 7000,
         "closed_at": "2025-01-09T00:00:00Z"},
        {"id": "r6", "owner_id": "u1", **won, "amount": 9000, "closed_at": "2025-01-09T00:00:00Z", "is_deleted": T},
        {"id": "r7", "owner_id": "u2", **won, "amount": 4000, "closed_at": "2025-02-09T00:00:00Z"},
    ])
    kpi.write("fx_rates", [
        {"id": "f0", "currency": "EUR", "rate_to_reporting": 1.0, "valid_from": "2024-01-01"},
        {"id": "f1", "currency": "EUR", "rate_to_reporting": 1.1, "valid_from": "2025-01-01"},
    ])
    kpi.sync()


def test_sales_volume_and_avg_deal_size(kpi) -> None:
    revenue_deals(kpi)
    results = {r["metric"]: r for r in kpi.run(None, "--metric", "sales_volume", "--metric", "avg_deal_size",
                                                "--period", "2025-01")}
    assert_value(results["sales_volume"], 6200)  # 1000 + 3000 + 2000 EUR × 1.1
    assert results["sales_volume"]["unit"] == "currency"
    assert_value(results["avg_deal_size"], 6200 / 3, 6200, 3)  # r4 has no amount
    volume = by_segment(kpi.run("sales_volume", "--period", "2025-01", "--segment", "owner"), "owner")
    assert_value(volume["u1"], 3200)
    assert_value(volume["u2"], 3000)
    size = by_segment(kpi.run("avg_deal_size", "--period", "2025-01", "--segment", "owner"), "owner")
    assert_value(size["u1"], 1600, 3200, 2)  # r4 (no amount) is left out
    assert_value(size["u2"], 3000, 3000, 1)
    # additive: the quarter is the sum of its months
    assert_value(kpi.one("sales_volume", "--period", "2025-Q1"), 10200)
    assert_empty(kpi.one("sales_volume", "--period", "2023"))
    assert_empty(kpi.one("avg_deal_size", "--period", "2023"))
    kpi.configure("reporting:\n  currency: EUR\n")
    error = kpi.error("sales_volume", "--period", "2025-01")
    assert "no fx_rates rate for USD" in error


# -- sales_velocity ----------------------------------------------------------------------------

def test_sales_velocity(kpi) -> None:
    kpi.write("deals", [
        {"id": "a", "owner_id": "u1", "is_closed": T, "is_won": T, "amount": 1000,
         "created_at": "2025-01-01T00:00:00Z", "closed_at": "2025-01-11T00:00:00Z"},
        {"id": "b", "owner_id": "u2", "is_closed": T, "is_won": T, "amount": 3000,
         "created_at": "2025-01-01T00:00:00Z", "closed_at": "2025-01-31T00:00:00Z"},
        {"id": "c", "owner_id": "u1", "is_closed": T, "is_won": F, "amount": 5000,
         "created_at": "2025-01-10T00:00:00Z", "closed_at": "2025-02-01T00:00:00Z"},
        {"id": "d", "owner_id": "u2", "is_closed": F, "is_won": F, "amount": 800,
         "created_at": "2025-02-01T00:00:00Z"},
        {"id": "e", "owner_id": "u1", "is_closed": T, "is_won": F, "amount": 100,
         "created_at": "2024-12-01T00:00:00Z", "closed_at": "2025-01-15T00:00:00Z"},
        {"id": "x", "owner_id": "u1", "is_closed": T, "is_won": T, "amount": 99999, "is_deleted": T,
         "created_at": "2025-01-01T00:00:00Z", "closed_at": "2025-01-02T00:00:00Z"},
    ])
    kpi.sync()
    # 4 opportunities created (a-d) × avg size 2000 × win rate 2/4 / cycle (10 + 30) / 2 = 20 days
    created = kpi.one("sales_velocity", "--period", "2025-Q1")
    assert_value(created, 200, 4000, 20)
    # open at the end of Q1: d only
    assert_value(kpi.one("sales_velocity", "--period", "2025-Q1", "--param", "opportunities=open"), 50, 1000, 20)
    owners = by_segment(kpi.run("sales_velocity", "--period", "2025-Q1", "--segment", "owner"), "owner")
    # u1: opportunities a, c; size 1000; win rate 1/3 (a won; c, e lost); cycle 10
    assert_value(owners["u1"], 2 * 1000 * (1 / 3) / 10, 2000 / 3, 10)
    # u2: opportunities b, d; size 3000; win rate 1; cycle 30
    assert_value(owners["u2"], 2 * 3000 / 30, 6000, 30)
    assert_empty(kpi.one("sales_velocity", "--period", "2023"))


# -- pipeline_value ----------------------------------------------------------------------------

def pipeline_data(kpi) -> None:
    kpi.write("deals", [
        {"id": "p1", "owner_id": "u1", "pipeline": "default", "stage": "demo", "is_closed": F, "is_won": F,
         "amount": 1000, "created_at": "2025-01-05T00:00:00Z"},
        {"id": "p2", "owner_id": "u2", "pipeline": "default", "stage": "closedwon", "is_closed": T, "is_won": T,
         "amount": 5000, "created_at": "2025-01-02T00:00:00Z", "closed_at": "2025-02-10T00:00:00Z"},
        {"id": "p3", "owner_id": "u1", "pipeline": "default", "stage": "closedlost", "is_closed": T, "is_won": F,
         "amount": 7000, "created_at": "2025-01-02T00:00:00Z", "closed_at": "2025-01-20T00:00:00Z"},
        {"id": "p4", "owner_id": "u1", "pipeline": "default", "stage": "qualify", "is_closed": F, "is_won": F,
         "amount": 4000, "created_at": "2025-02-05T00:00:00Z"},
        {"id": "p5", "owner_id": "u1", "pipeline": "default", "stage": "qualify", "is_closed": F, "is_won": F,
         "created_at": "2025-01-07T00:00:00Z"},
        {"id": "p6", "owner_id": "u1", "pipeline": "default", "stage": "qualify", "is_closed": F, "is_won": F,
         "amount": 2000, "created_at": "2025-01-10T00:00:00Z"},
        {"id": "p7", "owner_id": "u1", "pipeline": "default", "stage": "qualify", "is_closed": F, "is_won": F,
         "amount": 8888, "created_at": "2025-01-10T00:00:00Z", "is_deleted": T},
    ])
    kpi.write("deal_stage_changes", [
        {"id": "h1", "deal_id": "p1", "stage": "qualify", "entered_at": "2025-01-05T00:00:00Z"},
        {"id": "h2", "deal_id": "p1", "stage": "demo", "entered_at": "2025-01-20T00:00:00Z"},
        {"id": "h3", "deal_id": "p2", "stage": "qualify", "entered_at": "2025-01-02T00:00:00Z"},
        {"id": "h4", "deal_id": "p2", "stage": "proposal", "entered_at": "2025-01-25T00:00:00Z"},
        {"id": "h5", "deal_id": "p2", "stage": "closedwon", "entered_at": "2025-02-10T00:00:00Z"},
    ])
    kpi.write("pipeline_stages", STAGES)
    kpi.sync()


def test_pipeline_value(kpi) -> None:
    pipeline_data(kpi)
    # open at the end of January: p1, p2 (won in February), p6; p5 has no amount
    assert_value(kpi.one("pipeline_value", "--period", "2025-01"), 8000)
    # weighted by the stage at the end of January: p1 demo 0.3, p2 proposal 0.6 (history), p6 qualify 0.1
    assert_value(kpi.one("pipeline_value", "--period", "2025-01", "--param", "weighted=true"), 3500)
    owners = by_segment(kpi.run("pipeline_value", "--period", "2025-01", "--segment", "owner",
                                "--param", "weighted=true"), "owner")
    assert_value(owners["u1"], 500)
    assert_value(owners["u2"], 3000)
    # end of February: p1, p4, p6 open (p2 won)
    assert_value(kpi.one("pipeline_value", "--period", "2025-02"), 7000)
    assert_empty(kpi.one("pipeline_value", "--period", "2023"))
    kpi.write("pipeline_stages", [{**STAGES[0], "is_deleted": T}, *STAGES[1:]])  # no qualify row
    kpi.sync()
    assert_value(kpi.one("pipeline_value", "--period", "2025-01"), 8000)  # unweighted needs no stages
    error = kpi.error("pipeline_value", "--period", "2025-01", "--param", "weighted=true")
    assert "stage 'qualify' have no probability" in error
