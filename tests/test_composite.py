"""Composite sets: the weighted concatenation of other sets' versions, published as an ordinary version."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import clustered_embeddings
from embstore.cli import cli
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, EmbeddingsError


def _two_sources(store):
    a = clustered_embeddings(seed=1, dim=8)
    b = clustered_embeddings(seed=2, dim=4)
    b = Embeddings(ids=b.ids[10:], vectors=b.vectors[10:])  # b lacks ids 0..9
    store.publish("homophily", a, promote="prod")
    store.publish("structure", b, promote="prod")
    return a, b


def test_compose_concatenates_weighted_vectors_on_the_shared_ids(store):
    a, b = _two_sources(store)
    v = store.compose("both", ["homophily@prod", "structure@prod"], weights=[1.0, 0.5], promote="prod")
    assert (v.ref, v.dim, v.count, v.aliases, v.producer) == ("both@1", 12, 90, ("prod",), "compose")
    assert v.config["sources"] == ["homophily@1", "structure@1"]  # pinned, not the aliases
    assert v.config["requested"] == ["homophily@prod", "structure@prod"]
    assert v.config["weights"] == [1.0, 0.5] and v.config["ids"] == "intersection"
    assert v.metrics["composite"]["ids_dropped_per_source"] == [10, 0]
    got = store.vectors("both@prod", [10, 42, 99]).matrix
    expected = np.hstack([a.vectors[[10, 42, 99]], 0.5 * b.vectors[[0, 32, 89]]])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(Exception, match="1 of 1 ids are not in both@1"):
        store.vectors("both", [3])
    [res] = store.recall("both@prod", ids=[42], k=5)  # an ordinary version: index, Feast, recall
    assert len(res.ids) == 5 and all(i // 20 == 2 for i in res.ids)
    assert store.online_vectors("both@prod", [42])[0] is not None


def test_compose_again_follows_the_aliases_and_normalize(store):
    _two_sources(store)
    store.compose("both", ["homophily@prod", "structure@prod"])
    store.publish("structure", clustered_embeddings(seed=3, dim=4), promote="prod")
    v2 = store.compose("both", ["homophily@prod", "structure@prod"], normalize=True)
    assert v2.number == 2 and v2.config["sources"] == ["homophily@1", "structure@2"] and v2.count == 100
    m = store.vectors("both@2", [0, 1]).matrix
    np.testing.assert_allclose(np.linalg.norm(m[:, :8], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(m[:, 8:], axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "refs, weights, error, message",
    [
        (["homophily@prod"], None, ConfigError, "at least two source refs"),
        (["homophily@prod", "structure@prod"], [1.0], ConfigError, "1 weights for 2 sources"),
        (["homophily@prod", "structure@prod"], [1.0, -2], ConfigError, "positive"),
        (["homophily@prod", "homophily@1"], None, ConfigError, "appears twice"),
        (["homophily@prod", "strings@1"], None, ConfigError, "share entity and id type"),
        (["homophily@prod", "disjoint@1"], None, EmbeddingsError, "share no ids"),
    ],
)
def test_compose_errors_store_nothing(store, refs, weights, error, message):
    _two_sources(store)
    store.publish("strings", clustered_embeddings(string_ids=True), entity="item_key")
    store.publish("disjoint", Embeddings(ids=np.arange(500, 510), vectors=np.ones((10, 3), np.float32)))
    with pytest.raises(error, match=message):
        store.compose("both", refs, weights)
    assert "both" not in store.sets()


def test_cli_compose(home):
    from embstore.store import EmbeddingStore

    s = EmbeddingStore.init(home, progress=False)
    _two_sources(s)
    s.close()
    result = CliRunner().invoke(cli, ["--home", str(home), "compose", "both", "homophily@prod", "structure@1",
                                      "--weight", "2", "--weight", "1", "--promote", "prod", "--json"])
    assert result.exit_code == 0, result.output
    v = json.loads(result.stdout)
    assert (v["ref"], v["aliases"], v["config"]["weights"], v["dim"]) == ("both@1", ["prod"], [2.0, 1.0], 12)
    bad = CliRunner().invoke(cli, ["--home", str(home), "compose", "both", "homophily@prod", "nope@1"])
    assert bad.exit_code == 1 and "unknown embedding set 'nope'" in bad.output
