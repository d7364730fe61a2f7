"""Plugin discovery and its errors: entry points, the EMBSTORE_PLUGINS override, clear failures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from embstore.cli import cli
from embstore.errors import PluginError
from embstore.catalogue import PluginCatalogue, catalogue

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.delenv("EMBSTORE_PLUGINS", raising=False)
    yield
    monkeypatch.delenv("EMBSTORE_PLUGINS", raising=False)
    catalogue(reload=True)


def test_builtins_come_through_the_entry_point_group():
    reg = PluginCatalogue()
    assert reg.producer("item2vec").name == "item2vec"
    assert reg.retriever("faiss").name == "faiss"
    assert reg.plugins["item2vec"].source == "entry point"
    assert reg.plugins["item2vec"].hooks == ["register_producers"]


def test_development_override_loads_modules(monkeypatch):
    monkeypatch.setenv("EMBSTORE_PLUGINS", "dev_plugins.two_roles")
    reg = PluginCatalogue()
    info = reg.plugins["dev_plugins.two_roles"]
    assert (info.source, info.version, info.producers) == ("EMBSTORE_PLUGINS", "0.0.1", ["two_roles"])
    catalogue(reload=True)
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert listed["dev_plugins.two_roles"]["producers"] == ["two_roles"]


@pytest.mark.parametrize(
    "module, message",
    [
        ("dev_plugins.duplicate", "duplicate producer name 'item2vec'"),
        ("dev_plugins.misspelled", "unknown hook"),
        ("dev_plugins.not_a_producer", "not a Producer subclass"),
        ("dev_plugins.does_not_exist", "cannot be imported"),
    ],
)
def test_plugin_errors_are_clear(monkeypatch, module, message):
    monkeypatch.setenv("EMBSTORE_PLUGINS", module)
    with pytest.raises(PluginError, match=message):
        PluginCatalogue()


def test_unknown_producer_lists_installed():
    with pytest.raises(PluginError, match=r"unknown producer 'nope' \(installed: .*item2vec"):
        PluginCatalogue().producer("nope")


def test_multi_role_producer_publishes_sets_and_moves_aliases_together(store, monkeypatch, tmp_path):
    monkeypatch.setenv("EMBSTORE_PLUGINS", "dev_plugins.two_roles")
    catalogue(reload=True)
    path = tmp_path / "i.csv"
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"], "timestamp": [1, 2, 3]}).to_csv(path, index=False)
    published = store.run("two_roles", "fm", {"interactions": path}, promote="prod")
    assert [(v.set, v.number, v.entity, v.aliases) for v in published] == [
        ("fm_user", 1, "user_id", ("prod",)), ("fm_item", 1, "item_id", ("prod",))
    ]
    user = store.vectors("fm_user@prod", [2]).matrix
    [hit] = store.recall("fm_item@prod", vectors=user, k=2)
    assert sorted(hit.ids) == ["a", "b"]


def test_trace_switch_prints_hook_calls(capsys, monkeypatch):
    monkeypatch.setenv("EMBSTORE_TRACE_PLUGINS", "1")
    PluginCatalogue()
    err = capsys.readouterr().err
    assert "register_producers" in err and "register_retrievers" in err


def test_the_first_import_path_of_the_catalogue_still_works():
    """Plugin packages scaffolded by embstore 0.1 call embstore.plugins.get_registry in their tests."""
    from embstore.plugins import get_registry

    assert get_registry() is catalogue() and "item2vec" in get_registry().producers


def test_the_plugin_author_surface_imports_nothing_of_the_engine():
    """What a plugin imports (contracts, options, inputs, the kit) loads no store, backend or Feast,
    and the top-level names are there on first use."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import embstore.hookspecs, embstore.producer, embstore.retriever, embstore.evaluator, embstore.config\n"
        "import embstore.embeddings, embstore.refs, embstore.errors, embstore.ids, embstore.options\n"
        "import embstore.inputs, embstore.testing\n"
        "engine = [m for m in sys.modules if m.startswith(('embstore.store', 'embstore.versions', 'embstore.backends',"
        " 'embstore.cli', 'embstore.server', 'feast'))]\n"
        "assert not engine, engine\n"
        "from embstore import EmbeddingStore, Embeddings, Producer, hookimpl, Evaluator, PluginConfig\n"
        "assert EmbeddingStore.__module__ == 'embstore.store' and Producer.__module__ == 'embstore.producer'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
