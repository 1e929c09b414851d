"""The secret values of this process, and :func:`redact`, which takes them out of any text that leaves it.

A server or proxy that answers an error by reflecting the request (a WAF page, a broken
gateway) hands our own credentials back to us; a traceback or a log line can quote them too.
So every secret is registered here where it becomes known, from the config (every
``SecretStr`` of a connector's settings, the store URL's password) or at runtime (a login's
session id, a refreshed OAuth token, a signed JWT assertion), together with the encodings a
server could echo it in: URL and form encoding, JSON and HTML/XML escaping. HTTP basic
credentials are built by :func:`basic_credentials`, which registers their base64 form.

Values shorter than :data:`MIN_LENGTH` are not registered: redacting ``"admin"`` or ``"1234"``
would mangle ordinary words and numbers everywhere, and such a value is no real secret.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import traceback
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, SecretStr

#: Shorter values are left alone (see the module's docstring).
MIN_LENGTH = 8
#: What a secret is replaced with.
MARK = "[redacted]"

#: Credentials in headers are redacted even when the value is unknown (a cookie the server set, a token
#: of another process): ``Authorization: Bearer x``, ``"Cookie": "sid=x"``, also HTML-escaped.
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie)"
    r"((?:\"|'|&quot;|&#x27;|&#39;)?\s*[:=]\s*(?:\"|'|&quot;|&#x27;|&#39;)?\s*)"
    r"(?:(?:basic|bearer|oauth|token)\s+)?[^\s\"'<>,}&;]+(?:;\s*[^\s\"'<>,}&;]+)*")

_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(value: str | None) -> None:
    """Treat ``value`` (and its encodings) as a secret from now on; short or empty values are ignored."""
    global _pattern
    if not value or len(value) < MIN_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1], html.escape(value), html.escape(value, quote=False)}
    # a multi-line value (a PEM key) may be quoted one line at a time
    forms.update(line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LENGTH)
    if forms <= _forms:
        return
    _forms.update(forms)
    # longest first: a secret that contains another must be replaced whole
    _pattern = re.compile("|".join(re.escape(form) for form in sorted(_forms, key=len, reverse=True)))


def register_settings(settings: Any) -> None:
    """Register every ``SecretStr`` value held by a settings model, at any depth."""
    if isinstance(settings, SecretStr):
        register(settings.get_secret_value())
    elif isinstance(settings, BaseModel):
        for name in type(settings).model_fields:
            register_settings(getattr(settings, name))
    elif isinstance(settings, dict):
        for item in settings.values():
            register_settings(item)
    elif isinstance(settings, (list, tuple)):
        for item in settings:
            register_settings(item)


def basic_credentials(user: str, secret: str) -> str:
    """The value of an HTTP ``Authorization: Basic`` header, registered as a secret."""
    encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
    register(encoded)
    return encoded


def redact(text: str) -> str:
    """``text`` with every registered secret, and every credential header's value, replaced by ``[redacted]``."""
    if not text:
        return text
    if _pattern is not None:
        text = _pattern.sub(MARK, text)
    return _HEADER.sub(lambda match: f"{match[1]}{match[2]}{MARK}", text)


def redacted_traceback() -> str:
    """The traceback of the exception being handled (``--debug``), redacted."""
    return redact(traceback.format_exc())


def redact_logs() -> None:
    """Redact every log record of the process, whoever logs it (urllib3 and the API clients included).

    The record factory runs for every record before any handler sees it, so handlers added later
    (by a user's logging config) get clean records too. The message is formatted here, once, and
    so is the traceback of a record that carries one.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), ()
        except Exception:  # a malformed call: left for the handler to report, as logging does
            pass
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    redacting_factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)
