"""Schema migrations: every table is created, the migrations match the models, upgrades keep data."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, inspect, select, text
from sqlmodel import Session

from crmkpi import models, store as store_module
from crmkpi.errors import StoreError
from crmkpi.models import ENTITIES, SCHEMA_REVISION, Account, Deal, SQLModel
from crmkpi.store import MIGRATIONS_DIR, Store, save_state

#: The entity tables of DESIGN §4, spelled out so that dropping one from ENTITIES fails here.
DESIGN_ENTITIES = {
    "users", "accounts", "contacts", "leads", "deals", "deal_stage_changes", "pipeline_stages", "tickets",
    "subscriptions", "orders", "survey_responses", "marketing_spend", "quotas", "fx_rates",
}
BOOKKEEPING = {"sync_state", "sync_runs", "job_runs", "metric_results", "notification_deliveries", "alert_states"}
T1 = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)


def _alembic_config(script_location: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    return cfg


def _head(script_location: Path = MIGRATIONS_DIR) -> str:
    heads = ScriptDirectory.from_config(_alembic_config(script_location)).get_heads()
    assert len(heads) == 1, f"migrations must have one head, found {heads}"
    return heads[0]


def _diff(store: Store, metadata: MetaData = SQLModel.metadata) -> list:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(ctx, metadata)


def _columns(store: Store) -> dict[str, list[tuple]]:
    inspector = inspect(store.engine)
    return {name: [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)]
            for name in sorted(inspector.get_table_names())}


def _seed(store: Store) -> None:
    with Session(store.engine) as session:
        session.add(Account(source="crm", id="a1", name="Acme", region="EMEA", updated_at=T1,
                            extra={"tier": "gold"}))
        session.add(Deal(source="crm", id="d1", account_id="a1", amount=1200.5, is_won=True, closed_at=T1))
        session.commit()
    with store.transaction() as conn:
        save_state(conn, "crm", "deals", "cursor-1", {"page": 3})


def _assert_seeded(store: Store) -> None:
    with Session(store.engine) as session:
        account = session.get(Account, ("crm", "a1"))
        deal = session.get(Deal, ("crm", "d1"))
    assert (account.name, account.region, account.updated_at, account.extra) == ("Acme", "EMEA", T1, {"tier": "gold"})
    assert (deal.account_id, deal.amount, deal.is_won, deal.closed_at) == ("a1", 1200.5, True, T1)
    state = store.get_state("crm", "deals")
    assert (state.cursor, state.state) == ("cursor-1", {"page": 3})


# -- creating the schema ------------------------------------------------------------


def test_entities_are_the_design_tables():
    assert set(ENTITIES) == DESIGN_ENTITIES
    bookkeeping = {m.__tablename__ for m in (models.SyncState, models.SyncRun, models.JobRun, models.MetricResult,
                                                  models.NotificationDelivery, models.AlertState)}
    assert bookkeeping == BOOKKEEPING
    assert set(SQLModel.metadata.tables) == DESIGN_ENTITIES | BOOKKEEPING


def test_migrate_creates_every_table_with_the_model_columns(store: Store):
    tables = set(store.table_names())
    assert tables == DESIGN_ENTITIES | BOOKKEEPING | {"alembic_version"}
    inspector = inspect(store.engine)
    for name, table in SQLModel.metadata.tables.items():
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert set(columns) == set(table.columns.keys()), name
        assert {c: columns[c]["nullable"] for c in columns} == {c.name: c.nullable for c in table.columns}, name
    for name in DESIGN_ENTITIES:
        assert inspector.get_pk_constraint(name)["constrained_columns"] == ["source", "id"], name
        assert {"source", "id", "created_at", "updated_at", "is_deleted", "synced_at", "extra"} <= \
            {c["name"] for c in inspector.get_columns(name)}
    assert {ix["name"] for ix in inspector.get_indexes("deals")} == {"ix_deals_created_at", "ix_deals_closed_at"}


def test_revision_is_the_alembic_head(store: Store):
    head = _head()
    assert SCHEMA_REVISION == head, "added a migration? set models.SCHEMA_REVISION to its revision id"
    assert store.revision() == head


def test_empty_database_has_no_revision_and_upgrades_from_base(store_url: str):
    s = Store(store_url, migrate=False)
    try:
        assert s.revision() is None
        assert s.table_names() == []
        s.migrate()
        assert s.revision() == SCHEMA_REVISION
        assert set(s.table_names()) == DESIGN_ENTITIES | BOOKKEEPING | {"alembic_version"}
        with s.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        s.engine.dispose()


def test_migrate_twice_is_a_noop(store: Store, monkeypatch: pytest.MonkeyPatch):
    _seed(store)
    before = _columns(store)

    def fail(*args, **kwargs):
        raise AssertionError("a current store must not run alembic")

    monkeypatch.setattr(command, "upgrade", fail)
    store.migrate()
    monkeypatch.undo()
    # Forcing alembic's own upgrade on a current store changes nothing either.
    with store.engine.begin() as conn:
        cfg = _alembic_config(MIGRATIONS_DIR)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    store.migrate()
    assert store.revision() == SCHEMA_REVISION
    assert _columns(store) == before
    _assert_seeded(store)


# -- migrations match the models ------------------------------------------------------


def test_migrations_match_the_models(store: Store):
    assert _diff(store) == []


def test_model_comparison_detects_a_model_change(store: Store):
    """The comparison above can fail: a column only in the models shows up as a difference."""
    changed = MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["accounts"].append_column(Column("tier", String(), nullable=True))
    diff = _diff(store, changed)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "accounts", "tier")]


# -- upgrading keeps data ----------------------------------------------------------------


def test_store_with_data_survives_migrate_and_reopen(store_url: str):
    first = Store(store_url)
    _seed(first)
    first.migrate()
    first.migrate("head")
    first.engine.dispose()
    second = Store(store_url)
    try:
        assert second.revision() == SCHEMA_REVISION
        _assert_seeded(second)
    finally:
        second.engine.dispose()


def test_store_migrated_by_alembic_directly_opens_with_data(store_url: str):
    """A store upgraded by alembic itself (not through Store.migrate) is recognized as current."""
    raw = Store(store_url, migrate=False)
    with raw.engine.begin() as conn:
        cfg = _alembic_config(MIGRATIONS_DIR)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, SCHEMA_REVISION)
    assert raw.revision() == SCHEMA_REVISION
    _seed(raw)
    raw.engine.dispose()
    reopened = Store(store_url)
    try:
        _assert_seeded(reopened)
    finally:
        reopened.engine.dispose()


SECOND_MIGRATION = '''"""add accounts.tier and a scratch table

Revision ID: 9999
Revises: {down}
"""

from alembic import op
import sqlalchemy as sa

revision = "9999"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.add_column(sa.Column("tier", sa.String(), nullable=True))
    op.create_table("scratch", sa.Column("id", sa.Integer(), primary_key=True))
    op.execute("UPDATE accounts SET tier = 'legacy'")


def downgrade() -> None:
    op.drop_table("scratch")
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.drop_column("tier")
'''


def test_store_behind_the_code_upgrades_and_keeps_data(store_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    """A store at the previous revision is upgraded when opened (with a temporary next migration)."""
    old = Store(store_url)
    _seed(old)
    old.engine.dispose()

    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "9999_add_tier.py").write_text(SECOND_MIGRATION.format(down=SCHEMA_REVISION))
    monkeypatch.setattr(store_module, "MIGRATIONS_DIR", migrations)
    monkeypatch.setattr(store_module, "SCHEMA_REVISION", "9999")
    assert _head(migrations) == "9999"

    new = Store(store_url)
    try:
        assert new.revision() == "9999"
        assert {"scratch", "accounts"} <= set(new.table_names())
        _assert_seeded(new)
        with new.engine.connect() as conn:
            assert conn.execute(text("SELECT id, name, tier FROM accounts")).all() == [("a1", "Acme", "legacy")]
        # Now current: opening again does not run alembic.
        monkeypatch.setattr(command, "upgrade", lambda *a, **k: pytest.fail("ran alembic on a current store"))
        Store(store_url).engine.dispose()
    finally:
        new.engine.dispose()


def test_store_from_a_newer_crmkpi_is_a_store_error(store: Store):
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(StoreError) as info:
        Store(store.url)
    message = str(info.value)
    assert "0999" in message and "\n" not in message
    with store.engine.connect() as conn:  # nothing was dropped
        assert conn.execute(select(Account.__table__.c.id)).all() == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0999"


def test_replicas_opening_a_new_store_together_migrate_it_once(store_url: str):
    """Several processes (service replicas) starting on an empty store: one migrates, the others wait and
    find it done; without the migration lock some of them failed with "already exists" or a locked database."""
    import subprocess
    import sys

    opening = "import sys; from crmkpi.store import Store; Store(sys.argv[1]).engine.dispose()"
    replicas = [subprocess.Popen([sys.executable, "-c", opening, store_url], stderr=subprocess.PIPE, text=True)
                for _ in range(4)]
    errors = [replica.communicate(timeout=120)[1] for replica in replicas]
    assert [r.returncode for r in replicas] == [0, 0, 0, 0], errors
    store = Store(store_url, migrate=False)
    try:
        assert store.revision() == SCHEMA_REVISION
    finally:
        store.engine.dispose()
