"""Metrics benchmark: every built-in metric computed by crmkpi against hand-written SQL run with sqlite3.

Measures, side by side in one run (see bench/README.md and docs/performance.md):

* crmkpi engine -- ``crmkpi.engine.run_metrics`` in this process, one metric for one period,
  not persisted: the target's side. The engine's connection pool is disposed before each
  call, so connecting is inside the timing, as it is for the baseline;
* baseline -- hand-written SQL for the same metric and period, run with the stdlib
  ``sqlite3`` module on the same store file (a new connection per measurement), computing
  the same value and, where the metric has them, the same numerator and denominator. The
  SQL is what a person would write for that one number: as few passes as the definition
  allows (numerator and denominator in one query), currency conversion by a join on the
  rates, no separate validation queries;
* ``crmkpi run`` -- the command line, one metric per process
  (``crmkpi run --metric ID --period P --format json --no-save``), so process start-up,
  plugin loading and config parsing are included; and once for every metric in one process.
  Reported, not part of the target ratio (start-up would otherwise be counted once per metric).

Metrics are discovered from the entry points of the crmkpi distribution; each is measured with
its default params, and some with other param sets too ("variants": reported, not in the target).

Every engine, CLI and baseline value is compared: value, numerator and denominator must agree
within 1e-9 (relative). A disagreement is a correctness failure (exit status 1) -- a bug in
the metric or in the baseline SQL, to be looked into, never papered over. A metric that
cannot be computed (an error, or queries interrupted after ``--timeout`` s) is reported and
fails the target.

The store is built once (``crmkpi.sample_data.generate``: ``--deals`` deals with 5 stage
changes each, then one ``crmkpi sync``; its time is printed, not compared) or reused with
``--store``. Each measurement repeats ``--repeat`` times after one untimed warm-up pass,
engine and baseline alternating which goes first; medians are reported.

Target (issue acceptance): all built-in metrics over 1,000,000 deals and 5,000,000 stage
changes within 1.5x the time of the equivalent hand-written SQL -- the sum of the engine
medians over the sum of the baseline medians, default params. Per-metric ratios above 1.5
are flagged. With ``--check`` a missed target exits with status 1.

Usage: .venv/bin/python bench/metrics.py [--deals 1000000] [--repeat 3] [--work DIR] [--check]
Only the standard library and crmkpi's own code are used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

TIME_RATIO_MAX = 1.5  # crmkpi engine total / baseline total
REL_TOL = 1e-9
CONNECTOR = "crm"
STAGE_CHANGES_PER_DEAL = 5
DEFAULT_PERIOD = "2025"  # the sample data covers 2024-01-01 .. 2025-12-31: the later, busier full year


# --------------------------------------------------------------------------------------
# Baselines: hand-written SQL per metric, run with the stdlib sqlite3 module.
#
# What the store holds on SQLite, which the SQL relies on: datetimes are text
# 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), dates 'YYYY-MM-DD', booleans 0/1. The period is
# [:start, :end) as datetime text, [:first, :last] as dates. Each baseline is written from
# the metric's documented definition (and checked against its compute function): the values
# it returns must equal crmkpi's. Validation that crmkpi does in separate queries (overlapping
# quotas, inverted spend ranges, scores off their scale) is not repeated; a missing fx rate is
# detected in the same pass as the sum, where it costs nothing.


@dataclass(frozen=True)
class Window:
    start: str  # period start as store datetime text, inclusive
    end: str  # period end, exclusive
    first: str  # first day of the period, 'YYYY-MM-DD'
    last: str  # last day of the period
    end_date: str  # the day after the period
    as_of: str  # data-health snapshot moment: the period end, or the end of today if earlier
    today: str  # the reporting day, 'YYYY-MM-DD'
    today_end: str  # the moment the day after the reporting day begins
    year_before_end: str  # the period end one year earlier (clv's churn window)
    currency: str  # reporting currency

    def params(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Result:
    value: float | None
    numerator: float | None = None
    denominator: float | None = None


class BaselineError(Exception):
    """The baseline found what crmkpi reports as an error (e.g. a missing fx rate)."""


Baseline = Callable[[sqlite3.Connection, Window, dict[str, Any]], Result]
BASELINES: dict[str, Baseline] = {}
#: Param sets measured besides the defaults (reported; the target uses default params).
VARIANTS: dict[str, list[dict[str, Any]]] = {}


def baseline(metric_id: str, *variants: dict[str, Any]) -> Callable[[Baseline], Baseline]:
    def register(fn: Baseline) -> Baseline:
        BASELINES[metric_id] = fn
        if variants:
            VARIANTS[metric_id] = list(variants)
        return fn
    return register


def ratio(numerator: Any, denominator: Any) -> Result:
    numerator, denominator = float(numerator or 0), float(denominator or 0)
    return Result(numerator / denominator if denominator else None, numerator, denominator)


def one(conn: sqlite3.Connection, sql: str, w: Window, **extra: Any) -> tuple:
    return conn.execute(sql, {**w.params(), **extra}).fetchone()


#: ``rates``: each live fx rate with the day its currency's next rate starts (null: still valid).
RATES = ("rates AS (SELECT currency, valid_from, rate_to_reporting AS rate, "
         "LEAD(valid_from) OVER (PARTITION BY currency ORDER BY valid_from) AS valid_to "
         "FROM fx_rates WHERE is_deleted = 0 AND valid_from IS NOT NULL)")


def fx_join(alias: str, at: str, rates: str = "r") -> str:
    """Join the rate of ``alias``'s currency valid at ``at`` (text comparison, as the store holds them)."""
    return (f"LEFT JOIN rates {rates} ON {rates}.currency = {alias}.currency AND {rates}.valid_from <= {at} "
            f"AND ({rates}.valid_to IS NULL OR {at} < {rates}.valid_to)")


def fx_factor(alias: str, rates: str = "r") -> str:
    """1 in the reporting currency (or none), else the joined rate."""
    return f"(CASE WHEN COALESCE({alias}.currency, :currency) = :currency THEN 1.0 ELSE {rates}.rate END)"


def fx_missing(alias: str, rates: str = "r") -> str:
    """1 for a row in a foreign currency without a rate: crmkpi refuses to compute then."""
    return f"(COALESCE({alias}.currency, :currency) != :currency AND {rates}.rate IS NULL)"


def check_rates(missing: Any) -> None:
    if missing:
        raise BaselineError(f"{missing} rows in a foreign currency without an fx rate")


# --- sales (metrics_plugins/sales.py) --------------------------------------------------


@baseline("close_rate")
def _close_rate(conn, w, p):
    won, total = one(conn, "SELECT SUM(is_won), COUNT(*) FROM deals "
                           "WHERE is_deleted = 0 AND created_at >= :start AND created_at < :end", w)
    return ratio(won, total)


@baseline("win_rate", {"by": "amount"}, {"cohort": "created"})
def _win_rate(conn, w, p):
    cohort = "created_at" if p["cohort"] == "created" else "closed_at"
    decided = f"d.is_deleted = 0 AND d.is_closed = 1 AND d.{cohort} >= :start AND d.{cohort} < :end"
    if p["by"] == "count":
        return ratio(*one(conn, f"SELECT SUM(d.is_won), COUNT(*) FROM deals d WHERE {decided}", w))
    amount = f"COALESCE(d.amount, 0) * {fx_factor('d')}"
    won, total, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(CASE WHEN d.is_won = 1 THEN {amount} END), SUM({amount}), SUM({fx_missing('d')})
        FROM deals d {fx_join('d', 'd.closed_at')} WHERE {decided}""", w)
    check_rates(missing)
    return ratio(won, total)


# --- pipeline (metrics_plugins/pipeline.py) --------------------------------------------

WON_IN_PERIOD = "d.is_deleted = 0 AND d.is_won = 1 AND d.closed_at >= :start AND d.closed_at < :end"


def _won_amounts(conn, w) -> tuple[float, int]:
    """(converted amount, count) of the won deals with an amount closed in the period."""
    total, count, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(d.amount * {fx_factor('d')}), COUNT(*), SUM({fx_missing('d')})
        FROM deals d {fx_join('d', 'd.closed_at')} WHERE {WON_IN_PERIOD} AND d.amount IS NOT NULL""", w)
    check_rates(missing)
    return float(total or 0), int(count or 0)


@baseline("lead_conversion_rate", {"into": "any"})
def _lead_conversion_rate(conn, w, p):
    cohort = "l.is_deleted = 0 AND l.created_at >= :start AND l.created_at < :end"
    if p["into"] == "any":
        return ratio(*one(conn, f"SELECT SUM(l.converted_at IS NOT NULL), COUNT(*) FROM leads l WHERE {cohort}",
                          w))
    won, total = one(conn, f"""
        WITH won_accounts AS (
            SELECT source, account_id, MAX(closed_at) AS last_won FROM deals
            WHERE is_deleted = 0 AND is_won = 1 AND account_id IS NOT NULL GROUP BY source, account_id)
        SELECT SUM(l.converted_at IS NOT NULL AND (d.id IS NOT NULL OR a.last_won >= l.converted_at)), COUNT(*)
        FROM leads l
        LEFT JOIN deals d ON d.source = l.source AND d.id = l.converted_deal_id AND d.is_deleted = 0 AND d.is_won = 1
        LEFT JOIN won_accounts a ON a.source = l.source AND a.account_id = l.converted_account_id
        WHERE {cohort}""", w)
    return ratio(won, total)


@baseline("stage_length", {"per": "deal"}, {"stat": "p90"})
def _stage_length(conn, w, p):
    stage = "AND s.stage = :stage" if p["stage"] else ""
    stays = f"""
        WITH stays AS (
            SELECT source, deal_id, stage, entered_at,
                   LEAD(entered_at) OVER (PARTITION BY source, deal_id ORDER BY entered_at, id) AS left_at
            FROM deal_stage_changes WHERE is_deleted = 0)
        SELECT s.source, s.deal_id, s.stage, julianday(s.left_at) - julianday(s.entered_at) AS days
        FROM stays s LEFT JOIN deals d ON d.source = s.source AND d.id = s.deal_id
        WHERE s.left_at >= :start AND s.left_at < :end AND s.entered_at <= s.left_at
          AND (d.id IS NULL OR d.is_deleted = 0) {stage}
          AND NOT EXISTS (SELECT 1 FROM pipeline_stages ps WHERE ps.source = s.source AND ps.stage = s.stage
                          AND ps.is_deleted = 0 AND ps.is_closed = 1)"""
    if p["open_stays"] != "exclude" and w.first <= w.today < w.end_date:
        raise BaselineError("open_stays=until_today in a period holding today is not covered")
    if p["per"] == "deal":
        stays = f"SELECT SUM(days) AS days FROM ({stays}) GROUP BY source, deal_id, stage"
    return durations(conn, f"SELECT days FROM ({stays})", {**w.params(), "stage": p["stage"]}, p["stat"])


#: Days from a deal's creation to its close: the latest entry into its current stage in the stage history,
#: else whole days to closed_at's date when it is one (midnight UTC), else to closed_at.
CYCLE_DAYS = """COALESCE(
    julianday((SELECT MAX(c.entered_at) FROM deal_stage_changes c WHERE c.source = d.source AND c.deal_id = d.id
               AND c.stage = d.stage AND c.is_deleted = 0)) - julianday(d.created_at),
    CASE WHEN substr(d.closed_at, 12) = '00:00:00.000000'
         THEN julianday(date(d.closed_at)) - julianday(date(d.created_at))
         ELSE julianday(d.closed_at) - julianday(d.created_at) END)"""


def durations(conn, sql: str, params: dict[str, Any], stat: str) -> Result:
    """What ``stat`` asks of the one column ``sql`` selects: the mean (SUM / COUNT in SQL), or a percentile
    linear between the closest ranks, from the sorted values (numerator null, denominator the count)."""
    if stat == "mean":
        total, count = conn.execute(f"WITH measured(v) AS ({sql}) SELECT SUM(v), COUNT(v) FROM measured",
                                    params).fetchone()
        return Result(float(total) / count, float(total), count) if count else Result(None)
    ordered = sorted(v for (v,) in conn.execute(sql, params) if v is not None)
    if not ordered:
        return Result(None)
    position = (len(ordered) - 1) * {"median": 50, "p75": 75, "p90": 90, "p95": 95}[stat] / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return Result(ordered[low] + (position - low) * (ordered[high] - ordered[low]), None, len(ordered))


@baseline("sales_cycle_length", {"deals": "closed"}, {"stat": "median"})
def _sales_cycle_length(conn, w, p):
    decided = "d.is_won = 1" if p["deals"] == "won" else "d.is_closed = 1"
    return durations(conn, f"""
        SELECT days FROM (SELECT {CYCLE_DAYS} AS days FROM deals d
                          WHERE d.is_deleted = 0 AND {decided} AND d.closed_at >= :start AND d.closed_at < :end)
        WHERE days >= 0""", w.params(), p["stat"])


@baseline("quota_attainment", {"level": "team"})
def _quota_attainment(conn, w, p):
    holder = "q.owner_id IS NOT NULL" if p["level"] == "rep" else "q.owner_id IS NULL AND q.team IS NOT NULL"
    counted, quota, missing = one(conn, f"""
        WITH {RATES}
        SELECT COUNT(*), SUM(COALESCE(q.amount, 0) * {fx_factor('q')}), SUM({fx_missing('q')})
        FROM quotas q {fx_join('q', 'q.period_start')}
        WHERE q.is_deleted = 0 AND {holder} AND q.period_start IS NOT NULL AND q.period_end IS NOT NULL
          AND q.period_start >= :first AND q.period_end <= :last""", w)
    check_rates(missing)
    won, _ = _won_amounts(conn, w)
    if not counted:
        return Result(None, won, 0.0)
    return ratio(won, quota)


@baseline("sales_volume")
def _sales_volume(conn, w, p):
    total, count, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(COALESCE(d.amount, 0) * {fx_factor('d')}), COUNT(*), SUM({fx_missing('d')})
        FROM deals d {fx_join('d', 'd.closed_at')} WHERE {WON_IN_PERIOD}""", w)
    check_rates(missing)
    return Result(float(total or 0)) if count else Result(None)


@baseline("avg_deal_size")
def _avg_deal_size(conn, w, p):
    total, count = _won_amounts(conn, w)
    return Result(total / count, total, count) if count else Result(None)


@baseline("sales_velocity", {"opportunities": "open"})
def _sales_velocity(conn, w, p):
    if p["opportunities"] == "created":
        (opportunities,) = one(conn, "SELECT COUNT(*) FROM deals WHERE is_deleted = 0 "
                                     "AND created_at >= :start AND created_at < :end", w)
    else:
        (opportunities,) = one(conn, "SELECT COUNT(*) FROM deals WHERE is_deleted = 0 AND created_at < :end "
                                     "AND (is_closed = 0 OR closed_at >= :end)", w)
    # One pass over the deals closed in the period: win rate, won amounts and cycle lengths.
    won_count, decided, won_total, sized, cycle_total, cycled, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(is_won), COUNT(*), SUM(CASE WHEN is_won = 1 THEN amount END),
               COUNT(CASE WHEN is_won = 1 THEN amount END), SUM(CASE WHEN is_won = 1 AND days >= 0 THEN days END),
               COUNT(CASE WHEN is_won = 1 AND days >= 0 THEN 1 END), SUM(is_won = 1 AND missing)
        FROM (SELECT d.is_won, d.amount * {fx_factor('d')} AS amount,
                     d.amount IS NOT NULL AND {fx_missing('d')} AS missing,
                     CASE WHEN d.is_won = 1 THEN {CYCLE_DAYS} END AS days
              FROM deals d {fx_join('d', 'd.closed_at')}
              WHERE d.is_deleted = 0 AND d.is_closed = 1 AND d.closed_at >= :start AND d.closed_at < :end)""", w)
    check_rates(missing)
    if not won_count or not sized or not cycled:
        return Result(None)
    deal_size, win_rate, cycle = float(won_total) / sized, won_count / decided, float(cycle_total) / cycled
    numerator = opportunities * deal_size * win_rate
    if cycle <= 0:
        return Result(None, numerator, cycle)
    return Result(numerator / cycle, numerator, cycle)


@baseline("pipeline_value", {"weighted": True})
def _pipeline_value(conn, w, p):
    open_at_end = ("d.is_deleted = 0 AND d.created_at < :end AND (d.is_closed = 0 OR d.closed_at >= :end) "
                   "AND d.amount IS NOT NULL")
    if not p["weighted"]:
        total, count, missing = one(conn, f"""
            WITH {RATES}
            SELECT SUM(d.amount * {fx_factor('d')}), COUNT(*), SUM({fx_missing('d')})
            FROM deals d {fx_join('d', ':last')} WHERE {open_at_end}""", w)
        check_rates(missing)
        return Result(float(total)) if count else Result(None)
    # Weighted: the stage each open deal was in at the period end (its last stage change before the
    # end, else its current stage), and that stage's probability (its pipeline's row first).
    total, count, missing, unknown = one(conn, f"""
        WITH {RATES},
        history AS (
            SELECT source, deal_id, stage,
                   ROW_NUMBER() OVER (PARTITION BY source, deal_id ORDER BY entered_at DESC, id DESC) AS rank
            FROM deal_stage_changes WHERE is_deleted = 0 AND entered_at < :end),
        valued AS (
            SELECT d.amount * {fx_factor('d')} AS amount, {fx_missing('d')} AS missing,
                   COALESCE((SELECT ps.probability FROM pipeline_stages ps
                             WHERE ps.source = d.source AND ps.stage = COALESCE(h.stage, d.stage)
                               AND ps.is_deleted = 0 AND ps.pipeline = d.pipeline ORDER BY ps.id LIMIT 1),
                            (SELECT ps.probability FROM pipeline_stages ps
                             WHERE ps.source = d.source AND ps.stage = COALESCE(h.stage, d.stage)
                               AND ps.is_deleted = 0 ORDER BY ps.id LIMIT 1)) AS probability
            FROM deals d
            LEFT JOIN history h ON h.source = d.source AND h.deal_id = d.id AND h.rank = 1
            {fx_join('d', ':last')}
            WHERE {open_at_end})
        SELECT SUM(amount * probability), COUNT(*), SUM(missing), COUNT(CASE WHEN probability IS NULL THEN 1 END)
        FROM valued""", w)
    check_rates(missing)
    if unknown:
        raise BaselineError(f"{unknown} open deals in a stage without a probability")
    return Result(float(total)) if count else Result(None)


# --- customers (metrics_plugins/customers.py) -------------------------------------------
#
# A customer at instant t: an account with a live subscription where started_at < t and
# (ended_at IS NULL OR ended_at >= t).


def active(t: str, alias: str = "s") -> str:
    return f"({alias}.started_at < {t} AND ({alias}.ended_at IS NULL OR {alias}.ended_at >= {t}))"


def _states(conn, w, start: str, end: str) -> tuple[int, int, int, int, int]:
    """Over the accounts: (customers at start, at end, lost, joined and lost, new)."""
    row = one(conn, f"""
        SELECT SUM(at_start), SUM(at_end), SUM(at_start = 1 AND at_end = 0),
               SUM(at_start = 0 AND joined = 1 AND at_end = 0), SUM(first_start >= {start})
        FROM (SELECT MAX({active(start)}) AS at_start, MAX({active(end)}) AS at_end,
                     MAX(s.started_at >= {start} AND (s.ended_at IS NULL OR s.ended_at > s.started_at)) AS joined,
                     MIN(s.started_at) AS first_start
              FROM subscriptions s
              WHERE s.is_deleted = 0 AND s.account_id IS NOT NULL AND s.started_at < {end}
              GROUP BY s.source, s.account_id)""", w)
    return tuple(int(v or 0) for v in row)


@baseline("churn_rate", {"new_and_lost": "include"})
def _churn_rate(conn, w, p):
    at_start, _, lost, joined_and_lost, _ = _states(conn, w, ":start", ":end")
    if p["new_and_lost"] == "include":
        lost += joined_and_lost
    return ratio(lost, at_start)


@baseline("retention_rate")
def _retention_rate(conn, w, p):
    at_start, at_end, _, _, new = _states(conn, w, ":start", ":end")
    return ratio(at_end - new, at_start)


@baseline("renewal_rate", {"evidence": "successor"}, {"evidence": "status"})
def _renewal_rate(conn, w, p):
    grace = timedelta(days=p["grace_days"])
    # a successor starts within grace_days of a term_end in the period: only starts near the period qualify
    near = {"grace": p["grace_days"], "grace_start": _text(_instant(w.start) - grace),
            "grace_end": _text(_instant(w.end) + grace)}
    successor = """EXISTS (SELECT 1 FROM later l WHERE l.source = s.source AND l.account_id = s.account_id
                           AND l.id != s.id AND (s.started_at IS NULL OR l.started_at > s.started_at)
                           AND julianday(l.started_at) - julianday(s.term_end) BETWEEN -:grace AND :grace)"""
    status = "lower(s.status) = 'renewed'"
    renewed = {"successor": successor, "status": status, "either": f"({status} OR {successor})"}[p["evidence"]]
    won, total = one(conn, f"""
        WITH later AS MATERIALIZED (
            SELECT source, account_id, id, started_at FROM subscriptions
            WHERE is_deleted = 0 AND started_at >= :grace_start AND started_at <= :grace_end)
        SELECT SUM(s.term_end < :today_end AND {renewed}), SUM(s.term_end < :today_end)
        FROM subscriptions s
        WHERE s.is_deleted = 0 AND s.term_end >= :start AND s.term_end < :end""", w, **near)
    return ratio(won, total)


def _account_mrr(conn, w) -> str:
    """Per customer at the period start: its MRR at the start and at the end (one rate per subscription:
    at the period start, or at its own start if later)."""
    at = "(CASE WHEN s.started_at > :start THEN s.started_at ELSE :start END)"
    mrr = f"COALESCE(s.mrr, 0) * {fx_factor('s')}"
    return f"""
        WITH {RATES}
        SELECT SUM(CASE WHEN {active(':start')} THEN {mrr} ELSE 0 END) AS mrr_start,
               SUM(CASE WHEN {active(':end')} THEN {mrr} ELSE 0 END) AS mrr_end,
               SUM({fx_missing('s')}) AS missing
        FROM subscriptions s {fx_join('s', at)}
        WHERE s.is_deleted = 0 AND s.account_id IS NOT NULL AND ({active(':start')} OR {active(':end')})
        GROUP BY s.source, s.account_id HAVING MAX({active(':start')}) = 1"""


@baseline("upsell_rate", {"evidence": "mrr"})
def _upsell_rate(conn, w, p):
    if p["evidence"] == "mrr":
        total, upsold, missing = one(conn, f"SELECT COUNT(*), SUM(mrr_end > mrr_start + 1e-9 * abs(mrr_start) "
                                           f"+ 1e-9), SUM(missing) FROM ({_account_mrr(conn, w)})", w)
        check_rates(missing)
        return ratio(upsold, total)
    types = [t.strip().lower() for t in p["deal_types"].split(",") if t.strip()]
    marks = ", ".join(f":type{i}" for i in range(len(types)))
    total, upsold = one(conn, f"""
        WITH customers AS (
            SELECT DISTINCT source, account_id FROM subscriptions s
            WHERE s.is_deleted = 0 AND s.account_id IS NOT NULL AND {active(':start')}),
        upsold AS (
            SELECT DISTINCT source, account_id FROM deals d
            WHERE {WON_IN_PERIOD} AND lower(d.deal_type) IN ({marks}) AND d.account_id IS NOT NULL)
        SELECT COUNT(*), COUNT(u.account_id) FROM customers c
        LEFT JOIN upsold u ON u.source = c.source AND u.account_id = c.account_id""",
                        w, **{f"type{i}": t for i, t in enumerate(types)})
    return ratio(upsold, total)


@baseline("gross_mrr_retention")
def _gross_mrr_retention(conn, w, p):
    kept, start, missing = one(conn, "SELECT SUM(CASE WHEN mrr_end < mrr_start THEN mrr_end ELSE mrr_start END), "
                                     f"SUM(mrr_start), SUM(missing) FROM ({_account_mrr(conn, w)})", w)
    check_rates(missing)
    return ratio(kept, start)


@baseline("net_mrr_retention")
def _net_mrr_retention(conn, w, p):
    end, start, missing = one(conn, f"SELECT SUM(mrr_end), SUM(mrr_start), SUM(missing) "
                                    f"FROM ({_account_mrr(conn, w)})", w)
    check_rates(missing)
    return ratio(end, start)


ORDERS_IN_PERIOD = ("o.is_deleted = 0 AND o.ordered_at >= :start AND o.ordered_at < :end "
                    "AND o.account_id IS NOT NULL")


@baseline("clv", {"lifespan_years": 3.0})
def _clv(conn, w, p):
    revenue, customers, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(revenue), COUNT(*), SUM(missing)
        FROM (SELECT SUM(COALESCE(o.amount, 0) * {fx_factor('o')}) AS revenue, SUM({fx_missing('o')}) AS missing
              FROM orders o {fx_join('o', 'o.ordered_at')} WHERE {ORDERS_IN_PERIOD}
              GROUP BY o.source, o.account_id)""", w)
    check_rates(missing)
    if not customers:
        return Result(None)
    lifespan = p["lifespan_years"]
    if lifespan == 0:
        base, _, lost, _, _ = _states(conn, w, ":year_before_end", ":end")
        if not base or not lost:
            return Result(None)
        lifespan = base / lost
    revenue = float(revenue or 0)
    return Result(revenue / customers * lifespan, revenue * lifespan, float(customers))


@baseline("profit_margin_per_customer")
def _profit_margin_per_customer(conn, w, p):
    margins, customers, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(CASE WHEN revenue > 0 THEN (revenue - cost) / revenue ELSE 0 END), SUM(revenue > 0),
               SUM(missing)
        FROM (SELECT SUM(COALESCE(o.amount, 0) * {fx_factor('o')}) AS revenue,
                     SUM(COALESCE(o.cost, 0) * {fx_factor('o')}) AS cost, SUM({fx_missing('o')}) AS missing
              FROM orders o {fx_join('o', 'o.ordered_at')} WHERE {ORDERS_IN_PERIOD}
              GROUP BY o.source, o.account_id)""", w)
    check_rates(missing)
    return ratio(margins, customers)


@baseline("net_new_revenue", {"new_means": "first_order"})
def _net_new_revenue(conn, w, p):
    table, at, amount = (("orders", "ordered_at", "amount") if p["new_means"] == "first_order"
                         else ("subscriptions", "started_at", "mrr"))
    total, rows, missing = one(conn, f"""
        WITH {RATES},
        firsts AS (
            SELECT t.*, MIN(t.{at}) OVER (PARTITION BY t.source, t.account_id) AS first_at
            FROM {table} t WHERE t.is_deleted = 0 AND t.account_id IS NOT NULL AND t.{at} IS NOT NULL)
        SELECT SUM(COALESCE(f.{amount}, 0) * {fx_factor('f')}), COUNT(*), SUM({fx_missing('f')})
        FROM firsts f {fx_join('f', f'f.{at}')}
        WHERE f.{at} = f.first_at AND f.first_at >= :start AND f.first_at < :end""", w)
    check_rates(missing)
    if not rows:
        (loaded,) = one(conn, f"SELECT COUNT(*) FROM {table} WHERE is_deleted = 0 AND account_id IS NOT NULL "
                              f"AND {at} IS NOT NULL", w)
        return Result(0.0) if loaded else Result(None)
    return Result(float(total or 0))


# --- marketing (metrics_plugins/marketing.py) -------------------------------------------


def _spend(conn, w) -> tuple[float | None, str]:
    """(spend in the period in the reporting currency, or None when no row touches it; the channels then).

    A row with spent_on counts in full in the period holding that day; a row with a
    period_start..period_end range counts in proportion to its days inside the period.
    """
    range_end = "COALESCE(m.period_end, m.period_start)"
    share = (f"(CASE WHEN m.spent_on IS NOT NULL THEN 1.0 ELSE "
             f"CAST(julianday(CASE WHEN {range_end} < :last THEN {range_end} ELSE :last END) "
             f"- julianday(CASE WHEN m.period_start > :first THEN m.period_start ELSE :first END) + 1 AS REAL) "
             f"/ (julianday({range_end}) - julianday(m.period_start) + 1) END)")
    touches = (f"((m.spent_on IS NOT NULL AND m.spent_on >= :first AND m.spent_on < :end_date) OR "
               f"(m.spent_on IS NULL AND m.period_start IS NOT NULL AND m.period_start <= :last "
               f"AND {range_end} >= :first))")
    total, rows, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(COALESCE(m.amount, 0) * {fx_factor('m')} * {share}), COUNT(*), SUM({fx_missing('m')})
        FROM marketing_spend m {fx_join('m', 'COALESCE(m.spent_on, m.period_start)')}
        WHERE m.is_deleted = 0 AND {touches}""", w)
    check_rates(missing)
    return (None if not rows else float(total or 0)), touches


def _new_customers(table: str, at: str, won: bool) -> str:
    """Accounts whose first (won deal | subscription) falls in the period: (source, account_id)."""
    return f"""SELECT source, account_id FROM {table}
               WHERE is_deleted = 0 AND account_id IS NOT NULL AND {at} IS NOT NULL {'AND is_won = 1' if won else ''}
               GROUP BY source, account_id HAVING MIN({at}) >= :start AND MIN({at}) < :end"""


def _new_customer_source(p) -> tuple[str, str, bool]:
    return ("deals", "closed_at", True) if p["new_customer"] == "first_won_deal" else \
        ("subscriptions", "started_at", False)


@baseline("cac", {"new_customer": "first_subscription"})
def _cac(conn, w, p):
    spent, _ = _spend(conn, w)
    if spent is None:
        return Result(None)
    (customers,) = one(conn, f"SELECT COUNT(*) FROM ({_new_customers(*_new_customer_source(p))})", w)
    return ratio(spent, customers)


@baseline("cac_payback_months")
def _cac_payback_months(conn, w, p):
    spent, _ = _spend(conn, w)
    if spent is None:
        return Result(None)
    customers, mrr, missing = one(conn, f"""
        WITH {RATES},
        new_customers AS MATERIALIZED ({_new_customers(*_new_customer_source(p))}),
        subs AS (
            SELECT s.*, MIN(s.started_at) OVER (PARTITION BY s.source, s.account_id) AS first_start
            FROM subscriptions s WHERE s.is_deleted = 0 AND s.account_id IS NOT NULL AND s.started_at IS NOT NULL)
        SELECT (SELECT COUNT(*) FROM new_customers),
               SUM(COALESCE(s.mrr, 0) * {fx_factor('s')}), SUM({fx_missing('s')})
        FROM subs s JOIN new_customers n ON n.source = s.source AND n.account_id = s.account_id
        {fx_join('s', 's.started_at')}
        WHERE julianday(s.started_at) - julianday(s.first_start) < 30""", w)
    check_rates(missing)
    if not customers:
        return Result(None)
    acquisition_cost = spent / customers
    monthly = float(mrr or 0) / customers * p["gross_margin"]
    if monthly <= 0:
        return Result(None, acquisition_cost, monthly)
    return Result(acquisition_cost / monthly, acquisition_cost, monthly)


@baseline("cost_per_lead")
def _cost_per_lead(conn, w, p):
    if p.get("attribution", "all") != "all" or p["channels"]:
        raise BaselineError("only attribution=all over every channel is covered")
    spent, _ = _spend(conn, w)
    if spent is None:
        return Result(None)
    (leads,) = one(conn, "SELECT COUNT(*) FROM leads WHERE is_deleted = 0 AND created_at >= :start "
                         "AND created_at < :end", w)
    return ratio(spent, leads)


@baseline("cost_per_sale")
def _cost_per_sale(conn, w, p):
    if p.get("attribution", "all") != "all" or p["channels"]:
        raise BaselineError("only attribution=all over every channel is covered")
    spent, _ = _spend(conn, w)
    if spent is None:
        return Result(None)
    (won,) = one(conn, f"SELECT COUNT(*) FROM deals d WHERE {WON_IN_PERIOD}", w)
    return ratio(spent, won)


@baseline("marketing_roi", {"attribution": "all"})
def _marketing_roi(conn, w, p):
    if p["channels"]:
        raise BaselineError("the channels param is not covered")
    spent, touches = _spend(conn, w)
    if spent is None:
        return Result(None)
    attributed = "" if p["attribution"] == "all" else f"""AND lower(d.lead_source) IN (
        SELECT DISTINCT lower(m.channel) FROM marketing_spend m
        WHERE m.is_deleted = 0 AND {touches} AND m.channel IS NOT NULL)"""
    revenue, missing = one(conn, f"""
        WITH {RATES}
        SELECT SUM(COALESCE(d.amount, 0) * {fx_factor('d')}), SUM({fx_missing('d')})
        FROM deals d {fx_join('d', 'd.closed_at')} WHERE {WON_IN_PERIOD} {attributed}""", w)
    check_rates(missing)
    return ratio(float(revenue or 0) * p["gross_margin"] - spent, spent)


# --- service (metrics_plugins/service.py) -----------------------------------------------

HOURS = "(julianday({end}) - julianday({start})) * 24.0"


@baseline("avg_resolution_time", {"include_open": True}, {"stat": "median"})
def _avg_resolution_time(conn, w, p):
    resolved = ("(t.resolved_at IS NOT NULL AND t.resolved_at >= :start AND t.resolved_at < :end "
                "AND t.created_at IS NOT NULL)")
    hours = HOURS.format(start="t.created_at", end="t.resolved_at")
    where = resolved
    if p["include_open"]:
        # open at the period's end (or now, if earlier): aged up to that moment
        as_of = ":as_of_open"
        still_open = (f"(t.created_at IS NOT NULL AND t.created_at < {as_of} "
                      f"AND (t.resolved_at IS NULL OR t.resolved_at >= {as_of}))")
        where = f"({resolved} OR {still_open})"
        hours = f"(CASE WHEN {resolved} THEN {hours} ELSE {HOURS.format(start='t.created_at', end=as_of)} END)"
    return durations(conn, f"SELECT h FROM (SELECT {hours} AS h FROM tickets t WHERE t.is_deleted = 0 AND {where}) "
                           "WHERE h >= 0", {**w.params(), "as_of_open": min(w.end, _text(datetime.now(UTC)))},
                     p["stat"])


@baseline("first_response_time", {"stat": "p75"})
def _first_response_time(conn, w, p):
    return durations(conn, f"""
        SELECT h FROM (SELECT {HOURS.format(start='t.created_at', end='t.first_response_at')} AS h FROM tickets t
                       WHERE t.is_deleted = 0 AND t.created_at >= :start AND t.created_at < :end)
        WHERE h >= 0""", w.params(), p["stat"])


@baseline("ticket_volume")
def _ticket_volume(conn, w, p):
    (count,) = one(conn, "SELECT COUNT(*) FROM tickets WHERE is_deleted = 0 AND created_at >= :start "
                         "AND created_at < :end", w)
    if not count and not one(conn, "SELECT 1 FROM tickets WHERE is_deleted = 0 LIMIT 1", w):
        return Result(None)
    return Result(float(count))


@baseline("resolution_rate")
def _resolution_rate(conn, w, p):
    return ratio(*one(conn, "SELECT SUM(resolved_at IS NOT NULL), COUNT(*) FROM tickets WHERE is_deleted = 0 "
                            "AND created_at >= :start AND created_at < :end", w))


SURVEY = ("r.is_deleted = 0 AND r.responded_at >= :start AND r.responded_at < :end "
          "AND lower(r.survey) = lower(:survey) AND r.score IS NOT NULL")


@baseline("nps")
def _nps(conn, w, p):
    promoters, detractors, total = one(conn, f"""
        SELECT SUM(CASE scale WHEN 10 THEN score >= 9 WHEN 5 THEN score >= 4 ELSE 0 END),
               SUM(CASE scale WHEN 10 THEN score <= 6 WHEN 5 THEN score <= 2 ELSE 0 END), COUNT(*)
        FROM (SELECT r.score, COALESCE(r.scale_max, :scale) AS scale FROM survey_responses r WHERE {SURVEY})""",
                                       w, survey=p["survey"], scale=p["default_scale"])
    if not total:
        return Result(None)
    net = (promoters or 0) - (detractors or 0)
    return Result(100.0 * net / total, float(net), float(total))


@baseline("csat", {"method": "mean_score"})
def _csat(conn, w, p):
    if p["method"] == "share_satisfied":
        return ratio(*one(conn, f"""SELECT SUM(r.score >= COALESCE(r.scale_max, :scale) - 1), COUNT(*)
                                    FROM survey_responses r WHERE {SURVEY}""",
                          w, survey=p["survey"], scale=p["default_scale"]))
    part, total = one(conn, f"""SELECT SUM(r.score * 1.0 / COALESCE(r.scale_max, :scale)), COUNT(*)
                                FROM survey_responses r WHERE {SURVEY}""",
                      w, survey=p["survey"], scale=p["default_scale"])
    return Result(float(part) / total, float(part), float(total)) if total else Result(None)


# --- data health (metrics_plugins/data_health.py) ---------------------------------------

PLACEHOLDERS = "('', 'n/a', 'tbd', '-', 'none')"
LEGAL_SUFFIXES = ("gmbh & co kg", "pty ltd", "pte ltd", "co ltd", "co inc", "& co", "incorporated", "inc",
                  "corporation", "corp", "company", "co", "limited", "ltd", "llc", "llp", "lp", "plc", "gmbh",
                  "kg", "ag", "sa", "sas", "sarl", "srl", "bv", "nv", "oy")
EXISTING = "is_deleted = 0 AND (created_at IS NULL OR created_at < :as_of)"


def present(column: str) -> str:
    return f"({column} IS NOT NULL AND lower(trim({column})) NOT IN {PLACEHOLDERS})"


def _duplicates(conn, w, keyed: str, keysets: list[list[str]]) -> Result:
    """``keyed`` selects source and key columns per row; a row is a duplicate when a key it has all columns
    of is shared with another row of its source."""
    if len(keysets) == 1:  # one key: a GROUP BY is all it takes
        cols = ", ".join(keysets[0])
        held = " AND ".join(f"{c} IS NOT NULL" for c in keysets[0])
        total, duplicated = one(conn, f"SELECT SUM(n), SUM(CASE WHEN {held} AND n > 1 THEN n END) FROM "
                                      f"(SELECT {cols}, COUNT(*) AS n FROM ({keyed}) GROUP BY source, {cols})", w)
        return ratio(duplicated, total)
    sizes = ", ".join(f"COUNT(*) OVER (PARTITION BY source, {', '.join(ks)}) AS n{i}" for i, ks in enumerate(keysets))
    shared = " OR ".join("(" + " AND ".join(f"{c} IS NOT NULL" for c in ks) + f" AND n{i} > 1)"
                         for i, ks in enumerate(keysets))
    total, duplicated = one(conn, f"SELECT COUNT(*), SUM({shared}) FROM (SELECT *, {sizes} FROM ({keyed}))", w)
    return ratio(duplicated, total)


@baseline("duplicate_contacts_rate", {"match": "email_or_name"})
def _duplicate_contacts_rate(conn, w, p):
    keys = [f"CASE WHEN {present('email')} THEN lower(trim(email)) END AS email_key"]
    keysets = [["email_key"]]
    if p["match"] == "email_or_name":
        keys += [f"CASE WHEN {present('name')} THEN lower(trim(name)) END AS name_key", "account_id"]
        keysets.append(["name_key", "account_id"])
    return _duplicates(conn, w, f"SELECT source, {', '.join(keys)} FROM contacts WHERE {EXISTING}", keysets)


@baseline("duplicate_accounts_rate", {"match": "exact_name"})
def _duplicate_accounts_rate(conn, w, p):
    if p["match"] == "exact_name":
        keyed = f"SELECT source, CASE WHEN {present('name')} THEN lower(trim(name)) END AS name FROM accounts " \
                f"WHERE {EXISTING}"
        return _duplicates(conn, w, keyed, [["name"]])
    cleaned = ("trim(replace(replace(replace(replace(lower(name), '.', ''), ',', ' '), '  ', ' '), '  ', ' '))")
    strip = " ".join(f"WHEN c LIKE '% {s}' THEN rtrim(substr(c, 1, length(c) - {len(s)}), ' &')"
                     for s in LEGAL_SUFFIXES)
    # The names are cleaned once (a materialized CTE): the CASE reads the cleaned name once per suffix.
    keyed = f"""WITH cleaned AS MATERIALIZED (
                    SELECT source, CASE WHEN {present('name')} THEN {cleaned} END AS c
                    FROM accounts WHERE {EXISTING})
                SELECT source, NULLIF(CASE {strip} ELSE c END, '') AS name FROM cleaned"""
    return _duplicates(conn, w, keyed, [["name"]])


@baseline("completeness")
def _completeness(conn, w, p):
    if p["table"] != "deals" or p["fields"]:
        raise BaselineError("only the default (deals, default fields) is covered")
    filled = (f"amount IS NOT NULL AND closed_at IS NOT NULL AND {present('owner_id')} AND {present('stage')} "
              f"AND {present('account_id')}")
    complete, total = one(conn, f"SELECT SUM({filled}), COUNT(*) FROM deals WHERE {EXISTING}", w)
    return ratio(complete, total)


@baseline("stale_open_deals", {"days_past": 30})
def _stale_open_deals(conn, w, p):
    stale, total = one(conn, f"""
        SELECT SUM(is_closed = 0 AND closed_at < :overdue), COUNT(*) FROM deals
        WHERE {EXISTING} AND (is_closed = 0 OR closed_at >= :as_of)""", w,
                       overdue=_text(_instant(w.as_of) - timedelta(days=p["days_past"])))
    return ratio(stale, total)


@baseline("days_since_sync")
def _days_since_sync(conn, w, p):
    moment = min(w.as_of, _text(datetime.now(UTC)))
    rows = conn.execute("""
        SELECT connector, julianday(:moment) - julianday(MAX(CASE WHEN status = 'success' AND finished_at IS NOT NULL
                                                              AND finished_at < :moment THEN finished_at END))
        FROM sync_runs GROUP BY connector""", {"moment": moment}).fetchall()
    synced = [float(days) for _, days in rows if days is not None]
    return Result(max(synced)) if synced else Result(None)


# --------------------------------------------------------------------------------------
# Building the store.


def builtin_plugins() -> str:
    """CRMKPI_LOAD_PLUGINS naming every entry point of the crmkpi distribution."""
    from crmkpi.plugins import selected_entry_points

    return ",".join(ep.name for ep in selected_entry_points(distribution="crmkpi"))


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CRMKPI_CONFIG", "CRMKPI_PREFETCH")}
    env["CRMKPI_LOAD_PLUGINS"] = builtin_plugins()
    return env


def write_config(path: Path, store: Path, data: Path) -> None:
    path.write_text(f"store: sqlite:///{store.resolve()}\nreporting:\n  currency: USD\n  timezone: UTC\n"
                    f"connectors:\n  {CONNECTOR}:\n    type: files\n    path: {data.resolve()}\n", encoding="utf-8")


def prepare_data(folder: Path, deals: int, seed: int) -> None:
    if (folder / "deals.csv").exists():
        print(f"data: reusing {folder}")
        return
    from crmkpi.sample_data import generate

    started = time.perf_counter()
    counts = generate(folder, seed=seed, deals=deals, stage_changes_per_deal=STAGE_CHANGES_PER_DEAL)
    print(f"data: generated {folder} in {time.perf_counter() - started:.1f} s "
          f"({counts['deals']:,} deals, {counts['deal_stage_changes']:,} stage changes)")


def build_store(args, work: Path, config: Path) -> None:
    store = args.store
    if store.exists() and store.stat().st_size > 0:
        print(f"store: reusing {store}")
        return
    prepare_data(args.data, args.deals, args.seed)
    started = time.perf_counter()
    proc = subprocess.run([args.crmkpi, "sync", "--config", str(config)], env=child_env(), capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"crmkpi sync failed ({proc.returncode}):\n{proc.stderr}")
    print(f"store: crmkpi sync into {store} took {seconds:.1f} s (not part of the comparison)")
    print("  " + proc.stderr.strip().splitlines()[-1])


def store_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("deals", "deal_stage_changes")}
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# Measuring.


@dataclass
class Case:
    """One metric with one param set."""

    metric: Any  # crmkpi.metrics.Metric
    params: dict[str, Any]
    default: bool  # the metric's default params: part of the target total
    engine: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    cli: list[float] = field(default_factory=list)
    value: Result | None = None
    failed: str | None = None  # why it could not be computed
    problems: list[str] = field(default_factory=list)  # failures: could not be computed or measured
    mismatches: list[str] = field(default_factory=list)  # values that differ from the baseline

    @property
    def label(self) -> str:
        return self.metric.id + ("" if not self.params else
                                 " [" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + "]")

    @property
    def covered(self) -> bool:
        return self.metric.id in BASELINES


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-12)


def compare(case: Case, who: str, got: Result, expected: Result) -> None:
    for part in ("value", "numerator", "denominator"):
        a, b = getattr(got, part), getattr(expected, part)
        if not close(a, b):
            problem = f"{case.label}: {who} {part} {a!r} != baseline {b!r}"
            if problem not in case.mismatches:
                case.mismatches.append(problem)


class Bench:
    def __init__(self, args, config: Path) -> None:
        from crmkpi.engine import Settings
        from crmkpi.periods import Calendar
        from crmkpi.plugins import load_registry
        from crmkpi.store import Store

        self.args = args
        self.config = config
        self.env = child_env()
        self.registry = load_registry(distribution="crmkpi")
        for error in self.registry.errors():
            print(f"warning: {error}")
        self.today = datetime.now(UTC).date()
        self.settings = Settings(Calendar(), "UTC", "USD", self.today)
        self.period = self.settings.calendar.parse(args.period, today=self.today)
        start, end = self.period.bounds("UTC")
        self.window = window(self.period, start, end, self.today, "USD")
        self.store = Store(f"sqlite:///{args.store.resolve()}")
        self.cases: list[Case] = []
        for metric_id, metric in sorted(self.registry.metrics.items()):
            if args.metric and metric_id not in args.metric:
                continue
            self.cases.append(Case(metric, {}, True))
            names = {p.name for p in metric.params}
            for params in VARIANTS.get(metric_id, []) if args.variants else []:
                if set(params) <= names:
                    self.cases.append(Case(metric, dict(params), False))
        self.all_cli: list[float] = []
        self.all_cli_metrics = 0
        self.problems: list[str] = []

    # one measurement each

    def engine(self, case: Case) -> tuple[float, Result]:
        from crmkpi.engine import Run, run_metrics

        self.store.engine.dispose()
        started = time.perf_counter()
        with self.deadline(case):
            results = run_metrics(self.store.engine, Run([case.metric], self.period,
                                                         {case.metric.id: case.params}),
                                  self.settings, persist=False)
        seconds = time.perf_counter() - started
        (r,) = results
        if r["error"]:
            raise RuntimeError(r["error"])
        return seconds, Result(r["value"], r["numerator"], r["denominator"])

    @contextmanager
    def deadline(self, case: Case, conn: sqlite3.Connection | None = None) -> Iterator[None]:
        """Interrupt the SQLite work of one measurement after ``--timeout`` s (a runaway query plan)."""
        from sqlalchemy import event

        connections = [conn] if conn is not None else []

        def checkout(dbapi_conn, record, proxy) -> None:
            connections.append(dbapi_conn)

        def interrupt() -> None:
            for c in connections:
                c.interrupt()

        if conn is None:
            event.listen(self.store.engine, "checkout", checkout)
        timer = threading.Timer(self.args.timeout, interrupt)
        timer.start()
        try:
            yield
        except Exception:
            if not timer.is_alive():
                raise TimeoutError(f"interrupted after {self.args.timeout:g} s") from None
            raise
        finally:
            timer.cancel()
            if conn is None:
                event.remove(self.store.engine, "checkout", checkout)

    def baseline(self, case: Case) -> tuple[float, Result]:
        fn = BASELINES[case.metric.id]
        params = case.metric.resolve_params(case.params)
        started = time.perf_counter()
        conn = sqlite3.connect(self.args.store)
        try:
            with self.deadline(case, conn):
                result = fn(conn, self.window, params)
        finally:
            conn.close()
        return time.perf_counter() - started, result

    def cli(self, cases: list[Case] | None) -> tuple[float, list[dict]]:
        """``crmkpi run`` of these cases (None: of every metric, as configured) in a new process."""
        argv = [self.args.crmkpi, "run", "--config", str(self.config), "--period", self.args.period,
                "--format", "json", "--no-save"]
        for case in cases or []:
            argv += ["--metric", case.metric.id]
            for k, v in case.params.items():
                argv += ["--param", f"{case.metric.id}.{k}={v}"]
        started = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode:
            raise RuntimeError(f"crmkpi run failed: {proc.stderr.strip()}")
        return seconds, json.loads(proc.stdout)

    # the passes

    def warm_up(self) -> None:
        """Untimed: every case once, engine against baseline; a case that fails or disagrees is not timed."""
        for case in self.cases:
            engine_s = base_s = None
            got = expected = None
            try:
                engine_s, got = self.engine(case)
            except Exception as exc:
                case.failed = f"crmkpi engine: {_error(exc)}"
            if case.covered:
                try:
                    base_s, expected = self.baseline(case)
                except Exception as exc:
                    case.failed = "; ".join(filter(None, [case.failed, f"baseline: {_error(exc)}"]))
            case.value = expected or got
            if got is not None and expected is not None:
                compare(case, "crmkpi engine", got, expected)
            if case.failed:
                # Both refusing the data (say, a missing fx rate) is agreement, but there is nothing to time.
                case.problems.append(f"{case.label}: could not be computed: {case.failed}")
            timing = "".join([f"  engine {engine_s:7.3f} s" if engine_s is not None else "",
                              f"  baseline {base_s:7.3f} s" if base_s is not None else ""])
            trouble = case.problems + case.mismatches
            status = ("NO BASELINE" if not case.covered and not trouble else "OK" if not trouble
                      else "PROBLEM: " + "; ".join(trouble))
            value = _fmt(case.value.value) if case.value else "–"
            print(f"  {case.label:<50} {value:>14}{timing}  {status}", flush=True)

    def timed(self, n: int) -> None:
        for case in self.cases:
            if case.problems or case.mismatches or not case.covered:
                continue
            steps = [self._time_engine, self._time_baseline]
            try:
                for step in steps if n % 2 == 0 else reversed(steps):
                    step(case)
                if self.args.cli:
                    seconds, rows = self.cli([case])
                    case.cli.append(seconds)
                    self._compare_rows(case, rows, "crmkpi run")
            except Exception as exc:
                case.problems.append(f"{case.label}: failed in run {n + 1}: {_error(exc)}")
        if self.args.cli:
            # Every metric that computes, in one process (all of them unless some fail on this data).
            ok = [c for c in self.cases if c.default and not c.problems]
            self.all_cli_metrics = len(ok)
            try:
                seconds, rows = self.cli(ok if len(ok) < len(self.registry.metrics) else None)
            except Exception as exc:
                self.problems.append(f"crmkpi run of every metric failed: {_error(exc)}")
                return
            self.all_cli.append(seconds)
            by_id = {r["metric"]: r for r in rows}
            for case in ok:
                if case.metric.id not in by_id:
                    self.problems.append(f"crmkpi run (all metrics) did not return {case.metric.id}")
                elif case.covered and case.value is not None:
                    self._compare_rows(case, [by_id[case.metric.id]], "crmkpi run (all metrics)")

    def _time_engine(self, case: Case) -> None:
        seconds, got = self.engine(case)
        case.engine.append(seconds)
        compare(case, "crmkpi engine", got, case.value)

    def _time_baseline(self, case: Case) -> None:
        seconds, got = self.baseline(case)
        case.base.append(seconds)
        compare(case, "baseline (repeat)", got, case.value)

    def _compare_rows(self, case: Case, rows: list[dict], who: str) -> None:
        if len(rows) != 1:
            case.mismatches.append(f"{case.label}: {who} returned {len(rows)} results")
            return
        r = rows[0]
        compare(case, who, Result(r["value"], r["numerator"], r["denominator"]), case.value)


def window(period, start: datetime, end: datetime, today: date, currency: str) -> Window:
    """The period's bounds and the other moments the metrics derive from it and from today."""
    days_left = (period.end - (today + timedelta(days=1))).days  # data health: as of today if the period runs on
    as_of = end - timedelta(days=days_left) if days_left > 0 else end
    try:
        year_before = end.replace(year=end.year - 1)
    except ValueError:
        year_before = end.replace(year=end.year - 1, day=28)
    return Window(start=_text(start), end=_text(end), first=period.start.isoformat(),
                  last=period.last_day.isoformat(), end_date=period.end.isoformat(), as_of=_text(as_of),
                  today=today.isoformat(),
                  today_end=_text(datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)),
                  year_before_end=_text(year_before), currency=currency)


def _text(moment: datetime) -> str:
    """A UTC instant (naive: already UTC) as the store's SQLite datetime text (what SQLAlchemy binds)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(" ", "microseconds")


def _instant(text: str) -> datetime:
    """Store datetime text back to a (naive UTC) datetime."""
    return datetime.fromisoformat(text)


def _error(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "null"
    return f"{value:.{digits}g}"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------
# Reporting.


def report(bench: Bench, args, counts: dict[str, int]) -> tuple[str, bool, bool]:
    """The Markdown report; (text, target met, correct)."""
    lines = [
        f"Store: {counts['deals']:,} deals, {counts['deal_stage_changes']:,} stage changes "
        f"(SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs); "
        f"period {args.period}; medians of {args.repeat} runs.",
        "",
        "| metric | crmkpi engine s | baseline s | ratio | `crmkpi run` s | value |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    flagged, uncovered = [], []
    total_engine = total_base = 0.0
    for case in bench.cases:
        if not case.covered:
            uncovered.append(case.label)
        engine, base, cli = _median(case.engine), _median(case.base), _median(case.cli)
        rate = engine / base if engine is not None and base else None
        mark = ""
        if rate is not None and rate > TIME_RATIO_MAX:
            mark = " ⚠"
            flagged.append(f"{case.label} ({rate:.2f}×)")
        if case.default and engine is not None and base is not None:
            total_engine += engine
            total_base += base
        value = ("error" if case.problems else "MISMATCH" if case.mismatches else
                 _fmt(case.value.value) + ("" if case.covered else " (no baseline)") if case.value else "–")
        label = case.label if case.default else f"{case.label} (variant)"
        lines.append(f"| {label} | {_s(engine)} | {_s(base)} | "
                     f"{'–' if rate is None else f'{rate:.2f}×'}{mark} | {_s(cli)} | {value} |")
    total_ratio = total_engine / total_base if total_base else None
    counted = sum(1 for c in bench.cases if c.default and c.engine and c.base)
    lines.append(f"| **total, default params ({counted} metrics)** | **{total_engine:.3f}** | **{total_base:.3f}** | "
                 f"**{'–' if total_ratio is None else f'{total_ratio:.2f}×'}** | "
                 f"{_s(sum(_median(c.cli) or 0 for c in bench.cases if c.default) or None)} | |")
    lines.append("")
    if bench.all_cli:
        which = ("every metric" if bench.all_cli_metrics == len(bench.registry.metrics) else
                 f"{bench.all_cli_metrics} of the {len(bench.registry.metrics)} metrics (those that compute)")
        lines.append(f"`crmkpi run` of {which} in one process (start-up included): "
                     f"{_median(bench.all_cli):.3f} s (runs: {', '.join(f'{s:.3f}' for s in bench.all_cli)}).")
    problems = [p for c in bench.cases for p in c.problems] + bench.problems
    mismatches = [p for c in bench.cases for p in c.mismatches]
    failed_defaults = [c.label for c in bench.cases if c.default and (c.problems or c.mismatches)]
    correct = not mismatches
    met = (total_ratio is not None and total_ratio <= TIME_RATIO_MAX and not uncovered and not failed_defaults
           and not bench.problems and correct)
    verdict = "PASS" if met else "FAIL"
    ratio_text = "–" if total_ratio is None else f"{total_ratio:.2f}×"
    lines.append(f"{verdict}: all built-in metrics, crmkpi engine / hand-written SQL = {ratio_text} "
                 f"(target ≤ {TIME_RATIO_MAX}×)")
    if flagged:
        lines.append(f"Metrics above {TIME_RATIO_MAX}× on their own: {', '.join(flagged)}")
    if uncovered:
        lines.append(f"Metrics without a baseline (not measured against SQL): {', '.join(uncovered)}")
    if failed_defaults:
        lines.append(f"Metrics not measured (the target needs every one): {', '.join(failed_defaults)}")
    for p in mismatches:
        lines.append(f"MISMATCH: {p}")
    for p in problems:
        lines.append(f"ERROR: {p}")
    return "\n".join(lines), met, correct


def as_json(bench: Bench, args, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "deals": counts["deals"], "stage_changes": counts["deal_stage_changes"], "period": args.period,
        "repeat": args.repeat, "sqlite": sqlite3.sqlite_version, "python": sys.version.split()[0],
        "cases": [{"metric": c.metric.id, "params": c.params, "default": c.default, "covered": c.covered,
                   "engine_s": c.engine, "baseline_s": c.base, "cli_s": c.cli,
                   "value": c.value.value if c.value else None, "problems": c.problems,
                   "mismatches": c.mismatches} for c in bench.cases],
        "cli_all_s": bench.all_cli,
    }


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=1_000_000, help="deals to generate (default 1,000,000; "
                        f"{STAGE_CHANGES_PER_DEAL} stage changes each)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (default 3)")
    parser.add_argument("--period", default=DEFAULT_PERIOD, help=f"period to compute (default {DEFAULT_PERIOD})")
    parser.add_argument("--store", type=Path, help="SQLite store file: reused if it exists, else built there "
                        "(default: <work>/store.db)")
    parser.add_argument("--data", type=Path, help="CSV folder to sync: reused if it holds deals.csv, else "
                        "generated there (default: <work>/data)")
    parser.add_argument("--work", type=Path, help="folder for data, store and config (default: a temporary "
                        "folder, removed afterwards)")
    parser.add_argument("--seed", type=int, default=42, help="sample-data seed (default 42)")
    parser.add_argument("--metric", action="append", help="only this metric (repeatable)")
    parser.add_argument("--no-variants", dest="variants", action="store_false",
                        help="skip the extra param sets (win_rate by amount, ...)")
    parser.add_argument("--no-cli", dest="cli", action="store_false",
                        help="skip the `crmkpi run` subprocess timings")
    parser.add_argument("--timeout", type=float, default=900, help="interrupt one measurement's queries after "
                        "this many seconds and report it (default 900)")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    parser.add_argument("--crmkpi", default=str(Path(sys.executable).with_name("crmkpi")),
                        help="the crmkpi command (default: next to this Python)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if the target is missed")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not Path(args.crmkpi).exists() and not shutil.which(args.crmkpi):
        parser.error(f"crmkpi command not found: {args.crmkpi}")

    temporary = args.work is None
    work = args.work or Path(tempfile.mkdtemp(prefix="crmkpi-bench-metrics-"))
    work.mkdir(parents=True, exist_ok=True)
    args.store = args.store or work / "store.db"
    args.data = args.data or work / "data"
    config = work / "crmkpi.yaml"
    write_config(config, args.store, args.data)
    try:
        build_store(args, work, config)
        counts = store_counts(args.store)
        bench = Bench(args, config)
        print(f"{len(bench.registry.metrics)} built-in metrics ({', '.join(sorted(bench.registry.metrics))}); "
              f"{len(bench.cases)} cases; period {bench.period.label} [{bench.window.start}, {bench.window.end})")
        print("warm-up and check (untimed):")
        bench.warm_up()
        for n in range(args.repeat):
            started = time.perf_counter()
            bench.timed(n)
            print(f"run {n + 1}/{args.repeat} done in {time.perf_counter() - started:.1f} s")
        text, met, correct = report(bench, args, counts)
        print()
        print(text)
        if args.json:
            args.json.write_text(json.dumps(as_json(bench, args, counts), indent=2), encoding="utf-8")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    if not correct:
        return 1
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
