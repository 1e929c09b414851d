"""A report's runs (cards, trend, breakdown) read one snapshot: a sync committing between them changes none.

Without it the cards could count a deal the trend does not, and the two would disagree on the page
with nothing to say why.
"""

from __future__ import annotations

from datetime import date

import pytest

from crmkpi.engine import Settings
from crmkpi.present import build
from crmkpi.periods import Calendar

WON = {"created_at": "2025-03-01", "closed_at": "2025-03-10", "is_closed": True, "is_won": True,
       "owner_id": "u1"}


@pytest.fixture
def sales(crmkpi_store, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "files,pipeline_metrics")
    crmkpi_store.load("users", [{"id": "u1", "name": "Ann", "team": "east"}])
    crmkpi_store.load("deals", [{**WON, "id": "d1", "amount": 100}])
    return crmkpi_store


def test_a_sync_between_the_runs_changes_no_number_of_the_report(sales, monkeypatch):
    runs = []
    real = build.run_metrics

    def run_then_sync(*args, **kwargs):
        runs.append(real(*args, **kwargs))
        if len(runs) == 1:  # another process commits a won deal while the report is being built
            sales.load("deals", [{**WON, "id": "d2", "amount": 900}])
        return runs[-1]

    monkeypatch.setattr(build, "run_metrics", run_then_sync)
    metric = sales.registry.metric("sales_volume")
    settings = Settings(Calendar(), today=date(2026, 1, 1))
    report = build.build_report(sales.engine, [metric], Calendar().parse("2025-Q1", today=date(2026, 1, 1)), {"sales_volume": {}}, [],
                                settings, dimension="owner")
    assert len(runs) == 3
    [card] = report.cards
    assert card.value == 100  # d2 is not seen by any run
    assert [(p.label, p.value) for p in card.trend if p.value is not None] == [("2025-03", 100.0)]
    [row] = report.breakdowns["sales_volume"].rows
    assert row.value == 100
    assert sales.run("sales_volume", "2025-Q1")[0].value == 1000  # and a run after it sees d2
