"""Turning source records into DB-ready rows of a normalized table.

A :class:`RowBuilder` is planned once per table and field layout, then applied to
every record: it maps source fields to columns, recodes values, parses types,
adds constants and the connector's ``source``/``synced_at``, and collects unknown
fields into ``extra``. Connectors share it so that every source parses alike.

Building rows is the hot loop of a sync (a million rows is fifteen million values),
so :meth:`RowBuilder.build` runs a function generated for the plan, with the cheap
conversions inlined; when that raises, the same record goes through the checked
path, which names the bad field. Both count, in a :class:`Usage`, what the records did
with the layout (which recoding keys matched, which fallback fields were taken), so that
a connector can report mapping that matched nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from .store import column_defaults, column_kinds, required_columns
from .suggest import did_you_mean

BOOLEANS = {
    **{text: True for text in ("true", "t", "yes", "y", "1")},
    **{text: False for text in ("false", "f", "no", "n", "0")},
}
BOOLEANS.update({k.upper(): v for k, v in BOOLEANS.items()})
BOOLEANS.update({k.capitalize(): v for k, v in BOOLEANS.items()})
BOOLEANS.update({True: True, False: False})  # JSON booleans (1 and 0 hash alike and map alike)

#: The range of an ``int`` column: 32 bits, as PostgreSQL's ``integer`` holds (SQLite would take 64).
INT_RANGE = (-2**31, 2**31 - 1)
#: How deep a custom field's JSON may nest: well inside what either store's JSON functions read
#: (SQLite's stop at 1,000 levels), and deeper than any CRM export.
MAX_JSON_DEPTH = 100
NUL_REASON = "contains a NUL character (\\x00), which PostgreSQL cannot store"


class Refused(ValueError):
    """A value of the right type that the store cannot hold alike on every backend; the message says why."""


class FieldError(ValueError):
    """A value could not be converted; ``column`` names the source field, ``target`` the column being built."""

    def __init__(self, column: str, reason: str, target: str | None = None) -> None:
        super().__init__(f"column {column!r}: {reason}")
        self.column = column
        self.reason = reason
        self.target = target

    def __reduce__(self):  # pickle (e.g. from a row worker) with every argument
        return type(self), (self.column, self.reason, self.target)


@dataclass
class Derivation:
    """Compute a column from another field's value, e.g. ``is_won`` from ``stage``.

    ``source`` is a source field, or a normalized column (then the field it is read from).
    ``mapping`` is keyed by the value as the source has it, before ``values`` recodes it.
    """

    source: str
    mapping: dict[Any, Any]
    default: Any = None


@dataclass
class Layout:
    """How one source object maps onto a normalized table (all optional)."""

    #: normalized column -> source field, or several tried in turn (the first non-empty value wins)
    columns: dict[str, str | Sequence[str]] = field(default_factory=dict)
    #: column (or a source field kept in ``extra``) -> {raw: recoded}
    values: dict[str, dict[Any, Any]] = field(default_factory=dict)
    derive: dict[str, Derivation] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    datetime_format: str | None = None
    date_format: str | None = None
    #: column -> strptime format of that column, over ``datetime_format``/``date_format``
    formats: dict[str, str] = field(default_factory=dict)
    timezone: str = "UTC"

    def sources(self, column: str) -> tuple[str, ...]:
        """The source fields ``column`` is read from, in the order they are tried."""
        mapped = self.columns.get(column, column)
        return (mapped,) if isinstance(mapped, str) else tuple(mapped)

    def format_of(self, column: str, kind: str) -> str | None:
        """The strptime format a date or datetime column is parsed with (None: ISO 8601)."""
        return self.formats.get(column) or {"datetime": self.datetime_format, "date": self.date_format}.get(kind)


#: How many distinct values that matched no key of a map are kept for the report.
SAMPLE = 20


class KeyUse:
    """Which keys of a ``values`` or ``derive`` map some record had, and a few values that matched no key."""

    def __init__(self, keys: Iterable[Any]) -> None:
        self.keys = list(keys)
        self.matched: set[Any] = set()
        self.others: set[Any] = set()

    def get(self, mapping: dict[Any, Any], raw: Any, default: Any) -> Any:
        """``mapping[raw]`` (or ``default``), noting whether ``raw`` was a key; ``raw`` must be hashable."""
        if raw in mapping:
            self.matched.add(raw)
            return mapping[raw]
        if len(self.others) < SAMPLE:
            self.others.add(raw)
        return default

    def unmatched(self) -> list[Any]:
        return [k for k in self.keys if k not in self.matched]

    def seen(self) -> list[Any]:
        """Non-empty values that matched no key (at most :data:`SAMPLE`)."""
        return sorted((v for v in self.others if v not in ("", None)), key=str)


@dataclass
class Usage:
    """What the records of one read did with a layout, for the sync report."""

    values: dict[str, KeyUse] = field(default_factory=dict)  # by ``values`` key
    derive: dict[str, KeyUse] = field(default_factory=dict)  # by derived column
    #: column -> rows whose value came from its 2nd, 3rd, ... source
    fallbacks: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class _Column:
    name: str
    sources: tuple[str, ...]  # the source fields it is read from, in the order they are tried
    indexes: tuple[int, ...]
    kind: str
    convert: Callable[[Any], Any]  # parse + encode; raises on bad input
    recode: dict[Any, Any] | None
    uses: KeyUse | None  # of ``recode``
    fallbacks: list[int]  # rows whose value came from sources[1], sources[2], ...
    default: Any
    required: bool


class RowBuilder:
    """Builds rows for ``table`` from records whose fields are named ``fields``.

    ``build(record, others=None)`` is the DB-ready row (in ``columns`` order) of one record (a sequence in
    ``fields`` order; ``others``: fields for ``extra``), compiled for the layout; it raises FieldError naming
    the field. ``usage`` collects what the records did with the layout (shared by the builders of one read).
    """

    def __init__(self, table: str, fields: Sequence[str], layout: Layout, *, source: str,
                 synced_at: datetime, encoder: Callable[[str], Callable | None], usage: Usage | None = None) -> None:
        kinds = column_kinds(table)
        defaults = column_defaults(table)
        required = required_columns(table)
        index = {f: i for i, f in enumerate(fields)}
        self.usage = usage = usage if usage is not None else Usage()
        for col in layout.columns:
            if col not in kinds:
                raise FieldError(layout.sources(col)[0], f"mapped to unknown column {col!r} of table {table}")
            for src in layout.sources(col):
                if src not in index:
                    raise FieldError(src, f"mapped to {col!r} but not found in the source fields"
                                          + did_you_mean(src, fields))
        tz = ZoneInfo(layout.timezone) if layout.timezone != "UTC" else UTC
        iso_text = encoder("iso_datetime")

        def column(name: str, sources: tuple[str, ...], recode: dict | None = None, uses: KeyUse | None = None,
                   ) -> _Column:
            kind = kinds[name]
            convert = _value_fn(kind, layout.format_of(name, kind), tz, encoder(kind), iso_text)
            return _Column(name, sources, tuple(index[s] for s in sources), kind, convert, recode, uses,
                           usage.fallbacks.setdefault(name, [0] * (len(sources) - 1)), defaults.get(name),
                           name in required)

        self.plan = [
            column(col, layout.sources(col)) for col in kinds
            if col not in ("source", "synced_at", "extra") and col not in layout.constants
            and col not in layout.derive and layout.sources(col)[0] in index
        ]
        by_source = {s: c for c in self.plan for s in c.sources}
        recoded_extra = {}
        for key, mapping in layout.values.items():
            uses = usage.values.setdefault(key, KeyUse(mapping))
            target = next((c for c in self.plan if c.name == key), None) or by_source.get(key)
            if target is not None:
                target.recode, target.uses = mapping, uses
            elif key in index:
                recoded_extra[key] = (mapping, uses)
            elif key not in kinds:
                raise FieldError(key, f"recoded by values but neither a column of table {table} nor a source field"
                                      + did_you_mean(key, [*fields, *kinds]))
        self.derived = []
        for col, d in layout.derive.items():
            if col not in kinds:
                raise FieldError(col, f"derived column is not a column of table {table}")
            sources = (d.source,) if d.source in index or d.source not in kinds else layout.sources(d.source)
            for src in sources:
                if src not in index:
                    raise FieldError(src, f"needed to derive {col!r} but not found in the source fields"
                                          + did_you_mean(src, fields))
            self.derived.append((column(col, sources), d, usage.derive.setdefault(col, KeyUse(d.mapping))))
        present = {c.name for c in self.plan} | set(layout.constants) | set(layout.derive)
        missing = required - present
        if missing:
            raise FieldError(sorted(missing)[0], "required field missing from the source")
        #: The columns whose values come from the source (mapped, derived or constant), not from a default.
        self.provided = present & set(kinds)
        # NOT NULL columns the source lacks take their default.
        fixed = {**{c: _encode(encoder(kinds[c]), d) for c, d in defaults.items() if c not in present},
                 **{c: constant_value(c, v, kinds[c], tz, encoder) for c, v in layout.constants.items() if c in kinds}}
        self.constants = list(fixed.items())
        used = {s for c in self.plan for s in c.sources}
        self.extra_fields = [(f, i) for f, i in index.items() if f not in used]
        self.recoded_extra = [(f, index[f], *recoded_extra[f]) for f, _ in self.extra_fields if f in recoded_extra]
        self.columns = ["source", "synced_at", *(c.name for c in self.plan), *(c.name for c, *_ in self.derived),
                        *(c for c, _ in self.constants), "extra"]
        self._head = (source, _encode(encoder("datetime"), synced_at))
        self._encode_json = _checked_json(encoder("json"))
        self.build = self._compile()

    def build_checked(self, record: Sequence[Any], others: dict[str, Any] | None = None) -> tuple:
        """A DB-ready row (in ``columns`` order) from one record; raises FieldError naming the field.

        ``others``: fields of a dict record that are not in ``fields``, kept in ``extra`` too."""
        values = []
        fell_back = []
        for c in self.plan:
            raw, n = _pick(c, record)
            values.append(_checked(c, raw, c.sources[n]))
            if n:
                fell_back.append((c, n))
        for c, d, uses in self.derived:
            raw, n = _pick(c, record)
            values.append(_checked(c, _derive(d, uses, raw), c.sources[n]))
        extra = self._extra(record, others)
        for name, value in extra.items():
            if problem := json_problem(name, value):
                raise FieldError(name, problem)
        for c, n in fell_back:  # counted once the row is built, like the fast path does
            c.fallbacks[n - 1] += 1
        return (*self._head, *values, *(v for _, v in self.constants),
                self._encode_json(extra) if extra else None)

    def key(self, record: Sequence[Any]) -> Any:
        """The row's ``id`` as :meth:`build` makes it; raises FieldError like it."""
        for c in self.plan:
            if c.name == "id":
                raw, n = _pick(c, record)
                return _checked(c, raw, c.sources[n])
        for c, d, uses in self.derived:
            if c.name == "id":
                raw, n = _pick(c, record)
                return _checked(c, _derive(d, uses, raw), c.sources[n])
        return dict(self.constants)["id"]

    def source_of(self, column: str) -> str:
        """The (first) source field ``column`` is read or derived from; the column itself for a constant."""
        found = [c.sources[0] for c in (*self.plan, *(c for c, *_ in self.derived)) if c.name == column]
        return found[0] if found else column

    def _extra(self, record: Sequence[Any], others: dict[str, Any] | None = None) -> dict[str, Any]:
        extra = {f: record[i] for f, i in self.extra_fields if record[i] not in ("", None)}
        for f, i, mapping, uses in self.recoded_extra:
            if f in extra and _hashable(extra[f]):
                extra[f] = uses.get(mapping, extra[f], extra[f])
                if extra[f] in ("", None):
                    del extra[f]
        if others:
            extra.update((f, v) for f, v in others.items() if v is not None and v != "")
        return extra

    def _compile(self) -> Callable[..., tuple]:
        """Generate ``build(record)``: the checked path's semantics, without its per-value calls."""
        env: dict[str, Any] = {"BOOLEANS": BOOLEANS, "checked": self.build_checked, "head": self._head,
                               "consts": tuple(v for _, v in self.constants), "dump": self._encode_json}
        lines = ["def build(r, o=None):", "    try:"]  # o: a dict record's other fields
        counts = []
        names = []
        for n, c in enumerate(self.plan):
            v = f"v{n}"
            names.append(v)
            lines.append(f"        {v} = r[{c.indexes[0]}]")
            if len(c.indexes) > 1:  # fallbacks: the first non-empty value wins, and is counted once the row is built
                env[f"fb{n}"] = c.fallbacks
                lines.append(f"        u{n} = 0")
                for k, i in enumerate(c.indexes[1:], start=1):
                    lines.append(f"        if {v} is None or {v} == '':")
                    lines.append(f"            w = r[{i}]")
                    lines.append(f"            if w is not None and w != '': {v} = w; u{n} = {k}")
                counts.append(f"        if u{n}: fb{n}[u{n} - 1] += 1")
            if c.recode:
                env[f"rec{n}"], env[f"hit{n}"], env[f"oth{n}"] = c.recode, c.uses.matched.add, c.uses.others
                lines.append(f"        if {v} in rec{n}: hit{n}({v}); {v} = rec{n}[{v}]")
                lines.append(f"        elif len(oth{n}) < {SAMPLE}: oth{n}.add({v})")
            env[f"d{n}"] = c.default
            if c.required:
                lines.append(f"        if {v} is None or {v} == '': return checked(r, o)")
            if c.kind == "str":
                env[f"f{n}"] = c.convert
                expr = f"{v} if {v}.__class__ is str and '\\x00' not in {v} else f{n}({v})"
            elif c.kind == "bool":
                expr = f"BOOLEANS[{v}]"
            elif c.kind == "float":
                expr = f"float({v}) if {v}.__class__ is not bool else checked(r, o)"
            else:
                env[f"f{n}"] = c.convert
                expr = f"f{n}({v})"
            lines.append(f"        {v} = d{n} if {v} is None or {v} == '' else {expr}")
            if c.kind == "float":  # nan and inf go to the checked path, which rejects them
                env["isfinite"] = math.isfinite
                lines.append(f"        if {v} is not None and not isfinite({v}): return checked(r, o)")
        derived = ""
        if self.derived:
            env["derived"] = self.derived
            env["derived_value"] = _derived_value
            derived = "*[derived_value(c, d, uses, r) for c, d, uses in derived], "
        others = "{f: w for f, w in o.items() if w != '' and w is not None}"
        if self.recoded_extra:
            env["extra_of"] = self._extra
            lines.append("        x = extra_of(r, o)")
        elif self.extra_fields:
            env["extra_fields"] = self.extra_fields
            lines.append("        x = {f: r[i] for f, i in extra_fields if r[i] != '' and r[i] is not None}")
            lines.append(f"        if o: x.update({others})")
        else:
            lines.append(f"        x = {others} if o else None")
        extra = "dump(x) if x else None"
        values = "".join(f"{v}, " for v in names)
        lines.append(f"        row = (*head, {values}{derived}*consts, {extra})")
        lines += counts
        lines.append("        return row")
        lines.append("    except Exception:")
        lines.append("        return checked(r, o)")
        exec("\n".join(lines), env)  # noqa: S102 - source built above from column names only
        return env["build"]


class RecordRows:
    """Rows of ``table`` from dict records (JSON Lines, API responses).

    Every record is read against the same known fields, so a record may omit any of
    them. Its other keys go to ``extra`` as they are: one :class:`RowBuilder` serves
    every record, however their sets of keys differ, so memory stays flat on sparse
    exports (which leave out each record's empty custom fields). ``columns`` is the
    same for every record.
    """

    def __init__(self, table: str, layout: Layout, *, source: str, synced_at: datetime,
                 encoder: Callable[[str], Callable | None]) -> None:
        kinds = column_kinds(table)
        known = dict.fromkeys(s for c in kinds if c not in ("source", "synced_at", "extra") for s in layout.sources(c))
        known.update(dict.fromkeys(d.source for d in layout.derive.values() if d.source not in kinds))
        known.update(dict.fromkeys(key for key in layout.values if key not in kinds))  # fields kept in extra
        self.known = list(known)
        self._known_set = set(known)
        self._unseen = set(known)  # known fields no record has had yet
        self._extra_names: set[str] = set()  # bounded by the distinct field names, not by their combinations
        self._layout = layout
        self._builder = RowBuilder(table, self.known, layout, source=source, synced_at=synced_at, encoder=encoder)
        self.usage = self._builder.usage
        self.columns = self._builder.columns

    def build(self, record: dict[str, Any]) -> tuple:
        """A DB-ready row in ``columns`` order; raises FieldError naming a bad field."""
        if self._unseen:
            self._unseen.difference_update(record)
        known = self._known_set
        others = {k: v for k, v in record.items() if k not in known}
        if others:
            self._extra_names.update(others)
        get = record.get
        return self._builder.build([get(f) for f in self.known], others)

    def key(self, record: dict[str, Any]) -> Any:
        """The row's ``id`` as :meth:`build` makes it."""
        return self._builder.key([record.get(f) for f in self.known])

    def source_of(self, column: str) -> str:
        return self._builder.source_of(column)

    @property
    def unseen(self) -> set[str]:
        """Known fields (mapped, derived from or recoded) that no record built so far had."""
        return set(self._unseen)

    @property
    def provided(self) -> set[str]:
        """Columns some record gave a value for (through its field, a derivation) or a constant sets."""
        base = self._builder
        read = {c.name for c in base.plan if not self._unseen.issuperset(c.sources)}
        read |= {c.name for c, *_ in base.derived if not self._unseen.issuperset(c.sources)}
        return read | (base.provided & set(self._layout.constants))

    @property
    def extra_fields(self) -> set[str]:
        """The unknown fields records had (kept in ``extra``)."""
        return set(self._extra_names)


def _pick(column: _Column, record: Sequence[Any]) -> tuple[Any, int]:
    """The value of the first of ``column``'s sources that is not empty, and which source that was."""
    for n, i in enumerate(column.indexes):
        raw = record[i]
        if raw is not None and raw != "":
            return raw, n
    return record[column.indexes[0]], 0


def _derive(d: Derivation, uses: KeyUse, raw: Any) -> Any:
    return uses.get(d.mapping, raw, d.default) if _hashable(raw) else d.default


def _derived_value(column: _Column, d: Derivation, uses: KeyUse, record: Sequence[Any]) -> Any:
    raw, n = _pick(column, record)
    return _checked(column, _derive(d, uses, raw), column.sources[n])


def _checked(column: _Column, raw: Any, source: str) -> Any:
    if column.recode is not None and _hashable(raw):
        raw = column.uses.get(column.recode, raw, raw)
    if raw is None or raw == "":
        if column.required:
            raise FieldError(source, "required field is empty", column.name)
        return column.default
    try:
        return column.convert(raw)
    except Refused as exc:
        raise FieldError(source, str(exc), column.name) from None
    except (ValueError, TypeError, KeyError, OverflowError, OSError, RecursionError):  # OSError: epoch seconds
        raise FieldError(source, f"not a valid {column.kind}: {_shown(raw)}", column.name) from None


def _shown(raw: Any) -> str:
    """``repr(raw)``, cut short: a message stays one readable line whatever the value."""
    text = repr(raw)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


def json_problem(name: str, value: Any) -> str | None:
    """Why a custom field's value cannot be stored as JSON alike on every store (None: it can)."""
    if "\x00" in name:
        return NUL_REASON
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, float) and not math.isfinite(item):
            return f"{item!r} is not a JSON number (JSON has no NaN or Infinity)"
        if isinstance(item, str) and "\x00" in item:
            return NUL_REASON
        if isinstance(item, dict):
            if any("\x00" in str(k) for k in item):
                return NUL_REASON
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
    return None



def _checked_json(dump: Callable[[Any], str]) -> Callable[[Any], str]:
    """``dump`` that raises (so that the checked path names the field) on what :func:`json_problem` refuses.

    ``dump`` itself refuses NaN and infinities. The text is scanned, not the value walked: a NUL is
    written ``\\u0000``, and nesting needs two brackets per level, so only a rare text is looked at closer."""

    def dump_checked(value: Any) -> str:
        text = dump(value)
        if "u0000" in text or (len(text) > 2 * MAX_JSON_DEPTH
                               and text.count("[") + text.count("{") > MAX_JSON_DEPTH):
            if any(json_problem(name, v) for name, v in value.items()):
                raise Refused(text)
        return text

    return dump_checked


def constant_value(column: str, value: Any, kind: str, tz: tzinfo = UTC,
                   encoder: Callable[[str], Callable | None] = lambda kind: None) -> Any:
    """A constant, parsed (ISO 8601 for dates) and encoded like a source value of its column: stored
    as a value of the column's type on every backend, or refused (FieldError). Without ``encoder``,
    only parsed: how ``crmkpi validate`` checks it."""
    if value is None:
        return None
    if isinstance(value, date):  # YAML reads 2025-01-05 as a date
        value = value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(column, f"constant {value!r} is not a finite number")
    try:
        return _value_fn(kind, None, tz, encoder(kind), encoder("iso_datetime"))(value)
    except Refused as exc:
        raise FieldError(column, f"constant: {exc}") from None
    except (ValueError, TypeError, KeyError, OverflowError, OSError):
        raise FieldError(column, f"constant is not a valid {kind}: {_shown(value)}") from None


def _hashable(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _encode(encoder: Callable | None, value: Any) -> Any:
    return encoder(value) if encoder and value is not None else value


def _value_fn(kind: str, fmt: str | None, tz: tzinfo, encode: Callable | None,
              iso_text: Callable[[str], Any] | None) -> Callable[[Any], Any]:
    """parse (and encode for the store) one non-empty value of ``kind``; raises on bad input.

    ``fmt`` is the strptime format of a date or datetime (None: ISO 8601)."""
    if kind == "datetime":
        parse = _datetime_parser(fmt, tz)
        if encode is not None and iso_text is not None and tz is UTC and not fmt:
            return lambda raw: iso_text(raw) if raw.__class__ is str else encode(parse(raw))
    elif kind == "date":
        parse = _date_parser(fmt)
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


def _datetime_parser(fmt: str | None, tz: tzinfo) -> Callable[[Any], datetime]:
    """To a UTC datetime: naive (meaning UTC) or aware in UTC; values without an offset are in ``tz``."""

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


def _date_parser(fmt: str | None) -> Callable[[Any], date]:

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
    if isinstance(raw, (dict, list)):  # a nested API value: keep it readable and parseable
        text = json.dumps(raw, default=str, separators=(",", ":"))
    else:
        text = raw if isinstance(raw, str) else str(raw)
    if "\x00" in text:
        raise Refused(NUL_REASON)
    return text


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
    value = int(raw)
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise Refused(f"{_shown(raw)} is outside the integer range of the store ({INT_RANGE[0]}..{INT_RANGE[1]})")
    return value
