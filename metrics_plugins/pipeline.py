"""Pipeline and sales-team KPIs over deals, leads, stage history and quotas.

Deal amounts always go through ``ctx.money`` (the reporting currency at the rate valid on the
date that places the deal in the period). Every table is read through ``ctx.scope`` so that
segments and deleted rows behave the same in every metric. Stage changes reach the dimensions
of their deal (``owner``, ``team``, ``region``, ...) through ``crmkpi.segments``, which looks
them up on ``deals`` by ``deal_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import Date, Select, and_, case, func, literal, literal_column, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter

from crmkpi import hookimpl, segments
from crmkpi.errors import MetricError
from crmkpi.grouped import Cell, Grid, by_label, left_out_note
from crmkpi.metrics import (PERCENTILES, STAT_DOC, TABLES, Metric, MetricContext, Param, Value, duration_sums, ratio,
                            stat_param, stat_value)
from crmkpi.sqlkit import evaluated_once, instant

# -- shared pieces -----------------------------------------------------------------------------


def _won_in_period(ctx: MetricContext, deals) -> tuple[ColumnElement, ...]:
    """Deals won whose close date falls in the period."""
    return deals.c.is_won.is_(True), ctx.in_period(deals.c.closed_at)


@dataclass(frozen=True)
class Won:
    """The deals won in the period: their converted amounts, and how many have an amount and how many not."""

    total: float
    sized: int
    unsized: int

    def note(self, unsized: str = "left out") -> str | None:
        return f"{self.unsized} won deal(s) without amount {unsized}" if self.unsized else None


def _won_sums(amount: ColumnElement) -> tuple[ColumnElement, ...]:
    deals = TABLES["deals"]
    return func.sum(amount), func.count(deals.c.amount), func.count() - func.count(deals.c.amount)


def _won(total, count, unsized) -> Won:
    return Won(float(total or 0), int(count or 0), int(unsized or 0))


def _won_amounts(ctx: MetricContext) -> Won:
    """The deals won whose close date falls in the period, and their amounts in the reporting currency."""
    deals = ctx.table("deals")
    won, sized = _won_in_period(ctx, deals), deals.c.amount.is_not(None)
    converted = ctx.converted(deals, deals.c.amount, deals.c.closed_at, *won, sized)
    ctx.record("won deals with an amount, closed in the period", deals, *won, sized)
    return _won(*converted.one(select(*_won_sums(converted.amount)).where(*ctx.scope(deals), *won)))


def _won_amounts_grouped(grid: Grid) -> dict[Cell, Won]:
    """:func:`_won_amounts` of every cell."""
    deals = grid.table("deals")
    won, closed_at = deals.c.is_won.is_(True), deals.c.closed_at
    amount = grid.money(deals, deals.c.amount, closed_at, grid.in_any_part(closed_at), won, deals.c.amount.is_not(None))
    sums = grid.by_part(deals, closed_at, *_won_sums(amount), where=(won,))
    return {cell: _won(*sums.get(cell, (None, 0, 0))) for cell in grid.cells}


def _won_metric(value: Callable[[Won, str | None], Value]) -> tuple[Callable, Callable]:
    """(compute, grouped) of a metric whose value depends only on the won amounts and the undated note."""

    deals = TABLES["deals"]
    label, *where = _undated_rows("won", deals.c.is_won.is_(True))

    def compute(ctx: MetricContext) -> Value:
        return value(_won_amounts(ctx), ctx.left_out(label, deals, *where))

    def grouped(grid: Grid) -> dict[Cell, Value]:
        won = _won_amounts_grouped(grid)
        undated = grid.left_out(label, deals, *where)
        return {cell: value(won[cell], undated.get(cell.segment)) for cell in grid.cells}

    return compute, grouped


def _undated_rows(which: str, decided: ColumnElement) -> tuple[str, ColumnElement, ColumnElement]:
    """The ``which`` deals (won, closed) without a close date, which no period holds: (label, *where)."""
    return f"{which} deal(s) without closed_at (in no period)", decided, TABLES["deals"].c.closed_at.is_(None)


def _undated(ctx: MetricContext, deals, which: str, decided: ColumnElement) -> str | None:
    """The note on the ``which`` deals without a close date."""
    label, *where = _undated_rows(which, decided)
    return ctx.left_out(label, deals, *where)


@dataclass(frozen=True)
class Cycle:
    """The sales cycles of the deals a metric measures, and the deals it could not measure."""

    #: Selects the days of each measured deal (for a percentile; None in a grid, which has its own).
    days: Select | None
    total: float
    count: int
    #: Deals closed before they were created (typically history imported into the CRM).
    backwards: int
    #: Deals without a creation date.
    undated: int

    def notes(self, which: str) -> list[str]:
        return [note for count, note in (
            (self.backwards, f"{self.backwards} {which} deal(s) closed before they were created left out"),
            (self.undated, f"{self.undated} {which} deal(s) without created_at left out")) if count]


def _cycle_days(ctx: MetricContext | Grid, deals) -> ColumnElement:
    """Days from a deal's creation to its close: to the close moment in its stage history (the latest
    entry into its current stage), else whole days from the creation date when closed_at carries only a
    date (midnight UTC, as Salesforce's CloseDate is stored), else to closed_at."""
    changes = ctx.table("deal_stage_changes").alias("closing_change")
    closing = (select(func.max(changes.c.entered_at))
               .where(changes.c.source == deals.c.source, changes.c.deal_id == deals.c.id,
                      changes.c.stage == deals.c.stage, changes.c.is_deleted.is_(False)).scalar_subquery())
    by_close_date = case((ctx.is_date_only(deals.c.closed_at),
                          ctx.whole_days_between(deals.c.created_at, deals.c.closed_at)),
                         else_=ctx.days_between(deals.c.created_at, deals.c.closed_at))
    return func.coalesce(ctx.days_between(deals.c.created_at, closing), by_close_date)


def _cycle(ctx: MetricContext, deals, *where: ColumnElement) -> Cycle:
    """The sales cycles of the in-scope deals matching ``where``, in one pass."""
    cycles = evaluated_once(select(_cycle_days(ctx, deals).label("days")).where(*ctx.scope(deals), *where)
                            ).subquery("cycles")
    days = cycles.c.days
    ctx.record("deals measured (created_at to their close)", deals, *where, _cycle_days(ctx, deals) >= 0)
    return _cycle_of(select(days).where(days >= 0), *ctx.conn.execute(select(*duration_sums(days))).one())


def _cycle_of(days: Select | None, total, count, backwards, undated) -> Cycle:
    return Cycle(days, float(total or 0), int(count or 0), int(backwards or 0), int(undated or 0))


def _open_at(deals, end: ColumnElement | datetime, created: ColumnElement | None = None) -> tuple[ColumnElement, ...]:
    """Deals created before ``end`` and not closed before it (``created``: ``created_at`` as the query reads it,
    :meth:`Grid.scanned <crmkpi.grouped.Grid.scanned>` for a join with the calendar)."""
    created = deals.c.created_at if created is None else created
    return created < end, or_(deals.c.is_closed.is_(False), deals.c.closed_at >= end)


# -- lead conversion ---------------------------------------------------------------------------


class Conversions:
    """What both ways of computing the lead conversion rate share: which leads became customers, the value."""

    UNDATED = "lead(s) without created_at (in no period)"
    UNLINKED = ("converted lead(s) created in the period without converted_deal_id or converted_account_id "
                "(cannot be customers)")

    def __init__(self, params: dict) -> None:
        leads = self.leads = TABLES["leads"]
        self.into_customers = params["into"] == "customer"
        self.converted = leads.c.converted_at.is_not(None)
        self.unlinked = (self.converted, leads.c.converted_deal_id.is_(None), leads.c.converted_account_id.is_(None))

    @staticmethod
    def customers(lead):
        """(``lead`` joined to what makes it a customer, the condition that it is one): the lead's own deal
        was won, or the account it converted into won a deal closed at or after the conversion. One
        set-based join, so large lead tables are not scanned per row."""
        deals = TABLES["deals"]
        deal = deals.alias("converted_deal")
        won_accounts = (select(deals.c.source, deals.c.account_id, func.max(deals.c.closed_at).label("last_won"))
                        .where(deals.c.is_deleted.is_(False), deals.c.is_won.is_(True), deals.c.account_id.is_not(None))
                        .group_by(deals.c.source, deals.c.account_id).subquery("won_accounts"))
        joined = (lead.outerjoin(deal, and_(deal.c.source == lead.c.source, deal.c.id == lead.c.converted_deal_id,
                                            deal.c.is_deleted.is_(False), deal.c.is_won.is_(True)))
                  .outerjoin(won_accounts, and_(won_accounts.c.source == lead.c.source,
                                                won_accounts.c.account_id == lead.c.converted_account_id)))
        return joined, and_(lead.c.converted_at.is_not(None),
                            or_(deal.c.id.is_not(None), won_accounts.c.last_won >= lead.c.converted_at))

    def value(self, total: int, converted: int, won: int, unlinked: int, undated: str | None) -> Value:
        notes = [undated]
        if total and not converted:  # a rate of 0 that may only mean converted_at was never loaded
            notes.append(f"none of the {total} lead(s) created in the period has converted_at")
        empty = "no leads created in the period"
        if not self.into_customers:
            return ratio(converted, total, empty=empty).noted(*notes)
        return ratio(won, total, empty=empty).noted(*notes, f"{unlinked} {self.UNLINKED} left out" if unlinked else None)


def lead_conversion_rate(ctx: MetricContext) -> Value:
    conversions = Conversions(ctx.params)
    leads = conversions.leads
    cohort, undated = ctx.in_period(leads.c.created_at), leads.c.created_at.is_(None)
    ctx.record("leads created in the period", leads, cohort)
    ctx.record("converted leads", leads, cohort, conversions.converted)
    source, customers = leads, [literal(0), literal(0)]  # what only customers need
    if conversions.into_customers:
        source, is_customer = conversions.customers(leads)
        customers = [func.count().filter(and_(cohort, is_customer)),
                     func.count().filter(and_(cohort, *conversions.unlinked))]
        lead = leads.alias("lead")  # for explain: the same join, as a set of leads
        joined, is_lead_customer = conversions.customers(lead)
        won = select(lead.c.source, lead.c.id).select_from(joined).where(
            lead.c.created_at >= ctx.start, lead.c.created_at < ctx.end, is_lead_customer)
        ctx.record("leads converted into paying customers", leads, cohort, conversions.converted,
                   tuple_(leads.c.source, leads.c.id).in_(won))
    # one scan of the leads (each joins at most one deal and one account)
    total, converted, undated_count, won_count, unlinked = ctx.conn.execute(
        select(func.count().filter(cohort), func.count().filter(and_(cohort, conversions.converted)),
               func.count().filter(undated), *customers)
        .select_from(source).where(*ctx.scope(leads), or_(cohort, undated))).one()
    return conversions.value(total, converted, won_count, unlinked,
                             left_out_note(undated_count, conversions.UNDATED))


def lead_conversion_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    conversions = Conversions(grid.params)
    leads = conversions.leads
    counts = [func.count(), func.count().filter(conversions.converted)]
    source = leads
    if conversions.into_customers:
        source, is_customer = conversions.customers(leads)
        counts += [func.count().filter(is_customer), func.count().filter(and_(*conversions.unlinked))]
    else:
        counts += [literal(0), literal(0)]  # what only customers need
    keys = grid.segment_key(leads)
    found = grid.by_cell(grid.placed(source, leads.c.created_at, *keys, *counts, where=grid.live(leads))
                         .group_by(literal_column("part"), *by_label(*keys)))
    undated = grid.left_out(conversions.UNDATED, leads, leads.c.created_at.is_(None))
    return {cell: conversions.value(*found.get(cell, (0, 0, 0, 0)), undated.get(cell.segment)) for cell in grid.cells}


# -- stage length ------------------------------------------------------------------------------


#: The columns of the stage changes that :class:`Stays` always carries.
STAYED = ("source", "id", "deal_id", "stage", "entered_at")


class Stays:
    """What both ways of computing stage length share: each stay, when it ends and where it counts.

    Each live stage change is a stay; it ends when the deal's next live change is entered. The window
    runs over every live row and the segment is applied afterwards (``columns`` carry it into the
    stays, or :meth:`read` reads it from them), so `--segment stage` still sees the following stage of
    each stay."""

    def __init__(self, kit: MetricContext | Grid, *columns: ColumnElement) -> None:
        changes, deals, stages = TABLES["deal_stage_changes"], TABLES["deals"], TABLES["pipeline_stages"]
        self.params = kit.params
        left = func.lead(changes.c.entered_at, type_=changes.c.entered_at.type).over(
            partition_by=(changes.c.source, changes.c.deal_id), order_by=(changes.c.entered_at, changes.c.id))
        stays = self.stays = select(changes.c.source, changes.c.id, changes.c.deal_id, changes.c.stage,
                                    changes.c.entered_at, left.label("left_at"), *columns
                                    ).where(changes.c.is_deleted.is_(False)).subquery("stays")
        #: When a stay ends, and the instant that places it in a period: its end, except that with
        #: ``open_stays=until_today`` an open deal's current stay ends with today and counts in the
        #: period holding today.
        self.ended = self.placed = stays.c.left_at
        if kit.params["open_stays"] == "until_today":
            deal_open = or_(deals.c.id.is_(None), deals.c.is_closed.is_(False))

            def open_until(moment: datetime) -> ColumnElement:
                return func.coalesce(stays.c.left_at, case((deal_open, instant(moment))), type_=changes.c.entered_at.type)
            self.ended, self.placed = open_until(kit.end_of_today()), open_until(kit.start_of_today())
        closed_stages = select(stages.c.source, stages.c.stage).where(
            stages.c.is_deleted.is_(False), stages.c.is_closed.is_(True), stages.c.stage.is_not(None))
        self.where = [stays.c.entered_at <= self.ended, or_(deals.c.id.is_(None), deals.c.is_deleted.is_(False)),
                      tuple_(stays.c.source, stays.c.stage).not_in(closed_stages)]
        if kit.params["stage"]:
            self.where.append(stays.c.stage == kit.params["stage"])
        self.source = stays.outerjoin(deals, and_(deals.c.source == stays.c.source, deals.c.id == stays.c.deal_id))
        self.days = kit.days_between(stays.c.entered_at, self.ended)

    def read(self, expression: ColumnElement) -> ColumnElement:
        """An expression over deal_stage_changes (a segment key, say) read from the stays: computed for the
        stays a query keeps, where ``columns`` are computed for every row of the window."""
        return ClauseAdapter(self.stays).traverse(expression)

    def durations(self, rows: Select) -> Select:
        """``rows`` (a select of the stays' days, after its key columns), or with ``per=deal`` each deal's
        days in a stage summed per key."""
        if self.params["per"] == "stay":
            return rows
        measured = rows.subquery("stay_days")
        keys = [c for c in measured.c if c.name not in ("days", "source", "deal_id", "stage")]
        return (select(*keys, func.sum(measured.c.days).label("days"))
                .group_by(*keys, measured.c.source, measured.c.deal_id, measured.c.stage))

    def stay_columns(self) -> tuple[ColumnElement, ...]:
        """The columns :meth:`durations` reads: the stay's deal and stage, and its days."""
        return self.stays.c.source, self.stays.c.deal_id, self.stays.c.stage, self.days.label("days")

    def value(self, total, count, percentile) -> Value:
        if not count:
            which = f"stage {self.params['stage']!r}" if self.params["stage"] else "any open stage"
            return Value(None, note=f"no stay in {which} ended in the period")
        return stat_value(self.params["stat"], float(total), count, percentile)


def stage_length(ctx: MetricContext) -> Value:
    changes = ctx.table("deal_stage_changes")
    in_segment = segments.condition(changes, ctx.segment)
    stays = Stays(ctx, *([] if in_segment is None else [case((in_segment, 1), else_=0).label("in_segment")]))
    where = [*stays.where, ctx.in_period(stays.placed)]
    if in_segment is not None:
        where.append(stays.stays.c.in_segment == 1)
    ctx.record("stage entries whose stay ended in the period", changes, tuple_(changes.c.source, changes.c.id).in_(
        select(stays.stays.c.source, stays.stays.c.id).select_from(stays.source).where(*where)))
    measured = stays.durations(select(*stays.stay_columns()).select_from(stays.source).where(*where)
                               ).subquery("durations")
    total, count = ctx.conn.execute(select(func.sum(measured.c.days), func.count())).one()
    return stays.value(total, count, lambda percent: ctx.percentile(select(measured.c.days), percent))


def stage_length_grouped(grid: Grid) -> dict[Cell, Value]:
    changes = grid.table("deal_stage_changes")
    keys = grid.segment_key(changes)
    # a segment through the deal and its owner is two lookups per stay: only for the stays of the grid's parts
    stays = Stays(grid, *(column for column in segments.columns_read(changes, *keys) if column.name not in STAYED))
    keys = [stays.read(key) for key in keys]
    measured = stays.durations(grid.placed(stays.source, stays.placed, *keys, *stays.stay_columns(),
                                           where=stays.where)).subquery("durations")
    sums = grid.aggregate(measured, func.sum(measured.c.days), func.count())
    percentiles = {} if grid.params["stat"] == "mean" else grid.percentiles_of(
        select(measured.c.part, *(measured.c[k.name] for k in keys), measured.c.days.label("value")).subquery("measured"),
        PERCENTILES[grid.params["stat"]])
    return {cell: stays.value(*sums.get(cell, (None, 0)), lambda percent, cell=cell: percentiles.get(cell, (None, 0)))
            for cell in grid.cells}


# -- sales cycle -------------------------------------------------------------------------------


def sales_cycle_length(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    kind = ctx.params["deals"]
    decided = _decided(kind)
    cycle = _cycle(ctx, deals, decided, ctx.in_period(deals.c.closed_at))
    return _cycle_length(cycle, kind, ctx.params["stat"], lambda percent: ctx.percentile(cycle.days, percent),
                         _undated(ctx, deals, kind, decided))


def sales_cycle_length_grouped(grid: Grid) -> dict[Cell, Value]:
    deals = grid.table("deals")
    kind, stat = grid.params["deals"], grid.params["stat"]
    decided = _decided(kind)
    days = _cycle_days(grid, deals)
    sums = grid.by_part_once(deals, deals.c.closed_at, days, duration_sums, where=(decided,))
    percentiles = {} if stat == "mean" else \
        grid.percentiles(deals, deals.c.closed_at, case((days >= 0, days)), PERCENTILES[stat], where=(decided,))
    label, *where = _undated_rows(kind, decided)
    undated = grid.left_out(label, deals, *where)
    return {cell: _cycle_length(_cycle_of(None, *sums.get(cell, (None, 0, 0, 0))), kind, stat,
                                lambda percent, cell=cell: percentiles.get(cell, (None, 0)), undated.get(cell.segment))
            for cell in grid.cells}


def _decided(kind: str) -> ColumnElement:
    deals = TABLES["deals"]
    return deals.c.is_won.is_(True) if kind == "won" else deals.c.is_closed.is_(True)


def _cycle_length(cycle: Cycle, kind: str, stat: str, percentile, undated: str | None) -> Value:
    notes = [*cycle.notes(kind), undated]
    if not cycle.count:
        empty = f"no {kind} deal closed in the period could be measured" if cycle.backwards or cycle.undated \
            else f"no deals {kind} in the period"
        return Value(None, note=empty).noted(*notes)
    return stat_value(stat, cycle.total, cycle.count, percentile).noted(*notes)


# -- quota attainment --------------------------------------------------------------------------


class Quotas:
    """What both ways of computing quota attainment share: the level's quotas, which lie within a period
    (from ``first`` to ``last``, its first and last days), their sums and the value."""

    def __init__(self, params: dict) -> None:
        quotas = self.quotas = TABLES["quotas"]
        self.level = params["level"]
        self.dated = (quotas.c.period_start.is_not(None), quotas.c.period_end.is_not(None))

    def holder(self, quotas=None) -> ColumnElement:
        quotas = self.quotas if quotas is None else quotas
        return (quotas.c.owner_id.is_not(None) if self.level == "rep"
                else and_(quotas.c.owner_id.is_(None), quotas.c.team.is_not(None)))

    def within(self, first, last, quotas=None) -> tuple[ColumnElement, ...]:
        quotas = self.quotas if quotas is None else quotas
        return (self.holder(quotas), quotas.c.is_deleted.is_(False), quotas.c.period_start.is_not(None),
                quotas.c.period_end.is_not(None), quotas.c.period_start >= first, quotas.c.period_end <= last)

    def overlapping(self, first, last) -> tuple[ColumnElement, ...]:
        quotas = self.quotas
        return self.holder(), *self.dated, quotas.c.period_start <= last, quotas.c.period_end >= first

    def sums(self, quota: ColumnElement) -> tuple[ColumnElement, ...]:
        """How many quotas, their converted total, how many without an amount."""
        return func.count(), func.sum(quota), func.count() - func.count(self.quotas.c.amount)

    def undated(self) -> tuple[str, ColumnElement, ColumnElement]:
        quotas = self.quotas
        return (f"{self.level} quota(s) without period_start or period_end", self.holder(),
                or_(quotas.c.period_start.is_(None), quotas.c.period_end.is_(None)))

    def first_clash(self, conn, first: Callable, last: Callable) -> None:
        """Two quotas of the same holder within one period (``first(q)``..``last(q)``) covering the same days
        would double its quota: refuse them."""
        a, b = self.quotas.alias("a"), self.quotas.alias("b")
        same = (and_(a.c.source == b.c.source, a.c.owner_id == b.c.owner_id) if self.level == "rep"
                else a.c.team == b.c.team)
        clash = conn.execute(
            select(a.c.owner_id if self.level == "rep" else a.c.team, a.c.period_start, a.c.period_end,
                   b.c.period_start, b.c.period_end)
            .where(*self.within(first(a), last(a), a), *self.within(first(b), last(b), b), same,
                   tuple_(a.c.source, a.c.id) < tuple_(b.c.source, b.c.id),
                   a.c.period_start <= b.c.period_end, b.c.period_start <= a.c.period_end)
            .order_by(a.c.period_start).limit(1)
        ).first()
        if clash:
            who = f"owner {clash[0]}" if self.level == "rep" else f"team {clash[0]}"
            raise MetricError(f"quotas overlap for {who}: {clash[1]}..{clash[2]} and {clash[3]}..{clash[4]} "
                              f"(keep one quota per holder and day, e.g. months or quarters, not both)")

    def value(self, counted, quota_total, unsized, won: Won, partial: int, *notes: str | None) -> Value:
        notes = (notes[0], f"{unsized} {self.level} quota(s) without amount counted as 0" if unsized else None,
                 won.note(), *notes[1:])
        if not counted:
            note = f"no {self.level} quota lies within the period"
            if partial:
                note += f" ({partial} cover it only in part; quotas are not prorated)"
            return Value(None, won.total, 0.0, note=note).noted(*notes)
        return ratio(won.total, quota_total, empty=f"the {self.level} quotas within the period add up to zero"
                     ).noted(*notes)


def quota_attainment(ctx: MetricContext) -> Value:
    shared = Quotas(ctx.params)
    quotas, level = shared.quotas, shared.level
    first, last = ctx.period.start, ctx.period.last_day
    within = shared.within(first, last)
    shared.first_clash(ctx.conn, lambda q: first, lambda q: last)
    quota = ctx.money(quotas, func.coalesce(quotas.c.amount, 0), quotas.c.period_start, *within)
    counted, quota_total, unsized = ctx.conn.execute(select(*shared.sums(quota)).where(*ctx.scope(quotas), *within)
                                                     ).one()
    ctx.record(f"{level} quotas within the period", quotas, *within)
    deals = ctx.table("deals")
    partial = 0 if counted else ctx.count(f"{level} quotas overlapping the period only in part", quotas,
                                          *shared.overlapping(first, last))
    label, *undated = shared.undated()
    return shared.value(counted, quota_total, unsized, _won_amounts(ctx), partial,
                        ctx.left_out(label, quotas, *undated), _undated(ctx, deals, "won", deals.c.is_won.is_(True)))


def quota_attainment_grouped(grid: Grid) -> dict[Cell, Value]:
    shared = Quotas(grid.params)
    quotas, days = shared.quotas, grid.calendar
    shared.first_clash(grid.conn, lambda q: days.c.first, lambda q: days.c.last)
    within = shared.within(days.c.first, days.c.last)
    quota = grid.money(quotas, func.coalesce(quotas.c.amount, 0), quotas.c.period_start, *within)
    keys = grid.segment_key(quotas)

    def per_part(condition: tuple, *aggregates: ColumnElement) -> dict[Cell, tuple]:
        return grid.by_cell(select(days.c.part, *keys, *aggregates)
                            .select_from(quotas.join(days, and_(*condition)))
                            .where(*grid.live(quotas)).group_by(days.c.part, *by_label(*keys)))

    sums = per_part(within, *shared.sums(quota))
    partial = per_part(shared.overlapping(days.c.first, days.c.last), func.count())
    won = _won_amounts_grouped(grid)
    label, *undated = shared.undated()
    undated_quotas = grid.left_out(label, quotas, *undated)
    deals = grid.table("deals")
    won_label, *where = _undated_rows("won", deals.c.is_won.is_(True))
    undated_won = grid.left_out(won_label, deals, *where)
    return {cell: shared.value(*sums.get(cell, (0, None, 0)), won[cell], partial.get(cell, (0,))[0],
                               undated_quotas.get(cell.segment), undated_won.get(cell.segment))
            for cell in grid.cells}


# -- revenue -----------------------------------------------------------------------------------


def _sales_volume(won: Won, undated: str | None) -> Value:
    if not won.sized + won.unsized:
        return Value(None, note="no deals won in the period").noted(undated)
    return Value(won.total).noted(won.note("added nothing"), undated)


def _avg_deal_size(won: Won, undated: str | None) -> Value:
    notes = (won.note(), undated)
    if not won.sized:
        return Value(None, note="no deals with an amount won in the period").noted(*notes)
    return Value(won.total / won.sized, numerator=won.total, denominator=won.sized).noted(*notes)


sales_volume, sales_volume_grouped = _won_metric(_sales_volume)
avg_deal_size, avg_deal_size_grouped = _won_metric(_avg_deal_size)


def sales_velocity(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    if ctx.params["opportunities"] == "created":
        opportunities = ctx.count("opportunities: deals created in the period", deals,
                                  ctx.in_period(deals.c.created_at))
    else:
        opportunities = ctx.count("opportunities: deals open at the end of the period", deals,
                                  *_open_at(deals, ctx.end))
    closed, won = (deals.c.is_closed.is_(True), ctx.in_period(deals.c.closed_at)), deals.c.is_won.is_(True)
    ctx.record("won deals closed in the period", deals, *closed, won)
    ctx.record("won and lost deals closed in the period", deals, *closed)
    won_count, decided = ctx.conn.execute(select(func.count().filter(won), func.count())
                                          .where(*ctx.scope(deals), *closed)).one()
    cycle = _cycle(ctx, deals, *_won_in_period(ctx, deals))
    return _velocity(opportunities, won_count, decided, _won_amounts(ctx), cycle,
                     _undated(ctx, deals, "closed", deals.c.is_closed.is_(True)))


def sales_velocity_grouped(grid: Grid) -> dict[Cell, Value]:
    deals = grid.table("deals")
    if grid.params["opportunities"] == "created":
        opportunities = grid.by_part(deals, deals.c.created_at, func.count())
    else:
        opportunities = grid.by_part(deals, None, func.count(), on=and_(*_open_at(deals, grid.calendar.c.end,
                                                                               grid.scanned(deals.c.created_at))))
    decided = grid.by_part(deals, deals.c.closed_at, func.count().filter(deals.c.is_won.is_(True)), func.count(),
                           where=(deals.c.is_closed.is_(True),))
    cycles = grid.by_part_once(deals, deals.c.closed_at, _cycle_days(grid, deals), duration_sums,
                               where=(deals.c.is_won.is_(True),))
    won = _won_amounts_grouped(grid)
    label, *where = _undated_rows("closed", deals.c.is_closed.is_(True))
    undated = grid.left_out(label, deals, *where)
    return {cell: _velocity(opportunities.get(cell, (0,))[0], *decided.get(cell, (0, 0)), won[cell],
                            _cycle_of(None, *cycles.get(cell, (None, 0, 0, 0))), undated.get(cell.segment))
            for cell in grid.cells}


def _velocity(opportunities: int, won_count: int, decided: int, won: Won, cycle: Cycle, undated: str | None) -> Value:
    notes = (*cycle.notes("won"), won.note(), undated)
    if not won_count or not won.sized or not cycle.count:
        return Value(None, note="no deals won in the period (with an amount and a creation date): "
                                "deal size, win rate and cycle length are undefined").noted(*notes)
    deal_size, win_rate, days = won.total / won.sized, won_count / decided, cycle.total / cycle.count
    numerator = opportunities * deal_size * win_rate
    if days <= 0:
        return Value(None, numerator, days, note="the won deals' sales cycle length is zero days").noted(*notes)
    return Value(numerator / days, numerator=numerator, denominator=days).noted(*notes)


# -- pipeline value ----------------------------------------------------------------------------


class OpenPipeline:
    """What both ways of computing pipeline value share: the deals open at a period's ``end`` (an instant),
    their stage then and its probability, the notes and the value."""

    NO_DEAL = "no deal with an amount was open at the end of the period"

    def __init__(self, end: ColumnElement | datetime, created: ColumnElement | None = None) -> None:
        deals = self.deals = TABLES["deals"]
        self.open = _open_at(deals, end, created)
        self.valued = (*self.open, deals.c.amount.is_not(None))
        self.never_open = ("deal(s) without created_at (never open)", deals, deals.c.created_at.is_(None), self.open[1])

    def stage_at(self, end: ColumnElement | datetime):
        """(the stage each deal was in at ``end``: its last stage change entered before ``end`` (the stage
        history), else its current stage; the join that finds that change). A change is the last one before
        ``end`` when the deal's next change (by time, then id) is not before ``end``."""
        changes, deals = TABLES["deal_stage_changes"], self.deals
        following = func.lead(changes.c.entered_at, type_=changes.c.entered_at.type).over(
            partition_by=(changes.c.source, changes.c.deal_id), order_by=(changes.c.entered_at, changes.c.id))
        history = (select(changes.c.source, changes.c.deal_id, changes.c.stage, changes.c.entered_at,
                          following.label("left_at")).where(changes.c.is_deleted.is_(False)).subquery("history"))
        last = and_(history.c.source == deals.c.source, history.c.deal_id == deals.c.id, history.c.entered_at < end,
                    or_(history.c.left_at.is_(None), history.c.left_at >= end))
        return func.coalesce(history.c.stage, deals.c.stage), history, last

    def probability(self, stage: ColumnElement) -> ColumnElement:
        """The stage's probability in the deal's own pipeline, else in any pipeline of the source."""
        stages, deals = TABLES["pipeline_stages"], self.deals
        lookup = (stages.c.source == deals.c.source, stages.c.stage == stage, stages.c.is_deleted.is_(False))
        return func.coalesce(
            select(stages.c.probability).where(*lookup, stages.c.pipeline == deals.c.pipeline)
            .order_by(stages.c.id).limit(1).scalar_subquery(),
            select(stages.c.probability).where(*lookup).order_by(stages.c.id).limit(1).scalar_subquery())

    @staticmethod
    def weighted_sums(rows) -> tuple[ColumnElement, ...]:
        """Over rows (amount, stage, probability): the weighted total, how many, a stage without a
        probability, the highest probability."""
        missing = case((rows.c.probability.is_(None), func.coalesce(rows.c.stage, "(none)")))
        return (func.sum(rows.c.amount * rows.c.probability), func.count(), func.min(missing),
                func.max(rows.c.probability))

    @staticmethod
    def check(unknown, top) -> None:
        if unknown is not None:
            raise MetricError(f"open deals in stage {unknown!r} have no probability in pipeline_stages "
                              "(load pipeline_stages with a probability for every open stage, or use weighted=false)")
        if top is not None and top > 1:
            raise MetricError(f"pipeline_stages.probability must be a fraction 0..1, found {top:g}")

    def value(self, total, count, unvalued, never_open: str | None) -> Value:
        notes = (f"{unvalued} open deal(s) without amount left out" if unvalued else None, never_open)
        if not count:
            return Value(None, note=self.NO_DEAL).noted(*notes)
        return Value(float(total)).noted(*notes)


def pipeline_value(ctx: MetricContext) -> Value:
    pipeline = OpenPipeline(ctx.end)
    deals = pipeline.deals
    # Convert at the rate of the period's last day: this is a snapshot at the period's end.
    last_day = literal(ctx.period.last_day, Date())
    ctx.record("deals open at the end of the period", deals, *pipeline.open)
    never_open = ctx.left_out(*pipeline.never_open)
    if not ctx.params["weighted"]:
        converted = ctx.converted(deals, deals.c.amount, last_day, *pipeline.valued)
        # one scan: the values, the open deals without one, and those without a rate
        total, count, unvalued = converted.one(select(*_valued_sums(converted.amount))
                                               .where(*ctx.scope(deals), *pipeline.open))
        return pipeline.value(total, count, unvalued, never_open)
    amount = ctx.money(deals, deals.c.amount, last_day, *pipeline.valued)
    unvalued = ctx.conn.execute(select(func.count()).where(*ctx.scope(deals), *pipeline.open,
                                                          deals.c.amount.is_(None))).scalar()
    stage, history, last = pipeline.stage_at(ctx.end)
    rows = (select(amount.label("amount"), stage.label("stage"), pipeline.probability(stage).label("probability"))
            .select_from(deals.outerjoin(history, last)).where(*ctx.scope(deals), *pipeline.valued).subquery("valued"))
    weighted, count, unknown, top = ctx.conn.execute(select(*pipeline.weighted_sums(rows))).one()
    pipeline.check(unknown, top)
    return pipeline.value(weighted, count, unvalued, never_open)


def pipeline_value_grouped(grid: Grid) -> dict[Cell, Value]:
    calendar = grid.calendar
    pipeline = OpenPipeline(calendar.c.end, grid.scanned(TABLES["deals"].c.created_at))
    deals = pipeline.deals
    # Converted at the rate of each part's last day, as per cell: a snapshot at the part's end.
    amount = grid.money(deals, deals.c.amount, calendar.c.last, *pipeline.valued)
    label, _, undated, still_open = pipeline.never_open
    never_open = grid.left_out_by_part(label, deals, None, undated, on=still_open)
    keys = grid.segment_key(deals)
    open_deals = deals.join(calendar, and_(*pipeline.open))
    if grid.params["weighted"]:
        unvalued = grid.by_part(deals, None, func.count(), where=(deals.c.amount.is_(None),), on=and_(*pipeline.open))
        stage, history, last = pipeline.stage_at(calendar.c.end)
        rows = (select(calendar.c.part, *keys, amount.label("amount"), stage.label("stage"),
                       pipeline.probability(stage).label("probability"))
                .select_from(open_deals.outerjoin(history, last))
                .where(*grid.live(deals), deals.c.amount.is_not(None)).subquery("valued"))
        weighted = grid.aggregate(rows, *pipeline.weighted_sums(rows))
        for _, _, unknown, top in weighted.values():
            pipeline.check(unknown, top)  # the engine then computes cell by cell: the error lands on its cells
        sums = {cell: (*weighted.get(cell, (None, 0))[:2], unvalued.get(cell, (0,))[0]) for cell in grid.cells}
    else:
        sums = grid.by_cell(select(calendar.c.part, *keys, *_valued_sums(amount)).select_from(open_deals)
                            .where(*grid.live(deals)).group_by(calendar.c.part, *by_label(*keys)))
    return {cell: pipeline.value(*sums.get(cell, (None, 0, 0)), never_open.get(cell)) for cell in grid.cells}


def _valued_sums(amount: ColumnElement) -> tuple[ColumnElement, ...]:
    """The converted amounts' total, how many deals have one, how many not."""
    deals = TABLES["deals"]
    return func.sum(amount), func.count(deals.c.amount), func.count() - func.count(deals.c.amount)


# -- declarations ------------------------------------------------------------------------------


METRICS = [
    Metric(
        id="lead_conversion_rate",
        title="Lead conversion rate",
        description=(
            "Share of the leads created in the period (`leads.created_at`) that converted. The cohort is "
            "fixed by creation date, so a recent cohort's rate still grows as its leads convert. With "
            "`into=customer` (default) a lead counts only if it became a paying customer: it converted "
            "(`converted_at` set) and either the deal it converted into (`converted_deal_id`) is won, or "
            "the account it converted into (`converted_account_id`) won a deal closed at or after the "
            "conversion. An account alone is not enough: Salesforce creates or links one on every "
            "conversion, and a lead merged into an existing customer did not make it a customer. With "
            "`into=any` every converted lead counts. Reads `leads` and (for customers) `deals`; "
            "segments apply to the lead (owner, lead_source, ...)."),
        formula="leads created in the period that converted (into customers) / leads created in the period",
        unit="ratio",
        direction="higher",
        tables=("leads", "deals"),
        compute=lead_conversion_rate,
        grouped=lead_conversion_rate_grouped,
        needs=("leads.created_at", "leads.converted_at", "deals.is_won"),
        params=(Param("into", str, "customer", "what counts as converted: a paying customer (a won deal "
                      "through the conversion) or any conversion", choices=("customer", "any")),),
    ),
    Metric(
        id="stage_length",
        title="Pipeline stage length",
        description=(
            "Average days deals spend in a stage, from the stage history (`deal_stage_changes`). A stay "
            "starts at a row's `entered_at` and ends at the `entered_at` of the deal's next row (by time); "
            "re-entering a stage starts a new stay. A stay counts in the period in which it ends. Stays in "
            "closed stages (`pipeline_stages.is_closed`) and the final stay of a closed deal have no "
            "duration and are left out. The current stay of an open deal has no end: it is left out with "
            "`open_stays=exclude` (default); with `open_stays=until_today` it is measured up to the end of "
            "the reporting day of the run and counts in the period that contains that day. `per=stay` "
            "averages over stays; `per=deal` first adds up each deal's stays in a stage that end in the "
            "period and averages over deals (deal and stage pairs when stages are pooled). `stage` picks "
            "one stage (empty: all stages pooled); `--segment stage` gives one value per stage, and deal "
            "dimensions (owner, team, pipeline, region, ...) apply through the stay's deal. Rows of "
            "deleted stage changes or deleted deals are left out. " + STAT_DOC),
        formula="sum of (next entered_at - entered_at) over the stays ending in the period / number of stays "
                "(or of deals)",
        unit="days",
        direction="lower",
        tables=("deal_stage_changes", "deals", "pipeline_stages"),
        compute=stage_length,
        grouped=stage_length_grouped,
        needs=(
            "deal_stage_changes.deal_id", "deal_stage_changes.stage", "deal_stage_changes.entered_at",
            "deals.is_closed", "pipeline_stages.is_closed",
        ),
        params=(
            Param("stage", str, "", "the stage to measure (stage id as in deal_stage_changes.stage); "
                  "empty: all stages pooled"),
            Param("per", str, "stay", "average per stay, or per deal (a deal's stays in the stage summed)",
                  choices=("stay", "deal")),
            Param("open_stays", str, "exclude", "the current stay of an open deal: left out, or measured until "
                  "the end of today", choices=("exclude", "until_today")),
            stat_param("stays (or deals' summed stays)"),
        ),
    ),
    Metric(
        id="sales_cycle_length",
        title="Sales cycle length",
        description=(
            "Days from a deal's creation (`deals.created_at`) to its close, over the deals won (`deals=won`, "
            "default) or won and lost (`deals=closed`) whose close date (`deals.closed_at`) falls in the "
            "period. The close is, in this order: (1) the exact close moment from the stage history, the "
            "latest `deal_stage_changes.entered_at` of the deal into its current stage (`deals.stage`, "
            "which for a closed deal is its closed stage); (2) when the history has none and `closed_at` "
            "carries only a date, recognized as exactly midnight UTC (Salesforce's CloseDate is a date and "
            "is stored so), whole days from the UTC date of `created_at` to that date, which is the age "
            "Salesforce shows; (3) else `closed_at` itself (a timestamp, as HubSpot's closedate). Mixing a "
            "date with a timestamp would put every cycle half a day short on average. Deals without a "
            "creation date, and deals closed before they were created (typically history imported into "
            "the CRM), are left out and counted in the note. " + STAT_DOC + " Reads `deals` and "
            "`deal_stage_changes`."),
        formula="sum of (close − created_at) in days / number of deals, over deals won (or closed) in the period; "
                "or a percentile of those days",
        unit="days",
        direction="lower",
        tables=("deals", "deal_stage_changes"),
        compute=sales_cycle_length,
        grouped=sales_cycle_length_grouped,
        needs=("deals.created_at", "deals.closed_at", "deals.is_closed", "deals.is_won"),
        params=(Param("deals", str, "won", "measure won deals, or every closed deal (won and lost)",
                      choices=("won", "closed")), stat_param("deals' cycles")),
    ),
    Metric(
        id="quota_attainment",
        title="Quota attainment",
        description=(
            "Won amount over quota. Won amount: the deals won whose close date (`deals.closed_at`) falls in "
            "the period, converted to the reporting currency at the close date's rate. Quota: the `quotas` "
            "rows (loaded with the files connector from `quotas.csv`: owner_id or team, period_start, "
            "period_end, amount, currency) whose whole quota period lies within the reporting period, so a "
            "year adds up its months or quarters; quotas only partly inside the period are not prorated and "
            "do not count. `level=rep` (default) adds up rep quotas (owner_id set); `level=team` adds up team "
            "quotas (owner_id empty, team set). The levels are never added together, so a team quota and its "
            "reps' quotas do not double count, and two quotas of the same rep (or team) covering the same "
            "days are an error. Per rep: `--segment owner` (quotas.owner_id and deals.owner_id). Per team: "
            "`--segment team --param level=team` (quotas.team; deals through their owner's team). With "
            "level=rep and `--segment team`, a rep quota belongs to the team in its own `team` column. The "
            "numerator is every won deal in the segment, whether or not its owner has a quota."),
        formula="won amount closed in the period / sum of the quotas whose period lies within it",
        unit="ratio",
        direction="higher",
        tables=("quotas", "deals"),
        compute=quota_attainment,
        grouped=quota_attainment_grouped,
        needs=(
            "quotas.owner_id", "quotas.period_start", "quotas.period_end", "quotas.amount", "deals.is_won",
            "deals.closed_at", "deals.amount",
        ),
        params=(Param("level", str, "rep", "which quotas to add up: rep quotas (owner_id set) or team quotas "
                      "(owner_id empty, team set)", choices=("rep", "team")),),
    ),
    Metric(
        id="sales_volume",
        title="Sales volume",
        description=(
            "Revenue won in the period: the amounts of the deals won (`deals.is_won`) whose close date "
            "(`deals.closed_at`) falls in the period, converted to the reporting currency at the close "
            "date's rate; deals without an amount add nothing. Additive: a year is the sum of its months. "
            "Reads `deals`."),
        formula="sum of won deal amounts, by close date",
        unit="currency",
        direction="higher",
        tables=("deals",),
        compute=sales_volume,
        grouped=sales_volume_grouped,
        needs=("deals.is_won", "deals.closed_at", "deals.amount"),
        additive=True,
    ),
    Metric(
        id="avg_deal_size",
        title="Average deal size",
        description=(
            "Mean amount of the deals won whose close date (`deals.closed_at`) falls in the period, converted "
            "to the reporting currency at the close date's rate. Won deals without an amount are left out "
            "rather than counted as zero. Reads `deals`."),
        formula="sum of won deal amounts / number of won deals with an amount, by close date",
        unit="currency",
        direction="higher",
        tables=("deals",),
        compute=avg_deal_size,
        grouped=avg_deal_size_grouped,
        needs=("deals.is_won", "deals.closed_at", "deals.amount"),
    ),
    Metric(
        id="sales_velocity",
        title="Sales velocity",
        description=(
            "Revenue the pipeline produces per day: opportunities × average deal size × win rate / sales "
            "cycle length, every input taken over the period from `deals`. Opportunities: the deals created "
            "in the period (`opportunities=created`, default) or the deals open at the period's end "
            "(`opportunities=open`). Average deal size: as `avg_deal_size` (won deals closed in the period, "
            "reporting currency). Win rate: won / (won + lost) by count over deals closed in the period. "
            "Sales cycle length: the mean of `sales_cycle_length` (days from creation to close of the won "
            "deals closed in the period, the close taken from the stage history where it has it). Null when no "
            "deal was won in the period. The numerator is opportunities × deal "
            "size × win rate (currency), the denominator the cycle length (days)."),
        formula="(opportunities × avg won deal size × win rate) / avg sales cycle days",
        unit="currency",
        direction="higher",
        tables=("deals", "deal_stage_changes"),
        compute=sales_velocity,
        grouped=sales_velocity_grouped,
        needs=("deals.created_at", "deals.closed_at", "deals.is_closed", "deals.is_won", "deals.amount"),
        params=(Param("opportunities", str, "created", "which deals are the opportunities: created in the "
                      "period, or open at its end", choices=("created", "open")),),
    ),
    Metric(
        id="pipeline_value",
        title="Pipeline value",
        description=(
            "Total amount of the deals open at the end of the period: created (`deals.created_at`) before "
            "the period ends and not closed before it ends (`is_closed` false, or `closed_at` at or after "
            "the end). Amounts are today's (the store keeps no amount history), converted at the rate of "
            "the period's last day. With `weighted=true` each deal counts its amount × the win probability "
            "(`pipeline_stages.probability`, 0..1) of the stage it was in at the period's end: its last "
            "`deal_stage_changes` row entered before the end, else its current `deals.stage`; the stage row "
            "of the deal's pipeline is preferred. An open stage without a probability is an error. A "
            "snapshot, not additive over periods. Reads `deals`, `deal_stage_changes`, `pipeline_stages`."),
        formula="sum of open deal amounts at the period's end (× stage probability when weighted)",
        unit="currency",
        direction="higher",
        tables=("deals", "deal_stage_changes", "pipeline_stages"),
        compute=pipeline_value,
        grouped=pipeline_value_grouped,
        needs=("deals.created_at", "deals.closed_at", "deals.is_closed", "deals.amount"),
        params=(Param("weighted", bool, False, "weigh each open deal by its stage's win probability"),),
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
