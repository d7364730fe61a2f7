"""EGES: side-information-weighted skip-gram on walks; cold-start vectors from side info alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embstore.config import parse_config
from embstore.errors import InputError
from embstore.inputs import Inputs, InputSpec
from embstore_plugins.eges import EGES, EgesConfig

CLUSTERS, PER = 4, 15
FAST = {"dim": 16, "walk_length": 10, "walks_per_node": 8, "window": 2, "epochs": 4, "batch_size": 512,
        "learning_rate": 0.02}


def _cluster(item: str) -> int:
    return int(item.split("_")[0][1:])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """4 communities of 15 items: 90% of edges inside a community; genre names the community,
    tags are multi-valued (the community's tag plus a random one), brand is noise."""
    d = tmp_path_factory.mktemp("eges")
    rng = np.random.default_rng(0)
    items = [f"c{c}_i{i}" for c in range(CLUSTERS) for i in range(PER)]
    src, dst = [], []
    for a in items:
        for _ in range(4):
            c = _cluster(a) if rng.random() < 0.9 else int(rng.integers(CLUSTERS))
            b = f"c{c}_i{int(rng.integers(PER))}"
            if b != a:
                src.append(a)
                dst.append(b)
    pd.DataFrame({"src": src, "dst": dst}).to_csv(d / "edges.csv", index=False)
    side = pd.DataFrame({
        "item_id": items,
        "genre": [f"g{_cluster(i)}" for i in items],
        "tags": [f"t{_cluster(i)}|x{int(rng.integers(5))}" for i in items],
        "brand": [f"b{int(rng.integers(3))}" for i in items],
    })
    side.to_csv(d / "side.csv", index=False)
    new = pd.DataFrame({"item_id": ["cold_0", "cold_2", "c1_i3"], "genre": ["g0", "g2", "g1"],
                        "tags": ["t0", "t2|x1", "t1"], "brand": ["b1", "b9_unseen", "b0"]})
    new.to_csv(d / "new.csv", index=False)
    return d


def _fit(d, **extra):
    cfg = parse_config(EgesConfig, {**FAST, **extra}, "eges")
    inputs = Inputs([InputSpec("edges", d / "edges.csv"), InputSpec("side_info", d / "side.csv")])
    return EGES().fit(inputs, cfg, progress=False), cfg


@pytest.fixture(scope="module")
def fitted(planted):
    return _fit(planted)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_shapes_state_and_loss_decreases(fitted):
    emb, cfg = fitted
    emb = emb.validated()
    assert emb.vectors.shape == (CLUSTERS * PER, cfg.dim)
    assert sorted(emb.ids.tolist()) == sorted(f"c{c}_i{i}" for c in range(CLUSTERS) for i in range(PER))
    losses = emb.metadata["epoch_losses"]
    assert len(losses) == cfg.epochs and losses[-1] < losses[0]
    assert emb.metadata["fields"] == ["genre", "tags", "brand"]
    assert emb.metadata["field_values"] == {"genre": 4, "tags": 9, "brand": 3}  # t0..t3 and x0..x4 split apart
    assert emb.state["attention"].shape == (CLUSTERS * PER, 4)


def test_vectors_follow_the_communities(fitted):
    emb, _ = fitted
    x = _unit(emb.vectors)
    c = np.array([_cluster(i) for i in emb.ids])
    sims = x @ x.T
    same = sims[(c[:, None] == c[None, :]) & ~np.eye(len(c), dtype=bool)].mean()
    other = sims[c[:, None] != c[None, :]].mean()
    assert same > other + 0.2


def test_cold_start_lands_near_items_sharing_side_info(fitted, planted):
    emb, cfg = fitted
    out = EGES().infer(emb.state, Inputs([InputSpec("side_info", planted / "new.csv")]), cfg).validated()
    assert out.ids.tolist() == ["cold_0", "cold_2", "c1_i3"]
    assert out.metadata == {"cold_items": 2, "known_items": 1}
    known = emb.ids.tolist().index("c1_i3")
    np.testing.assert_allclose(out.vectors[2], emb.vectors[known], rtol=1e-5, atol=1e-6)  # trained vector
    x = _unit(emb.vectors)
    c = np.array([_cluster(i) for i in emb.ids])
    for row, cluster in ((0, 0), (1, 2)):
        sims = x @ _unit(out.vectors[row : row + 1])[0]
        assert sims[c == cluster].mean() > sims[c != cluster].mean() + 0.2
        top = np.argsort(-sims)[:10]
        assert (c[top] == cluster).mean() >= 0.8


def test_same_seed_same_vectors_other_seed_differs(planted, fitted):
    again, _ = _fit(planted)
    np.testing.assert_array_equal(again.vectors, fitted[0].vectors)
    other, _ = _fit(planted, seed=1)
    assert not np.array_equal(other.vectors, fitted[0].vectors)


def test_early_stopping_ends_before_the_budget(planted):
    emb, _ = _fit(planted, epochs=30, patience=1, min_delta=0.5, walks_per_node=2)
    assert emb.metadata["stopped_early"] and emb.metadata["epochs_run"] < 30


def test_side_info_that_does_not_match_the_graph(planted, tmp_path):
    side = pd.read_csv(planted / "side.csv")
    side.iloc[3:].to_csv(tmp_path / "partial.csv", index=False)
    cfg = parse_config(EgesConfig, FAST, "eges")
    inputs = Inputs([InputSpec("edges", planted / "edges.csv"), InputSpec("side_info", tmp_path / "partial.csv")])
    with pytest.raises(InputError, match=r"no row for 3 of 60 graph items, e.g. 'c0_i0'"):
        EGES().fit(inputs, cfg)
    side.assign(item_id=range(len(side))).to_csv(tmp_path / "ints.csv", index=False)
    inputs = Inputs([InputSpec("edges", planted / "edges.csv"), InputSpec("side_info", tmp_path / "ints.csv")])
    with pytest.raises(InputError, match="same kind of ids"):
        EGES().fit(inputs, cfg)
    inputs = Inputs([InputSpec("edges", planted / "edges.csv"), InputSpec("side_info", planted / "side.csv")])
    with pytest.raises(InputError, match="no column 'colour'"):
        EGES().fit(inputs, parse_config(EgesConfig, {**FAST, "side_fields": ["colour"]}, "eges"))


def test_cold_item_without_any_known_value_is_an_error(fitted, tmp_path):
    emb, cfg = fitted
    pd.DataFrame({"item_id": ["x"], "genre": ["unseen"], "tags": [""], "brand": ["b99"]}).to_csv(
        tmp_path / "x.csv", index=False)
    with pytest.raises(InputError, match="cannot embed 1 new item.*'x'"):
        EGES().infer(emb.state, Inputs([InputSpec("side_info", tmp_path / "x.csv")]), cfg)
    pd.DataFrame({"item_id": ["x"], "genre": ["g0"]}).to_csv(tmp_path / "y.csv", index=False)
    with pytest.raises(InputError, match="no column 'tags'"):
        EGES().infer(emb.state, Inputs([InputSpec("side_info", tmp_path / "y.csv")]), cfg)


def test_publish_infer_and_recall_through_the_store(store, planted):
    v1 = store.run("eges", "items_eges", {"edges": planted / "edges.csv", "side_info": planted / "side.csv"},
                   FAST, promote="prod")
    assert v1.count == CLUSTERS * PER and any(k.startswith("state/") for k in v1.checksums)
    cold = store.infer("items_eges@prod", {"side_info": planted / "new.csv"})
    v2 = store.publish_inferred("items_eges@prod", cold, promote="prod")
    assert (v2.number, v2.count) == (2, CLUSTERS * PER + 2)
    [res] = store.recall("items_eges@prod", ids=["cold_0"], k=10)
    assert sum(_cluster(i) == 0 for i in res.ids if i.startswith("c")) >= 8
    again = store.infer("items_eges@2", {"side_info": planted / "new.csv"})  # state travels with v2
    np.testing.assert_array_equal(again.vectors, cold.vectors)
