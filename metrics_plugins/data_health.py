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

from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, and_, case, func, literal, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from crmkpi import hookimpl
from crmkpi.errors import MetricError
from crmkpi.metrics import Metric, MetricContext, Param, Value, at_least, ratio
from crmkpi.models import ENTITIES
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


def existing(table: Table, moment: datetime) -> ColumnElement:
    """Rows created before ``moment`` (or without a creation time)."""
    return or_(table.c.created_at.is_(None), table.c.created_at < moment)


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


def duplicates_rate(ctx: MetricContext, table: Table, rows, keysets: list[list[str]], what: str) -> Value:
    """Share of the existing live rows (in the segment) that share a key with another existing live row.

    ``rows`` selects ``source``, ``id``, ``counted`` (1 for rows in the segment) and the key
    columns from every existing live row, whatever the segment, so that a duplicate in another
    segment still counts; ``keysets`` names the columns of each key (a row is a duplicate
    when any key it has is shared with another row of its source). One query, window counts.
    """
    created = existing(table, ctx.as_of())
    rows = rows.subquery("keyed")
    sizes = [func.count().over(partition_by=[rows.c.source, *(rows.c[name] for name in keyset)]).label(f"n{i}")
             for i, keyset in enumerate(keysets)]
    held = [case((and_(*(rows.c[name].is_not(None) for name in keyset)), 1), else_=0).label(f"held{i}")
            for i, keyset in enumerate(keysets)]
    sized = select(rows.c.source, rows.c.id, rows.c.counted, *sizes, *held).subquery("sized")
    shared = or_(*(and_(sized.c[f"held{i}"] == 1, sized.c[f"n{i}"] > 1) for i in range(len(keysets))))
    total, duplicated = ctx.conn.execute(
        select(func.sum(sized.c.counted), func.sum(case((shared, sized.c.counted), else_=0)))).one()
    ctx.record(f"{what} sharing a match key with another live one", table, created,
               tuple_(table.c.source, table.c.id).in_(select(sized.c.source, sized.c.id).where(shared)))
    ctx.record(f"live {what} created by the as-of moment", table, created)
    return ratio(duplicated, total, empty=f"no live {what} created by the as-of moment")


def _materializes(ctx: MetricContext) -> bool:
    """``WITH name AS MATERIALIZED (...)`` is understood (SQLite 3.35+, PostgreSQL 12+)."""
    version = ctx.conn.dialect.server_version_info or ()
    return version >= ((3, 35) if ctx.conn.dialect.name == "sqlite" else (12,))


def _counted(ctx: MetricContext, table: Table) -> ColumnElement:
    """1 for rows in the segment being computed, else 0."""
    return case((and_(*ctx.scope(table)), 1), else_=0).label("counted")


# --- metrics -----------------------------------------------------------------


def duplicate_contacts_rate(ctx: MetricContext) -> Value:
    contacts = ctx.table("contacts")
    c = contacts.c
    keys = [key(c.email, normalized(c.email)).label("email")]
    keysets = [["email"]]
    if ctx.params["match"] == "email_or_name":
        keys += [key(c.name, normalized(c.name)).label("name"), c.account_id.label("account_id")]
        keysets.append(["name", "account_id"])
    rows = select(c.source, c.id, _counted(ctx, contacts), *keys) \
        .where(ctx.live(contacts), existing(contacts, ctx.as_of()))
    return duplicates_rate(ctx, contacts, rows, keysets, "contacts")


def duplicate_accounts_rate(ctx: MetricContext) -> Value:
    accounts = ctx.table("accounts")
    c = accounts.c
    live = (ctx.live(accounts), existing(accounts, ctx.as_of()))
    if ctx.params["match"] == "exact_name":
        rows = select(c.source, c.id, _counted(ctx, accounts), key(c.name, normalized(c.name)).label("name"))
        return duplicates_rate(ctx, accounts, rows.where(*live), [["name"]], "accounts")
    # Clean once per row, then strip the suffix from the cleaned text: the CASE reads it ~80 times, so
    # the cleaned names are materialized (an inlined subquery would clean every name ~80 times: 30x slower).
    cleaned = select(c.source, c.id, _counted(ctx, accounts), key(c.name, clean_name(c.name)).label("cleaned")) \
        .where(*live).cte("cleaned")
    if _materializes(ctx):
        cleaned = cleaned.prefix_with("MATERIALIZED")
    rows = select(cleaned.c.source, cleaned.c.id, cleaned.c.counted,
                  func.nullif(strip_suffix(cleaned.c.cleaned), "").label("name"))
    return duplicates_rate(ctx, accounts, rows, [["name"]], "accounts")


def completeness(ctx: MetricContext) -> Value:
    name = ctx.params["table"]
    table = ctx.table(name)
    fields = [f.strip() for f in ctx.params["fields"].split(",") if f.strip()] or list(DEFAULT_FIELDS.get(name, ()))
    if not fields:
        raise MetricError(f"table {name} has no default key fields: set the fields param, "
                          f"e.g. --param fields=a,b")
    filled = and_(*(_filled(table, field) for field in dict.fromkeys(fields)))
    created = existing(table, ctx.as_of())
    total, complete = ctx.conn.execute(
        select(func.count(), func.sum(case((filled, 1), else_=0))).select_from(table)
        .where(*ctx.scope(table), created)).one()
    ctx.record(f"{name} with {', '.join(fields)} all filled", table, created, filled)
    ctx.record(f"live {name} created by the as-of moment", table, created)
    return ratio(complete, total, empty=f"no live {name} created by the as-of moment")


def _filled(table: Table, field: str) -> ColumnElement:
    if field.startswith("extra."):
        return present(table.c.extra[field.removeprefix("extra.")].as_string())
    if field not in table.c or field == "extra":
        columns = ", ".join(c.name for c in table.c if c.name != "extra")
        raise MetricError(f"field {field!r} is not a column of {table.name} "
                          f"(columns: {columns}; custom fields: extra.<name>)")
    column = table.c[field]
    return present(column) if column_kinds(table.name)[field] == "str" else column.is_not(None)


def stale_open_deals(ctx: MetricContext) -> Value:
    days_past = ctx.params["days_past"]
    deals = ctx.table("deals")
    moment = ctx.as_of()
    # Open at the as-of moment: created by then, and still open or closed after it.
    open_then = and_(existing(deals, moment), or_(deals.c.is_closed.is_(False), deals.c.closed_at >= moment))
    overdue = and_(deals.c.is_closed.is_(False), deals.c.closed_at < moment - timedelta(days=days_past))
    total, stale = ctx.conn.execute(
        select(func.count(), func.sum(case((overdue, 1), else_=0))).select_from(deals)
        .where(*ctx.scope(deals), open_then)).one()
    ctx.record(f"open deals whose expected close date is more than {days_past} days past", deals, open_then,
               overdue)
    ctx.record("deals open at the as-of moment", deals, open_then)
    undated = ctx.left_out("open deal(s) without an expected close date (closed_at)", deals, open_then,
                           deals.c.closed_at.is_(None), then="counted as not stale")
    return ratio(stale, total, empty="no open deals at the as-of moment").noted(undated)


def days_since_sync(ctx: MetricContext) -> Value:
    runs = ctx.table("sync_runs")
    moment = min(ctx.as_of(), datetime.now(UTC))
    success = and_(runs.c.status == "success", runs.c.finished_at.is_not(None))
    succeeded = and_(success, runs.c.finished_at < moment)
    ctx.record("successful syncs finished by the as-of moment", runs, succeeded)
    last = func.max(case((succeeded, runs.c.finished_at), else_=None))
    age = ctx.days_between(last, literal(moment, runs.c.finished_at.type))
    # One row per connector (a handful): its age (null when it has no successful sync by then), and its
    # first successful sync after the as-of moment: syncing today does not date a past period's data.
    ages = ctx.conn.execute(select(runs.c.connector, age, func.min(case((success, runs.c.finished_at))))
                            .where(*ctx.scope(runs)).group_by(runs.c.connector).order_by(runs.c.connector)).all()
    later = [f"{connector} at {_minute(first)}" for connector, days, first in ages if days is None and first]
    never = [connector for connector, days, first in ages if days is None and not first]
    notes = (f"first successful sync after the as-of moment {_minute(moment)}: {', '.join(later)}" if later else None,
             f"no successful sync of {', '.join(never)} at all" if never else None)
    synced = [float(days) for _, days, _ in ages if days is not None]
    if not synced:
        return Value(None).noted(*notes) if ages else Value(None, note="no sync runs")
    return Value(max(synced)).noted(*notes)


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
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
