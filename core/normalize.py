"""Turning source records into DB-ready rows of a normalized table.

A :class:`RowBuilder` is planned once per table and field layout, then applied to
every record: it maps source fields to columns, recodes values, parses types,
adds constants and the connector's ``source``/``synced_at``, and collects unknown
fields into ``extra``. Connectors share it so that every source parses alike.

Building rows is the hot loop of a sync (a million rows is fifteen million values),
so :meth:`RowBuilder.build` runs a function generated for the plan, with the cheap
conversions inlined; when that raises, the same record goes through the checked
path, which names the bad field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo

from .store import column_defaults, column_kinds, required_columns

BOOLEANS = {
    **{text: True for text in ("true", "t", "yes", "y", "1")},
    **{text: False for text in ("false", "f", "no", "n", "0")},
}
BOOLEANS.update({k.upper(): v for k, v in BOOLEANS.items()})
BOOLEANS.update({k.capitalize(): v for k, v in BOOLEANS.items()})
BOOLEANS.update({True: True, False: False})  # JSON booleans (1 and 0 hash alike and map alike)

class FieldError(ValueError):
    """A value could not be converted; ``column`` names the source field."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r}: {reason}")
        self.column = column
        self.reason = reason

    def __reduce__(self):  # pickle (e.g. from a row worker) with both arguments
        return type(self), (self.column, self.reason)


@dataclass
class Derivation:
    """Compute a column from another field's value, e.g. ``is_won`` from ``stage``."""

    source: str
    mapping: dict[str, Any]
    default: Any = None


@dataclass
class Layout:
    """How one source object maps onto a normalized table (all optional)."""

    columns: dict[str, str] = field(default_factory=dict)  # normalized column -> source field
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> {raw: recoded}
    derive: dict[str, Derivation] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    datetime_format: str | None = None
    date_format: str | None = None
    timezone: str = "UTC"


@dataclass
class _Column:
    name: str
    source: str  # the source field it is read from
    index: int
    kind: str
    convert: Callable[[Any], Any]  # parse + encode; raises on bad input
    recode: dict[str, Any] | None
    default: Any
    required: bool


class RowBuilder:
    """Builds rows for ``table`` from records whose fields are named ``fields``."""

    def __init__(self, table: str, fields: Sequence[str], layout: Layout, *, source: str,
                 synced_at: datetime, encoder: Callable[[str], Callable | None]) -> None:
        kinds = column_kinds(table)
        defaults = column_defaults(table)
        required = required_columns(table)
        index = {f: i for i, f in enumerate(fields)}
        for col, src in layout.columns.items():
            if col not in kinds:
                raise FieldError(src, f"mapped to unknown column {col!r} of table {table}")
            if src not in index:
                raise FieldError(src, f"mapped to {col!r} but not found in the source fields")
        tz = ZoneInfo(layout.timezone) if layout.timezone != "UTC" else UTC
        iso_text = encoder("iso_datetime")

        def column(name: str, src: str) -> _Column:
            kind = kinds[name]
            convert = _value_fn(kind, layout, tz, encoder(kind), iso_text)
            return _Column(name, src, index[src], kind, convert,
                           layout.values.get(name), defaults.get(name), name in required)

        self.plan = [
            column(col, layout.columns.get(col, col)) for col in kinds
            if col not in ("source", "synced_at", "extra") and col not in layout.constants
            and col not in layout.derive and layout.columns.get(col, col) in index
        ]
        self.derived = []
        for col, d in layout.derive.items():
            if col not in kinds:
                raise FieldError(col, f"derived column is not a column of table {table}")
            if d.source not in index:
                raise FieldError(d.source, f"needed to derive {col!r} but not found in the source fields")
            source_column = next((c.name for c in self.plan if c.source == d.source), None)
            self.derived.append((column(col, d.source), d, layout.values.get(source_column) or {}))
        present = {c.name for c in self.plan} | set(layout.constants) | set(layout.derive)
        missing = required - present
        if missing:
            raise FieldError(sorted(missing)[0], "required field missing from the source")
        # NOT NULL columns the source lacks take their default.
        fixed = {**{c: d for c, d in defaults.items() if c not in present}, **layout.constants}
        self.constants = [(c, _encode(encoder(kinds[c]), v)) for c, v in fixed.items() if c in kinds]
        used = {c.source for c in self.plan}
        self.extra_fields = [(f, i) for f, i in index.items() if f not in used]
        self.columns = ["source", "synced_at", *(c.name for c in self.plan), *(c.name for c, *_ in self.derived),
                        *(c for c, _ in self.constants), "extra"]
        self._head = (source, _encode(encoder("datetime"), synced_at))
        self._encode_json = encoder("json")
        self.build = self._compile()

    def build_checked(self, record: Sequence[Any]) -> tuple:
        """A DB-ready row (in ``columns`` order) from one record; raises FieldError naming the field."""
        values = []
        for c in self.plan:
            values.append(_checked(c, record[c.index]))
        for c, d, recode in self.derived:
            raw = record[c.index]
            raw = recode.get(raw, raw) if _hashable(raw) else raw
            values.append(_checked(c, d.mapping.get(raw, d.default) if _hashable(raw) else d.default))
        extra = {f: record[i] for f, i in self.extra_fields if record[i] not in ("", None)}
        return (*self._head, *values, *(v for _, v in self.constants),
                self._encode_json(extra) if extra else None)

    def _compile(self) -> Callable[[Sequence[Any]], tuple]:
        """Generate ``build(record)``: the checked path's semantics, without its per-value calls."""
        env: dict[str, Any] = {"BOOLEANS": BOOLEANS, "checked": self.build_checked, "head": self._head,
                               "consts": tuple(v for _, v in self.constants), "dump": self._encode_json}
        lines = ["def build(r):", "    try:"]
        names = []
        for n, c in enumerate(self.plan):
            v = f"v{n}"
            names.append(v)
            lines.append(f"        {v} = r[{c.index}]")
            if c.recode:
                env[f"rec{n}"] = c.recode
                lines.append(f"        {v} = rec{n}.get({v}, {v})")
            env[f"d{n}"] = c.default
            if c.required:
                lines.append(f"        if {v} is None or {v} == '': return checked(r)")
            if c.kind == "str":
                env[f"f{n}"] = c.convert
                expr = f"{v} if {v}.__class__ is str else f{n}({v})"
            elif c.kind == "bool":
                expr = f"BOOLEANS[{v}]"
            elif c.kind == "float":
                expr = f"float({v}) if {v}.__class__ is not bool else checked(r)"
            else:
                env[f"f{n}"] = c.convert
                expr = f"f{n}({v})"
            lines.append(f"        {v} = d{n} if {v} is None or {v} == '' else {expr}")
            if c.kind == "float":  # nan and inf go to the checked path, which rejects them
                env["isfinite"] = math.isfinite
                lines.append(f"        if {v} is not None and not isfinite({v}): return checked(r)")
        derived = ""
        if self.derived:
            env["derived"] = self.derived
            env["checked_value"] = _checked
            derived = "*[checked_value(c, d.mapping.get(rec.get(r[c.index], r[c.index]), d.default)) " \
                      "for c, d, rec in derived], "
        extra = "None"
        if self.extra_fields:
            env["extra_fields"] = self.extra_fields
            lines.append("        x = {f: r[i] for f, i in extra_fields if r[i] != '' and r[i] is not None}")
            extra = "dump(x) if x else None"
        values = "".join(f"{v}, " for v in names)
        lines.append(f"        return (*head, {values}{derived}*consts, {extra})")
        lines.append("    except Exception:")
        lines.append("        return checked(r)")
        exec("\n".join(lines), env)  # noqa: S102 - source built above from column names only
        return env["build"]


class RecordRows:
    """Rows of ``table`` from dict records (JSON Lines, API responses).

    Every record is read against the same known fields, so a record may omit any of
    them; only each distinct set of unknown keys (which go to ``extra``) needs a
    :class:`RowBuilder` of its own. ``columns`` is the same for all of them.
    """

    def __init__(self, table: str, layout: Layout, *, source: str, synced_at: datetime,
                 encoder: Callable[[str], Callable | None]) -> None:
        known = [layout.columns.get(c, c) for c in column_kinds(table) if c not in ("source", "synced_at", "extra")]
        known += [d.source for d in layout.derive.values() if d.source not in known]
        self.known = known
        self._known_set = set(known)
        self._make = lambda fields: RowBuilder(table, fields, layout, source=source, synced_at=synced_at,
                                               encoder=encoder)
        self._builders: dict[tuple[str, ...], RowBuilder] = {(): self._make(known)}
        self.columns = self._builders[()].columns

    def build(self, record: dict[str, Any]) -> tuple:
        """A DB-ready row in ``columns`` order; raises FieldError naming a bad field."""
        extras = tuple(k for k in record if k not in self._known_set)
        builder = self._builders.get(extras)
        if builder is None:
            builder = self._builders[extras] = self._make(self.known + list(extras))
        get = record.get
        return builder.build([get(f) for f in self.known] + [record[k] for k in extras])


def _checked(column: _Column, raw: Any) -> Any:
    if column.recode and _hashable(raw):
        raw = column.recode.get(raw, raw)
    if raw is None or raw == "":
        if column.required:
            raise FieldError(column.source, "required field is empty")
        return column.default
    try:
        return column.convert(raw)
    except (ValueError, TypeError, KeyError, OverflowError):
        raise FieldError(column.source, f"not a valid {column.kind}: {raw!r}") from None


def _hashable(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _encode(encoder: Callable | None, value: Any) -> Any:
    return encoder(value) if encoder and value is not None else value


def _value_fn(kind: str, layout: Layout, tz: tzinfo, encode: Callable | None,
              iso_text: Callable[[str], Any] | None) -> Callable[[Any], Any]:
    """parse (and encode for the store) one non-empty value of ``kind``; raises on bad input."""
    if kind == "datetime":
        parse = _datetime_parser(layout, tz)
        if encode is not None and iso_text is not None and tz is UTC and not layout.datetime_format:
            return lambda raw: iso_text(raw) if raw.__class__ is str else encode(parse(raw))
    elif kind == "date":
        parse = _date_parser(layout)
    elif kind == "bool":
        return BOOLEANS.__getitem__
    elif kind == "float":
        return _float
    elif kind == "int":
        return _int
    else:
        return _text
    if encode is None:
        return parse
    return lambda raw: encode(parse(raw))


def _datetime_parser(layout: Layout, tz: tzinfo) -> Callable[[Any], datetime]:
    """To a UTC datetime: naive (meaning UTC) or aware in UTC; values without an offset are in ``tz``."""
    fmt = layout.datetime_format

    def parse(raw: Any) -> datetime:
        if isinstance(raw, str):
            value = datetime.strptime(raw, fmt) if fmt else datetime.fromisoformat(raw)
        elif isinstance(raw, datetime):
            value = raw
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):  # epoch seconds or milliseconds
            return datetime.fromtimestamp(raw / 1000 if abs(raw) > 1e11 else raw, UTC)
        else:
            raise TypeError(raw)
        offset = value.utcoffset()
        if offset is None:
            return value if tz is UTC else value.replace(tzinfo=tz).astimezone(UTC)
        # Converting a value already at offset zero would cost more than the parse itself.
        return value.astimezone(UTC) if offset else value

    return parse


def _date_parser(layout: Layout) -> Callable[[Any], date]:
    fmt = layout.date_format

    def parse(raw: Any) -> date:
        if isinstance(raw, datetime):
            return raw.date()
        if isinstance(raw, date):
            return raw
        if not isinstance(raw, str):
            raise TypeError(raw)
        if fmt:
            return datetime.strptime(raw, fmt).date()
        return date.fromisoformat(raw[:10]) if len(raw) > 10 and raw[10] in "T " else date.fromisoformat(raw)

    return parse


def _text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (dict, list)):  # a nested API value: keep it readable and parseable
        return json.dumps(raw, default=str, separators=(",", ":"))
    return str(raw)


def _float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise TypeError(raw)
    value = float(raw)
    if not math.isfinite(value):  # nan and inf compare and sum differently on each backend
        raise ValueError(f"not a finite number: {raw!r}")
    return value


def _int(raw: Any) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise TypeError(raw)
    return int(raw)
