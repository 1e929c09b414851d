"""How many customers each cell of a grouped run starts and ends with, loses and gains.

The per-cell path reads one row per account (``customers._states``): a customer at the window's
start, at its end, joined in it, new in it. A grouped run needs those flags for every part, and an
account's flags for a part depend on all its subscriptions at once (a renewal that starts the day
the old one ends keeps the customer). Joining each subscription to every part it overlaps and
grouping per part and account, or merging subscriptions into runs with window functions, reads
each row many times. Here each subscription is reduced to the ranks of its start and end among the
grid's boundaries (:meth:`Grid.boundary_rank <crmkpi.grouped.Grid.boundary_rank>`): two accounts
whose subscriptions have the same ranks have the same flags in every part. One grouping per
account and one per distinct set of ranks leave a few thousand rows, which this module counts.

In rank terms, with boundaries ``b_1 < … < b_n`` and a subscription of positive length ranked
``(s, e)`` (its start's and end's ranks; an open one ends after every boundary): it covers the
boundary ``b_j`` (``active_at``) exactly when ``s < j <= e``, and it starts in the part
``[b_j, b_k)`` exactly when ``j <= s < k``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import String, and_, cast, case, func, or_, select

from crmkpi.grouped import Cell, Grid
from crmkpi.sqlkit import instant

#: The end of a subscription still open: after every boundary.
OPEN_END = datetime(9999, 12, 31, tzinfo=UTC)


class CustomerCounts(NamedTuple):
    """One cell's customers, as ``customers._states`` flags them for one window."""

    #: Customers at the part's start.
    at_start: int = 0
    #: Customers at the part's end.
    at_end: int = 0
    #: Customers at the start who are not customers at the end.
    lost: int = 0
    #: Accounts that are customers at neither the start nor the end, with a subscription (of positive
    #: length) starting in the part.
    joined_and_lost: int = 0
    #: Accounts whose first subscription starts in the part.
    new: int = 0


def subscription_rows(grid: Grid):
    """The live subscriptions with a start, with their segment (looked up once per row). Those without an
    account make nobody a customer, but a conversion's missing-rate check reads them, as per cell."""
    subs = grid.table("subscriptions")
    return grid.materialized(select(subs.c.source, subs.c.id, subs.c.account_id, *grid.segment_key(subs),
                                    subs.c.started_at, subs.c.ended_at, subs.c.mrr, subs.c.currency)
                             .where(*grid.live(subs), subs.c.started_at.isnot(None)).cte("subscription_rows"))


def customer_counts(grid: Grid) -> dict[Cell, CustomerCounts]:
    """Every cell's :class:`CustomerCounts` (cells without any account are absent)."""
    ranks = {boundary: j for j, boundary in enumerate(grid.boundaries, start=1)}
    parts = [(ranks[start], ranks[end]) for start, end in grid.bounds]
    # the parts [b_j, b_k) holding rank x: j <= x < k
    holding = [[p for p, (j, k) in enumerate(parts) if j <= x < k] for x in range(len(ranks) + 1)]
    customers: dict[tuple, list[int]] = {}  # per segment, the customers at each boundary, as differences
    counted: dict[Cell, list[int]] = {}  # per cell: lost, joined and lost, new
    width = len(ranks) + 1
    for *segment, first, signature, accounts in grid.conn.execute(_signatures(grid, width)):
        segment = tuple(segment)
        for p in holding[first]:
            _add(counted, Cell(p, segment), 2, accounts)
        if not signature:
            continue
        spans = [divmod(int(value), width) for value in signature.split(",")]
        covered = _covered(spans)
        mask = sum((1 << (high + 1)) - (1 << low) for low, high in covered)
        differences = customers.setdefault(segment, [0] * (width + 1))
        for low, high in covered:
            differences[low] += accounts
            differences[high + 1] -= accounts
            for p in holding[high]:  # covered at the part's start, not at its end
                if parts[p][0] >= low and not mask >> parts[p][1] & 1:
                    _add(counted, Cell(p, segment), 0, accounts)
        joined = {p for start, _ in spans for p in holding[start]
                  if not mask >> parts[p][0] & 1 and not mask >> parts[p][1] & 1}
        for p in joined:
            _add(counted, Cell(p, segment), 1, accounts)
    found = {}
    for segment in customers.keys() | {cell.segment for cell in counted}:
        at = _running_sum(customers.get(segment, [0] * (width + 1)))
        for p, (j, k) in enumerate(parts):
            cell = Cell(p, segment)
            counts = CustomerCounts(at[j], at[k], *counted.get(cell, (0, 0, 0)))
            if any(counts):
                found[cell] = counts
    return found


def _signatures(grid: Grid, width: int):
    """Per segment and set of ranks, how many accounts: rows ``(*segment, first, signature, accounts)``, where
    ``first`` is the rank of the account's first start and ``signature`` lists its subscriptions of positive
    length as ``s * width + e`` (comma-separated, in no particular order; null for none). Subscriptions
    ending before every boundary or starting after all cover no boundary and start in no part: left out,
    so that more accounts share a signature."""
    rows = subscription_rows(grid)
    start = grid.boundary_rank(rows.c.started_at)
    end = grid.boundary_rank(func.coalesce(rows.c.ended_at, instant(OPEN_END)))
    counts = and_(or_(rows.c.ended_at.is_(None), rows.c.ended_at > rows.c.started_at), end > 0, start < width - 1)
    segment = [c for c in rows.c if c.name.startswith("segment_")]
    accounts = (select(*segment, func.min(start).label("first"),
                       func.aggregate_strings(cast(case((counts, start * width + end)), String), ",").label("signature"))
                .where(rows.c.account_id.isnot(None))
                .group_by(*segment, rows.c.source, rows.c.account_id).subquery("account_ranks"))
    keys = [accounts.c[c.name] for c in segment]
    return (select(*keys, accounts.c.first, accounts.c.signature, func.count())
            .group_by(*keys, accounts.c.first, accounts.c.signature))


def _covered(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranks of the boundaries some subscription covers, as disjoint ranges ``(low, high)`` in order."""
    merged: list[list[int]] = []
    for low, high in sorted((s + 1, e) for s, e in spans if e > s):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(low, high) for low, high in merged]


def _add(counted: dict[Cell, list[int]], cell: Cell, field: int, accounts: int) -> None:
    counted.setdefault(cell, [0, 0, 0])[field] += accounts


def _running_sum(differences: list[int]) -> list[int]:
    total, sums = 0, []
    for difference in differences:
        total += difference
        sums.append(total)
    return sums
