"""The registry schema is owned by Alembic: one head, up and down cleanly, models match it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import pytest

from conftest import POSTGRES_URL
from embstore import registry as reg
from embstore.models import Base
from embstore.settings import with_search_path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.db'}"
        return
    request.getfixturevalue("team_available")
    import uuid

    schema = f"m_{uuid.uuid4().hex[:10]}"
    yield with_search_path(POSTGRES_URL, schema)
    engine = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def test_single_head():
    heads = ScriptDirectory.from_config(reg.alembic_config()).get_heads()
    assert len(heads) == 1


def test_upgrade_from_empty_and_downgrade_back(db_url):
    reg.ensure_pg_schema(db_url)
    engine = reg.make_engine(db_url)
    reg.upgrade(engine)
    assert reg.current_revision(engine) == reg.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert {"embstore_sets", "embstore_versions", "embstore_aliases", "embstore_alias_history"} <= tables
    reg.downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"embstore_alembic_version"}
    engine.dispose()


def test_models_match_the_migrated_schema(db_url):
    reg.ensure_pg_schema(db_url)
    engine = reg.make_engine(db_url)
    reg.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "embstore_alembic_version"})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []


def test_opening_a_registry_upgrades_it_and_keeps_data(db_url):
    url = db_url
    r = reg.Registry(url)
    r.begin_version("items", "item_id", "p", "p", "1", {}, "faiss", {}, None)
    r.close()
    again = reg.Registry(url)
    assert [v.number for v in again.versions("items")] == [1]
    again.close()
