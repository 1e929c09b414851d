"""``type: webhook``: the message as JSON, POSTed to any URL (a chat bridge, an incident tool, your own service)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ..notify import Message, NotifierType
from .post import post_json


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(description="where to POST (http or https); a secret: write ${VAR}")
    timeout: float = Field(10.0, gt=0, description="seconds to wait for the answer")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (values are not "
                                                                       "secret: put tokens in the URL's variable)")

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        return http_url(value)


def http_url(value: SecretStr) -> SecretStr:
    """An http(s) URL with a host; the error never quotes it."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return value


def body(message: Message) -> dict[str, Any]:
    """The JSON a webhook receives: every part of the message, ``id`` being the delivery's key."""
    return {"id": message.id, "title": message.title, "text": message.text, "html": message.html,
            "rule": message.rule, "metric": message.metric, "segment": message.segment, "value": message.value,
            "link": message.link, "fields": message.fields}


def send(message: Message, settings: WebhookSettings) -> None:
    headers = {**settings.headers, **({"Idempotency-Key": message.id} if message.id else {})}
    post_json(settings.url.get_secret_value(), body(message), settings.timeout, headers)


NOTIFIER = NotifierType("webhook", "POSTs the message as JSON (with an Idempotency-Key header) to a URL",
                        WebhookSettings, send)
