"""A seeded sample dataset: two years (2024-2025) of a fictional B2B SaaS company.

:func:`generate` writes one ``<table>.csv`` per normalized table, in the layout the
files connector reads (ISO 8601 UTC datetimes, ``true``/``false``, empty = null).
The data tells one story per account, so the KPIs computed from it agree with each
other: a lead converts into an account and a new-business deal; a won deal starts
a one-year subscription with an invoice order; customers raise tickets, answer
surveys, buy upsells, and renew (a new subscription from the previous term end) or
churn. Sales reps work in one team per region and own their region's accounts.

Everything streams straight to the files, one account at a time, so memory stays
flat however many deals are asked for; the same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

DEMO_SEED = 42

#: Columns outside the normalized model; the files connector keeps them in ``extra``.
CUSTOM_COLUMNS = {"accounts": ("employee_band",), "deals": ("forecast_category",)}

_STAMPS = ("id", "created_at", "updated_at")
HEADERS: dict[str, tuple[str, ...]] = {
    "users": _STAMPS + ("name", "email", "team", "role", "is_active"),
    "accounts": _STAMPS + ("name", "industry", "region", "segment", "owner_id") + CUSTOM_COLUMNS["accounts"],
    "contacts": _STAMPS + ("account_id", "email", "name", "lifecycle_stage", "owner_id"),
    "leads": _STAMPS + ("email", "name", "company", "lead_source", "status", "owner_id", "converted_at",
                        "converted_account_id", "converted_deal_id"),
    "deals": _STAMPS + ("is_deleted", "account_id", "owner_id", "name", "pipeline", "stage", "amount",
                        "currency", "deal_type", "lead_source", "is_closed", "is_won", "closed_at")
    + CUSTOM_COLUMNS["deals"],
    "deal_stage_changes": _STAMPS + ("deal_id", "stage", "entered_at"),
    "pipeline_stages": _STAMPS + ("pipeline", "stage", "label", "display_order", "probability", "is_closed",
                                  "is_won"),
    "tickets": _STAMPS + ("account_id", "contact_id", "owner_id", "status", "priority", "channel",
                          "first_response_at", "resolved_at"),
    "subscriptions": _STAMPS + ("account_id", "plan", "mrr", "currency", "started_at", "ended_at", "term_end",
                                "status"),
    "orders": _STAMPS + ("account_id", "amount", "cost", "currency", "ordered_at"),
    "survey_responses": _STAMPS + ("account_id", "contact_id", "survey", "score", "scale_max", "responded_at"),
    "marketing_spend": _STAMPS + ("spent_on", "period_start", "period_end", "channel", "campaign", "amount",
                                  "currency"),
    "quotas": _STAMPS + ("owner_id", "team", "period_start", "period_end", "amount", "currency"),
    "fx_rates": _STAMPS + ("currency", "rate_to_reporting", "valid_from"),
}
_ID_PREFIX = {
    "users": "U", "accounts": "A", "contacts": "C", "leads": "L", "deals": "D", "deal_stage_changes": "SC",
    "pipeline_stages": "PS", "tickets": "T", "subscriptions": "S", "orders": "O", "survey_responses": "R",
    "marketing_spend": "M", "quotas": "Q", "fx_rates": "FX",
}
_ID_WIDTH = {"users": 3, "accounts": 5, "pipeline_stages": 1, "fx_rates": 3, "marketing_spend": 4, "quotas": 4}

# --- time: minutes since 2022-01-01 00:00 UTC, formatted through lookup tables ------------

_EPOCH = date(2022, 1, 1)
_DAYS = [(_EPOCH + timedelta(days=n)).isoformat() for n in range(6 * 366)]
_CLOCK = [f"T{m // 60:02d}:{m % 60:02d}:00Z" for m in range(1440)]
DAY, HOUR = 1440, 60
START = (date(2024, 1, 1) - _EPOCH).days * DAY
#: Rates start a year before the window, as the oldest customers' subscriptions do.
FIRST_RATE_DAY = date(2023, 1, 1)
END = (date(2026, 1, 1) - _EPOCH).days * DAY - 1  # 2025-12-31T23:59:00Z
_LAST_NEW_ACCOUNT = END - 14 * DAY


def _iso(minute: int) -> str:
    return _DAYS[minute // DAY] + _CLOCK[minute % DAY]


def _minute(day: date) -> int:
    return (day - _EPOCH).days * DAY


def _one_year_later(minute: int) -> int:
    day = _EPOCH + timedelta(days=minute // DAY)
    later = day.replace(year=day.year + 1, day=28 if (day.month, day.day) == (2, 29) else day.day)
    return _minute(later) + minute % DAY


# --- the company ---------------------------------------------------------------------

STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")
PROSPECTING, QUALIFICATION, PROPOSAL, NEGOTIATION, WON, LOST = range(6)
_STAGE_PROBABILITY = (0.1, 0.2, 0.4, 0.7, 1.0, 0.0)
_FORECAST = ("pipeline", "pipeline", "best_case", "commit", "closed", "omitted")


class _DealKind(NamedTuple):
    name: str
    label: str
    first_stage: int
    lose_chance: tuple[float, float, float, float]  # per open stage, prospecting .. negotiation


_NEW_BUSINESS = _DealKind("new_business", "New business", PROSPECTING, (0.30, 0.25, 0.20, 0.25))
_UPSELL = _DealKind("upsell", "Upsell", QUALIFICATION, (0.0, 0.30, 0.15, 0.10))
_RENEWAL = _DealKind("renewal", "Renewal", PROPOSAL, (0.0, 0.0, 0.05, 0.08))


class _Segment(NamedTuple):
    name: str
    acv_usd: tuple[int, int]  # new-business annual contract value
    stage_days: float  # mean stay in a stage
    contacts: tuple[int, int]
    employee_bands: tuple[str, ...]
    plans: tuple[str, ...]
    tickets_per_month: float
    upsell_chance: float  # per subscription term
    services_usd: tuple[int, int]


_SEGMENTS = (
    _Segment("SMB", (4_000, 25_000), 8, (1, 3), ("1-50", "51-200"), ("Starter", "Growth"), 0.3, 0.25,
             (1_000, 5_000)),
    _Segment("Mid-Market", (25_000, 120_000), 18, (2, 5), ("51-200", "201-1000"), ("Growth", "Business"), 0.7,
             0.35, (5_000, 25_000)),
    _Segment("Enterprise", (120_000, 600_000), 35, (4, 8), ("201-1000", "1000+"), ("Enterprise",), 1.5, 0.5,
             (25_000, 120_000)),
)
_SEGMENT_SHARES = (0.6, 0.9, 1.0)  # cumulative
_INSTALLED_BASE_SHARE = 0.35
_UPSELL_WINDOWS = ((30, 150), (150, 270))  # days into a subscription term
_REGIONS = ("NA", "EMEA", "APAC")
_REGION_SHARES = (0.55, 0.85, 1.0)
_USD_PER = {"USD": 1.0, "EUR": 1.09, "GBP": 1.27}
_INDUSTRIES = ("Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education",
               "Logistics", "Media", "Professional Services", "Energy")
_LEAD_SOURCES = ("website", "paid_search", "paid_social", "events", "content", "email", "referral", "partner")
_LEAD_SOURCE_SHARES = (0.22, 0.40, 0.50, 0.60, 0.70, 0.78, 0.92, 1.0)
_UNCONVERTED_LEAD_STATUSES = ("new", "working", "nurturing", "disqualified")
_PRIORITIES = ("low", "normal", "high", "urgent")
_PRIORITY_SHARES = (0.25, 0.80, 0.95, 1.0)
_FIRST_RESPONSE_MINUTES = (16 * HOUR, 6 * HOUR, 2 * HOUR, 30)  # mean, by priority
_CHANNELS = ("email", "chat", "phone", "web")
_NPS_ROUNDS = tuple(_minute(d) for d in (date(2024, 6, 10), date(2024, 12, 2), date(2025, 6, 9), date(2025, 12, 1)))
_NPS_SHARES = {  # cumulative over scores 0..10: churning customers answer worse
    True: (0.01, 0.02, 0.03, 0.05, 0.07, 0.10, 0.15, 0.25, 0.52, 0.78, 1.0),
    False: (0.04, 0.07, 0.11, 0.17, 0.24, 0.33, 0.45, 0.62, 0.80, 0.92, 1.0),
}
_CSAT_SHARES = (0.05, 0.12, 0.25, 0.60, 1.0)  # cumulative over scores 1..5

_FIRST_NAMES = ("Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Leo", "Sofia", "Elias", "Hannah",
                "Mateo", "Chloe", "Arjun", "Yuki", "Priya", "Jonas", "Amara", "Diego", "Freya", "Omar", "Lena",
                "Kenji", "Zara", "Felix", "Ines", "Marco", "Nora", "Tomas", "Aisha", "Hugo", "Maya")
_LAST_NAMES = ("Smith", "Garcia", "Müller", "Rossi", "Tanaka", "Patel", "Nguyen", "Johansson", "Dubois",
               "Kowalski", "Silva", "O'Brien", "Kim", "Jensen", "Novak", "Haddad", "Fischer", "Moreau",
               "Lopez", "Chen", "Walker", "Ahmed", "Costa", "Berg", "Ito", "Murphy", "Schmidt", "Okafor")
_NAME_STARTS = ("North", "Blue", "Bright", "Silver", "Iron", "Clear", "Green", "Swift", "Summit", "Red",
                "Stone", "Cloud", "Oak", "Nova", "Peak", "Harbor", "True", "Quantum", "Polar", "Urban")
_NAME_ENDS = ("wave", "point", "field", "bridge", "line", "gate", "works", "stack", "path", "ridge", "craft",
              "light", "forge", "scale", "view", "mark")
_NAME_KINDS = ("Analytics", "Systems", "Labs", "Group", "Health", "Logistics", "Capital", "Retail", "Media",
               "Energy", "Robotics", "Foods")


def _pick(rng: random.Random, items: tuple, cumulative_shares: tuple[float, ...]):
    draw = rng.random()
    for item, share in zip(items, cumulative_shares):
        if draw < share:
            return item
    return items[-1]


def _person(rng: random.Random, domain: str) -> tuple[str, str]:
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    return f"{first} {last}", f"{first}.{last}@{domain}".lower().replace("'", "").replace("ü", "ue")


def _money(value: float) -> str:
    return f"{value:.2f}"


def _flag(value: bool) -> str:
    return "true" if value else "false"


# --- output ---------------------------------------------------------------------------


class _Table:
    """One CSV file being written; hands out the ids of its rows."""

    def __init__(self, folder: Path, name: str) -> None:
        self.handle = open(folder / f"{name}.csv", "w", newline="", encoding="utf-8")
        self._write = csv.writer(self.handle, lineterminator="\n").writerow
        self._write(HEADERS[name])
        self._prefix, self._width = _ID_PREFIX[name], _ID_WIDTH.get(name, 6)
        self.rows = 0
        self._ids = 0

    def new_id(self) -> str:
        self._ids += 1
        return self._prefix + str(self._ids).zfill(self._width)

    def add(self, row: tuple) -> None:
        self.rows += 1
        self._write(row)


class _Deal(NamedTuple):
    id: str
    kind: _DealKind
    amount: float
    stages: list[int]  # history, as indexes into STAGES
    times: list[int]  # entered_at of each stage; times[0] is the deal's creation

    @property
    def closed_at(self) -> int | None:
        return self.times[-1] if self.stages[-1] >= WON else None

    @property
    def is_won(self) -> bool:
        return self.stages[-1] == WON


class _Account(NamedTuple):
    id: str
    name: str
    domain: str
    segment: _Segment
    region: str
    currency: str
    owner_id: str
    created: int
    lead_source: str | None  # None: found by outbound prospecting, not from a lead
    customer_since: int | None  # customers won before 2024 start the data with a subscription


class _HistoryPadding:
    """Adds re-entry loops so stage histories average ``per_deal`` rows (benchmark sizing)."""

    def __init__(self, per_deal: float) -> None:
        self.per_deal = per_deal
        self.deals = 0
        self.rows = 0

    def apply(self, rng: random.Random, stages: list[int], times: list[int]) -> None:
        self.deals += 1
        # Error diffusion: a deal that came out long is made up for by the next ones.
        missing = round(self.per_deal * self.deals) - self.rows - len(stages)
        for _ in range(missing // 2):
            if not _insert_reentry(rng, stages, times):
                break
        self.rows += len(stages)


def _insert_reentry(rng: random.Random, stages: list[int], times: list[int]) -> bool:
    """Within one stay in an open stage, step to its neighbour and back again."""
    last = len(stages) - 1
    spots = [j for j, stage in enumerate(stages)
             if stage < WON and (times[j + 1] if j < last else END) - times[j] >= 3]
    if not spots:
        return False
    j = rng.choice(spots)
    stage, entered = stages[j], times[j]
    gap = (times[j + 1] if j < last else END) - entered
    stages[j + 1:j + 1] = (stage - 1 if stage > PROSPECTING else QUALIFICATION, stage)
    times[j + 1:j + 1] = (entered + gap // 3, entered + 2 * gap // 3)
    return True


# --- generation -----------------------------------------------------------------------


def generate(out_dir: Path, *, seed: int = DEMO_SEED, deals: int = 2000,
             stage_changes_per_deal: float | None = None) -> dict[str, int]:
    """Write the CSVs into out_dir (created if missing); return rows written per table.

    ``deals`` sizes the dataset (accounts, contacts, tickets... follow it; users,
    pipeline stages and fx rates stay small). ``stage_changes_per_deal`` pads the
    stage histories with re-entries up to that average (histories are never cut, so
    values below the natural ~3.3 change nothing); None keeps the natural history.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tables = {name: _Table(out_dir, name) for name in HEADERS}
    try:
        company = _Company(rng, tables, stage_changes_per_deal)
        company.write_reference_data(scale=deals / 2000)
        while tables["deals"].rows < deals:
            company.add_account(deals - tables["deals"].rows)
    finally:
        for table in tables.values():
            table.handle.close()
    return {name: table.rows for name, table in tables.items()}


class _Company:
    def __init__(self, rng: random.Random, tables: dict[str, _Table], stage_changes_per_deal: float | None):
        self.rng = rng
        self.tables = tables
        self.padding = _HistoryPadding(stage_changes_per_deal) if stage_changes_per_deal is not None else None
        self.reps: dict[str, list[str]] = {}  # region -> rep ids
        self.agents: list[str] = []

    # reference data: users, stages, fx, spend, quotas

    def write_reference_data(self, scale: float) -> None:
        self._users()
        self._pipeline_stages()
        self._fx_rates()
        self._marketing_spend(scale)
        self._quotas(scale)

    def _users(self) -> None:
        rng, table = self.rng, self.tables["users"]
        names = zip(rng.sample(_FIRST_NAMES, 19), rng.sample(_LAST_NAMES, 19))
        staff = [(region.lower(), role) for region in _REGIONS for role in ("manager", "rep", "rep", "rep", "rep")]
        staff += [("support", "agent")] * 4
        for (team, role), (first, last) in zip(staff, names):
            user_id = table.new_id()
            hired = _minute(date(2023, 1, 2)) + int(rng.random() * 300) * DAY + 9 * HOUR
            email = f"{first}.{last}@northbeam.io".lower().replace("'", "").replace("ü", "ue")
            table.add((user_id, _iso(hired), _iso(hired + 30 * DAY), f"{first} {last}", email, team, role, "true"))
            if role == "rep":
                self.reps.setdefault(team.upper(), []).append(user_id)
            elif role == "agent":
                self.agents.append(user_id)

    def _pipeline_stages(self) -> None:
        table, created = self.tables["pipeline_stages"], _iso(_minute(date(2023, 1, 2)))
        for order, stage in enumerate(STAGES, start=1):
            label = stage.replace("_", " ").capitalize()
            table.add((table.new_id(), created, created, "sales", stage, label, order,
                       _STAGE_PROBABILITY[order - 1], _flag(order > NEGOTIATION + 1), _flag(order == WON + 1)))

    def _fx_rates(self) -> None:
        rng, table = self.rng, self.tables["fx_rates"]
        for currency in ("USD", "EUR", "GBP"):
            rate = _USD_PER[currency]
            # Customers from before the window pay from 2023 on: their amounts need a rate too.
            first = _iso(_minute(FIRST_RATE_DAY))
            table.add((table.new_id(), first, first, currency, f"{rate:.4f}", FIRST_RATE_DAY.isoformat()))
            for month in _months():
                if currency != "USD":
                    rate *= 1 + rng.uniform(-0.015, 0.015)
                stamp = _iso(_minute(month))
                table.add((table.new_id(), stamp, stamp, currency, f"{rate:.4f}", month.isoformat()))

    def _marketing_spend(self, scale: float) -> None:
        rng, table = self.rng, self.tables["marketing_spend"]
        monthly = {"paid_search": 9_000, "paid_social": 6_000, "content": 3_500, "email": 1_500}
        for n, month in enumerate(_months()):
            month_end = _next_month(month) - timedelta(days=1)
            growth = 1 + n / 24
            for channel, budget in monthly.items():
                amount = budget * scale * growth * rng.uniform(0.8, 1.2)
                stamp = _iso(_minute(month_end) + 18 * HOUR)
                table.add((table.new_id(), stamp, stamp, "", month.isoformat(), month_end.isoformat(), channel,
                           f"{channel.replace('_', ' ').title()} {month:%Y-%m}", _money(amount), "USD"))
            if month.month % 3 == 2:  # one event per region mid-quarter, booked on its day
                for region in _REGIONS:
                    day = month + timedelta(days=rng.randrange(5, 25))
                    stamp = _iso(_minute(day) + 17 * HOUR)
                    amount = 25_000 * scale * growth * rng.uniform(0.7, 1.3)
                    table.add((table.new_id(), stamp, stamp, day.isoformat(), "", "", "events",
                               f"{region} Summit {day:%b %Y}", _money(amount), "USD"))

    def _quotas(self, scale: float) -> None:
        table = self.tables["quotas"]
        quarters = [m for m in _months() if m.month % 3 == 1]
        for region, reps in self.reps.items():
            # Sized so that reps land around 100% of quota on all won deals, renewals included.
            base = {"NA": 700_000, "EMEA": 450_000, "APAC": 250_000}[region] * scale
            for quarter in quarters:
                growth = 1.0 if quarter.year == 2024 else 1.15
                quarter_end = _next_month(_next_month(_next_month(quarter))) - timedelta(days=1)
                stamp = _iso(_minute(quarter) - 14 * DAY)
                for rep in reps:
                    table.add((table.new_id(), stamp, stamp, rep, region.lower(), quarter.isoformat(),
                               quarter_end.isoformat(), _money(round(base * growth, -3)), "USD"))

    # one account and everything that happens to it

    def add_account(self, deal_budget: int) -> None:
        account = self._new_account()
        deals, subscriptions = self._sales_story(account, deal_budget)
        contacts = self._write_contacts(account, deals, subscriptions)
        self._write_leads(account, deals)
        for deal in deals:
            self._write_deal(account, deal)
        if subscriptions:
            self._write_customer_life(account, contacts, subscriptions)

    def _new_account(self) -> _Account:
        rng = self.rng
        segment = _pick(rng, _SEGMENTS, _SEGMENT_SHARES)
        region = _pick(rng, _REGIONS, _REGION_SHARES)
        currency = "USD" if region != "EMEA" else ("EUR" if rng.random() < 0.65 else "GBP")
        start, end, kind = rng.choice(_NAME_STARTS), rng.choice(_NAME_ENDS), rng.choice(_NAME_KINDS)
        lead_source = _pick(rng, _LEAD_SOURCES, _LEAD_SOURCE_SHARES) if rng.random() < 0.7 else None
        if rng.random() < _INSTALLED_BASE_SHARE:
            customer_since = START - int(rng.uniform(1, 365) * DAY)
            created = customer_since - int(rng.uniform(20, 200) * DAY)
        else:
            customer_since = None
            # New accounts arrive faster over time: the company is growing.
            created = START + int((_LAST_NEW_ACCOUNT - START) * rng.random() ** 0.7)
        account = _Account(self.tables["accounts"].new_id(), f"{start}{end} {kind}", f"{start}{end}.com".lower(),
                           segment, region, currency, rng.choice(self.reps[region]), created, lead_source,
                           customer_since)
        updated = min(END, created + int(rng.random() * 120) * DAY)
        self.tables["accounts"].add((account.id, _iso(created), _iso(updated), account.name,
                                     rng.choice(_INDUSTRIES), region, segment.name, account.owner_id,
                                     rng.choice(segment.employee_bands)))
        return account

    def _sales_story(self, account: _Account, budget: int) -> tuple[list[_Deal], list[list]]:
        """New-business attempts until one is won, then yearly terms with upsells and renewals.

        Subscriptions are ``[id, plan, mrr, started, term_end, ended, status]``.
        """
        rng, segment = self.rng, account.segment
        low, high = segment.acv_usd
        acv = round(low * (high / low) ** rng.random() / _USD_PER[account.currency], -2)
        deals: list[_Deal] = []
        created = account.created
        while account.customer_since is None and len(deals) < budget:
            deals.append(self._deal(account, _NEW_BUSINESS, created, acv))
            closed_at = deals[-1].closed_at
            if closed_at is None or deals[-1].is_won or len(deals) == 3 or rng.random() < 0.4:
                break
            created = closed_at + int(rng.uniform(30, 180) * DAY)
            if created > END:
                break
        subscriptions: list[list] = []
        if account.customer_since is not None:
            started = account.customer_since
        elif deals and deals[-1].is_won:
            started = deals[-1].closed_at
        else:
            return deals, subscriptions
        plan, mrr = rng.choice(segment.plans), acv / 12
        while True:
            term_end = _one_year_later(started)
            subscription = [self.tables["subscriptions"].new_id(), plan, mrr, started, term_end, None, "active"]
            subscriptions.append(subscription)
            if rng.random() < 0.06:
                cancelled = started + int(rng.uniform(60, 330) * DAY)
                if cancelled <= END:
                    subscription[5:] = cancelled, "cancelled"
                break
            uplift = 0.0
            for earliest, latest in _UPSELL_WINDOWS:
                upsell_created = started + int(rng.uniform(earliest, latest) * DAY)
                if START <= upsell_created < END and len(deals) < budget and rng.random() < segment.upsell_chance:
                    amount = round(mrr * 12 * rng.uniform(0.1, 0.4), -2)
                    deals.append(self._deal(account, _UPSELL, upsell_created, amount))
                    uplift += amount / 12 if deals[-1].is_won else 0.0
            renewal_created = max(START, term_end - int(rng.uniform(45, 90) * DAY))
            if renewal_created > END or len(deals) == budget:
                if term_end <= END:
                    subscription[5:] = term_end, "ended"
                break
            renewal_mrr = mrr * rng.uniform(1.0, 1.07) + uplift
            # A renewal cannot be signed off before its term is over within the data.
            renewal = self._deal(account, _RENEWAL, renewal_created, round(renewal_mrr * 12, 2),
                                 can_close=term_end <= END)
            deals.append(renewal)
            if renewal.closed_at is None:
                break
            subscription[5:] = term_end, ("renewed" if renewal.is_won else "ended")
            if not renewal.is_won:
                break
            mrr, started = renewal.amount / 12, term_end
        return deals, subscriptions

    def _deal(self, account: _Account, kind: _DealKind, created: int, amount: float,
              can_close: bool = True) -> _Deal:
        rng = self.rng
        mean_stay = account.segment.stage_days * DAY * (0.6 if kind is _RENEWAL else 1.0)
        stage, at, re_entries = kind.first_stage, created, 0
        stages, times = [stage], [at]
        while stage < WON:
            if rng.random() < 0.01:
                break  # stalled: nobody works the deal any more, it stays open (stale pipeline)
            if rng.random() < kind.lose_chance[stage]:
                stage = LOST
            elif stage == NEGOTIATION and re_entries < 2 and rng.random() < 0.15:
                stage, re_entries = PROPOSAL, re_entries + 1  # back to proposal after a new ask
            else:
                stage += 1
            at += HOUR + int(rng.expovariate(1 / mean_stay))
            if at > END or (stage >= WON and not can_close):
                break
            stages.append(stage)
            times.append(at)
        return _Deal(self.tables["deals"].new_id(), kind, amount, stages, times)

    def _write_deal(self, account: _Account, deal: _Deal) -> None:
        stages, times = deal.stages, deal.times
        if self.padding:
            self.padding.apply(self.rng, stages, times)
        changes = self.tables["deal_stage_changes"]
        for stage, at in zip(stages, times):
            stamp = _DAYS[at // DAY] + _CLOCK[at % DAY]
            changes.add((changes.new_id(), stamp, stamp, deal.id, STAGES[stage], stamp))
        stage, closed_at = stages[-1], deal.closed_at
        lead_source = (account.lead_source or "outbound") if deal.kind is _NEW_BUSINESS else "existing_customer"
        self.tables["deals"].add((
            deal.id, _iso(times[0]), _iso(times[-1]), _flag(self.rng.random() < 0.003), account.id, account.owner_id,
            f"{account.name} - {deal.kind.label}", "sales", STAGES[stage], _money(deal.amount), account.currency,
            deal.kind.name, lead_source, _flag(closed_at is not None), _flag(stage == WON),
            _iso(closed_at) if closed_at is not None else "", _FORECAST[stage],
        ))
        if deal.kind is _UPSELL and stage == WON:  # invoiced at once, outside the yearly invoice
            self._write_order(account, closed_at, deal.amount, self.rng.uniform(0.15, 0.30))

    def _write_contacts(self, account: _Account, deals: list[_Deal], subscriptions: list[list]) -> list[str]:
        rng, table = self.rng, self.tables["contacts"]
        if subscriptions:
            lifecycle = "customer"
        elif deals and deals[-1].closed_at is None:
            lifecycle = "opportunity"
        else:
            lifecycle = "sales_qualified_lead"
        contact_ids = []
        for n in range(rng.randint(*account.segment.contacts)):
            contact_id = table.new_id()
            name, email = _person(rng, account.domain)
            created = min(END, account.created + (0 if n == 0 else int(rng.random() * 60 * DAY)))
            stage = "evangelist" if lifecycle == "customer" and rng.random() < 0.1 else lifecycle
            table.add((contact_id, _iso(created), _iso(min(END, created + 7 * DAY)), account.id, email, name,
                       stage, account.owner_id))
            contact_ids.append(contact_id)
        return contact_ids

    def _write_leads(self, account: _Account, deals: list[_Deal]) -> None:
        rng, table = self.rng, self.tables["leads"]
        if account.lead_source and deals and deals[0].kind is _NEW_BUSINESS:
            converted = account.created
            created = max(START, converted - int(rng.uniform(1, 45) * DAY))
            name, email = _person(rng, account.domain)
            table.add((table.new_id(), _iso(created), _iso(converted), email, name, account.name,
                       account.lead_source, "converted", account.owner_id, _iso(converted), account.id, deals[0].id))
        for _ in range(rng.randrange(4)):  # leads that did not (yet) turn into customers
            created = START + int((END - START) * rng.random())
            company = f"{rng.choice(_NAME_STARTS)}{rng.choice(_NAME_ENDS)} {rng.choice(_NAME_KINDS)}"
            name, email = _person(rng, company.split()[0].lower() + ".com")
            recent = END - created < 30 * DAY  # too fresh to be nurtured or disqualified yet
            status = rng.choice(_UNCONVERTED_LEAD_STATUSES[:2] if recent else _UNCONVERTED_LEAD_STATUSES)
            region = _pick(rng, _REGIONS, _REGION_SHARES)
            table.add((table.new_id(), _iso(created), _iso(min(END, created + int(rng.random() * 30 * DAY))), email,
                       name, company, _pick(rng, _LEAD_SOURCES, _LEAD_SOURCE_SHARES), status,
                       rng.choice(self.reps[region]), "", "", ""))

    def _write_customer_life(self, account: _Account, contacts: list[str], subscriptions: list[list]) -> None:
        """Subscriptions with their invoices, then the tickets and surveys of the customer years."""
        rng, segment = self.rng, account.segment
        subs = self.tables["subscriptions"]
        for sub_id, plan, mrr, started, term_end, ended, status in subscriptions:
            subs.add((sub_id, _iso(started), _iso(ended if ended is not None else started), account.id, plan,
                      _money(mrr), account.currency, _iso(started), _iso(ended) if ended is not None else "",
                      _iso(term_end), status))
            self._write_order(account, started, mrr * 12, rng.uniform(0.15, 0.30))
        if rng.random() < 0.5:  # onboarding services sold with the first contract
            low, high = segment.services_usd
            self._write_order(account, subscriptions[0][3] + 2 * DAY,
                              round(rng.uniform(low, high) / _USD_PER[account.currency], -2), rng.uniform(0.55, 0.8))
        customer_from = max(START, subscriptions[0][3])
        customer_until = min(END, subscriptions[-1][5] or END)
        churned = subscriptions[-1][6] in ("cancelled", "ended")
        self._write_tickets(account, contacts, customer_from, customer_until)
        for round_start in _NPS_ROUNDS:
            if not customer_from <= round_start <= customer_until:
                continue
            for contact_id in contacts:
                if rng.random() < 0.35:
                    answered = round_start + int(rng.random() * 14 * DAY)
                    self._write_survey(account, contact_id, "nps", _pick(rng, range(11), _NPS_SHARES[not churned]),
                                       10, min(END, answered))

    def _write_order(self, account: _Account, ordered: int, amount: float, cost_share: float) -> None:
        orders = self.tables["orders"]
        stamp = _iso(min(END, ordered))
        orders.add((orders.new_id(), stamp, stamp, account.id, _money(amount), _money(amount * cost_share),
                    account.currency, stamp))

    def _write_tickets(self, account: _Account, contacts: list[str], since: int, until: int) -> None:
        rng, tickets = self.rng, self.tables["tickets"]
        months = (until - since) / (30 * DAY)
        for _ in range(int(months * account.segment.tickets_per_month + rng.random())):
            opened = since + int(rng.random() * (until - since))
            priority = _pick(rng, range(4), _PRIORITY_SHARES)
            responded = opened + 1 + int(rng.expovariate(1 / _FIRST_RESPONSE_MINUTES[priority]))
            resolved = responded + int(rng.expovariate(1 / (1.5 * DAY)))
            if resolved <= END:
                status, last_change = "resolved", resolved
            elif responded <= END:
                status, last_change, resolved = "pending", responded, None
            else:
                status, last_change, responded, resolved = "open", opened, None, None
            contact_id = rng.choice(contacts)
            tickets.add((tickets.new_id(), _iso(opened), _iso(last_change), account.id, contact_id,
                         rng.choice(self.agents), status, _PRIORITIES[priority], rng.choice(_CHANNELS),
                         _iso(responded) if responded is not None else "",
                         _iso(resolved) if resolved is not None else ""))
            if resolved is not None and rng.random() < 0.3:
                answered = resolved + 10 + int(rng.random() * 2 * DAY)
                if answered <= END:
                    self._write_survey(account, contact_id, "csat", _pick(rng, range(1, 6), _CSAT_SHARES), 5,
                                       answered)

    def _write_survey(self, account: _Account, contact_id: str, survey: str, score: int, scale_max: int,
                      answered: int) -> None:
        responses, stamp = self.tables["survey_responses"], _iso(answered)
        responses.add((responses.new_id(), stamp, stamp, account.id, contact_id, survey, score, scale_max, stamp))


def _months() -> list[date]:
    return [date(year, month, 1) for year in (2024, 2025) for month in range(1, 13)]


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)
