"""Sales-funnel KPIs over ``deals``: close rate and win rate."""

from __future__ import annotations

from sqlalchemy import case, func, select

from crmkpi import hookimpl
from crmkpi.errors import MetricError
from crmkpi.metrics import Metric, MetricContext, Param, Value, ratio


def close_rate(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    won, created = ctx.conn.execute(
        select(func.count().filter(deals.c.is_won.is_(True)), func.count())
        .where(ctx.live(deals), ctx.in_period(deals.c.created_at))
    ).one()
    return ratio(won, created, empty="no deals created in the period")


def win_rate(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    cohort = deals.c.created_at if ctx.params["cohort"] == "created" else deals.c.closed_at
    where = (ctx.live(deals), ctx.in_period(cohort), deals.c.is_closed.is_(True))
    if ctx.params["by"] == "amount":
        currencies = ctx.conn.execute(select(func.count(func.distinct(deals.c.currency))).where(*where)).scalar()
        if currencies > 1:
            raise MetricError("win_rate by amount: deals are in several currencies and currency "
                              "conversion is not available yet; use by=count")
        weight = func.coalesce(deals.c.amount, 0)
    else:
        weight = 1
    won, closed = ctx.conn.execute(
        select(func.sum(case((deals.c.is_won.is_(True), weight), else_=0)), func.sum(weight)).where(*where)
    ).one()
    return ratio(won, closed, empty="no deals closed (won or lost) in the cohort")


COHORT = Param("cohort", str, "created", "which deals count: those created in the period, or those closed in it",
               choices=("created", "closed"))

METRICS = [
    Metric(
        id="close_rate",
        title="Close rate",
        description="Share of the deals created in the period that have been won. Open and lost deals "
                    "count in the denominator, so a young cohort's close rate still grows as its deals close.",
        formula="won deals created in the period / deals created in the period",
        unit="ratio",
        direction="higher",
        tables=("deals",),
        compute=close_rate,
    ),
    Metric(
        id="win_rate",
        title="Win rate",
        description="Share of the decided deals that were won: open deals are left out. By count (every "
                    "deal weighs one) or by amount (each deal weighs its amount).",
        formula="won deals / (won deals + lost deals), over the cohort",
        unit="ratio",
        direction="higher",
        tables=("deals",),
        compute=win_rate,
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
