"""The plugin API's version, and the ranges of it plugins declare.

The plugin API is what ``crmkpi.__all__`` names and the hooks of :mod:`crmkpi.hookspecs`. Its
version is ``major.minor``: the minor grows when the API grows (a new name, a new hook, a new
optional argument), the major when something a plugin may use changes or goes
(docs/compatibility.md). A plugin declares the versions it works with in the module its entry
point names, in the syntax of a pip requirement's version specifiers::

    CRMKPI_PLUGIN_API = ">=1.0,<2"

The comparator below reads the part of that syntax a range of ``major.minor`` versions needs
(``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``~=``, ``==1.*``): ``packaging`` is no runtime
dependency of crmkpi, and a plugin's range must not depend on what else is installed.
"""

from __future__ import annotations

import operator
import re
from typing import Callable

#: The version of the plugin API this crmkpi provides: ``major.minor`` (docs/compatibility.md).
PLUGIN_API_VERSION = "1.1"

#: The attribute in which a plugin's entry-point module declares the plugin API versions it works with.
DECLARATION = "CRMKPI_PLUGIN_API"

# compiled on first use (re caches it): `import crmkpi` runs this module, and every command imports crmkpi
_CLAUSE = r"(~=|===|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?"
_ORDER: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
    "!=": operator.ne}

Version = tuple[int, ...]
Clause = Callable[[Version], bool]


def parse_version(text: str) -> Version:
    """``"1.0"`` as ``(1, 0)``; a ValueError for anything but dot-separated numbers."""
    if not re.fullmatch(r"\d+(?:\.\d+)*", text):
        raise ValueError(f"{text!r} is not a version such as '1.0'")
    return tuple(int(part) for part in text.split("."))


def parse_range(text: str) -> list[Clause]:
    """The clauses of a range such as ``">=1.0,<2"``; a ValueError naming the clause it cannot read."""
    clauses = [clause.strip() for clause in text.split(",")]
    if clauses == [""]:
        raise ValueError("the range is empty")
    return [_clause(clause) for clause in clauses]


def _clause(text: str) -> Clause:
    match = re.fullmatch(_CLAUSE, text)
    if match is None or match[1] == "===":
        raise ValueError(f"{text!r} is not a comparison such as '>=1.0' or '<2'")
    op, bound, wildcard = match[1], parse_version(match[2]), bool(match[3])
    if wildcard and op not in ("==", "!="):
        raise ValueError(f"{text!r}: only == and != take a '.*'")
    if op == "~=":  # compatible release: ~=1.2 is >=1.2 within the 1.x series
        if len(bound) < 2:
            raise ValueError(f"{text!r}: ~= needs a version of two parts or more, such as '~=1.0'")
        series = bound[:-1]
        return lambda version: _pad(version, bound) >= _pad(bound, version) and _starts_with(version, series)
    if wildcard:  # ==1.* : any version whose leading parts are those
        if op == "==":
            return lambda version: _starts_with(version, bound)
        return lambda version: not _starts_with(version, bound)
    compare = _ORDER[op]
    return lambda version: compare(_pad(version, bound), _pad(bound, version))


def _pad(version: Version, other: Version) -> Version:
    """``version`` with zeros appended to the length of ``other``: 1 and 1.0 are the same version."""
    return version + (0,) * (len(other) - len(version))


def _starts_with(version: Version, prefix: Version) -> bool:
    return _pad(version, prefix)[:len(prefix)] == prefix


def in_range(version: str, declared: str) -> bool:
    """Whether ``version`` satisfies every clause of ``declared``; a ValueError when either is malformed."""
    parsed = parse_version(version)
    return all(clause(parsed) for clause in parse_range(declared))
