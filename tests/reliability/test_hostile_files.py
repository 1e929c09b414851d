"""Property: whatever a CSV or JSON Lines file holds, `crmkpi sync` either loads it exactly or fails
with one line, leaving the store as it was, and SQLite and PostgreSQL agree.

The files are mutated exports of ``pipeline_stages`` (text, int, float, bool and datetime columns,
plus a custom field): encodings with and without a byte order mark, delimiters, quotes, control
characters, huge and nested values, NaN and infinities, numbers and dates in odd shapes, broken lines.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, strategies as st

from crmkpi.normalize import BOOLEANS

from hostile_support import invoke, outcome, property_settings, rows_by_key, same_text, stores  # noqa: F401

pytestmark = pytest.mark.reliability

COLUMNS = ("id", "label", "display_order", "probability", "is_closed", "created_at", "tier")
#: (encoding the file is written in, the encoding: the config names); utf-8-sig writes a byte order mark.
ENCODINGS = [("utf-8", "utf-8"), ("utf-8-sig", "utf-8"), ("utf-16", "utf-16"), ("utf-16-le", "utf-16-le"),
             ("latin-1", "latin-1"), ("cp1252", "cp1252")]
HOSTILE_TEXT = ["", " ", "\x00", "\x1b]0;x\x07", "\r", "\n", "\r\n", '"', '""', "'", ",", ";", "\t", "|", "\\",
                "\ufeff", "é", "€", "𝔘", "nan", "NaN", "inf", "-Infinity", "1e400", "null", "x" * 5000]
NUMBERS = ["0", "-0", "7", " 7 ", "7.0", "1e3", "1_000", "0x10", "１", "2147483647", "2147483648", "-2147483649",
           "9" * 20, "9" * 5000, "1.5", "-2.5e-300", "1e308", "1e309", "nan", "NaN", "inf", "-inf", "Infinity", ""]
DATES = ["2025-01-05", "2025-01-05T09:30:00Z", "2025-01-05 09:30:00+01:00", "2025-01-05T09:30:00.123456-08:00",
         "0001-01-01", "9999-12-31T23:59:59", "2025-02-30", "05/01/2025", "2025-13-01", "", "T", "2025-01-05T25:00"]

text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=20),
                 st.lists(st.sampled_from(HOSTILE_TEXT), max_size=4).map("".join))
number_text = st.one_of(st.sampled_from(NUMBERS), st.integers().map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr))
bool_text = st.sampled_from(["true", "false", "TRUE", "False", "yes", "no", "1", "0", "t", "f", "", "maybe", "tRuE"])
date_text = st.one_of(st.sampled_from(DATES),
                      st.datetimes(timezones=st.sampled_from([None, UTC])).map(lambda d: d.isoformat()))
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
                        st.floats(allow_nan=True, allow_infinity=True), text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                st.dictionaries(text, inner, max_size=3)),
                          max_leaves=8)


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def csv_files(draw) -> tuple[str, bytes, dict, list[dict]]:
    encoding, configured = draw(st.sampled_from(ENCODINGS))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    rows = [{"id": f"s{n}", "label": draw(text), "display_order": draw(number_text),
             "probability": draw(number_text), "is_closed": draw(bool_text), "created_at": draw(date_text),
             "tier": draw(text)} for n in range(draw(st.integers(1, 4)))]
    out = io.StringIO()
    # csv quotes a value holding a character of the line terminator: with a bare \n, a value ending in \r
    # would end the line, so such files quote every value (as many exporters do).
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator,
                        quoting=csv.QUOTE_ALL if terminator == "\n" else csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    writer.writerows([row[c] for c in COLUMNS] for row in rows)
    body = out.getvalue()
    if draw(st.booleans()):  # a broken line: a field too many, an unterminated quote, a bare NUL, ...
        body += draw(st.sampled_from(["s9" + delimiter * 8 + "\n", 's9,"open\n', "\x00\n", delimiter * 3 + "\n"]))
    try:
        content = body.encode(encoding)
    except UnicodeEncodeError:  # a character the encoding has not: the export would not hold it either
        content = body.encode(encoding, errors="replace")
        rows = None
    options = {"encoding": configured, **({"delimiter": delimiter} if draw(st.booleans()) else {})}
    return "pipeline_stages.csv", content, options, rows


@st.composite
def jsonl_files(draw) -> tuple[str, bytes, dict, list[dict]]:
    rows = []
    for n in range(draw(st.integers(1, 4))):
        row = {"id": f"s{n}",
               "label": draw(st.one_of(st.none(), text)),
               "display_order": draw(st.one_of(st.none(), st.integers(min_value=-2**70, max_value=2**70),
                                               st.floats(allow_nan=True, allow_infinity=True), number_text)),
               "probability": draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), number_text)),
               "is_closed": draw(st.one_of(st.booleans(), bool_text)),
               "created_at": draw(date_text),
               "tier": draw(st.one_of(json_value, st.sampled_from([99, 101]).map(deep)))}
        rows.append({k: v for k, v in row.items() if v is not None or draw(st.booleans())})  # sparse or not
    lines = [json.dumps(row) for row in rows]  # NaN and Infinity as the tokens some exporters write
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(['{"id": "s9"', "[1, 2]", '{"id": "s9", "label": "\\ud800"}', "NaN",
                                           '{"id": "s9", "label": "a\\u0000b"}',
                                           '{"id": "s9", "tier": ' + "[" * 2000 + "]" * 2000 + "}"])))
    return "pipeline_stages.jsonl", ("\n".join(lines) + "\n").encode(), {}, rows


class Refused(Exception):
    """The reference parse refuses the value: a correct load must not store its row."""


def expected(row: dict[str, Any]) -> dict[str, Any]:
    """The values a correct load stores for ``row``; raises Refused for a row it must not store.

    A reference parse written apart from the code (Python's own int, float and fromisoformat; the
    store's limits: 32-bit ints, finite numbers, no NUL, JSON nested at most 100 deep)."""
    def empty(value: Any) -> bool:
        return value is None or value == ""

    def checked(parse, value: Any) -> Any:
        if empty(value):
            return None
        try:
            return parse(value)
        except (ValueError, TypeError, OverflowError, KeyError) as exc:
            raise Refused(value) from exc

    return {
        "label": checked(_text, row.get("label")),
        "display_order": checked(_int, row.get("display_order")),
        "probability": checked(_float, row.get("probability")),
        "is_closed": checked(BOOLEANS.__getitem__, row.get("is_closed")) or False,
        "created_at": checked(_datetime, row.get("created_at")),
        "extra": None if empty(row.get("tier")) else {"tier": checked(_json, row["tier"])},
    }


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TypeError(value)
    number = int(value)
    if not -2**31 <= number < 2**31:
        raise ValueError(number)
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(number)
    return number


def _datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _json(value: Any) -> Any:
    def depth(item: Any) -> int:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(item)
        if isinstance(item, str):
            _text(item)
        if isinstance(item, dict):
            for key in item:
                _text(key)
            item = list(item.values())
        return 1 + max(map(depth, item), default=0) if isinstance(item, list) else 1

    if depth(value) > 100:
        raise ValueError("too deep")
    return value


_counter = itertools.count()


def sync_everywhere(stores: dict[str, str], tmp: Path, name: str, content: bytes, settings: dict):
    """Sync the file into each store under a fresh source name; per store: (outcome, rows, untouched)."""
    source = f"ex{next(_counter)}"
    folder = tmp / source
    (folder / "data").mkdir(parents=True)
    (folder / "data" / name).write_bytes(content)
    results = {}
    for kind, url in stores.items():
        config = folder / f"{kind}.yaml"
        block = {"type": "files", "path": "data", **settings}
        config.write_text(yaml.safe_dump({"store": url, "connectors": {source: block}}), encoding="utf-8")
        before = rows_by_key(url, "pipeline_stages")
        status, stderr = outcome(invoke(config, "sync"))
        after = rows_by_key(url, "pipeline_stages")
        rows = {id_: row for (row_source, id_), row in after.items() if row_source == source}
        untouched = status == 0 or after == before
        results[kind] = (status, same_text(stderr, stores), rows, untouched)
    return results


def check_file(stores: dict[str, str], tmp: Path, file, on_error: str) -> None:
    name, content, options, rows = file
    results = sync_everywhere(stores, tmp, name, content, {"on_error": on_error,
                                                           "tables": {"pipeline_stages": options}})
    outcomes = list(results.values())
    event(f"{name.split('.')[-1]}: {'loaded' if outcomes[0][0] == 0 else 'one-line error'}")
    for status, stderr, stored, untouched in outcomes:
        assert untouched, "a failed sync changed the store"
        if status == 1:
            assert not stored
            continue
        if rows is None:  # written with replacement characters: what loads is what the file says
            continue
        wanted = {}
        for row in rows:
            try:
                wanted[row["id"]] = expected(row)
            except Refused:
                pass
        for id_, row in stored.items():
            assert id_ in wanted, f"{id_} was stored although the reference refuses it"
            got = {k: row[k] for k in wanted[id_]}
            assert got == wanted[id_], (id_, got, wanted[id_])
        if on_error == "skip":  # every row the reference accepts is stored; every other was reported
            assert set(stored) == set(wanted), stderr
            read, written, skipped = (int(n) for n in re.search(r"(\d+) read, (\d+) written(?:, (\d+) skipped)?",
                                                                 stderr).groups(default="0"))
            assert read == written + skipped, stderr
        else:
            assert set(stored) == {r["id"] for r in rows}, stderr
    first = outcomes[0]
    for other in outcomes[1:]:  # SQLite and PostgreSQL: the same outcome, message and rows
        assert other[:3] == first[:3]


@property_settings(default=20)
@given(file=st.one_of(csv_files(), jsonl_files()), on_error=st.sampled_from(["fail", "skip"]))
def test_a_mutated_file_loads_exactly_or_fails_in_one_line_alike_on_every_store(stores, tmp_path_factory, file,
                                                                                  on_error):
    check_file(stores, tmp_path_factory.mktemp("files"), file, on_error)
