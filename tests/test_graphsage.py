"""GraphSAGE: sampled-neighbourhood aggregation, unsupervised walk loss, inductive inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embstore.config import parse_config
from embstore.errors import ConfigError, InputError
from embstore.graph import Graph
from embstore.inputs import Inputs, InputSpec
from embstore.sampling import Neighbourhood, walk_pairs
from embstore.sequences import Sequences
from embstore_plugins.graphsage import GraphSage, GraphSageConfig

CLUSTERS, PER, FEATS = 4, 20, 12
FAST = {"dim": 16, "hidden_dim": 32, "pool_dim": 32, "fanouts": [5, 5], "walks_per_node": 4, "epochs": 3,
        "batch_size": 128, "learning_rate": 0.01}


def _cluster(node) -> int:
    return int(node) // PER


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """4 communities of 20 nodes (ids 0..79): 90% of edges inside a community; features are a noisy
    one-hot-ish signal of the community (sparse, saved as .npz, row i = node i). Node 79 is held
    back from training and comes with its features and three edges into its community."""
    d = tmp_path_factory.mktemp("sage")
    rng = np.random.default_rng(0)
    n = CLUSTERS * PER
    src, dst = [], []
    for a in range(n - 1):
        for _ in range(3):
            c = _cluster(a) if rng.random() < 0.9 else int(rng.integers(CLUSTERS))
            b = c * PER + int(rng.integers(PER))
            if b != a and b != n - 1:
                src.append(a)
                dst.append(b)
    pd.DataFrame({"src": src, "dst": dst}).to_csv(d / "edges.csv", index=False)
    x = (rng.random((n, FEATS)) < 0.15).astype(np.float32)
    for v in range(n):
        x[v, 3 * _cluster(v) : 3 * _cluster(v) + 3] += (rng.random(3) < 0.7)
    frame = pd.DataFrame(x[: n - 1], columns=[f"f{j}" for j in range(FEATS)])
    frame.insert(0, "id", np.arange(n - 1))
    frame.to_csv(d / "features.csv", index=False)
    new = pd.DataFrame(x[n - 1 :], columns=[f"f{j}" for j in range(FEATS)])
    new.insert(0, "id", [n - 1])
    new.to_csv(d / "new_features.csv", index=False)
    pd.DataFrame({"src": [n - 1] * 3, "dst": [60, 65, 70]}).to_csv(d / "new_edges.csv", index=False)
    sp.save_npz(d / "features.npz", sp.csr_matrix(x[: n - 1]))
    return d


def _inputs(d, features="features.csv", edges="edges.csv"):
    return Inputs([InputSpec("edges", d / edges), InputSpec("features", d / features)])


def _fit(d, features="features.csv", **extra):
    cfg = parse_config(GraphSageConfig, {**FAST, **extra}, "graphsage")
    return GraphSage().fit(_inputs(d, features), cfg, progress=False), cfg


@pytest.fixture(scope="module")
def fitted(planted):
    return _fit(planted)


def _separation(ids, vectors) -> float:
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    c = np.array([_cluster(i) for i in ids])
    sims = x @ x.T
    return sims[(c[:, None] == c[None, :]) & ~np.eye(len(c), dtype=bool)].mean() - sims[c[:, None] != c[None, :]].mean()


def test_shapes_loss_and_communities(fitted):
    emb, cfg = fitted
    emb = emb.validated()
    assert emb.vectors.shape == (CLUSTERS * PER - 1, cfg.dim)
    assert emb.ids.dtype.kind == "i" and emb.ids.tolist() == list(range(CLUSTERS * PER - 1))
    losses = emb.metadata["epoch_losses"]
    assert len(losses) == cfg.epochs and losses[-1] < losses[0]
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, rtol=1e-5)
    assert _separation(emb.ids, emb.vectors) > 0.3


def test_inductive_infer_of_an_unseen_node(fitted, planted):
    emb, cfg = fitted
    new = Inputs([InputSpec("features", planted / "new_features.csv"), InputSpec("edges", planted / "new_edges.csv")])
    out = GraphSage().infer(emb.state, new, cfg).validated()
    assert out.ids.tolist() == [CLUSTERS * PER - 1] and out.metadata == {"new_nodes": 1, "known_nodes": 0}
    sims = emb.vectors @ out.vectors[0]
    c = np.array([_cluster(i) for i in emb.ids])
    assert sims[c == 3].mean() > sims[c != 3].mean() + 0.3
    assert (c[np.argsort(-sims)[:10]] == 3).mean() >= 0.8
    # the same new node with sparse features named by id (an .npz with ids)
    from embstore.inputs import save_sparse_features

    row = pd.read_csv(planted / "new_features.csv")
    save_sparse_features(planted / "new_features.npz", sp.csr_matrix(row.drop(columns="id").to_numpy()), row.id)
    sparse = GraphSage().infer(emb.state, Inputs([InputSpec("features", planted / "new_features.npz"),
                                                  InputSpec("edges", planted / "new_edges.csv")]), cfg)
    assert sparse.ids.tolist() == out.ids.tolist()
    np.testing.assert_allclose(sparse.vectors, out.vectors, atol=1e-5)
    # known nodes re-embedded through infer on the unchanged graph get their trained vectors
    known = Inputs([InputSpec("features", planted / "features.csv")])
    again = GraphSage().infer(emb.state, known, cfg)
    np.testing.assert_allclose(again.vectors, emb.vectors, atol=1e-5)


def test_sparse_features_pool_and_pinsage(planted):
    emb, _ = _fit(planted, "features.npz", aggregator="pool", sampler="pinsage", importance_top=5)
    assert emb.metadata["sparse_features"] and emb.metadata["feature_norm"] == "row"
    assert emb.metadata["epoch_losses"][-1] < emb.metadata["epoch_losses"][0]
    assert _separation(emb.ids, emb.vectors) > 0.2
    assert sp.issparse(emb.state["features"])  # kept sparse for infer


@pytest.mark.parametrize("aggregator", ["mean", "pool"])
def test_sparse_and_dense_features_train_the_same_model(planted, aggregator):
    """The sparse first layer (scipy products with their own gradients) is the dense one, faster."""
    sparse, _ = _fit(planted, "features.npz", aggregator=aggregator, feature_norm="row", epochs=2)
    dense, _ = _fit(planted, "features.csv", aggregator=aggregator, feature_norm="row", epochs=2)
    assert sparse.metadata["sparse_features"] and not dense.metadata["sparse_features"]
    np.testing.assert_allclose(sparse.metadata["epoch_losses"], dense.metadata["epoch_losses"], rtol=1e-4)
    np.testing.assert_allclose(sparse.vectors, dense.vectors, atol=1e-3)


def test_the_same_features_from_csv_parquet_or_npz_give_the_same_vectors(planted, tmp_path):
    """feature_norm auto reads what the features are (non-negative, mostly zero: row), not the file type."""
    pd.read_csv(planted / "features.csv").to_parquet(tmp_path / "features.parquet", index=False)
    runs = {name: _fit(planted, path, epochs=2)[0] for name, path in
            [("npz", "features.npz"), ("csv", "features.csv"), ("parquet", tmp_path / "features.parquet")]}
    assert {r.metadata["feature_norm"] for r in runs.values()} == {"row"}
    for name in ("csv", "parquet"):
        np.testing.assert_allclose(runs[name].vectors, runs["npz"].vectors, atol=1e-3)


def test_real_valued_features_are_standardised_from_any_file(planted, tmp_path):
    """Signed, dense-valued features get standard scaling, centred from a sparse file too."""
    frame = pd.read_csv(planted / "features.csv")
    rng = np.random.default_rng(1)
    cols = [c for c in frame.columns if c != "id"]
    frame[cols] = frame[cols] * 3.0 + rng.normal(size=(len(frame), len(cols)))
    frame.to_csv(tmp_path / "signed.csv", index=False)
    sp.save_npz(tmp_path / "signed.npz", sp.csr_matrix(frame[cols].to_numpy(np.float32)))
    dense, _ = _fit(planted, tmp_path / "signed.csv", epochs=2)
    sparse, _ = _fit(planted, tmp_path / "signed.npz", epochs=2)
    assert dense.metadata["feature_norm"] == sparse.metadata["feature_norm"] == "standard"
    np.testing.assert_allclose(sparse.vectors, dense.vectors, atol=1e-3)


def test_same_seed_same_vectors(planted, fitted):
    again, _ = _fit(planted)
    np.testing.assert_array_equal(again.vectors, fitted[0].vectors)


def test_features_that_do_not_match_the_edges(planted, tmp_path):
    frame = pd.read_csv(planted / "features.csv")
    frame.iloc[2:].to_csv(tmp_path / "partial.csv", index=False)
    cfg = parse_config(GraphSageConfig, FAST, "graphsage")
    with pytest.raises(InputError, match=r"no row for 2 node\(s\) in edges, e.g. 0"):
        GraphSage().fit(_inputs(planted, tmp_path / "partial.csv"), cfg)
    frame.assign(id=[f"n{i}" for i in frame.id]).to_csv(tmp_path / "named.csv", index=False)
    with pytest.raises(InputError, match="same ids"):
        GraphSage().fit(_inputs(planted, tmp_path / "named.csv"), cfg)


def test_infer_errors(fitted, planted, tmp_path):
    emb, cfg = fitted
    pd.DataFrame({"id": [500], "f0": [1.0]}).to_csv(tmp_path / "narrow.csv", index=False)
    with pytest.raises(InputError, match="1 columns; the model was trained on 12"):
        GraphSage().infer(emb.state, Inputs([InputSpec("features", tmp_path / "narrow.csv")]), cfg)
    pd.DataFrame({"src": [79], "dst": [1234]}).to_csv(tmp_path / "dangling.csv", index=False)
    bad = Inputs([InputSpec("features", planted / "new_features.csv"), InputSpec("edges", tmp_path / "dangling.csv")])
    with pytest.raises(InputError, match="edge node 1234 is neither a trained node"):
        GraphSage().infer(emb.state, bad, cfg)


def test_config_validation():
    with pytest.raises(ConfigError, match="fanout"):
        parse_config(GraphSageConfig, {"fanouts": [10, 0]}, "graphsage")
    with pytest.raises(ConfigError, match="aggregator"):
        parse_config(GraphSageConfig, {"aggregator": "lstm"}, "graphsage")


def test_sampling_helpers():
    g = Graph.from_edges([0, 0, 1], [1, 2, 2], weight=[1.0, 9.0, 1.0], directed=False, nodes=[3])
    rng = np.random.default_rng(0)
    hood = Neighbourhood.of_graph(g, weighted=True)
    nb = hood.sample(np.array([0, 3]), 2000, rng)
    assert set(nb[0]) == {1, 2} and 0.85 < (nb[0] == 2).mean() < 0.95  # ∝ weight 9 : 1
    assert (nb[1] == 3).all()  # an isolated node samples itself
    uniform = Neighbourhood.of_graph(g).sample(np.array([0]), 2000, rng)
    assert 0.45 < (uniform == 2).mean() < 0.55
    walks = Sequences(vocab=g.ids, codes=np.array([0, 1, 2, 3], np.int32), offsets=np.array([0, 3, 4]))
    centers, contexts = walk_pairs(walks, window=2)
    assert sorted(zip(centers.tolist(), contexts.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    imp = Neighbourhood.importance(g, top=1, walks_per_node=50, walk_length=3)
    assert imp.indices[imp.indptr[1] : imp.indptr[2]].tolist() == [0] or \
        imp.indices[imp.indptr[1] : imp.indptr[2]].tolist() == [2]
    assert np.diff(imp.indptr).tolist() == [1, 1, 1, 0]


def test_publish_infer_and_recall_through_the_store(store, planted):
    v1 = store.run("graphsage", "nodes_sage", {"edges": planted / "edges.csv", "features": planted / "features.csv"},
                   FAST, promote="prod")
    assert v1.count == CLUSTERS * PER - 1 and v1.entity == "node_id"
    new = store.infer("nodes_sage@prod", {"features": planted / "new_features.csv",
                                          "edges": planted / "new_edges.csv"})
    v2 = store.publish_inferred("nodes_sage@prod", new, promote="prod")
    assert (v2.number, v2.count) == (2, CLUSTERS * PER)
    [res] = store.recall("nodes_sage@prod", ids=[CLUSTERS * PER - 1], k=10)
    assert sum(_cluster(i) == 3 for i in res.ids) >= 8
