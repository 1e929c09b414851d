"""Hostile files through `crmkpi sync`: values a store cannot hold alike, sparse JSON Lines, paths
that leave the folder, headers and options that would skew a number. Each is a row error (file,
line, column) handled by ``on_error``, or a one-line error, identically on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crmkpi.cli import cli

from storecheck import files_project as project, ok, one_line_error, snapshot, table_rows

CRMKPI = Path(sys.executable).parent / "crmkpi"
DEALS_HEADER = "id,account_id,name,amount,deal_type,is_closed,is_won,created_at,closed_at"
GOOD_DEAL = "d1,a1,Good,100,new_business,true,true,2025-01-05,2025-02-01"


def invoke(config: Path, command: str, *args: str):
    return CliRunner().invoke(cli, [command, "--config", str(config), *args])


def jsonl(*records: dict | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def deal(id_: str, **fields) -> dict:
    return {"id": id_, "account_id": "a1", "amount": 10, "deal_type": "new_business", "is_closed": True,
            "is_won": True, "created_at": "2025-01-05", "closed_at": "2025-02-01", **fields}


# -- values the store cannot hold alike: row errors named by file, line and column ---------------

NESTED_1000 = "[" * 1000 + "]" * 1000
ROW_ERRORS = [  # (file, content, the skipped line's message)
    ("deals.jsonl", jsonl(deal("d1"), '{"id": "d2", "cf": NaN}'),
     "deals.jsonl: line 2: column 'cf': nan is not a JSON number (JSON has no NaN or Infinity)"),
    ("deals.jsonl", jsonl(deal("d1"), '{"id": "d2", "cf": {"x": -Infinity}}'),
     "deals.jsonl: line 2: column 'cf': -inf is not a JSON number (JSON has no NaN or Infinity)"),
    ("deals.jsonl", jsonl(deal("d1"), '{"id": "d2", "amount": NaN}'),
     "deals.jsonl: line 2: column 'amount': not a valid float: nan"),
    ("deals.csv", f"{DEALS_HEADER}\n{GOOD_DEAL}\nd2,a1,Bad,nan,new_business,true,true,2025-01-05,2025-02-01\n",
     "deals.csv: line 3: column 'amount': not a valid float: 'nan'"),
    ("deals.csv", f"{DEALS_HEADER}\n{GOOD_DEAL}\nd2,a1,Nul\x00name,1,new_business,true,true,2025-01-05,2025-02-01\n",
     "deals.csv: line 3: column 'name': contains a NUL character (\\x00), which PostgreSQL cannot store"),
    ("deals.jsonl", jsonl(deal("d1"), deal("d2", note="a\x00b")),
     "deals.jsonl: line 2: column 'note': contains a NUL character (\\x00), which PostgreSQL cannot store"),
    ("pipeline_stages.csv", "id,stage,display_order\ns1,won,1\ns2,lost,2147483648\n",
     "pipeline_stages.csv: line 3: column 'display_order': '2147483648' is outside the integer range of the store "
     "(-2147483648..2147483647)"),
    ("pipeline_stages.jsonl", jsonl({"id": "s1", "display_order": 1},
                                    {"id": "s2", "display_order": 12345678901234567890}),
     "pipeline_stages.jsonl: line 2: column 'display_order': 12345678901234567890 is outside the integer range of "
     "the store (-2147483648..2147483647)"),
    ("deals.jsonl", jsonl(deal("d1"), f'{{"id": "d2", "cf": {NESTED_1000}}}'),
     "deals.jsonl: line 2: invalid JSON: nested deeper than 100 levels"),
    ("deals.jsonl", jsonl(deal("d1"), deal("d2", cf=json.loads("[" * 150 + "]" * 150))),
     "deals.jsonl: line 2: column 'cf': JSON nested deeper than 100 levels"),
    ("deals.jsonl", jsonl(deal("d1"), deal("d2", **{"cf\x00": "x"})),
     "deals.jsonl: line 2: column 'cf\\x00': contains a NUL character (\\x00), which PostgreSQL cannot store"),
]


@pytest.mark.parametrize("name, content, message", ROW_ERRORS, ids=[m.split(": ", 2)[2][:40] for *_, m in ROW_ERRORS])
def test_a_value_the_store_cannot_hold_is_a_row_error_on_either_store(isolated, store_url, name, content, message):
    good = "".join(content.splitlines(keepends=True)[:-1])  # the bad record is the last
    ok(invoke(project(isolated, store_url, {name: good}), "sync"))
    before = snapshot(store_url)
    config = project(isolated, store_url, {name: content})
    assert one_line_error(invoke(config, "sync")) == message
    assert snapshot(store_url) == before  # on_error: fail commits nothing

    config = project(isolated, store_url, {name: content}, on_error="skip")
    result = invoke(config, "sync")
    assert message in ok(result)
    table = name.split(".")[0]
    assert list(table_rows(store_url, table)) == [("d1" if table == "deals" else "s1")]


def test_non_finite_custom_field_no_longer_breaks_custom_field_queries(isolated, store_url):
    content = jsonl(deal("d1", tier="gold"), '{"id": "d2", "tier": "silver", "score": NaN}')
    config = project(isolated, store_url, {"deals.jsonl": content}, on_error="skip")
    ok(invoke(config, "sync"))
    result = invoke(config, "run", "--metric", "win_rate", "--period", "2025", "--segment", "extra.tier",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    assert [r["segment"] for r in json.loads(result.stdout)] == [{"extra.tier": "gold"}]


def test_a_custom_field_whose_name_json_escapes_segments_alike_on_both_stores(isolated, store_url):
    names = ['a"b', "Région", "back\\slash"]
    content = jsonl(*(deal(f"d{n}", **{name: f"v{n}"}) for n, name in enumerate(names)))
    config = project(isolated, store_url, {"deals.jsonl": content}, tables={"deals": {"extra": names}})
    ok(invoke(config, "sync"))
    for n, name in enumerate(names):
        result = invoke(config, "run", "--metric", "win_rate", "--period", "2025", "--segment", f"extra.{name}",
                        "--format", "json")
        assert result.exit_code == 0, result.output
        assert [(r["segment"], r["denominator"]) for r in json.loads(result.stdout)] == [
            ({f"extra.{name}": f"v{n}"}, 1.0), ({f"extra.{name}": None}, 2.0)]


# -- sparse JSON Lines: memory stays flat --------------------------------------------------------

def test_sparse_json_lines_keep_every_custom_field_and_memory_flat(isolated, tmp_path):
    """20,000 records, each with its own subset of 24 custom fields (empty ones left out, as many
    exporters do): every value lands in extra, and the sync's largest process stays small. With a
    row builder per key set, this took ~300 MB and half a minute."""
    rng = random.Random(7)
    fields = [f"cf_{i}" for i in range(24)]
    records = [deal(f"d{n}", **{f: f"v{n % 5}" for f in fields if rng.random() < 0.5}) for n in range(20000)]
    config = project(isolated, f"sqlite:///{tmp_path / 'sparse.db'}", {"deals.jsonl": jsonl(*records)},
                     tables={"deals": {"extra": fields}})
    measure = ("import resource, subprocess, sys; "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)")
    out = subprocess.run([sys.executable, "-c", measure, str(CRMKPI), "sync", "--config", str(config)],
                         capture_output=True, text=True, check=True, env=os.environ).stdout.split()
    status, peak_mb = int(out[0]), int(out[1])
    assert status == 0
    assert peak_mb < 200, f"sync peaked at {peak_mb} MB"
    stored = table_rows(f"sqlite:///{tmp_path / 'sparse.db'}", "deals")
    assert all(stored[r["id"]]["extra"] == ({f: r[f] for f in fields if f in r} or None) for r in records)


# -- paths ---------------------------------------------------------------------------------------------

@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside.csv"
    path.write_text(f"{DEALS_HEADER}\nX,a1,Secret,1,new_business,true,true,2025-01-05,2025-02-01\n")
    return path


def test_a_file_outside_the_folder_is_refused_unless_allowed(isolated, tmp_path, outside):
    store = f"sqlite:///{tmp_path / 'store.db'}"
    for file in ("../../outside.csv", str(outside)):
        config = project(isolated, store, {}, tables={"deals": {"file": file}})
        problem = (f"{file!r} is outside the folder {isolated / 'data'} (it leads to {outside}); "
                   f"set allow_outside_path: true to read it")
        assert one_line_error(invoke(config, "validate")) == f"connectors.files.tables.deals.file: {problem}"
        assert one_line_error(invoke(config, "sync")) == f"connectors.files.tables.deals.file: {problem}"
    config = project(isolated, store, {}, tables={"deals": {"file": str(outside)}}, allow_outside_path=True)
    ok(invoke(config, "validate"))
    ok(invoke(config, "sync"))
    assert list(table_rows(store, "deals")) == ["X"]


def test_a_symbolic_link_out_of_the_folder_is_refused(isolated, tmp_path, outside):
    config = project(isolated, f"sqlite:///{tmp_path / 'store.db'}", {"accounts.csv": "id,name\na1,Acme\n"})
    (isolated / "data" / "deals.csv").symlink_to(outside)
    assert one_line_error(invoke(config, "sync")) == (
        f"connectors.files: 'deals.csv' is outside the folder {isolated / 'data'} (it leads to {outside}); "
        f"set allow_outside_path: true to read it")
    assert table_rows(f"sqlite:///{tmp_path / 'store.db'}", "accounts") == {}


def test_a_lookup_outside_the_folder_is_refused(isolated, tmp_path, outside):
    config = project(isolated, f"sqlite:///{tmp_path / 'store.db'}", {"deals.csv": f"{DEALS_HEADER}\n{GOOD_DEAL}\n"},
                     tables={"deals": {"lookups": [{"file": "../../outside.csv", "key": "id", "by": "account_id",
                                                    "columns": {"name": "name"}}]}})
    assert one_line_error(invoke(config, "sync")).startswith(
        "connectors.files.tables.deals.lookups: '../../outside.csv' is outside the folder")


# -- headers and options ----------------------------------------------------------------------------

def test_a_repeated_header_name_is_an_error_naming_the_columns(isolated, store_url):
    config = project(isolated, store_url, {"accounts.csv": "id,name,id,name,region\na1,Acme,a2,X,EMEA\n"})
    assert one_line_error(invoke(config, "sync")) == (
        "accounts.csv: line 1: the header repeats a name ('id' in columns 1, 3; 'name' in columns 2, 4): "
        "rename the columns apart")
    assert table_rows(store_url, "accounts") == {}


@pytest.mark.parametrize("option, message", [
    ({"encoding": "utf-99"}, "connectors.files.tables.accounts.encoding: unknown encoding 'utf-99' "
                             "(e.g. utf-8, utf-16, cp1252, latin-1)"),
    ({"encoding": "rot13"}, "connectors.files.tables.accounts.encoding: unknown encoding 'rot13' "
                            "(e.g. utf-8, utf-16, cp1252, latin-1)"),
    ({"delimiter": ";;"}, "connectors.files.tables.accounts.delimiter: string should have at most 1 character"),
    ({"delimiter": '"'}, "connectors.files.tables.accounts.delimiter: '\"' cannot separate columns "
                         "(it quotes values or ends lines)"),
])
def test_validate_refuses_an_encoding_or_delimiter_the_sync_could_not_use(isolated, tmp_path, option, message):
    config = project(isolated, f"sqlite:///{tmp_path / 'store.db'}", {"accounts.csv": "id,name\na1,Acme\n"},
                     tables={"accounts": option})
    assert one_line_error(invoke(config, "validate")) == message
    assert one_line_error(invoke(config, "sync")) == message


def test_json_lines_with_a_lone_surrogate_escape_is_a_row_error(isolated, store_url):
    content = jsonl(deal("d1"), '{"id": "d2", "name": "\\ud800"}')
    config = project(isolated, store_url, {"deals.jsonl": content}, on_error="skip")
    assert ("deals.jsonl: line 2: invalid JSON: '\\ud800' is half of a surrogate pair, not a character"
            in ok(invoke(config, "sync")))
    assert list(table_rows(store_url, "deals")) == ["d1"]


def test_the_checks_leave_a_config_without_hostile_values_alone(isolated, store_url):
    """Text with tabs and non-ASCII, big but 32-bit ints, and deep-enough JSON all load exactly."""
    nested = json.loads("[" * 100 + "]" * 100)
    content = jsonl(deal("d1", name="tab\there é", cf=nested, big=2**63))
    config = project(isolated, store_url, {"deals.jsonl": content,
                                           "pipeline_stages.csv": "id,display_order\ns1,2147483647\ns2,-2147483648\n"})
    ok(invoke(config, "sync"))
    assert table_rows(store_url, "deals")["d1"]["extra"] == {"cf": nested, "big": 2**63}
    assert table_rows(store_url, "deals")["d1"]["name"] == "tab\there é"
    assert {k: r["display_order"] for k, r in table_rows(store_url, "pipeline_stages").items()} == {
        "s1": 2147483647, "s2": -2147483648}



@pytest.mark.parametrize("constants, message", [
    ({"currency": float("nan")}, "currency: constant nan is not a finite number"),
    ({"is_won": "maybe"}, "is_won: constant is not a valid bool: 'maybe'"),
    ({"amount": "lots"}, "amount: constant is not a valid float: 'lots'"),
])
def test_a_constant_is_checked_like_a_value_of_its_column(isolated, store_url, constants, message):
    """Constants were stored as written: a text in a number column on SQLite, an error on PostgreSQL."""
    config = project(isolated, store_url, {"deals.csv": f"{DEALS_HEADER}\n{GOOD_DEAL}\n"},
                     tables={"deals": {"constants": constants}})
    assert one_line_error(invoke(config, "validate")) == f"connectors.files.tables.deals.constants: {message}"
    assert one_line_error(invoke(config, "sync")) == f"connectors.files.tables.deals.constants: {message}"
