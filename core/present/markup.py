"""Escaped HTML built in code: every string is escaped unless it is already :class:`Html`.

Metric titles, segment values, notes and errors come from CRM data and plugins, so nothing
reaches the page unescaped by accident: text is escaped at the point it becomes markup.
"""

from __future__ import annotations

import html
from typing import Iterable, Union


class Html(str):
    """Markup that is safe to insert as it is (built by :func:`element` or escaped by :func:`text`)."""


Content = Union["Html", str, int, float, None, Iterable["Content"]]


def text(value: object) -> Html:
    """``value`` as HTML text: ``<``, ``>``, ``&`` and quotes escaped."""
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def render(content: Content) -> Html:
    """Markup of ``content``: Html as it is, other values escaped, None left out, iterables joined."""
    if content is None:
        return Html("")
    if isinstance(content, (str, int, float)):
        return text(content)
    return Html("".join(render(part) for part in content))


def attributes(attrs: dict[str, object]) -> str:
    """`` name="value"`` for each attribute (None: left out, True: bare); names are ours, values escaped.
    A trailing underscore lets a Python keyword be a name (``class_``)."""
    parts = []
    for name, value in attrs.items():
        name = name.rstrip("_").replace("_", "-")
        if value is None or value is False:
            continue
        parts.append(f" {name}" if value is True else f' {name}="{html.escape(str(value), quote=True)}"')
    return "".join(parts)


#: Elements without content or closing tag.
VOID = {"meta", "br", "hr", "img", "input", "link", "circle", "line", "polyline", "rect", "path"}


def element(name: str, *content: Content, **attrs: object) -> Html:
    """``<name attrs>content</name>``; ``class_="x"`` gives ``class="x"``, ``data_value=1`` ``data-value="1"``."""
    if name in VOID and not content:
        return Html(f"<{name}{attributes(attrs)}/>" if name in SVG_VOID else f"<{name}{attributes(attrs)}>")
    return Html(f"<{name}{attributes(attrs)}>{render(content)}</{name}>")


#: SVG shapes are written self-closed (valid in HTML and in standalone SVG).
SVG_VOID = {"circle", "line", "polyline", "rect", "path"}


def number(value: float | None) -> str:
    """A float for an attribute that a reader parses back to the same float (``repr``), or '' for None."""
    return "" if value is None else repr(float(value))
