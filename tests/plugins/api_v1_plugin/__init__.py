"""A plugin written against plugin API 1.x, importing nothing but ``from crmkpi import ...``: a duration
metric (both computes, the ``stat`` param, notes on what it leaves out) and a connector that feeds ``users``
from records in its config. It declares the range it works with."""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel
from sqlalchemy import case, func, literal_column, select

from crmkpi import (PERCENTILES, STAT_DOC, TABLES, Cell, Checkpoint, ConnectorType, Coverage, FieldError, Grid,
                    Layout, Metric, MetricContext, Param, RecordRows, SourceDataError, StartDate, Stream,
                    StreamStats, SyncContext, Value, at_least, by_label, duration_sums, evaluated_once, hookimpl,
                    left_out_note, stat_param, stat_value, statistic)

CRMKPI_PLUGIN_API = ">=1.0,<2"

DEALS = TABLES["deals"]
#: Deals closed (won or lost) at or above ``min_amount``, whatever the period.
CLOSED = DEALS.c.is_closed.is_(True)


def _counted(min_amount: float) -> tuple:
    return CLOSED, func.coalesce(DEALS.c.amount, 0) >= min_amount


def deal_age(ctx: MetricContext) -> Value:
    """Days from creation to close of the deals closed in the period."""
    days = ctx.days_between(DEALS.c.created_at, DEALS.c.closed_at)
    counted = (*_counted(ctx.params["min_amount"]), ctx.in_period(DEALS.c.closed_at))
    ctx.record("closed deals", DEALS, *counted)
    durations = evaluated_once(select(days.label("days")).where(*ctx.scope(DEALS), *counted)).subquery()
    total, count, negative, _ = ctx.conn.execute(select(*duration_sums(durations.c.days))).one()
    if not count:
        return _noted(Value(None, note="no deal closed in the period"), negative)
    return _noted(statistic(ctx, select(durations.c.days).where(durations.c.days >= 0), total, count), negative)


def _noted(value: Value, negative: int) -> Value:
    return value.noted(left_out_note(negative, "deal(s) closed before they were created"))


def deal_age_grouped(grid: Grid) -> dict[Cell, Value]:
    days = grid.days_between(DEALS.c.created_at, DEALS.c.closed_at)
    counted = _counted(grid.params["min_amount"])
    sums = grid.by_part(DEALS, DEALS.c.closed_at, *duration_sums(days), where=counted)
    stat = grid.params["stat"]
    percentiles = {} if stat == "mean" else grid.percentiles(
        DEALS, DEALS.c.closed_at, case((days >= 0, days)), PERCENTILES[stat], where=counted)
    values = {}
    for cell in grid.cells:
        total, count, negative, _ = sums.get(cell, (None, 0, 0, 0))
        value = stat_value(stat, total, count, lambda percent: percentiles[cell]) if count else \
            Value(None, note="no deal closed in the period")
        values[cell] = _noted(value, negative)
    return values


def closed_by_owner(grid: Grid) -> dict[Cell, Value]:
    """Deals closed per cell, counted in a query of the plugin's own (by_label groups by the segment key)."""
    keys = grid.segment_key(DEALS)
    counts = grid.by_cell(grid.placed(DEALS, DEALS.c.closed_at, *keys, func.count(), where=(CLOSED,))
                          .group_by(literal_column("part"), *by_label(*keys)))
    return {cell: Value(float(counts[cell][0]) if cell in counts else 0.0) for cell in grid.cells}


def closed_deals(ctx: MetricContext) -> Value:
    return Value(float(ctx.count("closed deals", DEALS, CLOSED, ctx.in_period(DEALS.c.closed_at))))


METRICS = (
    Metric(id="api_deal_age", title="Deal age at close", unit="days", direction="lower", tables=("deals",),
           description="Days from creation to close of the deals closed in the period. " + STAT_DOC,
           formula="closed_at - created_at of deals closed in the period", compute=deal_age,
           grouped=deal_age_grouped, needs=("deals.closed_at",),
           params=(stat_param("deals' ages"),
                   Param("min_amount", float, 0.0, "only deals of at least this amount", check=at_least(0)))),
    Metric(id="api_closed_deals", title="Closed deals", unit="count", direction="higher", tables=("deals",),
           description="Deals closed in the period.", formula="count of deals closed in the period",
           compute=closed_deals, grouped=closed_by_owner, additive=True),
)


class UsersSettings(BaseModel):
    """The users to load, as records (what an API would answer)."""

    start_date: StartDate
    users: list[dict[str, Any]]


class UsersStream:
    """A :class:`Stream` of the records in the config, built as every connector builds rows."""

    name = "users"
    table = "users"

    def __init__(self, context: SyncContext) -> None:
        self.records: list[dict[str, Any]] = context.settings.users  # type: ignore[attr-defined]
        self.rows = RecordRows("users", Layout(columns={"name": "full_name"}), source=context.name,
                               synced_at=context.synced_at, encoder=context.encoder)
        self.columns = self.rows.columns
        self.stats = StreamStats()

    def read(self, cursor: str | None, state: dict[str, Any] | None) -> Iterator[list[tuple] | Checkpoint]:
        batch = []
        for record in self.records:
            self.stats.read += 1
            try:
                batch.append(self.rows.build(record))
            except FieldError as exc:
                self.stats.skip(f"user {record.get('id')!r}: {exc}")
        if any(record.get("id") == "boom" for record in self.records):
            raise SourceDataError("users: the source sent a record with id 'boom'")
        self.coverage = Coverage(frozenset(self.rows.provided))
        yield batch
        yield Checkpoint(cursor="page-1", deleted=tuple(r["id"] for r in self.records if r.get("archived")))


def users_streams(context: SyncContext) -> list[Stream]:
    return [UsersStream(context)]


SOURCE = ConnectorType(name="api_v1_source", description="Users from records in the config", settings=UsersSettings,
                       streams=users_streams)


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)


@hookimpl
def register_connectors(register):
    register(SOURCE)
