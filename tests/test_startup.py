"""Start-up of read-only commands: `embstore recall` opens a reader only (no Feast, no Alembic, no
publisher), and a registry already at the head revision opens without importing Alembic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import clustered_embeddings
from embstore.backends.registry import quick_head
from embstore.backends.schema import head_revision


def _env(home) -> dict:
    env = dict(os.environ, EMBSTORE_HOME=str(home))
    env.pop("EMBSTORE_FAULT_AFTER", None)
    return env


def _imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_the_quick_head_is_alembics_head():
    assert quick_head() == head_revision()


def test_recall_imports_neither_feast_nor_alembic_nor_the_store(store, home):
    store.publish("items", clustered_embeddings(), promote="prod")
    expected = store.recall("items@prod", ids=[3], k=4)[0]
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "embstore.cli", "recall", "items@prod",
                          "--id", "3", "-k", "4", "--json"], env=_env(home), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["ref"] == "items@1" and out["results"][0]["ids"] == expected.ids
    modules = _imported(run.stderr)
    assert "embstore.cli.read" in modules  # the listing is real
    assert not {m for m in modules if m == "feast" or m.startswith(("feast.", "alembic"))}, sorted(
        m for m in modules if m.startswith(("feast", "alembic")))
    assert "embstore.store" not in modules and "embstore.backends.feature_repo" not in modules
    assert not {m for m in modules if m.split(".")[0] in ("pandas", "scipy")}, "pandas or scipy imported: ~0.4 s"


def test_export_reads_without_the_store_too(store, home, tmp_path):
    store.publish("items", clustered_embeddings(), promote="prod")
    out = tmp_path / "v.npz"
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "embstore.cli", "export", "items@prod", str(out)],
                         env=_env(home), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert out.exists() and "feast" not in _imported(run.stderr)


def test_a_registry_at_head_opens_without_alembic(store, home):
    code = ("import sys; from embstore.backends.registry import Registry; "
            f"r = Registry('sqlite:///{home / 'registry.db'}'); r.close(); "
            "print(sorted(m for m in sys.modules if m.startswith('alembic')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]"


def test_an_older_registry_still_upgrades(tmp_path):
    """The quick path only skips Alembic at the head: a registry behind it is upgraded as before."""
    import sqlalchemy as sa

    from embstore.backends import schema
    from embstore.backends.registry import Registry

    url = f"sqlite:///{tmp_path / 'r.db'}"
    engine = schema.make_engine(url)
    schema.upgrade(engine, "0003_valid_from")
    engine.dispose()
    registry = Registry(url)
    assert schema.current_revision(registry.engine) == head_revision()
    with registry.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT counter FROM embstore_changes")).scalar() is not None
    registry.close()
