"""The registry schema is owned by Alembic: one head, up and down cleanly, models match it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import pytest

from conftest import POSTGRES_URL
from embstore.backends import registry as reg
from embstore.backends import schema
from embstore.models import Base
from embstore.backends.team import with_search_path


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
    heads = ScriptDirectory.from_config(schema.alembic_config()).get_heads()
    assert len(heads) == 1


def test_upgrade_from_empty_and_downgrade_back(db_url):
    schema.ensure_pg_schema(db_url)
    engine = schema.make_engine(db_url)
    schema.upgrade(engine)
    assert schema.current_revision(engine) == schema.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert {"embstore_sets", "embstore_versions", "embstore_aliases", "embstore_alias_history"} <= tables
    schema.downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"embstore_alembic_version"}
    engine.dispose()


def test_models_match_the_migrated_schema(db_url):
    schema.ensure_pg_schema(db_url)
    engine = schema.make_engine(db_url)
    schema.upgrade(engine)
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


def test_a_store_at_0001_upgrades_to_head_keeping_its_data(db_url):
    """A registry written by the first schema (before 0002 added versions.aligned_to) opens at head
    with every set, version, alias and alias move intact."""
    schema.ensure_pg_schema(db_url)
    engine = schema.make_engine(db_url)
    schema.upgrade(engine, "0001_initial")
    now = "2026-01-02 03:04:05+00:00"
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO embstore_sets (name, entity, producer, created_at) "
                             "VALUES ('items', 'item_id', 'item2vec', :t)"), {"t": now})
        set_id = conn.execute(sa.text("SELECT id FROM embstore_sets WHERE name = 'items'")).scalar_one()
        for number, status in ((1, "published"), (2, "published"), (3, "failed")):
            conn.execute(sa.text(
                "INSERT INTO embstore_versions (set_id, number, status, step, producer, plugin, plugin_version, "
                "config, retriever, retriever_config, dim, count, metrics, checksums, error, created_at, "
                "published_at, updated_at) VALUES (:set, :n, :s, :s, 'item2vec', 'item2vec', '0.1.0', "
                "'{\"dim\": 8}', 'faiss', '{}', 8, 100, '{\"loss\": 0.5}', '{}', :e, :t, :t, :t)"
            ), {"set": set_id, "n": number, "s": status, "e": "boom" if status == "failed" else None, "t": now})
        vid = dict(conn.execute(sa.text("SELECT number, id FROM embstore_versions")).all())
        conn.execute(sa.text("INSERT INTO embstore_aliases (set_id, name, version_id, updated_at) "
                             "VALUES (:set, 'prod', :v, :t)"), {"set": set_id, "v": vid[1], "t": now})
        for v, prev, action in [(1, None, "promote"), (2, 1, "promote"), (1, 2, "rollback")]:
            conn.execute(sa.text(
                "INSERT INTO embstore_alias_history (set_id, alias, version_id, previous_version_id, action, "
                "moved_at) VALUES (:set, 'prod', :v, :p, :a, :t)"),
                {"set": set_id, "v": vid[v], "p": vid.get(prev), "a": action, "t": now})
    assert schema.current_revision(engine) == "0001_initial"
    engine.dispose()

    r = reg.Registry(db_url)  # opening upgrades to head
    assert schema.current_revision(r.engine) == schema.head_revision() != "0001_initial"
    versions = r.versions("items")
    assert [(v.number, v.status, v.dim, v.count, v.config, v.metrics, v.aligned_to) for v in versions] == [
        (1, "published", 8, 100, {"dim": 8}, {"loss": 0.5}, None),
        (2, "published", 8, 100, {"dim": 8}, {"loss": 0.5}, None),
        (3, "failed", 8, 100, {"dim": 8}, {"loss": 0.5}, None),
    ]
    assert versions[2].error == "boom" and versions[0].aliases == ("prod",)
    assert r.resolve("items@prod").number == 1
    assert [(h["version"], h["previous"], h["action"]) for h in r.alias_history("items")] == [
        (1, None, "promote"), (2, 1, "promote"), (1, 2, "rollback")
    ]
    r.update_version("items", 2, aligned_to="items@1")  # the new column takes data
    assert r.version("items", 2).aligned_to == "items@1"
    assert r.rollback("items", "prod").number == 2  # history still drives rollback
    r.close()


def test_0003_gives_existing_versions_their_build_time_as_valid_from_and_downgrades(db_url):
    """Versions published before valid-from existed keep being joined from their build time."""
    schema.ensure_pg_schema(db_url)
    engine = schema.make_engine(db_url)
    schema.upgrade(engine, "0002_aligned_to")
    built = "2026-01-02 03:04:05+00:00"
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO embstore_sets (name, entity, producer, created_at) "
                             "VALUES ('items', 'item_id', 'item2vec', :t)"), {"t": built})
        set_id = conn.execute(sa.text("SELECT id FROM embstore_sets")).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO embstore_versions (set_id, number, status, step, producer, plugin, plugin_version, "
            "config, retriever, retriever_config, metrics, checksums, created_at, updated_at) "
            "VALUES (:set, 1, 'published', 'published', 'item2vec', 'item2vec', '0.1.0', '{}', 'faiss', '{}', "
            "'{}', '{}', :t, :t)"), {"set": set_id, "t": built})
    engine.dispose()
    r = reg.Registry(db_url)  # opening upgrades to head
    (v,) = r.versions("items")
    assert v.valid_from == v.created_at and v.valid_from.isoformat() == "2026-01-02T03:04:05+00:00"
    assert v.as_dict()["valid_from"] == "2026-01-02T03:04:05+00:00"
    schema.downgrade(r.engine, "0002_aligned_to")
    columns = {c["name"] for c in sa.inspect(r.engine).get_columns("embstore_versions")}
    assert "valid_from" not in columns and "aligned_to" in columns
    with r.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT number FROM embstore_versions")).scalars().all() == [1]
    schema.upgrade(r.engine)
    r.close()
