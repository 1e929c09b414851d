"""Did-you-mean suggestions for names a user typed: columns, config keys, dimensions, files."""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence


def close_matches(word: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The candidates closest to ``word`` (case-insensitive), best first."""
    by_folded = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), candidate)
    found = difflib.get_close_matches(word.casefold(), list(by_folded), n=limit, cutoff=0.6)
    return [by_folded[f] for f in found]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'is_won'?"`` (or ``"'x' or 'y'"``), or ``""`` when nothing is close."""
    return suggest(close_matches(word, candidates))


def suggest(found: Sequence[str]) -> str:
    """``found`` as a did-you-mean (names found otherwise, e.g. by synonym); ``""`` when empty."""
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(f) for f in found) + "?"
