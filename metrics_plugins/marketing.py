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
"""

from __future__ import annotations

from sqlalchemy import Date, Float, and_, case, cast, func, literal, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from crmkpi import hookimpl
from crmkpi.errors import MetricError
from crmkpi.metrics import Metric, MetricContext, Param, Value, ratio

NO_SPEND = ("no marketing spend recorded in the period (marketing_spend is loaded with the files connector "
            "from marketing_spend.csv)")


# --- spend -------------------------------------------------------------------


def _day_count(ctx: MetricContext, first: ColumnElement, last: ColumnElement) -> ColumnElement:
    """``last - first`` in whole days, for two date expressions."""
    if ctx.conn.dialect.name == "sqlite":
        return func.julianday(last) - func.julianday(first)
    return last - first  # PostgreSQL: date - date is an integer number of days


def _channels(ctx: MetricContext) -> list[str]:
    return [c.strip().lower() for c in ctx.params.get("channels", "").split(",") if c.strip()]


def _spend_rows(ctx: MetricContext) -> tuple[list[ColumnElement], ColumnElement, ColumnElement]:
    """The conditions selecting the spend rows that touch the period, each row's share in it, and its rate date."""
    spend = ctx.table("marketing_spend")
    first, end = ctx.period.start, ctx.period.end
    last = ctx.period.last_day
    range_end = func.coalesce(spend.c.period_end, spend.c.period_start)
    dated = spend.c.spent_on.is_not(None)
    on_day = and_(dated, spend.c.spent_on >= first, spend.c.spent_on < end)
    ranged = and_(spend.c.spent_on.is_(None), spend.c.period_start.is_not(None),
                  spend.c.period_start <= last, range_end >= first)
    where = [or_(on_day, ranged)]
    channels = _channels(ctx)
    if channels:
        where.append(func.lower(spend.c.channel).in_(channels))
    lo = case((spend.c.period_start > first, spend.c.period_start), else_=literal(first, Date()))
    hi = case((range_end < last, range_end), else_=literal(last, Date()))
    days_in = cast(_day_count(ctx, lo, hi) + 1, Float)
    share = case((dated, 1.0), else_=days_in / (_day_count(ctx, spend.c.period_start, range_end) + 1))
    return where, share, func.coalesce(spend.c.spent_on, spend.c.period_start)


def _spend(ctx: MetricContext) -> tuple[float | None, str | None]:
    """Spend in the period in the reporting currency, or (None, reason) when no row touches the period.

    The second item is a note for the reader (undated rows left out), or the reason for None.
    """
    spend = ctx.table("marketing_spend")
    where, share, at = _spend_rows(ctx)
    first, last = ctx.period.start, ctx.period.last_day
    backwards = (spend.c.spent_on.is_(None), spend.c.period_end < spend.c.period_start,
                 or_(spend.c.period_start.between(first, last), spend.c.period_end.between(first, last)))
    inverted = ctx.conn.execute(
        select(spend.c.id).where(*ctx.scope(spend), *backwards).order_by(spend.c.id).limit(1)).scalar()
    if inverted is not None:
        raise MetricError(f"marketing_spend row {inverted!r}: period_end is before period_start")
    amount = ctx.money(spend, func.coalesce(spend.c.amount, 0.0), at, *where) * share
    ctx.record("marketing spend in the period", spend, *where)
    total, rows, unvalued = ctx.conn.execute(
        select(func.sum(amount), func.count(), func.count() - func.count(spend.c.amount))
        .where(*ctx.scope(spend), *where)).one()
    undated = ctx.conn.execute(select(func.count()).where(
        *ctx.scope(spend), spend.c.spent_on.is_(None), spend.c.period_start.is_(None))).scalar()
    notes = [f"{undated} marketing_spend rows without spent_on or period_start were left out" if undated else "",
             f"{unvalued} marketing_spend row(s) in the period without amount counted as 0" if unvalued else ""]
    note = "; ".join(filter(None, notes)) or None
    if not rows:
        return None, NO_SPEND + (f"; {note}" if note else "")
    return float(total or 0), note


def _spent_channels(ctx: MetricContext):
    """Lower-cased channels with spend in the period (after the ``channels`` filter): for attribution."""
    spend = ctx.table("marketing_spend")
    where, _, _ = _spend_rows(ctx)
    return select(func.lower(spend.c.channel)).where(*ctx.scope(spend), *where, spend.c.channel.is_not(None)).distinct()


def _attributed(ctx: MetricContext, source_column: ColumnElement) -> list[ColumnElement]:
    if ctx.params["attribution"] == "all":
        return []
    return [func.lower(source_column).in_(_spent_channels(ctx))]


# --- new customers -----------------------------------------------------------


def _new_customers(ctx: MetricContext):
    """(number of customers acquired in the period, select of their (source, account_id))."""
    by_deal = ctx.params["new_customer"] == "first_won_deal"
    if by_deal:
        table, at = ctx.table("deals"), "closed_at"
        label = "won deals that are their account's first, closed in the period"
    else:
        table, at = ctx.table("subscriptions"), "started_at"
        label = "subscriptions that are their account's first, started in the period"
    # which row is an account's first is decided over all its live rows, whatever the segment
    inner = table.alias("first_of_account")
    candidates = (ctx.live(inner), inner.c.account_id.is_not(None), inner.c[at].is_not(None),
                  *([inner.c.is_won.is_(True)] if by_deal else []))
    nth = func.row_number().over(partition_by=(inner.c.source, inner.c.account_id),
                                 order_by=(inner.c[at], inner.c.id)).label("nth")
    ranked = select(inner.c.source, inner.c.id, inner.c[at].label("at"), nth).where(*candidates).subquery("ranked")
    firsts = select(ranked.c.source, ranked.c.id).where(ranked.c.nth == 1, ctx.in_period(ranked.c.at))
    where = tuple_(table.c.source, table.c.id).in_(firsts)
    if ctx.segment is None:
        # the same count without ranking rows: accounts whose earliest date is in the period (an aggregate is
        # cheaper than a window over every row); the first rows are still recorded for explain
        first_at = func.min(inner.c[at])
        customers = (select(inner.c.source, inner.c.account_id).where(*candidates)
                     .group_by(inner.c.source, inner.c.account_id)
                     .having(and_(first_at >= ctx.start, first_at < ctx.end)))
        ctx.record(label, table, where)
        count = ctx.conn.execute(select(func.count()).select_from(customers.subquery())).scalar() or 0
        return count, customers
    count = ctx.count(label, table, where)
    # the segment applies to the first row; an alias, so the set does not correlate with an outer query on table
    outer = table.alias("new_customer")
    customers = select(outer.c.source, outer.c.account_id).where(
        *ctx.scope(outer), tuple_(outer.c.source, outer.c.id).in_(firsts))
    return count, customers


# --- metrics -----------------------------------------------------------------


def _unowned(ctx: MetricContext) -> str | None:
    """The note on the rows that would make a new customer but name no account (or no date)."""
    if ctx.params["new_customer"] == "first_won_deal":
        deals = ctx.table("deals")
        return ctx.left_out("won deal(s) closed in the period without account_id", deals, deals.c.is_won.is_(True),
                            ctx.in_period(deals.c.closed_at), deals.c.account_id.is_(None))
    subs = ctx.table("subscriptions")
    return ctx.left_out("subscription(s) without account_id or started_at", subs,
                        or_(subs.c.account_id.is_(None), subs.c.started_at.is_(None)))


def cac(ctx: MetricContext) -> Value:
    spent, note = _spend(ctx)
    if spent is None:
        return Value(None, note=note)
    customers, _ = _new_customers(ctx)
    return ratio(spent, customers, empty="no customers acquired in the period").noted(note, _unowned(ctx))


def cac_payback_months(ctx: MetricContext) -> Value:
    margin = ctx.params["gross_margin"]
    spent, note = _spend(ctx)
    if spent is None:
        return Value(None, note=note)
    customers, accounts = _new_customers(ctx)
    note = "; ".join(filter(None, (note, _unowned(ctx)))) or None
    if not customers:
        return Value(None, note="no customers acquired in the period").noted(note)
    subs = ctx.table("subscriptions")
    # each live subscription of the new customers with its account's first start (a window: a join on
    # account_id would have no index to use)
    s = subs.alias("s")
    dated = (select(s.c.source, s.c.id, s.c.account_id, s.c.started_at,
                    func.min(s.c.started_at).over(partition_by=(s.c.source, s.c.account_id)).label("first_start"))
             .where(ctx.live(s), s.c.account_id.is_not(None), s.c.started_at.is_not(None),
                    tuple_(s.c.source, s.c.account_id).in_(accounts))
             .subquery("dated"))
    first_month = select(dated.c.source, dated.c.id).where(
        ctx.days_between(dated.c.first_start, dated.c.started_at) < 30)
    where = tuple_(subs.c.source, subs.c.id).in_(first_month)
    mrr = ctx.total("subscriptions of the new customers started in their first 30 days", subs,
                    ctx.money(subs, func.coalesce(subs.c.mrr, 0.0), subs.c.started_at, where), where)
    acquisition_cost = spent / customers
    monthly = mrr / customers * margin
    if monthly <= 0:
        return Value(None, acquisition_cost, monthly,
                     note="the new customers have no first-month MRR (subscriptions)").noted(note)
    return Value(acquisition_cost / monthly, acquisition_cost, monthly).noted(note)


def cost_per_lead(ctx: MetricContext) -> Value:
    spent, note = _spend(ctx)
    if spent is None:
        return Value(None, note=note)
    leads = ctx.table("leads")
    created = ctx.count("leads created in the period", leads, ctx.in_period(leads.c.created_at),
                        *_attributed(ctx, leads.c.lead_source))
    undated = ctx.left_out("lead(s) without created_at (in no period)", leads, leads.c.created_at.is_(None))
    return ratio(spent, created, empty="no leads created in the period").noted(note, undated)


def cost_per_sale(ctx: MetricContext) -> Value:
    spent, note = _spend(ctx)
    if spent is None:
        return Value(None, note=note)
    deals = ctx.table("deals")
    won = ctx.count("deals won in the period", deals, deals.c.is_won.is_(True), ctx.in_period(deals.c.closed_at),
                    *_attributed(ctx, deals.c.lead_source))
    undated = ctx.left_out("won deal(s) without closed_at (in no period)", deals, deals.c.is_won.is_(True),
                           deals.c.closed_at.is_(None))
    return ratio(spent, won, empty="no deals won in the period").noted(note, undated)


def marketing_roi(ctx: MetricContext) -> Value:
    margin = ctx.params["gross_margin"]
    spent, note = _spend(ctx)
    if spent is None:
        return Value(None, note=note)
    deals = ctx.table("deals")
    where = (deals.c.is_won.is_(True), ctx.in_period(deals.c.closed_at), *_attributed(ctx, deals.c.lead_source))
    revenue = ctx.total("won deals attributed to the spend", deals,
                        ctx.money(deals, func.coalesce(deals.c.amount, 0.0), deals.c.closed_at, *where), *where)
    unvalued = ctx.left_out("attributed won deal(s) without amount", deals, *where, deals.c.amount.is_(None),
                            then="counted as 0")
    return ratio(revenue * margin - spent, spent, empty="the spend in the period adds up to zero").noted(
        note, unvalued)


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
        needs=("marketing_spend.amount", "deals.is_won", "deals.closed_at", "deals.amount"),
        params=(CHANNELS, _attribution("channel", "deal won in the period"), GROSS_MARGIN),
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
