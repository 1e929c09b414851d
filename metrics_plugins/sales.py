"""Sales-funnel KPIs over ``deals``: close rate and win rate."""

from __future__ import annotations

from sqlalchemy import case, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from crmkpi import hookimpl
from crmkpi.grouped import Cell, Grid
from crmkpi.metrics import TABLES, Metric, MetricContext, Param, Value, ratio

# Each metric twice: ``compute`` for one cell (and ``crmkpi explain``), ``grouped`` for all cells of a
# run at once, with the same aggregates and notes.

NO_DEAL_CREATED = "no deals created in the period"
UNDATED_DEALS = "deal(s) without created_at (in no period)"


def close_rate(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    created, won = ctx.in_period(deals.c.created_at), deals.c.is_won.is_(True)
    ctx.record("won deals created in the period", deals, created, won)
    ctx.record("deals created in the period", deals, created)
    wins, total = ctx.conn.execute(  # both sides in one scan
        select(func.count().filter(won), func.count()).where(*ctx.scope(deals), created)).one()
    undated = ctx.left_out(UNDATED_DEALS, deals, deals.c.created_at.is_(None))
    return ratio(wins, total, empty=NO_DEAL_CREATED).noted(undated)


def close_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    deals = grid.table("deals")
    counts = grid.by_part(deals, deals.c.created_at, func.count().filter(deals.c.is_won.is_(True)), func.count())
    undated = grid.left_out(UNDATED_DEALS, deals, deals.c.created_at.is_(None))
    return {cell: ratio(*counts.get(cell, (0, 0)), empty=NO_DEAL_CREATED).noted(undated.get(cell.segment))
            for cell in grid.cells}


class WinRate:
    """What both ways of computing the win rate share: the cohort, the weights, the notes."""

    def __init__(self, params: dict) -> None:
        deals = self.deals = TABLES["deals"]
        self.by_close = params["cohort"] == "closed"
        self.by_amount = params["by"] == "amount"
        self.cohort = deals.c.closed_at if self.by_close else deals.c.created_at
        self.closed, self.won = deals.c.is_closed.is_(True), deals.c.is_won.is_(True)

    def sums(self, weight) -> tuple:
        """wins, total weight, deals without an amount."""
        return (func.sum(case((self.won, weight), else_=0)), func.sum(weight),
                func.count() - func.count(self.deals.c.amount))

    def amount(self) -> ColumnElement:
        return func.coalesce(self.deals.c.amount, 0)

    def undated(self) -> tuple[str, tuple]:
        return (f"closed deal(s) without {self.cohort.name} (in no period)",
                (self.closed, self.cohort.is_(None)))

    def value(self, wins, total, unsized, undated: str | None) -> Value:
        empty = "no deals closed (won or lost) in the period" if self.by_close \
            else "no deal created in the period is closed (won or lost)"
        notes = [undated]
        if self.by_amount and unsized:
            notes.append(f"{unsized} won or lost deal(s) without amount counted as 0")
        return ratio(wins, total, empty=empty).noted(*notes)


def win_rate(ctx: MetricContext) -> Value:
    rate = WinRate(ctx.params)
    deals = rate.deals
    decided = (ctx.in_period(rate.cohort), rate.closed)
    ctx.record("won deals", deals, *decided, rate.won)
    ctx.record("won and lost deals", deals, *decided)
    weight = ctx.money(deals, rate.amount(), deals.c.closed_at, *decided) if rate.by_amount else literal(1)
    wins, total, unsized = ctx.conn.execute(select(*rate.sums(weight)).where(*ctx.scope(deals), *decided)).one()
    rows, where = rate.undated()
    return rate.value(wins, total, unsized, ctx.left_out(rows, deals, *where))


def win_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    rate = WinRate(grid.params)
    deals = rate.deals
    weight = grid.money(deals, rate.amount(), deals.c.closed_at, grid.in_any_part(rate.cohort), rate.closed) \
        if rate.by_amount else literal(1)
    sums = grid.by_part(deals, rate.cohort, *rate.sums(weight), where=(rate.closed,))
    rows, where = rate.undated()
    undated = grid.left_out(rows, deals, *where)
    return {cell: rate.value(*sums.get(cell, (None, None, 0)), undated.get(cell.segment)) for cell in grid.cells}


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
        grouped=close_rate_grouped,
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
        grouped=win_rate_grouped,
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
