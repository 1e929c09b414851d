"""What an export may call a table or a column, for the did-you-mean of names that match none.

CRM exports name things their own way (``Close Date``, ``IsWon``, ``opportunities.csv``):
a name is first compared with the normalized names letters and digits only, then looked up
among common synonyms, and only then matched by spelling.
"""

from __future__ import annotations

import re
from typing import Iterable

from crmkpi.models import ENTITIES
from crmkpi.suggest import close_matches, suggest

#: Folded export names -> the tables they usually hold.
TABLE_SYNONYMS = {
    "opportunity": "deals", "opportunities": "deals", "deal": "deals", "pipeline": "deals",
    "company": "accounts", "companies": "accounts", "organization": "accounts", "organizations": "accounts",
    "customers": "accounts", "person": "contacts", "people": "contacts", "contact": "contacts", "lead": "leads",
    "mqls": "leads", "owners": "users", "user": "users", "reps": "users", "employees": "users", "agents": "users",
    "ticket": "tickets", "case": "tickets", "cases": "tickets", "incidents": "tickets", "issues": "tickets",
    "subscription": "subscriptions", "contracts": "subscriptions", "order": "orders", "invoices": "orders",
    "purchases": "orders", "surveys": "survey_responses", "responses": "survey_responses",
    "nps": "survey_responses", "spend": "marketing_spend", "adspend": "marketing_spend", "quota": "quotas",
    "targets": "quotas", "stages": "pipeline_stages", "dealstages": "pipeline_stages",
    "stagehistory": "deal_stage_changes", "opportunityhistory": "deal_stage_changes",
    "dealstagehistory": "deal_stage_changes", "fx": "fx_rates", "exchangerates": "fx_rates", "rates": "fx_rates",
}

#: Folded export column names -> normalized columns they usually hold (the first the table has is meant).
COLUMN_SYNONYMS = {
    "won": ("is_won",), "closed": ("is_closed",), "deleted": ("is_deleted",), "archived": ("is_deleted",),
    "active": ("is_active",),
    "closedate": ("closed_at",), "closeddate": ("closed_at",), "dateclosed": ("closed_at",),
    "closedon": ("closed_at",), "wondate": ("closed_at", "converted_at"), "resolutiondate": ("resolved_at",),
    "closedat": ("resolved_at",), "solvedat": ("resolved_at",), "resolveddate": ("resolved_at",),
    "createdate": ("created_at",), "createddate": ("created_at",), "created": ("created_at",),
    "creationdate": ("created_at",), "datecreated": ("created_at",), "createdon": ("created_at",),
    "modified": ("updated_at",), "modifiedat": ("updated_at",), "lastmodified": ("updated_at",),
    "lastmodifieddate": ("updated_at",), "updated": ("updated_at",), "systemmodstamp": ("updated_at",),
    "value": ("amount",), "dealvalue": ("amount",), "revenue": ("amount",), "total": ("amount",),
    "price": ("amount",), "stagename": ("stage",), "dealstage": ("stage",), "currencycode": ("currency",),
    "currencyisocode": ("currency",), "type": ("deal_type",), "leadsource": ("lead_source",),
    "origin": ("lead_source",), "owner": ("owner_id",), "account": ("account_id",), "company": ("account_id",),
    "fullname": ("name",), "dealname": ("name",), "opportunityname": ("name",), "emailaddress": ("email",),
    "opportunityid": ("id",), "dealid": ("id",), "recordid": ("id",), "key": ("id",),
    "conversiondate": ("converted_at",), "converteddate": ("converted_at",),
}


def fold(name: str) -> str:
    """``Close Date``, ``close_date`` and ``CloseDate`` alike: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def column_matches(name: str, columns: Iterable[str]) -> list[str]:
    """The columns an export's column ``name`` most likely means, best first."""
    columns = list(columns)
    folded = fold(name)
    same = [c for c in columns if fold(c) == folded]
    synonyms = [c for c in COLUMN_SYNONYMS.get(folded, ()) if c in columns][:1]
    return same or synonyms or close_matches(name, columns)


def column_suggestion(name: str, columns: Iterable[str]) -> str:
    """``"; did you mean 'is_won'?"`` for ``won``, or ``""``."""
    return suggest(column_matches(name, columns))


def table_matches(name: str) -> list[str]:
    """The tables a file or table ``name`` (without extension) most likely means."""
    folded = fold(name)
    same = [t for t in ENTITIES if fold(t) == folded]
    synonym = TABLE_SYNONYMS.get(folded)
    return same or ([synonym] if synonym else close_matches(name, ENTITIES))
