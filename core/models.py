"""The normalized store: the public data contract that metric plugins query.

Every entity row is keyed by ``(source, id)``: ``source`` is the connector instance
name from the config, ``id`` the source's own id. References (``account_id``,
``owner_id``, ...) point at ids within the same source. All timestamps are UTC
(timezone-aware in Python, ``timestamptz`` on PostgreSQL, ISO text on SQLite).
Amounts are in the record's own ``currency``; ``fx_rates`` converts them.

Changing a table here needs a migration in ``migrations/versions`` (a test compares
the two) and :data:`SCHEMA_REVISION` set to its revision id.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

#: Version of the public schema: the id of the newest migration.
SCHEMA_REVISION = "0007"


class Entity(SQLModel):
    """Columns every normalized entity carries."""

    source: str = Field(primary_key=True, description="connector instance name")
    id: str = Field(primary_key=True, description="the record's id in its source")
    created_at: Optional[datetime] = Field(default=None, description="when the source created the record")
    updated_at: Optional[datetime] = Field(default=None, description="when the source last changed the record")
    is_deleted: bool = Field(default=False, description="deleted or archived in the source")
    synced_at: Optional[datetime] = Field(default=None, description="when crmkpi last wrote this row")
    extra: Optional[dict[str, Any]] = Field(
        default=None, sa_type=JSON(none_as_null=True), description="custom and unmapped source fields"
    )


class User(Entity, table=True):
    __tablename__ = "users"
    name: Optional[str] = Field(default=None, description="display name")
    email: Optional[str] = Field(default=None, description="work email")
    team: Optional[str] = Field(default=None, description="sales or support team, used as a segment")
    role: Optional[str] = Field(default=None, description="job role or profile")
    is_active: Optional[bool] = Field(default=None, description="can still log in / own records")


class Account(Entity, table=True):
    __tablename__ = "accounts"
    name: Optional[str] = Field(default=None, description="company name")
    industry: Optional[str] = Field(default=None, description="industry label from the source")
    region: Optional[str] = Field(default=None, description="sales region or country, used as a segment")
    segment: Optional[str] = Field(default=None, description="customer segment (SMB, mid-market, enterprise, ...)")
    owner_id: Optional[str] = Field(default=None, description="users.id of the account owner")


class Contact(Entity, table=True):
    __tablename__ = "contacts"
    account_id: Optional[str] = Field(default=None, description="accounts.id the person works for")
    email: Optional[str] = Field(default=None, description="email address")
    name: Optional[str] = Field(default=None, description="full name")
    lifecycle_stage: Optional[str] = Field(
        default=None, description="subscriber, lead, mql, sql, opportunity, customer, ..."
    )
    owner_id: Optional[str] = Field(default=None, description="users.id of the owner")


class Lead(Entity, table=True):
    __tablename__ = "leads"
    email: Optional[str] = Field(default=None, description="email address")
    name: Optional[str] = Field(default=None, description="full name")
    company: Optional[str] = Field(default=None, description="company name as entered")
    lead_source: Optional[str] = Field(default=None, description="web, referral, event, outbound, ...")
    status: Optional[str] = Field(default=None, description="the source's lead status")
    owner_id: Optional[str] = Field(default=None, description="users.id of the owner")
    converted_at: Optional[datetime] = Field(default=None, description="when it was converted (null: not yet)")
    converted_account_id: Optional[str] = Field(default=None, description="accounts.id it converted into")
    converted_deal_id: Optional[str] = Field(default=None, description="deals.id it converted into")


class Deal(Entity, table=True):
    __tablename__ = "deals"
    __table_args__ = (Index("ix_deals_created_at", "created_at"), Index("ix_deals_closed_at", "closed_at"))
    account_id: Optional[str] = Field(default=None, description="accounts.id")
    owner_id: Optional[str] = Field(default=None, description="users.id of the rep")
    name: Optional[str] = Field(default=None, description="deal name")
    pipeline: Optional[str] = Field(default=None, description="pipeline id (pipeline_stages.pipeline)")
    stage: Optional[str] = Field(default=None, description="current stage id (pipeline_stages.stage)")
    amount: Optional[float] = Field(default=None, description="deal value in `currency`")
    currency: Optional[str] = Field(default=None, description="ISO 4217 code; null means the reporting currency")
    deal_type: Optional[str] = Field(default=None, description="new_business, renewal, upsell, ...")
    lead_source: Optional[str] = Field(default=None, description="where the deal came from")
    is_closed: bool = Field(default=False, description="won or lost")
    is_won: bool = Field(default=False, description="closed won")
    closed_at: Optional[datetime] = Field(default=None, description="close date (expected close date while open)")


class DealStageChange(Entity, table=True):
    """One row per stage transition; re-entering a stage adds a row."""

    __tablename__ = "deal_stage_changes"
    __table_args__ = (Index("ix_deal_stage_changes_deal", "source", "deal_id", "entered_at"),)
    deal_id: str = Field(description="deals.id")
    stage: str = Field(description="the stage entered")
    entered_at: datetime = Field(description="when the deal entered it")


class PipelineStage(Entity, table=True):
    __tablename__ = "pipeline_stages"
    pipeline: Optional[str] = Field(default=None, description="pipeline id")
    stage: Optional[str] = Field(default=None, description="stage id, as deals.stage holds it")
    label: Optional[str] = Field(default=None, description="stage name shown to users")
    display_order: Optional[int] = Field(default=None, description="position in the pipeline")
    probability: Optional[float] = Field(default=None, description="win probability, 0..1")
    is_closed: bool = Field(default=False, description="a closed stage")
    is_won: bool = Field(default=False, description="the won stage")


class Ticket(Entity, table=True):
    __tablename__ = "tickets"
    account_id: Optional[str] = Field(default=None, description="accounts.id")
    contact_id: Optional[str] = Field(default=None, description="contacts.id who raised it")
    owner_id: Optional[str] = Field(default=None, description="the agent")
    status: Optional[str] = Field(default=None, description="the source's ticket status")
    priority: Optional[str] = Field(default=None, description="low, medium, high, urgent, ...")
    channel: Optional[str] = Field(default=None, description="email, phone, chat, web, ...")
    first_response_at: Optional[datetime] = Field(default=None, description="first reply by an agent")
    resolved_at: Optional[datetime] = Field(default=None, description="when it was resolved (null: open)")


class Subscription(Entity, table=True):
    __tablename__ = "subscriptions"
    account_id: Optional[str] = Field(default=None, description="accounts.id")
    plan: Optional[str] = Field(default=None, description="plan or product name")
    mrr: Optional[float] = Field(default=None, description="monthly recurring revenue in `currency`")
    currency: Optional[str] = Field(default=None, description="ISO 4217 code; null means the reporting currency")
    started_at: Optional[datetime] = Field(default=None, description="start of this subscription term")
    ended_at: Optional[datetime] = Field(default=None, description="when it actually ended (null: still running)")
    term_end: Optional[datetime] = Field(default=None, description="end of the committed term: up for renewal")
    status: Optional[str] = Field(default=None, description="active, renewed, ended, cancelled, ...")


class Order(Entity, table=True):
    __tablename__ = "orders"
    account_id: Optional[str] = Field(default=None, description="accounts.id of the customer")
    amount: Optional[float] = Field(default=None, description="revenue in `currency`")
    cost: Optional[float] = Field(default=None, description="cost of serving it, in `currency`")
    currency: Optional[str] = Field(default=None, description="ISO 4217 code; null means the reporting currency")
    ordered_at: Optional[datetime] = Field(default=None, description="order date")


class SurveyResponse(Entity, table=True):
    __tablename__ = "survey_responses"
    account_id: Optional[str] = Field(default=None, description="accounts.id")
    contact_id: Optional[str] = Field(default=None, description="contacts.id who answered")
    survey: Optional[str] = Field(default=None, description="nps, csat, ...")
    score: Optional[float] = Field(default=None, description="the answer")
    scale_max: Optional[int] = Field(default=None, description="10 for 0-10 NPS, 5 for 1-5 scales")
    responded_at: Optional[datetime] = Field(default=None, description="when it was answered")


class MarketingSpend(Entity, table=True):
    __tablename__ = "marketing_spend"
    spent_on: Optional[date] = Field(default=None, description="day of the spend, or use period_start/end")
    period_start: Optional[date] = Field(default=None, description="first day the spend covers")
    period_end: Optional[date] = Field(default=None, description="last day the spend covers")
    channel: Optional[str] = Field(default=None, description="paid search, events, ...")
    campaign: Optional[str] = Field(default=None, description="campaign name")
    amount: Optional[float] = Field(default=None, description="spend in `currency`")
    currency: Optional[str] = Field(default=None, description="ISO 4217 code; null means the reporting currency")


class Quota(Entity, table=True):
    __tablename__ = "quotas"
    owner_id: Optional[str] = Field(default=None, description="users.id of the rep (or null for a team quota)")
    team: Optional[str] = Field(default=None, description="team the quota belongs to")
    period_start: Optional[date] = Field(default=None, description="first day of the quota period")
    period_end: Optional[date] = Field(default=None, description="last day of the quota period")
    amount: Optional[float] = Field(default=None, description="quota in `currency`")
    currency: Optional[str] = Field(default=None, description="ISO 4217 code; null means the reporting currency")


class FxRate(Entity, table=True):
    __tablename__ = "fx_rates"
    #: A conversion looks up the latest rate of a currency on a day, once per converted row.
    __table_args__ = (Index("ix_fx_rates_currency", "currency", "valid_from"),)
    currency: Optional[str] = Field(default=None, description="ISO 4217 code")
    rate_to_reporting: Optional[float] = Field(default=None, description="1 unit of currency in reporting currency")
    valid_from: Optional[date] = Field(default=None, description="first day the rate applies (until the next one)")


#: Normalized entity tables by name, in the order a sync loads them.
ENTITIES: dict[str, type[Entity]] = {
    m.__tablename__: m
    for m in (
        User, Account, Contact, Lead, Deal, DealStageChange, PipelineStage, Ticket,
        Subscription, Order, SurveyResponse, MarketingSpend, Quota, FxRate,
    )
}


# --- bookkeeping -------------------------------------------------------------


class SyncState(SQLModel, table=True):
    """Cursor per connector stream; written in the same transaction as the data it covers."""

    __tablename__ = "sync_state"
    connector: str = Field(primary_key=True)
    stream: str = Field(primary_key=True)
    cursor: Optional[str] = None
    state: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))
    updated_at: datetime


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_runs"
    id: Optional[int] = Field(default=None, primary_key=True)
    connector: str = Field(index=True)
    started_at: datetime
    finished_at: Optional[datetime] = None
    status: str = Field(description="running, success, failed")
    rows_read: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    error: Optional[str] = None
    details: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))
    #: The process that runs the sync, named when another sync of the connector is refused.
    pid: Optional[int] = None
    host: Optional[str] = None


class JobRun(SQLModel, table=True):
    """One run of a schedule, by the scheduler (an occurrence) or by hand (``crmkpi jobs run``).

    A scheduler claims an occurrence by inserting its row: the unique ``(job, occurrence)`` lets any
    number of replicas race and one win. The winner holds a lease it renews while it works; a lease
    that runs out means its process died, and the run is marked failed.
    """

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "occurrence", name="uq_job_runs_job_occurrence"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    job: str = Field(index=True)
    #: The occurrence's wall-clock time in the schedule's zone (``2026-11-01T01:30``); None for a run by hand.
    occurrence: Optional[str] = None
    #: When the occurrence was due (UTC).
    due_at: Optional[datetime] = None
    started_at: datetime
    finished_at: Optional[datetime] = None
    status: str = Field(description="running, success, failed, skipped")
    error: Optional[str] = None
    #: The process holding a running run (``host:pid``) and when its lease runs out unless renewed.
    lease_owner: Optional[str] = None
    lease_expires_at: Optional[datetime] = None
    rows_synced: Optional[int] = None
    results_saved: Optional[int] = None
    #: What its alerts step did: cells evaluated, firing, fired, resolved, repeated, not evaluated, failures.
    alerts: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))
    #: What its report step did: the file written and each channel's delivery (``sent``, ``failed: why``, ...).
    report: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))


class MetricResult(SQLModel, table=True):
    __tablename__ = "metric_results"
    __table_args__ = (Index("ix_metric_results_metric_period", "metric", "period_start"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    metric: str
    period_start: datetime
    period_end: datetime
    grain: Optional[str] = None
    segment: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))
    value: Optional[float] = None
    numerator: Optional[float] = None
    denominator: Optional[float] = None
    unit: str
    params: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))
    note: Optional[str] = Field(default=None, description="why value is null, when it is")
    target_status: Optional[str] = None
    computed_at: datetime
    data_freshness: Optional[datetime] = Field(default=None, description="oldest last successful sync feeding it")


class NotificationDelivery(SQLModel, table=True):
    """One notification to one channel, recorded before it is sent (docs/notifications.md).

    The unique ``(rule, occurrence, segment, channel)`` is the delivery's key: whoever inserts the row
    sends the message, so a second replica, or a run after a crash, never sends it again. A row left
    ``pending`` past its lease means its sender died mid-send: whether the message went out is unknown,
    and it is not sent again.
    """

    __tablename__ = "notification_deliveries"
    __table_args__ = (UniqueConstraint("rule", "occurrence", "segment", "channel",
                                       name="uq_notification_deliveries_key"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    rule: str = Field(description="the alert rule (or `test` for `crmkpi notify test`)")
    occurrence: str = Field(description="which firing of the rule, e.g. the period or the run it is about")
    segment: str = Field(default="", description="the segment it is about (`team=East`); empty: none")
    channel: str = Field(index=True, description="the configured channel's name")
    status: str = Field(description="pending, sent, failed, unknown (its sender died mid-send)")
    attempts: int = Field(default=0, description="sends tried")
    last_error: Optional[str] = Field(default=None, description="the last attempt's error, redacted")
    owner: Optional[str] = Field(default=None, description="the sending process (host:pid)")
    created_at: datetime
    updated_at: datetime = Field(description="the latest change; a pending row's lease runs from it")
    sent_at: Optional[datetime] = None


class AlertState(SQLModel, table=True):
    """The state of one alert rule for one segment cell (docs/alerts.md): ok or firing, since when, and the
    occurrence (``firing-N``) its messages are keyed by."""

    __tablename__ = "alert_states"
    rule: str = Field(primary_key=True, description="the rule's name in the config's alerts:")
    segment: str = Field(primary_key=True, description="the cell (`team=East`); empty: the rule is unsplit")
    state: str = Field(description="ok or firing")
    since: Optional[datetime] = Field(default=None, description="when it entered its state")
    occurrence: Optional[str] = Field(default=None, description="the current (or last) firing: firing-N")
    firings: int = Field(default=0, description="how often it fired: the N of the next occurrence")
    last_notified_at: Optional[datetime] = None
    last_value: Optional[float] = None
    last_reason: Optional[str] = Field(default=None, description="why it fires, is ok, or was not evaluated")
    last_period: Optional[str] = Field(default=None, description="the period last looked at")
    evaluated_at: Optional[datetime] = None


#: Tables a metric may read: the normalized entities plus the sync history (for data-health metrics).
TABLES = {**{name: model.__table__ for name, model in ENTITIES.items()}, "sync_runs": SyncRun.__table__}
