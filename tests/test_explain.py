"""``crmkpi explain``: formula, params, value = numerator / denominator, and the rows behind each input.

Runs on SQLite and PostgreSQL over one hand-made set of deals.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from conftest import KpiProject, store_url_for
from crmkpi.engine import Settings, explain
from crmkpi.metrics import Value
from crmkpi.metrics_plugins.sales import METRICS
from crmkpi.periods import Calendar
from crmkpi.segments import Segment
from crmkpi.store import Store

CLOSE_RATE, WIN_RATE = METRICS

# Created in 2024 and live: e1..e6, e8 (won: e1, e3, e5) -> close rate 3/7; u1's: e1, e2, e3, e4, e8 -> 2/5.
# e7 is deleted, e0 is from 2023. Win rate by amount: won e1 (1000 EUR at 1.5) + e3 + e5 = 2000, + lost e2 = 2500.
DEALS = """\
id,name,owner_id,created_at,is_closed,is_won,closed_at,amount,currency,is_deleted
e8,Eight,u1,2024-07-10T00:00:00Z,false,false,,,,false
e1,One,u1,2024-01-10T00:00:00Z,true,true,2024-02-01T00:00:00Z,1000,EUR,false
e2,Two,u1,2024-02-10T08:30:00Z,true,false,2024-03-01T00:00:00Z,500,,false
e3,Three,u1,2024-03-10T00:00:00Z,true,true,2024-04-01T00:00:00Z,300,,false
e4,Four,u1,2024-04-10T00:00:00Z,false,false,,,,false
e5,Five,u2,2024-05-10T00:00:00Z,true,true,2024-06-01T00:00:00Z,200,,false
e6,Six,,2024-06-10T00:00:00Z,false,false,,,,false
e7,Seven,u1,2024-06-10T00:00:00Z,true,true,2024-06-20T00:00:00Z,900,,true
e0,Zero,u1,2023-07-10T00:00:00Z,true,true,2023-08-10T00:00:00Z,100,,false
"""
FX_RATES = "id,currency,rate_to_reporting,valid_from\nf1,EUR,1.5,2024-01-01\n"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One synced project per store, shared by this module's (read-only) tests."""
    folder = tmp_path_factory.mktemp(f"explain-{request.param}")
    with store_url_for(request.param, folder, request) as url:
        kpi = KpiProject(folder / "kpi", url)
        (kpi.data / "deals.csv").write_text(DEALS, encoding="utf-8")
        (kpi.data / "fx_rates.csv").write_text(FX_RATES, encoding="utf-8")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics")
            kpi.sync()
        yield kpi


def explained(kpi: KpiProject, *args: str) -> list[str]:
    result = kpi.invoke("explain", *args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout.splitlines()


def sections(lines: list[str]) -> dict[str, tuple[str, list[str], list[str]]]:
    """Each input's heading line -> (its text after the label, the grid's columns, the ids of its rows)."""
    found = {}
    blocks = "\n".join(lines).split("\n\n")[2:]
    for block in blocks:
        head, *grid = block.splitlines()
        label, _, rest = head.partition(": ")
        columns = [c.strip() for c in grid[0].split("┃")] if grid else []
        found[label] = (rest, columns, [row.split("│")[0].strip() for row in grid[2:]])
    return found


def test_explain_a_segment_with_the_first_n_rows(project):
    lines = explained(project, "close_rate", "--period", "2024", "--segment", "owner=u1", "-n", "2")
    assert lines[:6] == [
        "close_rate: Close rate, 2024 (owner=u1)",
        "",
        "Formula: won deals created in the period / deals created in the period",
        "Params: none",
        "Value: 40.0% = 2 / 5",
        "",
    ]
    inputs = sections(lines)
    assert list(inputs) == ["won deals created in the period", "deals created in the period"]
    rest, columns, ids = inputs["won deals created in the period"]
    assert (rest, ids) == ("2 deals rows, the first 2:", ["e1", "e3"])
    # all-empty columns (account_id, ...) and bookkeeping columns are left out
    assert columns == ["id", "created_at", "owner_id", "name", "amount", "currency", "is_closed", "is_won",
                       "closed_at"]
    assert inputs["deals created in the period"][0::2] == ("5 deals rows, the first 2:", ["e1", "e2"])
    assert "│ 2024-02-10 08:30 │" in "\n".join(lines)  # datetimes to the minute, in UTC


def test_explain_the_whole_company_with_the_default_limit(project):
    lines = explained(project, "close_rate", "--period", "2024")
    assert lines[0] == "close_rate: Close rate, 2024 (whole company)"
    assert lines[4] == "Value: 42.9% = 3 / 7"
    inputs = sections(lines)
    assert inputs["won deals created in the period"][0::2] == ("3 deals rows, the first 3:", ["e1", "e3", "e5"])
    # ordered by id, the deleted e7 and the 2023 e0 left out
    assert inputs["deals created in the period"][0::2] == \
        ("7 deals rows, the first 7:", ["e1", "e2", "e3", "e4", "e5", "e6", "e8"])


def test_explain_the_null_segment_without_rows(project):
    lines = explained(project, "close_rate", "--period", "2024", "--segment", "owner=", "--limit", "0")
    assert lines[0] == "close_rate: Close rate, 2024 (owner=(none))"
    assert lines[4:] == ["Value: 0.0% = 0 / 1", "", "won deals created in the period: 0 deals rows", "",
                         "deals created in the period: 1 deals rows"]


def test_explain_params_and_money(project):
    lines = explained(project, "win_rate", "--period", "2024", "--param", "by=amount")
    # the deals closed in 2024 are the ones created in it
    assert lines[2:5] == ["Formula: won deals / (won deals + lost deals), over the deals closed in the period "
                          "(or created in it)", "Params: by=amount, cohort=closed", "Value: 80.0% = 2,000 / 2,500"]
    inputs = sections(lines)
    assert inputs["won deals"][0::2] == ("3 deals rows, the first 3:", ["e1", "e3", "e5"])
    assert inputs["won and lost deals"][0::2] == ("4 deals rows, the first 4:", ["e1", "e2", "e3", "e5"])


def test_explain_an_empty_period_gives_the_reason(project):
    lines = explained(project, "close_rate", "--period", "2022")
    assert lines[4] == "Value: — = 0 / 0  (no deals created in the period)"
    assert lines[6] == "won deals created in the period: 0 deals rows"


@pytest.mark.parametrize("args, message", [
    (("close_rate", "--period", "2024", "--segment", "owner"),
     "--segment 'owner': expected DIMENSION=VALUE, e.g. owner=u-17"),
    (("close_rate", "--period", "2024", "--segment", "=u1"),
     "--segment '=u1': expected DIMENSION=VALUE, e.g. owner=u-17"),
    (("nope", "--period", "2024"), "unknown metric 'nope' (known: close_rate, win_rate)"),
    (("close_rate", "--period", "2024", "--segment", "channel=web"),
     "close_rate: segment 'channel' does not apply to deals"),
    (("close_rate", "--period", "2024", "--param", "by=amount"),
     "--param 'by=amount': no selected metric has a param 'by'"),
    (("win_rate", "--period", "2024", "--param", "by=weight"), "win_rate: param by: 'weight' is not one of count, amount"),
    (("close_rate", "--period", "2024-13"),
     "period '2024-13': expected 2024, 2024-Q1, 2024-03, 2024-W05, 2024-03-15, 2024-01-01..2024-03-31, "
     "this-/last-day|week|month|quarter|year, month-to-date or last-7-days"),
])
def test_explain_errors_are_one_line(project, args, message):
    assert project.fails("explain", *args) == message


def test_explain_api(project):
    store = Store(project.store)
    try:
        period = Calendar().parse("2024-Q1", today=date(2024, 6, 1))
        result = explain(store.engine, CLOSE_RATE, period, {}, Segment.of({"owner": "u1"}), Settings(), limit=1)
    finally:
        store.engine.dispose()
    assert {k: result[k] for k in ("metric", "period", "segment", "value", "params")} == {
        "metric": "close_rate", "period": "2024-Q1", "segment": {"owner": "u1"}, "value": Value(2 / 3, 2.0, 3.0),
        "params": {}}
    won, created = result["inputs"]
    assert (won["label"], won["table"], won["rows"]) == ("won deals created in the period", "deals", 2)
    assert (created["label"], created["rows"]) == ("deals created in the period", 3)
    assert created["columns"][:3] == ["id", "created_at", "account_id"]
    assert "source" not in created["columns"] and "extra" not in created["columns"]
    [row] = created["first"]  # limit 1: the lowest id; datetimes are aware UTC on both stores
    assert dict(zip(created["columns"], row)) == {
        "id": "e1", "created_at": datetime(2024, 1, 10, tzinfo=UTC), "account_id": None, "owner_id": "u1",
        "name": "One", "pipeline": None, "stage": None, "amount": 1000.0, "currency": "EUR", "deal_type": None,
        "lead_source": None, "is_closed": True, "is_won": True, "closed_at": datetime(2024, 2, 1, tzinfo=UTC)}
