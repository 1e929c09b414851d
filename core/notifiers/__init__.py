"""The built-in notifiers: a generic JSON webhook, Slack incoming webhooks and email over SMTP.

An ordinary plugin, registered through the ``crmkpi`` entry-point group like a third party's
(docs/notifications.md describes each one's settings)."""

from __future__ import annotations

from typing import Callable

from .. import hookimpl
from ..notify import NotifierType


@hookimpl
def register_notifiers(register: Callable[[NotifierType], None]) -> None:
    from . import slack, smtp, webhook

    register(webhook.NOTIFIER)
    register(slack.NOTIFIER)
    register(smtp.NOTIFIER)
