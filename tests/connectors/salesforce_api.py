"""A Salesforce-compatible org for tests/emulator.py: logins, SOQL over REST, describe, getDeleted, Bulk 2.0.

``Org`` holds records per sObject (values as Salesforce's REST API returns them) and
answers the calls the connector makes, in Salesforce's shapes: error bodies
``[{"message", "errorCode"}]``, ``nextRecordsUrl`` paging, ``Sforce-Limit-Info``,
Bulk 2.0 CSV pages with ``Sforce-Locator``. The SOQL it understands is the subset the
connector sends: ``SELECT fields|COUNT() FROM Obj [WHERE a AND b ...] [ORDER BY f, ...]``
with comparisons, ``Field IN (SELECT ...)`` and ``Field IN ('a', 'b')``; like Salesforce it
refuses a REST query whose URL is longer than 16,384 characters. ``build_org`` makes a
deterministic org.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt

from emulator import Request, Response

VERSION = "59.0"
PREFIX = f"/services/data/v{VERSION}/"
#: Salesforce refuses longer request URLs.
MAX_URL = 16_384


def sf_datetime(moment: datetime) -> str:
    """Salesforce's REST datetime format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


class Org:
    """An in-memory org; ``url`` must be set to the emulator's URL (it is the instance URL)."""

    def __init__(self) -> None:
        self.url = ""
        self.schema: dict[str, dict[str, dict[str, Any]]] = {}  # object -> field -> describe entry
        self.replicateable: dict[str, bool] = {}
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.deleted_log: dict[str, list[tuple[str, datetime]]] = {}
        self.credentials = {"username": "ana@example.com", "password": "s3cret-pass", "security_token": "TOKEN42",
                            "consumer_key": "CK-123", "consumer_secret": "CS-456"}
        self.public_key: bytes | None = None
        self.tokens: set[str] = set()
        self.page_size = 2000
        self.api_used, self.api_limit = 0, 1_000_000
        self.soql: list[str] = []  # every query, bulk jobs included
        self.returned: list[int] = []  # records returned per query page / bulk page
        self._cursors: dict[str, list[dict]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # -- data --------------------------------------------------------------------------------

    def define(self, sobject: str, fields: dict[str, str | tuple[str, str]], replicateable: bool = True) -> None:
        """Fields as name -> type, or name -> ("reference", target object)."""
        entries = {}
        for name, kind in fields.items():
            entry: dict[str, Any] = {"name": name, "type": kind, "relationshipName": None, "referenceTo": []}
            if isinstance(kind, tuple):
                entry.update(type="reference", referenceTo=[kind[1]], relationshipName=name[:-2])
            entries[name] = entry
        self.schema[sobject] = entries
        self.replicateable[sobject] = replicateable
        self.records.setdefault(sobject, {})
        self.deleted_log.setdefault(sobject, [])

    def new_id(self, sobject: str) -> str:
        return f"{sobject[:3].upper()}{next(self._ids):015d}"

    def insert(self, sobject: str, **values: Any) -> str:
        record = {name: None for name in self.schema[sobject]}
        record.update(values)
        record.setdefault("Id", self.new_id(sobject))
        if record["Id"] is None:
            record["Id"] = self.new_id(sobject)
        if "IsDeleted" in self.schema[sobject] and record.get("IsDeleted") is None:
            record["IsDeleted"] = False
        self.records[sobject][record["Id"]] = record
        return record["Id"]

    def touch(self, sobject: str, record_id: str, at: datetime, **values: Any) -> None:
        """Change a record as a user would: its modstamps move to ``at``."""
        record = self.records[sobject][record_id]
        record.update(values)
        for stamp in ("SystemModstamp", "LastModifiedDate"):
            if stamp in self.schema[sobject]:
                record[stamp] = sf_datetime(at)

    def soft_delete(self, sobject: str, record_id: str, at: datetime) -> None:
        self.touch(sobject, record_id, at, IsDeleted=True)

    def hard_delete(self, sobject: str, record_id: str, at: datetime) -> None:
        del self.records[sobject][record_id]
        self.deleted_log[sobject].append((record_id, at))

    def hide(self, sobject: str) -> None:
        """Answer as an org without the object, or a login that may not read it, does.

        describe answers 404 NOT_FOUND, and SOQL on it INVALID_TYPE.
        """
        del self.schema[sobject]

    def expire_sessions(self) -> None:
        self.tokens.clear()

    def issue_token(self) -> str:
        token = "00D!" + uuid.uuid4().hex
        self.tokens.add(token)
        return token

    # -- HTTP --------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        if request.path == "/services/oauth2/token":
            return self._oauth(request)
        if request.path.startswith("/services/Soap/u/"):
            return self._soap_login(request)
        if not request.path.startswith(PREFIX):
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        self.api_used += 1
        response = self._data(request, request.path.removeprefix(PREFIX))
        response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.api_limit}"
        return response

    def _data(self, request: Request, path: str) -> Response:
        parts = path.strip("/").split("/")
        if parts[0] in ("query", "queryAll") and len(parts) == 1:
            soql = request.arg("q") or ""
            if len(f"{request.path}?{urlencode({'q': soql})}") > MAX_URL:
                return Response(414, "URI Too Long")
            return self._query(soql, include_deleted=parts[0] == "queryAll")
        if parts[0] in ("query", "queryAll") and len(parts) == 2:
            return self._page(parts[1])
        if parts[0] == "sobjects" and len(parts) == 3 and parts[1] in self.schema:
            if parts[2] == "describe":
                return Response(200, {"name": parts[1], "replicateable": self.replicateable[parts[1]],
                                      "fields": list(self.schema[parts[1]].values())})
            if parts[2] == "deleted":
                return self._deleted(parts[1], request)
        if parts[:2] == ["jobs", "query"]:
            return self._bulk(request, parts[2:])
        return error(404, "NOT_FOUND", "The requested resource does not exist")

    def _oauth(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        grant = form.get("grant_type")
        c = self.credentials
        if grant == "client_credentials":
            expected = base64.b64encode(f"{c['consumer_key']}:{c['consumer_secret']}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return Response(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jwt.decode(form.get("assertion", ""), self.public_key, algorithms=["RS256"],
                                    audience=self.url)
            except jwt.PyJWTError as exc:
                return Response(400, {"error": "invalid_grant", "error_description": f"bad assertion: {exc}"})
            if claims.get("iss") != c["consumer_key"] or claims.get("sub") != c["username"]:
                return Response(400, {"error": "invalid_grant",
                                      "error_description": "user hasn't approved this consumer"})
        else:
            return Response(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        return Response(200, {"access_token": self.issue_token(), "instance_url": self.url, "token_type": "Bearer"})

    def _soap_login(self, request: Request) -> Response:
        body = request.body.decode()
        username = re.search(r"<n1:username>(.*?)</n1:username>", body)
        password = re.search(r"<n1:password>(.*?)</n1:password>", body)
        c = self.credentials
        if not (username and password and username[1] == c["username"]
                and password[1] == c["password"] + c["security_token"]):
            fault = ("<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/"
                     "envelope/\" xmlns:sf=\"urn:fault.partner.soap.sforce.com\"><soapenv:Body><soapenv:Fault>"
                     "<faultcode>INVALID_LOGIN</faultcode><detail><sf:LoginFault><sf:exceptionCode>INVALID_LOGIN"
                     "</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security token; or user "
                     "locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body>"
                     "</soapenv:Envelope>")
            return Response(500, fault, {"Content-Type": "text/xml"})
        ok = (f"<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
              f"<soapenv:Body><loginResponse><result><serverUrl>{self.url}/services/Soap/u/{VERSION}/00D000000000001"
              f"</serverUrl><sessionId>{self.issue_token()}</sessionId></result></loginResponse></soapenv:Body>"
              "</soapenv:Envelope>")
        return Response(200, ok, {"Content-Type": "text/xml"})

    # -- SOQL ----------------------------------------------------------------------------------

    def _query(self, soql: str, include_deleted: bool) -> Response:
        self.soql.append(soql)
        try:
            query = Soql(self, soql)
            rows = query.run(include_deleted)
        except SoqlError as exc:
            return error(400, exc.code, str(exc))
        if query.count:
            return Response(200, {"totalSize": len(rows), "done": True, "records": []})
        records = [{"attributes": {"type": query.sobject}, **query.shape(r)} for r in rows]
        total = len(records)
        key = f"01g{uuid.uuid4().hex[:12]}"
        self._cursors[key] = records
        return self._page_of(key, 0, total)

    def _page(self, locator: str) -> Response:
        key, _, offset = locator.partition("-")
        if key not in self._cursors:
            return error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page_of(key, int(offset), len(self._cursors[key]))

    def _page_of(self, key: str, offset: int, total: int) -> Response:
        chunk = self._cursors[key][offset:offset + self.page_size]
        self.returned.append(len(chunk))
        body: dict[str, Any] = {"totalSize": total, "done": offset + self.page_size >= total, "records": chunk}
        if not body["done"]:
            body["nextRecordsUrl"] = f"{PREFIX}query/{key}-{offset + self.page_size}"
        return Response(200, body)

    def _deleted(self, sobject: str, request: Request) -> Response:
        start, end = parse_dt(request.arg("start")), parse_dt(request.arg("end"))
        earliest = datetime.now(UTC) - timedelta(days=30)
        if start < earliest - timedelta(minutes=1):
            return error(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
        found = [{"id": i, "deletedDate": sf_datetime(at)} for i, at in self.deleted_log[sobject] if start <= at < end]
        return Response(200, {"deletedRecords": found, "earliestDateAvailable": sf_datetime(earliest),
                              "latestDateCovered": sf_datetime(end)})

    # -- Bulk 2.0 ------------------------------------------------------------------------------

    def _bulk(self, request: Request, rest: list[str]) -> Response:
        if request.method == "POST" and not rest:
            body = request.json()
            self.soql.append(body["query"])
            try:
                query = Soql(self, body["query"])
                rows = query.run(include_deleted=body["operation"] == "queryAll")
            except SoqlError as exc:
                return error(400, exc.code, str(exc))
            job_id = f"750{uuid.uuid4().hex[:12]}"
            # Bulk results come in no particular order: reversed, so a test notices order assumptions.
            self.jobs[job_id] = {"query": query, "rows": rows[::-1], "polls": 0}
            return Response(200, {"id": job_id, "operation": body["operation"], "state": "UploadComplete"})
        job = self.jobs.get(rest[0]) if rest else None
        if job is None:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        if request.method == "DELETE":
            del self.jobs[rest[0]]
            return Response(204, b"")
        if len(rest) == 1:
            job["polls"] += 1
            state = "InProgress" if job["polls"] == 1 else "JobComplete"
            return Response(200, {"id": rest[0], "state": state, "numberRecordsProcessed": len(job["rows"])})
        offset = int(request.arg("locator") or 0)
        size = int(request.arg("maxRecords") or 50000)
        chunk = job["rows"][offset:offset + size]
        self.returned.append(len(chunk))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(job["query"].fields)
        for row in chunk:
            writer.writerow([csv_value(job["query"].value(row, f)) for f in job["query"].fields])
        following = str(offset + size) if offset + size < len(job["rows"]) else "null"
        return Response(200, out.getvalue(), {"Content-Type": "text/csv", "Sforce-Locator": following,
                                              "Sforce-NumberOfRecords": str(len(chunk))})


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", value):
        return value[:-5] + "Z"
    return str(value)


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


SOQL = re.compile(r"SELECT (?P<fields>.+?) FROM (?P<sobject>\w+)(?: WHERE (?P<where>.+?))?"
                  r"(?: ORDER BY (?P<order>.+?))?", re.S)
CONDITION = re.compile(r"(?P<field>[\w.]+)\s*(?P<op>>=|<=|!=|=|<|>)\s*(?P<value>.+)", re.S)
IN_SUBQUERY = re.compile(r"(?P<field>[\w.]+) IN \((?P<query>SELECT .+)\)", re.S)
IN_LIST = re.compile(r"(?P<field>[\w.]+) IN \((?P<values>'.*')\)", re.S)
QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")


class Soql:
    """One parsed query of the supported subset."""

    def __init__(self, org: Org, text: str) -> None:
        match = SOQL.fullmatch(text.strip())
        if not match:
            raise SoqlError("MALFORMED_QUERY", f"unexpected query: {text[:80]}")
        self.org = org
        self.sobject = match["sobject"]
        if self.sobject not in org.schema:
            raise SoqlError("INVALID_TYPE", f"sObject type '{self.sobject}' is not supported.")
        self.count = match["fields"].strip() == "COUNT()"
        self.fields = [] if self.count else [f.strip() for f in match["fields"].split(",")]
        for name in self.fields:
            self._check(name)
        self.where = [self._condition(c) for c in _split_and(match["where"])] if match["where"] else []
        self.order = [f.strip() for f in match["order"].split(",")] if match["order"] else []

    def _check(self, name: str) -> None:
        schema = self.org.schema[self.sobject]
        head = name.split(".")[0]
        known = name in schema if "." not in name else any(f["relationshipName"] == head for f in schema.values())
        if not known:
            raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{self.sobject}'.")

    def _condition(self, text: str):
        sub = IN_SUBQUERY.fullmatch(text.strip())
        if sub:
            inner = Soql(self.org, sub["query"])
            ids = {r[inner.fields[0]] for r in inner.run(include_deleted=True)}
            return lambda r, f=sub["field"]: r.get(f) in ids
        listed = IN_LIST.fullmatch(text.strip())
        if listed:
            self._check(listed["field"])
            values = {_literal(v) for v in QUOTED.findall(listed["values"])}
            return lambda r, f=listed["field"]: r.get(f) in values
        cond = CONDITION.fullmatch(text.strip())
        if not cond:
            raise SoqlError("MALFORMED_QUERY", f"unexpected condition: {text}")
        self._check(cond["field"])
        literal = _literal(cond["value"].strip())
        op = cond["op"]

        def test(record: dict, field: str = cond["field"]) -> bool:
            value = record.get(field)
            if isinstance(literal, datetime):
                value = parse_dt(value) if value else None
            if value is None or literal is None:
                return (op == "=") == (value is literal) if op in ("=", "!=") else False
            return {">=": value >= literal, "<=": value <= literal, ">": value > literal, "<": value < literal,
                    "=": value == literal, "!=": value != literal}[op]
        return test

    def run(self, include_deleted: bool) -> list[dict]:
        rows = [r for r in self.org.records[self.sobject].values()
                if (include_deleted or not r.get("IsDeleted")) and all(test(r) for test in self.where)]
        for name in reversed(self.order):
            rows.sort(key=lambda r: (r.get(name) is not None, _sortable(r.get(name))))
        return rows

    def value(self, record: dict, name: str) -> Any:
        if "." not in name:
            return record.get(name)
        relationship, target_field = name.split(".", 1)
        reference = next(f for f in self.org.schema[self.sobject].values() if f["relationshipName"] == relationship)
        target = self.org.records[reference["referenceTo"][0]].get(record.get(reference["name"]) or "")
        return target.get(target_field) if target else None

    def shape(self, record: dict) -> dict:
        """A record as REST returns it: relationship fields nested under the relationship name."""
        out: dict[str, Any] = {}
        for name in self.fields:
            if "." not in name:
                out[name] = record.get(name)
                continue
            relationship, target_field = name.split(".", 1)
            reference = next(f for f in self.org.schema[self.sobject].values()
                             if f["relationshipName"] == relationship)
            target = reference["referenceTo"][0]
            if self.org.records[target].get(record.get(reference["name"]) or "") is None:
                out[relationship] = None
            else:
                out.setdefault(relationship, {"attributes": {"type": target}})[target_field] = self.value(record, name)
        return out


def _split_and(text: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'" and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and text.startswith(" AND ", i):
            parts.append(text[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(text[start:])
    return parts


def _literal(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)", text):
        return parse_dt(text)
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        return text
    return float(text)


def _sortable(value: Any) -> Any:
    return parse_dt(value) if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\dT", value) else value


# -- a deterministic org ------------------------------------------------------------------------

STAMPS = {"CreatedDate": "datetime", "LastModifiedDate": "datetime", "SystemModstamp": "datetime"}
STAGES = [  # ApiName, label, probability %, closed, won
    ("Prospecting", "Prospecting", 10.0, False, False),
    ("Qualification", "Qualification", 20.0, False, False),
    ("Proposal", "Proposal/Price Quote", 50.0, False, False),
    ("Negotiation", "Negotiation/Review", 75.0, False, False),
    ("Closed Won", "Closed Won", 100.0, True, True),
    ("Closed Lost", "Closed Lost", 0.0, True, False),
]
EPOCH = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


def define_standard_objects(org: Org, multi_currency: bool = False) -> None:
    org.define("UserRole", {"Id": "id", "Name": "string", **STAMPS})
    org.define("User", {"Id": "id", "Name": "string", "Email": "email", "IsActive": "boolean",
                        "Department": "string", "UserRoleId": ("reference", "UserRole"), **STAMPS})
    org.define("Account", {"Id": "id", "IsDeleted": "boolean", "Name": "string", "Industry": "picklist",
                           "BillingCountry": "string", "BillingAddress": "address", "Type": "picklist",
                           "NumberOfEmployees": "int", "AnnualRevenue": "currency",
                           "OwnerId": ("reference", "User"), "Tier__c": "picklist", **STAMPS})
    org.define("Contact", {"Id": "id", "IsDeleted": "boolean", "AccountId": ("reference", "Account"),
                           "Name": "string", "Email": "email", "OwnerId": ("reference", "User"),
                           "MailingAddress": "address", **STAMPS})
    org.define("Lead", {"Id": "id", "IsDeleted": "boolean", "Name": "string", "Email": "email", "Company": "string",
                        "LeadSource": "picklist", "Status": "picklist", "OwnerId": ("reference", "User"),
                        "IsConverted": "boolean", "ConvertedDate": "date",
                        "ConvertedAccountId": ("reference", "Account"),
                        "ConvertedOpportunityId": ("reference", "Opportunity"), "Photo__c": "base64", **STAMPS})
    currency = {"CurrencyIsoCode": "picklist"} if multi_currency else {}
    org.define("Opportunity", {"Id": "id", "IsDeleted": "boolean", "AccountId": ("reference", "Account"),
                               "OwnerId": ("reference", "User"), "Name": "string", "StageName": "picklist",
                               "Amount": "currency", "Probability": "percent", "Type": "picklist",
                               "LeadSource": "picklist", "IsClosed": "boolean", "IsWon": "boolean",
                               "CloseDate": "date", **currency, **STAMPS})
    org.define("OpportunityHistory", {"Id": "id", "IsDeleted": "boolean",
                                      "OpportunityId": ("reference", "Opportunity"), "StageName": "picklist",
                                      "Amount": "currency", "CloseDate": "date", "CreatedDate": "datetime",
                                      "SystemModstamp": "datetime"}, replicateable=False)
    org.define("OpportunityStage", {"Id": "id", "MasterLabel": "string", "ApiName": "string",
                                    "DefaultProbability": "percent", "IsClosed": "boolean", "IsWon": "boolean",
                                    "IsActive": "boolean", "SortOrder": "int", **STAMPS}, replicateable=False)
    org.define("Case", {"Id": "id", "IsDeleted": "boolean", "AccountId": ("reference", "Account"),
                        "ContactId": ("reference", "Contact"), "OwnerId": ("reference", "User"),
                        "Status": "picklist", "Priority": "picklist", "Origin": "picklist", "IsClosed": "boolean",
                        "ClosedDate": "datetime", **STAMPS})


def _stamps(created: datetime, modified: datetime | None = None) -> dict[str, str]:
    modified = modified or created
    return {"CreatedDate": sf_datetime(created), "LastModifiedDate": sf_datetime(modified),
            "SystemModstamp": sf_datetime(modified)}


def build_org(seed: int = 7, scale: int = 1, multi_currency: bool = False) -> Org:
    """An org with roles, users, accounts, contacts, leads, opportunities with history, stages and cases."""
    rnd = random.Random(seed)
    org = Org()
    define_standard_objects(org, multi_currency)
    roles = [org.insert("UserRole", Name=name, **_stamps(EPOCH)) for name in ("AE", "SDR", "Support")]
    users = [org.insert("User", Name=f"User {i}", Email=f"user{i}@example.com", IsActive=i != 5,
                        Department=rnd.choice(["Sales", "Support"]), UserRoleId=roles[i % 3] if i != 4 else None,
                        **_stamps(EPOCH + timedelta(days=i))) for i in range(6)]
    for i, (api, label, probability, closed, won) in enumerate(STAGES):
        org.insert("OpportunityStage", MasterLabel=label, ApiName=api, DefaultProbability=probability,
                   IsClosed=closed, IsWon=won, IsActive=True, SortOrder=i + 1, **_stamps(EPOCH))
    accounts = []
    for i in range(20 * scale):
        created = EPOCH + timedelta(days=rnd.randint(0, 60), minutes=i)
        accounts.append(org.insert(
            "Account", Name=f"Account {i}", Industry=rnd.choice(["Tech", "Retail", None]),
            BillingCountry=rnd.choice(["DE", "US", "FR"]), BillingAddress={"country": "DE"},
            Type="Customer", NumberOfEmployees=rnd.randint(5, 900), AnnualRevenue=float(rnd.randint(1, 90) * 1000),
            OwnerId=rnd.choice(users), Tier__c=rnd.choice(["Gold", "Silver", None]), **_stamps(created)))
    contacts = [org.insert("Contact", AccountId=rnd.choice(accounts), Name=f"Contact {i}",
                           Email=f"c{i}@example.com", OwnerId=rnd.choice(users), MailingAddress=None,
                           **_stamps(EPOCH + timedelta(days=rnd.randint(0, 90), minutes=i)))
                for i in range(40 * scale)]
    opportunities = []
    for i in range(80 * scale):
        opportunities.append(_opportunity(org, rnd, i, accounts, users))
    for i in range(60 * scale):
        created = EPOCH + timedelta(days=rnd.randint(0, 200), minutes=i)
        converted = rnd.random() < 0.3
        converted_on = (created + timedelta(days=rnd.randint(1, 30))).date() if converted else None
        org.insert("Lead", Name=f"Lead {i}", Email=f"lead{i}@example.com", Company=f"Prospect {i}",
                   LeadSource=rnd.choice(["Web", "Referral", "Event"]), Status="Converted" if converted else "Open",
                   OwnerId=rnd.choice(users), IsConverted=converted,
                   ConvertedDate=converted_on.isoformat() if converted_on else None,
                   ConvertedAccountId=rnd.choice(accounts) if converted else None,
                   ConvertedOpportunityId=rnd.choice(opportunities) if converted else None,
                   Photo__c="aGVsbG8=", **_stamps(created))
    for i in range(50 * scale):
        created = EPOCH + timedelta(days=rnd.randint(0, 300), hours=rnd.randint(0, 23), minutes=i)
        closed = rnd.random() < 0.7
        closed_at = created + timedelta(hours=rnd.randint(1, 240)) if closed else None
        org.insert("Case", AccountId=rnd.choice(accounts), ContactId=rnd.choice(contacts), OwnerId=rnd.choice(users),
                   Status="Closed" if closed else "New", Priority=rnd.choice(["High", "Medium", "Low"]),
                   Origin=rnd.choice(["Email", "Phone", "Web"]), IsClosed=closed,
                   ClosedDate=sf_datetime(closed_at) if closed_at else None,
                   **_stamps(created, closed_at or created))
    return org


def _opportunity(org: Org, rnd: random.Random, i: int, accounts: list[str], users: list[str]) -> str:
    """An opportunity walking through stages, with history rows for stage and amount changes."""
    created = EPOCH + timedelta(days=rnd.randint(0, 250), hours=rnd.randint(0, 8), minutes=i)
    amount = float(rnd.randint(1, 50) * 1000)
    path = ["Prospecting", "Qualification"]
    if rnd.random() < 0.2:
        path += ["Prospecting", "Qualification"]  # a re-entry
    path += rnd.choice([["Proposal", "Negotiation", "Closed Won"], ["Proposal", "Closed Lost"], ["Proposal"], []])
    opp_id = org.new_id("Opportunity")
    moment = created
    for n, stage in enumerate(path):
        if n:
            moment += timedelta(days=rnd.randint(1, 20), hours=rnd.randint(0, 12))
        org.insert("OpportunityHistory", OpportunityId=opp_id, StageName=stage, Amount=amount,
                   CloseDate=(moment + timedelta(days=30)).date().isoformat(), CreatedDate=sf_datetime(moment),
                   SystemModstamp=sf_datetime(moment))
        if rnd.random() < 0.4:  # an amount change in the same stage: a history row, not a stage change
            amount += 500.0
            moment += timedelta(hours=rnd.randint(1, 30))
            org.insert("OpportunityHistory", OpportunityId=opp_id, StageName=stage, Amount=amount,
                       CloseDate=(moment + timedelta(days=30)).date().isoformat(), CreatedDate=sf_datetime(moment),
                       SystemModstamp=sf_datetime(moment))
    stage = path[-1]
    closed, won = stage.startswith("Closed"), stage == "Closed Won"
    probability = {s[0]: s[2] for s in STAGES}[stage]
    close_date = moment.date() if closed else (moment + timedelta(days=30)).date()
    org.insert("Opportunity", Id=opp_id, AccountId=rnd.choice(accounts), OwnerId=rnd.choice(users),
               Name=f"Deal {i}", StageName=stage, Amount=amount, Probability=probability,
               Type=rnd.choice(["New Business", "Existing Business", None]),
               LeadSource=rnd.choice(["Web", "Referral", None]), IsClosed=closed, IsWon=won,
               CloseDate=close_date.isoformat(),
               **({"CurrencyIsoCode": rnd.choice(["EUR", "USD"])} if "CurrencyIsoCode" in org.schema["Opportunity"]
                  else {}),
               **_stamps(created, moment))
    return opp_id
