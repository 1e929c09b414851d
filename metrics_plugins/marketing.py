"""Acquisition-cost KPIs over marketing spend, deals, leads and subscriptions.

No CRM holds marketing spend: it is loaded with the files connector from
``marketing_spend.csv``. Sales cost (salaries, commissions) is not part of the store
either; load it as ``marketing_spend`` rows with channel ``sales`` and choose with the
``channels`` param whether it counts.

How spend falls into a period: a row with ``spent_on`` counts in full in the period
holding that day. A row without ``spent_on`` covers the days ``period_start`` to
``period_end`` (both included; a missing ``period_end`` means the single day
``period_start``) and counts in proportion to the days of that range inside the period.
Spend dates are calendar dates, compared with the period's calendar dates.

Each metric twice: ``compute`` for one cell (and ``crmkpi explain``), ``grouped`` for all cells of a
run at once (:mod:`crmkpi.grouped`), with the same rows, sums and notes. A period is given to what
both share by its first and last days: dates for one cell, the columns of ``Grid.calendar`` for a grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from sqlalchemy import Date, Float, Select, Table, and_, case, cast, exists, func, literal, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter

from crmkpi import hookimpl
from crmkpi.errors import MetricError
from crmkpi.grouped import Cell, Grid, left_out_note
from crmkpi.metrics import TABLES, Metric, MetricContext, Param, Value, ratio

NO_SPEND = ("no marketing spend recorded in the period (marketing_spend is loaded with the files connector "
            "from marketing_spend.csv)")


# --- spend -------------------------------------------------------------------


@dataclass(frozen=True)
class Spent:
    """The spend in a period in the reporting currency (None: no row touches the period), and a note for
    the reader (undated rows left out, rows without amount), or the reason for None."""

    total: float | None
    note: str | None

    def then(self, value: Callable[[float, str | None], Value]) -> Value:
        """``value(total, note)``, the metric over this spend; null with the reason when there is none (without
        calling ``value``: a cell without spend reads nothing else)."""
        if self.total is None:
            return Value(None, note=self.note)
        return value(self.total, self.note)


class Spend:
    """What both ways of reading the spend share: the rows that touch a period (from ``first`` to ``last``,
    its first and last days), each row's share in it, its rate date, the sums and the notes."""

    def __init__(self, kit: MetricContext | Grid) -> None:
        spend = self.table = TABLES["marketing_spend"]
        self.kit = kit
        self.range_end = func.coalesce(spend.c.period_end, spend.c.period_start)
        self.dated = spend.c.spent_on.is_not(None)
        channels = [c.strip().lower() for c in kit.params.get("channels", "").split(",") if c.strip()]
        self.channels = [func.lower(spend.c.channel).in_(channels)] if channels else []
        #: The day whose fx rate converts a row.
        self.at = func.coalesce(spend.c.spent_on, spend.c.period_start)
        #: The rows in no period.
        self.undated = (spend.c.spent_on.is_(None), spend.c.period_start.is_(None))

    def touching(self, first: ColumnElement, last: ColumnElement) -> list[ColumnElement]:
        """The rows (of the counted channels) that touch the period."""
        spend = self.table
        on_day = and_(self.dated, spend.c.spent_on >= first, spend.c.spent_on <= last)
        ranged = and_(spend.c.spent_on.is_(None), spend.c.period_start.is_not(None),
                      spend.c.period_start <= last, self.range_end >= first)
        return [or_(on_day, ranged), *self.channels]

    def with_channel(self, first: ColumnElement, last: ColumnElement) -> list[ColumnElement]:
        """The rows touching the period that name a channel: what attribution matches leads and deals with."""
        return [*self.touching(first, last), self.table.c.channel.is_not(None)]

    def share(self, first: ColumnElement, last: ColumnElement) -> ColumnElement:
        """The part of each touching row's amount that falls in the period."""
        spend = self.table
        lo = case((spend.c.period_start > first, spend.c.period_start), else_=first)
        hi = case((self.range_end < last, self.range_end), else_=last)
        days_in = cast(self.kit.days_between_dates(lo, hi) + 1, Float)
        return case((self.dated, 1.0),
                    else_=days_in / (self.kit.days_between_dates(spend.c.period_start, self.range_end) + 1))

    def refuse_backwards(self, first: ColumnElement, last: ColumnElement, *where: ColumnElement) -> None:
        """A range touching the period that ends before it starts has no share to give: an error."""
        spend = self.table
        inverted = self.kit.conn.execute(
            select(spend.c.id).where(*where, spend.c.spent_on.is_(None), spend.c.period_end < spend.c.period_start,
                                     or_(spend.c.period_start.between(first, last),
                                         spend.c.period_end.between(first, last)))
            .order_by(spend.c.id).limit(1)).scalar()
        if inverted is not None:
            raise MetricError(f"marketing_spend row {inverted!r}: period_end is before period_start")

    def sums(self, spent: ColumnElement, amount: ColumnElement | None = None) -> tuple[ColumnElement, ...]:
        """The converted spend (``spent``, already shared out), how many rows, how many without an amount
        (``amount``: the amount column where it is read from a subquery)."""
        amount = self.table.c.amount if amount is None else amount
        return func.sum(spent), func.count(), func.count() - func.count(amount)

    @staticmethod
    def spent(total, rows: int, unvalued: int, undated: int) -> Spent:
        """The period's spend from its :meth:`sums` and the number of undated rows (in no period)."""
        notes = [f"{undated} marketing_spend rows without spent_on or period_start were left out" if undated else "",
                 f"{unvalued} marketing_spend row(s) in the period without amount counted as 0" if unvalued else ""]
        note = "; ".join(filter(None, notes)) or None
        if not rows:
            return Spent(None, NO_SPEND + (f"; {note}" if note else ""))
        return Spent(float(total or 0), note)


def _days(ctx: MetricContext) -> tuple[ColumnElement, ColumnElement]:
    """The period's first and last days."""
    return literal(ctx.period.start, Date()), literal(ctx.period.last_day, Date())


def _spend(ctx: MetricContext) -> Spent:
    """The spend in the period in the reporting currency."""
    spend = Spend(ctx)
    table, (first, last) = spend.table, _days(ctx)
    spend.refuse_backwards(first, last, *ctx.scope(table))
    where = spend.touching(first, last)
    amount = ctx.money(table, func.coalesce(table.c.amount, 0.0), spend.at, *where) * spend.share(first, last)
    ctx.record("marketing spend in the period", table, *where)
    total, rows, unvalued = ctx.conn.execute(select(*spend.sums(amount)).where(*ctx.scope(table), *where)).one()
    undated = ctx.conn.execute(select(func.count()).where(*ctx.scope(table), *spend.undated)).scalar()
    return spend.spent(total, rows, unvalued, undated)


def _spend_grouped(grid: Grid) -> dict[Cell, Spent]:
    """:func:`_spend` of every cell: each row joins the parts it touches, with its share in each."""
    spend, days = Spend(grid), grid.calendar
    table, first, last = spend.table, days.c.first, days.c.last
    spend.refuse_backwards(first, last, *grid.live(table))
    touching = spend.touching(first, last)
    amount = grid.money(table, func.coalesce(table.c.amount, 0.0), spend.at,
                        exists(select(days.c.part).where(*touching))) * spend.share(first, last)
    rows = (select(days.c.part, *grid.segment_key(table), amount.label("spent"), table.c.amount)
            .select_from(table.join(days, and_(*touching))).where(*grid.live(table)).subquery("spend_rows"))
    sums = grid.aggregate(rows, *spend.sums(rows.c.spent, rows.c.amount))
    undated = grid.by_segment(table, func.count(), where=spend.undated)
    return {cell: spend.spent(*sums.get(cell, (None, 0, 0)), undated.get(cell.segment, (0,))[0])
            for cell in grid.cells}


def _by_spend(grid: Grid, value: Callable[[Cell, float, str | None], Value]) -> dict[Cell, Value]:
    """Each cell's ``value(cell, spend, note)``, or null with the reason where no spend touches the cell."""
    spent = _spend_grouped(grid)
    return {cell: spent[cell].then(partial(value, cell)) for cell in grid.cells}


def _spent_channels(ctx: MetricContext) -> Select:
    """Lower-cased channels with spend in the period (after the ``channels`` filter): for attribution."""
    spend = Spend(ctx)
    return (select(func.lower(spend.table.c.channel))
            .where(*ctx.scope(spend.table), *spend.with_channel(*_days(ctx))).distinct())


def _attributed(ctx: MetricContext, source_column: ColumnElement) -> list[ColumnElement]:
    if ctx.params["attribution"] == "all":
        return []
    return [func.lower(source_column).in_(_spent_channels(ctx))]


def _attributed_grouped(grid: Grid, table: Table, at: ColumnElement, *columns: ColumnElement,
                        where: tuple[ColumnElement, ...]):
    """The live rows of ``table`` matching ``where`` placed in parts by ``at`` (a subquery: part, the segment
    key, ``columns``); with ``attribution=channel`` those whose lead_source is a channel with spend in their
    part and segment (as :func:`_attributed` keeps them in one cell)."""
    keys = grid.segment_key(table)
    rows = grid.placed(table, at, *keys, *columns, func.lower(table.c.lead_source).label("channel"),
                       where=(*grid.live(table), *where)).subquery("placed")
    if grid.params["attribution"] == "all":
        return rows
    spend, days = Spend(grid), grid.calendar
    spent_keys = grid.segment_key(spend.table)
    channels = (select(days.c.part, *spent_keys, func.lower(spend.table.c.channel).label("channel"))
                .select_from(spend.table.join(days, and_(*spend.with_channel(days.c.first, days.c.last))))
                .where(*grid.live(spend.table)).distinct().subquery("spent_channels"))
    # a segment's value may be null: the cell of rows without one
    same_segment = [channels.c[key.name].is_not_distinct_from(rows.c[key.name]) for key in keys]
    spent = exists(select(channels.c.part).where(channels.c.part == rows.c.part, channels.c.channel == rows.c.channel,
                                                 *same_segment))
    return select(rows).where(spent).subquery("attributed")


# --- new customers -----------------------------------------------------------

NO_CUSTOMERS = "no customers acquired in the period"
FIRST_MONTH = "subscriptions of the new customers started in their first 30 days"


class NewCustomers:
    """What both ways of finding the new customers share: the rows that make an account new, each account's
    first of them, and the rows that cannot make anyone new."""

    def __init__(self, params: dict) -> None:
        self.by_deal = params["new_customer"] == "first_won_deal"
        table = self.table = TABLES["deals" if self.by_deal else "subscriptions"]
        #: The rows that would make a new customer but name no account (or no date): (label, the date placing
        #: them in a period, or None when they are noted whatever the period, conditions).
        self.unowned: tuple[str, ColumnElement | None, tuple[ColumnElement, ...]]
        if self.by_deal:
            self.at, self.label = "closed_at", "won deals that are their account's first, closed in the period"
            self.unowned = ("won deal(s) closed in the period without account_id", table.c.closed_at,
                            (table.c.is_won.is_(True), table.c.account_id.is_(None)))
        else:
            self.at, self.label = "started_at", "subscriptions that are their account's first, started in the period"
            self.unowned = ("subscription(s) without account_id or started_at", None,
                            (or_(table.c.account_id.is_(None), table.c.started_at.is_(None)),))

    def counted(self, rows) -> tuple[ColumnElement, ...]:
        """The live rows of ``rows`` (the table or an alias) of the kind that makes accounts new (won deals, or
        any subscription), whether or not they name an account and a date."""
        return (rows.c.is_deleted.is_(False), *([rows.c.is_won.is_(True)] if self.by_deal else []))

    def candidates(self, rows) -> tuple[ColumnElement, ...]:
        """The rows of :meth:`counted` that can make their account new."""
        return (*self.counted(rows), rows.c.account_id.is_not(None), rows.c[self.at].is_not(None))

    def firsts(self):
        """Each account's first row, (source, id, at): decided over all its live rows, whatever the segment."""
        inner = self.table.alias("first_of_account")
        nth = func.row_number().over(partition_by=(inner.c.source, inner.c.account_id),
                                     order_by=(inner.c[self.at], inner.c.id)).label("nth")
        ranked = (select(inner.c.source, inner.c.id, inner.c[self.at].label("at"), nth)
                  .where(*self.candidates(inner)).subquery("ranked"))
        return select(ranked.c.source, ranked.c.id, ranked.c.at).where(ranked.c.nth == 1).subquery("firsts")


def _new_customers(ctx: MetricContext, new: NewCustomers) -> tuple[int, Select, str | None]:
    """(number of customers acquired in the period, select of their (source, account_id), the note on the
    rows that cannot make anyone new)."""
    table = new.table
    firsts = new.firsts()
    in_period = select(firsts.c.source, firsts.c.id).where(ctx.in_period(firsts.c.at))
    where = tuple_(table.c.source, table.c.id).in_(in_period)
    if ctx.segment is None:
        # the same count without ranking rows: accounts whose earliest date is in the period (an aggregate is
        # cheaper than a window over every row), grouped with the rows that cannot make anyone new; the
        # first rows are still recorded for explain
        per_account, is_new = _per_account(ctx, new)
        ctx.record(new.label, table, where)
        count, unowned = ctx.conn.execute(select(func.count().filter(is_new),
                                                 func.coalesce(func.sum(per_account.c.unowned), 0))).one()
        return count, select(per_account.c.source, per_account.c.account_id).where(is_new), \
            left_out_note(unowned, new.unowned[0])
    count = ctx.count(new.label, table, where)
    # the segment applies to the first row; an alias, so the set does not correlate with an outer query on table
    outer = table.alias("new_customer")
    customers = select(outer.c.source, outer.c.account_id).where(
        *ctx.scope(outer), tuple_(outer.c.source, outer.c.id).in_(in_period))
    return count, customers, _unowned(ctx, new)


def _per_account(ctx: MetricContext, new: NewCustomers):
    """(each account's earliest date and, in a group of their own, the rows that name no account, with how
    many rows of each group cannot make anyone new; whether a group is an account new in the period), in
    one scan of the whole table. An alias, so that the accounts do not correlate with an outer query on it."""
    inner = new.table.alias("first_of_account")
    _, at, unowned = new.unowned
    unowned = ClauseAdapter(inner).traverse(and_(*unowned, *([] if at is None else [ctx.in_period(at)])))
    per_account = (select(inner.c.source, inner.c.account_id, func.min(inner.c[new.at]).label("first_at"),
                          func.count().filter(unowned).label("unowned"))
                   .where(*new.counted(inner))
                   .group_by(inner.c.source, inner.c.account_id).subquery("per_account"))
    first_at = per_account.c.first_at
    return per_account, and_(per_account.c.account_id.is_not(None), first_at >= ctx.start, first_at < ctx.end)


def _new_customers_grouped(grid: Grid, new: NewCustomers):
    """The new customers of every cell (a CTE: part, the segment key of their first row, source, account_id)."""
    table, firsts = new.table, new.firsts()
    return grid.placed(table, table.c[new.at], *grid.segment_key(table), table.c.source, table.c.account_id,
                       where=(*grid.live(table), tuple_(table.c.source, table.c.id).in_(
                           select(firsts.c.source, firsts.c.id)))).cte("new_customers")


def _unowned(ctx: MetricContext, new: NewCustomers) -> str | None:
    """The note on the rows that would make a new customer but name no account (or no date)."""
    label, at, where = new.unowned
    return ctx.left_out(label, new.table, *where, *([] if at is None else [ctx.in_period(at)]))


def _unowned_grouped(grid: Grid, new: NewCustomers) -> dict[Cell, str | None]:
    """:func:`_unowned` of every cell."""
    label, at, where = new.unowned
    if at is None:
        notes = grid.left_out(label, new.table, *where)
        return {cell: notes.get(cell.segment) for cell in grid.cells}
    return grid.left_out_by_part(label, new.table, at, *where)


def _first_month(kit: MetricContext | Grid, accounts: Select) -> Select:
    """(source, id) of the live subscriptions of ``accounts`` (a select of source, account_id) started within 30
    days of their account's first. A window: a join on account_id would have no index to use."""
    s = TABLES["subscriptions"].alias("s")
    dated = (select(s.c.source, s.c.id, s.c.started_at,
                    func.min(s.c.started_at).over(partition_by=(s.c.source, s.c.account_id)).label("first_start"))
             .where(s.c.is_deleted.is_(False), s.c.account_id.is_not(None), s.c.started_at.is_not(None),
                    tuple_(s.c.source, s.c.account_id).in_(accounts))
             .subquery("dated"))
    return select(dated.c.source, dated.c.id).where(kit.days_between(dated.c.first_start, dated.c.started_at) < 30)


def _first_month_mrr(ctx: MetricContext, accounts: Select) -> float:
    """The first-month MRR of the new customers ``accounts``, over their subscriptions in the segment."""
    subs = ctx.table("subscriptions")
    where = tuple_(subs.c.source, subs.c.id).in_(_first_month(ctx, accounts))
    return ctx.total(FIRST_MONTH, subs, ctx.money(subs, func.coalesce(subs.c.mrr, 0.0), subs.c.started_at, where),
                     where)


def _first_month_mrr_grouped(grid: Grid, customers) -> dict[Cell, float]:
    """:func:`_first_month_mrr` of every cell, from :func:`_new_customers_grouped`'s ``customers``: a
    subscription counts in the cells of its account whose segment is its own."""
    subs = TABLES["subscriptions"]
    accounts = select(customers.c.source, customers.c.account_id).where(customers.c.part.is_not(None))
    where = tuple_(subs.c.source, subs.c.id).in_(_first_month(grid, accounts))
    mrr = grid.money(subs, func.coalesce(subs.c.mrr, 0.0), subs.c.started_at, where)
    keys = grid.segment_key(subs)
    # materialized: SQLite would otherwise evaluate the first-month subscriptions again for each customer
    rows = grid.materialized(select(subs.c.source, subs.c.account_id, *keys, mrr.label("mrr"))
                             .where(*grid.live(subs), where).cte("first_month"))
    segment = [customers.c[key.name] for key in keys]
    matched = and_(rows.c.source == customers.c.source, rows.c.account_id == customers.c.account_id,
                   *(rows.c[key.name].is_not_distinct_from(customers.c[key.name]) for key in keys))
    sums = grid.by_cell(select(customers.c.part, *segment, func.sum(rows.c.mrr))
                        .select_from(customers.join(rows, matched)).group_by(customers.c.part, *segment))
    return {cell: float(total or 0) for cell, (total,) in sums.items()}


# --- metrics -----------------------------------------------------------------


def _cac(spent: float, note: str | None, customers: int, unowned: str | None) -> Value:
    return ratio(spent, customers, empty=NO_CUSTOMERS).noted(note, unowned)


def cac(ctx: MetricContext) -> Value:
    new = NewCustomers(ctx.params)

    def per_customer(spent: float, note: str | None) -> Value:
        customers, _, unowned = _new_customers(ctx, new)
        return _cac(spent, note, customers, unowned)

    return _spend(ctx).then(per_customer)


def cac_grouped(grid: Grid) -> dict[Cell, Value]:
    new = NewCustomers(grid.params)
    customers = grid.aggregate(_new_customers_grouped(grid, new), func.count())
    unowned = _unowned_grouped(grid, new)
    return _by_spend(grid, lambda cell, spent, note: _cac(spent, note, customers.get(cell, (0,))[0],
                                                         unowned.get(cell)))


def _payback(spent: float, note: str | None, customers: int, unowned: str | None, mrr: Callable[[], float],
             margin: float) -> Value:
    """The payback from the spend and the new customers; ``mrr()`` gives their first-month MRR, asked only
    when there are new customers."""
    note = "; ".join(filter(None, (note, unowned))) or None
    if not customers:
        return Value(None, note=NO_CUSTOMERS).noted(note)
    acquisition_cost = spent / customers
    monthly = mrr() / customers * margin
    if monthly <= 0:
        return Value(None, acquisition_cost, monthly,
                     note="the new customers have no first-month MRR (subscriptions)").noted(note)
    return Value(acquisition_cost / monthly, acquisition_cost, monthly).noted(note)


def cac_payback_months(ctx: MetricContext) -> Value:
    new = NewCustomers(ctx.params)

    def payback(spent: float, note: str | None) -> Value:
        customers, accounts, unowned = _new_customers(ctx, new)
        return _payback(spent, note, customers, unowned, lambda: _first_month_mrr(ctx, accounts),
                        ctx.params["gross_margin"])

    return _spend(ctx).then(payback)


def cac_payback_months_grouped(grid: Grid) -> dict[Cell, Value]:
    new = NewCustomers(grid.params)
    customers = _new_customers_grouped(grid, new)
    counts = grid.aggregate(customers, func.count())
    mrr = _first_month_mrr_grouped(grid, customers)
    unowned = _unowned_grouped(grid, new)
    margin = grid.params["gross_margin"]
    return _by_spend(grid, lambda cell, spent, note: _payback(
        spent, note, counts.get(cell, (0,))[0], unowned.get(cell), lambda: mrr.get(cell, 0.0), margin))


def _cost_per(table: Table, at: ColumnElement, counted: str, undated: str,
              *where: ColumnElement) -> tuple[Callable, Callable]:
    """(compute, grouped) of a cost per row: the spend over the rows of ``table`` matching ``where`` whose ``at``
    is in the period (``counted``, e.g. "leads created"), attributed by their lead_source; ``undated`` names
    those without ``at`` in a note."""

    def value(spent: float, note: str | None, count: int, undated_note: str | None) -> Value:
        return ratio(spent, count, empty=f"no {counted} in the period").noted(note, undated_note)

    def compute(ctx: MetricContext) -> Value:
        def per_row(spent: float, note: str | None) -> Value:
            count = ctx.count(f"{counted} in the period", table, *where, ctx.in_period(at),
                              *_attributed(ctx, table.c.lead_source))
            return value(spent, note, count, ctx.left_out(undated, table, *where, at.is_(None)))

        return _spend(ctx).then(per_row)

    def grouped(grid: Grid) -> dict[Cell, Value]:
        rows = _attributed_grouped(grid, table, at, where=where)
        counts = grid.aggregate(rows, func.count())
        notes = grid.left_out(undated, table, *where, at.is_(None))
        return _by_spend(grid, lambda cell, spent, note: value(spent, note, counts.get(cell, (0,))[0],
                                                                notes.get(cell.segment)))

    return compute, grouped


LEADS, DEALS = TABLES["leads"], TABLES["deals"]
cost_per_lead, cost_per_lead_grouped = _cost_per(LEADS, LEADS.c.created_at, "leads created",
                                                 "lead(s) without created_at (in no period)")
cost_per_sale, cost_per_sale_grouped = _cost_per(DEALS, DEALS.c.closed_at, "deals won",
                                                 "won deal(s) without closed_at (in no period)",
                                                 DEALS.c.is_won.is_(True))

UNVALUED = "attributed won deal(s) without amount"


def _revenue_sums(money: ColumnElement, amount: ColumnElement) -> tuple[ColumnElement, ...]:
    """The attributed won revenue, and how many of its deals lack an amount (counted as 0)."""
    return func.sum(money), func.count() - func.count(amount)


def _roi(spent: float, note: str | None, revenue, unvalued: int, margin: float) -> Value:
    unvalued_note = f"{unvalued} {UNVALUED} counted as 0" if unvalued else None
    return ratio(float(revenue or 0) * margin - spent, spent, empty="the spend in the period adds up to zero").noted(
        note, unvalued_note)


def marketing_roi(ctx: MetricContext) -> Value:
    def roi(spent: float, note: str | None) -> Value:
        deals = ctx.table("deals")
        where = (deals.c.is_won.is_(True), ctx.in_period(deals.c.closed_at), *_attributed(ctx, deals.c.lead_source))
        converted = ctx.converted(deals, func.coalesce(deals.c.amount, 0.0), deals.c.closed_at, *where)
        ctx.record("won deals attributed to the spend", deals, *where)
        revenue, unvalued = converted.one(  # and the rate check, in one scan
            select(*_revenue_sums(converted.amount, deals.c.amount)).where(*ctx.scope(deals), *where))
        return _roi(spent, note, revenue, unvalued, ctx.params["gross_margin"])

    return _spend(ctx).then(roi)


def marketing_roi_grouped(grid: Grid) -> dict[Cell, Value]:
    deals = grid.table("deals")
    won = (deals.c.is_won.is_(True),)
    money = grid.money(deals, func.coalesce(deals.c.amount, 0.0), deals.c.closed_at, *won,
                       grid.in_any_part(deals.c.closed_at))
    rows = _attributed_grouped(grid, deals, deals.c.closed_at, money.label("revenue"), deals.c.amount, where=won)
    sums = grid.aggregate(rows, *_revenue_sums(rows.c.revenue, rows.c.amount))
    margin = grid.params["gross_margin"]
    return _by_spend(grid, lambda cell, spent, note: _roi(spent, note, *sums.get(cell, (None, 0)), margin))


# --- declarations ------------------------------------------------------------

SPEND_DOC = ("Spend comes from marketing_spend, loaded with the files connector from marketing_spend.csv: a row "
             "with spent_on counts in full in the period holding that day; a row with period_start/period_end "
             "(both days included) counts in proportion to the days of its range inside the period. Amounts are "
             "converted to the reporting currency at the rate of spent_on (or period_start). Sales cost is not "
             "in the CRM: load salaries and commissions as marketing_spend rows with channel 'sales' to include "
             "them. Spend rows carry no owner or account, so segments must be dimensions every table read has: "
             "source, or a custom field (extra.<name>) on the spend rows and the other rows (or their accounts).")
CHANNELS = Param("channels", str, "",
                 "comma-separated marketing_spend channels to count (case-insensitive); empty: every row "
                 "(e.g. 'paid_search,events' for marketing only, leaving out 'sales')")
NEW_CUSTOMER = Param("new_customer", str, "first_won_deal",
                     "who is a new customer: an account whose first won deal (deals.closed_at) falls in the "
                     "period, or whose first subscription (subscriptions.started_at) does",
                     choices=("first_won_deal", "first_subscription"))
GROSS_MARGIN = Param("gross_margin", float, 1.0,
                     "gross margin as a fraction (0.8 = 80%) applied to revenue; 1.0 leaves revenue as it is",
                     check=lambda margin: None if 0 < margin <= 1 else f"expected a fraction in (0, 1], got {margin}")


def _attribution(default: str, counted: str) -> Param:
    return Param("attribution", str, default,
                 f"all: every {counted} counts; channel: only those whose lead_source equals (case-insensitive) "
                 "a channel with counted spend in the period", choices=("all", "channel"))


METRICS = [
    Metric(
        id="cac",
        title="Customer acquisition cost (CAC)",
        description="Acquisition spend in the period divided by the customers acquired in the period. A customer "
                    "is acquired when its account's first won deal closes in the period (deals.closed_at; deals "
                    "without an account are not counted), or, with new_customer=first_subscription, when its "
                    "first subscription starts in it (subscriptions.started_at). Which deal or subscription is an "
                    "account's first is decided over all its live rows; a segment then keeps the customers whose "
                    "first row is in it. " + SPEND_DOC,
        formula="spend in the period / accounts acquired in the period",
        unit="currency",
        direction="lower",
        tables=("marketing_spend", "deals", "subscriptions"),
        compute=cac,
        grouped=cac_grouped,
        needs=("marketing_spend.amount", "deals.account_id", "deals.is_won", "deals.closed_at"),
        params=(CHANNELS, NEW_CUSTOMER),
    ),
    Metric(
        id="cac_payback_months",
        title="CAC payback (months)",
        description="Months of a new customer's recurring revenue (or gross profit, with gross_margin) needed to "
                    "earn back its acquisition cost: CAC (as in the cac metric: the numerator) divided by the "
                    "average first-month MRR of the customers acquired in the period times the gross margin (the "
                    "denominator). A customer's first-month MRR is the MRR (subscriptions."
                    "mrr, converted at started_at) of its subscriptions that started within 30 days of its first "
                    "subscription; customers without a subscription count with 0, which lengthens the payback. "
                    "gross_margin defaults to 1.0, i.e. payback on revenue without margin; set it (e.g. 0.8) for "
                    "the margin-adjusted payback. Spend is not lagged behind the customers it acquires. "
                    + SPEND_DOC,
        formula="CAC / (first-month MRR of the new customers / new customers × gross_margin)",
        unit="months",
        direction="lower",
        tables=("marketing_spend", "deals", "subscriptions"),
        compute=cac_payback_months,
        grouped=cac_payback_months_grouped,
        needs=("marketing_spend.amount", "deals.account_id", "deals.is_won", "deals.closed_at",
               "subscriptions.account_id", "subscriptions.started_at", "subscriptions.mrr"),
        params=(CHANNELS, NEW_CUSTOMER, GROSS_MARGIN),
    ),
    Metric(
        id="cost_per_lead",
        title="Cost per lead",
        description="Spend in the period divided by the leads created in the period (leads.created_at). With "
                    "attribution=channel only leads whose lead_source matches a channel with spend count, so "
                    "--param channels=paid_search --param attribution=channel gives the cost per lead of paid search. "
                    + SPEND_DOC,
        formula="spend in the period / leads created in the period",
        unit="currency",
        direction="lower",
        tables=("marketing_spend", "leads"),
        compute=cost_per_lead,
        grouped=cost_per_lead_grouped,
        needs=("marketing_spend.amount", "leads.created_at"),
        params=(CHANNELS, _attribution("all", "lead created in the period")),
    ),
    Metric(
        id="cost_per_sale",
        title="Cost per sale",
        description="Spend in the period divided by the deals won in the period (deals.is_won, by closed_at; "
                    "every deal type counts). With attribution=channel only deals whose lead_source matches a "
                    "channel with spend count. " + SPEND_DOC,
        formula="spend in the period / deals won in the period",
        unit="currency",
        direction="lower",
        tables=("marketing_spend", "deals"),
        compute=cost_per_sale,
        grouped=cost_per_sale_grouped,
        needs=("marketing_spend.amount", "deals.is_won", "deals.closed_at"),
        params=(CHANNELS, _attribution("all", "deal won in the period")),
    ),
    Metric(
        id="marketing_roi",
        title="Marketing ROI",
        description="Return on the spend in the period: (attributed revenue × gross margin − spend) / spend. "
                    "Attributed revenue is the amount of the deals won in the period (by closed_at, converted at "
                    "the rate of that day) whose lead_source equals (case-insensitive) a channel with spend in the "
                    "period; this is last-touch attribution by name and nothing more, so deals from channels without "
                    "spend rows (referrals, organic) are left out. attribution=all counts every won deal instead. "
                    "gross_margin defaults to 1.0: ROI on revenue, not profit. " + SPEND_DOC,
        formula="(won revenue attributed × gross_margin − spend) / spend",
        unit="ratio",
        direction="higher",
        tables=("marketing_spend", "deals"),
        compute=marketing_roi,
        grouped=marketing_roi_grouped,
        needs=("marketing_spend.amount", "deals.is_won", "deals.closed_at", "deals.amount"),
        params=(CHANNELS, _attribution("channel", "deal won in the period"), GROSS_MARGIN),
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
