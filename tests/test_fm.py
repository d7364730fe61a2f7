"""fm: a planted interaction is learned, user -> item recall through the store, the inner
product is the model's logit, cold items from side info, determinism, bad configs and inputs;
and the shared negative sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embstore.config import parse_config
from embstore.errors import ConfigError, InputError
from embstore.inputs import Inputs, InputSpec
from embstore.negatives import NegativeSampler
from embstore_plugins.fm import FactorizationMachine, FMConfig, auc_score

GROUPS, USERS, ITEMS_PER_GROUP = 4, 160, 15


def planted(tmp_path: Path, per_user: int = 8, seed: int = 0, rating: bool = False) -> tuple[Path, dict]:
    """Users of group g (user % 4) interact only with items of group g (item // 15).

    Every item is about equally popular, so only the user x item interaction explains the data.
    Returns the file and, per user, the items of their group they did NOT interact with.
    """
    rng = np.random.default_rng(seed)
    rows, unseen = [], {}
    for u in range(USERS):
        g = u % GROUPS
        own = np.arange(g * ITEMS_PER_GROUP, (g + 1) * ITEMS_PER_GROUP)
        chosen = rng.choice(own, per_user, replace=False)
        unseen[u] = sorted(set(own.tolist()) - set(chosen.tolist()))
        for i in chosen:
            rows.append((u, int(i), len(rows), 4.0))
        if rating:  # one disliked item from another group
            rows.append((u, int((g + 1) % GROUPS * ITEMS_PER_GROUP), len(rows), 1.0))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    if not rating:
        frame = frame.drop(columns="rating")
    path = tmp_path / "interactions.csv"
    frame.to_csv(path, index=False)
    return path, unseen


def fit(inputs: dict, **config):
    cfg = parse_config(FMConfig, {"epochs": 15, "dim": 8, **config}, "fm")
    producer = FactorizationMachine()
    specs = [v if isinstance(v, InputSpec) else InputSpec(k, v) for k, v in inputs.items()]
    return producer, producer.fit(Inputs(specs), cfg, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path, unseen = planted(tmp_path_factory.mktemp("fm"))
    producer, result = fit({"interactions": path})
    return producer, result, unseen


def test_fm_learns_a_planted_interaction(trained):
    _, result, unseen = trained
    U, I = result["user"].vectors, result["item"].vectors
    assert list(result["user"].ids) == list(range(USERS))
    assert list(result["item"].ids) == list(range(GROUPS * ITEMS_PER_GROUP))
    labels, scores = [], []
    for u, items in unseen.items():  # held-out affinity: unseen items of the user's own group
        g = u % GROUPS
        other = [i for i in range(GROUPS * ITEMS_PER_GROUP) if i // ITEMS_PER_GROUP != g]
        for i in items + other:
            labels.append(i // ITEMS_PER_GROUP == g)
            scores.append(float(U[u] @ I[i]))
    auc = auc_score(np.array(labels), np.array(scores))
    assert auc > 0.9, auc
    meta = result["user"].metadata
    assert meta["positives"] == USERS * 8 and meta["users"] == USERS
    assert len(meta["epoch_losses"]) == 15 and meta["epoch_losses"][-1] < meta["epoch_losses"][0]


def test_inner_product_is_the_model_logit_minus_global_bias(trained):
    import torch

    producer, result, _ = trained
    U, I = result["user"].vectors, result["item"].vectors
    assert U.shape[1] == I.shape[1] == 8 + 2
    users = torch.tensor([0, 1, 5, 77])
    items = torch.tensor([3, 20, 59, 0])
    feats = (USERS + items).reshape(-1, 1)  # no side info: an item's only feature is its id
    with torch.no_grad():
        logits, _ = producer.model_(users, feats, torch.ones(4, 1))
    ip = (U[users.numpy()] * I[items.numpy()]).sum(1) + result["user"].metadata["global_bias"]
    np.testing.assert_allclose(ip, logits.numpy(), rtol=1e-5, atol=1e-5)


def test_user_to_item_recall_through_the_store(store, tmp_path):
    path, unseen = planted(tmp_path)
    published = store.run("fm", "fm", {"interactions": path}, {"epochs": 15, "dim": 8, "seed": 3},
                          retriever_config={"metric": "ip"}, promote="prod")
    assert [(v.set, v.entity, v.aliases) for v in published] == [
        ("fm_user", "user_id", ("prod",)), ("fm_item", "item_id", ("prod",))
    ]
    assert published[1].retriever_config["metric"] == "ip"
    users = [0, 1, 2, 3, 41, 42]
    hits = store.recall("fm_item@prod", vectors=store.vectors("fm_user@prod", users).matrix, k=5)
    for u, hit in zip(users, hits):
        own = sum(i // ITEMS_PER_GROUP == u % GROUPS for i in hit.ids)
        assert own >= 4, (u, hit.ids)
        assert hit.scores == sorted(hit.scores, reverse=True)


def test_align_to_rotates_users_and_items_together(store, tmp_path):
    """A retrained fm lands on the previous coordinates, and <user, item> -- the model's logit --
    is unchanged: one rotation for both sets."""
    from embstore.versions.alignment import AlignmentError

    path, _ = planted(tmp_path)
    config = {"epochs": 15, "dim": 8}
    first = store.run("fm", "fm", {"interactions": path}, {**config, "seed": 1}, align_to="prod", promote="prod")
    assert [v.aligned_to for v in first] == [None, None]
    second = store.run("fm", "fm", {"interactions": path}, {**config, "seed": 2}, align_to="prod", promote="prod")
    assert [v.aligned_to for v in second] == ["fm_user@1", "fm_item@1"]
    for v in second:
        report = v.metrics["alignment"]
        assert report["joint_with"] == ["fm_item", "fm_user"]
        assert report["residual_after"] < report["residual_before"]
    _, raw = fit({"interactions": path}, **config, seed=2)  # the same model, unrotated
    users = store.vectors("fm_user@prod", raw["user"].ids.tolist()).matrix
    items = store.vectors("fm_item@prod", raw["item"].ids.tolist()).matrix
    np.testing.assert_allclose(users @ items.T, raw["user"].vectors @ raw["item"].vectors.T, atol=1e-4)
    assert not np.allclose(users, raw["user"].vectors, atol=1e-3)  # it did rotate
    with pytest.raises(AlignmentError, match="aligns each onto its own set"):
        store.run("fm", "fm", {"interactions": path}, config, align_to="fm_user@1")
    with pytest.raises(ConfigError, match="evaluate and gates are not supported"):
        store.run("fm", "fm", {"interactions": path}, config, gates=["hr@10>=0.1"])


def test_same_seed_same_vectors_other_seed_other_vectors(tmp_path):
    path, _ = planted(tmp_path, per_user=5)
    _, a = fit({"interactions": path}, epochs=3, seed=11)
    _, b = fit({"interactions": path}, epochs=3, seed=11)
    _, c = fit({"interactions": path}, epochs=3, seed=12)
    for role in ("user", "item"):
        np.testing.assert_array_equal(a[role].vectors, b[role].vectors)
        assert not np.array_equal(a[role].vectors, c[role].vectors)


def test_side_info_fields_and_cold_items(tmp_path):
    """Genre carries the group; an item without interactions is placed by its genre alone."""
    path, _ = planted(tmp_path)
    n_items = GROUPS * ITEMS_PER_GROUP
    cold = [n_items, n_items + 1]  # no interactions: genre g0 and g2
    side = pd.DataFrame({
        "movie": list(range(n_items)) + cold,
        "genres": [f"g{i // ITEMS_PER_GROUP}|all" for i in range(n_items)] + ["g0|all", "g2|all"],
        "title": [f"t{i}" for i in range(n_items + 2)],
    })
    side.to_csv(tmp_path / "side.csv", index=False)
    spec = InputSpec("side_info", tmp_path / "side.csv", {"item_id": "movie"})
    _, result = fit({"interactions": path, "side_info": spec}, side_fields=["genres"])
    meta = result["item"].metadata
    assert meta["cold_items"] == 2 and meta["side_fields"] == {"genres": GROUPS + 1}
    U, I, ids = result["user"].vectors, result["item"].vectors, list(result["item"].ids)
    s0, s2 = U @ I[ids.index(cold[0])], U @ I[ids.index(cold[1])]  # genre g0 vs genre g2
    group = np.arange(USERS) % GROUPS
    assert (s0[group == 0] > s2[group == 0]).mean() > 0.9
    assert (s2[group == 2] > s0[group == 2]).mean() > 0.9


def test_infer_embeds_new_items_as_fit_embeds_cold_ones(tmp_path):
    """infer from side info alone gives what fit gives an item without interactions, lands a new
    item with its genre, and keeps trained items' vectors."""
    path, _ = planted(tmp_path)
    n_items = GROUPS * ITEMS_PER_GROUP
    side = pd.DataFrame({"item_id": list(range(n_items)) + [n_items],
                         "genres": [f"g{i // ITEMS_PER_GROUP}|all" for i in range(n_items)] + ["g1|all"]})
    side.to_csv(tmp_path / "side.csv", index=False)
    _, result = fit({"interactions": path, "side_info": tmp_path / "side.csv"})
    item = result["item"]
    # 700 has the side info of item 60, which fit embedded from side info alone (no interactions)
    pd.DataFrame({"item_id": [700, 500, 3], "genres": ["g1|all", "g3|new_genre", "g0|all"]}).to_csv(
        tmp_path / "new.csv", index=False)
    cfg = parse_config(FMConfig, {"epochs": 15, "dim": 8}, "fm")
    out = FactorizationMachine().infer(item.state, Inputs([InputSpec("side_info", tmp_path / "new.csv")]), cfg)
    assert out.ids.tolist() == [700, 500, 3] and out.metadata == {"new_items": 2, "known_items": 1}
    rows = list(item.ids)
    np.testing.assert_allclose(out.vectors[0], item.vectors[rows.index(n_items)], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.vectors[2], item.vectors[3])
    scores = result["user"].vectors @ out.vectors[1]  # genre g3 (the unseen value is ignored)
    group = np.arange(USERS) % GROUPS
    assert scores[group == 3].mean() > max(scores[group == g].mean() for g in (0, 1, 2))

    pd.DataFrame({"item_id": [501], "genres": ["unheard_of"]}).to_csv(tmp_path / "lost.csv", index=False)
    with pytest.raises(InputError, match="cannot embed 1 new item.*e.g. 501: none of their values"):
        FactorizationMachine().infer(item.state, Inputs([InputSpec("side_info", tmp_path / "lost.csv")]), cfg)
    with pytest.raises(ConfigError, match="new users need interactions"):
        FactorizationMachine().infer(result["user"].state, Inputs([InputSpec("side_info", tmp_path / "new.csv")]), cfg)


def test_infer_and_publish_new_items_through_the_store(store, tmp_path):
    path, _ = planted(tmp_path)
    n_items = GROUPS * ITEMS_PER_GROUP
    pd.DataFrame({"item_id": range(n_items), "genres": [f"g{i // ITEMS_PER_GROUP}" for i in range(n_items)]}).to_csv(
        tmp_path / "side.csv", index=False)
    store.run("fm", "fm", {"interactions": path, "side_info": tmp_path / "side.csv"}, {"epochs": 15, "dim": 8},
              promote="prod")
    pd.DataFrame({"item_id": [900, 901], "genres": ["g2", "g0"]}).to_csv(tmp_path / "new.csv", index=False)
    new = store.infer("fm_item@prod", {"side_info": tmp_path / "new.csv"})
    v2 = store.publish_inferred("fm_item@prod", new, promote="prod")
    assert (v2.set, v2.count, v2.retriever_config["metric"]) == ("fm_item", n_items + 2, "ip")
    [hit] = store.recall("fm_item@prod", vectors=store.vectors("fm_user@prod", [2]).matrix, k=n_items + 2)
    assert hit.ids.index(900) < hit.ids.index(901)  # user 2 is in group 2
    with pytest.raises(ConfigError, match="new users need interactions"):
        store.infer("fm_user@prod", {"side_info": tmp_path / "new.csv"})


def test_interaction_weights_weigh_the_loss(tmp_path):
    """Every user touches items of two groups; the weight column says which group they mean."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(USERS):
        g, other = u % GROUPS, (u + 1) % GROUPS
        for i in rng.choice(ITEMS_PER_GROUP, 6, replace=False):
            rows.append((u, int(g * ITEMS_PER_GROUP + i), len(rows), 5.0))
            rows.append((u, int(other * ITEMS_PER_GROUP + i), len(rows), 0.05))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"])
    frame.to_csv(tmp_path / "weighted.csv", index=False)
    _, result = fit({"interactions": tmp_path / "weighted.csv"})
    scores = result["user"].vectors @ result["item"].vectors.T
    item_group = np.asarray(result["item"].ids) // ITEMS_PER_GROUP
    users = np.asarray(result["user"].ids)
    meant = np.array([scores[r, item_group == u % GROUPS].mean() for r, u in enumerate(users)])
    barely = np.array([scores[r, item_group == (u + 1) % GROUPS].mean() for r, u in enumerate(users)])
    assert (meant > barely).mean() > 0.9
    frame.assign(weight=frame.weight * -1).to_csv(tmp_path / "negative.csv", index=False)
    with pytest.raises(InputError, match="weight of data row 1 is -5.0.*finite number >= 0"):
        fit({"interactions": tmp_path / "negative.csv"})


def test_ratings_threshold_low_ratings_and_bias_columns(tmp_path):
    path, _ = planted(tmp_path, rating=True)
    _, result = fit({"interactions": path}, min_rating=3.5, epochs=2)
    meta = result["user"].metadata
    assert (meta["positives"], meta["explicit_negatives"]) == (USERS * 8, USERS)
    _, dropped = fit({"interactions": path}, min_rating=3.5, low_ratings="drop", epochs=2, bias_columns=False)
    meta = dropped["user"].metadata
    assert (meta["explicit_negatives"], meta["dropped_low_ratings"]) == (0, USERS)
    assert dropped["user"].vectors.shape[1] == dropped["item"].vectors.shape[1] == 8


def test_progress_bar_shows_loss(tmp_path, capsys):
    path, _ = planted(tmp_path, per_user=3)
    cfg = parse_config(FMConfig, {"epochs": 2}, "fm")
    FactorizationMachine().fit(Inputs([InputSpec("interactions", path)]), cfg, progress=True)
    err = capsys.readouterr().err
    assert "fm" in err and "loss" in err and "auc" in err


@pytest.mark.parametrize("config, match", [
    ({"min_rating": 3.5}, "needs a rating column"),
    ({"side_fields": ["genres"]}, "needs side information"),
    ({"negatives": 0}, "needs negatives"),
])
def test_config_that_does_not_fit_the_input_is_an_input_error(tmp_path, config, match):
    path, _ = planted(tmp_path, per_user=3)
    with pytest.raises(InputError, match=match):
        fit({"interactions": path}, epochs=1, **config)


@pytest.mark.parametrize("values, match", [
    ({"dims": 8}, "unknown key 'dims'"),
    ({"dim": 0}, "dim=0"),
    ({"learning_rate": -1}, "learning_rate"),
    ({"low_ratings": "keep"}, "low_ratings"),
    ({"negative_exponent": float("nan")}, "negative_exponent"),
])
def test_bad_config_values_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(FMConfig, values, "producer 'fm'")


def test_side_info_problems_name_the_fix(tmp_path):
    path, _ = planted(tmp_path, per_user=3)
    pd.DataFrame({"item_id": [0, 1], "genres": ["a", "b"]}).to_csv(tmp_path / "side.csv", index=False)
    with pytest.raises(InputError, match=r"side_fields \['genre'\] are not columns.*genres"):
        fit({"interactions": path, "side_info": tmp_path / "side.csv"}, side_fields=["genre"], epochs=1)
    pd.DataFrame({"item_id": ["x", "y"], "genres": ["a", "b"]}).to_csv(tmp_path / "side2.csv", index=False)
    with pytest.raises(InputError, match="item ids of interactions are integers but those of side_info"):
        fit({"interactions": path, "side_info": tmp_path / "side2.csv"}, epochs=1)
    pd.DataFrame({"item_id": [900, 901], "genres": ["a", "b"]}).to_csv(tmp_path / "side3.csv", index=False)
    with pytest.raises(InputError, match="no item of side_info"):
        fit({"interactions": path, "side_info": tmp_path / "side3.csv"}, epochs=1)


def test_store_rejects_unused_inputs_for_fm(store, tmp_path):
    path, _ = planted(tmp_path, per_user=3)
    with pytest.raises(InputError, match="does not use input"):
        store.run("fm", "fm", {"interactions": path, "edges": path})
    assert store.sets() == []


# ---------------------------------------------------------------- embstore.negatives


def test_negative_sampler_never_returns_a_seen_item_and_is_seeded():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 2000)
    items = rng.integers(0, 40, 2000)
    sampler = NegativeSampler(40, users, items)
    draws = sampler.sample(np.arange(50), 30, np.random.default_rng(1))
    assert draws.shape == (50, 30)
    assert not sampler.is_seen(np.repeat(np.arange(50), 30), draws.ravel()).any()
    again = sampler.sample(np.arange(50), 30, np.random.default_rng(1))
    np.testing.assert_array_equal(draws, again)


def test_negative_sampler_candidates_popularity_and_full_users():
    users = np.array([0, 0, 0, 1, 1])
    items = np.array([0, 1, 2, 3, 3])
    s = NegativeSampler(6, users, items, candidates=[0, 1, 2, 3, 4])
    draws = s.sample(np.array([0] * 100), 3, np.random.default_rng(0))
    assert set(draws.ravel()) <= {3, 4}  # 5 is not a candidate; 0-2 are seen
    pop = NegativeSampler(6, users, items, exponent=1.0)
    assert set(pop.sample(np.array([2] * 50), 4, np.random.default_rng(0)).ravel()) <= {0, 1, 2, 3}
    with pytest.raises(InputError, match="interacted with all 3 candidate items"):
        NegativeSampler(6, users, items, candidates=[0, 1, 2])


def test_fm_passes_the_conformance_kit():
    from embstore.testing import check_producer

    assert check_producer(FactorizationMachine).ok
