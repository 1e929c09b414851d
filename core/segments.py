"""Segments: splitting a metric by one or more dimensions of the normalized store.

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

A name that is none of these, and no live row holds as a custom field, is refused with a
did-you-mean (:func:`check`): a typo must not read as one segment holding every row.
Several dimensions split by every combination of their values that occurs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import Column, String, Table, and_, func, literal, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.engine import Connection
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect
from sqlalchemy.sql.util import ClauseAdapter

from .errors import ConfigError, MetricError
from .models import ENTITIES, SyncRun
from .store import column_kinds
from .suggest import did_you_mean

ALIASES = {"owner": "owner_id", "rep": "owner_id", "agent": "owner_id", "account": "account_id"}
OWNER_ATTRIBUTES = ("team", "role")
ACCOUNT_ATTRIBUTES = ("region", "industry", "segment")
#: Dimensions whose values are ids, and where their display label is found: (table, column).
LABELS = {"owner_id": ("users", "name"), "account_id": ("accounts", "name"), "stage": ("pipeline_stages", "label")}


@dataclass(frozen=True)
class Segment:
    """One combination of dimension values: the rows where each dimension has its value (None: rows without one)."""

    parts: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, values: dict[str, Any]) -> Segment:
        return cls(tuple(values.items()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.parts)


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
    own = CustomField(table.c.extra, name)
    if "account_id" not in table.c:
        return own
    return func.coalesce(own, _through("accounts", table.c.account_id, table, f"extra.{name}"))


class CustomField(FunctionElement):
    """A custom field's value as text: ``extra ->> name``, the name bound as a parameter.

    SQLite's JSON paths match a key as the stored JSON spells it, so a name that JSON escapes
    (non-ASCII, a quote, a backslash) would be found on PostgreSQL and not on SQLite; there,
    such a name is looked up among the keys that ``json_each`` decodes."""

    type = String()
    # The name shapes the SQL (a JSON path, or a json_each lookup), not only a bound value: a statement
    # compiled for one custom field must never be reused for another from SQLAlchemy's cache.
    inherit_cache = False

    def __init__(self, extra: ColumnElement, name: str) -> None:
        self.field = name
        super().__init__(extra, literal(name, String()))


@compiles(CustomField)
def _custom_field(element: CustomField, compiler, **kw) -> str:
    extra = next(iter(element.clauses))
    return compiler.process(extra[element.field].as_string(), **kw)


@compiles(CustomField, "sqlite")
def _custom_field_sqlite(element: CustomField, compiler, **kw) -> str:
    if json.dumps(element.field) == f'"{element.field}"':  # spelt as is: the path is the fast way
        return _custom_field(element, compiler, **kw)
    extra, name = element.clauses
    return (f"(SELECT CAST(value AS VARCHAR) FROM json_each({compiler.process(extra, **kw)}) "
            f"WHERE key = {compiler.process(name, **kw)})")


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
    return and_(*(_equals(expression(table, dimension), value) for dimension, value in segment.parts))


def _equals(value: ColumnElement, wanted: Any) -> ColumnElement:
    return value.is_(None) if wanted is None else value == wanted


def values(conn: Connection, table: Table, dimensions: Sequence[str]) -> list[tuple]:
    """Every combination of the dimensions' values that a live row of ``table`` has; sorted, nulls last."""
    columns = [expression(table, d) for d in dimensions]
    live = [table.c.is_deleted.is_(False)] if "is_deleted" in table.c else []
    read = columns_read(table, *columns)
    looked_up = any(isinstance(e, ScalarSelect) for column in columns for e in visitors.iterate(column))
    source, where = table, live
    if looked_up and "extra" not in {c.name for c in read}:
        # Through the owner or the account: looked up once per distinct id (a few hundred owners), not once
        # per row (a million deals, five million stage changes).
        source, where = select(*sorted(read, key=lambda c: c.name)).where(*live).distinct().subquery("keys"), []
        columns = [ClauseAdapter(source).traverse(column) for column in columns]
    found = conn.execute(select(*(c.label(f"value{i}") for i, c in enumerate(columns))).select_from(source)
                         .where(*where).distinct()).all()
    return sorted((tuple(row) for row in found), key=lambda row: [(v is None, str(v)) for v in row])


def columns_read(table: Table, *expressions: ColumnElement) -> set[Column]:
    """The columns of ``table`` that ``expressions`` read (a segment's key through the owner reads
    ``owner_id`` and ``source``)."""
    return {c for e in expressions for c in visitors.iterate(e) if isinstance(c, Column) and c.table is table}


def labels(conn: Connection, dimension: str) -> dict[Any, str]:
    """Display names of a dimension's values where they are ids: users' names, accounts' names, stage labels.

    Ids are per source; should two sources share one, the first label in sort order is shown.
    """
    where = LABELS.get(ALIASES.get(dimension, dimension))
    if where is None:
        return {}
    table = ENTITIES[where[0]].__table__
    key = table.c.stage if where[0] == "pipeline_stages" else table.c.id
    label = table.c[where[1]]
    rows = conn.execute(select(key, func.min(label)).where(table.c.is_deleted.is_(False), key.is_not(None),
                                                           label.is_not(None)).group_by(key))
    return dict(rows.all())


def check(conn: Connection, dimension: str) -> None:
    """Refuse a dimension that names nothing: no column, alias or owner/account attribute, and no custom
    field that a live row holds. The message lists what exists, with a did-you-mean."""
    custom = dimension.removeprefix("extra.")
    if dimension in _KNOWN_COLUMNS and not dimension.startswith("extra."):
        return
    fields = custom_fields(conn)
    if custom in fields:
        return
    what = f"no live row has a custom field {custom!r}" if dimension.startswith("extra.") else \
        "no column, alias or custom field has that name"
    candidates = [*DIMENSIONS, *(f"extra.{f}" for f in fields)] if dimension.startswith("extra.") \
        else [*DIMENSIONS, *fields]
    known = ", ".join([*DIMENSIONS, *(f"extra.{f}" for f in fields)])
    raise ConfigError(f"--segment {dimension!r}: {what}{did_you_mean(dimension, candidates)} (dimensions: {known})")


def custom_fields(conn: Connection) -> list[str]:
    """The names of the custom fields (keys of ``extra``) that some live row of any table holds."""
    names: set[str] = set()
    for model in ENTITIES.values():
        table = model.__table__.name
        if conn.dialect.name == "sqlite":
            sql = (f"SELECT DISTINCT key FROM {table}, json_each({table}.extra) "
                   f"WHERE {table}.is_deleted = 0 AND json_type({table}.extra) = 'object'")
        else:
            sql = (f"SELECT DISTINCT jsonb_object_keys(extra::jsonb) FROM {table} "
                   f"WHERE is_deleted = false AND json_typeof(extra) = 'object'")
        names.update(row[0] for row in conn.execute(text(sql)))
    return sorted(names)


_KNOWN_COLUMNS = {c.name for model in (*ENTITIES.values(), SyncRun) for c in model.__table__.columns} \
    | set(ALIASES) | set(OWNER_ATTRIBUTES) | set(ACCOUNT_ATTRIBUTES)
#: The dimensions worth offering: aliases, owner and account attributes, then the text columns that
#: are not ids or free text (names, emails) of every table.
DIMENSIONS = list(dict.fromkeys([
    *ALIASES, *OWNER_ATTRIBUTES, *ACCOUNT_ATTRIBUTES,
    *sorted({name for table in ENTITIES for name, kind in column_kinds(table).items()
             if kind == "str" and name not in ("id", "name", "email", "company", "campaign", "label")
             and not name.endswith("_id")}),
    "connector",  # of sync_runs (days_since_sync)
]))
