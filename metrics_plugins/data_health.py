"""Data-health measures: duplicates, completeness, stale deals, sync freshness.

These are snapshots "as of" a moment, not flows over the period: each one looks at the
records that existed at the **as-of moment** — the end of the period, or the end of
today (``ctx.today``) when the period has not ended yet, so that ``this-month`` and
``MTD`` agree. A record existed then when it was created before it (records without a
``created_at`` always count). The store keeps no history of field values or deletions,
so for a past period the values of fields (emails, names, owners, stages) and the
deleted flag are the ones stored now: a past period's value is the current data cut
back to the records created by then.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Callable

from sqlalchemy import Select, Table, and_, case, func, literal, or_, select, true, tuple_, union_all
from sqlalchemy.sql.elements import ColumnElement

from crmkpi import hookimpl
from crmkpi.errors import MetricError
from crmkpi.grouped import BEGINNING, Cell, Grid
from crmkpi.metrics import TABLES, Metric, MetricContext, Param, Value, at_least, ratio
from crmkpi.models import ENTITIES
from crmkpi.sqlkit import instant
from crmkpi.store import column_kinds

#: Values that mean "no value" (compared after trimming spaces, case-insensitive).
PLACEHOLDERS = ("n/a", "tbd", "-", "none")

#: Key fields checked by ``completeness`` when the ``fields`` param is not set.
DEFAULT_FIELDS = {
    "deals": ("amount", "closed_at", "owner_id", "stage", "account_id"),
    "contacts": ("email", "account_id", "owner_id"),
    "accounts": ("name", "industry", "region", "owner_id"),
    "leads": ("email", "lead_source", "owner_id"),
    "tickets": ("owner_id", "priority", "channel"),
}

#: Legal-form suffixes ``duplicate_accounts_rate`` strips from company names (after dots are removed).
LEGAL_SUFFIXES = ("gmbh & co kg", "pty ltd", "pte ltd", "co ltd", "co inc", "& co", "incorporated", "inc",
                  "corporation", "corp", "company", "co", "limited", "ltd", "llc", "llp", "lp", "plc", "gmbh",
                  "kg", "ag", "sa", "sas", "sarl", "srl", "bv", "nv", "oy")

#: Tables ``completeness`` can check: the ones with default fields first (deals decides segment values).
CHECKABLE = tuple(dict.fromkeys([*DEFAULT_FIELDS, *ENTITIES]))

AS_OF = ("the end of the period, or the end of today when the period has not ended yet "
         "(records created by then; records without created_at always count)")
HISTORY = ("The store keeps no history of field values or deletions: for a past period the current values "
           "and deleted flags are used, cut back to the records created by then.")


# --- helpers -----------------------------------------------------------------


def existing(rows, moment: datetime | ColumnElement, created: ColumnElement | None = None) -> ColumnElement:
    """Rows (of a table, or a query with its ``created_at``) created before ``moment`` (or without a creation time);
    ``created``: ``created_at`` as the query reads it (:meth:`Grid.scanned <crmkpi.grouped.Grid.scanned>`)."""
    created = rows.c.created_at if created is None else created
    return or_(created.is_(None), created < moment)


def snapshots(grid: Grid, grace: timedelta = timedelta(0), until: datetime | None = None) -> Grid:
    """``grid`` over the moments its parts are taken at: each calendar row's ``end`` is the part's as-of moment
    (as :meth:`MetricContext.as_of` gives it for the part's cells, or ``until`` if that comes first), its ``start``
    ``grace`` before it. Parts may share a moment (those ending after today): each still gets its own row."""
    moments = [min(end, grid.end_of_today(), until or end) for _, end in grid.bounds]
    return replace(grid, bounds=[(moment - grace, moment) for moment in moments])


def normalized(value: ColumnElement) -> ColumnElement:
    """lower(trim(value))."""
    return func.lower(func.trim(value))


def present(value: ColumnElement) -> ColumnElement:
    """A text value that is neither null, blank nor a placeholder."""
    return and_(value.is_not(None), normalized(value).not_in(("", *PLACEHOLDERS)))


def clean_name(name: ColumnElement) -> ColumnElement:
    """A company name in lower case, without dots and commas, runs of spaces collapsed, trimmed."""
    text = func.replace(func.replace(func.lower(name), ".", ""), ",", " ")
    for _ in range(2):  # runs of up to four spaces
        text = func.replace(text, "  ", " ")
    return func.trim(text)


def strip_suffix(text: ColumnElement) -> ColumnElement:
    """A cleaned name (see :func:`clean_name`) without one trailing legal-form suffix."""
    whens = [(text.like(f"% {suffix}"),
              func.rtrim(func.substr(text, 1, func.length(text) - len(suffix)), " &"))
             for suffix in LEGAL_SUFFIXES]
    return case(*whens, else_=text)


def key(raw: ColumnElement, value: ColumnElement) -> ColumnElement:
    """``value``, or null when ``raw`` is missing (null, blank or a placeholder): missing values never match."""
    return case((present(raw), value), else_=None)


#: ``keyed(kit, columns, where)``: ``source``, ``id``, ``columns`` and the match-key columns of the rows matching
#: ``where``.
Keyed = Callable[[MetricContext | Grid, list[ColumnElement], list[ColumnElement]], Select]


class Duplicates:
    """What both ways of computing a duplicates rate share: the rows with their match keys, the window counts
    that find the keys shared within a source, the sums and the value.

    ``keysets`` names the key columns of each key: a row is a duplicate when any key it holds is shared
    with another row of its source (and, in a grid, of its part)."""

    def __init__(self, what: str, keysets: list[list[str]], keyed: Keyed) -> None:
        self.what, self.table, self.keysets, self.keyed = what, TABLES[what], keysets, keyed

    def sized(self, rows, *within: ColumnElement):
        """``rows`` (a subquery of :attr:`keyed` rows with a ``counted`` column: 1 for the rows its cell counts)
        with, per key, how many rows of the same source (and ``within``) share it and whether the row holds it."""
        sizes = [func.count().over(partition_by=[*within, rows.c.source, *(rows.c[name] for name in keyset)])
                 .label(f"n{i}") for i, keyset in enumerate(self.keysets)]
        held = [case((and_(*(rows.c[name].is_not(None) for name in keyset)), 1), else_=0).label(f"held{i}")
                for i, keyset in enumerate(self.keysets)]
        return select(*rows.c, *sizes, *held).subquery("sized")

    def shared(self, sized) -> ColumnElement:
        return or_(*(and_(sized.c[f"held{i}"] == 1, sized.c[f"n{i}"] > 1) for i in range(len(self.keysets))))

    def events(self, grid: Grid, rows):
        """Per row of ``rows`` (:attr:`keyed` rows with a non-null ``created_at`` and segment key columns), when
        it starts counting (``total``: its creation) and, if it ever does, when it starts sharing a key
        (``duplicated``: for each key it holds, its creation, or the next row's if it is the first row holding
        the key in its source; the earliest of these): one row per moment, with ``at``."""
        order = (rows.c.created_at, rows.c.id)
        windows = [[rows.c.source, *(rows.c[name] for name in keyset)] for keyset in self.keysets]
        # materialized: both halves of the union read it, and its windows sort every row
        ranked = grid.materialized(select(*rows.c, *(column for i, window in enumerate(windows) for column in (
            func.row_number().over(partition_by=window, order_by=order).label(f"rank{i}"),
            func.lead(rows.c.created_at).over(partition_by=window, order_by=order).label(f"next{i}")))
        ).cte("ranked"))
        shared_from = [case((or_(*(ranked.c[name].is_(None) for name in keyset)), None),
                            (ranked.c[f"rank{i}"] == 1, ranked.c[f"next{i}"]),
                            else_=ranked.c.created_at) for i, keyset in enumerate(self.keysets)]
        segment = [column for column in ranked.c if column.name.startswith("segment_")]
        created = select(ranked.c.created_at.label("at"), *segment, literal(1).label("total"),
                         literal(0).label("duplicated"))
        duplicated = select(reduce(_earliest, shared_from).label("at"), *segment, literal(0), literal(1))
        return union_all(created, duplicated.where(or_(*(moment.is_not(None) for moment in shared_from)))
                         ).subquery("events")

    def sums(self, rows) -> Select:
        """(the counted rows sharing a key, all counted rows) of ``rows`` (a subquery of :attr:`keyed` rows with a
        ``counted`` column). One key is counted by a GROUP BY, cheaper than the window several keys need."""
        if len(self.keysets) > 1:
            sized = self.sized(rows)
            return select(func.sum(case((self.shared(sized), sized.c.counted), else_=0)), func.sum(sized.c.counted))
        keys = [rows.c[name] for name in self.keysets[0]]
        groups = (select(*keys, func.count().label("n"), func.sum(rows.c.counted).label("counted"))
                  .group_by(rows.c.source, *keys).subquery("sharing"))
        shared = and_(*(groups.c[name].is_not(None) for name in self.keysets[0]), groups.c.n > 1)
        return select(func.sum(case((shared, groups.c.counted), else_=0)), func.sum(groups.c.counted))

    def value(self, duplicated, total) -> Value:
        return ratio(duplicated, total, empty=f"no live {self.what} created by the as-of moment")


def duplicates_rate(ctx: MetricContext, duplicates: Duplicates) -> Value:
    """Share of the existing live rows (in the segment) that share a key with another existing live row.

    The keys are compared across every existing live row, whatever the segment, so that a duplicate in
    another segment still counts; ``counted`` marks the rows of the segment. One query, window counts.
    """
    table, what = duplicates.table, duplicates.what
    created = existing(table, ctx.as_of())
    rows = duplicates.keyed(ctx, [_counted(ctx, table)], [ctx.live(table), created]).subquery("keyed")
    duplicated, total = ctx.conn.execute(duplicates.sums(rows)).one()
    sized = duplicates.sized(rows)
    shared = select(sized.c.source, sized.c.id).where(duplicates.shared(sized))
    ctx.record(f"{what} sharing a match key with another live one", table, created,
               tuple_(table.c.source, table.c.id).in_(shared))
    ctx.record(f"live {what} created by the as-of moment", table, created)
    return duplicates.value(duplicated, total)


def duplicates_rate_grouped(grid: Grid, duplicates: Duplicates) -> dict[Cell, Value]:
    """:func:`duplicates_rate` of every cell: a live row counts, in its own segment, at the as-of moments after its
    creation, and as a duplicate at those after it starts sharing a key (compared across segments)."""
    table, moments = duplicates.table, snapshots(grid)
    created = func.coalesce(table.c.created_at, instant(BEGINNING)).label("created_at")
    events = duplicates.events(grid, duplicates.keyed(grid, [created, *grid.segment_key(table)], grid.live(table))
                               .subquery("keyed"))
    sums = moments.until_end(events, events.c.at, [c for c in events.c if c.name.startswith("segment_")],
                             func.sum(events.c.duplicated), func.sum(events.c.total))
    return {cell: duplicates.value(*sums.get(cell, (0, 0))) for cell in grid.cells}


def _earliest(one: ColumnElement, other: ColumnElement) -> ColumnElement:
    """The earlier of two moments, either of which may be null (never)."""
    return case((one.is_(None), other), (other.is_(None), one), (other < one, other), else_=one)


def _counted(ctx: MetricContext, table: Table) -> ColumnElement:
    """1 for rows in the segment being computed, else 0."""
    return case((and_(*ctx.scope(table)), 1), else_=0).label("counted")


def _contacts(params: dict) -> Duplicates:
    c = TABLES["contacts"].c
    keys = [key(c.email, normalized(c.email)).label("email")]
    keysets = [["email"]]
    if params["match"] == "email_or_name":
        keys += [key(c.name, normalized(c.name)).label("name"), c.account_id.label("account_id")]
        keysets.append(["name", "account_id"])
    return Duplicates("contacts", keysets, lambda kit, columns, where: select(c.source, c.id, *columns, *keys)
                      .where(*where))


def _accounts(params: dict) -> Duplicates:
    c = TABLES["accounts"].c
    if params["match"] == "exact_name":
        return Duplicates("accounts", [["name"]], lambda kit, columns, where: select(
            c.source, c.id, *columns, key(c.name, normalized(c.name)).label("name")).where(*where))

    def keyed(kit: MetricContext | Grid, columns: list[ColumnElement], where: list[ColumnElement]) -> Select:
        # Clean once per row, then strip the suffix from the cleaned text: the CASE reads it ~80 times, so the
        # cleaned names are materialized (an inlined subquery would clean every name ~80 times: 30x slower).
        cleaned = kit.materialized(select(c.source, c.id, *columns, key(c.name, clean_name(c.name)).label("cleaned"))
                                   .where(*where).cte("cleaned"))
        return select(cleaned.c.source, cleaned.c.id, *(cleaned.c[column.name] for column in columns),
                      func.nullif(strip_suffix(cleaned.c.cleaned), "").label("name"))

    return Duplicates("accounts", [["name"]], keyed)


# --- metrics -----------------------------------------------------------------


def duplicate_contacts_rate(ctx: MetricContext) -> Value:
    return duplicates_rate(ctx, _contacts(ctx.params))


def duplicate_contacts_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    return duplicates_rate_grouped(grid, _contacts(grid.params))


def duplicate_accounts_rate(ctx: MetricContext) -> Value:
    return duplicates_rate(ctx, _accounts(ctx.params))


def duplicate_accounts_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    return duplicates_rate_grouped(grid, _accounts(grid.params))


class Completeness:
    """What both ways of computing completeness share: the table, its key fields, the sums, the value."""

    def __init__(self, params: dict) -> None:
        name = self.name = params["table"]
        table = self.table = TABLES[name]
        fields = self.fields = [f.strip() for f in params["fields"].split(",") if f.strip()] \
            or list(DEFAULT_FIELDS.get(name, ()))
        if not fields:
            raise MetricError(f"table {name} has no default key fields: set the fields param, "
                              f"e.g. --param fields=a,b")
        self.filled = and_(*(_filled(table, field) for field in dict.fromkeys(fields)))

    def sums(self) -> tuple[ColumnElement, ColumnElement]:
        """The rows, and those with every key field filled."""
        return func.count(), func.sum(case((self.filled, 1), else_=0))

    def value(self, total, complete) -> Value:
        return ratio(complete, total, empty=f"no live {self.name} created by the as-of moment")


def completeness(ctx: MetricContext) -> Value:
    check = Completeness(ctx.params)
    table = check.table
    created = existing(table, ctx.as_of())
    total, complete = ctx.conn.execute(select(*check.sums()).select_from(table).where(*ctx.scope(table), created)).one()
    ctx.record(f"{check.name} with {', '.join(check.fields)} all filled", table, created, check.filled)
    ctx.record(f"live {check.name} created by the as-of moment", table, created)
    return check.value(total, complete)


def completeness_grouped(grid: Grid) -> dict[Cell, Value]:
    check, moments = Completeness(grid.params), snapshots(grid)
    table = check.table
    sums = moments.until_end(table, table.c.created_at, grid.segment_key(table), *check.sums(), where=grid.live(table))
    return {cell: check.value(*sums.get(cell, (0, None))) for cell in grid.cells}


def _filled(table: Table, field: str) -> ColumnElement:
    if field.startswith("extra."):
        return present(table.c.extra[field.removeprefix("extra.")].as_string())
    if field not in table.c or field == "extra":
        columns = ", ".join(c.name for c in table.c if c.name != "extra")
        raise MetricError(f"field {field!r} is not a column of {table.name} "
                          f"(columns: {columns}; custom fields: extra.<name>)")
    column = table.c[field]
    return present(column) if column_kinds(table.name)[field] == "str" else column.is_not(None)


class Staleness:
    """What both ways of computing stale_open_deals share: the deals open at a moment, those overdue at it,
    the sums and the value."""

    UNDATED = "open deal(s) without an expected close date (closed_at) counted as not stale"

    def __init__(self, params: dict) -> None:
        self.deals = TABLES["deals"]
        self.days_past = params["days_past"]
        #: How long before the as-of moment an open deal's expected close date must be for it to be stale.
        self.grace = timedelta(days=self.days_past)

    def open_at(self, moment: datetime | ColumnElement, created: ColumnElement | None = None) -> ColumnElement:
        """Open at ``moment``: created by then, and still open or closed after it."""
        deals = self.deals
        return and_(existing(deals, moment, created), or_(deals.c.is_closed.is_(False), deals.c.closed_at >= moment))

    def overdue(self, due: datetime | ColumnElement) -> ColumnElement:
        """Still open, expected to close before ``due`` (the as-of moment less the grace)."""
        return and_(self.deals.c.is_closed.is_(False), self.deals.c.closed_at < due)

    def sums(self, due: datetime | ColumnElement) -> tuple[ColumnElement, ...]:
        """Over the open deals: all, the overdue ones, and those without an expected close date."""
        return (func.count(), func.sum(case((self.overdue(due), 1), else_=0)),
                func.count(case((self.deals.c.closed_at.is_(None), 1))))

    def value(self, total, stale, undated) -> Value:
        return ratio(stale, total, empty="no open deals at the as-of moment").noted(
            f"{undated} {self.UNDATED}" if undated else None)


def stale_open_deals(ctx: MetricContext) -> Value:
    stale = Staleness(ctx.params)
    deals, moment = stale.deals, ctx.as_of()
    open_then, due = stale.open_at(moment), moment - stale.grace
    sums = ctx.conn.execute(select(*stale.sums(due)).select_from(deals).where(*ctx.scope(deals), open_then)).one()
    ctx.record(f"open deals whose expected close date is more than {stale.days_past} days past", deals, open_then,
               stale.overdue(due))
    ctx.record("deals open at the as-of moment", deals, open_then)
    return stale.value(*sums)


def stale_open_deals_grouped(grid: Grid) -> dict[Cell, Value]:
    stale = Staleness(grid.params)
    # The calendar's end is each part's as-of moment, its start the due date overdue deals missed.
    moments = snapshots(grid, grace=stale.grace)
    calendar = moments.calendar
    open_then = stale.open_at(calendar.c.end, grid.scanned(stale.deals.c.created_at))
    sums = moments.by_part(stale.deals, None, *stale.sums(calendar.c.start), on=open_then)
    return {cell: stale.value(*sums.get(cell, (0, None, 0))) for cell in grid.cells}


class Syncs:
    """What both ways of computing days_since_sync share: each connector's age at the as-of moment, the value."""

    def __init__(self, moment: ColumnElement) -> None:
        runs = self.runs = TABLES["sync_runs"]
        self.success = and_(runs.c.status == "success", runs.c.finished_at.is_not(None))
        self.succeeded = and_(self.success, runs.c.finished_at < moment)
        self.moment = moment

    def ages(self, kit: MetricContext | Grid) -> tuple[ColumnElement, ...]:
        """Grouped by connector: the connector, its age (null when it has no successful sync by then), and its
        first successful sync (after the as-of moment when it has no age: syncing today does not date a past
        period's data)."""
        finished = self.runs.c.finished_at
        last = func.max(case((self.succeeded, finished), else_=None))
        return self.runs.c.connector, kit.days_between(last, self.moment), func.min(case((self.success, finished)))

    @staticmethod
    def value(moment: datetime, ages: list[tuple]) -> Value:
        """The oldest connector's age at ``moment``, from :meth:`ages`'s rows (a handful: one per connector)."""
        later = [f"{connector} at {_minute(first)}" for connector, days, first in ages if days is None and first]
        never = [connector for connector, days, first in ages if days is None and not first]
        notes = (f"first successful sync after the as-of moment {_minute(moment)}: {', '.join(later)}"
                 if later else None,
                 f"no successful sync of {', '.join(never)} at all" if never else None)
        synced = [float(days) for _, days, _ in ages if days is not None]
        if not synced:
            return Value(None).noted(*notes) if ages else Value(None, note="no sync runs")
        return Value(max(synced)).noted(*notes)


def days_since_sync(ctx: MetricContext) -> Value:
    runs = ctx.table("sync_runs")
    moment = min(ctx.as_of(), datetime.now(UTC))
    syncs = Syncs(literal(moment, runs.c.finished_at.type))
    ctx.record("successful syncs finished by the as-of moment", runs, syncs.succeeded)
    ages = ctx.conn.execute(select(*syncs.ages(ctx)).where(*ctx.scope(runs))
                            .group_by(runs.c.connector).order_by(runs.c.connector)).all()
    return Syncs.value(moment, ages)


def days_since_sync_grouped(grid: Grid) -> dict[Cell, Value]:
    runs = grid.table("sync_runs")
    moments = snapshots(grid, until=datetime.now(UTC))
    calendar, keys = moments.calendar, grid.segment_key(runs)
    syncs = Syncs(calendar.c.end)
    # Every run meets every part: the age is taken at each part's moment (grouped by it too, as PostgreSQL
    # wants for a column read outside the aggregates).
    rows = moments.placed(runs, None, *keys, *syncs.ages(grid), where=grid.live(runs), on=true()) \
        .group_by(calendar.c.part, calendar.c.end, *keys, runs.c.connector).order_by(runs.c.connector)
    ages: dict[Cell, list[tuple]] = {}
    for part, *row in grid.conn.execute(rows):
        ages.setdefault(Cell(part, tuple(row[:len(keys)])), []).append(tuple(row[len(keys):]))
    return {cell: Syncs.value(moments.bounds[cell.part][1], ages.get(cell, [])) for cell in grid.cells}


def _minute(moment: datetime | str) -> str:
    """A UTC moment to the minute (SQLite may return the stored text, or a naive UTC datetime)."""
    moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M UTC")


# --- declarations ------------------------------------------------------------

SNAPSHOT = "A snapshot as of " + AS_OF + ", not a flow over the period. " + HISTORY

METRICS = [
    Metric(
        id="duplicate_contacts_rate",
        title="Duplicate contacts rate",
        description="Share of the live contacts that have at least one duplicate: another live contact of the "
                    "same source with the same email, compared as lower(trim(email)) (match=email), or also with "
                    "the same lower(trim(name)) at the same account_id (match=email_or_name). Every member of a "
                    "duplicate group counts (a pair counts 2), not just the extra copies. Duplicates are looked "
                    "for across all live contacts, whatever the segment; the segment picks which contacts are "
                    "counted. The denominator is every live contact, including those without an email (or name): "
                    "they cannot be duplicates, and missing emails are what completeness measures. Blank and "
                    "placeholder values (n/a, tbd, -, none) never match. " + SNAPSHOT + " Table: contacts.",
        formula="live contacts sharing a match key with another live contact of their source / live contacts, "
                "both created before the as-of moment",
        unit="ratio",
        direction="lower",
        tables=("contacts",),
        compute=duplicate_contacts_rate,
        grouped=duplicate_contacts_rate_grouped,
        needs=("contacts.email",),
        params=(Param("match", str, "email", "email: same normalized email; email_or_name: same email, or same "
                      "normalized name at the same account", choices=("email", "email_or_name")),),
    ),
    Metric(
        id="duplicate_accounts_rate",
        title="Duplicate accounts rate",
        description="Share of the live accounts that have at least one duplicate: another live account of the "
                    "same source with the same company name. With match=name (the default) names are compared "
                    "without case, dots, commas and repeated spaces, and with one trailing legal-form suffix "
                    "removed (" + ", ".join(LEGAL_SUFFIXES) + "): \"Acme, Inc.\" matches \"ACME\" and "
                    "\"acme ltd\". With match=exact_name they are compared as lower(trim(name)). Every member of "
                    "a duplicate group counts; the denominator is every live account, including those without a "
                    "name. Duplicates are looked for across all live accounts, whatever the segment. "
                    + SNAPSHOT + " Table: accounts.",
        formula="live accounts sharing a normalized name with another live account of their source / live "
                "accounts, both created before the as-of moment",
        unit="ratio",
        direction="lower",
        tables=("accounts",),
        compute=duplicate_accounts_rate,
        grouped=duplicate_accounts_rate_grouped,
        needs=("accounts.name",),
        params=(Param("match", str, "name", "name: normalized, legal-form suffixes stripped; exact_name: "
                      "lower(trim(name))", choices=("name", "exact_name")),),
    ),
    Metric(
        id="completeness",
        title="Key-field completeness",
        description="Share of the live rows of a table that have every key field filled. A field is missing "
                    "when it is null; a text field also when it is blank or a placeholder (n/a, tbd, -, none, "
                    "any case, spaces trimmed). Zero amounts count as filled. Default fields: "
                    + "; ".join(f"{t}: {', '.join(f)}" for t, f in DEFAULT_FIELDS.items())
                    + " (other tables need the fields param; extra.<name> checks a custom field). "
                    + SNAPSHOT + " Segments are listed from deals (the first table), so with table set to "
                    "another table a segment value no deal has is not listed.",
        formula="live rows with all key fields filled / live rows, created before the as-of moment",
        unit="ratio",
        direction="higher",
        tables=CHECKABLE,
        compute=completeness,
        grouped=completeness_grouped,
        params=(
            Param("table", str, "deals", "the table to check", choices=CHECKABLE),
            Param("fields", str, "", "comma-separated columns (or extra.<name>) that must be filled; "
                  "empty: the table's default key fields"),
        ),
    ),
    Metric(
        id="stale_open_deals",
        title="Stale open deals",
        description="Share of the deals open at the as-of moment whose expected close date (closed_at of an "
                    "open deal) is more than days_past days before it: deals the pipeline still carries "
                    "although they should have closed. Open at the as-of moment means created before it and "
                    "either still open (is_closed false) or closed after it; deals closed since cannot be stale "
                    "(their closed_at is now the real close date). Open deals without an expected close date "
                    "count in the denominator only (completeness reports them). " + SNAPSHOT + " Table: deals.",
        formula="open deals with closed_at < as-of moment − days_past / deals open at the as-of moment",
        unit="ratio",
        direction="lower",
        tables=("deals",),
        compute=stale_open_deals,
        grouped=stale_open_deals_grouped,
        needs=("deals.created_at", "deals.is_closed", "deals.closed_at"),
        params=(Param("days_past", int, 0, "grace period: stale only when the expected close date is more "
                      "than this many days past", check=at_least(0)),),
    ),
    Metric(
        id="days_since_sync",
        title="Days since last successful sync",
        description="Age in days of the data: from the last successful sync (sync_runs.finished_at of a run with "
                    "status success) to the period end, or to the time of the run when the period has not ended "
                    "yet. Without a segment, the oldest connector's age (the freshest complete picture); "
                    "--segment connector gives one value per connector. A connector with no successful sync "
                    "by then is named in the note, with its first successful sync after the as-of moment "
                    "(a past period computed after today's first sync has no age: its data was not synced "
                    "by the period's end), or as never synced. Connectors removed from the config still "
                    "count while their sync history is kept. A snapshot, not a flow. Table: sync_runs.",
        formula="as-of moment − max(finished_at of successful syncs before it), the largest over connectors",
        unit="days",
        direction="lower",
        tables=("sync_runs",),
        compute=days_since_sync,
        grouped=days_since_sync_grouped,
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
