"""An example third-party metric plugin: the average amount of the deals won in a period.

Amounts are converted to the reporting currency, every table is read within the segment being
computed, and the metric comes both ways: ``compute`` for one cell (and ``crmkpi explain``),
``grouped`` for every period part, segment and comparison of a run at once."""

from sqlalchemy import func, select

from crmkpi import TABLES, Cell, Grid, Metric, MetricContext, Param, Value, hookimpl

#: The plugin API versions this plugin is written for (docs/compatibility.md).
CRMKPI_PLUGIN_API = ">=1.0,<2"

DEALS = TABLES["deals"]
#: The deals that count, whatever the period: won, with an amount.
WON = (DEALS.c.is_won.is_(True), DEALS.c.amount.is_not(None))


def deal_size(total, count) -> Value:
    """The value from the converted amounts' total and count: shared by both ways, so they agree."""
    if not count:
        return Value(None, note="no deals won in the period")
    return Value(total / count, numerator=total, denominator=count)


def avg_deal_size(ctx: MetricContext) -> Value:
    # closed_at is an instant: in_period compares it with the period's bounds in the reporting time zone.
    won = (*WON, ctx.in_period(DEALS.c.closed_at))
    # Each amount at the rate of its close date. `*won` names the rows that need a rate: these deals only.
    amount = ctx.money(DEALS, DEALS.c.amount, DEALS.c.closed_at, *won)
    counted = (*won, amount >= ctx.params["min_amount"])
    ctx.record("won deals closed in the period, at or above min_amount", DEALS, *counted)
    # ctx.scope: the rows not deleted in the CRM, within the segment being computed.
    total, count = ctx.conn.execute(select(func.sum(amount), func.count()).where(*ctx.scope(DEALS), *counted)).one()
    return deal_size(total, count)


def avg_deal_size_grouped(grid: Grid) -> dict[Cell, Value]:
    amount = grid.money(DEALS, DEALS.c.amount, DEALS.c.closed_at, grid.in_any_part(DEALS.c.closed_at), *WON)
    sums = grid.by_part(DEALS, DEALS.c.closed_at, func.sum(amount), func.count(),
                        where=(*WON, amount >= grid.params["min_amount"]))
    return {cell: deal_size(*sums.get(cell, (None, 0))) for cell in grid.cells}


@hookimpl
def register_metrics(register):
    register(Metric(
        id="example_deal_size",
        title="Average deal size",
        description="Mean amount of the deals won in the period (by close date), in the reporting currency.",
        formula="sum of won deal amounts / number of won deals, by close date",
        unit="currency",
        direction="higher",
        tables=("deals",),
        compute=avg_deal_size,
        grouped=avg_deal_size_grouped,
        params=(Param("min_amount", float, 0.0, "ignore deals below this amount (reporting currency)"),),
    ))
