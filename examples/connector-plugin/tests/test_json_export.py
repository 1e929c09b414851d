"""json_export, tested with crmkpi's pytest fixtures (crmkpi_store.sync): what a first sync writes and
reports, that the next one reads only what changed, deletions, checkpoints that a failed sync resumes from,
and a metric over what it synced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crmkpi import ConfigError, SourceDataError
from crmkpi.testing import KpiStore

ACCOUNTS = [{"id": "a1", "name": "Acme", "region": "EMEA", "updated_at": "2025-01-02T09:00:00Z"},
            {"id": "a2", "name": "Globex", "region": "NA", "updated_at": "2025-01-03T09:00:00Z"}]


def deal(id: str, updated: str, **fields) -> dict:
    return {"id": id, "account_id": "a1", "amount": 1000, "currency": "USD", "deal_type": "new_business",
            "is_closed": True, "is_won": True,
            "created_at": "2025-01-05T10:00:00Z", "closed_at": "2025-02-01T10:00:00Z", "updated_at": updated,
            **fields}


DEALS = [deal("d1", "2025-02-01T10:00:00Z"),
         deal("d2", "2025-02-02T10:00:00Z", is_won=False),
         deal("d3", "2025-02-03T10:00:00Z", amount="lots"),  # a bad record
         deal("d4", "2025-02-04T10:00:00Z", stage_reason="budget")]  # a field that is no column: kept in extra


def export(folder: Path, table: str, records: list[dict], deleted: list[str] = ()) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{table}.json").write_text(json.dumps({"records": records, "deleted": list(deleted)}))


@pytest.fixture
def folder(crmkpi_store: KpiStore) -> Path:
    folder = crmkpi_store.folder / "export"
    export(folder, "accounts", ACCOUNTS)
    export(folder, "deals", DEALS)
    return folder


def test_a_first_sync_writes_every_record_and_reports_the_bad_one(crmkpi_store: KpiStore, folder: Path) -> None:
    synced = crmkpi_store.sync("json_export", {"path": "export"})
    assert synced.read == {"accounts": 2, "deals": 4}
    assert synced.written == {"accounts": 2, "deals": 3}
    assert synced.skipped == {"accounts": 0, "deals": 1}
    assert synced.errors == ["deals.json: record 'd3': column 'amount': not a valid float: 'lots'"]
    assert synced.notes == ["deals.json: fields that are no column of deals, kept in extra: stage_reason"]
    # The position of the last record read: where the next sync starts.
    assert synced.cursors == {"accounts.json": "2025-01-03T09:00:00+00:00", "deals.json": "2025-02-04T10:00:00+00:00"}
    assert synced.states == {"accounts.json": {"id": "a2"}, "deals.json": {"id": "d4"}}
    [d4] = [row for row in crmkpi_store.rows("deals") if row["id"] == "d4"]
    assert (d4["source"], d4["extra"]) == ("json_export", {"stage_reason": "budget"})


def test_the_next_sync_reads_what_changed_and_flags_deletions(crmkpi_store: KpiStore, folder: Path) -> None:
    crmkpi_store.sync("json_export", {"path": "export"})
    export(folder, "deals", [*DEALS[:3], deal("d4", "2025-03-01T10:00:00Z", amount=2500)], deleted=["d2"])

    synced = crmkpi_store.sync("json_export", {"path": "export"})
    assert synced.read == {"accounts": 0, "deals": 1}
    assert synced.written == {"accounts": 0, "deals": 2}  # d4 updated, d2 flagged deleted
    assert synced.cursors["deals.json"] == "2025-03-01T10:00:00+00:00"
    rows = {row["id"]: row for row in crmkpi_store.rows("deals")}
    assert rows["d4"]["amount"] == 2500
    assert rows["d2"]["is_deleted"] and not rows["d1"]["is_deleted"]

    assert crmkpi_store.sync("json_export", {"path": "export"}).written == {"accounts": 0, "deals": 0}


def test_a_failed_sync_resumes_after_its_last_checkpoint(crmkpi_store: KpiStore, folder: Path) -> None:
    settings = {"path": "export", "batch_size": 1, "on_error": "fail"}
    with pytest.raises(SourceDataError, match="record 'd3': column 'amount'"):
        crmkpi_store.sync("json_export", settings)
    # d1 and d2 were committed, each with its checkpoint
    assert [row["id"] for row in crmkpi_store.rows("deals")] == ["d1", "d2"]

    export(folder, "deals", [*DEALS[:2], deal("d3", "2025-02-03T10:00:00Z"), DEALS[3]])
    synced = crmkpi_store.sync("json_export", settings)
    assert synced.read == {"accounts": 0, "deals": 2}
    assert [row["id"] for row in crmkpi_store.rows("deals")] == ["d1", "d2", "d3", "d4"]


def test_a_full_refresh_reads_everything_again(crmkpi_store: KpiStore, folder: Path) -> None:
    crmkpi_store.sync("json_export", {"path": "export"})
    assert crmkpi_store.sync("json_export", {"path": "export"}, full_refresh=True).read == {"accounts": 2, "deals": 4}


def test_fields_are_mapped_and_settings_checked(crmkpi_store: KpiStore, folder: Path) -> None:
    export(folder, "deals", [{**deal("d1", "2025-02-01T10:00:00Z", amount=None), "value": 750}])
    crmkpi_store.sync("json_export", {"path": "export", "columns": {"deals": {"amount": "value"}}})
    assert [row["amount"] for row in crmkpi_store.rows("deals")] == [750]
    with pytest.raises(ConfigError, match=r"connectors.json_export.pth: unknown field; did you mean 'path'\?"):
        crmkpi_store.sync("json_export", {"pth": "export"})


def test_a_metric_over_the_synced_deals(crmkpi_store: KpiStore, folder: Path) -> None:
    crmkpi_store.sync("json_export", {"path": "export"})
    cell = crmkpi_store.one("win_rate", "2025")  # d1 and d4 won, d2 lost; d3 was skipped
    assert (cell.value, cell.numerator, cell.denominator) == (2 / 3, 2, 3)
    by_region = crmkpi_store.run("win_rate", "2025", segments="region")
    assert [(cell.segment, cell.value) for cell in by_region] == [({"region": "EMEA"}, 2 / 3)]
