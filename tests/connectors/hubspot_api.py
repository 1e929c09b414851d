"""A HubSpot-compatible API over an in-memory portal, for :class:`tests.emulator.Emulator`.

It answers what the connector asks, in HubSpot's shapes: CRM v3 list, search and batch
read (with ``propertiesWithHistory``), v4 association batch reads, pipelines, owners and
the OAuth refresh-token grant; and it enforces HubSpot's limits the connector must
respect: 100 per list page (50 with history), 200 per search page, the 10,000-results
search cap, 100 ids per batch read (50 with history), bearer tokens (401) and scopes
(403), with HubSpot's error body ``{"status": "error", "message", "category"}``.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from emulator import Request, Response

SEARCH_CAP = 10_000
MODIFIED = {"contacts": "lastmodifieddate"}  # every other object: hs_lastmodifieddate


def modified_property(object_type: str) -> str:
    return MODIFIED.get(object_type, "hs_lastmodifieddate")


def iso(moment: datetime) -> str:
    """HubSpot's datetime text: UTC with milliseconds and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def error(status: int, message: str, category: str) -> Response:
    return Response(status, {"status": "error", "message": message, "correlationId": "emulated",
                             "category": category})


@dataclass
class Record:
    id: str
    properties: dict[str, Any]
    history: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # prop -> [(iso time, value)]
    archived: bool = False
    archived_at: str | None = None

    def json(self, object_type: str, properties: list[str], with_history: list[str]) -> dict[str, Any]:
        props = {"hs_object_id": self.id, "createdate": self.properties.get("createdate"),
                 modified_property(object_type): self.properties.get(modified_property(object_type))}
        props.update({p: self.properties.get(p) for p in properties})
        body: dict[str, Any] = {"id": self.id, "properties": props, "createdAt": self.properties.get("createdate"),
                                "updatedAt": self.properties.get(modified_property(object_type)),
                                "archived": self.archived}
        if self.archived:
            body["archivedAt"] = self.archived_at
        if with_history:
            body["propertiesWithHistory"] = {
                p: [{"value": v, "timestamp": t, "sourceType": "CRM_UI", "sourceId": "userId:1"}
                    for t, v in reversed(self.history.get(p, []))]  # newest first, as HubSpot lists them
                for p in with_history}
        return body


class Portal:
    """The data of one HubSpot account, and the emulated API over it (``portal.app`` is the app)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Record]] = {}
        self.associations: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.pipelines: dict[str, list[dict[str, Any]]] = {"deals": [], "tickets": []}
        self.owners: list[dict[str, Any]] = []
        self.tokens: set[str] = {"pat-test-token"}
        self.denied: dict[str, set[str]] = {}  # token -> object types it lacks the scope for
        self.clients: dict[str, tuple[str, str]] = {}  # client id -> (secret, refresh token)
        self.token_lifetime = 1800
        self._issued = itertools.count(1)

    # -- building the data ------------------------------------------------------------------------

    def add(self, object_type: str, id: str, properties: dict[str, Any], *,
            history: dict[str, list[tuple[str, str]]] | None = None,
            associations: dict[str, list[str]] | None = None) -> Record:
        record = Record(str(id), dict(properties), dict(history or {}))
        self.objects.setdefault(object_type, {})[record.id] = record
        for kind, ids in (associations or {}).items():
            self.associations.setdefault((object_type, kind), {})[record.id] = list(ids)
        return record

    def update(self, object_type: str, id: str, at: datetime, **properties: Any) -> None:
        """Change properties at ``at`` (history kept for every property with one), as a user would."""
        record = self.objects[object_type][id]
        for name, value in properties.items():
            record.properties[name] = value
            if name in record.history:
                record.history[name].append((iso(at), value))
        record.properties[modified_property(object_type)] = iso(at)

    def archive(self, object_type: str, id: str, at: datetime) -> None:
        """Archive a record; like HubSpot, its modified date does not change."""
        record = self.objects[object_type][id]
        record.archived, record.archived_at = True, iso(at)

    def issue_token(self) -> str:
        token = f"oauth-access-{next(self._issued)}"
        self.tokens.add(token)
        return token

    # -- the API ------------------------------------------------------------------------------------

    def app(self, request: Request) -> Response:
        if request.path == "/oauth/v1/token" and request.method == "POST":
            return self._token(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return error(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                              "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                              "oauth-overview", "INVALID_AUTHENTICATION")
        parts = request.path.strip("/").split("/")
        if any(kind in self.denied.get(token, set()) for kind in parts):
            return error(403, "This app hasn't been granted all required scopes to make this call. Read more "
                              "about required scopes here: https://developers.hubspot.com/scopes.", "MISSING_SCOPES")
        match parts:
            case ["crm", "v3", "objects", kind] if request.method == "GET":
                return self._list(kind, request)
            case ["crm", "v3", "objects", kind, "search"] if request.method == "POST":
                return self._search(kind, request.json())
            case ["crm", "v3", "objects", kind, "batch", "read"] if request.method == "POST":
                return self._batch_read(kind, request.json(), _flag(request.arg("archived")))
            case ["crm", "v4", "associations", kind, to, "batch", "read"] if request.method == "POST":
                return self._associations(kind, to, request.json())
            case ["crm", "v3", "pipelines", kind] if request.method == "GET":
                return Response(200, {"results": self.pipelines.get(kind, [])})
            case ["crm", "v3", "owners"] if request.method == "GET":
                return self._owners(request)
        return error(404, f"no route for {request.method} {request.path}", "OBJECT_NOT_FOUND")

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        secret, refresh = self.clients.get(form.get("client_id", ""), (None, None))
        if form.get("grant_type") != "refresh_token" or secret is None or form.get("client_secret") != secret \
                or form.get("refresh_token") != refresh:
            return Response(400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"})
        return Response(200, {"token_type": "bearer", "refresh_token": refresh, "access_token": self.issue_token(),
                              "expires_in": self.token_lifetime})

    def _sorted(self, kind: str, archived: bool) -> list[Record]:
        records = [r for r in self.objects.get(kind, {}).values() if r.archived == archived]
        return sorted(records, key=lambda r: int(r.id))

    def _list(self, kind: str, request: Request) -> Response:
        properties, history = _multi(request, "properties"), _multi(request, "propertiesWithHistory")
        limit = min(int(request.arg("limit", "10")), 50 if history else 100)
        after = int(request.arg("after") or 0)
        records = [r for r in self._sorted(kind, _flag(request.arg("archived"))) if int(r.id) >= after]
        page = records[:limit]
        associated = _multi(request, "associations")
        results = []
        for record in page:
            body = record.json(kind, properties, history)
            links = {to: self.associations.get((kind, to), {}).get(record.id) for to in associated}
            if any(links.values()):
                body["associations"] = {to: {"results": [{"id": i, "type": f"{kind[:-1]}_to_{to[:-1]}"}
                                                         for i in ids]} for to, ids in links.items() if ids}
            results.append(body)
        body: dict[str, Any] = {"results": results}
        if len(records) > limit:
            body["paging"] = {"next": {"after": records[limit].id, "link": "emulated"}}
        return Response(200, body)

    def _search(self, kind: str, query: dict[str, Any]) -> Response:
        limit = int(query.get("limit") or 10)
        if limit > 200:
            return error(400, "limit must be at most 200", "VALIDATION_ERROR")
        offset = int(query.get("after") or 0)
        if offset + limit > SEARCH_CAP:
            return error(400, f"There was a problem with the request. Search results are limited to "
                              f"{SEARCH_CAP} results.", "VALIDATION_ERROR")
        groups = query.get("filterGroups") or []
        found = [r for r in self._sorted(kind, False)
                 if not groups or any(all(_matches(r, f) for f in g.get("filters", [])) for g in groups)]
        for sort in reversed(query.get("sorts") or []):
            prop = sort if isinstance(sort, str) else sort["propertyName"]
            descending = (not isinstance(sort, str) and sort.get("direction") == "DESCENDING")
            if prop == "hs_object_id" and not descending:
                continue  # already in id order
            found.sort(key=lambda r, p=prop: _comparable(r, p), reverse=descending)
        page = found[offset:offset + limit]
        body: dict[str, Any] = {"total": len(found),
                                "results": [r.json(kind, query.get("properties") or [], []) for r in page]}
        if offset + limit < len(found):
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return Response(200, body)

    def _batch_read(self, kind: str, body: dict[str, Any], archived: bool) -> Response:
        history = body.get("propertiesWithHistory") or []
        inputs = body.get("inputs") or []
        most = 50 if history else 100
        if len(inputs) > most:
            return error(400, f"Batch input is limited to {most} inputs", "VALIDATION_ERROR")
        records = self.objects.get(kind, {})
        results = [records[i["id"]].json(kind, body.get("properties") or [], history)
                   for i in inputs if i["id"] in records and records[i["id"]].archived == archived]
        now = iso(datetime.now(UTC))
        return Response(200, {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now})

    def _associations(self, kind: str, to: str, body: dict[str, Any]) -> Response:
        links = self.associations.get((kind, to), {})
        results = []
        for item in body.get("inputs") or []:
            ids = links.get(str(item["id"]))
            if ids:
                results.append({"from": {"id": str(item["id"])}, "to": [
                    {"toObjectId": int(i), "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 5 if n == 0 else 341,
                         "label": "Primary" if n == 0 else None}]}
                    for n, i in enumerate(ids)]})
        return Response(200, {"status": "COMPLETE", "results": results})

    def _owners(self, request: Request) -> Response:
        archived = _flag(request.arg("archived"))
        owners = sorted((o for o in self.owners if o["archived"] == archived), key=lambda o: int(o["id"]))
        after = int(request.arg("after") or 0)
        limit = min(int(request.arg("limit", "100")), 500)
        rest = [o for o in owners if int(o["id"]) >= after]
        body: dict[str, Any] = {"results": rest[:limit]}
        if len(rest) > limit:
            body["paging"] = {"next": {"after": rest[limit]["id"]}}
        return Response(200, body)


def _flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


def _multi(request: Request, name: str) -> list[str]:
    """A list parameter, repeated (``?p=a&p=b``, as the Python client sends it) or comma separated."""
    return [p for value in request.query.get(name, []) for p in value.split(",") if p]


def _comparable(record: Record, prop: str) -> float | str:
    value = record.id if prop == "hs_object_id" else record.properties.get(prop)
    return float("-inf") if value is None else _parsed(value)


@functools.lru_cache(maxsize=4096)
def _parsed(value: str) -> float | str:
    """A number, a datetime as epoch milliseconds (how search filters give them), else the text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(value).timestamp() * 1000
    except ValueError:
        return value


def _matches(record: Record, rule: dict[str, Any]) -> bool:
    actual, operator = _comparable(record, rule["propertyName"]), rule["operator"]
    if operator == "HAS_PROPERTY":
        return actual != float("-inf")
    wanted = float(rule["value"]) if isinstance(actual, float) else rule["value"]
    return {"EQ": actual == wanted, "NEQ": actual != wanted, "GT": actual > wanted, "GTE": actual >= wanted,
            "LT": actual < wanted, "LTE": actual <= wanted}[operator]


# -- a small sales and support portal --------------------------------------------------------------

DEAL_STAGES = [  # (id, label, probability, closed)
    ("appointmentscheduled", "Appointment scheduled", "0.2", "false"),
    ("qualifiedtobuy", "Qualified to buy", "0.4", "false"),
    ("presentationscheduled", "Presentation scheduled", "0.6", "false"),
    ("contractsent", "Contract sent", "0.9", "false"),
    ("closedwon", "Closed won", "1.0", "true"),
    ("closedlost", "Closed lost", "0.0", "true"),
]
BASE = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def sample_portal() -> Portal:
    """Owners, pipelines, 6 companies, 16 contacts, 30 deals with stage histories and 12 tickets, in 2024.

    Deterministic and varied: re-entered stages, a repeated stage value in a history, deals
    without HubSpot's closed flags (the stage metadata decides), archived records, and
    timestamps with milliseconds.
    """
    portal = Portal()
    portal.owners = [
        {"id": "101", "email": "ann@example.com", "firstName": "Ann", "lastName": "Lee", "userId": 9001,
         "createdAt": "2023-06-01T08:00:00.000Z", "updatedAt": "2024-01-02T08:00:00.000Z", "archived": False,
         "teams": [{"id": "1", "name": "East", "primary": True}, {"id": "2", "name": "West", "primary": False}]},
        {"id": "102", "email": "bo@example.com", "firstName": "Bo", "lastName": "Ng", "userId": 9002,
         "createdAt": "2023-06-01T08:00:00.000Z", "updatedAt": "2024-01-02T08:00:00.000Z", "archived": False,
         "teams": [{"id": "2", "name": "West", "primary": True}]},
        {"id": "103", "email": "cy@example.com", "firstName": "Cy", "lastName": "Oz", "userId": 9003,
         "createdAt": "2023-06-01T08:00:00.000Z", "updatedAt": "2024-03-02T08:00:00.000Z", "archived": True,
         "teams": []},
    ]
    portal.pipelines["deals"] = [{
        "id": "default", "label": "Sales pipeline", "displayOrder": 0, "archived": False,
        "createdAt": "2023-01-01T00:00:00.000Z", "updatedAt": "2023-01-01T00:00:00.000Z",
        "stages": [{"id": sid, "label": label, "displayOrder": n, "archived": False,
                    "metadata": {"probability": p, "isClosed": closed},
                    "createdAt": "2023-01-01T00:00:00.000Z", "updatedAt": "2023-01-01T00:00:00.000Z"}
                   for n, (sid, label, p, closed) in enumerate(DEAL_STAGES)],
    }]
    portal.pipelines["tickets"] = [{
        "id": "0", "label": "Support pipeline", "displayOrder": 0, "archived": False,
        "createdAt": "2023-01-01T00:00:00.000Z", "updatedAt": "2023-01-01T00:00:00.000Z",
        "stages": [{"id": sid, "label": label, "displayOrder": n, "archived": False,
                    "metadata": {"ticketState": state, "isClosed": "true" if state == "CLOSED" else "false"},
                    "createdAt": "2023-01-01T00:00:00.000Z", "updatedAt": "2023-01-01T00:00:00.000Z"}
                   for n, (sid, label, state) in enumerate([("1", "New", "OPEN"), ("2", "Waiting on us", "OPEN"),
                                                            ("4", "Closed", "CLOSED")])],
    }]
    for n in range(1, 7):
        at = BASE + timedelta(days=n)
        portal.add("companies", str(n), {"name": f"Company {n}", "industry": "SOFTWARE" if n % 2 else "RETAIL",
                                          "country": "France" if n < 4 else "Germany",
                                          "hubspot_owner_id": "101" if n % 2 else "102", "annualrevenue": str(n * 1000),
                                          "createdate": iso(at), "hs_lastmodifieddate": iso(at + timedelta(hours=1))})
    stages = ["subscriber", "lead", "marketingqualifiedlead", "opportunity", "customer"]
    for n in range(1, 17):
        at = BASE + timedelta(days=n, minutes=n)
        stage = stages[n % len(stages)]
        props = {"email": f"person{n}@example.com", "firstname": f"First{n}", "lastname": f"Last{n}",
                 "lifecyclestage": stage, "hubspot_owner_id": "101" if n % 3 else "102",
                 "associatedcompanyid": str(n % 6 + 1), "company": f"Company {n % 6 + 1}",
                 "hs_analytics_source": "ORGANIC_SEARCH" if n % 2 else "PAID_SEARCH",
                 "createdate": iso(at), "lastmodifieddate": iso(at + timedelta(days=40))}
        if stage != "subscriber":
            props["hs_lifecyclestage_lead_date"] = iso(at + timedelta(days=1))
        if stage == "customer":
            props["hs_lifecyclestage_customer_date"] = iso(at + timedelta(days=30, hours=3))
        portal.add("contacts", str(n), props)
    for n in range(1, 31):
        _sample_deal(portal, n)
    for n in range(1, 13):
        created = BASE + timedelta(days=3 * n, hours=n)
        props = {"subject": f"Ticket {n}", "hs_pipeline": "0", "hs_pipeline_stage": "1" if n % 4 == 0 else "4",
                 "hs_ticket_priority": ["LOW", "MEDIUM", "HIGH"][n % 3], "source_type": ["EMAIL", "CHAT"][n % 2],
                 "hubspot_owner_id": "101" if n % 2 else "102", "createdate": iso(created),
                 "first_agent_reply_date": iso(created + timedelta(minutes=30 * n)),
                 "hs_lastmodifieddate": iso(created + timedelta(days=5))}
        if n % 4:
            props["closed_date"] = iso(created + timedelta(hours=5 * n, minutes=7))
        portal.add("tickets", str(n), props, associations={"companies": [str(n % 6 + 1)], "contacts": [str(n)]})
    return portal


def _sample_deal(portal: Portal, n: int) -> None:
    """Deal ``n``: walks some stages (deal 7 re-enters one, deal 9 repeats a value), won, lost or open."""
    created = BASE + timedelta(days=2 * n, hours=n % 5)
    path = ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "contractsent"][: 1 + n % 4]
    if n == 7:
        path = ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "qualifiedtobuy", "contractsent"]
    outcome = ("closedwon", "closedlost", None)[n % 3]
    if outcome:
        path.append(outcome)
    history, at = [], created
    for step, stage in enumerate(path):
        history.append((iso(at), stage))
        if n == 9 and step == 1:
            history.append((iso(at + timedelta(hours=2)), stage))  # saved twice: still one change
        at += timedelta(days=1 + (n * 7 + step * 3) % 11, hours=step, milliseconds=123 * step)
    closed = outcome is not None
    closedate = history[-1][0] if closed else iso(created + timedelta(days=90))
    props = {"dealname": f"Deal {n}", "amount": str(1000 * n + 0.5),
             "deal_currency_code": "EUR" if n % 5 == 0 else "USD",
             "dealstage": path[-1], "pipeline": "default", "closedate": closedate, "createdate": iso(created),
             "dealtype": "newbusiness" if n % 2 else "existingbusiness", "hubspot_owner_id": "101" if n % 2 else "102",
             "hs_analytics_source": "DIRECT_TRAFFIC", "hs_lastmodifieddate": history[-1][0], "priority": "high"}
    if n % 6:  # every sixth deal lacks HubSpot's calculated flags: the pipeline stage metadata decides
        props["hs_is_closed"] = "true" if closed else "false"
        props["hs_is_closed_won"] = "true" if outcome == "closedwon" else "false"
    portal.add("deals", str(n), props, history={"dealstage": history},
               associations={"companies": [str(n % 6 + 1), str((n + 1) % 6 + 1)]} if n % 10 else {})


def add_contacts(portal: Portal, count: int, modified: datetime, first_id: int = 1000) -> None:
    """``count`` plain contacts all last modified at the same moment (like a month-end bulk update)."""
    stamp = iso(modified)
    for n in range(first_id, first_id + count):
        portal.add("contacts", str(n), {"email": f"bulk{n}@example.com", "firstname": "Bulk", "lastname": str(n),
                                        "lifecyclestage": "subscriber", "createdate": stamp,
                                        "lastmodifieddate": stamp})


def add_deals(portal: Portal, count: int, first_id: int = 1000) -> None:
    """``count`` more open deals, each with a two-stage history."""
    for n in range(first_id, first_id + count):
        created = BASE + timedelta(days=n % 300, minutes=n)
        moved = created + timedelta(days=3)
        portal.add("deals", str(n), {"dealname": f"Bulk deal {n}", "amount": str(n), "dealstage": "qualifiedtobuy",
                                     "pipeline": "default", "createdate": iso(created), "closedate": iso(moved),
                                     "hs_is_closed": "false", "hs_is_closed_won": "false",
                                     "hs_lastmodifieddate": iso(moved)},
                   history={"dealstage": [(iso(created), "appointmentscheduled"), (iso(moved), "qualifiedtobuy")]},
                   associations={"companies": [str(n % 6 + 1)]})
