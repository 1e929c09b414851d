"""crmkpi.redact: which values count as secrets, in which forms, and where redaction applies."""

from __future__ import annotations

import io
import logging

from pydantic import BaseModel, SecretStr

from crmkpi.redact import (
    MARK, basic_credentials, redact, redact_logs, register, register_settings,
)


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
