"""A publish killed (SIGKILL) after any step leaves the previous version serving,
the new one marked failed, and its leftovers collectable without touching published data."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import clustered_embeddings
from embstore.store import EmbeddingStore

PUBLISHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import clustered_embeddings
    from embstore.store import EmbeddingStore
    store = EmbeddingStore({home!r}, progress=False)
    store.publish("items", clustered_embeddings(seed=2), promote="prod")
    """
)


@pytest.mark.parametrize("step", ["validate", "files", "offline", "feast_apply", "online", "index"])
def test_kill_after_each_step(home, cli_env, step):
    store = EmbeddingStore.init(home, progress=False)
    first = clustered_embeddings(seed=1)
    store.publish("items", first, promote="prod")
    store.close()

    env = dict(cli_env, EMBSTORE_FAULT_AFTER=step)
    code = PUBLISHER.format(tests=str(__import__("pathlib").Path(__file__).parent), home=str(home))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    store = EmbeddingStore(home, progress=False)  # reopening reaps the dead publisher's version
    v1, v2 = store.versions("items")
    assert (v1.status, v2.status) == ("published", "failed")
    assert f"during step {step!r}" in v2.error
    assert store.resolve("items@prod").number == 1 and store.resolve("items").number == 1
    np.testing.assert_array_equal(store.vectors("items@prod", [3]).matrix[0], first.vectors[3])
    assert store.recall("items@prod", ids=[3], k=3)[0].ids
    assert store.gc() == ["items@2"]
    assert not (home / "sets" / "items" / "v2").exists()
    assert store.feast.feature_view_names() == ["items__v1"]
    assert store.publish("items", clustered_embeddings(seed=3), promote="prod").number == 3
