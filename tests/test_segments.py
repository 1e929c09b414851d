"""Segments: ``crmkpi run --segment DIMENSION`` on SQLite and PostgreSQL (their JSON extraction differs).

Deals, tickets, users and accounts are hand-made; every segment value and result is counted by hand.
"""

from __future__ import annotations

from datetime import date

import pytest

from conftest import KpiProject, store_url_for
from crmkpi import segments
from crmkpi.engine import Run, Settings, run_metrics
from crmkpi.errors import MetricError
from crmkpi.metrics import TABLES, Metric, MetricContext, Value
from crmkpi.periods import Calendar
from crmkpi.store import Store

USERS = [
    {"id": "u1", "name": "Ann", "team": "East"},
    {"id": "u2", "name": "Bob", "team": "West"},
    {"id": "u3", "name": "Cid", "team": ""},
    {"id": "u4", "name": "Dee", "team": "North"},  # owns only a deleted deal
]
ACCOUNTS = [
    {"id": "a1", "name": "Acme", "region": "EMEA", "tier": "gold"},
    {"id": "a2", "name": "Bolt", "region": "AMER", "tier": "silver"},
    {"id": "a3", "name": "Cogs", "region": "", "tier": ""},
]


def deal(id, owner, account, pipeline, lead_source, outcome, created="2024-03-01T00:00:00Z", tier="",
         deleted=False):
    return {"id": id, "owner_id": owner, "account_id": account, "pipeline": pipeline, "lead_source": lead_source,
            "is_closed": outcome != "open", "is_won": outcome == "won", "created_at": created, "tier": tier,
            "is_deleted": deleted}


# Live deals created in 2024: d1, d2, d3, d4, d5, d6, d9 (won: d1, d3, d5) -> close rate 3/7.
# d10 (owner u5, who is not a user) was created in 2023; d7 and d8 are deleted.
DEALS = [
    deal("d1", "u1", "a1", "new", "web", "won", tier="platinum"),  # its own tier beats its account's
    deal("d2", "u1", "a2", "new", "referral", "lost"),
    deal("d3", "u2", "a1", "renewal", "web", "won"),
    deal("d4", "u2", "a3", "renewal", "", "open"),
    deal("d5", "", "a2", "new", "", "won"),
    deal("d6", "u3", "", "new", "", "open"),
    deal("d9", "u2", "a1", "renewal", "", "open"),
    deal("d10", "u5", "a2", "new", "web", "won", created="2023-06-01T00:00:00Z"),
    deal("d7", "u4", "a1", "legacy", "event", "won", tier="bronze", deleted=True),
    deal("d8", "u1", "a1", "new", "web", "won", deleted=True),
]
# Live tickets created in 2024: t1, t2, t3, t4, t6
TICKETS = [
    {"id": "t1", "owner_id": "u1", "account_id": "a1", "channel": "email", "tier": "vip"},
    {"id": "t2", "owner_id": "u2", "account_id": "a2", "channel": "chat", "tier": ""},
    {"id": "t3", "owner_id": "u2", "account_id": "a3", "channel": "email", "tier": ""},
    {"id": "t4", "owner_id": "", "account_id": "a1", "channel": "phone", "tier": ""},
    {"id": "t6", "owner_id": "u2", "account_id": "a2", "channel": "chat", "tier": ""},
    {"id": "t5", "owner_id": "u4", "account_id": "a1", "channel": "fax", "tier": "", "is_deleted": True},
]
# Stage changes take their deal's dimensions
STAGE_CHANGES = [
    {"id": "s1", "deal_id": "d1", "stage": "qualify", "entered_at": "2024-03-02T00:00:00Z"},
    {"id": "s2", "deal_id": "d3", "stage": "qualify", "entered_at": "2024-03-02T00:00:00Z"},
    {"id": "s3", "deal_id": "d5", "stage": "propose", "entered_at": "2024-03-02T00:00:00Z"},
    {"id": "s4", "deal_id": "d6", "stage": "propose", "entered_at": "2024-03-02T00:00:00Z"},
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One synced project per store, shared by this module's (read-only) tests."""
    folder = tmp_path_factory.mktemp(f"segments-{request.param}")
    with store_url_for(request.param, folder, request) as url:
        kpi = KpiProject(folder / "kpi", url)
        kpi.write("users", USERS)
        kpi.write("accounts", ACCOUNTS)
        kpi.write("deals", DEALS)
        kpi.write("deal_stage_changes", STAGE_CHANGES)
        kpi.write("tickets", [{"created_at": "2024-05-01T00:00:00Z", "is_deleted": False, **t} for t in TICKETS])
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CRMKPI_LOAD_PLUGINS", "files,sales_metrics")
            kpi.sync()
        yield kpi


def by_segment(kpi: KpiProject, dimension: str, metric: str = "close_rate") -> list[tuple]:
    results = kpi.run(metric, "--period", "2024", "--segment", dimension, "--no-save")
    assert all(list(r["segment"]) == [dimension] for r in results), results
    return [(r["segment"][dimension], r["numerator"], r["denominator"]) for r in results]


@pytest.mark.parametrize("dimension, expected", [
    # a column of deals (and its aliases); no owner is a segment of its own, last
    ("owner", [("u1", 1, 2), ("u2", 1, 3), ("u3", 0, 1), ("u5", 0, 0), (None, 1, 1)]),
    ("rep", [("u1", 1, 2), ("u2", 1, 3), ("u3", 0, 1), ("u5", 0, 0), (None, 1, 1)]),
    ("owner_id", [("u1", 1, 2), ("u2", 1, 3), ("u3", 0, 1), ("u5", 0, 0), (None, 1, 1)]),
    ("pipeline", [("new", 2, 4), ("renewal", 1, 3)]),
    ("lead_source", [("referral", 0, 1), ("web", 2, 2), (None, 1, 4)]),
    ("account", [("a1", 2, 3), ("a2", 1, 2), ("a3", 0, 1), (None, 0, 1)]),
    # the owner's team: u3 has none, d5 has no owner
    ("team", [("East", 1, 2), ("West", 1, 3), (None, 1, 2)]),
    # the account's region: a3 has none, d6 has no account
    ("region", [("AMER", 1, 2), ("EMEA", 2, 3), (None, 0, 2)]),
    # a custom field: the deal's own extra, else its account's
    ("extra.tier", [("gold", 1, 2), ("platinum", 1, 1), ("silver", 1, 2), (None, 0, 2)]),
    ("tier", [("gold", 1, 2), ("platinum", 1, 1), ("silver", 1, 2), (None, 0, 2)]),
])
def test_close_rate_by_segment(project, dimension, expected):
    assert by_segment(project, dimension) == expected


def test_segment_results_carry_values_and_notes(project):
    results = project.run("close_rate", "--period", "2024", "--segment", "owner", "--no-save")
    assert [r["segment"] for r in results] == \
        [{"owner": "u1"}, {"owner": "u2"}, {"owner": "u3"}, {"owner": "u5"}, {"owner": None}]
    assert [r["value"] for r in results] == [0.5, pytest.approx(1 / 3), 0.0, None, 1.0]
    # u5's only deal is from 2023: the segment exists (from the whole table), its 2024 value does not
    assert results[3]["note"] == "no deals created in the period"
    # deleted rows neither form segments (u4, legacy, event, bronze) nor count
    assert "u4" not in [r["segment"]["owner"] for r in results]


def test_segment_with_grain_is_per_segment_then_period(project):
    results = project.run("close_rate", "--period", "2024-02-01..2024-03-31",
                          "--grain", "month", "--segment", "pipeline", "--no-save")
    assert [(r["segment"]["pipeline"], r["period"], r["numerator"], r["denominator"]) for r in results] == [
        ("new", "2024-02", 0, 0), ("new", "2024-03", 2, 4),
        ("renewal", "2024-02", 0, 0), ("renewal", "2024-03", 1, 3),
    ]


def test_segment_table_and_csv(project):
    result = project.invoke("run", "--metric", "close_rate", "--period", "2024", "--segment", "team", "--no-save")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("┃")][:4] == ["Metric", "Period", "Segment", "Value"]
    assert [line.split("│")[2].strip() for line in lines[2:]] == ["team=East", "team=West", "team=(none)"]
    result = project.invoke("run", "--metric", "close_rate", "--period", "2024", "--segment", "team", "--no-save",
                            "--format", "csv")
    assert [line.split(",")[4] for line in result.stdout.splitlines()[1:]] == \
        ['"{""team"": ""East""}"', '"{""team"": ""West""}"', '"{""team"": null}"']


@pytest.mark.parametrize("dimension, message", [
    ("channel", "does not apply to deals"), ("lifecycle_stage", "does not apply to deals"),
    ("extra", "does not apply to deals"), ("period_start", "does not apply to deals"),
    # every deal's owner has a role of none: all rows would fall in one "(none)" segment
    ("role", "no deals row has a value for it"),
])
def test_a_dimension_that_splits_nothing_is_a_one_line_error(project, dimension, message):
    error = project.fails("run", "--metric", "close_rate", "--period", "2024", "--segment", dimension)
    assert error == f"--segment {dimension!r}: {message}"


DIMENSIONS = ("owner, rep, agent, account, team, role, region, industry, segment, channel, currency, deal_type, "
              "lead_source, lifecycle_stage, pipeline, plan, priority, source, stage, status, survey, connector, "
              "extra.tier")


@pytest.mark.parametrize("dimension, message", [
    ("ownr", "no column, alias or custom field has that name; did you mean 'owner'?"),
    ("teir", "no column, alias or custom field has that name; did you mean 'tier'?"),
    ("nickname", "no column, alias or custom field has that name"),
    ("extra.teir", "no live row has a custom field 'teir'; did you mean 'extra.tier'?"),
])
def test_a_dimension_that_names_nothing_is_refused_with_a_did_you_mean(project, dimension, message):
    # a typo used to come back as one "(none)" segment holding the whole company
    error = project.fails("run", "--metric", "close_rate", "--period", "2024", "--segment", dimension)
    assert error == f"--segment {dimension!r}: {message} (dimensions: {DIMENSIONS})"
    assert project.fails("explain", "close_rate", "--period", "2024", "--segment", f"{dimension}=x") == \
        f"--segment {dimension!r}: {message} (dimensions: {DIMENSIONS})"


# --- two dimensions, labels, explain -------------------------------------------------------


def test_two_dimensions_split_by_each_combination_that_occurs(project):
    # a second --segment used to replace the first without a word
    results = project.run("close_rate", "--period", "2024", "--segment", "team", "--segment", "region", "--no-save")
    assert [(r["segment"], r["numerator"], r["denominator"]) for r in results] == [
        ({"team": "East", "region": "AMER"}, 0, 1),  # d2
        ({"team": "East", "region": "EMEA"}, 1, 1),  # d1
        ({"team": "West", "region": "EMEA"}, 1, 2),  # d3, d9
        ({"team": "West", "region": None}, 0, 1),  # d4: its account has no region
        ({"team": None, "region": "AMER"}, 1, 1),  # d5 (no owner); d10 (owner not a user) is from 2023
        ({"team": None, "region": None}, 0, 1),  # d6
    ]
    assert sum(r["denominator"] for r in results) == 7  # every deal once, as without segments
    assert project.fails("run", "--metric", "close_rate", "--segment", "team", "--segment", "team") == \
        "--segment: team, team names a dimension twice"


def test_a_target_of_a_combination_judges_its_row(project):
    project.configure("targets:\n  - {metric: close_rate, period: '2024', value: 0.4, "
                      "segment: {team: West, region: EMEA}}\n")
    try:
        results = project.run("close_rate", "--period", "2024", "--segment", "team", "--segment", "region",
                              "--no-save")
    finally:
        project.configure()
    assert [(r["segment"], r["target"]["status"]) for r in results if "target" in r] == \
        [({"team": "West", "region": "EMEA"}, "on_track")]


def test_segments_show_names_and_labels_and_json_keeps_the_ids(project):
    results = project.run("close_rate", "--period", "2024", "--segment", "owner", "--no-save")
    assert [(r["segment"]["owner"], r["segment_labels"]["owner"]) for r in results] == \
        [("u1", "Ann"), ("u2", "Bob"), ("u3", "Cid"), ("u5", "u5"), (None, None)]  # u5 is not in users
    table = project.invoke("run", "--metric", "close_rate", "--period", "2024", "--segment", "owner",
                           "--segment", "account", "--no-save").stdout
    assert [line.split("│")[2].strip() for line in table.splitlines()[2:]] == [
        "owner=Ann, account=Acme", "owner=Ann, account=Bolt", "owner=Bob, account=Acme", "owner=Bob, account=Cogs",
        "owner=Cid, account=(none)", "owner=u5, account=Bolt", "owner=(none), account=Bolt"]


def test_explain_a_combination_of_dimensions(project):
    lines = project.invoke("explain", "close_rate", "--period", "2024", "--segment", "team=West",
                           "--segment", "region=EMEA", "-n", "0").stdout.splitlines()
    assert lines[0] == "close_rate: Close rate, 2024 (team=West, region=EMEA)"
    assert lines[4] == "Value: 50.0% = 1 / 2"
    assert project.invoke("explain", "close_rate", "--period", "2024", "--segment", "owner=u1",
                          "-n", "0").stdout.splitlines()[0] == "close_rate: Close rate, 2024 (owner=Ann)"
    assert project.fails("explain", "close_rate", "--segment", "team=West", "--segment", "team=East") == \
        "--segment 'team=East': team is already given"


# --- other tables, through the engine ----------------------------------------------------


def _tickets(ctx: MetricContext) -> Value:
    tickets = ctx.table("tickets")
    return Value(float(ctx.count("tickets", tickets, ctx.in_period(tickets.c.created_at))))


def _deals(ctx: MetricContext) -> Value:
    deals = ctx.table("deals")
    return Value(float(ctx.count("deals", deals, ctx.in_period(deals.c.created_at))))


TICKETS_OPENED = Metric(id="test_tickets", title="Tickets", description="", formula="tickets", unit="count",
                        direction="lower", tables=("tickets",), compute=_tickets, additive=True)
# reads deals but declares tickets first: its segments are the tickets' values
DEALS_BY_TICKET = Metric(id="test_deals_by_ticket", title="Deals", description="", formula="deals", unit="count",
                         direction="higher", tables=("tickets", "deals"), compute=_deals, additive=True)
DEALS_FIRST = Metric(id="test_deals_first", title="Deals", description="", formula="deals", unit="count",
                     direction="higher", tables=("deals", "tickets"), compute=_deals, additive=True)
YEAR = Calendar().parse("2024", today=date(2024, 6, 1))


def run_engine(kpi: KpiProject, metric: Metric, dimension: str) -> list[tuple]:
    store = Store(kpi.store)
    try:
        results = run_metrics(store.engine, Run([metric], YEAR, segments=(dimension,)), Settings(), persist=False)
    finally:
        store.engine.dispose()
    return [(r["segment"][dimension], r["value"]) for r in results]


@pytest.mark.parametrize("dimension, expected", [
    ("agent", [("u1", 1), ("u2", 3), (None, 1)]),
    ("owner", [("u1", 1), ("u2", 3), (None, 1)]),
    ("channel", [("chat", 2), ("email", 2), ("phone", 1)]),
    ("team", [("East", 1), ("West", 3), (None, 1)]),
    ("region", [("AMER", 2), ("EMEA", 2), (None, 1)]),
    ("extra.tier", [("gold", 1), ("silver", 2), ("vip", 1), (None, 1)]),
])
def test_tickets_by_segment(project, dimension, expected):
    assert run_engine(project, TICKETS_OPENED, dimension) == expected


def test_segment_values_come_from_the_metrics_first_table(project):
    # agents of live tickets: u1, u2 and none; deals of u3 and u5 belong to no such segment
    assert run_engine(project, DEALS_BY_TICKET, "agent") == [("u1", 2), ("u2", 3), (None, 1)]
    assert run_engine(project, DEALS_FIRST, "agent") == \
        [("u1", 2), ("u2", 3), ("u3", 1), ("u5", 0), (None, 1)]
    # a dimension of the first table that the other cannot resolve: each segment's row carries the error
    store = Store(project.store)
    try:
        results = run_metrics(store.engine, Run([DEALS_BY_TICKET], YEAR, segments=("channel",)), persist=False)
    finally:
        store.engine.dispose()
    assert [(r["segment"], r["value"], r["error"]) for r in results] == [
        ({"channel": channel}, None, "segment 'channel' does not apply to deals")
        for channel in ("chat", "email", "phone")]


def test_values_and_expression_directly(project):
    store = Store(project.store)
    try:
        with store.engine.connect() as conn:
            deals = TABLES["deals"]

            def values(table, *dimensions):
                found = segments.values(conn, TABLES[table], dimensions)
                return [row[0] for row in found] if len(dimensions) == 1 else found

            assert values("deals", "region") == ["AMER", "EMEA", None]
            assert values("deals", "extra.tier") == ["gold", "platinum", "silver", None]
            assert values("users", "team") == ["East", "North", "West", None]
            assert values("accounts", "region") == ["AMER", "EMEA", None]
            # two dimensions: the combinations that occur, each sorted with nulls last
            assert values("deals", "team", "region") == [
                ("East", "AMER"), ("East", "EMEA"), ("West", "EMEA"), ("West", None), (None, "AMER"),
                (None, None)]
            with pytest.raises(MetricError, match=r"^segment 'region' does not apply to users$"):
                values("users", "region")
            # stage changes take their deal's dimensions (its own columns first)
            assert values("deal_stage_changes", "stage") == ["propose", "qualify"]
            assert values("deal_stage_changes", "owner") == ["u1", "u2", "u3", None]
            assert values("deal_stage_changes", "team") == ["East", "West", None]
            assert values("deal_stage_changes", "region") == ["AMER", "EMEA", None]
            assert values("deal_stage_changes", "tier") == ["gold", "platinum", "silver", None]
            # the sync history has no owner and no custom fields, but is all live
            assert values("sync_runs", "connector") == ["crm"]
            for dimension in ("owner", "tier", "extra.tier"):
                with pytest.raises(MetricError, match=rf"^segment '{dimension}' does not apply to sync_runs$"):
                    values("sync_runs", dimension)
            assert segments.labels(conn, "owner") == {"u1": "Ann", "u2": "Bob", "u3": "Cid", "u4": "Dee"}
            assert segments.labels(conn, "account") == {"a1": "Acme", "a2": "Bolt", "a3": "Cogs"}
            assert segments.labels(conn, "team") == {}
            assert segments.custom_fields(conn) == ["tier"]
    finally:
        store.engine.dispose()
    assert segments.Segment.of({"owner": None}).as_dict() == {"owner": None}
    assert segments.condition(deals, None) is None
