"""An example third-party metric plugin: pipeline coverage, the open pipeline over the quota still to make.

    coverage = open pipeline at the period's end / (the period's quota - the amount won in the period)

The pieces are those of two built-in metrics, defined the same way so that the numbers agree with them:
the open pipeline is ``pipeline_value``'s (deals created before the period's end and not closed before
it, converted at the rate of the period's last day), the quota and the amount won are
``quota_attainment``'s (the rep or team quotas whose whole quota period lies within the period,
converted at their start's rate; the deals won whose close date falls in the period, converted at their
close date's rate). Every table is read within the segment being computed (``ctx.scope``), so a run by
owner or by team compares each rep's or team's pipeline with their own quota.

The metric comes both ways: ``compute`` for one cell (and ``crmkpi explain``), ``grouped`` for every
period part, segment and comparison of a run at once. The value they share is made by :func:`coverage`.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, and_, func, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement

from crmkpi import TABLES, Cell, Grid, Metric, MetricContext, Param, Value, by_label, hookimpl

#: The plugin API versions this plugin is written for (docs/compatibility.md).
CRMKPI_PLUGIN_API = ">=1.0,<2"

DEALS, QUOTAS = TABLES["deals"], TABLES["quotas"]
#: The deals won with an amount, whatever the period.
WON = (DEALS.c.is_won.is_(True), DEALS.c.amount.is_not(None))


def open_at(end: ColumnElement | datetime) -> tuple[ColumnElement, ...]:
    """Deals open at the instant ``end``: created before it and not closed before it."""
    return DEALS.c.created_at < end, or_(DEALS.c.is_closed.is_(False), DEALS.c.closed_at >= end)


def quotas_within(level: str, first: ColumnElement | date, last: ColumnElement | date) -> tuple[ColumnElement, ...]:
    """The quotas of ``level`` whose quota period lies within the days ``first``..``last``: rep quotas
    (owner_id set) or team quotas (owner_id empty, team set), never both, so none is counted twice."""
    holder = (QUOTAS.c.owner_id.is_not(None) if level == "rep"
              else and_(QUOTAS.c.owner_id.is_(None), QUOTAS.c.team.is_not(None)))
    return holder, QUOTAS.c.period_start >= first, QUOTAS.c.period_end <= last


def quota_sums(amount: ColumnElement) -> tuple[ColumnElement, ...]:
    """How many quotas, their converted total, and how many have no amount."""
    return func.count(), func.sum(amount), func.count() - func.count(QUOTAS.c.amount)


def pipeline_sums(amount: ColumnElement) -> tuple[ColumnElement, ...]:
    """The open deals' converted total, and how many have no amount."""
    return func.sum(amount), func.count() - func.count(DEALS.c.amount)


def coverage(level: str, quotas: int, quota: float | None, unsized_quotas: int, won: float | None,
             pipeline: float | None, unvalued_deals: int) -> Value:
    """The value from the sums, shared by both ways so that they agree."""
    notes = (f"{unvalued_deals} open deal(s) without amount left out" if unvalued_deals else None,
             f"{unsized_quotas} {level} quota(s) without amount counted as 0" if unsized_quotas else None)
    if not quotas:
        return Value(None, note=f"no {level} quota lies within the period").noted(*notes)
    remaining, pipeline = float(quota or 0) - float(won or 0), float(pipeline or 0)
    if remaining <= 0:
        return Value(None, pipeline, remaining, note="the quota is met: none remains to cover").noted(*notes)
    return Value(pipeline / remaining, pipeline, remaining).noted(*notes)


def pipeline_coverage(ctx: MetricContext) -> Value:
    level = ctx.params["level"]
    within = quotas_within(level, ctx.period.start, ctx.period.last_day)
    quota = ctx.converted(QUOTAS, func.coalesce(QUOTAS.c.amount, 0), QUOTAS.c.period_start, *within)
    ctx.record(f"{level} quotas within the period", QUOTAS, *within)
    quotas, quota_total, unsized = quota.one(select(*quota_sums(quota.amount)).where(*ctx.scope(QUOTAS), *within))

    won_in_period = (*WON, ctx.in_period(DEALS.c.closed_at))
    won = ctx.converted(DEALS, DEALS.c.amount, DEALS.c.closed_at, *won_in_period)
    ctx.record("won deals closed in the period", DEALS, *won_in_period)
    (won_total,) = won.one(select(func.sum(won.amount)).where(*ctx.scope(DEALS), *won_in_period))

    # A snapshot at the period's end: converted at the rate of its last day.
    still_open = open_at(ctx.end)
    pipeline = ctx.converted(DEALS, DEALS.c.amount, literal(ctx.period.last_day, Date()), *still_open,
                             DEALS.c.amount.is_not(None))
    ctx.record("deals open at the end of the period", DEALS, *still_open)
    pipeline_total, unvalued = pipeline.one(select(*pipeline_sums(pipeline.amount))
                                            .where(*ctx.scope(DEALS), *still_open))
    return coverage(level, quotas, quota_total, unsized, won_total, pipeline_total, unvalued)


def pipeline_coverage_grouped(grid: Grid) -> dict[Cell, Value]:
    level, parts = grid.params["level"], grid.calendar
    # Quotas by the part whose days hold their whole quota period: a join with the calendar of parts.
    within = quotas_within(level, parts.c.first, parts.c.last)
    quota = grid.money(QUOTAS, func.coalesce(QUOTAS.c.amount, 0), QUOTAS.c.period_start, *within)
    keys = grid.segment_key(QUOTAS)
    quotas = grid.by_cell(select(parts.c.part, *keys, *quota_sums(quota))
                          .select_from(QUOTAS.join(parts, and_(*within))).where(*grid.live(QUOTAS))
                          .group_by(parts.c.part, *by_label(*keys)))

    won_amount = grid.money(DEALS, DEALS.c.amount, DEALS.c.closed_at, grid.in_any_part(DEALS.c.closed_at), *WON)
    won = grid.by_part(DEALS, DEALS.c.closed_at, func.sum(won_amount), where=WON)

    # Deals open at each part's end: a deal counts in every part it is open at the end of.
    still_open = open_at(parts.c.end)
    pipeline_amount = grid.money(DEALS, DEALS.c.amount, parts.c.last, *still_open, DEALS.c.amount.is_not(None))
    pipeline = grid.by_part(DEALS, None, *pipeline_sums(pipeline_amount), on=and_(*still_open))

    return {cell: coverage(level, *quotas.get(cell, (0, None, 0)), won.get(cell, (None,))[0],
                           *pipeline.get(cell, (None, 0)))
            for cell in grid.cells}


@hookimpl
def register_metrics(register):
    register(Metric(
        id="pipeline_coverage",
        title="Pipeline coverage",
        description=(
            "The open pipeline over the quota still to make. Open pipeline: the amounts of the deals open at "
            "the period's end (created before it, not closed before it), converted at the rate of the period's "
            "last day, as pipeline_value. Remaining quota: the rep (level=rep) or team (level=team) quotas whose "
            "quota period lies within the period, less the deals won in the period, as quota_attainment. Null "
            "when no quota lies within the period, or when the quota is met. Run it by owner (rep quotas) or "
            "by team with level=team."),
        formula="open pipeline at the period's end / (quota - won amount in the period)",
        unit="ratio",
        direction="higher",
        tables=("quotas", "deals"),
        compute=pipeline_coverage,
        grouped=pipeline_coverage_grouped,
        needs=("deals.created_at", "deals.closed_at", "deals.is_closed", "deals.is_won", "deals.amount",
               "quotas.period_start", "quotas.period_end", "quotas.amount"),
        params=(Param("level", str, "rep", "which quotas to add up: rep quotas (owner_id set) or team quotas "
                      "(owner_id empty, team set)", choices=("rep", "team")),),
    ))
