"""Notifications (issue 13): the built-in notifiers against loopback receivers, deliveries recorded before they
are sent (one send per key, whoever tries), retries, failures reported and never raised, secrets kept out of
logs and errors, channels in the config, ``crmkpi notify`` and a third party's notifier."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from crmkpi import Message, NotifierError, NotifierType, hookimpl
from crmkpi.cli import App, cli
from crmkpi.deliveries import DELIVERIES, Channel, DeliveryKey, Retry, channel_health, deliver
from crmkpi.errors import ConfigError
from crmkpi.notifiers import slack, smtp, webhook
from crmkpi.plugins import Registry, load_registry
from crmkpi.redact import redact_logs
from crmkpi.service.api import create_app
from crmkpi.service.commands import job
from crmkpi.service.jobs import JobOutcome
from crmkpi.service.lifecycle import Heartbeat
from crmkpi.service.scheduler import Scheduler
from crmkpi.store import Store
from receivers import HttpReceiver, SmtpSink

ROOT = Path(__file__).resolve().parent.parent
KEY = DeliveryKey("win_rate_low", "2026-11", "team=East")
MESSAGE = Message(title="Win rate below 20%", text="East closed 3 of 20 deals.", rule="win_rate_low",
                  metric="win_rate", segment="team=East", value="15%", link="http://127.0.0.1/kpi/win_rate",
                  fields={"period": "2026-11"})
#: The part of a Slack-like webhook URL that is the credential.
SECRET = "T0SECRET/B0SECRET/xq7Kp2mW9zLr4Vt8"
QUICK = Retry(attempts=3, backoff=0.01, max_backoff=0.02)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'kpi.db'}")
    yield store
    store.engine.dispose()


def hook(url: str, name: str = "hook") -> Channel:
    return Channel(name, webhook.NOTIFIER, webhook.WebhookSettings(url=url, timeout=2))


def rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(DELIVERIES).order_by(DELIVERIES.c.id)).mappings()]


# --- the built-in notifiers -------------------------------------------------------------------------


def test_webhook_posts_the_message_as_json_with_its_delivery_key(sqlite_store: Store):
    with HttpReceiver() as receiver:
        delivery = deliver(sqlite_store, hook(receiver.url()), KEY, MESSAGE)
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 1, None)
    [post] = receiver.posts
    assert post["json"] == {"id": "win_rate_low/2026-11/team=East/hook", "title": "Win rate below 20%",
                            "text": "East closed 3 of 20 deals.", "html": None, "rule": "win_rate_low",
                            "metric": "win_rate", "segment": "team=East", "value": "15%",
                            "link": "http://127.0.0.1/kpi/win_rate", "fields": {"period": "2026-11"}}
    assert post["headers"]["Idempotency-Key"] == "win_rate_low/2026-11/team=East/hook"
    [row] = rows(sqlite_store)
    assert (row["status"], row["attempts"], row["channel"], row["segment"]) == ("sent", 1, "hook", "team=East")
    assert row["sent_at"] is not None and row["last_error"] is None


def test_slack_keeps_a_long_message_within_slacks_limits(sqlite_store: Store):
    long_text = "\n".join(f"line {i}: " + "x" * 300 for i in range(1000))  # ~310,000 characters
    facts = {f"fact {i}": "y" * 2500 for i in range(12)}
    message = Message(title="T" * 200, text=long_text + "\n<&>", fields=facts, link="http://127.0.0.1/k")
    channel = Channel("ops", slack.NOTIFIER, slack.SlackSettings(url="http://127.0.0.1:1/services/x"))
    with HttpReceiver() as receiver:
        channel = replace(channel, settings=slack.SlackSettings(url=receiver.url("/services/" + SECRET)))
        assert deliver(sqlite_store, channel, KEY, message).status == "sent"
    payload = receiver.posts[0]["json"]
    blocks = payload["blocks"]
    assert len(blocks) == 50
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert all(len(text) <= 3000 for text in sections) and len(payload["text"]) <= 3000
    assert sections[0].startswith("line 0: ") and max(len(text) for text in sections) > 2500  # packed, not a line each
    assert blocks[-1]["text"]["text"].startswith("… ") and "more blocks not shown" in blocks[-1]["text"]["text"]
    assert "more characters" in payload["text"]


def test_slack_shows_a_short_message_whole_and_escapes_markup():
    message = replace(MESSAGE, text="a < b & c > d")
    blocks = slack.blocks(message)
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section"]
    assert blocks[1]["text"]["text"] == "a &lt; b &amp; c &gt; d"
    fields = [f["text"] for f in blocks[2]["fields"]]
    assert fields == ["*rule*\nwin_rate_low", "*metric*\nwin_rate", "*segment*\nteam=East", "*value*\n15%",
                      "*period*\n2026-11"]
    assert blocks[3]["text"]["text"] == "<http://127.0.0.1/kpi/win_rate|Open>"
    assert slack.chunks("a\nb", limit=3) == ["a\nb"] and slack.chunks("abcdefg", limit=3) == ["abc", "def", "g"]
    assert slack.cut("x" * 100, 40) == "x" * 19 + "\n… 81 more characters" and slack.cut("x" * 40, 40) == "x" * 40


def test_email_sends_plain_text_and_html_to_every_recipient(sqlite_store: Store):
    with SmtpSink(login=("kpi-bot", "smtp-pass-9f3k2")) as sink:
        settings = smtp.EmailSettings.model_validate(
            {"host": "127.0.0.1", "port": sink.port, "security": "none", "username": "kpi-bot",
             "password": "smtp-pass-9f3k2", "from": "crmkpi <kpi@example.com>",
             "to": ["ops@example.com", "sales@example.com"]})
        delivery = deliver(sqlite_store, Channel("mail", smtp.NOTIFIER, settings), KEY, MESSAGE)
    assert delivery.status == "sent", delivery.error
    [(sender, recipients, data)] = sink.mail
    assert (sender, recipients) == ("kpi@example.com", ["ops@example.com", "sales@example.com"])
    mail = email.message_from_bytes(data, policy=email.policy.default)
    assert mail["Subject"] == "[crmkpi] Win rate below 20%" and mail["To"] == "ops@example.com, sales@example.com"
    assert mail["X-Crmkpi-Delivery"] == "win_rate_low/2026-11/team=East/mail"
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain.get_content().replace("\r\n", "\n").startswith("East closed 3 of 20 deals.\n\nrule: win_rate_low\n")
    assert "<h2>Win rate below 20%</h2>" in html.get_content() and "<th align=\"left\">value</th><td>15%</td>" \
        in html.get_content()


def test_email_refused_login_is_failed_at_once_and_names_no_password(sqlite_store: Store, caplog):
    redact_logs()
    caplog.set_level(logging.DEBUG)
    with SmtpSink(login=("kpi-bot", "the-right-one")) as sink:
        settings = smtp.EmailSettings.model_validate(
            {"host": "127.0.0.1", "port": sink.port, "security": "none", "username": "kpi-bot",
             "password": "wrong-pass-77x", "from": "kpi@example.com", "to": ["ops@example.com"]})
        delivery = deliver(sqlite_store, Channel("mail", smtp.NOTIFIER, settings), KEY, MESSAGE, retry=QUICK)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error == f"127.0.0.1:{sink.port}: login refused (535)" and sink.mail == []
    assert "wrong-pass-77x" not in caplog.text + str(rows(sqlite_store))


# --- one send per key -------------------------------------------------------------------------------


def test_the_same_key_is_sent_once_from_two_store_handles(store_url: str):
    first, second = Store(store_url), Store(store_url)
    try:
        with HttpReceiver() as receiver:
            sent = deliver(first, hook(receiver.url()), KEY, MESSAGE)
            again = deliver(second, hook(receiver.url()), KEY, MESSAGE)
            other_segment = deliver(second, hook(receiver.url()), replace(KEY, segment="team=West"), MESSAGE)
        assert (sent.status, again.status, other_segment.status) == ("sent", "duplicate", "sent")
        assert again.error == f"delivery {sent.id} sent already; not sent again"
        assert [post["json"]["id"] for post in receiver.posts] == ["win_rate_low/2026-11/team=East/hook",
                                                                  "win_rate_low/2026-11/team=West/hook"]
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_senders_racing_for_one_key_send_it_once(store_url: str):
    stores = [Store(store_url) for _ in range(6)]
    outcomes = []
    try:
        with HttpReceiver(delay=0.05) as receiver:
            start = threading.Barrier(len(stores))

            def race(store: Store) -> None:
                start.wait()
                outcomes.append(deliver(store, hook(receiver.url()), KEY, MESSAGE))

            threads = [threading.Thread(target=race, args=(store,)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert len(receiver.posts) == 1
        assert sorted(o.status for o in outcomes) == ["duplicate"] * 5 + ["sent"]
    finally:
        for store in stores:
            store.engine.dispose()


def test_a_pending_delivery_past_its_lease_is_not_sent_again_but_reported_unknown(sqlite_store: Store):
    """Its sender died between recording and sending (or mid-send): sending twice is worse than missing once."""
    with HttpReceiver() as receiver:
        # a sender that crashed: its row is pending, and the message never arrived (or did: nobody knows)
        died = Channel("hook", NotifierType("crash", "", webhook.WebhookSettings, _crash), hook(receiver.url()).settings)
        with pytest.raises(KeyboardInterrupt):
            deliver(sqlite_store, died, KEY, MESSAGE)
        fresh = deliver(sqlite_store, hook(receiver.url()), KEY, MESSAGE)
        with sqlite_store.engine.begin() as conn:
            conn.execute(update(DELIVERIES).values(updated_at=datetime.now(UTC) - timedelta(hours=1)))
        stale = deliver(sqlite_store, hook(receiver.url()), KEY, MESSAGE)
    assert receiver.posts == []
    assert fresh.status == "duplicate" and "being sent by" in fresh.error
    assert stale.status == "unknown" and not stale.ok
    [row] = rows(sqlite_store)
    assert row["status"] == "unknown" and "not sent again" in row["last_error"]
    health = channel_health(sqlite_store, ["hook"])["hook"]
    assert health["ok"] is False and "whether it was delivered is unknown" in health["last_error"]


def _crash(message: Message, settings) -> None:
    raise KeyboardInterrupt  # the process is stopped mid-send


# --- retries and failures ------------------------------------------------------------------------------


def test_a_500_then_a_200_is_retried_and_sent_once(sqlite_store: Store):
    waits = []
    with HttpReceiver(statuses=(500,)) as receiver:
        delivery = deliver(sqlite_store, hook(receiver.url()), KEY, MESSAGE, retry=Retry(3, 1.5, 10), sleep=waits.append)
    assert (delivery.status, delivery.attempts) == ("sent", 2) and len(receiver.posts) == 2
    assert waits == [1.5]
    [row] = rows(sqlite_store)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


def test_a_receiver_always_failing_marks_the_delivery_failed_without_raising(sqlite_store: Store):
    waits = []
    with HttpReceiver(statuses=(503,) * 10) as receiver:
        delivery = deliver(sqlite_store, hook(receiver.url()), KEY, MESSAGE, retry=Retry(3, 1, 3), sleep=waits.append)
    assert (delivery.status, delivery.attempts, len(receiver.posts)) == ("failed", 3, 3)
    assert waits == [1, 2] and delivery.error == f"{receiver.url()[7:-5]} answered HTTP 503: ok"
    assert rows(sqlite_store)[0]["status"] == "failed"
    assert channel_health(sqlite_store, ["hook", "quiet"]) == {
        "hook": {"ok": False, "last_error": delivery.error, "last_failed_at": rows(sqlite_store)[0]["updated_at"]
                 .replace(tzinfo=UTC), "last_sent_at": None},
        "quiet": {"ok": True, "last_error": None, "last_failed_at": None, "last_sent_at": None}}


@pytest.mark.parametrize(("statuses", "delay", "expected"), [
    ((400,), 0, "answered HTTP 400: ok"),
    ((), 3, "no answer within 1 s; it may have been delivered, so it is not sent again"),
])
def test_a_refusal_or_a_timeout_is_not_retried(sqlite_store: Store, statuses, delay, expected):
    with HttpReceiver(statuses=statuses, delay=delay) as receiver:
        channel = Channel("hook", webhook.NOTIFIER, webhook.WebhookSettings(url=receiver.url(), timeout=1))
        delivery = deliver(sqlite_store, channel, KEY, MESSAGE, retry=QUICK)
    assert (delivery.status, delivery.attempts, len(receiver.posts)) == ("failed", 1, 1)
    assert delivery.error.endswith(expected)


def test_a_notifier_raising_anything_is_a_failed_delivery(sqlite_store: Store):
    def broken(message: Message, settings) -> None:
        raise ValueError("bad\nthing")

    channel = Channel("odd", NotifierType("odd", "", webhook.WebhookSettings, broken), hook("http://x").settings)
    delivery = deliver(sqlite_store, channel, KEY, MESSAGE, retry=QUICK)
    assert (delivery.status, delivery.attempts, delivery.error) == ("failed", 3, "ValueError: bad thing")


def test_a_failing_channel_shows_in_health_and_in_the_job_run_and_the_service_stays_healthy(kpi, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics,notifiers")
    with HttpReceiver(statuses=(500,) * 10) as receiver:
        monkeypatch.setenv("HOOK_URL", receiver.url())
        kpi.configure("channels:\n  ops: {type: webhook, url: '${HOOK_URL}'}\n")
        app = App(debug=False)
        config = app.config(str(kpi.config))
        scheduled = replace(job(app, config), retry=QUICK)
        outcome = JobOutcome(run_id=1)
        delivery = scheduled.notify(outcome, "ops", KEY, MESSAGE)
    assert delivery.status == "failed" and outcome.status == "success"
    assert outcome.notification_errors == [f"ops: {delivery.error}"]
    client = TestClient(create_app(scheduled, Scheduler(scheduled), Heartbeat(15, last_tick=datetime.now(UTC)), None))
    answer = client.get("/health")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    ops = answer.json()["channels"]["ops"]
    assert (ops["ok"], ops["last_error"], ops["last_sent_at"]) == (False, delivery.error, None)
    scheduled.store.engine.dispose()


# --- secrets ---------------------------------------------------------------------------------------------


def test_a_webhook_url_never_reaches_logs_errors_or_the_store(sqlite_store: Store, caplog):
    redact_logs()  # as every command does first: urllib3 logs each request's path, the URL's secret part
    caplog.set_level(logging.DEBUG)
    with HttpReceiver(statuses=(500,) * 3, echo=True) as receiver:
        url = receiver.url(f"/services/{SECRET}")
        channel = Channel("ops", slack.NOTIFIER, slack.SlackSettings(url=url))
        echoed = deliver(sqlite_store, channel, KEY, MESSAGE, retry=QUICK)
    refused = deliver(sqlite_store, channel, replace(KEY, occurrence="2026-12"), MESSAGE, retry=QUICK)  # closed
    assert echoed.error.endswith("answered HTTP 500: failed for [redacted]")
    assert refused.error.startswith("127.0.0.1:") and "cannot connect" in refused.error
    seen = caplog.text + str(rows(sqlite_store)) + echoed.error + refused.error
    assert SECRET not in seen and "xq7Kp2mW9zLr4Vt8" not in seen


def notify(kpi, *args: str):
    return CliRunner().invoke(cli, ["notify", *args, "--config", str(kpi.config)], catch_exceptions=False)


def test_notify_test_sends_and_fails_in_one_line_without_the_secret(kpi, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics,notifiers")
    with HttpReceiver(statuses=(200, 502), echo=True) as receiver:
        monkeypatch.setenv("SLACK_URL", receiver.url(f"/services/{SECRET}"))
        kpi.configure("channels:\n  ops_slack: {type: slack, url: '${SLACK_URL}'}\n")
        sent = notify(kpi, "test", "ops_slack")
        failed = notify(kpi, "test", "ops_slack")
    assert sent.exit_code == 0 and sent.stdout == "ops_slack: test message sent (delivery 1)\n"
    assert receiver.posts[0]["json"]["blocks"][0]["text"]["text"] == "crmkpi test message to ops_slack"
    assert failed.exit_code == 1 and failed.stderr == (
        f"Error: ops_slack: test message not sent (delivery 2): {receiver.url()[7:-5]} answered HTTP 502: failed "
        "for [redacted]\n")
    assert SECRET not in failed.stderr + caplog.text
    status = notify(kpi, "status")
    assert status.stdout.startswith("ops_slack  (slack) last sent ") and "FAILING since" in status.stdout
    assert notify(kpi, "test", "ops_slak").stderr == ("Error: unknown channel 'ops_slak'; did you mean 'ops_slack'? "
                                                      "(configured: ops_slack)\n")


# --- channels in the config ----------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "error"), [
    ("ops: {url: x}", "channels.ops.type: field required"),
    ("ops: {type: slak, url: x}", "channels.ops.type: unknown notifier type 'slak'; did you mean 'slack'? "
                                  "(known: email, slack, webhook)"),
    ("ops: {type: slack}", "channels.ops.url: field required"),
    ("ops: {type: slack, url: 'ftp://hooks.example.com/secret-path-1234'}",
     "channels.ops.url: expected an http:// or https:// URL"),
    ("ops: {type: webhook, url: 'https://x.example', tmeout: 3}", "channels.ops.tmeout: unknown field; did you "
                                                                  "mean 'timeout'?"),
    ("ops: {type: email, host: smtp.example.com, from: a@example.com, to: [b@example.com], username: u}",
     "channels.ops: give both username and password, or neither"),
    ("ops: {type: email, host: smtp.example.com, from: a@example.com, to: []}",
     "channels.ops.to: list should have at least 1 item after validation, not 0"),
    ("ops: {type: slack, url: '${UNSET_SLACK_URL}'}", "channels.ops.url: environment variable UNSET_SLACK_URL is "
                                                      "not set"),
])
def test_a_channel_config_error_is_one_line(kpi, monkeypatch, channels, error):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,notifiers")
    monkeypatch.delenv("UNSET_SLACK_URL", raising=False)
    kpi.configure(f"channels:\n  {channels}\n")
    with pytest.raises(ConfigError) as raised:
        App(debug=False).config(str(kpi.config))
    assert str(raised.value) == error
    assert "secret-path-1234" not in str(raised.value)


def test_the_services_example_config_has_a_channel_of_each_built_in_type(monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "")
    text = (ROOT / "config" / "service.yaml").read_text(encoding="utf-8")
    block = text.split("# channels:\n", 1)[1].split("\n\n", 1)[0]
    uncommented = "channels:\n" + "\n".join(line.removeprefix("# ") for line in block.splitlines())
    import yaml

    channels = yaml.safe_load(uncommented)["channels"]
    assert {c["type"] for c in channels.values()} == {"webhook", "slack", "email"}
    notifiers = load_registry(distribution="crmkpi").notifiers
    for name, block in channels.items():
        values = {k: "https://hooks.example.com/x" if isinstance(v, str) and v.startswith("${") else v
                  for k, v in block.items() if k != "type"}
        notifiers[block["type"]].settings.model_validate(values)


# --- plugins ---------------------------------------------------------------------------------------------


def test_a_third_party_notifier_is_listed_and_used_like_a_built_in(install, kpi, monkeypatch, tmp_path):
    install("acme-pager", "2.0.0", {"pager": "pager_notifier"})
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,notifiers,pager")
    listing = CliRunner().invoke(cli, ["plugins"]).stdout.splitlines()
    i = listing.index("pager  [acme-pager 2.0.0]  pager_notifier")
    assert listing[i + 1:i + 3] == ["  notifiers: pager", "  plugin API: >=1.1,<2"]
    assert "  notifiers: webhook, slack, email" in listing
    infos = {info["name"]: info for info in json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)}
    assert infos["pager"]["notifiers"] == ["pager"] and infos["pager"]["hooks"] == ["register_notifiers"]
    pages = tmp_path / "pages.jsonl"
    kpi.configure(f"channels:\n  pager: {{type: pager, path: '{pages}'}}\n")
    assert notify(kpi, "test", "pager").exit_code == 0
    assert json.loads(pages.read_text())["title"] == "crmkpi test message to pager"


def test_a_notifier_name_taken_twice_is_reported_like_a_duplicate_connector(monkeypatch):
    class Again:
        @hookimpl
        def register_notifiers(self, register):
            register(NotifierType("webhook", "mine", webhook.WebhookSettings, webhook.send))
            register("not a notifier")

    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "notifiers")
    registry = load_registry(extra={"again": Again()})
    assert registry.plugins["again"].errors == [
        f"register_notifiers: duplicate notifier id 'webhook': already provided by notifiers (crmkpi "
        f"{registry.plugins['notifiers'].version})", "register_notifiers: register() expects a NotifierType, got str"]
    assert registry.notifier_type("webhook") is webhook.NOTIFIER
    with pytest.raises(Exception, match=r"^unknown notifier type 'pager' \(known: email, slack, webhook\)$"):
        registry.notifier_type("pager")


def test_a_notifier_raises_notifier_error_to_say_whether_to_retry():
    assert NotifierError("x").retry is True and NotifierError("x", retry=False).retry is False


# --- the guide's example ------------------------------------------------------------------------------------


def test_the_guides_example_notifier_registers_and_delivers(sqlite_store: Store, tmp_path: Path):
    guide = (ROOT / "docs" / "notifications.md").read_text(encoding="utf-8")
    source = guide.split("## Writing a notifier plugin", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(source, "docs/notifications.md", "exec"), namespace)  # noqa: S102 - our own guide
    registry = Registry()
    registry.add("audit_log", type("Plugin", (), {"register_notifiers": staticmethod(namespace["register_notifiers"])}))
    assert registry.errors() == [] and list(registry.notifiers) == ["audit_file"]
    notifier = registry.notifier_type("audit_file")
    log = tmp_path / "audit.jsonl"
    channel = Channel("audit", notifier, notifier.settings.model_validate({"path": str(log)}))
    assert deliver(sqlite_store, channel, KEY, MESSAGE).status == "sent"
    assert json.loads(log.read_text())["rule"] == "win_rate_low"
    missing = replace(channel, settings=notifier.settings.model_validate({"path": str(tmp_path / "no" / "x")}))
    failed = deliver(sqlite_store, missing, replace(KEY, occurrence="2026-12"), MESSAGE, retry=QUICK)
    assert failed.status == "failed" and failed.attempts == 1
