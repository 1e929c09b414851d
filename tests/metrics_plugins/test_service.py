"""Service KPIs (avg_resolution_time, first_response_time, ticket_volume, resolution_rate, nps, csat).

Tickets of March 2024 (owner_id is the agent; times UTC):

  id   agent  created            first response     resolved            resolution hours
  t1   u1     03-01 08:00        03-01 09:00 (1 h)  03-01 20:00          12
  t2   u1     03-02 00:00        03-02 02:00 (2 h)  03-03 00:00          24
  t3   u2     02-28 00:00 (Feb)  02-28 04:00        03-02 00:00          72 (2024 is a leap year)
  t4   u2     03-10 00:00        03-10 06:00 (6 h)  03-10 06:00           6
  t5   u1     03-20 00:00        -                  open                 (open at the end: 288)
  t6   u2     03-25 00:00        03-25 03:00 (3 h)  04-02 00:00 (April)  (open at the end: 168)
  t7   u1     deleted
  t9   -      03-05 00:00        03-05 01:00 (1 h)  03-05 10:00          10
  t10  u2     01-01 00:00        -                  open                 (open at the end: 91 days = 2184)
  t11  u1     04-05 00:00 (April), open
"""

from __future__ import annotations

import pytest


def ticket(id, agent, created, first=None, resolved=None, deleted=False):
    return {"id": id, "owner_id": agent, "created_at": created, "first_response_at": first, "resolved_at": resolved,
            "status": "closed" if resolved else "open", "priority": "high", "channel": "email",
            "is_deleted": "true" if deleted else "false"}


TICKETS = [
    ticket("t1", "u1", "2024-03-01T08:00:00Z", "2024-03-01T09:00:00Z", "2024-03-01T20:00:00Z"),
    ticket("t2", "u1", "2024-03-02T00:00:00Z", "2024-03-02T02:00:00Z", "2024-03-03T00:00:00Z"),
    ticket("t3", "u2", "2024-02-28T00:00:00Z", "2024-02-28T04:00:00Z", "2024-03-02T00:00:00Z"),
    ticket("t4", "u2", "2024-03-10T00:00:00Z", "2024-03-10T06:00:00Z", "2024-03-10T06:00:00Z"),
    ticket("t5", "u1", "2024-03-20T00:00:00Z"),
    ticket("t6", "u2", "2024-03-25T00:00:00Z", "2024-03-25T03:00:00Z", "2024-04-02T00:00:00Z"),
    ticket("t7", "u1", "2024-03-05T00:00:00Z", "2024-03-05T00:30:00Z", "2024-03-09T04:00:00Z", deleted=True),
    ticket("t9", None, "2024-03-05T00:00:00Z", "2024-03-05T01:00:00Z", "2024-03-05T10:00:00Z"),
    ticket("t10", "u2", "2024-01-01T00:00:00Z"),
    ticket("t11", "u1", "2024-04-05T00:00:00Z"),
]


@pytest.fixture
def tickets(kpi_any_store):
    kpi_any_store.write("tickets", TICKETS)
    kpi_any_store.sync()
    return kpi_any_store


def sides(row):
    return row["value"], row["numerator"], row["denominator"]


def by_segment(rows):
    return [(r["segment"], r["value"], r["numerator"], r["denominator"]) for r in rows]


def test_avg_resolution_time_company_and_per_agent(tickets):
    row = tickets.one("avg_resolution_time", "--period", "2024-03")
    assert sides(row) == (pytest.approx(24.8), pytest.approx(124), 5)
    assert (row["unit"], row["note"]) == ("hours", None)
    rows = tickets.run("avg_resolution_time", "--period", "2024-03", "--segment", "agent")
    assert by_segment(rows) == [
        ({"agent": "u1"}, pytest.approx(18), pytest.approx(36), 2),     # t1 12 + t2 24 (t7 deleted)
        ({"agent": "u2"}, pytest.approx(39), pytest.approx(78), 2),     # t3 72 + t4 6
        ({"agent": None}, pytest.approx(10), pytest.approx(10), 1),     # t9, no agent
    ]


def test_avg_resolution_time_with_open_tickets(tickets):
    # + open at 2024-04-01 00:00: t5 288, t6 168 (resolved after the end), t10 2184 (however old); not t11
    row = tickets.one("avg_resolution_time", "--period", "2024-03", "--param", "include_open=true")
    assert sides(row) == (pytest.approx(2764 / 8), pytest.approx(2764), 8)
    rows = tickets.run("avg_resolution_time", "--period", "2024-03", "--param", "include_open=true",
                       "--segment", "owner")
    assert by_segment(rows) == [
        ({"owner": "u1"}, pytest.approx(108), pytest.approx(324), 3),
        ({"owner": "u2"}, pytest.approx(607.5), pytest.approx(2430), 4),
        ({"owner": None}, pytest.approx(10), pytest.approx(10), 1),
    ]


def test_first_response_time(tickets):
    # created in March and answered: t1 1, t2 2, t4 6, t6 3, t9 1; t5 waits
    row = tickets.one("first_response_time", "--period", "2024-03")
    assert sides(row) == (pytest.approx(2.6), pytest.approx(13), 5)
    assert row["note"] == "1 ticket without a first response left out"
    rows = tickets.run("first_response_time", "--period", "2024-03", "--segment", "agent")
    assert by_segment(rows) == [({"agent": "u1"}, pytest.approx(1.5), pytest.approx(3), 2),
                                ({"agent": "u2"}, pytest.approx(4.5), pytest.approx(9), 2),
                                ({"agent": None}, pytest.approx(1), pytest.approx(1), 1)]


def test_resolution_and_response_time_percentiles(tickets):
    # resolutions in March: 6, 10, 12, 24, 72 hours: mean 24.8, median 12
    median = tickets.one("avg_resolution_time", "--period", "2024-03", "--param", "stat=median")
    assert sides(median) == (pytest.approx(12), None, 5)  # a median keeps the count as its denominator
    # p90: rank 1 + 4 × 0.9 = 4.6, between 24 and 72
    assert sides(tickets.one("avg_resolution_time", "--period", "2024-03", "--param", "stat=p90")) == \
        (pytest.approx(52.8), None, 5)
    rows = tickets.run("avg_resolution_time", "--period", "2024-03", "--param", "stat=median", "--segment", "agent")
    # an even count: the mean of the middle two
    assert by_segment(rows) == [({"agent": "u1"}, pytest.approx(18), None, 2),
                                ({"agent": "u2"}, pytest.approx(39), None, 2),
                                ({"agent": None}, pytest.approx(10), None, 1)]
    # first responses 1, 1, 2, 3, 6 hours: median 2, p75 exactly the fourth
    assert sides(tickets.one("first_response_time", "--period", "2024-03", "--param", "stat=median")) == \
        (pytest.approx(2), None, 5)
    row = tickets.one("first_response_time", "--period", "2024-03", "--param", "stat=p75")
    assert sides(row) == (pytest.approx(3), None, 5) and row["note"] == "1 ticket without a first response left out"
    table = tickets.invoke("run", "--metric", "avg_resolution_time", "--period", "2024-03", "--param",
                           "stat=median", "--no-save").stdout
    assert [c.strip() for c in table.splitlines()[2].split("│")][:5] == \
        ["Average resolution time (median)", "2024-03", "12.0 hours", "", "5"]


def test_ticket_volume_and_resolution_rate(tickets):
    row = tickets.one("ticket_volume", "--period", "2024-03")
    assert (row["value"], row["unit"]) == (6, "count")   # t1, t2, t4, t5, t6, t9
    rows = tickets.run("ticket_volume", "--period", "2024-Q1", "--grain", "month", "--segment", "agent")
    assert [(r["segment"]["agent"], r["period"], r["value"]) for r in rows] == [
        ("u1", "2024-01", 0), ("u1", "2024-02", 0), ("u1", "2024-03", 3),
        ("u2", "2024-01", 1), ("u2", "2024-02", 1), ("u2", "2024-03", 2),
        (None, "2024-01", 0), (None, "2024-02", 0), (None, "2024-03", 1)]
    # resolved by now: all but t5 (t6 in April still counts)
    assert sides(tickets.one("resolution_rate", "--period", "2024-03")) == (pytest.approx(5 / 6), 5, 6)


def test_ticket_metrics_empty(kpi):
    kpi.write("tickets", TICKETS)
    kpi.sync()
    rows = kpi.run(None, "--metric", "avg_resolution_time", "--metric", "first_response_time",
                   "--metric", "resolution_rate", "--metric", "ticket_volume", "--period", "2023-06")
    assert [(r["metric"], r["value"], r["note"]) for r in rows] == [
        ("avg_resolution_time", None, "no tickets resolved in the period"),
        ("first_response_time", None, "no answered tickets created in the period"),
        ("resolution_rate", None, "no tickets created in the period"),
        ("ticket_volume", 0, None),     # tickets exist: none created then is a real zero
    ]
    row = kpi.one("avg_resolution_time", "--period", "2023-06", "--param", "include_open=true")
    assert (row["value"], row["note"]) == (None, "no tickets resolved in the period and none open")


def test_ticket_volume_without_any_tickets_is_null(kpi):
    kpi.write("accounts", [{"id": "a1"}])
    kpi.sync()
    row = kpi.one("ticket_volume", "--period", "2024-03")
    assert (row["value"], row["note"]) == (None, "no tickets in the store")


def test_tickets_with_times_out_of_order_are_left_out_and_noted(kpi):
    kpi.write("tickets", [
        ticket("ok", "u1", "2024-03-01T00:00:00Z", "2024-03-01T02:00:00Z", "2024-03-01T04:00:00Z"),
        ticket("bad", "u1", "2024-03-10T00:00:00Z", "2024-03-09T00:00:00Z", "2024-03-09T12:00:00Z"),
    ])
    kpi.sync()
    row = kpi.one("avg_resolution_time", "--period", "2024-03")
    assert (*sides(row), row["note"]) == (pytest.approx(4), pytest.approx(4), 1,
                                          "1 ticket resolved before created left out")
    row = kpi.one("first_response_time", "--period", "2024-03")
    assert (*sides(row), row["note"]) == (pytest.approx(2), pytest.approx(2), 1,
                                          "1 ticket answered before created left out")


# --- surveys -----------------------------------------------------------------


def response(id, score, when, survey="nps", scale=10, account=None, deleted=False):
    return {"id": id, "survey": survey, "score": score, "scale_max": scale, "responded_at": when,
            "account_id": account, "is_deleted": "true" if deleted else "false"}


def test_nps_acceptance_on_both_scales(kpi_any_store):
    kpi = kpi_any_store
    ten = [10, 10, 10, 9, 9, 8, 7, 6, 3, 0]
    five = [5, 5, 4, 4, 4, 3, 2, 1]
    kpi.write("survey_responses",
              [response(f"a{i}", s, "2024-03-15T12:00:00Z") for i, s in enumerate(ten)]
              + [response(f"b{i}", s, "2024-04-15T12:00:00Z", scale=5) for i, s in enumerate(five)])
    kpi.sync()
    row = kpi.one("nps", "--period", "2024-03")
    assert (*sides(row), row["unit"]) == (20, 2, 10, "points")   # 5 promoters - 3 detractors of 10
    assert row["note"] == "5 promoters, 2 passives, 3 detractors"
    row = kpi.one("nps", "--period", "2024-04")
    assert sides(row) == (37.5, 3, 8)                              # 5 promoters - 2 detractors of 8


def test_nps_filters_scales_and_segments(kpi):
    kpi.write("accounts", [{"id": "a1", "region": "EMEA"}, {"id": "a2", "region": "AMER"}])
    kpi.write("survey_responses", [
        response("p1", 10, "2024-03-01T00:00:00Z", account="a1"),
        response("p2", 4, "2024-03-02T00:00:00Z", scale=None, account="a1"),      # default scale 10: detractor
        response("p3", 5, "2024-03-03T00:00:00Z", scale=5, survey="NPS", account="a2"),  # promoter
        response("p4", 7, "2024-03-04T00:00:00Z", account="a2"),                  # passive
        response("x1", 0, "2024-03-05T00:00:00Z", deleted=True, account="a2"),
        response("x2", 1, "2024-03-05T00:00:00Z", survey="csat", scale=5, account="a2"),
        response("x3", 0, "2024-03-05T00:00:00Z", survey=None, account="a2"),     # unlabelled: not counted
        response("x4", None, "2024-03-05T00:00:00Z", account="a2"),               # no score
        response("x5", 0, "2024-04-01T00:00:00Z", account="a2"),                  # April
    ])
    kpi.sync()
    assert sides(kpi.one("nps", "--period", "2024-03")) == (25, 1, 4)
    # p2 on a 1-5 scale: 4 is a promoter
    assert sides(kpi.one("nps", "--period", "2024-03", "--param", "default_scale=5")) == (75, 3, 4)
    rows = kpi.run("nps", "--period", "2024-03", "--segment", "region")
    assert by_segment(rows) == [({"region": "AMER"}, 50, 1, 2), ({"region": "EMEA"}, 0, 0, 2)]
    # another survey name
    assert sides(kpi.one("nps", "--period", "2024-03", "--param", "survey=csat")) == (-100, -1, 1)
    row = kpi.one("nps", "--period", "2023-03")
    assert (row["value"], row["note"]) == (None, "no nps responses in the period")


def test_nps_rejects_scales_it_cannot_read(kpi):
    kpi.write("survey_responses", [response("ok", 9, "2024-03-01T00:00:00Z"),
                                   response("seven", 6, "2024-03-02T00:00:00Z", scale=7),
                                   response("high", 6, "2024-05-02T00:00:00Z", scale=5)])
    kpi.sync()
    assert kpi.error("nps", "--period", "2024-03") == \
        "survey_responses row 'seven': score 6 on scale_max 7 is not a 0-10 or 1-5 answer"
    assert kpi.error("nps", "--period", "2024-05") == \
        "survey_responses row 'high': score 6 on scale_max 5 is not a 0-10 or 1-5 answer"


def test_csat(kpi_any_store):
    kpi = kpi_any_store
    kpi.write("accounts", [{"id": "a1", "region": "EMEA"}, {"id": "a2", "region": "AMER"}])
    scores = [5, 4, 4, 3, 2, 1, 5, 4]
    kpi.write("survey_responses",
              [response(f"c{i}", s, "2024-03-10T00:00:00Z", survey="csat", scale=5 if i % 2 else None,
                        account="a1" if i < 4 else "a2") for i, s in enumerate(scores)]
              + [response("nps1", 0, "2024-03-10T00:00:00Z"),
                 response("gone", 1, "2024-03-10T00:00:00Z", survey="csat", scale=5, deleted=True)])
    kpi.sync()
    row = kpi.one("csat", "--period", "2024-03")
    assert (*sides(row), row["unit"]) == (0.625, 5, 8, "ratio")    # 4-5 answers: 5, 4, 4, 5, 4
    row = kpi.one("csat", "--period", "2024-03", "--param", "method=mean_score")
    assert sides(row) == (pytest.approx(0.7), pytest.approx(5.6), 8)   # mean 3.5 of 5
    assert row["note"] == "mean score 3.50 out of 5"
    rows = kpi.run("csat", "--period", "2024-03", "--segment", "region")
    # the account-less nps answer makes a region-less segment, without csat answers
    assert by_segment(rows) == [({"region": "AMER"}, 0.5, 2, 4), ({"region": "EMEA"}, 0.75, 3, 4),
                                ({"region": None}, None, 0, 0)]
    assert rows[2]["note"] == "no csat responses in the period"
    row = kpi.one("csat", "--period", "2024-04")
    assert (row["value"], row["note"]) == (None, "no csat responses in the period")


def test_csat_on_other_scales(kpi):
    kpi.write("survey_responses", [
        response("t1", 10, "2024-03-01T00:00:00Z", survey="csat", scale=10),   # top two of 0-10: 9-10
        response("t2", 8, "2024-03-01T00:00:00Z", survey="csat", scale=10),
        response("f1", 4, "2024-03-01T00:00:00Z", survey="csat", scale=None),  # default_scale 7: not top two
        response("bad", 6, "2024-04-01T00:00:00Z", survey="csat", scale=5),
    ])
    kpi.sync()
    row = kpi.one("csat", "--period", "2024-03", "--param", "default_scale=7")
    assert sides(row) == (pytest.approx(1 / 3), 1, 3)
    row = kpi.one("csat", "--period", "2024-03", "--param", "default_scale=7", "--param", "method=mean_score")
    assert sides(row) == (pytest.approx((1 + 0.8 + 4 / 7) / 3), pytest.approx(1 + 0.8 + 4 / 7), 3)
    assert row["note"] == "responses on different scales"
    assert kpi.error("csat", "--period", "2024-04") == \
        "survey_responses row 'bad': score 6 on scale_max 5 is not a valid answer"
