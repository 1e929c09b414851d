"""The files connector's parts on their own: names, delimiters, rules, repeated ids."""

from __future__ import annotations

import pytest

from crmkpi.connectors.files.duplicates import IdHashes
from crmkpi.connectors.files.names import column_matches, table_matches
from crmkpi.connectors.files.records import detect_delimiter
from crmkpi.connectors.files.rules import RULES, RowRules
from crmkpi.connectors.files.settings import table_columns


@pytest.mark.parametrize("name, meant", [
    ("won", ["is_won"]), ("IsWon", ["is_won"]), ("Close Date", ["closed_at"]), ("close_date", ["closed_at"]),
    ("CreatedDate", ["created_at"]), ("Opportunity ID", ["id"]), ("currencyy", ["currency"]),
    ("forecast_category", []),
])
def test_what_an_export_column_means(name, meant):
    assert column_matches(name, table_columns("deals")) == meant


def test_synonyms_only_suggest_columns_the_table_has():
    assert column_matches("closed_at", table_columns("tickets")) == ["resolved_at"]
    assert column_matches("won_date", table_columns("leads")) == ["converted_at"]
    assert column_matches("won_date", table_columns("deals")) == ["closed_at"]


@pytest.mark.parametrize("name, meant", [("opportunities", ["deals"]), ("deal", ["deals"]), ("Companies", ["accounts"]),
                                         ("fx-rates", ["fx_rates"]), ("olist_sellers_dataset", [])])
def test_what_a_file_name_means(name, meant):
    assert table_matches(name) == meant


@pytest.mark.parametrize("header, wanted, delimiter", [
    ("id,name,amount\n", ["id"], ","),
    ("id;name;amount\n", ["id"], ";"),
    ("id\tname\n", ["id"], "\t"),
    ("id|name\n", ["id"], "|"),
    ('"Deal; ID",Name\n', ["Deal; ID"], ","),  # quotes respected
    ("Deal ID;Name;Amount,USD\n", ["Deal ID"], ";"),  # the split that names the id column wins
    ("a;b;c,d\n", ["id"], ";"),  # else the one giving the most columns
    ("id\n", ["id"], ","),
])
def test_the_delimiter_is_found_from_the_header(header, wanted, delimiter):
    assert detect_delimiter(header, wanted) == delimiter


def test_repeated_ids_are_found_from_their_hashes():
    ids = IdHashes()
    for n in range(100_000):
        ids.add(f"D{n:07}")
    for key in ("D0000007", "D0099999", "D0000007"):
        ids.add(key)
    assert ids.repeated() == {hash("D0000007"), hash("D0099999")}
    assert sum(b.itemsize * len(b) for b in ids._buckets) == 8 * 100_003  # 8 bytes a row


DEAL_COLUMNS = ["id", "is_won", "is_closed", "created_at", "closed_at", "amount"]


@pytest.mark.parametrize("row, rule", [
    (("d1", True, True, "2024-01-01", "2024-02-01", 5.0), None),
    (("d1", True, False, "2024-01-01", "2024-02-01", 5.0), "won_not_closed"),
    (("d1", True, True, "2024-03-01", "2024-02-01", 5.0), "closed_before_created"),
    (("d1", False, False, "2024-03-01", "2024-02-01", 5.0), None),  # open: an expected close date
    (("d1", False, True, None, "2024-02-01", None), None),
    (("d1", False, False, None, None, -0.01), "negative_amount"),
])
def test_the_compiled_rules_agree_with_each_rule(row, rule):
    breach = RowRules("deals", DEAL_COLUMNS).check(row)
    assert (breach.rule if breach else None) == rule


def test_rules_whose_columns_a_file_lacks_are_not_checked():
    assert [r.name for r, _ in RowRules("deals", ["id", "amount"]).rules] == ["negative_amount"]
    assert RowRules("orders", ["id", "amount"]).check(("o1", -5.0)) is None  # refunds
    assert "orders" not in RULES
