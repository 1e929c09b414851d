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

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

#: Version of the public schema: the id of the newest migration.
SCHEMA_REVISION = "0001"


class Entity(SQLModel):
    """Columns every normalized entity carries."""

    source: str = Field(primary_key=True, description="connector instance name")
    id: str = Field(primary_key=True, description="the record's id in its source")
    created_at: Optional[datetime] = Field(default=None, description="when the source created the record")
    updated_at: Optional[datetime] = Field(default=None, description="when the source last changed the record")
    is_deleted: bool = Field(default=False, description="deleted or archived in the source")
    synced_at: Optional[datetime] = Field(default=None, description="when crmkpi last wrote this row")
    extra: Optional[dict[str, Any]] = Field(
        default=None, sa_type=JSON, description="custom and unmapped source fields"
    )


class User(Entity, table=True):
    __tablename__ = "users"
    name: Optional[str] = None
    email: Optional[str] = None
    team: Optional[str] = None
    role: Optional[str] = None
    is_active: Optional[bool] = None


class Account(Entity, table=True):
    __tablename__ = "accounts"
    name: Optional[str] = None
    industry: Optional[str] = None
    region: Optional[str] = None
    segment: Optional[str] = None
    owner_id: Optional[str] = None


class Contact(Entity, table=True):
    __tablename__ = "contacts"
    account_id: Optional[str] = None
    email: Optional[str] = None
    name: Optional[str] = None
    lifecycle_stage: Optional[str] = None
    owner_id: Optional[str] = None


class Lead(Entity, table=True):
    __tablename__ = "leads"
    email: Optional[str] = None
    name: Optional[str] = None
    company: Optional[str] = None
    lead_source: Optional[str] = None
    status: Optional[str] = None
    owner_id: Optional[str] = None
    converted_at: Optional[datetime] = None
    converted_account_id: Optional[str] = None
    converted_deal_id: Optional[str] = None


class Deal(Entity, table=True):
    __tablename__ = "deals"
    __table_args__ = (Index("ix_deals_created_at", "created_at"), Index("ix_deals_closed_at", "closed_at"))
    account_id: Optional[str] = None
    owner_id: Optional[str] = None
    name: Optional[str] = None
    pipeline: Optional[str] = None
    stage: Optional[str] = None
    amount: Optional[float] = None
    currency: Optional[str] = None
    deal_type: Optional[str] = Field(default=None, description="new_business, renewal, upsell, ...")
    lead_source: Optional[str] = None
    is_closed: bool = False
    is_won: bool = False
    closed_at: Optional[datetime] = None


class DealStageChange(Entity, table=True):
    """One row per stage transition; re-entering a stage adds a row."""

    __tablename__ = "deal_stage_changes"
    __table_args__ = (Index("ix_deal_stage_changes_deal", "source", "deal_id", "entered_at"),)
    deal_id: str
    stage: str
    entered_at: datetime


class PipelineStage(Entity, table=True):
    __tablename__ = "pipeline_stages"
    pipeline: Optional[str] = None
    stage: Optional[str] = None
    label: Optional[str] = None
    display_order: Optional[int] = None
    probability: Optional[float] = None
    is_closed: bool = False
    is_won: bool = False


class Ticket(Entity, table=True):
    __tablename__ = "tickets"
    account_id: Optional[str] = None
    contact_id: Optional[str] = None
    owner_id: Optional[str] = Field(default=None, description="the agent")
    status: Optional[str] = None
    priority: Optional[str] = None
    channel: Optional[str] = None
    first_response_at: Optional[datetime] = None
    resolved_at: Optional[datetime] = None


class Subscription(Entity, table=True):
    __tablename__ = "subscriptions"
    account_id: Optional[str] = None
    plan: Optional[str] = None
    mrr: Optional[float] = None
    currency: Optional[str] = None
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    term_end: Optional[datetime] = None
    status: Optional[str] = Field(default=None, description="active, renewed, ended, cancelled, ...")


class Order(Entity, table=True):
    __tablename__ = "orders"
    account_id: Optional[str] = None
    amount: Optional[float] = None
    cost: Optional[float] = None
    currency: Optional[str] = None
    ordered_at: Optional[datetime] = None


class SurveyResponse(Entity, table=True):
    __tablename__ = "survey_responses"
    account_id: Optional[str] = None
    contact_id: Optional[str] = None
    survey: Optional[str] = Field(default=None, description="nps, csat, ...")
    score: Optional[float] = None
    scale_max: Optional[int] = Field(default=None, description="10 for 0-10 NPS, 5 for 1-5 scales")
    responded_at: Optional[datetime] = None


class MarketingSpend(Entity, table=True):
    __tablename__ = "marketing_spend"
    spent_on: Optional[date] = Field(default=None, description="day of the spend, or use period_start/end")
    period_start: Optional[date] = None
    period_end: Optional[date] = None
    channel: Optional[str] = None
    campaign: Optional[str] = None
    amount: Optional[float] = None
    currency: Optional[str] = None


class Quota(Entity, table=True):
    __tablename__ = "quotas"
    owner_id: Optional[str] = None
    team: Optional[str] = None
    period_start: Optional[date] = None
    period_end: Optional[date] = None
    amount: Optional[float] = None
    currency: Optional[str] = None


class FxRate(Entity, table=True):
    __tablename__ = "fx_rates"
    currency: Optional[str] = None
    rate_to_reporting: Optional[float] = Field(default=None, description="1 unit of currency in reporting currency")
    valid_from: Optional[date] = None


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
    state: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON)
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
    details: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON)


class JobRun(SQLModel, table=True):
    """One scheduled or manual job (sync and/or metrics) run by the scheduler or service."""

    __tablename__ = "job_runs"
    id: Optional[int] = Field(default=None, primary_key=True)
    job: str = Field(index=True)
    started_at: datetime
    finished_at: Optional[datetime] = None
    status: str
    error: Optional[str] = None


class MetricResult(SQLModel, table=True):
    __tablename__ = "metric_results"
    __table_args__ = (Index("ix_metric_results_metric_period", "metric", "period_start"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    metric: str
    period_start: datetime
    period_end: datetime
    grain: Optional[str] = None
    segment: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON)
    value: Optional[float] = None
    numerator: Optional[float] = None
    denominator: Optional[float] = None
    unit: str
    params: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON)
    note: Optional[str] = Field(default=None, description="why value is null, when it is")
    target_status: Optional[str] = None
    computed_at: datetime
    data_freshness: Optional[datetime] = Field(default=None, description="oldest last successful sync feeding it")
