"""The notifier API: what a notifier plugin registers (:class:`NotifierType`) and what it sends (:class:`Message`).

A notifier only sends. Recording a delivery before it is sent, retrying and reporting failures are the core's
(:mod:`crmkpi.deliveries`), so that every notifier gets the same guarantee: a message is sent at most once
per delivery key, whoever sends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel


@dataclass(frozen=True)
class Message:
    """One notification, for every kind of channel: a title, a plain-text body, optional HTML and the facts
    it is about (each optional), which a channel may show as fields or send as JSON."""

    title: str
    text: str
    #: An HTML body for channels that show one (email); without it they build one from ``text``.
    html: str | None = None
    #: The alert rule, metric, segment (``team=East``) and value the message is about, where it is about one.
    rule: str | None = None
    metric: str | None = None
    segment: str | None = None
    value: str | None = None
    #: Where to read more (a dashboard, the API).
    link: str | None = None
    #: Further facts, shown in this order.
    fields: dict[str, str] = field(default_factory=dict)
    #: The delivery's key (set by the core when it delivers), for a receiver to deduplicate on.
    id: str | None = None

    def facts(self) -> list[tuple[str, str]]:
        """The facts that are set, as (label, text) pairs: rule, metric, segment, value, then ``fields``."""
        named = [("rule", self.rule), ("metric", self.metric), ("segment", self.segment), ("value", self.value)]
        return [(label, text) for label, text in named if text] + list(self.fields.items())


@dataclass(frozen=True)
class NotifierType:
    """A kind of channel, registered through the ``register_notifiers`` hook.

    ``settings`` validates a channel's block of the config (everything except ``type``); mark secrets
    (webhook URLs, passwords) ``SecretStr`` so that they never reach a log. ``send(message, settings)``
    sends one message and returns once the receiver accepted it; on failure it raises
    :class:`crmkpi.NotifierError` with a one-line message (``retry=False`` when another attempt cannot help
    or could send it twice). It must not retry by itself: the core retries with backoff.
    """

    name: str
    description: str
    settings: type[BaseModel]
    send: Callable[[Message, BaseModel], None]
