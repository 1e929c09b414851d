"""Did-you-mean suggestions."""

from crmkpi.suggest import close_matches, did_you_mean


def test_suggests_the_closest_names_best_first():
    assert close_matches("won", ["is_won", "is_closed", "closed_at"]) == ["is_won"]
    assert close_matches("ownr", ["owner", "team", "region"]) == ["owner"]
    assert did_you_mean("currencyy", ["currency", "amount"]) == "; did you mean 'currency'?"


def test_case_is_ignored_and_the_candidate_keeps_its_spelling():
    assert close_matches("Stage", ["stage", "stage_id"]) == ["stage", "stage_id"]


def test_nothing_close_suggests_nothing():
    assert did_you_mean("zzz", ["owner", "team"]) == ""
    assert did_you_mean("owner", []) == ""
