"""The objects a sync reads: sObject -> table, default mapping, cursor, deletes, merge.

Every object is read incrementally through /queryAll (so soft deletes arrive with
``IsDeleted``) on the first of its ``cursors`` that its describe lists; objects with
``hard_deletes`` that describe marks ``replicateable`` are also swept with getDeleted.
Records last changed before ``start_date`` arrive only as ``before_start_date`` says:
reference data other records point at must be there whatever the window.
A user's ``objects:`` block is merged over these defaults; objects it adds (custom
objects) get the defaults of :class:`SObject`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

#: Cursor candidates, best first: SystemModstamp also moves on system changes (e.g. a
#: record's owner deactivated), LastModifiedDate only on user edits.
CURSOR_FIELDS = ("SystemModstamp", "LastModifiedDate", "CreatedDate")

#: Columns every entity takes from the same standard fields.
COMMON = {"id": "Id", "created_at": "CreatedDate", "updated_at": "LastModifiedDate", "is_deleted": "IsDeleted"}


def _percent_to_fraction(record: dict[str, Any]) -> None:
    value = record.get("DefaultProbability")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        record["DefaultProbability"] = value / 100


@dataclass(frozen=True)
class SObject:
    """One sObject: its table, default mapping, cursor, delete handling and how rows merge.

    ``cursors``: the first of these that describe lists is the cursor (none: every sync
    reads the whole object). ``hard_deletes``: sweep getDeleted (only where describe says
    ``replicateable``); soft deletes always arrive through /queryAll as ``IsDeleted``.
    ``kind`` "records" upserts one row per record by Id; "stage_history" reads
    OpportunityHistory per opportunity and keeps only the rows that enter a new stage (see
    ``streams.StageHistoryStream``). ``prepare`` adjusts a record in place before it is
    mapped (units the store defines differently).

    ``before_start_date``: which records last changed before ``start_date`` arrive anyway.
    "none": none. "all": the first sync reads the whole object (users, stages: few, and
    every owner or stage must resolve). "referenced": after its window each sync reads by
    Id the records that synced rows point at but the store lacks (accounts, contacts: many,
    most never referenced by anything in the window).
    """

    name: str
    table: str
    columns: dict[str, str] = field(default_factory=dict)
    cursors: tuple[str, ...] = CURSOR_FIELDS
    hard_deletes: bool = True
    kind: Literal["records", "stage_history"] = "records"
    prepare: Callable[[dict[str, Any]], None] | None = None
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> {field value: stored value}
    before_start_date: Literal["none", "all", "referenced"] = "none"

    def cursor_in(self, describe: dict[str, Any]) -> str | None:
        """The first of ``cursors`` that the object's describe lists."""
        names = {f["name"] for f in describe["fields"]}
        return next((c for c in self.cursors if c in names), None)


#: In the order a sync reads them. The objects read by Id when referenced come last, so that the
#: rows pointing at them are stored first: Contact, then Account (contacts point at accounts).
OBJECTS: dict[str, SObject] = {o.name: o for o in (
    SObject("User", "users", {"name": "Name", "email": "Email", "is_active": "IsActive", "team": "Department",
                              "role": "UserRole.Name"}, before_start_date="all"),
    SObject("Lead", "leads", {"email": "Email", "name": "Name", "company": "Company", "lead_source": "LeadSource",
                              "status": "Status", "owner_id": "OwnerId", "converted_at": "ConvertedDate",
                              "converted_account_id": "ConvertedAccountId",
                              "converted_deal_id": "ConvertedOpportunityId"}),
    SObject("Opportunity", "deals", {"account_id": "AccountId", "owner_id": "OwnerId", "name": "Name",
                                     "stage": "StageName", "amount": "Amount", "currency": "CurrencyIsoCode",
                                     "deal_type": "Type", "lead_source": "LeadSource", "is_closed": "IsClosed",
                                     "is_won": "IsWon", "closed_at": "CloseDate"},
            # Salesforce's standard Type picklist, in the store's deal_type words (see the data contract)
            values={"deal_type": {"New Customer": "new_business", "New Business": "new_business",
                                  "Existing Customer - Upgrade": "upsell", "Existing Customer - Replacement": "renewal",
                                  "Existing Customer - Downgrade": "downgrade", "Renewal": "renewal",
                                  "Upsell": "upsell"}}),
    SObject("OpportunityHistory", "deal_stage_changes", {"deal_id": "OpportunityId", "stage": "StageName",
                                                         "entered_at": "CreatedDate", "updated_at": "SystemModstamp"},
            # The window is on the opportunities' cursor; history rows are not 1:1 with stage
            # changes, so getDeleted ids could not be matched to rows.
            cursors=(), hard_deletes=False, kind="stage_history"),
    SObject("OpportunityStage", "pipeline_stages", {"stage": "ApiName", "label": "MasterLabel",
                                                    "display_order": "SortOrder",
                                                    "probability": "DefaultProbability", "is_closed": "IsClosed",
                                                    "is_won": "IsWon"},
            hard_deletes=False, prepare=_percent_to_fraction, before_start_date="all"),  # setup: no getDeleted
    SObject("Case", "tickets", {"account_id": "AccountId", "contact_id": "ContactId", "owner_id": "OwnerId",
                                "status": "Status", "priority": "Priority", "channel": "Origin",
                                "resolved_at": "ClosedDate"}),
    SObject("Contact", "contacts", {"account_id": "AccountId", "email": "Email", "name": "Name",
                                    "owner_id": "OwnerId"}, before_start_date="referenced"),
    SObject("Account", "accounts", {"name": "Name", "industry": "Industry", "region": "BillingCountry",
                                    "owner_id": "OwnerId"}, before_start_date="referenced"),
)}

#: Field types SOQL cannot select alongside others in Bulk, or that are too big to sync.
UNSELECTABLE_TYPES = {"address", "location", "base64", "complexvalue"}
