"""An example third-party metric plugin: the average amount of the deals won in a period."""

from sqlalchemy import func, select

from crmkpi import hookimpl
from crmkpi.metrics import Metric, MetricContext, Param, Value


def avg_deal_size(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    where = [ctx.live(deals), deals.c.is_won.is_(True), ctx.in_period(deals.c.closed_at),
             deals.c.amount >= ctx.params["min_amount"]]
    total, count = ctx.conn.execute(select(func.sum(deals.c.amount), func.count()).where(*where)).one()
    if not count:
        return Value(None, note="no deals won in the period")
    return Value(total / count, numerator=total, denominator=count)


@hookimpl
def register_metrics(register):
    register(
        Metric(
            id="example_deal_size",
            title="Average deal size",
            description="Mean amount of the deals won in the period, in the deals' own currency.",
            formula="sum of won deal amounts / number of won deals, by close date",
            unit="currency",
            direction="higher",
            tables=("deals",),
            compute=avg_deal_size,
            params=(Param("min_amount", float, 0.0, "ignore deals below this amount"),),
        )
    )
