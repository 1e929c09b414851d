"""The HubSpot objects crmkpi reads, declared in one table.

Each :class:`ObjectSpec` says which HubSpot object feeds which normalized table, the
property its incremental search filters on, what it requests, and the default column
mapping onto fields of the flattened record (see :mod:`.records`). Fields starting with
``_`` are computed by :mod:`.records` (names, associated ids, closed/won flags).

Owners and pipelines are small and read in full every sync (see :mod:`.streams`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ObjectSpec:
    """One HubSpot object -> one normalized table."""

    name: str  # stream name, and the key of ``objects:`` in the settings
    object_type: str  # as the API path spells it
    table: str
    cursor_property: str  # incremental searches filter on it (HubSpot's last-modified date)
    properties: tuple[str, ...]
    columns: dict[str, str]  # normalized column -> flattened record field
    associations: tuple[str, ...] = ()  # object types whose associated id each record needs
    history: str | None = None  # property read with its full history (list or batch read, <= 50 a call)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> {HubSpot value: stored}
    #: Read archived records each sync and mark them deleted (archiving leaves the modified date alone).
    archived_pass: bool = True


COMPANIES = ObjectSpec(
    name="companies", object_type="companies", table="accounts", cursor_property="hs_lastmodifieddate",
    properties=("name", "industry", "country", "type", "hubspot_owner_id", "createdate", "hs_lastmodifieddate"),
    columns={"name": "name", "industry": "industry", "region": "country", "owner_id": "hubspot_owner_id",
             "created_at": "createdate", "updated_at": "hs_lastmodifieddate"},  # segment: portal-specific
)

CONTACTS = ObjectSpec(
    name="contacts", object_type="contacts", table="contacts", cursor_property="lastmodifieddate",
    properties=("email", "firstname", "lastname", "lifecyclestage", "hubspot_owner_id", "associatedcompanyid",
                "createdate", "lastmodifieddate"),
    columns={"email": "email", "name": "_full_name", "lifecycle_stage": "lifecyclestage",
             "owner_id": "hubspot_owner_id", "account_id": "associatedcompanyid", "created_at": "createdate",
             "updated_at": "lastmodifieddate"},
)

DEALS = ObjectSpec(
    name="deals", object_type="deals", table="deals", cursor_property="hs_lastmodifieddate",
    properties=("dealname", "amount", "deal_currency_code", "dealstage", "pipeline", "closedate", "createdate",
                "dealtype", "hubspot_owner_id", "hs_analytics_source", "hs_is_closed", "hs_is_closed_won",
                "hs_lastmodifieddate"),
    columns={"name": "dealname", "amount": "amount", "currency": "deal_currency_code", "stage": "dealstage",
             "pipeline": "pipeline", "closed_at": "closedate", "created_at": "createdate",
             "deal_type": "dealtype", "owner_id": "hubspot_owner_id", "lead_source": "hs_analytics_source",
             "is_closed": "_is_closed", "is_won": "_is_won", "account_id": "_companies",
             "updated_at": "hs_lastmodifieddate"},
    associations=("companies",),
    values={"deal_type": {"newbusiness": "new_business", "existingbusiness": "existing_business"}},
)

#: The same deals again, read only for their ``dealstage`` history: one row per stage entered.
DEAL_STAGE_HISTORY = ObjectSpec(
    name="deal_stage_history", object_type="deals", table="deal_stage_changes",
    cursor_property="hs_lastmodifieddate", properties=("dealstage", "hs_lastmodifieddate"),
    columns={"deal_id": "deal_id", "stage": "stage", "entered_at": "entered_at", "created_at": "entered_at",
             "updated_at": "entered_at"},
    history="dealstage", archived_pass=False,  # the metrics drop the changes of deleted deals
)

TICKETS = ObjectSpec(
    name="tickets", object_type="tickets", table="tickets", cursor_property="hs_lastmodifieddate",
    properties=("subject", "hs_pipeline", "hs_pipeline_stage", "hs_ticket_priority", "source_type",
                "hubspot_owner_id", "createdate", "closed_date", "first_agent_reply_date", "hs_lastmodifieddate"),
    columns={"status": "hs_pipeline_stage", "priority": "hs_ticket_priority", "channel": "source_type",
             "owner_id": "hubspot_owner_id", "created_at": "createdate", "resolved_at": "closed_date",
             "first_response_at": "first_agent_reply_date", "account_id": "_companies",
             "contact_id": "_contacts", "updated_at": "hs_lastmodifieddate"},
    associations=("companies", "contacts"),
)

#: HubSpot's leads object (Sales Hub); used with ``leads: {source: object}``.
LEADS_OBJECT = ObjectSpec(
    name="leads", object_type="leads", table="leads", cursor_property="hs_lastmodifieddate",
    properties=("hs_lead_name", "hs_pipeline_stage", "hs_lead_type", "hubspot_owner_id", "createdate",
                "hs_lastmodifieddate"),
    columns={"name": "hs_lead_name", "status": "hs_pipeline_stage", "lead_source": "hs_lead_type",
             "owner_id": "hubspot_owner_id", "created_at": "createdate", "updated_at": "hs_lastmodifieddate"},
)

#: Contacts that reached the lead lifecycle stage, as leads (``leads: {source: lifecycle}``, the default).
#: The two date properties come from the settings, see :func:`lifecycle_leads`.
LIFECYCLE_LEADS = ObjectSpec(
    name="leads", object_type="contacts", table="leads", cursor_property="lastmodifieddate",
    properties=("email", "firstname", "lastname", "company", "hs_analytics_source", "lifecyclestage",
                "hubspot_owner_id", "associatedcompanyid", "lastmodifieddate"),
    columns={"email": "email", "name": "_full_name", "company": "company", "lead_source": "hs_analytics_source",
             "status": "lifecyclestage", "owner_id": "hubspot_owner_id", "updated_at": "lastmodifieddate",
             "converted_account_id": "_converted_account"},
)

#: Objects by stream name, in the order a sync reads them (companies before what refers to them).
OBJECTS: dict[str, ObjectSpec] = {s.name: s for s in (COMPANIES, CONTACTS, DEALS, DEAL_STAGE_HISTORY, TICKETS,
                                                       LEADS_OBJECT)}


def lifecycle_leads(became_lead: str, converted: str) -> ObjectSpec:
    """The lifecycle leads spec reading the lead and conversion dates from these contact properties."""
    return ObjectSpec(
        **{**LIFECYCLE_LEADS.__dict__,
           "properties": (*LIFECYCLE_LEADS.properties, became_lead, converted),
           "columns": {**LIFECYCLE_LEADS.columns, "created_at": became_lead, "converted_at": converted}})
