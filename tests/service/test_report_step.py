"""A schedule's report step over the sample company, through ``crmkpi jobs run`` and a scheduled run: the file
has the numbers ``crmkpi run`` computes, it reaches loopback email, webhook and Slack receivers once per
occurrence and channel, a failing channel leaves the run successful, a failed write fails it in one line and
leaves the previous file, and the config's mistakes are one line."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import sqlite3
import sys
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from conftest import ALL_BUILTINS
from crmkpi.cli import App, cli
from crmkpi.deliveries import Retry
from crmkpi.models import JobRun
from crmkpi.notifiers.slack import MAX_BLOCKS, MAX_SECTION
from crmkpi.present.files import PDF_EXTRA
from crmkpi.sample_data import generate
from crmkpi.service import leases
from crmkpi.service.commands import job
from crmkpi.store import Store
from receivers import HttpReceiver, SmtpSink

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED_DAY = date(2026, 1, 5)  # a Monday: last-month is 2025-12, the sample company's last complete month
OCCURRENCE = "2026-01-05T07:00"
QUICK = Retry(attempts=2, backoff=0.01)


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample company's data and a store synced from it, copied by each test."""
    folder = tmp_path_factory.mktemp("company")
    generate(folder / "data", seed=42, deals=2000)
    config = folder / "crmkpi.yaml"
    config.write_text(f"store: sqlite:///{folder / 'kpi.db'}\nconnectors:\n  demo: {{type: files, path: data}}\n")
    result = CliRunner().invoke(cli, ["sync", "--config", str(config)], env={"CRMKPI_LOAD_PLUGINS": ALL_BUILTINS})
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def project(synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    (tmp_path / "data").symlink_to(synced / "data")
    shutil.copy(synced / "kpi.db", tmp_path / "kpi.db")
    (tmp_path / "reports").mkdir()
    return tmp_path


def configure(project: Path, report: str, *, channels: str = "", schedule: str = "",
              metrics: str = "{win_rate: {}, churn_rate: {}, net_new_revenue: {}}", alerts: str = "") -> str:
    """A config with one schedule, ``monthly``, whose ``report:`` block is ``report`` (YAML flow)."""
    path = project / "crmkpi.yaml"
    path.write_text(f"""
store: sqlite:///{project / 'kpi.db'}
reporting: {{timezone: UTC}}
connectors:
  demo: {{type: files, path: data}}
metrics: {metrics}
targets:
  - {{metric: win_rate, value: 0.45, period: 2025-12}}
channels: {{{channels}}}
alerts: {{{alerts}}}
schedules:
  monthly:
    cron: "0 7 1 * *"
    period: 2025-12
    {schedule}
    report: {report}
""")
    return str(path)


def crmkpi(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def scheduled_run(path: str, occurrence: str = OCCURRENCE):
    """The scheduler's run of ``occurrence`` on :data:`SCHEDULED_DAY`: claimed, then run."""
    app = App(debug=False)
    scheduled = job(app, app.config(path))
    scheduled.retry = QUICK
    run_id = leases.claim(scheduled.store, "monthly", datetime.now(UTC), occurrence=occurrence)
    return scheduled, run_id, scheduled.run("monthly", run_id, SCHEDULED_DAY)


def recorded_runs(project: Path) -> list[dict]:
    store = Store(f"sqlite:///{project / 'kpi.db'}")
    try:
        with store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(JobRun.__table__).order_by(JobRun.__table__.c.id)).mappings()]
    finally:
        store.engine.dispose()


class Cards(HTMLParser):
    """Each card's ``data-value`` and its changes' ``data-change``, by metric."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.values: dict[str, float | None] = {}
        self.changes: dict[tuple[str, str], float | None] = {}
        self._metric: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "article" and "card" in (found.get("class") or "").split():
            self._metric = found["data-metric"]
            self.values[self._metric] = number(found["data-value"])
        elif tag == "li" and self._metric and "data-change" in found:
            self.changes[(self._metric, found["data-kind"])] = number(found["data-change"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._metric = None


def number(text: str | None) -> float | None:
    return None if not text else float(text)


def run_json(path: str, period: str, *metrics: str) -> list[dict]:
    selection = [arg for metric in metrics for arg in ("-m", metric)]
    result = crmkpi("run", "--config", path, "--no-save", "--format", "json", "--compare", "both",
                    "--period", period, *selection)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the file ---------------------------------------------------------------------------------------------


def test_jobs_run_writes_the_report_with_the_numbers_run_computes(project: Path):
    path = configure(project, "{out: 'reports/monthly-{period}.html', segment: team}",
                     schedule="metrics: [win_rate, churn_rate, net_new_revenue]")
    result = crmkpi("jobs", "run", "monthly", "--config", path)
    assert result.exit_code == 0, result.output
    written = project / "reports" / "monthly-2025-12.html"
    assert result.stderr.splitlines() == ["monthly: 2025-12: 3 results saved",
                                          f"monthly: report 2025-12: wrote {written}"]
    assert result.stdout == "monthly: run 1 succeeded\n"
    cards = Cards(written.read_text(encoding="utf-8"))
    expected = run_json(path, "2025-12", "win_rate", "churn_rate", "net_new_revenue")
    assert list(cards.values) == ["win_rate", "churn_rate", "net_new_revenue"]
    assert cards.values == {row["metric"]: row["value"] for row in expected}
    assert cards.changes == {(row["metric"], kind): row[kind]["change"] for row in expected
                             for kind in ("previous", "year_ago")}
    assert cards.values["win_rate"] == pytest.approx(0.280488, abs=1e-6)  # what the alerts' tests judge too
    [run] = recorded_runs(project)
    assert (run["status"], run["report"]) == ("success", {"path": str(written), "deliveries": {}})
    history = crmkpi("jobs", "history", "--config", path).stdout
    assert history.rstrip().endswith(f" s  (report: {written})")


def test_a_scheduled_run_reports_the_period_as_of_its_day(project: Path):
    """``period: last-month`` on 2026-01-05 is 2025-12, whatever day the test runs."""
    path = configure(project, "{out: 'reports/monthly-{period}.html', period: last-month, metrics: [win_rate]}")
    _, _, outcome = scheduled_run(path)
    assert outcome.status == "success", outcome.error
    page = (project / "reports" / "monthly-2025-12.html").read_text(encoding="utf-8")
    assert Cards(page).values == {"win_rate": run_json(path, "2025-12", "win_rate")[0]["value"]}


def test_jobs_list_shows_every_step(project: Path):
    path = configure(project, "{out: 'reports/m-{period}.pdf', format: pdf, channels: [hook]}",
                     channels="hook: {type: webhook, url: 'http://127.0.0.1:9/hook'}",
                     schedule="metrics: [win_rate]\n    alerts: [low]",
                     alerts="low: {metric: win_rate, threshold: {below: 0.3}}")
    listed = crmkpi("jobs", "list", "--config", path)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0] == ("monthly  0 7 1 * * (UTC): run win_rate for 2025-12; evaluate alerts "
                                             "low; report 2025-12 to reports/m-{period}.pdf (pdf), sent to hook")


# -- sending it ---------------------------------------------------------------------------------------------


def test_an_email_gets_the_page_and_a_webhook_the_message_once(project: Path):
    with SmtpSink() as sink, HttpReceiver() as hook:
        path = configure(project, "{out: 'reports/monthly-{period}.html', channels: [mail, hook]}",
                         channels=f"mail: {{type: email, host: 127.0.0.1, port: {sink.port}, security: none, "
                                  f"from: kpi@example.com, to: [sales@example.com]}}, "
                                  f"hook: {{type: webhook, url: '{hook.url()}'}}")
        result = crmkpi("jobs", "run", "monthly", "--config", path)
        assert result.exit_code == 0, result.output
    written = project / "reports" / "monthly-2025-12.html"
    page = written.read_text(encoding="utf-8")
    assert result.stderr.splitlines()[-1] == f"monthly: report 2025-12: wrote {written}; mail sent; hook sent"

    [(sender, recipients, data)] = sink.mail
    assert (sender, recipients) == ("kpi@example.com", ["sales@example.com"])
    mail = email.message_from_bytes(data, policy=email.policy.default)
    assert mail["Subject"] == "[crmkpi] KPI report 2025-12"
    assert mail["X-Crmkpi-Delivery"] == "report:monthly/run-1//mail"
    html = mail.get_body(("html",)).get_content()
    assert Cards(html).values == Cards(page).values and len(Cards(html).values) == 3
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    rows = {row["metric"]: row for row in run_json(str(project / "crmkpi.yaml"), "2025-12")}
    assert text.startswith("2025-12 (2025-12-01 to 2025-12-31), 3 KPIs:\n• Win rate: 28.0%; ")
    win_rate = text.splitlines()[1]
    assert f"vs previous period ({rows['win_rate']['previous']['period']})" in win_rate
    assert win_rate.endswith("; target 45.0%: off track")
    assert f"\n\nThe report: {written}\n" in text and f"file: {written}\n" in text

    [post] = hook.posts
    body = post["json"]
    assert body["id"] == post["headers"]["Idempotency-Key"] == "report:monthly/run-1//hook"
    assert body["title"] == "KPI report 2025-12" and body["html"] == page
    assert body["text"] == text.split("\n\nschedule: ")[0]
    assert body["fields"] == {"schedule": "monthly", "occurrence": "run-1", "file": str(written)}
    assert body["link"] == written.as_uri()
    [run] = recorded_runs(project)
    assert run["report"] == {"path": str(written), "deliveries": {"mail": "sent", "hook": "sent"}}


def test_an_occurrence_sends_once_however_often_it_runs(project: Path):
    """A restart that runs the claimed occurrence again, and a second replica, send nothing twice."""
    with HttpReceiver() as hook:
        path = configure(project, "{out: 'reports/monthly-{period}.html', channels: [hook]}",
                         channels=f"hook: {{type: webhook, url: '{hook.url()}'}}")
        scheduled, run_id, first = scheduled_run(path)
        again = scheduled.run("monthly", run_id, SCHEDULED_DAY)
        app = App(debug=False)
        replica = job(app, app.config(path))
        other = replica.run("monthly", run_id, SCHEDULED_DAY)
    [post] = hook.posts
    assert post["json"]["id"] == f"report:monthly/{OCCURRENCE}//hook"
    assert post["json"]["fields"]["occurrence"] == OCCURRENCE
    assert first.report["deliveries"] == {"hook": "sent"}
    for repeated in (again, other):
        assert repeated.status == "success"
        assert re.fullmatch(r"duplicate: delivery \d+ sent already; not sent again",
                            repeated.report["deliveries"]["hook"])
    assert (project / "reports" / "monthly-2025-12.html").exists()


def test_a_failing_channel_leaves_the_run_successful_and_is_recorded(project: Path):
    with HttpReceiver(statuses=(500, 500)) as broken, HttpReceiver() as hook:
        path = configure(project, "{out: 'reports/monthly-{period}.html', channels: [broken, hook]}",
                         channels=f"broken: {{type: webhook, url: '{broken.url()}'}}, "
                                  f"hook: {{type: webhook, url: '{hook.url()}'}}")
        _, _, outcome = scheduled_run(path)
    host = broken.url()[len("http://"):-len("/hook")]
    assert outcome.status == "success" and outcome.error is None
    assert len(broken.posts) == 2 and len(hook.posts) == 1  # both attempts failed; the next channel was sent
    assert outcome.report["deliveries"] == {"broken": f"failed: {host} answered HTTP 500: ok", "hook": "sent"}
    assert outcome.notification_errors == [f"broken: {host} answered HTTP 500: ok"]
    [run] = recorded_runs(project)
    assert (run["status"], run["error"], run["report"]) == ("success", None, outcome.report)
    history = crmkpi("jobs", "history", "--config", path).stdout
    assert history.rstrip().endswith(f"; broken failed: {host} answered HTTP 500: ok; hook sent)")


def test_slack_gets_a_report_of_every_kpi_within_its_limits(project: Path):
    """Every metric (the config has no metrics: section): the text is longer than a Slack section, and
    arrives split at line ends, every card's line whole."""
    with HttpReceiver() as slack:
        path = configure(project, "{out: 'reports/all-{period}.html', channels: [slack]}", metrics="null",
                         channels=f"slack: {{type: slack, url: '{slack.url('/services/T0/B0/x')}'}}")
        _, _, outcome = scheduled_run(path)
    assert outcome.report["deliveries"] == {"slack": "sent"}, outcome.report
    [post] = slack.posts
    blocks = post["json"]["blocks"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert len(blocks) <= MAX_BLOCKS and all(len(text) <= MAX_SECTION for text in sections)
    card_lines = [line for text in sections for line in text.splitlines() if line.startswith("• ")]
    cards = len(Cards((project / "reports" / "all-2025-12.html").read_text(encoding="utf-8")).values)
    assert cards > 25 and len(card_lines) == cards
    assert sum(len(text) for text in sections) > MAX_SECTION  # more than one section's worth, none cut
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": "KPI report 2025-12"}}


def test_a_pdf_report_sends_its_summary_and_says_where_the_file_is(project: Path):
    pytest.importorskip("weasyprint")
    with HttpReceiver() as hook:
        path = configure(project, "{out: 'reports/monthly-{period}.pdf', format: pdf, metrics: [win_rate], "
                                  "channels: [hook]}",
                         channels=f"hook: {{type: webhook, url: '{hook.url()}'}}")
        _, _, outcome = scheduled_run(path)
    written = project / "reports" / "monthly-2025-12.pdf"
    assert outcome.status == "success", outcome.error
    assert written.read_bytes().startswith(b"%PDF-")
    [post] = hook.posts
    assert post["json"]["html"] is None
    assert post["json"]["text"].endswith(f"\n\nThe PDF report: {written}")


# -- failures -------------------------------------------------------------------------------------------------


def test_a_failed_write_fails_the_run_in_one_line_and_keeps_the_previous_file(project: Path,
                                                                               monkeypatch: pytest.MonkeyPatch):
    with HttpReceiver() as hook:
        path = configure(project, "{out: reports/monthly.html, channels: [hook]}",
                         schedule="on_failure: [hook]", channels=f"hook: {{type: webhook, url: '{hook.url()}'}}")
        written = project / "reports" / "monthly.html"
        written.write_text("the previous report", encoding="utf-8")

        def full(*args):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", full)
        result = crmkpi("jobs", "run", "monthly", "--config", path)
    assert result.exit_code == 1
    error = f"report {written}: No space left on device"
    assert result.stderr.splitlines()[-1] == f"Error: job monthly (run 1) failed: {error}"
    assert written.read_text(encoding="utf-8") == "the previous report"
    assert sorted(p.name for p in written.parent.iterdir()) == ["monthly.html"]  # no temporary left
    [run] = recorded_runs(project)
    assert (run["status"], run["error"], run["report"]) == ("failed", error, None)
    [told] = hook.posts  # the on_failure message, not the report
    assert told["json"]["title"] == "[JOB FAILED] monthly run-1"


def test_a_missing_out_folder_fails_the_run_before_computing(project: Path, monkeypatch: pytest.MonkeyPatch):
    from crmkpi.present import build

    monkeypatch.setattr(build, "run_metrics", lambda *a, **k: pytest.fail("computed"))
    path = configure(project, "{out: 'gone/monthly-{period}.html'}")
    result = crmkpi("jobs", "run", "monthly", "--config", path)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: job monthly (run 1) failed: report {project / 'gone' / 'monthly-2025-12.html'}: "
                             f"the folder {project / 'gone'} does not exist\n")


def test_a_failed_sync_writes_no_report(project: Path):
    path = configure(project, "{out: 'reports/monthly-{period}.html'}", schedule="sync: [demo]")
    (project / "data").unlink()
    result = crmkpi("jobs", "run", "monthly", "--config", path)
    assert result.exit_code == 1
    assert re.fullmatch(r"Error: job monthly \(run 1\) failed: sync of demo failed: .*; report not written\n",
                        result.stderr), result.stderr
    assert list((project / "reports").iterdir()) == []


def test_a_metric_that_fails_in_the_report_shows_on_its_card_and_fails_the_run(project: Path):
    connection = sqlite3.connect(project / "kpi.db")
    with connection:  # a deal won in December in a currency without a rate: win rate by amount cannot convert it
        connection.execute("UPDATE deals SET currency = 'XYZ' WHERE id = (SELECT id FROM deals WHERE is_won "
                           "AND closed_at >= '2025-12-01' ORDER BY id LIMIT 1)")
    connection.close()
    with HttpReceiver() as hook:
        path = configure(project, "{out: 'reports/monthly-{period}.html', channels: [hook]}",
                         metrics="{win_rate: {params: {by: amount}}, churn_rate: {}}",
                         channels=f"hook: {{type: webhook, url: '{hook.url()}'}}")
        result = crmkpi("jobs", "run", "monthly", "--config", path)
    assert result.exit_code == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert re.fullmatch(r"Error: job monthly \(run 1\) failed: report 2025-12: win_rate: no fx_rates rate for XYZ "
                        r"on or before 2025-12-\d\d \(rates convert to the reporting currency USD\)", line), line
    page = (project / "reports" / "monthly-2025-12.html").read_text(encoding="utf-8")
    cards = Cards(page)
    assert cards.values["win_rate"] is None and cards.values["churn_rate"] is not None
    assert "Error: no fx_rates rate for XYZ" in page
    [post] = hook.posts  # the report is sent all the same, its text saying what failed
    assert "\n• Win rate: failed: no fx_rates rate for XYZ on or before 2025-12-" in post["json"]["text"]


# -- the config -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("report", "message"), [
    ("{out: r.html, fromat: pdf}", "schedules.monthly.report.fromat: unknown field; did you mean 'format'?"),
    ("{out: r.html, channels: [hok]}",
     "schedules.monthly.report.channels: unknown channel 'hok'; did you mean 'hook'? (configured: hook)"),
    ("{out: r.html, format: docx}", "schedules.monthly.report.format: input should be 'html' or 'pdf'"),
    ("{out: r.html, trend_grain: fortnight}",
     "schedules.monthly.report.trend_grain: input should be 'day', 'week', 'month', 'quarter' or 'year'"),
    ("{out: 'r-{perod}.html'}",
     "schedules.monthly.report.out: unknown placeholder {perod}; did you mean '{period}'? (known: {period})"),
    ("{out: '{period}/r.html'}",
     "schedules.monthly.report.out: a placeholder goes in the file's name, not in its folder"),
    ("{segment: team}", "schedules.monthly.report.out: field required"),
    ("{out: r.html, period: last-fortnight}", "schedules.monthly.report.period: "),
    ("{out: r.html, metrics: [win_rat]}",
     "schedules.monthly.report.metrics: unknown metric 'win_rat'; did you mean 'win_rate'?"),
])
def test_a_mistake_in_the_report_block_is_one_line(project: Path, report: str, message: str):
    path = configure(project, report, channels="hook: {type: webhook, url: 'http://127.0.0.1:9/hook'}")
    result = crmkpi("validate", "--config", path)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1, result.stderr


def test_validate_checks_the_machine_a_report_needs_and_a_run_refuses_without_it(project: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    path = configure(project, "{out: missing/r.html}")
    assert crmkpi("validate", "--config", path).stderr == \
        f"Error: schedules.monthly.report.out: the folder {project / 'missing'} does not exist\n"
    assert crmkpi("jobs", "list", "--config", path).exit_code == 0  # the config loads: only validate checks
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # as if the pdf extra were not installed
    path = configure(project, "{out: reports/r.pdf, format: pdf}")
    pdf = f"schedules.monthly.report.format: pdf {PDF_EXTRA}"
    assert crmkpi("validate", "--config", path).stderr == f"Error: {pdf}\n"
    result = crmkpi("jobs", "run", "monthly", "--config", path)
    assert result.stderr == f"Error: job monthly (run 1) failed: {pdf}\n"
    assert list((project / "reports").iterdir()) == []


# -- the docs -------------------------------------------------------------------------------------------------


def test_the_docs_example_is_a_schedule_that_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    page = (ROOT / "docs" / "reports.md").read_text(encoding="utf-8")
    section = page.split("## Scheduled reports", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```yaml\n(.*?)```", section, re.S)
    (tmp_path / "data").mkdir()
    (tmp_path / "reports").mkdir()
    config = {"store": "sqlite:///kpi.db", "connectors": {"crm": {"type": "files", "path": "data"}},
              "channels": {"team-email": {"type": "email", "host": "127.0.0.1", "from": "kpi@example.com",
                                          "to": ["sales@example.com"]},
                           "slack": {"type": "slack", "url": "http://127.0.0.1:9/services/x"}},
              **yaml.safe_load(example)}
    path = tmp_path / "crmkpi.yaml"
    path.write_text(yaml.safe_dump(config))
    result = crmkpi("validate", "--config", str(path))
    assert result.exit_code == 0, result.output
    step = App(debug=False).config(str(path)).schedules["monday"].report
    assert (step.segment, step.trend_grain, step.format, step.channels) == ("team", "week", "html",
                                                                            ["team-email", "slack"])
    assert step.path(tmp_path, "2025-W07") == tmp_path / "reports" / "weekly-2025-W07.html"
    assert step.path(tmp_path, "2025-02-01..2025-02-14 x/y").name == "weekly-2025-02-01..2025-02-14-x-y.html"
