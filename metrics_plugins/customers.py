"""Customer and revenue KPIs over subscriptions, orders and accounts.

**Customers.** A customer is an account with a running subscription. The building block
is :func:`active_at` / :func:`customers_at`: the customers *at an instant* ``t`` are the
accounts (``source``, ``account_id``) with a subscription where ``started_at < t`` and
(``ended_at`` is null or ``ended_at >= t``), i.e. the state just before ``t``. Every start and
end is thereby dated by its timestamp and falls into the one period that contains it (the
same half-open ``[start, end)`` rule as ``ctx.in_period``): a subscription starting at
2024-01-01 00:00 is new in 2024 and ending then is lost in 2024, and the customers at the
end of one period are exactly the customers at the start of the next.

**Segments.** Every metric here lists its segment values from ``accounts`` (its first table)
and puts a customer in the segment of its account: region, industry, segment and custom
fields as the engine resolves them, and ``owner``/``team`` through the account's owner
(subscriptions and orders have no owner of their own).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, case, exists, func, literal, or_, select, tuple_
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from crmkpi import hookimpl
from crmkpi.grouped import Cell, Grid, left_out_note
from crmkpi.metrics_plugins.customer_counts import OPEN_END, CustomerCounts, customer_counts, subscription_rows
from crmkpi.metrics import TABLES, Input, Metric, MetricContext, Param, Value, at_least, ratio
from crmkpi.sqlkit import instant

#: Relative tolerance when comparing MRR sums (fx conversion makes them floats).
_EPSILON = 1e-9


# --- the customer building block ------------------------------------------------------------------


def active_at(subs: Table, t: datetime | ColumnElement) -> ColumnElement:
    """Subscription rows running just before instant ``t``: started before it, not ended before it."""
    return and_(subs.c.started_at < t, or_(subs.c.ended_at.is_(None), subs.c.ended_at >= t))


def customer_rows(ctx: MetricContext, subs: Table | None = None) -> list[ColumnElement]:
    """Live subscription rows of an account, within the segment."""
    subs = ctx.table("subscriptions") if subs is None else subs
    return [*ctx.scope(subs), subs.c.account_id.isnot(None)]


def customers_at(ctx: MetricContext, t: datetime) -> Select:
    """The customers at instant ``t``: distinct ``(source, account_id)`` with a subscription running then."""
    subs = ctx.table("subscriptions")
    return select(subs.c.source, subs.c.account_id).where(*customer_rows(ctx), active_at(subs, t)).distinct()


def is_customer_at(ctx: MetricContext, table: Table, t: datetime) -> ColumnElement:
    """Whether the account of a ``table`` row is a customer at ``t`` (for inputs ``explain`` lists).

    A lookup in the distinct customers (which the database materializes and indexes once), not a
    scan of the subscriptions per row.
    """
    customers = customers_at(ctx, t).subquery("customers_at")
    return exists(select(customers.c.account_id).where(customers.c.source == table.c.source,
                                                       customers.c.account_id == table.c.account_id))


def _firsts(ctx: MetricContext, table: Table, at: ColumnElement):
    """Keys (source, id) of each account's earliest rows of ``table`` by ``at``, when that falls in the period.

    A window function over the in-scope rows, so callers join back on the key, not on the account.
    """
    ranked = (select(table.c.source, table.c.id, at.label("at"),
                     func.min(at).over(partition_by=(table.c.source, table.c.account_id)).label("first_at"))
              .where(*ctx.scope(table), table.c.account_id.isnot(None), at.isnot(None)).subquery("ranked"))
    return (select(ranked.c.source, ranked.c.id)
            .where(ranked.c.at == ranked.c.first_at, ctx.in_period(ranked.c.first_at)).subquery("firsts"))


def _flag_of(condition: ColumnElement) -> ColumnElement:
    """1 where ``condition`` holds, else 0."""
    return case((condition, 1), else_=0)


def _flag(condition: ColumnElement) -> ColumnElement:
    """1 where ``condition`` holds for some row of the group, else 0."""
    return func.max(_flag_of(condition))


def _states(ctx: MetricContext, start: datetime, end: datetime):
    """One row per account with a subscription started before ``end``: its customer state in ``[start, end)``.

    ``at_start``/``at_end``: a customer at the window's start/end; ``joined``: a subscription
    (of positive length) started in the window; ``new``: its first-ever subscription started in it.
    """
    subs = ctx.table("subscriptions")
    first = func.min(subs.c.started_at)
    return (select(subs.c.source, subs.c.account_id,
                   _flag(active_at(subs, start)).label("at_start"),
                   _flag(active_at(subs, end)).label("at_end"),
                   _flag(and_(subs.c.started_at >= start,
                              or_(subs.c.ended_at.is_(None), subs.c.ended_at > subs.c.started_at))).label("joined"),
                   case((first >= start, 1), else_=0).label("new"))
            .where(*customer_rows(ctx), subs.c.started_at < end)
            .group_by(subs.c.source, subs.c.account_id)
            .subquery("customer_states"))


def _customers_at_start(grid: Grid):
    """The customers at each part's start: one row per part and account (at most one of its runs covers
    an instant), with the segment key."""
    runs, calendar = _runs(grid, subscription_rows(grid)), grid.calendar
    return (select(calendar.c.part, *_account(runs))
            .select_from(runs.join(calendar, _covers(runs, calendar.c.start))).subquery("customers"))


def _covers(runs, moment: ColumnElement) -> ColumnElement:
    """A run covering ``moment``: the account is a customer then (:func:`active_at` for one subscription)."""
    return and_(runs.c.run_start < moment, runs.c.run_end >= moment)


def _account(rows) -> list[ColumnElement]:
    """The columns naming an account within its segment: the ``segment_*`` columns first (as
    :meth:`Grid.aggregate` reads them), then ``source`` and ``account_id``."""
    return [*(c for c in rows.c if c.name.startswith("segment_")), rows.c.source, rows.c.account_id]


def _runs(grid: Grid, rows):
    """Each account's runs as a customer: its subscriptions of positive length merged where they overlap or
    meet, as ``(run_start, run_end]`` (``run_end`` far in the future while one is open). Gaps and
    islands: a subscription starts a run when it starts after every earlier one (by start, then id) has
    ended."""
    order = (rows.c.started_at, rows.c.id)
    ending = func.coalesce(rows.c.ended_at, instant(OPEN_END))
    reach = (select(*rows.c, func.max(ending).over(partition_by=_account(rows), order_by=order, rows=(None, -1))
                    .label("reach"))
             .where(rows.c.account_id.isnot(None), or_(rows.c.ended_at.is_(None), rows.c.ended_at > rows.c.started_at))
             .subquery("reach"))
    starts_run = case((or_(reach.c.reach.is_(None), reach.c.started_at > reach.c.reach), 1), else_=0)
    numbered = select(*reach.c, func.sum(starts_run).over(partition_by=_account(reach), order_by=(
        reach.c.started_at, reach.c.id), rows=(None, 0)).label("run")).subquery("numbered")
    return (select(*_account(numbered), func.min(numbered.c.started_at).label("run_start"),
                   func.max(func.coalesce(numbered.c.ended_at, instant(OPEN_END))).label("run_end"))
            .group_by(*_account(numbered), numbered.c.run).subquery("runs"))


def _churn_sums(s) -> tuple[ColumnElement, ...]:
    """(customers at start, of them lost by the end, customers who joined and were lost within the window)."""
    return (func.sum(s.c.at_start),
            func.sum(case((and_(s.c.at_start == 1, s.c.at_end == 0), 1), else_=0)),
            func.sum(case((and_(s.c.at_start == 0, s.c.joined == 1, s.c.at_end == 0), 1), else_=0)))


def _churn(ctx: MetricContext, start: datetime, end: datetime) -> tuple[int, int, int]:
    """(customers at start, of them lost by the end, customers who joined and were lost within the window)."""
    return _counts(ctx.conn.execute(select(*_churn_sums(_states(ctx, start, end)))).one())


def _counts(row) -> tuple[int, ...]:
    return tuple(int(value or 0) for value in row)


#: The subscriptions that cannot make anyone a customer: no account, or no start.
UNCOUNTED = ("subscription(s) without account_id or started_at", TABLES["subscriptions"],
             or_(TABLES["subscriptions"].c.account_id.is_(None), TABLES["subscriptions"].c.started_at.is_(None)))


def _uncounted(ctx: MetricContext) -> str | None:
    """The note on the subscriptions that cannot make anyone a customer."""
    return ctx.left_out(*UNCOUNTED)


def _mrr(ctx: MetricContext, *where: ColumnElement) -> ColumnElement:
    """A subscription's MRR in the reporting currency, at one rate per subscription for the whole period:
    the rate at the period start, or at its own start if it started later (no fx movements)."""
    subs = ctx.table("subscriptions")
    at = case((subs.c.started_at > ctx.start, subs.c.started_at), else_=instant(ctx.start))
    return ctx.money(subs, func.coalesce(subs.c.mrr, 0), at, *where)


# --- churn and retention -------------------------------------------------------------------------


def churn_rate(ctx: MetricContext) -> Value:
    subs = ctx.table("subscriptions")
    customers, lost, joined_and_lost = _churn(ctx, ctx.start, ctx.end)
    ctx.record("subscriptions of the customers at the period start", subs, active_at(subs, ctx.start))
    ctx.record("subscriptions of the customers lost in the period", subs, active_at(subs, ctx.start),
               ~is_customer_at(ctx, subs, ctx.end))
    if ctx.params["new_and_lost"] == "include":
        ctx.record("subscriptions of customers who joined and were lost in the period", subs,
                   ctx.in_period(subs.c.started_at),
                   or_(subs.c.ended_at.is_(None), subs.c.ended_at > subs.c.started_at),
                   ~is_customer_at(ctx, subs, ctx.start),
                   ~is_customer_at(ctx, subs, ctx.end))
    return _churn_rate(customers, lost, joined_and_lost, ctx.params["new_and_lost"], _uncounted(ctx))


def churn_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    counts = customer_counts(grid)
    uncounted = grid.left_out(*UNCOUNTED)
    return {cell: _churn_rate(*_churn_counts(counts.get(cell, CustomerCounts())), grid.params["new_and_lost"],
                              uncounted.get(cell.segment)) for cell in grid.cells}


def _churn_counts(counts: CustomerCounts) -> tuple[int, int, int]:
    """:func:`_churn_sums` of one cell."""
    return counts.at_start, counts.lost, counts.joined_and_lost


def _churn_rate(customers: int, lost: int, joined_and_lost: int, new_and_lost: str, uncounted: str | None) -> Value:
    if new_and_lost == "include":
        lost += joined_and_lost
    return ratio(lost, customers, empty="no customers at the period start").noted(uncounted)


def retention_rate(ctx: MetricContext) -> Value:
    subs = ctx.table("subscriptions")
    s = _states(ctx, ctx.start, ctx.end)
    counts = ctx.conn.execute(select(*_retention_sums(s))).one()
    ctx.record("subscriptions of the customers at the period start", subs, active_at(subs, ctx.start))
    ctx.record("subscriptions of the customers at the period end", subs, active_at(subs, ctx.end))
    firsts = _firsts(ctx, subs, subs.c.started_at)
    ctx.record("first subscriptions of new customers", subs,
               exists(select(firsts.c.id).where(firsts.c.source == subs.c.source, firsts.c.id == subs.c.id)))
    return _retention_rate(*_counts(counts), _uncounted(ctx))


def retention_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    counts = customer_counts(grid)
    uncounted = grid.left_out(*UNCOUNTED)
    return {cell: _retention_rate(*_retention_counts(counts.get(cell, CustomerCounts())), uncounted.get(cell.segment))
            for cell in grid.cells}


def _retention_counts(counts: CustomerCounts) -> tuple[int, int, int]:
    """:func:`_retention_sums` of one cell."""
    return counts.at_start, counts.at_end, counts.new


def _retention_sums(s) -> tuple[ColumnElement, ...]:
    """(customers at start, at end, new in the window)."""
    return func.sum(s.c.at_start), func.sum(s.c.at_end), func.sum(s.c.new)


def _retention_rate(start: int, end: int, new: int, uncounted: str | None) -> Value:
    return ratio(end - new, start, empty="no customers at the period start").noted(uncounted)


# --- renewals -------------------------------------------------------------------------------------


def _succeeds(ctx: MetricContext, sub, later, grace: int) -> ColumnElement:
    """``later`` (live rows) renews ``sub``: another subscription of its account, started after it did and
    within ``grace`` days of its term_end."""
    gap = ctx.days_between(sub.c.term_end, later.c.started_at)
    return and_(later.c.source == sub.c.source, later.c.account_id == sub.c.account_id,
                later.c.id != sub.c.id, or_(sub.c.started_at.is_(None), later.c.started_at > sub.c.started_at),
                gap >= -grace, gap <= grace)


class Renewals:
    """What both ways of computing the renewal rate share: what renews a subscription, its sums, the value."""

    def __init__(self, kit: MetricContext | Grid) -> None:
        self.kit, self.subs = kit, TABLES["subscriptions"]
        self.grace, self.evidence = kit.params["grace_days"], kit.params["evidence"]
        # Only renewals that have come due by the end of the reporting day are decided.
        self.due = self.subs.c.term_end < instant(kit.end_of_today())
        self.by_status = func.lower(self.subs.c.status) == "renewed"

    def succeeded(self, later, *where: ColumnElement):
        """The subscriptions matching ``where`` (of the alias ``up``) that ``later`` renews: (source, id)."""
        up = self.subs.alias("up")
        return (select(up.c.source, up.c.id).join(later, _succeeds(self.kit, up, later, self.grace))
                .where(up.c.is_deleted.is_(False), *(condition(up) for condition in where)).distinct()
                .subquery("succeeded"))

    def renewed(self, succeeded) -> ColumnElement:
        by_successor = succeeded.c.id.isnot(None)
        return {"successor": by_successor, "status": self.by_status,
                "either": or_(self.by_status, by_successor)}[self.evidence]

    def rows(self, succeeded):
        subs = self.subs
        return subs.outerjoin(succeeded, and_(succeeded.c.source == subs.c.source, succeeded.c.id == subs.c.id))

    def flags(self, succeeded) -> dict[str, ColumnElement]:
        """Per subscription, 1 or 0: renewed (and due), due, not due yet: the value adds each up."""
        renewed = self.renewed(succeeded)
        return {"renewed": case((and_(self.due, renewed), 1), else_=0), "due": case((self.due, 1), else_=0),
                "pending": case((self.due, 0), else_=1)}

    def undated(self) -> tuple[str, Table, ColumnElement]:
        return "subscription(s) without term_end (never up for renewal)", self.subs, self.subs.c.term_end.is_(None)

    @staticmethod
    def value(won, total, pending, undated: str | None) -> Value:
        value = ratio(won, total, empty="no subscription came up for renewal (term_end) in the period")
        if pending:
            value = value.noted(f"{pending} subscription(s) with term_end in the period not due yet (after today) "
                                "are left out")
        return value.noted(undated)


def renewal_rate(ctx: MetricContext) -> Value:
    renewals = Renewals(ctx)
    subs, grace = renewals.subs, renewals.grace
    term = ctx.in_period(subs.c.term_end)
    # Renewed by a successor: one join on the account, then a left join (no subquery per row). The
    # candidates (starts near the period) are a DISTINCT derived table, which SQLite indexes for the join.
    near = (select(subs.c.source, subs.c.account_id, subs.c.id, subs.c.started_at)
            .where(ctx.live(subs), subs.c.started_at >= ctx.start - timedelta(days=grace),
                   subs.c.started_at <= ctx.end + timedelta(days=grace)).distinct().subquery("later"))
    succeeded = renewals.succeeded(near, lambda up: and_(*ctx.scope(up)), lambda up: ctx.in_period(up.c.term_end))
    won, total, pending = ctx.conn.execute(select(*map(func.sum, renewals.flags(succeeded).values()))
                                           .select_from(renewals.rows(succeeded)).where(*ctx.scope(subs), term)).one()
    # explain lists rows of subscriptions alone: the successor test as a lookup there
    has_successor = exists(select(succeeded.c.id).where(succeeded.c.source == subs.c.source,
                                                        succeeded.c.id == subs.c.id))
    listed = {"successor": has_successor, "status": renewals.by_status,
              "either": or_(renewals.by_status, has_successor)}[renewals.evidence]
    ctx.record("subscriptions up for renewal (term_end in the period, due)", subs, term, renewals.due)
    ctx.record("of them renewed", subs, term, renewals.due, listed)
    return renewals.value(won, total, pending, ctx.left_out(*renewals.undated()))


def renewal_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    renewals = Renewals(grid)
    subs = renewals.subs
    # DISTINCT, as the per-cell candidates: SQLite then builds an index on them for the join, not a nested scan
    later = select(subs.c.source, subs.c.account_id, subs.c.id, subs.c.started_at).where(
        subs.c.is_deleted.is_(False)).distinct().subquery("later")
    succeeded = renewals.succeeded(later, lambda up: grid.in_any_part(up.c.term_end))
    keys = grid.segment_key(subs)
    flags = renewals.flags(succeeded)
    rows = grid.placed(renewals.rows(succeeded), subs.c.term_end, *keys,
                       *(flag.label(name) for name, flag in flags.items()), where=grid.live(subs)).subquery("up_for_renewal")
    sums = grid.aggregate(rows, *(func.sum(rows.c[name]) for name in flags))
    undated = grid.left_out(*renewals.undated())
    return {cell: renewals.value(*sums.get(cell, (None, None, None)), undated.get(cell.segment)) for cell in grid.cells}


# --- expansion ------------------------------------------------------------------------------------


def _account_mrr(ctx: MetricContext):
    """Per customer at the period start: MRR at the start and at the end (one fx rate per subscription)."""
    subs = ctx.table("subscriptions")
    relevant = or_(active_at(subs, ctx.start), active_at(subs, ctx.end))
    mrr = _mrr(ctx, relevant)
    return (select(*_mrr_sums(subs, mrr, ctx.start, ctx.end))
            .where(*customer_rows(ctx), relevant)
            .group_by(subs.c.source, subs.c.account_id)
            .having(_flag(active_at(subs, ctx.start)) == 1)
            .subquery("account_mrr"))


def _mrr_sums(subs, mrr: ColumnElement, start, end) -> tuple[ColumnElement, ...]:
    return (subs.c.source, subs.c.account_id,
            func.sum(case((active_at(subs, start), mrr), else_=0)).label("mrr_start"),
            func.sum(case((active_at(subs, end), mrr), else_=0)).label("mrr_end"))


def _account_mrr_by_cell(grid: Grid):
    """:func:`_account_mrr` of every part and segment: one row per part, segment and customer at its start.

    The subscriptions (with their segment, looked up once) meet the parts they run at the start or end of;
    each is converted at the rate of the part's start, or of its own start if later, as :func:`_mrr`
    converts it for one period."""
    rows, calendar = subscription_rows(grid), grid.calendar
    start, end = calendar.c.start, calendar.c.end
    relevant = or_(active_at(rows, start), active_at(rows, end))
    at = case((rows.c.started_at > start, rows.c.started_at), else_=start)
    mrr = grid.money(rows, func.coalesce(rows.c.mrr, 0), at, relevant)
    segment = [c for c in rows.c if c.name.startswith("segment_")]
    return (select(calendar.c.part, *segment, *_mrr_sums(rows, mrr, start, end))
            .select_from(rows.join(calendar, relevant))
            .where(rows.c.account_id.isnot(None))
            .group_by(calendar.c.part, start, end, *_account(rows))
            .having(_flag(active_at(rows, start)) == 1)
            .subquery("account_mrr"))


def _upsold(m) -> ColumnElement:
    """Whether a customer's MRR rose from the period start to its end (beyond the float noise of fx)."""
    return m.c.mrr_end > m.c.mrr_start + _EPSILON * func.abs(m.c.mrr_start) + _EPSILON


UPSELL_EMPTY = "no customers at the period start"


def upsell_rate(ctx: MetricContext) -> Value:
    subs = ctx.table("subscriptions")
    customers = customers_at(ctx, ctx.start).subquery("customers")
    total = ctx.conn.execute(select(func.count()).select_from(customers)).scalar() or 0
    ctx.record("subscriptions of the customers at the period start", subs, active_at(subs, ctx.start))
    if ctx.params["evidence"] == "mrr":
        m = _account_mrr(ctx)
        upsold = ctx.conn.execute(select(func.count()).where(_upsold(m))).scalar() or 0
        ctx.record("subscriptions of those customers running at the period end", subs,
                   active_at(subs, ctx.end), is_customer_at(ctx, subs, ctx.start))
        return ratio(upsold, total, empty=UPSELL_EMPTY).noted(_uncounted(ctx), _no_mrr(ctx))
    upsells = Upsells(ctx.params)
    deals = upsells.deals
    in_period = (*upsells.won, ctx.in_period(deals.c.closed_at))
    qualifying = (ctx.live(deals), *in_period, deals.c.account_id.isnot(None))
    # per account, and for the deals without one (a group of their own, which no customer joins): read once
    won = ctx.materialized(select(deals.c.source, deals.c.account_id,
                                  func.count().filter(and_(*ctx.scope(deals))).label("in_scope"))
                           .where(ctx.live(deals), *in_period).group_by(deals.c.source, deals.c.account_id).cte("won"))
    upsold = select(func.count()).select_from(customers.join(won, and_(
        customers.c.source == won.c.source, customers.c.account_id == won.c.account_id)))
    unowned = select(func.coalesce(func.sum(won.c.in_scope), 0)).where(won.c.account_id.is_(None))
    upsold, unowned = ctx.conn.execute(select(upsold.scalar_subquery(), unowned.scalar_subquery())).one()
    ctx.inputs.append(Input(f"won {upsells.kinds} deals of those customers closed in the period", deals,
                            (*qualifying, is_customer_at(ctx, deals, ctx.start))))
    return ratio(upsold, total, empty=UPSELL_EMPTY).noted(_uncounted(ctx), left_out_note(unowned, upsells.unowned))


class Upsells:
    """The won deals that upsell (``evidence=deals``)."""

    def __init__(self, params: dict) -> None:
        deals = self.deals = TABLES["deals"]
        types = _deal_types(params["deal_types"])
        self.kinds = "/".join(types)
        self.won = (deals.c.is_won.is_(True), func.lower(deals.c.deal_type).in_(types))
        self.unowned = f"won {self.kinds} deal(s) closed in the period without account_id"


def upsell_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    uncounted = grid.left_out(*UNCOUNTED)
    if grid.params["evidence"] == "mrr":
        m = _account_mrr_by_cell(grid)
        counts = grid.aggregate(m, func.count(), func.count(case((_upsold(m), 1))))
        no_mrr = _no_mrr_by_cell(grid)
        return {cell: ratio(*reversed(counts.get(cell, (0, 0))), empty=UPSELL_EMPTY).noted(
            uncounted.get(cell.segment), no_mrr.get(cell)) for cell in grid.cells}
    upsells = Upsells(grid.params)
    deals = upsells.deals
    won = grid.placed(deals, deals.c.closed_at, deals.c.source, deals.c.account_id,
                      where=(*grid.live(deals), *upsells.won, deals.c.account_id.isnot(None)))
    customers = _customers_at_start(grid)
    # IN a subquery, which both databases look up by a hash or an index built once (a join with it, or an
    # EXISTS per customer, read it again per customer on SQLite)
    upsold = tuple_(customers.c.part, customers.c.source, customers.c.account_id).in_(won)
    counts = grid.aggregate(customers, func.count(), func.count(case((upsold, 1))))
    unowned = grid.left_out_by_part(upsells.unowned, deals, deals.c.closed_at, *upsells.won,
                                    deals.c.account_id.is_(None))
    return {cell: ratio(*reversed(counts.get(cell, (0, 0))), empty=UPSELL_EMPTY).noted(
        uncounted.get(cell.segment), unowned.get(cell)) for cell in grid.cells}


def _deal_types(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def _mrr_retention(ctx: MetricContext, net: bool) -> Value:
    subs = ctx.table("subscriptions")
    m = _account_mrr(ctx)
    end, start = ctx.conn.execute(select(*_kept(m, net))).one()
    ctx.record("subscriptions of the customers at the period start, running then", subs,
               active_at(subs, ctx.start))
    ctx.record("subscriptions of those customers running at the period end", subs,
               active_at(subs, ctx.end), is_customer_at(ctx, subs, ctx.start))
    return ratio(end, start, empty=MRR_EMPTY).noted(_uncounted(ctx), _no_mrr(ctx))


MRR_EMPTY = "no MRR at the period start"


def _kept(m, net: bool) -> tuple[ColumnElement, ColumnElement]:
    """The MRR kept at the period end (net: with expansion; gross: each customer capped at its start), and
    the MRR at the start."""
    kept = m.c.mrr_end if net else case((m.c.mrr_end < m.c.mrr_start, m.c.mrr_end), else_=m.c.mrr_start)
    return func.sum(kept), func.sum(m.c.mrr_start)


def _mrr_retention_grouped(grid: Grid, net: bool) -> dict[Cell, Value]:
    m = _account_mrr_by_cell(grid)
    sums = grid.aggregate(m, *_kept(m, net))
    uncounted, no_mrr = grid.left_out(*UNCOUNTED), _no_mrr_by_cell(grid)
    return {cell: ratio(*sums.get(cell, (None, None)), empty=MRR_EMPTY).noted(uncounted.get(cell.segment),
                                                                             no_mrr.get(cell)) for cell in grid.cells}


NO_MRR = "subscription(s) running at the period start or end without mrr"


def _no_mrr(ctx: MetricContext) -> str | None:
    """The note on the subscriptions running at the period start or end without an MRR (counted as 0)."""
    subs = ctx.table("subscriptions")
    return ctx.left_out(NO_MRR, subs, or_(active_at(subs, ctx.start), active_at(subs, ctx.end)),
                        subs.c.mrr.is_(None), then="counted as 0")


def _no_mrr_by_cell(grid: Grid) -> dict[Cell, str]:
    """:func:`_no_mrr` of every cell that has such subscriptions."""
    subs, calendar = grid.table("subscriptions"), grid.calendar
    return grid.left_out_by_part(NO_MRR, subs, None, subs.c.mrr.is_(None), then="counted as 0",
                                 on=or_(active_at(subs, calendar.c.start), active_at(subs, calendar.c.end)))


def gross_mrr_retention(ctx: MetricContext) -> Value:
    return _mrr_retention(ctx, net=False)


def gross_mrr_retention_grouped(grid: Grid) -> dict[Cell, Value]:
    return _mrr_retention_grouped(grid, net=False)


def net_mrr_retention(ctx: MetricContext) -> Value:
    return _mrr_retention(ctx, net=True)


def net_mrr_retention_grouped(grid: Grid) -> dict[Cell, Value]:
    return _mrr_retention_grouped(grid, net=True)


# --- orders: lifetime value, margin, new revenue ------------------------------------------------


def _year_before(instant: datetime) -> datetime:
    try:
        return instant.replace(year=instant.year - 1)
    except ValueError:  # February 29th
        return instant.replace(year=instant.year - 1, day=28)


ORDERS_WITHOUT_ACCOUNT = "order(s) in the period without account_id left out"
UNDATED_ORDERS = "order(s) without ordered_at (in no period) left out"
ORDERS_WITHOUT_AMOUNT = "order(s) in the period without amount counted as 0"


def _order_notes(ctx: MetricContext) -> list[str | None]:
    """Notes on the orders a value of the period's orders cannot use, or takes as 0."""
    orders = ctx.table("orders")
    in_period = ctx.in_period(orders.c.ordered_at)
    return ctx.left_out_each(orders, {
        ORDERS_WITHOUT_ACCOUNT: and_(in_period, orders.c.account_id.is_(None)),
        UNDATED_ORDERS: orders.c.ordered_at.is_(None),
        ORDERS_WITHOUT_AMOUNT: and_(in_period, orders.c.account_id.isnot(None), orders.c.amount.is_(None)),
    })


def _order_notes_grouped(grid: Grid) -> dict[Cell, list[str | None]]:
    """:func:`_order_notes` of every cell."""
    orders = grid.table("orders")
    counts = grid.by_part(orders, orders.c.ordered_at, func.count(case((orders.c.account_id.is_(None), 1))),
                          func.count(case((and_(orders.c.account_id.isnot(None), orders.c.amount.is_(None)), 1))))
    undated = grid.by_segment(orders, func.count(), where=(orders.c.ordered_at.is_(None),))
    return {cell: [f"{count} {note}" if count else None for count, note in zip(
        (counts.get(cell, (0, 0))[0], undated.get(cell.segment, (0,))[0], counts.get(cell, (0, 0))[1]),
        (ORDERS_WITHOUT_ACCOUNT, UNDATED_ORDERS, ORDERS_WITHOUT_AMOUNT))] for cell in grid.cells}


def _per_customer(grid: Grid, table: Table, at: ColumnElement, sums: dict[str, ColumnElement],
                  *where: ColumnElement):
    """Per part, segment and account: the live rows of ``table`` with an account matching ``where``, placed
    by ``at``, with each of ``sums`` added up (a subquery: part, the segment key, ``sums``' names)."""
    keys = grid.segment_key(table)
    rows = grid.placed(table, at, *keys, table.c.source, table.c.account_id,
                       *(value.label(name) for name, value in sums.items()),
                       where=(*grid.live(table), table.c.account_id.isnot(None), *where)).subquery("placed_rows")
    segment = [rows.c[key.name] for key in keys]
    return (select(rows.c.part, *segment, *(func.sum(rows.c[name]).label(name) for name in sums))
            .where(rows.c.part.isnot(None))
            .group_by(rows.c.part, *segment, rows.c.source, rows.c.account_id).subquery("per_customer"))


def clv(ctx: MetricContext) -> Value:
    orders = ctx.table("orders")
    where = (ctx.in_period(orders.c.ordered_at), orders.c.account_id.isnot(None))
    amount = ctx.money(orders, func.coalesce(orders.c.amount, 0), orders.c.ordered_at, *where)
    per_customer = (select(func.sum(amount).label("revenue"), func.count().label("purchases"))
                    .where(*ctx.scope(orders), *where)
                    .group_by(orders.c.source, orders.c.account_id).subquery("per_customer"))
    revenue, purchases, customers = ctx.conn.execute(select(
        func.sum(per_customer.c.revenue), func.sum(per_customer.c.purchases), func.count())).one()
    ctx.record("orders in the period", orders, *where)
    churn = None
    if customers and not ctx.params["lifespan_years"]:
        window = _year_before(ctx.end)
        churn = _churn(ctx, window, ctx.end)
        subs = ctx.table("subscriptions")
        ctx.record("subscriptions of the customers 12 months before the period end (for churn)", subs,
                   active_at(subs, window))
    return _clv(revenue, customers, ctx.params["lifespan_years"], churn, _order_notes(ctx))


def clv_grouped(grid: Grid) -> dict[Cell, Value]:
    orders = grid.table("orders")
    amount = grid.money(orders, func.coalesce(orders.c.amount, 0), orders.c.ordered_at,
                        grid.in_any_part(orders.c.ordered_at), orders.c.account_id.isnot(None))
    per_customer = _per_customer(grid, orders, orders.c.ordered_at, {"revenue": amount})
    sums = grid.aggregate(per_customer, func.sum(per_customer.c.revenue), func.count())
    lifespan = grid.params["lifespan_years"]
    # the churn of the 12 months to each part's end: the same grid over those windows
    churn = {} if lifespan else customer_counts(replace(grid, bounds=[(_year_before(end), end) for _, end in grid.bounds]))
    notes = _order_notes_grouped(grid)
    return {cell: _clv(*sums.get(cell, (None, 0)), lifespan, _churn_counts(churn.get(cell, CustomerCounts())), notes[cell])
            for cell in grid.cells}


def _clv(revenue, customers: int, lifespan: float, churn: tuple[int, int, int] | None, notes: list) -> Value:
    """The value from the period's revenue and customers, and (for a derived lifespan) the churn of the
    12 months to the period end."""
    if not customers:
        return Value(None, note="no orders (with an account) in the period").noted(*notes)
    note = None
    if not lifespan:
        base, lost, _ = churn
        if not base or not lost:
            why = "no customers 12 months before the period end" if not base else \
                "no customer churned in the 12 months to the period end"
            return Value(None, note=f"lifespan cannot be derived from subscriptions ({why}); "
                                    f"set --param lifespan_years=N").noted(*notes)
        lifespan = base / lost
        note = (f"lifespan {lifespan:.2f} years = 1 / annual customer churn {lost}/{base} "
                f"(subscriptions, 12 months to the period end)")
    revenue = float(revenue or 0)
    return Value(revenue / customers * lifespan, numerator=revenue * lifespan, denominator=float(customers),
                 note=note).noted(*notes)


def _margin_sums(orders: Table, rate: ColumnElement) -> dict[str, ColumnElement]:
    """Per order (added up per customer): revenue and cost at the order's rate, and whether it lacks a cost.
    Revenue and cost share the rate: one conversion (and one missing-rate check) for both."""
    return {"revenue": func.coalesce(orders.c.amount, 0) * rate, "cost": func.coalesce(orders.c.cost, 0) * rate,
            "no_cost": case((orders.c.cost.is_(None), 1), else_=0)}


def _margins(per_customer) -> tuple[ColumnElement, ...]:
    """Over the customers: their margins' total, how many have revenue, how many not, the orders without a cost."""
    paying = per_customer.c.revenue > 0
    return (func.sum(case((paying, (per_customer.c.revenue - per_customer.c.cost) / per_customer.c.revenue),
                          else_=0)),
            func.sum(case((paying, 1), else_=0)), func.sum(case((paying, 0), else_=1)),
            func.sum(per_customer.c.no_cost))


def profit_margin_per_customer(ctx: MetricContext) -> Value:
    orders = ctx.table("orders")
    where = (ctx.in_period(orders.c.ordered_at), orders.c.account_id.isnot(None))
    rate = ctx.money(orders, literal(1.0), orders.c.ordered_at, *where)
    per_customer = (select(*(func.sum(value).label(name) for name, value in _margin_sums(orders, rate).items()))
                    .where(*ctx.scope(orders), *where)
                    .group_by(orders.c.source, orders.c.account_id).subquery("per_customer"))
    margins = ctx.conn.execute(select(*_margins(per_customer))).one()
    ctx.record("orders in the period", orders, *where)
    return _profit_margin(*margins, _order_notes(ctx))


def profit_margin_per_customer_grouped(grid: Grid) -> dict[Cell, Value]:
    orders = grid.table("orders")
    rate = grid.money(orders, literal(1.0), orders.c.ordered_at, grid.in_any_part(orders.c.ordered_at),
                      orders.c.account_id.isnot(None))
    per_customer = _per_customer(grid, orders, orders.c.ordered_at, _margin_sums(orders, rate))
    margins = grid.aggregate(per_customer, *_margins(per_customer))
    notes = _order_notes_grouped(grid)
    return {cell: _profit_margin(*margins.get(cell, (None, 0, 0, 0)), notes[cell]) for cell in grid.cells}


def _profit_margin(margins, customers, unpaid, no_cost, order_notes: list) -> Value:
    notes = []
    if unpaid:
        notes.append(f"{unpaid} customer(s) with zero or negative revenue left out")
    if no_cost:
        notes.append(f"{no_cost} order(s) without a cost counted at cost 0")
    return ratio(margins, customers, empty="no customer with revenue (orders) in the period").noted(
        *notes, *order_notes)


class NewRevenue:
    """What both ways of computing net new revenue share: the rows that make revenue new, and the value."""

    def __init__(self, params: dict) -> None:
        if params["new_means"] == "first_order":
            self.table, self.what = TABLES["orders"], "orders"
            self.at, self.amount = self.table.c.ordered_at, self.table.c.amount
        else:
            self.table, self.what = TABLES["subscriptions"], "subscriptions"
            self.at, self.amount = self.table.c.started_at, self.table.c.mrr
        #: The rows that can make a customer new: with an account and a date.
        self.usable = (self.table.c.account_id.isnot(None), self.at.isnot(None))

    def sums(self, money: ColumnElement, amount: ColumnElement | None = None) -> tuple[ColumnElement, ...]:
        """The new revenue, how many first rows, how many of them without an amount (``amount``: the
        amount column where it is read from a subquery)."""
        return func.sum(money), func.count(), func.count() - func.count(self.amount if amount is None else amount)

    def unusable(self) -> tuple[str, Table, ColumnElement]:
        """The rows that cannot make a customer new (for a left-out note)."""
        table = self.table
        return (f"{self.what} without account_id or {self.at.name}", table,
                or_(table.c.account_id.is_(None), self.at.is_(None)))

    def value(self, total, rows: int, unvalued: int, loaded: int, unusable: str | None) -> Value:
        notes = (unusable, f"{unvalued} first {self.what} without {self.amount.name} counted as 0" if unvalued else None)
        if not rows:
            if not loaded:
                return Value(None, note=f"no {self.what} with an account loaded").noted(*notes)
            first = "first order" if self.what == "orders" else "first subscription"
            return Value(0.0, note=f"no new customers ({first} in the period)").noted(*notes)
        return Value(float(total or 0)).noted(*notes)


def net_new_revenue(ctx: MetricContext) -> Value:
    new = NewRevenue(ctx.params)
    table, at = new.table, new.at
    scope = (*ctx.scope(table), *new.usable)
    firsts = _firsts(ctx, table, at)
    where = (table.c.source == firsts.c.source, table.c.id == firsts.c.id)
    converted = ctx.converted(table, func.coalesce(new.amount, 0), at, *where)
    total, rows, unvalued = converted.one(select(*new.sums(converted.amount)).where(*scope, *where))
    ctx.record(f"first {new.what} of new customers, in the period", table, exists(select(firsts.c.id).where(*where)))
    loaded = ctx.conn.execute(select(func.count()).where(*scope)).scalar() if not rows else 1
    return new.value(total, rows, unvalued, loaded, ctx.left_out(*new.unusable()))


def net_new_revenue_grouped(grid: Grid) -> dict[Cell, Value]:
    new = NewRevenue(grid.params)
    table, at = new.table, new.at
    # Rows of another part than their account's first can lack a rate too: then computed cell by cell.
    money = grid.money(table, func.coalesce(new.amount, 0), at, grid.in_any_part(at), *new.usable)
    keys = grid.segment_key(table)
    ranked = (select(*keys, at.label("at"), new.amount.label("amount"), money.label("money"),
                     func.min(at).over(partition_by=(table.c.source, table.c.account_id, *keys)).label("first_at"))
              .where(*grid.live(table), *new.usable).subquery("ranked"))
    firsts = grid.placed(ranked, ranked.c.first_at, *(ranked.c[key.name] for key in keys), ranked.c.amount,
                         ranked.c.money, where=(ranked.c.at == ranked.c.first_at,)).subquery("firsts")
    sums = grid.aggregate(firsts, *new.sums(firsts.c.money, firsts.c.amount))
    loaded = grid.by_segment(table, func.count(), where=new.usable)
    unusable = grid.left_out(*new.unusable())
    return {cell: new.value(*sums.get(cell, (None, 0, 0)), loaded.get(cell.segment, (0,))[0],
                            unusable.get(cell.segment)) for cell in grid.cells}


# --- declarations ---------------------------------------------------------------------------------

_CUSTOMER = ("A customer is an account with a running subscription (subscriptions table): at an instant t, "
             "a subscription with started_at before t and ended_at null or not before t. Starts and ends "
             "are dated by their timestamps, so customers at the end of a period are exactly the customers "
             "at the start of the next one.")
_SUBSCRIPTIONS = ("Subscriptions come from a connector that holds them or, for a CRM without billing data, "
                  "from subscriptions.csv loaded with the files connector.")
_ORDERS = "Orders are loaded with the files connector from orders.csv (a CRM does not hold them)."
_SEGMENTS = ("Segments are taken from the customer's account (owner and team: the account's owner).")
_FX = "Amounts are converted to the reporting currency with fx_rates"
_MRR_FX = (f"{_FX}, at one rate per subscription for the whole period (the rate at the period start, or at "
           "its own start if later), so currency movements are not counted as expansion or contraction.")
_NEW_AND_LOST = Param(
    "new_and_lost", str, "exclude",
    "customers who joined and were lost in the same period: exclude (ChartMogul standard, in neither side) "
    "or include (counted as lost; the denominator stays the customers at the period start)",
    choices=("exclude", "include"))

METRICS = [
    Metric(
        id="churn_rate",
        title="Customer churn rate",
        description=(
            f"{_CUSTOMER} Customers lost in the period are customers at the period start that are no longer "
            "customers at the period end; a customer that left and came back within the period is not lost, "
            "and one with another subscription still running is not lost either. "
            "With new_and_lost=exclude (the default, ChartMogul's standard) an account that was not a "
            "customer at the start, started a subscription in the period and is not a customer at the end "
            "counts nowhere; with include it is added to the lost customers, while the denominator stays the "
            "customers at the period start (as Baremetrics counts every cancellation against the customers "
            "at the window's start), so the two settings differ by exactly those customers / customers at "
            f"the start, and include can exceed 100%. {_SUBSCRIPTIONS} {_SEGMENTS}"),
        formula="customers at the period start not customers at its end (+ joined-and-lost with include) "
                "/ customers at the period start",
        unit="ratio",
        direction="lower",
        tables=("accounts", "subscriptions"),
        compute=churn_rate,
        grouped=churn_rate_grouped,
        needs=("subscriptions.account_id", "subscriptions.started_at", "subscriptions.ended_at"),
        params=(_NEW_AND_LOST,),
    ),
    Metric(
        id="retention_rate",
        title="Customer retention rate",
        description=(
            f"{_CUSTOMER} The published formula (E − N) / S: S customers at the period start, E customers at "
            "the period end, N new customers: accounts whose first-ever subscription started in the period "
            "(by started_at), counted whether or not they are still customers at the end. An account that "
            "returns after a gap counts in E but not in N. For the plain share of starting customers still "
            "customers at the end use 1 − churn_rate (new_and_lost=exclude): an account retention rate would "
            f"be exactly that, so it is not a separate metric. {_SUBSCRIPTIONS} {_SEGMENTS}"),
        formula="(customers at the period end − new customers in the period) / customers at the period start",
        unit="ratio",
        direction="higher",
        tables=("accounts", "subscriptions"),
        compute=retention_rate,
        grouped=retention_rate_grouped,
        needs=("subscriptions.account_id", "subscriptions.started_at", "subscriptions.ended_at"),
    ),
    Metric(
        id="renewal_rate",
        title="Renewal rate",
        description=(
            "Share of the subscriptions up for renewal in the period that renewed. Up for renewal: a "
            "subscription whose term_end falls in the period and is not after the reporting day (renewals "
            "not yet due are left out and counted in the note). Renewed, by evidence: successor = the same "
            "account has another subscription that started after this one did, within grace_days of its "
            "term_end (either side); status = its status is 'renewed' (any case); either (the default) = "
            f"one or the other. {_SUBSCRIPTIONS} {_SEGMENTS}"),
        formula="subscriptions with term_end in the period that renewed / subscriptions with term_end in the "
                "period",
        unit="ratio",
        direction="higher",
        tables=("accounts", "subscriptions"),
        compute=renewal_rate,
        grouped=renewal_rate_grouped,
        needs=("subscriptions.account_id", "subscriptions.started_at", "subscriptions.term_end"),
        params=(
            Param("grace_days", int, 30, "a successor counts when it starts within this many days before or "
                                         "after the term_end", check=at_least(0)),
            Param("evidence", str, "either", "what shows a renewal: a successor subscription, status "
                                             "'renewed', or either", choices=("successor", "status", "either")),
        ),
    ),
    Metric(
        id="upsell_rate",
        title="Upsell rate",
        description=(
            f"{_CUSTOMER} Share of the customers at the period start that were upsold in the period. "
            "evidence=deals (the default): the account won a deal (deals table, is_won) whose deal_type is "
            "one of deal_types, with closed_at in the period. evidence=mrr: the account's MRR at the period "
            "end (its subscriptions running then) is above its MRR at the period start. "
            f"{_MRR_FX} {_SUBSCRIPTIONS} {_SEGMENTS} By owner this is the share of each rep's customers "
            "(accounts they own) that were upsold, whoever owns the deal, so both sides count the same "
            "customers."),
        formula="customers at the period start upsold in the period / customers at the period start",
        unit="ratio",
        direction="higher",
        tables=("accounts", "subscriptions", "deals"),
        compute=upsell_rate,
        grouped=upsell_rate_grouped,
        needs=(
            "subscriptions.account_id", "subscriptions.started_at", "subscriptions.ended_at", "deals.account_id",
            "deals.is_won", "deals.closed_at", "deals.deal_type",
        ),
        params=(
            Param("deal_types", str, "upsell,cross_sell,expansion",
                  "comma-separated deal_type values that count as an upsell (any case)",
                  check=lambda text: None if _deal_types(text) else "names no deal type"),
            Param("evidence", str, "deals", "what shows an upsell: a won deal of those types, or MRR rising "
                                            "from the period start to its end", choices=("deals", "mrr")),
        ),
    ),
    Metric(
        id="clv",
        title="Customer lifetime value",
        description=(
            "Average purchase value (revenue / purchases) × average purchase frequency (purchases / unique "
            "customers) × average customer lifespan in years, from the orders with ordered_at in the period "
            "that name an account (revenue = amount, null as 0). The first two factors multiply to revenue "
            "per customer, so the result keeps numerator = revenue × lifespan and denominator = customers. "
            "lifespan_years=0 (the default) derives the lifespan as 1 / annual customer churn rate, the churn "
            "being measured on subscriptions over the 12 months to the period end (customers lost / "
            "customers 12 months before, as churn_rate with new_and_lost=exclude; the note shows it); when "
            "no customer churned or there are no subscriptions the value is null with a note asking for "
            f"lifespan_years. {_ORDERS} {_FX} at the order date. {_SEGMENTS}"),
        formula="(revenue / purchases) × (purchases / customers) × lifespan_years, over the period's orders",
        unit="currency",
        direction="higher",
        tables=("accounts", "orders", "subscriptions"),
        compute=clv,
        grouped=clv_grouped,
        needs=("orders.account_id", "orders.amount", "orders.ordered_at"),
        params=(Param("lifespan_years", float, 0.0,
                      "average customer lifespan in years; 0 derives it as 1 / annual customer churn",
                      check=at_least(0)),),
    ),
    Metric(
        id="net_new_revenue",
        title="Net new revenue",
        description=(
            "Revenue from customers new in the period. new_means=first_subscription (the default): the MRR of "
            "each account's first subscription(s) (earliest started_at) started in the period, i.e. new "
            "business MRR. new_means=first_order: the amount of each account's first order(s) (earliest "
            "ordered_at) placed in the period, i.e. first-purchase revenue. Only the first subscription or "
            "order counts, so that a quarter is the sum of its months. Null when no subscription (or order) "
            f"with an account is loaded; 0 with a note when there is no new customer. {_SUBSCRIPTIONS} "
            f"{_ORDERS} {_FX} at the subscription's start or the order date. {_SEGMENTS}"),
        formula="sum of the MRR of first subscriptions started in the period (or of first orders placed in it)",
        unit="currency",
        direction="higher",
        tables=("accounts", "subscriptions", "orders"),
        compute=net_new_revenue,
        grouped=net_new_revenue_grouped,
        needs=("subscriptions.account_id", "subscriptions.started_at", "subscriptions.mrr"),
        params=(Param("new_means", str, "first_subscription",
                      "what makes revenue new: an account's first subscription, or its first order",
                      choices=("first_subscription", "first_order")),),
        additive=True,
    ),
    Metric(
        id="profit_margin_per_customer",
        title="Average profit margin per customer",
        description=(
            "For each account with orders (ordered_at in the period): (revenue − cost) / revenue over its "
            "orders, then the plain average over those accounts. Revenue is the orders' amount and cost their "
            "cost (a missing cost counts as 0 and the note says how many); accounts whose revenue in the "
            "period is zero or negative (refunds only) have no margin and are left out (also noted). "
            f"{_ORDERS} {_FX} at the order date. {_SEGMENTS}"),
        formula="average over customers of (revenue − cost) / revenue, from the period's orders",
        unit="ratio",
        direction="higher",
        tables=("accounts", "orders"),
        compute=profit_margin_per_customer,
        grouped=profit_margin_per_customer_grouped,
        needs=("orders.account_id", "orders.amount", "orders.cost", "orders.ordered_at"),
    ),
    Metric(
        id="gross_mrr_retention",
        title="Gross MRR retention",
        description=(
            f"{_CUSTOMER} The MRR the customers at the period start still pay at the period end, each capped "
            "at what it paid at the start (so expansion does not count, contraction and churn do), over their "
            f"MRR at the start. Customers acquired in the period are left out. {_MRR_FX} {_SUBSCRIPTIONS} "
            f"{_SEGMENTS}"),
        formula="Σ min(MRR at end, MRR at start) / Σ MRR at start, over the customers at the period start",
        unit="ratio",
        direction="higher",
        tables=("accounts", "subscriptions"),
        compute=gross_mrr_retention,
        grouped=gross_mrr_retention_grouped,
        needs=("subscriptions.account_id", "subscriptions.started_at", "subscriptions.ended_at", "subscriptions.mrr"),
    ),
    Metric(
        id="net_mrr_retention",
        title="Net MRR retention",
        description=(
            f"{_CUSTOMER} The MRR the customers at the period start pay at the period end, with expansion "
            "(and a customer's return within the period), over their MRR at the start; it can exceed 100%. "
            f"Customers acquired in the period are left out. {_MRR_FX} {_SUBSCRIPTIONS} {_SEGMENTS}"),
        formula="Σ MRR at end / Σ MRR at start, over the customers at the period start",
        unit="ratio",
        direction="higher",
        tables=("accounts", "subscriptions"),
        compute=net_mrr_retention,
        grouped=net_mrr_retention_grouped,
        needs=("subscriptions.account_id", "subscriptions.started_at", "subscriptions.ended_at", "subscriptions.mrr"),
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
