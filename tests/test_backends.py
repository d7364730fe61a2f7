"""Backends are chosen by configuration: a built-in name or a class path, like Feast's stores."""

from __future__ import annotations

import textwrap

import pytest

from conftest import clustered_embeddings
from embstore.errors import ConfigError
from embstore.store import EmbeddingStore


def test_a_team_backend_class_by_its_path(home, tmp_path, monkeypatch):
    (tmp_path / "our_backend.py").write_text(textwrap.dedent('''
        from embstore.backends.embedded import EmbeddedBackend

        class OurBackend(EmbeddedBackend):
            """The embedded default with the registry in a file of our naming."""
            name = "ours"

            def registry_url(self):
                return f"sqlite:///{self.home / 'our_registry.db'}"
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    store = EmbeddingStore.init(home, progress=False, backend="our_backend:OurBackend")
    store.publish("items", clustered_embeddings())
    assert type(store.backend).__name__ == "OurBackend" and (home / "our_registry.db").exists()
    assert not (home / "registry.db").exists()
    assert store.recall("items", ids=[0], k=3)[0].ids
    store.close()


@pytest.mark.parametrize("backend, message", [
    ("nosuch", "is not embedded, team or a class path"),
    ("no_such_module:Backend", "cannot load no_such_module:Backend"),
    ("embstore.errors:ConfigError", "is not an embstore.backends.Backend subclass"),
])
def test_an_unknown_backend_is_one_clear_error_and_writes_nothing(home, backend, message):
    with pytest.raises(ConfigError, match=message):
        EmbeddingStore.init(home, backend=backend)
    assert not home.exists()


def test_the_team_backend_names_the_settings_it_lacks(home):
    with pytest.raises(ConfigError, match="backend 'team' needs postgres_url and redis_url"):
        EmbeddingStore.init(home, backend="team", postgres_url="postgresql+psycopg://x@127.0.0.1/db")
    assert not home.exists()
