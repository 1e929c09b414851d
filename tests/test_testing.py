"""crmkpi.testing, the pytest plugin for plugin authors: each test writes a test file as an author would,
using the fixtures, and runs it with pytester in a pytest session of its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ALL_BUILTINS
from crmkpi.testing import KpiStore

pytest_plugins = ["pytester"]

#: u1 wins two of three deals closed in 2025, u2 one of two; a deal closed in 2024 and an open one.
DEALS = '''
DEALS = [
    {"id": "d1", "owner_id": "u1", "amount": 1000, "is_closed": True, "is_won": True,
     "created_at": "2025-01-02T09:00:00Z", "closed_at": "2025-02-01T10:00:00Z"},
    {"id": "d2", "owner_id": "u1", "amount": 3000, "is_closed": True, "is_won": True,
     "created_at": "2025-01-03T09:00:00Z", "closed_at": "2025-05-01T10:00:00Z"},
    {"id": "d3", "owner_id": "u1", "amount": 500, "is_closed": True, "is_won": False,
     "created_at": "2025-01-04T09:00:00Z", "closed_at": "2025-05-02T10:00:00Z"},
    {"id": "d4", "owner_id": "u2", "amount": 2000, "is_closed": True, "is_won": True,
     "created_at": "2025-01-05T09:00:00Z", "closed_at": "2025-02-03T10:00:00Z"},
    {"id": "d5", "owner_id": "u2", "amount": 800, "is_closed": True, "is_won": False,
     "created_at": "2025-01-06T09:00:00Z", "closed_at": "2025-08-03T10:00:00Z"},
    {"id": "d6", "owner_id": "u2", "amount": 900, "is_closed": True, "is_won": True,
     "created_at": "2024-10-06T09:00:00Z", "closed_at": "2024-11-03T10:00:00Z"},
    {"id": "d7", "owner_id": "u2", "amount": 700, "is_closed": False, "is_won": False,
     "created_at": "2025-03-06T09:00:00Z"},
]
'''


@pytest.fixture(scope="module", autouse=True)
def imported_before_pytester(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A pytester session drops the modules it imported when it ends: what the fixtures use is imported here,
    once, so that each session does not import it anew (SQLAlchemy warns when its dialects register twice)."""
    store = KpiStore(tmp_path_factory.mktemp("imports"))
    store.load_sample(deals=20)
    store.run("win_rate", "2025", grain="quarter")
    store.close()


@pytest.fixture(autouse=True)
def builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixtures load the plugins as crmkpi does: every built-in one (and those a test installs)."""
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)


def run_tests(pytester: pytest.Pytester, source: str, passed: int) -> pytest.RunResult:
    """Write ``source`` (with ``DEALS`` defined) as a test module, run it in a pytest session of its own and
    expect ``passed`` passing tests."""
    pytester.makepyfile(test_author=DEALS + textwrap.dedent(source))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=passed)
    return result


def test_every_session_has_the_fixtures_and_the_import_is_cheap(pytester: pytest.Pytester) -> None:
    listed = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    assert any(line.startswith("crmkpi_store") for line in listed.outlines), listed.outlines
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, crmkpi.testing; print(sorted(m for m in sys.modules if m.split('.')[0] in "
                               "('sqlalchemy', 'sqlmodel', 'alembic', 'fastapi', 'uvicorn') or m in "
                               "('crmkpi.engine', 'crmkpi.store', 'crmkpi.plugins', 'crmkpi.service')))"],
        capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_rows_loaded_from_dicts_and_a_metric_run_in_process(pytester: pytest.Pytester) -> None:
    run_tests(pytester, """
        from datetime import UTC, date, datetime

        def test_win_rate_of_hand_made_deals(crmkpi_store):
            assert crmkpi_store.load("deals", DEALS) == 7
            cell = crmkpi_store.one("win_rate", "2025")
            assert (cell.metric, cell.period, cell.segment) == ("win_rate", "2025", {})
            assert (cell.value, cell.numerator, cell.denominator, cell.note, cell.error) == (0.6, 3, 5, None, None)
            by_owner = crmkpi_store.run("win_rate", "2025", segments="owner")
            assert [(c.segment, c.value) for c in by_owner] == [({"owner": "u1"}, 2 / 3), ({"owner": "u2"}, 0.5)]
            quarters = crmkpi_store.run("win_rate", "2025", grain="quarter", compare="both")
            assert [(c.period, c.value) for c in quarters] == [("2025-Q1", 1.0), ("2025-Q2", 0.5), ("2025-Q3", 0.0),
                                                              ("2025-Q4", None)]
            assert quarters[3].note == "no deals closed (won or lost) in the period"
            assert (quarters[0].previous.period, quarters[0].previous.value) == ("2024-Q4", 1.0)
            assert quarters[1].previous.change == -0.5 and quarters[0].year_ago.value is None

        def test_the_reporting_settings(crmkpi_store):
            crmkpi_store.load("deals", DEALS)
            crmkpi_store.load("deals", [{"id": "usd", "is_closed": True, "is_won": True, "amount": 1000,
                                         "currency": "USD", "closed_at": "2025-06-01"}])
            crmkpi_store.load("fx_rates", [{"id": "r1", "currency": "USD", "rate_to_reporting": 0.5,
                                            "valid_from": "2020-01-01"}])
            cell = crmkpi_store.one("sales_volume", "FY2026-Q1", currency="EUR", fiscal_year_start_month=4)
            # April to June 2025, in euros: d2 (no currency: the reporting one's) and 1,000 USD
            assert (cell.period, cell.value) == ("FY2026-Q1", 3500.0)
            # 23:30 UTC on January 31st is February 1st in Paris
            crmkpi_store.load("deals", [{"id": "late", "is_closed": True, "is_won": True, "amount": 1,
                                         "closed_at": "2025-01-31T23:30:00Z"}])
            assert crmkpi_store.one("sales_volume", "2025-02", timezone="Europe/Paris").value == 3001.0

        def test_values_are_parsed_as_the_files_connector_parses_them(crmkpi_store):
            crmkpi_store.load("deals", [{"id": "x", "created_at": datetime(2025, 1, 1, 23, 30),
                                         "closed_at": date(2025, 2, 1), "is_closed": "true", "is_won": "no",
                                         "amount": "12.5",
                                         "extra": {"tier": "gold"}}], timezone="Europe/Paris", source="hubspot")
            [row] = crmkpi_store.rows("deals")
            assert (row["source"], row["id"], row["amount"], row["is_closed"], row["is_won"], row["extra"]) == \\
                ("hubspot", "x", 12.5, True, False, {"tier": "gold"})
            assert row["created_at"] == datetime(2025, 1, 1, 22, 30, tzinfo=UTC)
            assert row["closed_at"] == datetime(2025, 1, 31, 23, 0, tzinfo=UTC)

        def test_each_test_has_a_store_of_its_own(crmkpi_store, tmp_path):
            assert crmkpi_store.rows("deals") == []
            assert crmkpi_store.path.is_relative_to(tmp_path)
    """, passed=4)


def test_bad_rows_are_refused_with_one_line_and_nothing_is_written(pytester: pytest.Pytester) -> None:
    run_tests(pytester, """
        import pytest
        from crmkpi import ConfigError, SourceDataError

        @pytest.mark.parametrize("rows, error", [
            ([{"id": "d1"}, {"id": "d2", "created_at": "2025-13-01"}],
             "deals row 2 (id 'd2'): column 'created_at': not a valid datetime: '2025-13-01'"),
            ([{"id": "d1", "amout": 5}],
             "deals row 1 (id 'd1'): 'amout' is not a column of deals; did you mean 'amount'? (custom fields go in "
             "an 'extra' dict)"),
            ([{"id": "d1", "is_won": "maybe"}], "deals row 1 (id 'd1'): column 'is_won': not a valid bool: 'maybe'"),
            ([{"amount": 5}], "deals row 1 (id None): column 'id': required field is empty"),
            ([{"id": "d1"}, {"id": "d1"}],
             "deals row 2 (id 'd1'): the id of row 1 again (one load writes each id once)"),
            ([{"id": "d1", "is_won": True, "is_closed": False}],
             "deals row 1 (id 'd1'): is_won is true but is_closed is false: a won deal is closed (won_not_closed; "
             "load(..., allow=['won_not_closed']) lets it through)"),
            ([{"id": "d1", "extra": {"amount": 3}}],
             "deals row 1 (id 'd1'): extra field 'amount' has the name of a column: give it as the column"),
        ])
        def test_refused(crmkpi_store, rows, error):
            with pytest.raises(SourceDataError) as refused:
                crmkpi_store.load("deals", rows)
            assert str(refused.value) == error
            assert crmkpi_store.rows("deals") == []

        def test_an_unknown_table(crmkpi_store):
            with pytest.raises(ConfigError, match="unknown table 'deal'; did you mean 'deals'"):
                crmkpi_store.load("deal", [])

        def test_a_rule_let_through(crmkpi_store):
            crmkpi_store.load("deals", [{"id": "d1", "is_won": True, "is_closed": False}], allow=["won_not_closed"])
            assert len(crmkpi_store.rows("deals")) == 1

        def test_a_failing_metric_leaves_its_error_on_its_cells(crmkpi_store):
            crmkpi_store.load("deals", [{"id": "d1", "is_won": True, "is_closed": True, "amount": 5, "currency": "GBP",
                                         "closed_at": "2025-03-01"}])
            cell = crmkpi_store.one("sales_volume", "2025")
            assert (cell.value, cell.error) == (None, "no fx_rates rate for GBP on or before 2025-03-01 (rates "
                                                      "convert to the reporting currency USD)")
    """, passed=10)


#: A third-party metric plugin: won amounts, grouped right, grouped wrong, and grouped raising.
WON_AMOUNTS = '''
from sqlalchemy import func, select

from crmkpi import TABLES, Metric, Value, hookimpl

DEALS = TABLES["deals"]
WON = (DEALS.c.is_won.is_(True),)


def compute(ctx):
    total = ctx.conn.execute(select(func.sum(DEALS.c.amount))
                             .where(*ctx.scope(DEALS), *WON, ctx.in_period(DEALS.c.closed_at))).scalar()
    return Value(total)


def grouped(grid, shift=0):
    sums = grid.by_part(DEALS, DEALS.c.closed_at, func.sum(DEALS.c.amount), where=WON)
    return {cell: Value(sums[cell][0] + shift if cell in sums else None) for cell in grid.cells}


def crashing(grid):
    return 1 / 0


def metric(id, way):
    return Metric(id=id, title=id, description=id, formula="sum", unit="currency", direction="higher",
                  tables=("deals",), compute=compute, grouped=way)


@hookimpl
def register_metrics(register):
    register(metric("won_amount", grouped))
    register(metric("won_amount_off", lambda grid: grouped(grid, shift=1)))
    register(metric("won_amount_crash", crashing))
'''


def test_a_plugins_grouped_compute_checked_against_its_compute(pytester: pytest.Pytester, install,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    site = install("won-amounts", "1.0", {"won_amounts": "won_amounts"})
    (site / "won_amounts.py").write_text(WON_AMOUNTS)
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", f"{ALL_BUILTINS},won_amounts")
    run_tests(pytester, """
        import pytest

        @pytest.fixture
        def store(crmkpi_store):
            crmkpi_store.load("deals", DEALS)
            return crmkpi_store

        def test_agrees(store):
            cells = store.assert_grouped_agrees("won_amount", "2025", grain="quarter", segments=["owner"],
                                                compare="both")
            assert [(c.period, c.segment["owner"], c.value) for c in cells if c.value] == [
                ("2025-Q1", "u1", 1000), ("2025-Q2", "u1", 3000), ("2025-Q1", "u2", 2000)]

        def test_a_wrong_grouped_compute_is_caught(store):
            with pytest.raises(AssertionError) as caught:
                store.assert_grouped_agrees("won_amount_off", "2025", grain="quarter")
            assert str(caught.value) == ("won_amount_off 2025-Q1 {}: grouped and per-cell differ in value: "
                                         "3001.0 (grouped) != 3000.0 (compute)")

        def test_both_paths_on_their_own(store):
            grouped = store.run("won_amount_off", "2025", grain="quarter")
            per_cell = store.run("won_amount_off", "2025", grain="quarter", grouped=False)
            assert [c.value for c in grouped] == [3001, 3001, None, None]
            assert [c.value for c in per_cell] == [3000, 3000, None, None]

        def test_a_grouped_compute_that_raises_is_no_agreement(store):
            with pytest.raises(AssertionError, match="won_amount_crash: grouped raised ZeroDivisionError"):
                store.assert_grouped_agrees("won_amount_crash", "2025", grain="quarter")

        def test_a_run_of_one_cell_checks_nothing(store):
            with pytest.raises(AssertionError, match="the run has one cell, which compute fills"):
                store.assert_grouped_agrees("won_amount", "2025")
    """, passed=5)


def test_a_metric_not_found_names_the_plugins_that_failed(pytester: pytest.Pytester, install,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    install("broken", "0.1", {"broken": "broken_import"})
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "broken")
    run_tests(pytester, """
        import pytest
        from crmkpi import CrmkpiError

        def test_unknown(crmkpi_store):
            with pytest.raises(CrmkpiError) as missing:
                crmkpi_store.run("broken_metric", "2025")
            assert str(missing.value) == (
                "unknown metric 'broken_metric' (known: none loaded); plugins that failed to load: plugin broken "
                "(broken 0.1): failed to load broken_import: RuntimeError: plugin import exploded")
    """, passed=1)


def test_the_sample_company(pytester: pytest.Pytester) -> None:
    run_tests(pytester, """
        def test_loaded_and_measured(crmkpi_store):
            synced = crmkpi_store.load_sample()
            assert synced.connector == "sample" and synced.errors == [] and synced.notes == []
            assert synced.written["deals"] == 200 and synced.written["accounts"] > 50
            deals = [d for d in crmkpi_store.rows("deals") if not d["is_deleted"] and d["is_closed"]
                     and d["closed_at"] and d["closed_at"].year == 2025]
            won = sum(d["is_won"] for d in deals)
            cell = crmkpi_store.one("win_rate", "2025")
            assert (cell.numerator, cell.denominator) == (won, len(deals))
    """, passed=1)


#: A third-party connector: records of a list, after a cursor (their updated_at), with deletions.
CONNECTOR = '''
from datetime import datetime
from pydantic import BaseModel
from crmkpi import Checkpoint, ConnectorType, FieldError, Layout, RecordRows, StreamStats

SOURCE = {"records": [], "deleted": []}


class Settings(BaseModel):
    batch: int = 2


class Stream:
    name, table = "deals", "deals"

    def __init__(self, context):
        self.context = context
        self.stats = StreamStats()
        self.rows = RecordRows("deals", Layout(), source=context.name, synced_at=context.synced_at,
                               encoder=context.encoder)
        self.columns = self.rows.columns

    def read(self, cursor, state):
        fresh = sorted((r for r in SOURCE["records"] if cursor is None or r["updated_at"] > cursor),
                       key=lambda r: r["updated_at"])
        batch = []
        for record in fresh:
            self.stats.read += 1
            try:
                batch.append(self.rows.build(record))
            except FieldError as exc:
                self.stats.skip(f"deal {record['id']}: {exc}")
            cursor = record["updated_at"]
            if len(batch) == self.context.settings.batch:
                yield batch
                yield Checkpoint(cursor=cursor, state={"read": self.stats.read})
                batch = []
        yield batch
        yield Checkpoint(cursor=cursor, state={"read": self.stats.read}, deleted=tuple(SOURCE["deleted"]))


LISTED = ConnectorType(name="listed", description="a list", settings=Settings, streams=lambda c: [Stream(c)])


def deal(id, updated, **fields):
    return {"id": id, "updated_at": updated, "is_closed": False, "is_won": False, "created_at": updated, **fields}
'''


def test_a_connector_synced_twice(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(listed=CONNECTOR)
    run_tests(pytester, """
        import pytest
        from crmkpi import ConfigError
        from listed import LISTED, SOURCE, deal

        def test_incremental(crmkpi_store):
            SOURCE["records"] = [deal("d1", "2025-01-01T00:00:00Z"), deal("d2", "2025-01-02T00:00:00Z"),
                                 deal("d3", "2025-01-03T00:00:00Z", amount="lots")]
            first = crmkpi_store.sync(LISTED, {})
            assert (first.connector, first.read, first.written, first.skipped) == \\
                ("listed", {"deals": 3}, {"deals": 2}, {"deals": 1})
            assert first.errors == ["deal d3: column 'amount': not a valid float: 'lots'"]
            assert (first.cursors, first.states) == ({"deals": "2025-01-03T00:00:00Z"}, {"deals": {"read": 3}})

            SOURCE["records"].append(deal("d2", "2025-02-01T00:00:00Z", amount=5))
            SOURCE["deleted"] = ["d1"]
            second = crmkpi_store.sync(LISTED, {"batch": 1})
            assert (second.read, second.written, second.cursors) == \\
                ({"deals": 1}, {"deals": 2}, {"deals": "2025-02-01T00:00:00Z"})
            rows = {row["id"]: row for row in crmkpi_store.rows("deals")}
            assert rows["d1"]["is_deleted"] and rows["d2"]["amount"] == 5 and rows["d2"]["source"] == "listed"

        def test_settings_are_validated(crmkpi_store):
            with pytest.raises(ConfigError, match="connectors.mine.batch: input should be a valid integer"):
                crmkpi_store.sync(LISTED, {"batch": "many"}, name="mine")

        def test_a_built_in_connector_by_name(crmkpi_store):
            (crmkpi_store.folder / "data").mkdir()
            (crmkpi_store.folder / "data" / "deals.csv").write_text("id,is_closed,is_won\\nd1,true,true\\n"
                                                                    "d2,oops,true\\n")
            first = crmkpi_store.sync("files", {"path": "data", "on_error": "skip"}, name="crm")
            assert (first.written, first.errors) == ({"deals": 1}, ["deals.csv: line 3: column 'is_closed': "
                                                                   "not a valid bool: 'oops'"])
            again = crmkpi_store.sync("files", {"path": "data", "on_error": "skip"}, name="crm")
            assert again.written == {"deals": 0} and again.states == first.states
    """, passed=3)
