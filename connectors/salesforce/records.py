"""From describe and records to store rows: what to select, typed values, stage runs.

REST returns JSON (nested dicts for relationship fields, ``+0000`` datetimes); Bulk 2.0
returns CSV strings (``Relationship.Field`` columns, ``Z`` datetimes, "" for null). Both
are brought to the same dict here, typed by describe, so that either path writes
identical rows, ``extra`` included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable

from crmkpi.connector import Coverage, SyncContext
from crmkpi.errors import ConfigError
from crmkpi.normalize import FieldError, Layout, RecordRows

from .objects import COMMON, UNSELECTABLE_TYPES, SObject
from .settings import ObjectOptions

#: describe field type -> how its values are typed ("str" for everything else).
KINDS = {"boolean": "bool", "int": "int", "long": "int", "double": "float", "currency": "float",
         "percent": "float", "datetime": "datetime"}
#: What OpportunityHistory rows are read for: the run of stages of each opportunity.
HISTORY_FIELDS = ("Id", "OpportunityId", "StageName", "CreatedDate", "SystemModstamp", "IsDeleted")

Describe = Callable[[str], dict[str, Any]]


@dataclass
class Plan:
    """How one sObject is read and mapped, decided from its describe."""

    sobject: SObject
    fields: list[str]  # the SELECT list
    cursor: str | None  # None: no timestamp to read by, every sync reads it all
    hard_deletes: bool  # getDeleted is allowed (describe: replicateable)
    coerce: Coercion
    rows: RecordRows
    references: dict[str, str]  # column -> the sObject its reference field points at (one target only)
    coverage: Coverage  # the columns the mapping fills: the sync names those the metrics need and miss


def make_plan(sobject: SObject, options: ObjectOptions | None, describe: Describe, context: SyncContext) -> Plan:
    """Check the mapping against describe and plan the SELECT; a bad mapping is a ConfigError naming it."""
    info = describe(sobject.name)
    by_name = {f["name"]: f for f in info["fields"]}
    selectable = [name for name, f in by_name.items() if f["type"] not in UNSELECTABLE_TYPES]
    mapping = {c: f for c, f in {**COMMON, **sobject.columns}.items() if _resolve(f, by_name, describe)}
    for column, name in (options.columns if options else {}).items():
        if not _resolve(name, by_name, describe):
            raise ConfigError(f"connectors.{context.name}.objects.{sobject.name}.columns.{column}: {name!r} is not "
                              f"a field of {sobject.name} (describe does not list it)")
        mapping[column] = name
    paths = [f for f in mapping.values() if "." in f]
    if sobject.kind == "stage_history":
        fields = [f for f in dict.fromkeys([*HISTORY_FIELDS, *mapping.values()]) if f in by_name or "." in f]
    else:
        fields = [*selectable, *dict.fromkeys(paths)]
    kinds = {name: KINDS.get(f["type"], "str") for name, f in by_name.items()}
    values = {**sobject.values, **(options.values if options else {})}
    constants = options.constants if options else {}
    layout = Layout(columns=mapping, values=values, constants=constants)
    try:
        rows = RecordRows(sobject.table, layout, source=context.name, synced_at=context.synced_at,
                          encoder=context.encoder)
    except FieldError as exc:
        raise ConfigError(f"connectors.{context.name}.objects.{sobject.name}: {exc}") from None
    cursor = sobject.cursor_in(info)
    # A polymorphic field (a case's OwnerId: a user or a queue) names no one object to look its ids up in.
    references = {column: by_name[name]["referenceTo"][0] for column, name in mapping.items()
                  if len(by_name.get(name, {}).get("referenceTo") or ()) == 1}
    return Plan(sobject, fields, cursor, sobject.hard_deletes and bool(info.get("replicateable")),
                Coercion(kinds, {f["relationshipName"] for f in by_name.values() if f.get("relationshipName")}),
                rows, references, Coverage(frozenset(mapping) | frozenset(constants)))


def _resolve(name: str, by_name: dict[str, dict], describe: Describe) -> bool:
    """Whether ``name`` (a field, or Relationship.Field one level deep) exists."""
    if "." not in name:
        return name in by_name and by_name[name]["type"] not in UNSELECTABLE_TYPES
    relationship, target_field = name.split(".", 1)
    reference = next((f for f in by_name.values() if f.get("relationshipName") == relationship), None)
    if reference is None or not reference.get("referenceTo"):
        return False
    target = {f["name"] for f in describe(reference["referenceTo"][0])["fields"]}
    return target_field in target


class Coercion:
    """Brings REST and Bulk records to one typed dict per describe."""

    def __init__(self, kinds: dict[str, str], relationships: set[str]) -> None:
        self.kinds = kinds
        self.relationships = relationships
        self._datetimes = [f for f, k in kinds.items() if k == "datetime"]
        self._floats = [f for f, k in kinds.items() if k == "float"]

    def rest(self, record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in record.items():
            if key == "attributes":
                continue
            if key in self.relationships or isinstance(value, dict):
                for sub, sub_value in (value or {}).items():
                    if sub != "attributes":
                        out[f"{key}.{sub}"] = sub_value
                continue
            out[key] = value
        for name in self._datetimes:
            value = out.get(name)
            if value:
                out[name] = _iso_utc(value)
        for name in self._floats:
            value = out.get(name)
            if value is not None:
                out[name] = float(value)
        return out

    def csv(self, row: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, text in row.items():
            if text == "":
                out[key] = None
                continue
            kind = self.kinds.get(key, "str")
            if kind == "bool":
                out[key] = text == "true"
            elif kind == "int":
                out[key] = int(float(text))
            elif kind == "float":
                out[key] = float(text)
            elif kind == "datetime":
                out[key] = _iso_utc(text)
            else:
                out[key] = text
        return out


def _iso_utc(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat(timespec="milliseconds")


class StageRuns:
    """Picks the OpportunityHistory rows that enter a stage, from rows ordered by (OpportunityId, CreatedDate).

    Salesforce writes a history row for every change of amount, close date, probability or
    stage, so consecutive rows of one opportunity often repeat its stage; only the first of
    such a run is a stage change. A later run of the same stage (a re-entry) is kept.
    """

    def __init__(self) -> None:
        self._last: tuple[Any, Any] | None = None

    def enters_stage(self, record: dict[str, Any]) -> bool:
        key = (record.get("OpportunityId"), record.get("StageName"))
        entered = key != self._last
        self._last = key
        return entered
