"""The registry schema is owned by Alembic: one head, up and down cleanly, models match it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from embstore import registry as reg
from embstore.models import Base


def test_single_head():
    heads = ScriptDirectory.from_config(reg.alembic_config()).get_heads()
    assert len(heads) == 1


def test_upgrade_from_empty_and_downgrade_back(tmp_path):
    engine = reg.make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    reg.upgrade(engine)
    assert reg.current_revision(engine) == reg.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert {"embstore_sets", "embstore_versions", "embstore_aliases", "embstore_alias_history"} <= tables
    reg.downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"embstore_alembic_version"}


def test_models_match_the_migrated_schema(tmp_path):
    engine = reg.make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    reg.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "embstore_alembic_version"})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_opening_a_registry_upgrades_it_and_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    r = reg.Registry(url)
    r.begin_version("items", "item_id", "p", "p", "1", {}, "faiss", {}, None)
    r.close()
    again = reg.Registry(url)
    assert [v.number for v in again.versions("items")] == [1]
