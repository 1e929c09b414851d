"""A well-behaved third-party metric plugin: one metric with a param."""

from sqlalchemy import func, select

from crmkpi import hookimpl
from crmkpi.metrics import Metric, MetricContext, Param, Value


def deals_created(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    count = ctx.conn.execute(
        select(func.count()).where(ctx.live(deals), ctx.in_period(deals.c.created_at),
                                   func.coalesce(deals.c.amount, 0) >= ctx.params["min_amount"])
    ).scalar()
    return Value(float(count))


DEALS_CREATED = Metric(
    id="deals_created",
    title="Deals created",
    description="Deals created in the period (optionally only those of at least min_amount).",
    formula="count of deals created in the period",
    unit="count",
    direction="higher",
    tables=("deals",),
    compute=deals_created,
    params=(Param("min_amount", float, 0.0, "only deals of at least this amount"),),
)


@hookimpl
def register_metrics(register):
    register(DEALS_CREATED)
