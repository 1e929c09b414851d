"""``type: slack``: a Slack incoming webhook, the message as Block Kit mrkdwn within Slack's limits.

Slack rejects a message of more than 50 blocks or with a section text over 3,000 characters (a field over
2,000, a header over 150): a long body is split into sections at line ends, and what does not fit in 50
blocks is cut, the last block saying how much was left out. A message is never rejected for its length.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ..notify import Message, NotifierType
from .post import post_json
from .webhook import http_url

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_HEADER = 150


class SlackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(description="the incoming webhook's URL (https://hooks.slack.com/services/...); a "
                                       "secret: write ${VAR}")
    timeout: float = Field(10.0, gt=0, description="seconds to wait for Slack's answer")

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        return http_url(value)


def escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it: the three characters Slack reads as markup escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    for keep in range(limit, 0, -1):  # the note's own length depends on the number it gives
        note = f"… {len(text) - keep} more characters"
        if keep + len(note) + 1 <= limit:
            return f"{text[:keep]}\n{note}"
    return text[:limit]


def chunks(text: str, limit: int = MAX_SECTION) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, split at line ends where a line fits."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # a line too long for one section: split it where it must
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            pieces.append(current)
            candidate = line
        current = candidate
    if current.strip():
        pieces.append(current)
    return [piece for piece in pieces if piece.strip()]


def blocks(message: Message) -> list[dict[str, Any]]:
    """The message's blocks: a header, its text in sections, its facts as fields, its link; at most 50."""
    found: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                                "text": cut(message.title, MAX_HEADER)}}]
    found += [_section(piece) for piece in chunks(escape(message.text))]
    facts = [{"type": "mrkdwn", "text": cut(f"*{escape(label)}*\n{escape(text)}", MAX_FIELD)}
             for label, text in message.facts()]
    found += [{"type": "section", "fields": facts[i:i + MAX_FIELDS]} for i in range(0, len(facts), MAX_FIELDS)]
    if message.link:
        found.append(_section(cut(f"<{message.link.replace('|', '%7C').replace('>', '%3E')}|Open>", MAX_SECTION)))
    if len(found) > MAX_BLOCKS:
        left_out = len(found) - (MAX_BLOCKS - 1)
        found = [*found[:MAX_BLOCKS - 1], _section(f"… {left_out} more blocks not shown (Slack shows at most "
                                                   f"{MAX_BLOCKS})")]
    return found


def payload(message: Message) -> dict[str, Any]:
    """What is POSTed: the blocks, and ``text``, what notifications and old clients show."""
    return {"text": cut(escape(f"{message.title}\n{message.text}"), MAX_SECTION), "blocks": blocks(message)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def send(message: Message, settings: SlackSettings) -> None:
    post_json(settings.url.get_secret_value(), payload(message), settings.timeout)


NOTIFIER = NotifierType("slack", "Posts the message to a Slack incoming webhook (mrkdwn, within Slack's limits)",
                        SlackSettings, send)
