"""Sales-funnel KPIs over ``deals``: close rate and win rate."""

from __future__ import annotations

from sqlalchemy import case, func, literal, select

from crmkpi import hookimpl
from crmkpi.metrics import Metric, MetricContext, Param, Value, ratio


def close_rate(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    created, won = ctx.in_period(deals.c.created_at), deals.c.is_won.is_(True)
    ctx.record("won deals created in the period", deals, created, won)
    ctx.record("deals created in the period", deals, created)
    wins, total = ctx.conn.execute(  # both sides in one scan
        select(func.count().filter(won), func.count()).where(*ctx.scope(deals), created)).one()
    undated = ctx.left_out("deal(s) without created_at (in no period)", deals, deals.c.created_at.is_(None))
    return ratio(wins, total, empty="no deals created in the period").noted(undated)


def win_rate(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    by_close = ctx.params["cohort"] == "closed"
    cohort = deals.c.closed_at if by_close else deals.c.created_at
    closed = deals.c.is_closed.is_(True)
    decided = (ctx.in_period(cohort), closed)
    won = deals.c.is_won.is_(True)
    ctx.record("won deals", deals, *decided, won)
    ctx.record("won and lost deals", deals, *decided)
    if ctx.params["by"] == "count":
        weight = literal(1)
    else:
        weight = ctx.money(deals, func.coalesce(deals.c.amount, 0), deals.c.closed_at, *decided)
    wins, total, unsized = ctx.conn.execute(
        select(func.sum(case((won, weight), else_=0)), func.sum(weight), func.count() - func.count(deals.c.amount))
        .where(*ctx.scope(deals), *decided)).one()
    empty = "no deals closed (won or lost) in the period" if by_close \
        else "no deal created in the period is closed (won or lost)"
    notes = [ctx.left_out(f"closed deal(s) without {cohort.name} (in no period)", deals, closed, cohort.is_(None))]
    if ctx.params["by"] == "amount" and unsized:
        notes.append(f"{unsized} won or lost deal(s) without amount counted as 0")
    return ratio(wins, total, empty=empty).noted(*notes)


COHORT = Param("cohort", str, "closed", "which deals count: those closed in the period (as CRM win-rate reports "
               "count them), or those created in it", choices=("closed", "created"))

METRICS = [
    Metric(
        id="close_rate",
        title="Close rate",
        description="Share of the deals created in the period that have been won. Open and lost deals "
                    "count in the denominator, so a young cohort's close rate still grows as its deals close. "
                    "Deals without created_at belong to no period; the note counts them.",
        formula="won deals created in the period / deals created in the period",
        unit="ratio",
        direction="higher",
        tables=("deals",),
        compute=close_rate,
        needs=("deals.created_at", "deals.is_won"),
    ),
    Metric(
        id="win_rate",
        title="Win rate",
        description="Share of the decided deals that were won: open deals are left out. The cohort is, by "
                    "default (`cohort=closed`), the deals closed (won or lost) in the period by `closed_at`, as "
                    "CRM win-rate reports count them: a period's win rate is settled once the period is over. "
                    "With `cohort=created` it is the deals created in the period (`created_at`) that have "
                    "closed since, so a young cohort's rate still moves as its deals close. By count (every "
                    "deal weighs one) or by amount (each deal weighs its amount, converted to the reporting "
                    "currency at the rate of its close date; a deal without an amount weighs 0). Closed deals "
                    "without the cohort's date, and deals weighed 0 for want of an amount, are counted in the "
                    "note.",
        formula="won deals / (won deals + lost deals), over the deals closed in the period (or created in it)",
        unit="ratio",
        direction="higher",
        tables=("deals",),
        compute=win_rate,
        needs=("deals.closed_at", "deals.is_closed", "deals.is_won"),
        params=(
            Param("by", str, "count", "weigh deals by count or by amount", choices=("count", "amount")),
            COHORT,
        ),
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
