"""crmkpi.redact: which values count as secrets, in which forms, and where redaction applies."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, SecretStr

import crmkpi.cli
from crmkpi import hookimpl
from crmkpi.config import ConnectorConfig
from crmkpi.connector import ConnectorType
from crmkpi.errors import ConnectorError
from crmkpi.plugins import load_registry
from crmkpi.redact import MARK, basic_credentials, redact, redact_logs, register, register_settings
from crmkpi.store import Store
from crmkpi.sync import sync_connector
from test_sync import NoSettings, ScriptedStream, last_run


def test_a_secret_is_redacted_in_every_encoding_a_server_could_echo():
    register("pa ss/w&rd<1>\"")
    echoed = ["pa ss/w&rd<1>\"", "pa%20ss%2Fw%26rd%3C1%3E%22", "pa+ss%2Fw%26rd%3C1%3E%22",
              'pa ss/w&rd<1>\\"', "pa ss/w&amp;rd&lt;1&gt;&quot;", "pa ss/w&amp;rd&lt;1&gt;\""]
    for form in echoed:
        assert redact(f"login failed: {form}!") == f"login failed: {MARK}!", form


def test_short_values_are_left_alone_so_that_ordinary_text_survives():
    register("admin")
    register("")
    register(None)
    assert redact("admin: user admin1234 not found") == "admin: user admin1234 not found"


def test_a_secret_that_contains_another_is_replaced_whole():
    register("token-1234")
    register("password-token-1234")
    assert redact("sent password-token-1234 and token-1234") == f"sent {MARK} and {MARK}"


def test_basic_credentials_are_registered_in_their_base64_form():
    value = basic_credentials("client-id", "client-secret-99")
    assert value == "Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQtOTk="
    assert redact(f"seen: {value}") == f"seen: {MARK}"


def test_a_multi_line_key_is_redacted_line_by_line_too():
    register("-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\nEEEEFFFF\n-----END KEY-----")
    assert redact("line: AAAABBBBCCCCDDDD") == f"line: {MARK}"
    assert redact('{"key": "-----BEGIN KEY-----\\nAAAABBBBCCCCDDDD\\nEEEEFFFF\\n-----END KEY-----"}') \
        == f'{{"key": "{MARK}"}}'


def test_credential_headers_are_redacted_even_with_an_unknown_value():
    assert redact("Authorization: Bearer abc.def, next") == f"Authorization: {MARK}, next"
    assert redact('{"authorization": "Basic eHk6eg=="}') == f'{{"authorization": "{MARK}"}}'
    assert redact("cookie: sid=1; other=2\nhost: x") == f"cookie: {MARK}\nhost: x"
    assert redact("&quot;Proxy-Authorization&quot;: &quot;Bearer q&quot;") \
        == f"&quot;Proxy-Authorization&quot;: &quot;{MARK}&quot;"
    assert redact("Authorization failed for this user") == "Authorization failed for this user"


class Inner(BaseModel):
    key: SecretStr
    name: str


class Settings(BaseModel):
    password: SecretStr | None
    inner: list[Inner]
    by_name: dict[str, Inner]


def test_every_secret_field_of_a_settings_model_is_registered_at_any_depth():
    register_settings(Settings(password=SecretStr("top-secret-1"), inner=[Inner(key="nested-secret-2", name="n")],
                               by_name={"a": Inner(key="mapped-secret-3", name="public-name-4")}))
    assert redact("top-secret-1 nested-secret-2 mapped-secret-3 public-name-4") == f"{MARK} {MARK} {MARK} public-name-4"


def test_log_records_are_redacted_whoever_logs_them_with_their_tracebacks(monkeypatch):
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())  # restored afterwards
    register("log-secret-55")
    redact_logs()
    redact_logs()  # installing twice wraps once
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("urllib3.test_redact")
    logger.addHandler(handler)
    try:
        logger.warning("sent %s", "log-secret-55")
        try:
            raise ValueError("echo: log-secret-55")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "log-secret-55" not in text
    assert f"sent {MARK}" in text and f"ValueError: echo: {MARK}" in text


class QuotingStream(ScriptedStream):
    """A stream whose note and skip reason quote what its source answered, a secret included."""

    def read(self, cursor, state):
        self.stats.note("the server said: sync-secret-77")
        self.stats.skip("row 9: the server said sync-secret-77")
        yield from super().read(cursor, state)


class QuotingPlugin:
    def __init__(self, script: list) -> None:
        self.script = script

    @hookimpl
    def register_connectors(self, register):
        register(ConnectorType(name="quoting", description="test source", settings=NoSettings, atomic=False,
                               streams=lambda context: [QuotingStream(context, self.script, [])]))


def sync_quoting(store: Store, script: list):
    registry = load_registry(extra={"quoting-test": QuotingPlugin(script)})
    return sync_connector(store, registry, "api", ConnectorConfig("quoting", NoSettings()), Path.cwd())


def test_a_sync_stores_and_reports_notes_skip_reasons_and_errors_without_secrets(tmp_path):
    register("sync-secret-77")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    [stream] = sync_quoting(store, [[("a1", "One")]]).streams
    assert (stream.notes, stream.errors) == ([f"the server said: {MARK}"], [f"row 9: the server said {MARK}"])
    details = last_run(store)["details"]["accounts-api"]
    assert (details["notes"], details["errors"]) == (stream.notes, stream.errors)
    with pytest.raises(ConnectorError, match="HTTP 500"):
        sync_quoting(store, [ValueError("HTTP 500: echo of sync-secret-77")])
    assert last_run(store)["error"] == f"ValueError: HTTP 500: echo of {MARK}"


def test_the_cli_redacts_its_one_line_errors_and_its_debug_tracebacks(monkeypatch):
    register("cli-secret-88")

    def echoing_failure():
        raise RuntimeError("the server echoed cli-secret-88")

    monkeypatch.setattr(crmkpi.cli, "load_registry", echoing_failure)
    plain = CliRunner().invoke(crmkpi.cli.cli, ["plugins"])
    assert plain.exit_code == 1
    assert plain.stderr == f"Error: unexpected RuntimeError: the server echoed {MARK} (run with --debug for details)\n"
    debug = CliRunner().invoke(crmkpi.cli.cli, ["--debug", "plugins"])
    assert debug.exit_code == 1 and debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.rstrip().endswith(f"RuntimeError: the server echoed {MARK}")
    assert "cli-secret-88" not in plain.output + debug.output
