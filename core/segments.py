"""Segments: splitting a metric by a dimension of the normalized store.

A dimension is resolved per table, so one ``--segment`` works across the tables a
metric reads. It is looked up in this order:

1. a column of the table (``pipeline``, ``lead_source``, ``channel``, ``source``, ...);
2. an alias of a reference column (``owner``/``rep``/``agent`` → ``owner_id``, ``account`` → ``account_id``);
3. an attribute of the row's owner (``team``, from ``users``);
4. anything above on the row's account (``region``, ``industry``, ``segment``, and for rows without an
   owner of their own, the account owner and that owner's ``team``);
5. for rows of a deal (``deal_stage_changes``), any of the above on the deal;
6. a custom field: ``extra.<name>`` (or a bare name found nowhere above) in the row's ``extra``,
   else in its account's ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.sql.elements import ColumnElement

from .errors import MetricError
from .models import ENTITIES

ALIASES = {"owner": "owner_id", "rep": "owner_id", "agent": "owner_id", "account": "account_id"}
OWNER_ATTRIBUTES = ("team", "role")
ACCOUNT_ATTRIBUTES = ("region", "industry", "segment")


@dataclass(frozen=True)
class Segment:
    """One value of a dimension: the rows whose dimension equals ``value`` (None: rows without one)."""

    dimension: str
    value: Any

    def as_dict(self) -> dict[str, Any]:
        return {self.dimension: self.value}


def expression(table: Table, dimension: str) -> ColumnElement:
    """The dimension's value for each row of ``table`` (a column or a correlated subquery)."""
    custom = dimension.removeprefix("extra.")
    if dimension.startswith("extra."):
        return _custom(table, custom, dimension)
    column = ALIASES.get(dimension, dimension)
    if column in table.c and column != "extra":
        return table.c[column]
    if dimension in OWNER_ATTRIBUTES and "owner_id" in table.c:
        return _through("users", table.c.owner_id, table, dimension)
    if "account_id" in table.c and dimension in _KNOWN_COLUMNS and _applies("accounts", dimension):
        # e.g. the region of a deal's account, or the owner of a subscription's account
        return _through("accounts", table.c.account_id, table, dimension)
    if "deal_id" in table.c:  # stage changes take the dimensions of their deal
        return _through("deals", table.c.deal_id, table, dimension)
    if dimension in _KNOWN_COLUMNS:
        raise MetricError(f"segment {dimension!r} does not apply to {table.name}")
    return _custom(table, custom, dimension)


def _applies(table_name: str, dimension: str) -> bool:
    try:
        expression(ENTITIES[table_name].__table__, dimension)
    except MetricError:
        return False
    return True


def _custom(table: Table, name: str, dimension: str) -> ColumnElement:
    if "extra" not in table.c:  # sync_runs has no custom fields
        raise MetricError(f"segment {dimension!r} does not apply to {table.name}")
    own = table.c.extra[name].as_string()
    if "account_id" not in table.c:
        return own
    return func.coalesce(own, _through("accounts", table.c.account_id, table, f"extra.{name}"))


def _through(target_name: str, reference: ColumnElement, table: Table, dimension: str) -> ColumnElement:
    """The dimension on the ``target_name`` row that ``reference`` points at, within the same source.

    The target is aliased, so the lookup never correlates with the same table in the
    metric's own query (a metric reading subscriptions joined to accounts, say).
    """
    target = ENTITIES[target_name].__table__.alias(f"{table.name}_{target_name}")
    return (select(expression(target, dimension)).where(target.c.id == reference, target.c.source == table.c.source)
            .limit(1).scalar_subquery())


def condition(table: Table, segment: Segment | None) -> ColumnElement | None:
    if segment is None:
        return None
    value = expression(table, segment.dimension)
    return value.is_(None) if segment.value is None else value == segment.value


def values(conn, table: Table, dimension: str) -> list[Any]:
    """Every value the dimension takes over the live rows of ``table``, nulls last."""
    value = expression(table, dimension).label("value")
    live = [table.c.is_deleted.is_(False)] if "is_deleted" in table.c else []
    found = [row.value for row in conn.execute(select(value).where(*live).distinct())]
    return sorted((v for v in found if v is not None), key=str) + ([None] if None in found else [])


_KNOWN_COLUMNS = {c.name for model in ENTITIES.values() for c in model.__table__.columns} | set(ALIASES) \
    | set(OWNER_ATTRIBUTES) | set(ACCOUNT_ATTRIBUTES)
