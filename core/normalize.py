"""Turning source records into DB-ready rows of a normalized table.

A :class:`RowBuilder` is planned once per table and field layout, then applied to
every record: it maps source fields to columns, recodes values, parses types,
adds constants and the connector's ``source``/``synced_at``, and collects unknown
fields into ``extra``. Connectors share it so that every source parses alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo

from .store import column_defaults, column_kinds, required_columns

TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}


class FieldError(ValueError):
    """A value could not be converted; ``column`` names the source field."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r}: {reason}")
        self.column = column


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


class RowBuilder:
    """Builds rows for ``table`` from records whose fields are named ``fields``."""

    def __init__(self, table: str, fields: Sequence[str], layout: Layout, *, source: str,
                 synced_at: datetime, encoder: Callable[[str], Callable | None]) -> None:
        kinds = column_kinds(table)
        defaults = column_defaults(table)
        self.table = table
        source_of = {col: layout.columns.get(col, col) for col in kinds}
        index = {f: i for i, f in enumerate(fields)}
        for col, src in layout.columns.items():
            if col not in kinds:
                raise FieldError(src, f"mapped to unknown column {col!r} of table {table}")
            if src not in index:
                raise FieldError(src, f"mapped to {col!r} but not found in the source fields")
        tz = ZoneInfo(layout.timezone) if layout.timezone != "UTC" else UTC
        plan: list[tuple[str, int, Callable[[Any], Any]]] = []
        used = set()
        for col, kind in kinds.items():
            if col in ("source", "synced_at", "extra") or col in layout.constants or col in layout.derive:
                continue
            src = source_of[col]
            if src in index:
                used.add(src)
                plan.append((col, index[src], _converter(src, kind, layout, tz, encoder(kind),
                                                         layout.values.get(col), defaults.get(col))))
        derived = []
        for col, d in layout.derive.items():
            if col not in kinds:
                raise FieldError(col, f"derived column is not a column of table {table}")
            if d.source not in index:
                raise FieldError(d.source, f"needed to derive {col!r} but not found in the source fields")
            conv = _converter(d.source, kinds[col], layout, tz, encoder(kinds[col]), None, defaults.get(col))
            recode = layout.values.get(_column_of(source_of, d.source)) or {}
            derived.append((col, index[d.source], d, recode, conv))
        present = {c for c, _, _ in plan} | set(layout.constants) | set(layout.derive)
        missing = required_columns(table) - present
        if missing:
            raise FieldError(sorted(missing)[0], "required field missing from the source")
        self.required = [(c, i) for c, i, _ in plan if c in required_columns(table)]
        self.extra_fields = [(f, i) for f, i in index.items() if f not in used]
        encode_json = encoder("json")
        # NOT NULL columns the source lacks take their default.
        fixed = {**{c: d for c, d in defaults.items() if c not in present}, **layout.constants}
        constants = [(c, _encode(encoder(kinds[c]), v)) for c, v in fixed.items() if c in kinds]
        self.columns = ["source", "synced_at"] + [c for c, _, _ in plan] + [c for c, *_ in derived] + [
            c for c, _ in constants] + ["extra"]
        self._head = (source, _encode(encoder("datetime"), synced_at))
        self._plan = [(i, conv) for _, i, conv in plan]
        self._derived = derived
        self._constants = tuple(v for _, v in constants)
        self._encode_json = encode_json

    def build(self, record: Sequence[Any]) -> tuple:
        """A DB-ready row (in ``columns`` order) from one record; raises FieldError."""
        for col, i in self.required:
            if record[i] in ("", None):
                raise FieldError(col, "required field is empty")
        values = [conv(record[i]) for i, conv in self._plan]
        for col, i, d, recode, conv in self._derived:
            raw = record[i]
            raw = recode.get(raw, raw)
            values.append(conv(d.mapping[raw]) if raw in d.mapping else conv(d.default))
        extra = {f: record[i] for f, i in self.extra_fields if record[i] not in ("", None)}
        return (*self._head, *values, *self._constants, self._encode_json(extra) if extra else None)


def _column_of(source_of: dict[str, str], src: str) -> str | None:
    return next((c for c, s in source_of.items() if s == src), None)


def _encode(encoder: Callable | None, value: Any) -> Any:
    return encoder(value) if encoder and value is not None else value


def _converter(name: str, kind: str, layout: Layout, tz: tzinfo, encode: Callable | None,
               recode: dict[str, Any] | None, default: Any) -> Callable[[Any], Any]:
    parse = _PARSERS[kind](layout, tz)

    def convert(raw: Any) -> Any:
        if recode is not None and raw in recode:
            raw = recode[raw]
        if raw is None or raw == "":
            return default
        try:
            value = parse(raw)
        except (ValueError, TypeError, OverflowError):
            raise FieldError(name, f"not a valid {kind}: {raw!r}") from None
        return encode(value) if encode else value

    return convert


def _datetime_parser(layout: Layout, tz: tzinfo) -> Callable[[Any], datetime]:
    fmt = layout.datetime_format

    def parse(raw: Any) -> datetime:
        if isinstance(raw, datetime):
            value = raw
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return datetime.fromtimestamp(raw / 1000 if raw > 1e11 else raw, UTC).replace(tzinfo=None)
        else:
            value = datetime.strptime(raw, fmt) if fmt else datetime.fromisoformat(raw)
        if value.tzinfo is None:
            if tz is UTC:
                return value
            value = value.replace(tzinfo=tz)
        return value.astimezone(UTC).replace(tzinfo=None)

    return parse


def _date_parser(layout: Layout, tz: tzinfo) -> Callable[[Any], date]:
    fmt = layout.date_format

    def parse(raw: Any) -> date:
        if isinstance(raw, date):
            return raw if not isinstance(raw, datetime) else raw.date()
        if fmt:
            return datetime.strptime(raw, fmt).date()
        return date.fromisoformat(raw[:10]) if len(raw) > 10 and raw[10] in "T " else date.fromisoformat(raw)

    return parse


def _bool_parser(layout: Layout, tz: tzinfo) -> Callable[[Any], bool]:
    def parse(raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise ValueError(raw)

    return parse


def _float_parser(layout: Layout, tz: tzinfo) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        if isinstance(raw, bool):
            raise TypeError(raw)
        return float(raw)

    return parse


def _int_parser(layout: Layout, tz: tzinfo) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise TypeError(raw)
        return int(raw)

    return parse


def _str_parser(layout: Layout, tz: tzinfo) -> Callable[[Any], str]:
    return lambda raw: raw if isinstance(raw, str) else str(raw)


_PARSERS: dict[str, Callable[[Layout, tzinfo], Callable[[Any], Any]]] = {
    "datetime": _datetime_parser,
    "date": _date_parser,
    "bool": _bool_parser,
    "float": _float_parser,
    "int": _int_parser,
    "str": _str_parser,
}
