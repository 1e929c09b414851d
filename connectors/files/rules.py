"""Row consistency rules: values that parse but cannot all be true of one record.

They are checked on the built row (DB-ready values: booleans, floats, and dates or
datetimes that compare in time order on every backend). Refunds make negative order
amounts legitimate, so ``orders`` has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Literal, Sequence

RuleName = Literal["won_not_closed", "closed_before_created", "negative_amount", "end_before_start",
                   "rate_not_positive"]


Row = Sequence[Any]


@dataclass(frozen=True)
class Rule:
    name: RuleName
    columns: tuple[str, ...]
    #: When a row breaks it: a Python expression over the columns' values {0}, {1}, ...
    broken: str
    reason: str  # formatted with the columns' values as {0}, {1}, ...


_BEFORE = "{0} is not None and {1} is not None and {0} < {1}"


def _negative_amount(column: str) -> Rule:
    return Rule("negative_amount", (column,), "{0} is not None and {0} < 0", f"{column} is negative: {{0}}")


def _end_before_start(end: str, start: str) -> Rule:
    return Rule("end_before_start", (end, start), _BEFORE, f"{end} {{0}} is before {start} {{1}}")


RULES: dict[str, tuple[Rule, ...]] = {
    "deals": (
        Rule("won_not_closed", ("is_won", "is_closed"), "{0} is True and {1} is not True",
             "is_won is true but is_closed is false: a won deal is closed"),
        # An open deal's closed_at is the date it is expected to close, which may be any date.
        Rule("closed_before_created", ("closed_at", "created_at", "is_closed"), f"{{2}} is True and {_BEFORE}",
             "the deal closed before it was created: closed_at {0} is before created_at {1}"),
        _negative_amount("amount"),
    ),
    "subscriptions": (_negative_amount("mrr"), _end_before_start("ended_at", "started_at")),
    "quotas": (_negative_amount("amount"), _end_before_start("period_end", "period_start")),
    "marketing_spend": (_negative_amount("amount"), _end_before_start("period_end", "period_start")),
    "fx_rates": (Rule("rate_not_positive", ("rate_to_reporting",), "{0} is not None and {0} <= 0",
                      "rate_to_reporting must be above 0, found {0}"),),
}


@dataclass(frozen=True)
class Breach:
    rule: RuleName
    column: str  # the first column the rule reads, for the message
    reason: str


class RowRules:
    """The rules of ``table`` that the columns of its rows let it check.

    Checking is on every row, so the rules are compiled into one expression over the row (from the
    fixed expressions above, never from input); only a row that breaks one is looked at rule by rule.
    """

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        position = {c: i for i, c in enumerate(columns)}
        self.rules = [(rule, tuple(position[c] for c in rule.columns)) for rule in RULES.get(table, ())
                      if all(c in position for c in rule.columns)]
        self._tests = [self._compile([(rule, positions)]) for rule, positions in self.rules]
        self._any = self._compile(self.rules)

    @staticmethod
    def _compile(rules: list[tuple[Rule, tuple[int, ...]]]) -> Callable[[Row], bool]:
        tests = [rule.broken.format(*(f"r[{i}]" for i in positions)) for rule, positions in rules]
        return eval("lambda r: " + (" or ".join(f"({t})" for t in tests) or "False"))  # noqa: S307

    def check(self, row: Row) -> Breach | None:
        if not self._any(row):
            return None
        for (rule, positions), test in zip(self.rules, self._tests):
            if test(row):
                return Breach(rule.name, rule.columns[0], rule.reason.format(*(_shown(row[i]) for i in positions)))
        return None


def _shown(value: Any) -> str:
    """A value as the message shows it, alike on every backend (datetimes: UTC, to the second)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text[:19] if len(text) == 26 and text[10] == " " else text  # SQLite's datetime text
