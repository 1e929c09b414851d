"""Streams of a HubSpot sync: backfill, incremental search windows, archived pass, checkpoints.

An object stream's first sync pages through the list endpoint (``start_date: all``) or
searches from ``start_date``. Later syncs search for records modified since the cursor
(minus a lookback) in time windows, paging by ``hs_object_id`` keyset (``id > last``,
ascending) instead of ``after``, so HubSpot's 10,000-results-per-search cap is never
reached, however many records share one timestamp. Each page is followed by a
checkpoint; the cursor only moves when a window is committed and never past the
sync's start. Every sync ends with an ``archived=true`` pass marking archived records
deleted, because archiving does not change a record's modified date.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Generator, Iterator

from crmkpi.connector import Checkpoint, StreamStats, SyncContext
from crmkpi.errors import SourceDataError
from crmkpi.normalize import FieldError, Layout, RecordRows

from .client import HubSpotClient
from .objects import OBJECTS, ObjectSpec, lifecycle_leads
from .records import Records, StageMap, owner_record, pipeline_stage_records, primary_ids, stage_map
from .settings import HubSpotSettings

SEARCH_LIMIT = 200  # HubSpot's most per search page
LIST_LIMIT = 100  # its most per list page
HISTORY_LIMIT = 50  # its most per page or batch when reading property history

Items = Iterator[list[tuple] | Checkpoint]


class Pipelines:
    """Deal and ticket pipelines, fetched once per sync for the stage rows and the deals' closed flags."""

    def __init__(self, client: HubSpotClient) -> None:
        self.client = client
        self._records: dict[str, list[dict[str, Any]]] = {}

    def records(self, object_type: str) -> list[dict[str, Any]]:
        if object_type not in self._records:  # a handful of stages: small enough to keep
            self._records[object_type] = list(pipeline_stage_records(object_type,
                                                                     self.client.pipelines(object_type)))
        return self._records[object_type]

    def deal_stages(self) -> StageMap:
        return stage_map(iter(self.records("deals")))


class ObjectStream:
    """One HubSpot CRM object into one normalized table, incrementally."""

    def __init__(self, spec: ObjectSpec, client: HubSpotClient, settings: HubSpotSettings, context: SyncContext,
                 pipelines: Pipelines) -> None:
        options = settings.options(spec.name)
        self.spec, self.client, self.settings, self.context = spec, client, settings, context
        self.name, self.table = spec.name, spec.table
        self.pipelines = pipelines
        self.records = Records(spec, options.columns, context)
        self.columns = self.records.columns
        self.coverage = self.records.coverage
        mapped = [p for p in options.columns.values() if not p.startswith("_")]
        self.properties = list(dict.fromkeys([*spec.properties, *options.properties, *mapped]))
        self.stats = StreamStats()

    def read(self, cursor: str | None, state: dict[str, Any] | None) -> Items:
        state = state or {}
        if self.spec.table == "deals":
            self.records.stages = self.pipelines.deal_stages()
        if cursor is None and self.settings.start_date == "all":
            cursor = yield from self._backfill(state)
        else:
            cursor = yield from self._changes(cursor, state)
        if self.spec.archived_pass:
            yield from self._archived(cursor)
        yield Checkpoint(cursor=cursor)

    # -- the passes --------------------------------------------------------------------------

    def _backfill(self, state: dict[str, Any]) -> Generator[list[tuple] | Checkpoint, None, str]:
        """Every live record from the list endpoint, a checkpoint after each page; returns the new cursor."""
        started = state.get("started") or self.context.synced_at.isoformat()
        after = state.get("after")
        history = [self.spec.history] if self.spec.history else None
        while True:
            page = self.client.list_page(self.spec.object_type, properties=self.properties, after=after,
                                         history=history, limit=HISTORY_LIMIT if history else LIST_LIMIT)
            rows = self._rows(page.get("results") or [])
            if rows:
                yield rows
            after = _next_after(page)
            if after is None:
                return started  # what changed while it ran, the next sync's search finds
            yield Checkpoint(state={"started": started, "after": after})

    def _changes(self, cursor: str | None, state: dict[str, Any]) -> Generator[list[tuple] | Checkpoint, None, str]:
        """Records modified since the cursor (less the lookback) or ``start_date``, window by window."""
        now = self.context.synced_at
        if cursor is None:
            committed = begin = self.settings.start_date
        else:
            committed = datetime.fromisoformat(cursor)
            begin = committed - timedelta(minutes=self.settings.lookback_minutes)
        if state.get("window"):  # first finish the window an interrupted sync was paging through
            begin, end = (datetime.fromisoformat(w) for w in state["window"])
            yield from self._window(begin, end, state.get("last_id"), committed)
            committed, begin = max(committed, end), end
        step = timedelta(days=self.settings.window_days)
        while begin < now:
            end = min(begin + step, now)
            yield from self._window(begin, end, None, committed)
            committed, begin = max(committed, end), end
        return min(committed, now).isoformat()

    def _window(self, begin: datetime, end: datetime, last_id: str | None, committed: datetime) -> Items:
        """Records modified in [begin, end), by ascending id from ``last_id`` on."""
        window = [begin.isoformat(), end.isoformat()]
        prop = self.spec.cursor_property
        while True:
            filters = [{"propertyName": prop, "operator": "GTE", "value": str(_ms(begin))},
                       {"propertyName": prop, "operator": "LT", "value": str(_ms(end))}]
            if last_id is not None:
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": last_id})
            page = self.client.search_page(self.spec.object_type, {
                "filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": self.properties, "limit": SEARCH_LIMIT})
            results = page.get("results") or []
            if not results:
                return
            last_id = str(results[-1]["id"])
            if self.spec.history:  # search has no history: read it back, 50 at a time
                results = self._with_history([str(r["id"]) for r in results])
            rows = self._rows(results)
            if rows:
                yield rows
            if _next_after(page) is None:
                return
            yield Checkpoint(cursor=committed.isoformat(), state={"window": window, "last_id": last_id})

    def _with_history(self, ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), HISTORY_LIMIT):
            batch = self.client.batch_read(self.spec.object_type, ids[start:start + HISTORY_LIMIT],
                                           properties=self.properties, history=[self.spec.history])
            found.extend(batch.get("results") or [])
        return sorted(found, key=lambda r: int(r["id"]))

    def _archived(self, cursor: str) -> Items:
        """Mark every archived record deleted (HubSpot keeps them about 90 days)."""
        after = None
        while True:
            page = self.client.list_page(self.spec.object_type, properties=["hs_object_id"], after=after,
                                         archived=True, limit=LIST_LIMIT)
            ids = tuple(str(r["id"]) for r in page.get("results") or [])
            if ids:
                yield Checkpoint(cursor=cursor, deleted=ids)
            after = _next_after(page)
            if after is None:
                return

    def _rows(self, objects: list[dict[str, Any]]) -> list[tuple]:
        self.stats.read += len(objects)
        associated = {}
        if objects and self.spec.associations:
            ids = [str(o["id"]) for o in objects]
            associated = {kind: primary_ids(self.client.associations(self.spec.object_type, kind, ids))
                          for kind in self.spec.associations}
        return [row for obj in objects for row in self.records.build(obj, associated)]


class OwnersStream:
    """Owners -> users, read in full each sync: active ones, then archived ones (``is_deleted``)."""

    name = "owners"
    table = "users"

    def __init__(self, client: HubSpotClient, context: SyncContext) -> None:
        self.client = client
        self.rows = _record_rows("users", context)
        self.columns = self.rows.columns
        self.stats = StreamStats()

    def read(self, cursor: str | None, state: dict[str, Any] | None) -> Items:
        for archived in (False, True):
            after = None
            while True:
                page = self.client.owners_page(after=after, archived=archived)
                owners = page.get("results") or []
                self.stats.read += len(owners)
                if owners:
                    yield [_build(self.rows, owner_record(o), "owner") for o in owners]
                after = _next_after(page)
                if after is None:
                    break
        yield Checkpoint()


class PipelineStagesStream:
    """Deal and ticket pipelines' stages -> pipeline_stages, read in full each sync."""

    name = "pipelines"
    table = "pipeline_stages"

    def __init__(self, pipelines: Pipelines, object_types: list[str], context: SyncContext) -> None:
        self.pipelines = pipelines
        self.object_types = object_types
        self.rows = _record_rows("pipeline_stages", context)
        self.columns = self.rows.columns
        self.stats = StreamStats()

    def read(self, cursor: str | None, state: dict[str, Any] | None) -> Items:
        for object_type in self.object_types:
            records = self.pipelines.records(object_type)
            self.stats.read += len(records)
            if records:
                yield [_build(self.rows, r, "pipeline stage") for r in records]
        yield Checkpoint()


def build_streams(settings: HubSpotSettings, context: SyncContext, client: HubSpotClient) -> list:
    """The enabled streams, in load order."""
    pipelines = Pipelines(client)
    streams: list = []
    if settings.options("owners").enabled:
        streams.append(OwnersStream(client, context))
    if settings.options("pipelines").enabled:  # only those of the objects synced, whose scopes the app has
        object_types = [t for t in ("deals", "tickets") if settings.options(t).enabled]
        streams.append(PipelineStagesStream(pipelines, object_types, context))
    for spec in OBJECTS.values():
        if spec.name == "leads":
            if settings.leads.source == "off":
                continue
            if settings.leads.source == "lifecycle":
                spec = lifecycle_leads(settings.leads.became_lead_property, settings.leads.converted_property)
        if settings.options(spec.name).enabled:
            streams.append(ObjectStream(spec, client, settings, context, pipelines))
    return streams


def _record_rows(table: str, context: SyncContext) -> RecordRows:
    return RecordRows(table, Layout(), source=context.name, synced_at=context.synced_at, encoder=context.encoder)


def _build(rows: RecordRows, record: dict[str, Any], what: str) -> tuple:
    try:
        return rows.build(record)
    except FieldError as exc:
        raise SourceDataError(f"hubspot {what} {record.get('id')}: {exc}") from None


def _next_after(page: dict[str, Any]) -> str | None:
    return ((page.get("paging") or {}).get("next") or {}).get("after")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
