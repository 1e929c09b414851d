"""Support and satisfaction KPIs over tickets and survey responses.

Tickets come from the CRM's service module (or a help desk export); survey responses are
not in the CRM: they are loaded with the files connector from ``survey_responses.csv``.
Durations are in hours of elapsed (calendar) time: no business-hours calendar and no
paused SLA clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, and_, case, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from crmkpi import hookimpl
from crmkpi.errors import MetricError
from crmkpi.grouped import Cell, Grid, left_out_note
from crmkpi.metrics import (PERCENTILES, STAT_DOC, TABLES, Metric, MetricContext, Param, Value, duration_sums, ratio,
                            stat_param, stat_value)
from crmkpi.sqlkit import evaluated_once, instant


def _hours(kit: MetricContext | Grid, start, end):
    return kit.days_between(start, end) * 24.0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- tickets -----------------------------------------------------------------


class Resolution:
    """What both ways of computing the resolution time share: which tickets count, their hours, the value.

    ``start``/``end`` are the period's bounds, as values (one cell) or as the calendar's columns (a grid)."""

    def __init__(self, kit: MetricContext | Grid, start, end, include_open: bool, now: datetime) -> None:
        tickets = self.tickets = TABLES["tickets"]
        created, resolved_at = tickets.c.created_at, tickets.c.resolved_at
        self.resolved = and_(resolved_at.is_not(None), resolved_at >= start, resolved_at < end)
        self.include_open = include_open
        self.hours = _hours(kit, created, resolved_at)
        self.where = self.resolved
        if include_open:
            as_of = case((end < now, end), else_=now)
            still_open = and_(created.is_not(None), created < as_of, or_(resolved_at.is_(None), resolved_at >= as_of))
            self.where = or_(self.resolved, still_open)
            self.hours = case((self.resolved, self.hours), else_=_hours(kit, created, as_of))

    def value(self, measured: Measured, stat: str, percentile) -> Value:
        notes = measured.notes("resolved before created", "resolved in the period without created_at")
        if not measured.count:
            empty = "no tickets resolved in the period" + (" and none open" if self.include_open else "")
            return Value(None, note=empty).noted(*notes)
        return stat_value(stat, measured.total, measured.count, percentile).noted(*notes)


def avg_resolution_time(ctx: MetricContext) -> Value:
    now = datetime.now(UTC)
    as_of = min(ctx.end, now)
    label = "tickets resolved in the period"
    if ctx.params["include_open"]:
        label = f"tickets resolved in the period, and tickets open at {as_of.isoformat(timespec='seconds')}"
    resolution = Resolution(ctx, instant(ctx.start), instant(ctx.end), ctx.params["include_open"], instant(now))
    tickets, hours = resolution.tickets, resolution.hours
    ctx.record(label, tickets, resolution.where, tickets.c.created_at.is_not(None), hours >= 0)
    measured = _measured(ctx, hours, resolution.where)
    return resolution.value(measured, ctx.params["stat"], lambda percent: ctx.percentile(measured.hours, percent))


def avg_resolution_time_grouped(grid: Grid) -> dict[Cell, Value]:
    calendar = grid.calendar
    resolution = Resolution(grid, calendar.c.start, calendar.c.end, grid.params["include_open"],
                            instant(datetime.now(UTC)))
    # Open tickets belong to each part they are open at the end of: only a join with the calendar says so.
    at, on = (None, resolution.where) if resolution.include_open else (resolution.tickets.c.resolved_at, None)
    return _measured_cells(grid, resolution.tickets, resolution.hours,
                           lambda cell, measured, percentile: resolution.value(measured, grid.params["stat"],
                                                                               percentile), at=at, on=on)


def first_response_time(ctx: MetricContext) -> Value:
    tickets = ctx.table("tickets")
    created, responded = tickets.c.created_at, tickets.c.first_response_at
    ctx.record("tickets created in the period", tickets, ctx.in_period(created))
    measured = _measured(ctx, _hours(ctx, created, responded), ctx.in_period(created), undated=created.is_(None))
    return _first_response(measured, ctx.params["stat"], lambda percent: ctx.percentile(measured.hours, percent),
                           _undated(measured.undated))


def first_response_time_grouped(grid: Grid) -> dict[Cell, Value]:
    tickets = grid.table("tickets")
    created = tickets.c.created_at
    undated = grid.left_out(*UNDATED_TICKETS)
    return _measured_cells(grid, tickets, _hours(grid, created, tickets.c.first_response_at),
                           lambda cell, measured, percentile: _first_response(measured, grid.params["stat"], percentile,
                                                                              undated.get(cell.segment)), at=created)


def _first_response(measured: Measured, stat: str, percentile, undated: str | None) -> Value:
    notes = [*measured.notes("answered before created", "without a first response"), undated]
    if not measured.count:
        return Value(None, note="no answered tickets created in the period").noted(*notes)
    return stat_value(stat, measured.total, measured.count, percentile).noted(*notes)


@dataclass(frozen=True)
class Measured:
    """Tickets' durations in hours: those measured, and those that could not be (negative or missing)."""

    #: Selects the hours of each measured ticket (for a percentile; None in a grid, which has its own).
    hours: Select | None
    total: float
    count: int
    negative: int
    missing: int
    #: The tickets in no period (without created_at), when asked for.
    undated: int = 0

    def notes(self, negative: str, missing: str) -> list[str]:
        return [f"{_plural(n, 'ticket')} {what} left out" for n, what in ((self.missing, missing),
                                                                         (self.negative, negative)) if n]


def _measured(ctx: MetricContext, hours: ColumnElement, where: ColumnElement,
              undated: ColumnElement | None = None) -> Measured:
    """The in-scope tickets matching ``where``, measured by ``hours`` (the non-negative ones), in one scan that
    also counts the tickets matching ``undated`` (those in no period), if given."""
    tickets = TABLES["tickets"]
    flags = [] if undated is None else [undated.label("undated")]
    rows = evaluated_once(select(hours.label("hours"), *flags).where(
        *ctx.scope(tickets), where if undated is None else or_(where, undated))).subquery("durations")
    among = None if undated is None else ~rows.c.undated
    counts = [] if undated is None else [func.count().filter(rows.c.undated)]
    sums = ctx.conn.execute(select(*duration_sums(rows.c.hours, among), *counts)).one()
    return _measured_of(select(rows.c.hours).where(rows.c.hours >= 0), *sums)


def _measured_of(hours: Select | None, total, count, negative, missing, undated=0) -> Measured:
    return Measured(hours, float(total or 0), int(count or 0), int(negative or 0), int(missing or 0), int(undated))


def _measured_cells(grid: Grid, tickets, hours, value, at=None, on=None) -> dict[Cell, Value]:
    """``value(cell, measured, percentile)`` of each cell: its tickets (by ``at`` or ``on``, as
    :meth:`Grid.by_part` places them) measured by ``hours``."""
    sums = grid.by_part_once(tickets, at, hours, duration_sums, on=on)
    stat = grid.params["stat"]
    percentiles = {} if stat == "mean" else \
        grid.percentiles(tickets, at, case((hours >= 0, hours)), PERCENTILES[stat], on=on)
    return {cell: value(cell, _measured_of(None, *sums.get(cell, (None, 0, 0, 0))),
                        lambda percent, cell=cell: percentiles.get(cell, (None, 0)))
            for cell in grid.cells}


UNDATED_TICKETS = ("ticket(s) without created_at (in no period)", TABLES["tickets"],
                   TABLES["tickets"].c.created_at.is_(None))


def _undated(count: int) -> str | None:
    """The note on the tickets without created_at, which no period of creation holds."""
    return left_out_note(count, UNDATED_TICKETS[0])


def _counted(ctx: MetricContext, *conditions: ColumnElement, among: ColumnElement = true()) -> tuple[int, ...]:
    """How many in-scope tickets (matching ``among``) match each condition, in one scan: tickets have no index
    to narrow it, and each scan reads the whole table."""
    tickets = TABLES["tickets"]
    counts = select(*(func.count().filter(condition) for condition in conditions)).where(*ctx.scope(tickets), among)
    return tuple(ctx.conn.execute(counts).one())


def ticket_volume(ctx: MetricContext) -> Value:
    tickets = ctx.table("tickets")
    created = ctx.in_period(tickets.c.created_at)
    ctx.record("tickets created in the period", tickets, created)
    count, undated, stored = _counted(ctx, created, tickets.c.created_at.is_(None), true())
    return _volume(count, lambda: not stored, lambda: _undated(undated))


def ticket_volume_grouped(grid: Grid) -> dict[Cell, Value]:
    tickets = grid.table("tickets")
    counts, stored = grid.by_part_and_segment(tickets, tickets.c.created_at, [func.count()],
                                              [func.count(), func.count().filter(tickets.c.created_at.is_(None))])
    return {cell: _volume(counts.get(cell, (0,))[0], lambda cell=cell: cell.segment not in stored,
                          lambda cell=cell: _undated(stored.get(cell.segment, (0, 0))[1])) for cell in grid.cells}


def _volume(count: int, no_tickets, undated) -> Value:
    if not count and no_tickets():
        return Value(None, note="no tickets in the store")
    return Value(float(count)).noted(undated())


def resolution_rate(ctx: MetricContext) -> Value:
    tickets = ctx.table("tickets")
    created, resolved = ctx.in_period(tickets.c.created_at), tickets.c.resolved_at.is_not(None)
    ctx.record("tickets created in the period and resolved", tickets, created, resolved)
    ctx.record("tickets created in the period", tickets, created)
    undated = tickets.c.created_at.is_(None)
    resolved, total, undated = _counted(ctx, and_(created, resolved), created, undated, among=or_(created, undated))
    return _resolution_rate(resolved, total, _undated(undated))


def resolution_rate_grouped(grid: Grid) -> dict[Cell, Value]:
    tickets = grid.table("tickets")
    counts, stored = grid.by_part_and_segment(
        tickets, tickets.c.created_at, [func.count().filter(tickets.c.resolved_at.is_not(None)), func.count()],
        [func.count().filter(tickets.c.created_at.is_(None))])
    return {cell: _resolution_rate(*counts.get(cell, (0, 0)), _undated(stored.get(cell.segment, (0,))[0]))
            for cell in grid.cells}


def _resolution_rate(resolved: int, total: int, undated: str | None) -> Value:
    return ratio(resolved, total, empty="no tickets created in the period").noted(undated)


# --- surveys -----------------------------------------------------------------


class Survey:
    """What both ways of computing a survey score share: the responses that count, the checks, the notes."""

    def __init__(self, params: dict) -> None:
        answers = self.answers = TABLES["survey_responses"]
        self.name = params["survey"]
        self.score = answers.c.score
        self.scale = func.coalesce(answers.c.scale_max, params["default_scale"])
        self.labelled = func.lower(answers.c.survey) == self.name.lower()
        self.counted = (self.labelled, self.score.is_not(None))
        #: The notes on the responses no period, or no value, can count: no responded_at, no survey label,
        #: no score (the last two: of the period's responses).
        self.undated = "response(s) without responded_at (in no period) left out"
        self.unlabelled = f"response(s) in the period without a survey label (give them survey: {self.name}) left out"
        self.unscored = f"{self.name} response(s) in the period without score left out"

    def unanswered(self, in_period: ColumnElement) -> dict[str, ColumnElement]:
        answers = self.answers
        return {self.undated: answers.c.responded_at.is_(None),
                self.unlabelled: and_(in_period, answers.c.survey.is_(None)),
                self.unscored: and_(in_period, self.labelled, self.score.is_(None))}

    def scan(self, ctx: MetricContext, supported: str, bad: ColumnElement,
             sums: tuple[ColumnElement, ...]) -> tuple[tuple, list[str | None]]:
        """(``sums`` over the responses counted in the period, the notes on those none can count); the counted
        ones are checked against ``bad`` (:meth:`check`) in the same scan."""
        answers = self.answers
        in_period = ctx.in_period(answers.c.responded_at)
        where = (in_period, *self.counted)
        *totals, unreadable = ctx.conn.execute(select(*sums, func.count().filter(bad))
                                               .where(*ctx.scope(answers), *where)).one()
        if unreadable:
            self.check(supported, bad, ctx, where)
        return tuple(totals), ctx.left_out_each(answers, self.unanswered(in_period))

    def cells(self, grid: Grid, supported: str, bad: ColumnElement,
              sums: tuple[ColumnElement, ...]) -> dict[Cell, tuple[tuple, list[str | None]]]:
        """:meth:`scan` of every cell of ``grid``, in one scan of the responses."""
        answers, responded = self.answers, self.answers.c.responded_at
        counted = and_(*self.counted)
        found, undated = grid.by_part_and_segment(
            answers, responded, [*(total.filter(counted) for total in sums), func.count().filter(and_(counted, bad)),
                                 func.count().filter(answers.c.survey.is_(None)),
                                 func.count().filter(and_(self.labelled, self.score.is_(None)))],
            [func.count().filter(responded.is_(None))])
        if any(row[len(sums)] for row in found.values()):
            self.check(supported, bad, grid, (grid.in_any_part(responded), *self.counted))
        empty = (None,) * len(sums) + (0, 0, 0)
        cells = {}
        for cell in grid.cells:
            *totals, _, unlabelled, unscored = found.get(cell, empty)
            counts = (undated.get(cell.segment, (0,))[0], unlabelled, unscored)
            cells[cell] = (tuple(totals), [f"{count} {note}" if count else None for note, count in
                                           zip((self.undated, self.unlabelled, self.unscored), counts)])
        return cells

    def check(self, supported: str, bad: ColumnElement, kit: MetricContext | Grid, where) -> None:
        """Refuse the first response matching ``where`` that ``bad`` says its scale cannot hold (in a grid,
        of any cell: the engine then computes cell by cell, and the error lands on that response's cells)."""
        answers = self.answers
        row = kit.conn.execute(select(answers.c.id, answers.c.score, answers.c.scale_max)
                               .where(*kit.scope(answers), *where, bad).order_by(answers.c.id).limit(1)).first()
        if row:
            raise MetricError(f"survey_responses row {row.id!r}: score {row.score:g} on scale_max "
                              f"{row.scale_max if row.scale_max is not None else 'null'} is not a {supported} answer")

    def empty(self) -> str:
        return f"no {self.name} responses in the period"


def _nps_kinds(survey: Survey) -> tuple[ColumnElement, ColumnElement, ColumnElement]:
    """(an unreadable response, a promoter, a detractor)."""
    score, scale = survey.score, survey.scale
    ten, five = scale == 10, scale == 5
    bad = or_(~scale.in_((5, 10)), and_(ten, or_(score < 0, score > 10)), and_(five, or_(score < 1, score > 5)))
    return bad, or_(and_(ten, score >= 9), and_(five, score >= 4)), or_(and_(ten, score <= 6), and_(five, score <= 2))


def _nps(survey: Survey, promoters: int, detractors: int, total: int, notes: list[str | None]) -> Value:
    if not total:
        return Value(None, note=survey.empty()).noted(*notes)
    net = promoters - detractors
    return Value(100.0 * net / total, float(net), float(total),
                 note=f"{promoters} promoters, {total - promoters - detractors} passives, {detractors} detractors"
                 ).noted(*notes)


def nps(ctx: MetricContext) -> Value:
    survey = Survey(ctx.params)
    answers, where = survey.answers, (ctx.in_period(survey.answers.c.responded_at), *survey.counted)
    bad, promoter, detractor = _nps_kinds(survey)
    ctx.record(f"{survey.name} responses in the period", answers, *where)
    counts, notes = survey.scan(ctx, "0-10 or 1-5", bad, (func.count().filter(promoter), func.count().filter(detractor),
                                                           func.count()))
    return _nps(survey, *counts, notes)


def nps_grouped(grid: Grid) -> dict[Cell, Value]:
    survey = Survey(grid.params)
    bad, promoter, detractor = _nps_kinds(survey)
    cells = survey.cells(grid, "0-10 or 1-5", bad, (func.count().filter(promoter), func.count().filter(detractor),
                                                    func.count()))
    return {cell: _nps(survey, *(count or 0 for count in counts), notes) for cell, (counts, notes) in cells.items()}


def _csat_bad(survey: Survey) -> ColumnElement:
    return or_(survey.scale < 2, survey.score < 0, survey.score > survey.scale)


def _csat_sums(survey: Survey, method: str) -> tuple[ColumnElement, ...]:
    score, scale = survey.score, survey.scale
    if method == "share_satisfied":
        return func.count(case((score >= scale - 1, 1))), func.count()
    return func.sum(score * 1.0 / scale), func.count(), func.sum(score), func.min(scale), func.max(scale)


def _csat(survey: Survey, method: str, sums: tuple, notes: list[str | None]) -> Value:
    if method == "share_satisfied":
        satisfied, total = sums
        return ratio(satisfied, total, empty=survey.empty()).noted(*notes)
    part, total, raw, low, high = sums
    if not total:
        return Value(None, note=survey.empty()).noted(*notes)
    note = f"mean score {float(raw) / total:.2f} out of {low}" if low == high else "responses on different scales"
    return Value(float(part) / total, float(part), float(total), note=note).noted(*notes)


def csat(ctx: MetricContext) -> Value:
    survey, method = Survey(ctx.params), ctx.params["method"]
    answers, where = survey.answers, (ctx.in_period(survey.answers.c.responded_at), *survey.counted)
    if method == "share_satisfied":
        ctx.record("satisfied responses (top two of the scale)", answers, *where, survey.score >= survey.scale - 1)
    ctx.record(f"{survey.name} responses in the period", answers, *where)
    return _csat(survey, method, *survey.scan(ctx, "valid", _csat_bad(survey), _csat_sums(survey, method)))


def csat_grouped(grid: Grid) -> dict[Cell, Value]:
    survey, method = Survey(grid.params), grid.params["method"]
    cells = survey.cells(grid, "valid", _csat_bad(survey), _csat_sums(survey, method))
    return {cell: _csat(survey, method, sums, notes) for cell, (sums, notes) in cells.items()}


# --- declarations ------------------------------------------------------------

TICKETS_DOC = ("Tickets come from the tickets table (owner_id is the agent: --segment agent gives one value per "
               "agent). Hours are elapsed calendar time, without business hours or paused SLA clocks.")


def _survey_doc(survey: str) -> str:
    return ("Responses come from survey_responses, which a CRM does not hold: they are loaded with the files "
            "connector from survey_responses.csv. A response counts when its responded_at falls in the period, "
            f"its survey equals the survey param ('{survey}' by default, case-insensitive) and it has a score. "
            "Responses without a survey label are not counted: give them one with the files connector's "
            f"constants (survey: {survey}). Survey responses have an account, not an owner: segment them by "
            "account attributes (region, industry, segment, account) or custom fields.")


METRICS = [
    Metric(
        id="avg_resolution_time",
        title="Average resolution time",
        description="Mean hours from a ticket's created_at to its resolved_at, over the tickets resolved in the "
                    "period (by resolved_at). With include_open=true, the tickets still open at the end of the "
                    "period (or now, for a period not over yet) count too, with their age at that moment "
                    "(now − created, as CRMs commonly report open cases), however old they are. Tickets resolved "
                    "before they were created, or without created_at, are left out and counted in the note. "
                    + STAT_DOC + " " + TICKETS_DOC,
        formula="sum of (resolved_at − created_at) in hours / tickets resolved in the period",
        unit="hours",
        direction="lower",
        tables=("tickets",),
        compute=avg_resolution_time,
        grouped=avg_resolution_time_grouped,
        needs=("tickets.created_at", "tickets.resolved_at"),
        params=(Param("include_open", bool, False,
                      "also count tickets open at the period's end (or now), aged up to that moment"),
                stat_param("tickets' hours")),
    ),
    Metric(
        id="first_response_time",
        title="First response time",
        description="Mean hours from a ticket's created_at to its first_response_at, over the tickets created in "
                    "the period (by created_at) that have a first response; tickets still waiting for one are "
                    "left out and counted in the note. " + STAT_DOC + " " + TICKETS_DOC,
        formula="sum of (first_response_at − created_at) in hours / answered tickets created in the period",
        unit="hours",
        direction="lower",
        tables=("tickets",),
        compute=first_response_time,
        grouped=first_response_time_grouped,
        needs=("tickets.created_at", "tickets.first_response_at"),
        params=(stat_param("tickets' hours"),),
    ),
    Metric(
        id="ticket_volume",
        title="Support ticket volume",
        description="Number of tickets created in the period (by created_at), whatever their status. Null with a "
                    "note when the store holds no tickets at all (a zero would suggest there were none). "
                    + TICKETS_DOC,
        formula="count of tickets created in the period",
        unit="count",
        direction="lower",
        tables=("tickets",),
        compute=ticket_volume,
        grouped=ticket_volume_grouped,
        needs=("tickets.created_at",),
        additive=True,
    ),
    Metric(
        id="resolution_rate",
        title="Ticket resolution rate",
        description="Share of the tickets created in the period (by created_at) that have been resolved "
                    "(resolved_at set), as of the run: a recent period's rate still grows. " + TICKETS_DOC,
        formula="tickets created in the period and resolved / tickets created in the period",
        unit="ratio",
        direction="higher",
        tables=("tickets",),
        compute=resolution_rate,
        grouped=resolution_rate_grouped,
        needs=("tickets.created_at", "tickets.resolved_at"),
    ),
    Metric(
        id="nps",
        title="Net Promoter Score (NPS)",
        description="Percentage of promoters minus percentage of detractors, in points (−100 to 100). The scale "
                    "comes from each response's scale_max: 10 means 0–10 (9–10 promoters, 7–8 passives, 0–6 "
                    "detractors); 5 means 1–5 (4–5 promoters, 3 passive, 1–2 detractors); a null scale_max takes "
                    "default_scale. Other scales, or scores outside theirs, are an error naming the response. The "
                    "numerator is promoters − detractors and the denominator the responses; the note gives the "
                    "three counts. " + _survey_doc("nps"),
        formula="100 × (promoters − detractors) / responses in the period",
        unit="points",
        direction="higher",
        tables=("survey_responses",),
        compute=nps,
        grouped=nps_grouped,
        needs=("survey_responses.survey", "survey_responses.score", "survey_responses.responded_at"),
        params=(
            Param("survey", str, "nps", "the survey_responses.survey value of NPS answers"),
            Param("default_scale", int, 10, "scale_max for responses without one", choices=(10, 5)),
        ),
    ),
    Metric(
        id="csat",
        title="Customer satisfaction (CSAT)",
        description="How satisfied the respondents are, as a fraction. share_satisfied (the default): the share "
                    "of responses in the top two answers of their scale (4–5 on 1–5, 9–10 on 0–10: score ≥ "
                    "scale_max − 1). mean_score: the mean score as a fraction of the scale's maximum (a mean of "
                    "4.2 on 1–5 is 0.84); the note gives the raw mean when all responses share a scale. A null "
                    "scale_max takes default_scale; scores outside the scale are an error. " + _survey_doc("csat"),
        formula="responses scoring ≥ scale_max − 1 / responses in the period (or mean of score / scale_max)",
        unit="ratio",
        direction="higher",
        tables=("survey_responses",),
        compute=csat,
        grouped=csat_grouped,
        needs=("survey_responses.survey", "survey_responses.score", "survey_responses.responded_at"),
        params=(
            Param("method", str, "share_satisfied", "share of satisfied (top-two) answers, or the mean score",
                  choices=("share_satisfied", "mean_score")),
            Param("survey", str, "csat", "the survey_responses.survey value of CSAT answers"),
            Param("default_scale", int, 5, "scale_max for responses without one"),
        ),
    ),
]


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
