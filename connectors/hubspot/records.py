"""HubSpot JSON -> normalized rows.

A CRM object (``{"id", "properties", "archived", "propertiesWithHistory"}``) is flattened
into one dict of its properties plus a few computed ``_`` fields, then
:class:`crmkpi.normalize.RecordRows` maps, parses and encodes it like every connector
does; unmapped properties land in ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from crmkpi.connector import Coverage, SyncContext
from crmkpi.errors import SourceDataError
from crmkpi.normalize import FieldError, Layout, RecordRows

from .objects import ObjectSpec

#: Properties every object carries that the flattened record has already (``id``) or never needs.
_DROPPED = ("hs_object_id",)
#: Properties that only feed computed fields; kept out of ``extra`` unless a column maps them.
_CONSUMED = ("firstname", "lastname", "hs_is_closed", "hs_is_closed_won")


@dataclass(frozen=True)
class StageFlags:
    is_closed: bool
    is_won: bool


#: Deal stage id -> closed/won, from the deal pipelines' stage metadata.
StageMap = dict[str, StageFlags]


class Records:
    """Rows of one :class:`ObjectSpec`'s table from HubSpot objects."""

    def __init__(self, spec: ObjectSpec, columns: dict[str, str], context: SyncContext,
                 stages: StageMap | None = None) -> None:
        self.spec = spec
        self.stages = stages or {}
        layout = Layout(columns={**spec.columns, **columns}, values=spec.values)
        try:
            self.rows = RecordRows(spec.table, layout, source=context.name, synced_at=context.synced_at,
                                   encoder=context.encoder)
        except FieldError as exc:
            raise SourceDataError(f"hubspot {spec.name}: {exc}") from None
        self.columns = self.rows.columns
        #: The columns the mapping fills (``flatten`` always sets id and is_deleted), for the sync's check.
        self.coverage = Coverage(frozenset(layout.columns) | {"id", "is_deleted"})
        self.lead_dates = (layout.columns.get("created_at"), layout.columns.get("converted_at"))
        self.consumed = [p for p in _CONSUMED if p not in layout.columns.values()]

    def build(self, obj: dict[str, Any], associated: dict[str, dict[str, str]]) -> Iterator[tuple]:
        """The rows of one object (none, one, or one per stage change); ``associated``: type -> id -> id."""
        if self.spec.history:
            records = stage_changes(obj, self.spec.history)
        else:
            record = flatten(obj, associated)
            if self.spec.table == "deals":
                record.update(closed_flags(record, self.stages))
            elif self.spec.table == "leads" and self.spec.object_type == "contacts":
                became, converted = self.lead_dates
                if not record.get(became):
                    return  # never a lead
                if record.get(converted):
                    record["_converted_account"] = record.get("associatedcompanyid")
            for name in self.consumed:
                record.pop(name, None)
            records = [record]
        for record in records:
            try:
                yield self.rows.build(record)
            except FieldError as exc:
                raise SourceDataError(f"hubspot {self.spec.name} {obj.get('id')}: {exc}") from None


def flatten(obj: dict[str, Any], associated: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Properties, ``id``, ``is_deleted``, the full name and one associated id per type (``_companies``)."""
    record = {k: v for k, v in (obj.get("properties") or {}).items() if k not in _DROPPED}
    record["id"] = str(obj["id"])
    record["is_deleted"] = bool(obj.get("archived"))
    names = [record.get("firstname"), record.get("lastname")]
    if any(names):
        record["_full_name"] = " ".join(n.strip() for n in names if n and n.strip())
    for kind, ids in associated.items():
        record[f"_{kind}"] = ids.get(record["id"])
    return record


def closed_flags(record: dict[str, Any], stages: StageMap) -> dict[str, bool]:
    """``_is_closed``/``_is_won``: HubSpot's calculated properties, else the stage's pipeline metadata."""
    flags = stages.get(record.get("dealstage") or "")
    closed, won = record.get("hs_is_closed"), record.get("hs_is_closed_won")
    return {
        "_is_closed": _flag(closed) if closed not in (None, "") else bool(flags and flags.is_closed),
        "_is_won": _flag(won) if won not in (None, "") else bool(flags and flags.is_won),
    }


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def stage_changes(obj: dict[str, Any], prop: str) -> list[dict[str, Any]]:
    """One record per stage entered, oldest first; a repeat of the stage it is in is not a change.

    HubSpot lists a property's history newest first; each value holds from its timestamp.
    Re-entering an earlier stage is a new change. The id ``<deal>:<epoch ms>`` is stable.
    """
    history = (obj.get("propertiesWithHistory") or {}).get(prop) or []
    entries = sorted(((_parse(h["timestamp"]), h.get("value")) for h in history if h.get("timestamp")),
                     key=lambda e: e[0])
    deal_id = str(obj["id"])
    changes: list[dict[str, Any]] = []
    current = None
    for at, stage in entries:
        if not stage or stage == current:
            continue
        current = stage
        changes.append({"id": f"{deal_id}:{int(at.timestamp() * 1000)}", "deal_id": deal_id, "stage": stage,
                        "entered_at": at})
    return changes


def _parse(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise SourceDataError(f"hubspot stage history: not a timestamp: {value!r}") from None


def primary_ids(response: dict[str, Any]) -> dict[str, str]:
    """From a v4 associations batch read: object id -> its primary (else first) associated id."""
    found: dict[str, str] = {}
    for result in response.get("results") or []:
        targets = result.get("to") or []
        primary = next((t for t in targets
                        if any(a.get("label") == "Primary" for a in t.get("associationTypes") or [])), None)
        chosen = primary or (targets[0] if targets else None)
        if chosen is not None:
            found[str(result["from"]["id"])] = str(chosen["toObjectId"])
    return found


def pipeline_stage_records(object_type: str, response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``pipeline_stages`` records of every stage of every pipeline of ``object_type``."""
    for pipeline in response.get("results") or []:
        for stage in pipeline.get("stages") or []:
            meta = stage.get("metadata") or {}
            closed = _flag(meta.get("isClosed")) or meta.get("ticketState") == "CLOSED"
            probability = meta.get("probability")
            probability = float(probability) if probability not in (None, "") else None
            yield {
                "id": f"{object_type}:{stage['id']}", "pipeline": str(pipeline["id"]), "stage": str(stage["id"]),
                "label": stage.get("label"), "display_order": stage.get("displayOrder"),
                "probability": probability, "is_closed": closed,
                "is_won": closed and probability is not None and probability >= 1.0,
                "is_deleted": bool(stage.get("archived") or pipeline.get("archived")),
                "created_at": stage.get("createdAt"), "updated_at": stage.get("updatedAt"),
                "object_type": object_type, "pipeline_label": pipeline.get("label"),
            }


def stage_map(records: Iterator[dict[str, Any]]) -> StageMap:
    return {r["stage"]: StageFlags(r["is_closed"], r["is_won"]) for r in records}


def owner_record(owner: dict[str, Any]) -> dict[str, Any]:
    """A ``users`` record from an owner; ``team`` is the primary team (else the first)."""
    teams = owner.get("teams") or []
    team = next((t for t in teams if t.get("primary")), teams[0] if teams else None)
    name = " ".join(n for n in (owner.get("firstName"), owner.get("lastName")) if n)
    archived = bool(owner.get("archived"))
    return {"id": str(owner["id"]), "email": owner.get("email"), "name": name or None,
            "team": team.get("name") if team else None, "is_active": not archived, "is_deleted": archived,
            "created_at": owner.get("createdAt"), "updated_at": owner.get("updatedAt"),
            "user_id": owner.get("userId")}
