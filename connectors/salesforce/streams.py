"""Incremental reading of sObjects: windows on a cursor, REST or Bulk 2.0, deletes, checkpoints.

Each sync reads the window ``[stored cursor - lookback, sync start)`` (from ``start_date``
on the first sync), ordered by cursor then Id, and checkpoints after every page, so an
interrupted sync resumes where its last committed page ended. SOQL datetimes are whole
seconds: the start is floored and the end rounded up, so the window holds every change
made before the sync started; the cursor saved at its end is the exact start, so the
next window (floored again) re-reads that last second.

Reference data arrives whatever ``start_date`` says (``SObject.before_start_date``): users
and stages are read whole, and accounts and contacts that synced rows point at are read
by Id after their window. An object this login cannot see is skipped with a note, unless
the config names it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote_plus

from crmkpi.connector import Checkpoint, Coverage, StreamStats, SyncContext
from crmkpi.errors import ConfigError, SourceDataError
from crmkpi.normalize import FieldError

from . import bulk
from .client import ObjectNotVisible, SalesforceClient
from .objects import OBJECTS, SObject
from .records import Plan, StageRuns, make_plan
from .settings import ObjectOptions, SalesforceSettings

#: Rows per batch handed to the store.
BATCH = 2000
#: How far back getDeleted can look (Salesforce keeps the deleted-records log 30 days).
DELETED_LOG = timedelta(days=30)
#: Longest encoded REST query: Salesforce refuses URLs past 16,384 characters, and the query
#: travels in the URL. Longer ones (objects with hundreds of custom fields) go through Bulk 2.0,
#: whose query is posted.
MAX_REST_QUERY = 15_000
#: Longest SOQL statement Salesforce takes; a Bulk 2.0 query is posted, so only this bounds it.
MAX_SOQL = 100_000
#: API calls a Bulk 2.0 query job costs at the least: create, status, one result page, delete.
BULK_JOB_CALLS = 4
#: In the state of an object read whole (``before_start_date: all``): its cursor covers it from its first record.
WHOLE = "whole"

Item = list[tuple] | Checkpoint


class References:
    """Which synced columns hold ids of which sObject, gathered as the streams plan their reads.

    The objects read by Id when referenced are read after those pointing at them (see
    ``OBJECTS``), so by then every column that refers to them is known.
    """

    def __init__(self) -> None:
        self._columns: dict[str, list[tuple[str, str]]] = {}

    def add(self, table: str, references: dict[str, str]) -> None:
        for column, target in references.items():
            columns = self._columns.setdefault(target, [])
            if (table, column) not in columns:
                columns.append((table, column))

    def to(self, sobject: str) -> list[tuple[str, str]]:
        """(table, column) of every synced column holding ids of ``sobject``."""
        return self._columns.get(sobject, [])


class ObjectStream:
    """One sObject into its table: REST pages for small deltas, a Bulk 2.0 job for large ones."""

    def __init__(self, client: SalesforceClient, sobject: SObject, options: ObjectOptions | None,
                 settings: SalesforceSettings, context: SyncContext, references: References) -> None:
        self.client = client
        self.sobject = sobject
        self.options = options
        self.settings = settings
        self.context = context
        self.references = references
        self.name = sobject.name
        self.table = sobject.table
        self.columns: list[str] = []
        self.stats = StreamStats()
        self.coverage: Coverage | None = None  # known once the read has planned its mapping

    def _plan(self) -> Plan:
        plan = make_plan(self.sobject, self.options, self.client.describe, self.context)
        self.columns = plan.rows.columns
        self.coverage = plan.coverage
        self.references.add(self.table, plan.references)
        return plan

    def _needs(self) -> tuple[str, ...]:
        """The sObjects this stream must see to read anything."""
        return (self.name,)

    def _window(self, cursor: str | None, state: dict | None) -> tuple[datetime | None, datetime]:
        """[start, end) of this read; end is the sync's exact start, or a resumed job's."""
        if cursor:
            start = datetime.fromisoformat(cursor) - timedelta(seconds=self.settings.lookback_seconds)
        elif self.settings.start_date == "all" or self.sobject.before_start_date == "all":
            start = None
        else:
            start = self.settings.start_date
        if state and state.get("window_end"):
            return start, datetime.fromisoformat(state["window_end"])
        return start, self.context.synced_at.astimezone(UTC)

    def read(self, cursor: str | None, state: dict[str, Any] | None) -> Iterator[Item]:
        """The stream's rows and checkpoints, if this login can see what it needs.

        An object read whole is read from its first record until a sync has done so, which
        its checkpoints then record (a store an older version windowed gets it all too).
        """
        try:
            for name in self._needs():
                self.client.describe(name)
        except ObjectNotVisible as exc:
            self._not_visible(exc, cursor)
            return
        whole = self.sobject.before_start_date == "all"
        if whole and not (state or {}).get(WHOLE):
            cursor, state = None, None  # never read whole (or windowed by an older version): from the first record
        for item in self._read(cursor, state):
            if whole and isinstance(item, Checkpoint):
                item = replace(item, state={**(item.state or {}), WHOLE: True})
            yield item

    def _not_visible(self, exc: ObjectNotVisible, cursor: str | None) -> None:
        """Skip an object the login cannot see, with a note; one the config names is an error."""
        if self.options is not None:
            raise ConfigError(f"connectors.{self.context.name}.objects.{self.name}: {exc}; check the API name "
                              "and the login's object permissions") from None
        if cursor:
            kept = f"{self.table} keep what earlier syncs stored and miss every change since"
        else:
            kept = f"{self.table} get no rows from it, so KPIs on {self.table} count none from {self.context.name}"
        self.stats.note(f"{exc}: {self.name} not synced; {kept}; grant the login read access, or set "
                        f"objects.{self.name}.enabled: false")

    def _read(self, cursor: str | None, state: dict[str, Any] | None) -> Iterator[Item]:
        plan = self._plan()
        start, end = self._window(cursor, state)
        where = _where(plan.cursor, start, end)
        rest_query = self._rest_query(plan, where)
        if state and state.get("bulk_job"):
            use_bulk = True  # finish the job an interrupted sync was reading
        elif _url_length(rest_query) > MAX_REST_QUERY:
            self.stats.note(f"the SELECT of its {len(plan.fields)} fields is too long for a REST URL: "
                            "read through Bulk 2.0")
            use_bulk = True
        else:
            count = self._count(plan, where)
            if count is None:
                self.stats.note("Salesforce timed out counting the changes (QUERY_TIMEOUT): read through Bulk 2.0")
            use_bulk = count is None or count >= self.settings.bulk_threshold
        if use_bulk:
            yield from self._read_bulk(plan, f"{_select(plan)}{where}", cursor, end, state or {})
        else:
            yield from self._read_rest(rest_query, plan, cursor)
        deleted = self._hard_deletes(plan, start, end) if cursor and start else ()
        yield Checkpoint(cursor=_end_cursor(plan, end), deleted=deleted)
        if self.sobject.before_start_date == "referenced":
            yield from self._read_referenced(plan, end)

    def _count(self, plan: Plan, where: str) -> int | None:
        return self.client.count(f"SELECT COUNT() FROM {plan.sobject.name}{where}")

    def _rest_query(self, plan: Plan, where: str) -> str:
        order = f" ORDER BY {plan.cursor}, Id" if plan.cursor else " ORDER BY Id"
        return f"{_select(plan)}{where}{order}"

    def _read_rest(self, soql: str, plan: Plan, cursor: str | None) -> Iterator[Item]:
        for page in self.client.query_pages(soql):
            records = [plan.coerce.rest(raw) for raw in page]
            yield from self._rows(plan, records)
            if records and plan.cursor:
                cursor = _later(cursor, records[-1][plan.cursor])
            yield Checkpoint(cursor=cursor)

    def _read_bulk(self, plan: Plan, soql: str, cursor: str | None, end: datetime,
                   state: dict[str, Any]) -> Iterator[Item]:
        """Bulk results are unordered: the cursor stays put until the whole job is committed."""
        job, locator = state.get("bulk_job"), state.get("locator")
        status = bulk.job_state(self.client, job) if job else None
        if status is None or status in bulk.FAILED:
            job, locator = bulk.start_job(self.client, soql), None
        bulk.wait_for(self.client, job, lambda message: self.context.status(self.name, message))
        for rows, following in bulk.result_pages(self.client, job, locator, self.settings.bulk_page_size):
            yield from self._rows(plan, map(plan.coerce.csv, rows))
            if following:
                yield Checkpoint(cursor=cursor, state={"bulk_job": job, "locator": following,
                                                       "window_end": end.isoformat()})
        bulk.delete_job(self.client, job)

    def _read_referenced(self, plan: Plan, end: datetime) -> Iterator[Item]:
        """By Id, the records that synced rows point at but the store lacks: those the window left out.

        What is missing is asked of the store, not remembered from this sync, so a parent an
        earlier sync stored is not read again, and a sync interrupted before this step (or a
        store an older version synced) gets its parents on the next run.
        """
        referrers = self.references.to(self.name)
        missing = sorted({i for table, column in referrers for i in self.context.dangling(table, column, self.table)})
        if not missing:
            return
        before = self.stats.read
        yield from self._read_ids(plan, missing, end)
        pointing = ", ".join(f"{table}.{column}" for table, column in referrers)
        self.stats.note(f"records outside the window that {pointing} point at, read by Id: {self.stats.read - before}")
        for table, column in referrers:
            lost = self.context.dangling(table, column, self.table)
            if lost:
                self.stats.note(f"ids in {table}.{column} that match no {self.name} this login can read (deleted "
                                f"for good, or hidden by sharing rules), so their rows join no {self.table} row: "
                                f"{len(lost)}, e.g. {', '.join(lost[:3])}")

    def _read_ids(self, plan: Plan, ids: list[str], end: datetime) -> Iterator[Item]:
        """``WHERE Id IN (...)`` as REST queries or Bulk 2.0 jobs, whichever takes fewer API calls.

        A REST query takes as many ids as its URL has room for (about 500); a Bulk job's query
        is posted, so it takes about 4,500, but costs at least BULK_JOB_CALLS calls. The reads'
        own checkpoints carry a window's progress and are left out: a checkpoint after each
        query keeps the cursor where the window ended.
        """
        head = f"{_select(plan)} WHERE Id IN "
        queries = list(_id_lists(head, ids, _url_length, MAX_REST_QUERY))
        jobs = list(_id_lists(head, ids, len, MAX_SOQL))
        use_bulk = _url_length(queries[0]) > MAX_REST_QUERY or BULK_JOB_CALLS * len(jobs) < len(queries)
        for soql in jobs if use_bulk else queries:
            read = self._read_bulk(plan, soql, None, end, {}) if use_bulk else self._read_rest(soql, plan, None)
            yield from (item for item in read if not isinstance(item, Checkpoint))
            yield Checkpoint(cursor=_end_cursor(plan, end))

    def _rows(self, plan: Plan, records: Iterable[dict[str, Any]]) -> Iterator[list[tuple]]:
        """Rows in batches of at most BATCH, so a 50,000-record Bulk page is never all rows at once."""
        prepare = plan.sobject.prepare
        batch = []
        for record in records:
            if prepare is not None:
                prepare(record)
            batch.append(self._build(plan, record))
            if len(batch) == BATCH:
                self.stats.read += len(batch)
                yield batch
                batch = []
        if batch:
            self.stats.read += len(batch)
            yield batch

    def _build(self, plan: Plan, record: dict[str, Any]) -> tuple:
        try:
            return plan.rows.build(record)
        except FieldError as exc:
            raise SourceDataError(f"{plan.sobject.name} {record.get('Id')}: {exc}") from None

    def _hard_deletes(self, plan: Plan, start: datetime, end: datetime) -> tuple[str, ...]:
        """Ids getDeleted reports for the window; the log only reaches 30 days back."""
        if not plan.hard_deletes:
            return ()
        oldest = self.context.synced_at - DELETED_LOG + timedelta(minutes=5)  # margin for the call's own delay
        if start < oldest:
            self.stats.note(f"getDeleted reaches back 30 days only: hard deletes between "
                                     f"{start:%Y-%m-%d %H:%M} and {oldest:%Y-%m-%d %H:%M} UTC cannot be detected "
                                     "and those rows stay live")
            start = oldest
        if start >= end:
            return ()
        answer = self.client.deleted(self.name, start, end)
        earliest = answer.get("earliestDateAvailable")
        if earliest and datetime.fromisoformat(earliest) > start:
            self.stats.note(f"Salesforce's deleted-records log starts at {earliest}; "
                            "earlier hard deletes cannot be detected")
        return tuple(r["id"] for r in answer.get("deletedRecords") or ())


class StageHistoryStream(ObjectStream):
    """OpportunityHistory -> stage changes, read per opportunity so stage runs are never split.

    A history row belongs to a run only together with the rows before it, and a new row
    can continue a run that an earlier sync stored. So the window selects opportunities
    (those whose own cursor moved in it, which every new history row does) and reads each
    one's whole history in (OpportunityId, CreatedDate) order; unchanged stage changes are
    rewritten identically, which the store skips. Checkpoints name the last opportunity
    read in full, so a resumed sync continues after it.
    """

    def _needs(self) -> tuple[str, ...]:
        return (self.name, "Opportunity")

    def _read(self, cursor: str | None, state: dict[str, Any] | None) -> Iterator[Item]:
        plan = self._plan()
        start, end = self._window(cursor, state)
        deal_cursor = OBJECTS["Opportunity"].cursor_in(self.client.describe("Opportunity"))
        done = (state or {}).get("after")
        soql = (f"{_select(plan)} WHERE OpportunityId IN "
                f"(SELECT Id FROM Opportunity{_where(deal_cursor, start, end)})"
                + (f" AND OpportunityId > {_quote(done)}" if done else "")
                + " ORDER BY OpportunityId, CreatedDate, Id")
        runs, current = StageRuns(), None
        for page in self.client.query_pages(soql):
            entries = []
            for raw in page:
                record = plan.coerce.rest(raw)
                if record["OpportunityId"] != current:
                    done, current = current or done, record["OpportunityId"]
                if runs.enters_stage(record):
                    entries.append(record)
            self.stats.read += len(page) - len(entries)  # _rows counts the entries
            yield from self._rows(plan, entries)
            yield Checkpoint(cursor=cursor, state={"window_end": end.isoformat(), "after": done})
        yield Checkpoint(cursor=end.isoformat())


def _select(plan: Plan) -> str:
    return f"SELECT {', '.join(plan.fields)} FROM {plan.sobject.name}"


def _where(cursor_field: str | None, start: datetime | None, end: datetime) -> str:
    """The window in whole seconds, widened to them: the start floored, the end rounded up."""
    if cursor_field is None:
        return ""
    bounds = [f"{cursor_field} >= {_literal(start)}"] if start else []
    bounds.append(f"{cursor_field} < {_literal(_round_up(end))}")
    return " WHERE " + " AND ".join(bounds)


def _end_cursor(plan: Plan, end: datetime) -> str | None:
    """The cursor once the window is read: its exact end (the sync's start), never the rounded-up bound."""
    return end.isoformat() if plan.cursor else None


def _literal(moment: datetime) -> str:
    """A SOQL datetime literal, floored to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round_up(moment: datetime) -> datetime:
    """The next whole second, unless ``moment`` is one."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _url_length(soql: str) -> int:
    """What a query takes of a REST URL, percent-encoded."""
    return len(quote_plus(soql))


def _id_lists(head: str, ids: list[str], length: Callable[[str], int], limit: int) -> Iterator[str]:
    """``head (id, id, ...)`` queries covering ``ids``, each at most ``limit`` long as ``length`` measures."""
    empty = length(f"{head}()")
    batch: list[str] = []
    size = empty
    for item in map(_quote, ids):
        cost = length(f", {item}")
        if batch and size + cost > limit:
            yield f"{head}({', '.join(batch)})"
            batch, size = [], empty
        batch.append(item)
        size += cost
    if batch:
        yield f"{head}({', '.join(batch)})"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _later(cursor: str | None, value: str | None) -> str | None:
    """The later of the stored cursor and a record's cursor value, as ISO text."""
    if value is None:
        return cursor
    if cursor is None or datetime.fromisoformat(value) > datetime.fromisoformat(cursor):
        return value
    return cursor
