"""``crmkpi alerts check`` and ``list`` on the sample company, and the alerts step of a scheduled job: real
rules, a webhook channel on a loopback receiver, each message sent once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import ALL_BUILTINS
from crmkpi.cli import cli
from crmkpi.models import JobRun
from crmkpi.sample_data import generate
from crmkpi.store import Store
from receivers import HttpReceiver

AS_OF = "2026-01-05"  # the sample company's last complete month is 2025-12


def config(folder: Path, hook: str, schedules: str = "") -> Path:
    path = folder / "crmkpi.yaml"
    path.write_text(f"""
store: sqlite:///{folder / 'kpi.db'}
reporting: {{timezone: UTC}}
connectors:
  demo: {{type: files, path: {folder / 'data'}}}
channels:
  sales: {{type: webhook, url: "{hook}"}}
targets:
  - {{metric: win_rate, value: 0.45, period: "2025"}}
alerts:
  win-rate-by-team:
    metric: win_rate
    segment: team
    threshold: {{below: 0.3}}
    min_volume: 10
    channels: [sales]
  win-rate-drop:
    metric: win_rate
    change: {{against: previous, worse_by: 20%}}
    channels: [sales]
  cycle-anomaly:
    metric: sales_cycle_length
    anomaly: {{periods: 8}}
  emea-volume:
    metric: win_rate
    segment: {{team: emea}}
    threshold: {{below: 0.5}}
    min_volume: 1000
{schedules}""")
    return path


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    generate(folder / "data", seed=42, deals=2000)
    return folder


@pytest.fixture
def project(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    (tmp_path / "data").symlink_to(sample / "data")
    return tmp_path


def crmkpi(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def synced(project: Path, hook: str, schedules: str = "") -> str:
    path = str(config(project, hook, schedules))
    assert crmkpi("sync", "--config", path).exit_code == 0
    return path


CELLS = [
    "win-rate-by-team  team=apac  2025-12  firing  [firing]: 0.25 is below 0.3",
    "win-rate-by-team  team=emea  2025-12  ok: 0.347826 is ≥ 0.3",
    "win-rate-by-team  team=na  2025-12  firing  [firing]: 0.255319 is below 0.3",
    "win-rate-drop  -  2025-12  firing  [firing]: 0.280488 vs 0.44086 the previous period (2025-11) (-36.4%; "
    "higher is better): worse by 36.4%, at least 20.0%",
    "cycle-anomaly  -  2025-12  ok: 44.7992 vs the band 8.54878..63.9325 (median 36.2407, MAD 6.22597 of 8 "
    "periods): inside",
    "emea-volume  team=emea  2025-12  not evaluated: volume 23 below min_volume 1000",
]


def test_check_fires_on_the_sample_company_and_sends_each_message_once(project: Path):
    with HttpReceiver() as receiver:
        path = synced(project, receiver.url())
        dry = crmkpi("alerts", "check", "--config", path, "--as-of", AS_OF, "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert dry.stdout.splitlines() == CELLS
        assert receiver.posts == []
        assert crmkpi("alerts", "list", "--config", path).stdout.count("never evaluated") == 4

        first = crmkpi("alerts", "check", "--config", path, "--as-of", AS_OF)
        assert first.stdout.splitlines() == CELLS
        assert first.stderr == ("alerts: 5 cells evaluated, 3 firing (3 new, 0 repeated), 0 resolved, "
                                "1 not evaluated\n")
        again = crmkpi("alerts", "check", "--config", path, "--as-of", AS_OF)
        assert "[firing]" not in again.stdout and "3 firing (0 new" in again.stderr
    ids = sorted(post["json"]["id"] for post in receiver.posts)
    assert ids == ["win-rate-by-team/firing-1/team=apac/sales", "win-rate-by-team/firing-1/team=na/sales",
                   "win-rate-drop/firing-1//sales"]
    listing = crmkpi("alerts", "list", "--config", path).stdout.splitlines()
    assert listing[0] == "win-rate-by-team: win_rate by month per team, threshold → sales"
    assert listing[1].startswith("  team=apac  firing since ") and listing[1].endswith("(2025-12): 0.25 is below 0.3")
    assert listing[-2] == "emea-volume: win_rate by month for team=emea, threshold (no channels)"
    assert listing[-1].endswith("(2025-12): not evaluated: volume 23 below min_volume 1000")


def test_a_job_evaluates_its_alerts_and_records_what_they_did(project: Path):
    schedules = """
schedules:
  monthly:
    cron: "0 6 1 * *"
    metrics: [win_rate]
    period: last-month
    alerts: [win-rate-by-team, emea-volume]
    on_failure: [sales]
"""
    with HttpReceiver() as receiver:
        path = synced(project, receiver.url(), schedules)
        result = crmkpi("jobs", "run", "monthly", "--config", path)
        assert result.exit_code == 0, result.output
        assert "monthly: alerts: " in result.stderr
    store = Store(f"sqlite:///{project / 'kpi.db'}")
    with store.engine.connect() as conn:
        [run] = conn.execute(select(JobRun.__table__)).mappings().all()
    store.engine.dispose()
    assert run["status"] == "success"
    assert set(run["alerts"]) == {"evaluated", "firing", "fired", "resolved", "repeated", "not_evaluated", "failures"}
    # as of today, past the sample company's data: every cell says why it was not evaluated
    assert run["alerts"]["evaluated"] + run["alerts"]["not_evaluated"] == 4  # 3 teams and emea's cell


def test_a_failed_job_is_told_to_its_on_failure_channels_once(project: Path):
    schedules = """
schedules:
  broken:
    cron: "0 6 * * *"
    sync: [demo]
    on_failure: [sales]
"""
    with HttpReceiver() as receiver:
        path = synced(project, receiver.url(), schedules)
        (project / "data").unlink()  # the sync fails: no data folder
        failed = crmkpi("jobs", "run", "broken", "--config", path)
        assert failed.exit_code == 1
    [post] = receiver.posts
    assert post["json"]["id"] == "job:broken/run-1//sales"
    assert post["json"]["title"] == "[JOB FAILED] broken run-1"
    assert post["json"]["text"].startswith("Job broken (run-1) failed: sync of demo failed: ")


def test_a_scheduled_run_sends_its_alerts_and_a_failing_channel_does_not_fail_it(project: Path):
    """The run of an occurrence on 2026-01-05 judges 2025-12: the channel answers 500 to every attempt, the
    run succeeds and its record lists the failed deliveries."""
    from datetime import UTC, date, datetime

    from crmkpi.cli import App
    from crmkpi.deliveries import Retry
    from crmkpi.service import leases
    from crmkpi.service.commands import job

    schedules = """
schedules:
  monthly:
    cron: "0 6 1 * *"
    alerts: [win-rate-by-team]
"""
    with HttpReceiver(statuses=(500,) * 6) as receiver:
        path = synced(project, receiver.url(), schedules)
        app = App(debug=False)
        scheduled = job(app, app.config(path))
        scheduled.retry = Retry(attempts=3, backoff=0.01)
        run_id = leases.claim(scheduled.store, "monthly", datetime.now(UTC), occurrence="2026-01-05T06:00")
        outcome = scheduled.run("monthly", run_id, date(2026, 1, 5))
    host = receiver.url()[len("http://"):-len("/hook")]
    assert outcome.status == "success"
    assert outcome.alerts == {"evaluated": 3, "firing": 2, "fired": 2, "resolved": 0, "repeated": 0,
                              "not_evaluated": 0, "failures": [
                                  f"win-rate-by-team team=apac → sales: {host} answered HTTP 500: ok",
                                  f"win-rate-by-team team=na → sales: {host} answered HTTP 500: ok"]}
    assert len(receiver.posts) == 6  # 3 attempts for each of the two firing teams
    assert [f.split(":")[0] for f in outcome.notification_errors] == ["sales", "sales"]
    store = Store(f"sqlite:///{project / 'kpi.db'}")
    with store.engine.connect() as conn:
        [run] = conn.execute(select(JobRun.__table__)).mappings().all()
    store.engine.dispose()
    assert (run["status"], run["alerts"]) == ("success", outcome.alerts)
    history = crmkpi("jobs", "history", "--config", path).stdout
    assert history.rstrip().endswith(" s  (alerts: 2 firing, 2 new, 0 resolved, 0 not evaluated, 2 deliveries failed)")


def test_a_message_names_the_segment_and_keys_it_by_id(project: Path):
    """Per owner: the message says the owner's name; the state and the delivery key keep the id."""
    with HttpReceiver() as receiver:
        path = synced(project, receiver.url())
        rules = Path(path).read_text().replace("alerts:\n", """alerts:
  win-rate-by-owner:
    metric: win_rate
    segment: owner
    threshold: {below: 0.2}
    channels: [sales]
""", 1)
        Path(path).write_text(rules)
        checked = crmkpi("alerts", "check", "--config", path, "--as-of", AS_OF)
        assert checked.exit_code == 0, checked.output
    by_owner = [post["json"] for post in receiver.posts if post["json"]["rule"] == "win-rate-by-owner"]
    assert by_owner
    for message in by_owner:
        owner_id = message["id"].split("/")[2].removeprefix("owner=")
        name = message["segment"].removeprefix("owner=")
        assert re.fullmatch(r"U\d{3}", owner_id) and re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", name), message
        assert f"({message['segment']})" in message["title"]
        assert message["fields"]["segment ids"] == f"owner={owner_id}"
