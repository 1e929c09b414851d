"""Targets (SMART goals): evaluation of level and additive metrics, the ``targets:`` config, the CLI.

``evaluate`` always gets its "today" explicitly; CLI runs that pace an additive target fix it too.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

import crmkpi.cli
from crmkpi import hookimpl
from crmkpi.metrics import Metric, MetricContext, Value
from crmkpi.models import MetricResult
from crmkpi.periods import Calendar, Period
from crmkpi.plugins import load_registry
from crmkpi.store import Store
from crmkpi.targets import Target, evaluate

D = date.fromisoformat
YEAR = Calendar().parse("2024", today=D("2024-06-01"))
TEN_DAYS = Period(D("2024-01-01"), D("2024-01-11"), "2024-01-01..2024-01-10")


# --- level metrics: meet the value now ---------------------------------------------------


@pytest.mark.parametrize("value, status, gap", [
    (0.35, "on_track", 0.05),
    (0.3, "on_track", 0.0),
    (0.28, "at_risk", -0.02),  # short by 0.02, within 10% of 0.3
    (0.26, "off_track", -0.04),
    (0.0, "off_track", -0.3),
])
def test_level_metric_higher_is_better(value, status, gap):
    target = Target("close_rate", 0.3, YEAR, "higher")
    result = evaluate(target, value, YEAR, additive=False, today=D("2024-06-01"))
    assert result == {"value": 0.3, "period": "2024", "direction": "higher", "status": status,
                      "gap": pytest.approx(gap)}


@pytest.mark.parametrize("value, status", [(4.0, "on_track"), (5.0, "on_track"), (5.4, "at_risk"),
                                           (5.6, "off_track")])
def test_level_metric_lower_is_better(value, status):
    target = Target("cycle_days", 5.0, YEAR, "lower")
    result = evaluate(target, value, YEAR, additive=False, today=D("2024-06-01"))
    assert (result["status"], result["gap"], result["direction"]) == (status, pytest.approx(value - 5.0), "lower")


def test_level_metric_tolerance():
    assert evaluate(Target("m", 0.3, YEAR, "higher", tolerance=0.0), 0.29, YEAR, False, D("2024-01-01"))["status"] \
        == "off_track"
    assert evaluate(Target("m", 0.3, YEAR, "higher", tolerance=0.5), 0.16, YEAR, False, D("2024-01-01"))["status"] \
        == "at_risk"
    assert evaluate(Target("m", 0.3, YEAR, "higher", tolerance=0.5), 0.14, YEAR, False, D("2024-01-01"))["status"] \
        == "off_track"
    # a negative goal: the margin is a share of its size
    assert evaluate(Target("m", -10.0, YEAR, "higher"), -10.5, YEAR, False, D("2024-01-01"))["status"] == "at_risk"


def test_no_value_has_no_status():
    for additive in (False, True):
        assert evaluate(Target("m", 0.3, YEAR, "higher"), None, YEAR, additive, D("2024-06-01")) == \
            {"value": 0.3, "period": "2024", "direction": "higher", "status": None, "note": "no value to compare"}


# --- additive metrics: paced over the target period ---------------------------------------


def paced(value: float, period: Period, today: str, direction: str = "higher", target: float = 100.0) -> dict:
    result = evaluate(Target("m", target, TEN_DAYS, direction), value, period, additive=True, today=D(today))
    assert (result["value"], result["period"], result["direction"]) == (target, "2024-01-01..2024-01-10", direction)
    return {k: v for k, v in result.items() if k not in ("value", "period", "direction")}


FIRST_FOUR = Period(D("2024-01-01"), D("2024-01-05"), "2024-01-01..2024-01-04")


@pytest.mark.parametrize("value, status, needed", [
    (40.0, "on_track", 60 / 6),  # exactly the elapsed share: 4 of 10 days -> 40
    (45.0, "on_track", 55 / 6),
    (37.0, "at_risk", 63 / 6),  # 3 behind pace, within 10% of 40
    (35.0, "off_track", 65 / 6),
])
def test_additive_metric_is_paced_by_the_elapsed_share(value, status, needed):
    assert paced(value, FIRST_FOUR, "2024-01-04") == {
        "expected_to_date": 40.0, "remaining": 100.0 - value, "status": status, "needed_per_day": pytest.approx(needed)}


def test_additive_metric_pace_and_achievement():
    # reaching the target early: achieved, nothing needed any more
    assert paced(100.0, FIRST_FOUR, "2024-01-04") == {"expected_to_date": 40.0, "remaining": 0.0, "status": "achieved"}
    assert paced(120.0, FIRST_FOUR, "2024-01-04")["status"] == "achieved"
    # the whole target period asked for on its 2nd day: paced by today, 2 of 10 days
    assert paced(20.0, TEN_DAYS, "2024-01-02") == {
        "expected_to_date": 20.0, "remaining": 80.0, "status": "on_track", "needed_per_day": 10.0}
    # a to-date period that ends after today is paced by today too
    assert paced(20.0, FIRST_FOUR, "2024-01-02")["expected_to_date"] == 20.0
    # before the period starts nothing is expected yet
    assert paced(0.0, TEN_DAYS, "2023-12-20") == {
        "expected_to_date": 0.0, "remaining": 100.0, "status": "on_track", "needed_per_day": 10.0}
    # after the last day, short is missed
    assert paced(90.0, TEN_DAYS, "2024-01-11") == {"expected_to_date": 100.0, "remaining": 10.0, "status": "missed"}
    assert paced(90.0, TEN_DAYS, "2024-03-01")["status"] == "missed"


def test_additive_budget_lower_is_better():
    assert paced(50.0, FIRST_FOUR, "2024-01-04", "lower") == {
        "expected_to_date": 40.0, "remaining": 50.0, "status": "on_track"}
    # over the budget stays over it, however much time is left
    assert paced(101.0, FIRST_FOUR, "2024-01-04", "lower") == {
        "expected_to_date": 40.0, "remaining": -1.0, "status": "missed"}


def test_a_target_applies_to_its_metric_segment_and_period_or_a_to_date_part():
    target = Target("close_rate", 0.3, YEAR, "higher")
    cal = Calendar()
    assert target.applies_to("close_rate", YEAR, {})
    assert target.applies_to("close_rate", cal.parse("2024-Q1", today=D("2024-06-01")), {})
    assert target.applies_to("close_rate", cal.parse("year-to-date", today=D("2024-06-01")), {})
    assert not target.applies_to("close_rate", cal.parse("2024-Q2", today=D("2024-06-01")), {})  # starts later
    assert not target.applies_to("close_rate", cal.parse("2024-01-01..2025-01-01", today=D("2024-06-01")), {})
    assert not target.applies_to("win_rate", YEAR, {})
    assert not target.applies_to("close_rate", YEAR, {"owner": "u1"})
    mine = Target("close_rate", 0.3, YEAR, "higher", segment={"owner": "u1"})
    assert mine.applies_to("close_rate", YEAR, {"owner": "u1"})
    assert not mine.applies_to("close_rate", YEAR, {"owner": "u2"})
    assert not mine.applies_to("close_rate", YEAR, {})
    numeric = Target("close_rate", 0.3, YEAR, "higher", segment={"owner": 17})  # YAML `owner: 17`
    assert numeric.applies_to("close_rate", YEAR, {"owner": "17"})
    assert not numeric.applies_to("close_rate", YEAR, {"owner": None})


# --- the targets: config through the CLI --------------------------------------------------

# Close rate: u1 2/4 in 2024-Q1, u2 1/4 in 2024-Q2, u3 0/2 in 2024-Q3 -> 2024: 3/10
# (FY2025 with an April start, 2024-04-01..2025-03-31: 1/6)
DEALS = [{**deal, "is_closed": deal["is_won"]} for deal in (
    [{"id": f"a{i}", "owner_id": "u1", "created_at": f"2024-0{i}-10T00:00:00Z", "is_won": i <= 2} for i in (1, 2, 3)]
    + [{"id": "a4", "owner_id": "u1", "created_at": "2024-03-31T00:00:00Z", "is_won": False}]
    + [{"id": f"b{i}", "owner_id": "u2", "created_at": f"2024-0{i}-10T00:00:00Z", "is_won": i == 4}
       for i in (4, 5, 6)]
    + [{"id": "b7", "owner_id": "u2", "created_at": "2024-06-30T00:00:00Z", "is_won": False}]
    + [{"id": f"c{i}", "owner_id": "u3", "created_at": f"2024-0{i}-10T00:00:00Z", "is_won": False} for i in (7, 8)]
)]

TARGETS = """\
targets:
  - {metric: close_rate, period: "2024", value: 0.25}
  - {metric: close_rate, period: "2024", value: 0.5, segment: {owner: u1}}
  - {metric: close_rate, period: "2024", value: 0.27, segment: {owner: u2}}
  - {metric: close_rate, period: "2024", value: 0.2, segment: {owner: u3}}
  - {metric: close_rate, start: 2024-04-01, deadline: 2024-06-30, value: 0.2}
  - {metric: close_rate, period: 2024-Q3, value: 0.1, direction: lower}
  - {metric: close_rate, period: 2024-Q1, value: 0.6, tolerance: 0.2}
  - {metric: win_rate, period: 2024-Q1, value: 0.9}
"""


@pytest.fixture
def kpi(kpi, monkeypatch):
    """Only the plugins these tests use (no other plugin's warnings on stderr)."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics")
    return kpi


@pytest.fixture
def project(kpi):
    kpi.write("deals", DEALS)
    kpi.configure(TARGETS)
    kpi.sync()
    return kpi


def target_of(kpi, *args: str) -> list:
    return [(r["period"], r["segment"], r.get("target")) for r in kpi.run("close_rate", *args)]


def test_level_targets_through_the_cli(project):
    [whole] = project.run("close_rate", "--period", "2024")
    assert whole["value"] == 0.3
    assert whole["target"] == {"value": 0.25, "period": "2024", "direction": "higher", "status": "on_track",
                               "gap": pytest.approx(0.05)}
    # segment targets: one per owner
    results = project.run("close_rate", "--period", "2024", "--segment", "owner")
    assert [(r["segment"], r["value"], r["target"]["status"], r["target"]["value"]) for r in results] == [
        ({"owner": "u1"}, 0.5, "on_track", 0.5),
        ({"owner": "u2"}, 0.25, "at_risk", 0.27),
        ({"owner": "u3"}, 0.0, "off_track", 0.2),
    ]
    # a deadline with a start is the window start..deadline
    [q2] = project.run("close_rate", "--period", "2024-Q2")
    assert q2["target"] == {"value": 0.2, "period": "2024-04-01..2024-06-30", "direction": "higher",
                            "status": "on_track", "gap": pytest.approx(0.05)}
    # direction override: 0.0 is on track for "lower"
    [q3] = project.run("close_rate", "--period", "2024-Q3")
    assert q3["target"] == {"value": 0.1, "period": "2024-Q3", "direction": "lower", "status": "on_track",
                            "gap": -0.1}
    # tolerance 0.2: 0.5 is within 0.12 of 0.6
    [q1] = project.run("close_rate", "--period", "2024-Q1")
    assert (q1["value"], q1["target"]["status"], q1["target"]["gap"]) == (0.5, "at_risk", pytest.approx(-0.1))


def test_targets_judge_only_results_over_their_period_or_a_to_date_part(project):
    results = project.run("close_rate", "--period", "2024", "--grain", "quarter")
    # Q1, Q2 and Q3 have targets of their own: those win over the year's (listed first), of which Q1 is a part
    assert [(r.get("target") or {}).get("period") for r in results] == \
        ["2024-Q1", "2024-04-01..2024-06-30", "2024-Q3", None]
    project.configure(TARGETS.replace("period: 2024-Q1", "period: 2023-Q1"))
    [q1] = project.run("close_rate", "--period", "2024-Q1")
    assert q1["target"]["period"] == "2024" and q1["target"]["status"] == "on_track"  # 0.5 already beats 0.25
    assert "target" not in project.run("close_rate", "--period", "2024-Q4")[0]  # starts later than 2024
    assert "target" not in project.run("close_rate", "--period", "2024-02")[0]  # Q1 targets do not start in Feb
    assert "target" not in project.run("close_rate", "--period", "2023")[0]
    # a segment target does not judge the whole company, nor the whole company's target a segment
    project.configure("targets:\n  - {metric: close_rate, period: '2024', value: 0.5, segment: {owner: u1}}\n")
    assert "target" not in project.run("close_rate", "--period", "2024")[0]
    project.configure("targets:\n  - {metric: close_rate, period: '2024', value: 0.25}\n")
    assert all("target" not in r for r in project.run("close_rate", "--period", "2024", "--segment", "owner"))


def test_tolerance_defaults_to_ten_percent(project):
    project.configure("targets:\n  - {metric: close_rate, period: 2024-Q1, value: 0.6}\n")
    [q1] = project.run("close_rate", "--period", "2024-Q1")
    assert q1["target"]["status"] == "off_track"  # 0.1 short of 0.6 is more than 0.06


def test_deadline_without_start_begins_at_its_fiscal_year(project):
    project.configure("reporting:\n  fiscal_year_start_month: 4\n"
                      "targets:\n  - {metric: close_rate, deadline: 2025-03-31, value: 0.4}\n")
    [fy] = project.run("close_rate", "--period", "2025")
    assert (fy["period"], fy["value"]) == ("FY2025", pytest.approx(1 / 6))
    assert fy["target"] == {"value": 0.4, "period": "2024-04-01..2025-03-31", "direction": "higher",
                            "status": "off_track", "gap": pytest.approx(1 / 6 - 0.4)}


def test_target_status_is_saved_and_shown(project):
    [whole] = project.run("close_rate", "--period", "2024")
    store = Store(project.store)
    try:
        with store.engine.connect() as conn:
            t = MetricResult.__table__
            assert conn.execute(select(t.c.target_status).where(t.c.run_id == whole["run_id"])).scalars().all() == \
                ["on_track"]
    finally:
        store.engine.dispose()
    table = project.invoke("run", "--metric", "close_rate", "--period", "2024", "--segment", "owner", "--no-save")
    lines = table.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("┃")][-2:] == ["Target", "Note"]
    assert [line.split("│")[-2].strip() for line in lines[2:]] == \
        ["on track (50.0%)", "at risk (27.0%)", "off track (20.0%)"]
    csv_out = project.invoke("run", "--metric", "close_rate", "--period", "2024", "--no-save", "--format", "csv")
    header, row = csv_out.stdout.splitlines()
    assert header.split(",")[-2:] == ["target_value", "target_status"]
    assert row.split(",")[-2:] == ["0.25", "on_track"]


# --- an additive metric through the CLI: a plugin with a count, and a fixed today ------------


def _deals_created(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    return Value(float(ctx.count("deals created", deals, ctx.in_period(deals.c.created_at))))


class CountPlugin:
    @hookimpl
    def register_metrics(self, register):
        register(Metric(id="test_deals_created", title="Deals created", description="deals created",
                        formula="deals created in the period", unit="count", direction="higher",
                        tables=("deals",), compute=_deals_created, additive=True))


def test_additive_target_through_the_cli(project, monkeypatch):
    monkeypatch.setattr(crmkpi.cli, "load_registry", lambda: load_registry(extra={"count": CountPlugin()}))
    monkeypatch.setattr(crmkpi.cli, "_today", lambda timezone: date(2024, 3, 31))
    project.configure("targets:\n  - {metric: test_deals_created, period: '2024', value: 16}\n"
                      "  - {metric: test_deals_created, period: '2024', value: 40, segment: {owner: u1}}\n")
    # year to date on 31 March: 91 of 366 days -> 16 * 91 / 366 expected; 4 deals made
    [ytd] = project.run("test_deals_created", "--period", "year-to-date")
    assert (ytd["period"], ytd["value"]) == ("YTD 2024-03-31", 4.0)
    assert ytd["target"] == {"value": 16.0, "period": "2024", "direction": "higher", "status": "on_track",
                             "expected_to_date": pytest.approx(16 * 91 / 366), "remaining": 12.0,
                             "needed_per_day": pytest.approx(12 / 275)}
    # the whole year asked for on 31 March is paced by today, too (its value already counts later deals)
    [year] = project.run("test_deals_created", "--period", "2024")
    assert year["value"] == 10.0
    assert (year["target"]["expected_to_date"], year["target"]["status"], year["target"]["needed_per_day"]) == \
        (pytest.approx(16 * 91 / 366), "on_track", pytest.approx(6 / 275))
    # u1's 4 of 40 by 31 March: 9.95 expected, more than 10% short
    results = project.run("test_deals_created", "--period", "year-to-date", "--segment", "owner")
    assert [(r["segment"]["owner"], r["value"], r.get("target", {}).get("status")) for r in results] == \
        [("u1", 4.0, "off_track"), ("u2", 0.0, None), ("u3", 0.0, None)]
    assert results[0]["target"]["needed_per_day"] == pytest.approx(36 / 275)


# --- invalid target configs -----------------------------------------------------------------


PERIOD_FORMS = ("expected 2024, 2024-Q1, 2024-03, 2024-W05, 2024-03-15, 2024-01-01..2024-03-31, "
                "this-/last-day|week|month|quarter|year, month-to-date or last-7-days")


@pytest.mark.parametrize("target, message", [
    ("{metric: close_rate, value: 0.3, period: '2024', deadline: 2024-12-31}",
     "targets.1: give either period or deadline"),
    ("{metric: close_rate, value: 0.3}", "targets.1: give either period or deadline"),
    ("{metric: nope, value: 0.3, period: '2024'}", "targets.1.metric: unknown metric 'nope'"),
    ("{metric: close_rate, value: 0.3, period: '2024-13'}", f"targets.1.period: period '2024-13': {PERIOD_FORMS}"),
    ("{metric: close_rate, value: 0.3, period: next-year}", f"targets.1.period: period 'next-year': {PERIOD_FORMS}"),
    ("{metric: close_rate, value: 0.3, period: '2024', start: 2024-01-01}", "targets.1: start goes with deadline"),
    ("{metric: close_rate, value: 0.3, period: '2024', segment: {}}",
     "targets.1: segment: give a dimension and its value, e.g. {owner: u-17} (or several: {team: East, region: "
     "EMEA} judges the results of --segment team --segment region)"),
    ("{metric: close_rate, period: '2024'}", "targets.1.value: field required"),
    ("{metric: close_rate, value: 0.3, period: '2024', tolerance: -0.1}",
     "targets.1.tolerance: input should be greater than or equal to 0"),
    ("{metric: close_rate, value: 0.3, period: '2024', direction: up}",
     "targets.1.direction: input should be 'higher' or 'lower'"),
    ("{metric: close_rate, value: 0.3, period: '2024', goal: 1}", "targets.1.goal: unknown field"),
])
def test_invalid_targets_are_one_line_errors(kpi, target, message):
    kpi.configure(f"targets:\n  - {{metric: close_rate, value: 0.3, period: '2024'}}\n  - {target}\n")
    assert kpi.fails("validate") == message
    assert kpi.fails("run", "--metric", "close_rate", "--period", "2024") == message


def test_targets_config_is_optional_and_valid_targets_validate(kpi):
    kpi.configure(TARGETS)
    result = kpi.invoke("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{kpi.config}: OK (1 connectors, all 2 metrics, 0 schedules)\n"
