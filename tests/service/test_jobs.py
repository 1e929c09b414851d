"""``crmkpi jobs``: listing schedules, running one now, and the recorded history, through the CLI."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import KpiProject
from crmkpi.cli import cli
from crmkpi.models import JobRun, MetricResult
from crmkpi.store import Store

DEALS = [
    {"id": "d1", "created_at": "2024-01-05T00:00:00Z", "closed_at": "2024-01-20T00:00:00Z", "is_closed": True,
     "is_won": True},
    {"id": "d2", "created_at": "2024-01-06T00:00:00Z", "closed_at": "2024-01-25T00:00:00Z", "is_closed": True,
     "is_won": False},
    {"id": "d3", "created_at": "2024-02-06T00:00:00Z", "is_closed": False, "is_won": False},
]
SCHEDULES = """
reporting: {timezone: America/New_York}
metrics:
  close_rate: {}
  win_rate: {}
schedules:
  nightly:
    cron: "30 1 * * *"
    sync: [crm]
    metrics: [close_rate, win_rate]
    period: 2024-01
  weekly:
    cron: "0 7 * * 1"
    timezone: Europe/Berlin
    metrics: [win_rate]
    period: 2024-Q1
    params: {win_rate: {cohort: created}}
"""


@pytest.fixture
def project(kpi_any_store: KpiProject) -> KpiProject:
    kpi_any_store.write("deals", DEALS)
    kpi_any_store.configure(SCHEDULES)
    return kpi_any_store


def jobs(project: KpiProject, command: str, *args: str):
    """``crmkpi jobs COMMAND --config <project> ARGS``."""
    return CliRunner().invoke(cli, ["jobs", command, "--config", str(project.config), *args], catch_exceptions=False)


def job_runs(project: KpiProject) -> list[tuple]:
    store = Store(project.store)
    try:
        with store.engine.connect() as conn:
            runs = JobRun.__table__
            return [tuple(r) for r in conn.execute(select(runs.c.id, runs.c.job, runs.c.status, runs.c.error)
                                                   .order_by(runs.c.id))]
    finally:
        store.engine.dispose()


def saved(project: KpiProject) -> list[tuple]:
    store = Store(project.store)
    try:
        with store.engine.connect() as conn:
            results = MetricResult.__table__
            return [tuple(r) for r in conn.execute(select(results.c.metric, results.c.value, results.c.params)
                                                   .order_by(results.c.metric, results.c.id))]
    finally:
        store.engine.dispose()


def test_run_now_syncs_then_computes_and_records_the_run(project: KpiProject):
    result = jobs(project, "run", "nightly")
    assert result.exit_code == 0, result.output
    assert result.stdout == "nightly: run 1 succeeded\n"
    assert result.stderr == "nightly: crm: 3 rows changed\nnightly: 2024-01: 2 results saved\n"
    assert job_runs(project) == [(1, "nightly", "success", None)]
    # January: 2 deals created, 1 won -> close rate 0.5; closed in January: 1 won of 2 -> win rate 0.5
    assert [(m, v) for m, v, _ in saved(project)] == [("close_rate", 0.5), ("win_rate", 0.5)]


def test_a_schedule_without_sync_uses_its_own_params(project: KpiProject):
    project.sync()
    result = jobs(project, "run", "weekly")
    assert result.exit_code == 0, result.output
    [(metric, value, params)] = saved(project)
    # cohort=created: deals created in Q1 that closed (2), of which 1 won
    assert (metric, value, params["cohort"]) == ("win_rate", 0.5, "created")


def test_a_failed_sync_stops_the_job_before_any_metric(project: KpiProject):
    (project.data / "deals.csv").write_text("id,created_at,is_won,is_closed\nd1,not a date,true,true\n")
    result = jobs(project, "run", "nightly")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert re.fullmatch(r"Error: job nightly \(run 1\) failed: sync of crm failed: .*not a date.*; "
                        r"metrics not computed", line), line
    [(run_id, job, status, error)] = job_runs(project)
    assert (run_id, job, status) == (1, "nightly", "failed")
    assert line.endswith(error)
    assert saved(project) == []


def test_a_failing_metric_fails_the_job_and_the_others_are_saved(project: KpiProject):
    project.write("deals", [{**deal, "amount": 100, "currency": "EUR"} for deal in DEALS])  # and no fx_rates
    project.configure(SCHEDULES.replace("  win_rate: {}", "  win_rate: {params: {by: amount}}"))
    result = jobs(project, "run", "nightly")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "nightly: crm: 3 rows changed",
        "nightly: 2024-01: 1 results saved, 1 metric failed",
        "Error: job nightly (run 1) failed: win_rate: no fx_rates rate for EUR on or before 2024-01-20 "
        "(rates convert to the reporting currency USD)"]
    assert [(m, v) for m, v, _ in saved(project)] == [("close_rate", 0.5)]
    assert job_runs(project)[0][2:] == ("failed", "win_rate: no fx_rates rate for EUR on or before 2024-01-20 "
                                                  "(rates convert to the reporting currency USD)")


def test_list_shows_next_occurrence_and_last_run(project: KpiProject):
    listed = jobs(project, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == "nightly  30 1 * * * (America/New_York): sync crm; run close_rate, win_rate for 2024-01"
    assert re.fullmatch(r"  next \d{4}-\d\d-\d\d 01:30 E[SD]T; never run", lines[1]), lines[1]
    assert lines[2] == "weekly  0 7 * * 1 (Europe/Berlin): run win_rate for 2024-Q1"
    assert re.fullmatch(r"  next \d{4}-\d\d-\d\d 07:00 CES?T; never run", lines[3]), lines[3]
    jobs(project, "run", "nightly")
    again = jobs(project, "list").stdout.splitlines()
    assert re.fullmatch(r"  next .*; last run \d{4}-\d\d-\d\d \d\d:\d\d E[SD]T: success", again[1]), again[1]


def test_history_lists_runs_newest_first(project: KpiProject):
    jobs(project, "run", "nightly")
    jobs(project, "run", "weekly")
    everything = jobs(project, "history").stdout.splitlines()
    assert [line.split()[:2] for line in everything] == [["2", "weekly"], ["1", "nightly"]]
    assert all(re.search(r"  by hand  started \d{4}-\d\d-\d\d \d\d:\d\d E[SD]T  success in \d+\.\d s$", line)
               for line in everything), everything
    [only] = jobs(project, "history", "nightly").stdout.splitlines()
    assert only.startswith("1  nightly  by hand  started ")
    assert jobs(project, "history", "monthly").stdout == \
        "no job runs of monthly yet\n"


def test_unknown_schedule_is_one_line_with_a_suggestion(project: KpiProject):
    result = jobs(project, "run", "nightlly")
    assert (result.exit_code, result.stderr) == (
        1, "Error: unknown schedule 'nightlly'; did you mean 'nightly'? (configured: nightly, weekly)\n")


def test_list_without_schedules(kpi: KpiProject):
    result = jobs(kpi, "list")
    assert (result.exit_code, result.stdout) == (0, f"{kpi.config}: no schedules\n")


def test_a_run_by_hand_waits_for_none_and_a_dead_one_shows_as_failed(project: KpiProject):
    from datetime import UTC, datetime, timedelta

    store = Store(project.store)
    now = datetime.now(UTC)
    try:
        with store.transaction() as conn:
            conn.execute(JobRun.__table__.insert(), [
                # a live run elsewhere, and one whose process on another host died an hour ago
                {"job": "nightly", "started_at": now, "status": "running", "lease_owner": "elsewhere:7:1",
                 "lease_expires_at": now + timedelta(minutes=1)},
                {"job": "weekly", "started_at": now - timedelta(hours=1), "status": "running",
                 "lease_owner": "gone:8:1", "lease_expires_at": now - timedelta(minutes=59)}])
    finally:
        store.engine.dispose()
    refused = jobs(project, "run", "nightly")
    assert (refused.exit_code, refused.stderr) == (
        1, "Error: job nightly is running already (see `crmkpi jobs history nightly`)\n")
    [weekly] = jobs(project, "history", "weekly").stdout.splitlines()
    assert re.fullmatch(r"2  weekly  by hand  started .*  failed in 60\.\d s: lease expired at .* UTC: process "
                        r"gone:8:1 stopped renewing it \(killed, or lost its database connection\)", weekly), weekly
    assert jobs(project, "run", "weekly").exit_code == 0


def test_the_service_example_config_validates_and_its_schedules_run(tmp_path, monkeypatch):
    """config/service.yaml, over the sample company: every schedule runs (sync, then its metrics)."""
    from pathlib import Path

    from conftest import ALL_BUILTINS
    from crmkpi.sample_data import generate

    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    monkeypatch.setenv("CRMKPI_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CRMKPI_STORE_URL", f"sqlite:///{tmp_path / 'service.db'}")
    generate(tmp_path / "data", seed=42, deals=200)
    config = str(Path(__file__).parents[2] / "config" / "service.yaml")
    validated = CliRunner().invoke(cli, ["validate", "--config", config])
    assert validated.exit_code == 0, validated.output
    assert validated.stdout.endswith("OK (1 connectors, all 35 metrics, 3 schedules)\n")
    for name in ("nightly", "monday-report", "quarterly"):
        result = CliRunner().invoke(cli, ["jobs", "run", name, "--config", config])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{name}: run ")


def test_targets_follow_the_reporting_day_of_a_long_running_service(kpi: KpiProject):
    """A target for this-year, read by a service that started in 2026, is 2027's once the year turns."""
    from datetime import date

    from crmkpi.cli import App
    from crmkpi.service.commands import job

    kpi.configure("targets:\n  - {metric: close_rate, value: 0.4, period: this-year}\n"
                  "  - {metric: close_rate, value: 0.5, period: '2025'}\n")
    app = App(debug=False)
    service = job(app, app.config(str(kpi.config)))
    assert [t.period.label for t in service.targets(date(2026, 12, 31))] == ["2026", "2025"]
    assert [t.period.label for t in service.targets(date(2027, 1, 1))] == ["2027", "2025"]
    assert service.targets(date(2027, 1, 1))[0].direction == "higher"
