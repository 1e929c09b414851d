"""close_rate and win_rate: the issue's acceptance case, through `crmkpi sync` and `crmkpi run`."""

from __future__ import annotations

import pytest


def deals_2024_q1() -> list[dict]:
    """100 deals created in 2024-Q1: 30 won, 20 lost, 50 still open (plus noise outside the case)."""
    rows = []
    for i in range(100):
        won, lost = i < 30, 30 <= i < 50
        rows.append({"id": f"d{i:03}", "created_at": f"2024-0{1 + i % 3}-1{i % 9}T10:00:00Z",
                     "is_closed": won or lost, "is_won": won, "amount": 1000,
                     "closed_at": "2024-04-15T10:00:00Z" if won or lost else None})
    rows.append({"id": "late", "created_at": "2024-04-01T00:00:00Z", "is_closed": True, "is_won": True})
    rows.append({"id": "gone", "created_at": "2024-02-01T00:00:00Z", "is_closed": True, "is_won": True,
                 "is_deleted": True})
    return rows


def test_close_and_win_rate_acceptance(kpi_any_store):
    kpi_any_store.write("deals", deals_2024_q1())
    kpi_any_store.sync()
    close = kpi_any_store.one("close_rate", "--period", "2024-Q1")
    assert (close["value"], close["numerator"], close["denominator"], close["unit"]) == (0.30, 30, 100, "ratio")
    assert close["segment"] == {} and close["period_start"].startswith("2024-01-01")
    # win rate over the deals closed in the period (the default): the 50 decided deals closed in April
    assert kpi_any_store.one("win_rate", "--period", "2024-Q1")["value"] is None
    win = kpi_any_store.one("win_rate", "--period", "2024-Q2")
    assert (win["value"], win["numerator"], win["denominator"]) == (0.60, 30, 50)
    by_amount = kpi_any_store.one("win_rate", "--period", "2024-Q2", "--param", "by=amount")
    assert by_amount["value"] == pytest.approx(0.60) and by_amount["denominator"] == 50_000
    # over the deals created in the period
    created = kpi_any_store.one("win_rate", "--period", "2024-Q1", "--param", "cohort=created")
    assert (created["value"], created["numerator"], created["denominator"]) == (0.60, 30, 50)


def test_empty_period_is_null_with_a_reason(kpi):
    kpi.write("deals", deals_2024_q1())
    kpi.sync()
    close = kpi.one("close_rate", "--period", "2023")
    assert (close["value"], close["note"]) == (None, "no deals created in the period")
    win = kpi.one("win_rate", "--period", "2023")
    # "late" is won but has no close date: no period's cohort can hold it, and the note says so
    assert (win["value"], win["note"]) == (None, "no deals closed (won or lost) in the period; "
                                                 "1 closed deal(s) without closed_at (in no period) left out")
    win = kpi.one("win_rate", "--period", "2023", "--param", "cohort=created")
    assert (win["value"], win["note"]) == (None, "no deal created in the period is closed (won or lost)")
