"""A report as plain text, one line per KPI: the body of a notification that sends it (a Slack message,
an email's text part), with the same texts as the page's cards."""

from __future__ import annotations

from datetime import timedelta

from .cards import Card, Report


def summary_text(report: Report) -> str:
    """``2025-W07 (2025-02-10 to 2025-02-16), 2 KPIs:`` then a line per card: its value (or why it has none),
    its changes and its target's status."""
    last_day = report.period_end - timedelta(days=1)
    kpis = f"{len(report.cards)} KPI{'s' * (len(report.cards) != 1)}"
    head = f"{report.period} ({report.period_start} to {last_day}), {kpis}" + \
        (f", by {report.dimension}" if report.dimension else "") + ":"
    return "\n".join([head, *(card_line(card) for card in report.cards)])


def card_line(card: Card) -> str:
    """``• Win rate: 37.9%; +2.3 pts (+5.1%) vs previous period (2025-W06); target 45.0%: at risk``"""
    if card.error:
        return f"• {card.title}: failed: {card.error}"
    parts = [card.value_text + (f" ({card.note})" if card.note else "")]
    parts += [f"{change.text} vs {change.title} ({change.period})" for change in card.changes]
    if card.target:
        parts.append(f"target {card.target.target_text}: {card.target.status_text}")
    return f"• {card.title}: {'; '.join(parts)}"
