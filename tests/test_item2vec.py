"""item2vec and the shared skip-gram trainer: planted structure, determinism, configs, bad input."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embstore.config import parse_config
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, InputError
from embstore.sequences import Sequences
from embstore.skipgram import MAX_SEQUENCE_TOKENS, SkipGramConfig, train_skipgram
from embstore_plugins.item2vec import Item2Vec, Item2VecConfig, register_producers, resolved_epochs


def planted_sequences(
    n_clusters: int = 8,
    items_per_cluster: int = 25,
    n_users: int = 400,
    items_per_user: int = 20,
    seed: int = 0,
    ids: str = "int",
) -> tuple[Sequences, np.ndarray]:
    """Users who each consume ~items_per_user items of one cluster, in random order.

    Returns the sequences and each vocabulary item's cluster.
    """
    rng = np.random.default_rng(seed)
    n_items = n_clusters * items_per_cluster
    if ids == "int":
        vocab = np.arange(n_items, dtype=np.int64) * 7 + 1000
    else:
        vocab = np.array([f"item-{i:03d}" for i in range(n_items)], dtype=object)
    cluster = np.arange(n_items) // items_per_cluster
    seqs = []
    for u in range(n_users):
        c = u % n_clusters
        k = int(rng.integers(items_per_user - 5, items_per_user + 6))
        seqs.append(c * items_per_cluster + rng.choice(items_per_cluster, size=k, replace=False))
    return Sequences.from_lists(vocab, seqs), cluster


class FakeInputs:
    """Stands in for embstore.inputs.Inputs: hands out fixed sequences, records the options."""

    def __init__(self, sequences: Sequences):
        self._sequences = sequences
        self.calls: list[dict] = []

    def sequences(self, min_rating=None, session_gap=None) -> Sequences:
        self.calls.append({"min_rating": min_rating, "session_gap": session_gap})
        return self._sequences

    def require(self, kinds, producer) -> None:
        pass


def top_k_same_cluster(vectors: np.ndarray, cluster: np.ndarray, k: int = 5) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :k]
    return float((cluster[top] == cluster[:, None]).mean())


def fit(sequences: Sequences, **config) -> Embeddings:
    cfg = parse_config(Item2VecConfig, config, "producer item2vec")
    return Item2Vec().fit(FakeInputs(sequences), cfg, progress=False)


# -- planted structure -----------------------------------------------------------


@pytest.mark.parametrize("window", [5, "all"])
def test_neighbours_recover_planted_clusters(window):
    seqs, cluster = planted_sequences()
    emb = fit(seqs, dim=32, epochs=10, window=window, seed=1).validated()
    assert len(emb) == seqs.vocab.shape[0]
    assert emb.dim == 32
    # map returned ids back to their cluster
    pos = {v: i for i, v in enumerate(seqs.vocab.tolist())}
    got_cluster = cluster[[pos[i] for i in emb.ids.tolist()]]
    assert top_k_same_cluster(emb.vectors, got_cluster, k=5) >= 0.8
    m = emb.metadata
    assert m["vocab_size"] == 200 and len(m["epoch_losses"]) == 10
    assert m["tokens_per_epoch"] == seqs.n_tokens and m["train_seconds"] >= 0


@pytest.mark.parametrize("kind", ["int", "str"])
def test_ids_keep_the_input_id_type(kind):
    seqs, _ = planted_sequences(n_users=80, ids=kind)
    emb = fit(seqs, dim=8, epochs=1)
    assert set(emb.ids.tolist()) <= set(seqs.vocab.tolist())
    if kind == "int":
        assert emb.ids.dtype.kind == "i"
    else:
        assert all(isinstance(i, str) for i in emb.ids.tolist())
    assert emb.vectors.dtype == np.float32
    emb.validated()


def test_input_options_are_passed_to_inputs():
    seqs, _ = planted_sequences(n_users=40)
    fake = FakeInputs(seqs)
    cfg = parse_config(Item2VecConfig, {"min_rating": 3.5, "session_gap": 3600, "epochs": 1, "min_count": 1}, "x")
    Item2Vec().fit(fake, cfg, progress=False)
    assert fake.calls == [{"min_rating": 3.5, "session_gap": 3600.0}]


def test_fit_through_real_inputs_on_a_csv(tmp_path):
    """The real Inputs: CSV -> per-user sequences; min_rating drops rows, session_gap splits."""
    from embstore.inputs import Inputs, InputSpec

    seqs, cluster = planted_sequences(n_users=240, seed=5)
    rng = np.random.default_rng(5)
    rows = []
    for u, seq in enumerate(seqs):
        t = 1_700_000_000 + u * 100_000
        for j, code in enumerate(seq.tolist()):
            rows.append(f"u{u},{seqs.vocab[code]},{t + j * 60},{rng.choice([3.5, 4.0, 5.0])}")
            # a disliked item from another cluster after every item: noise that min_rating removes
            other = (code + 25 * int(rng.integers(1, 8))) % 200
            rows.append(f"u{u},{seqs.vocab[other]},{t + j * 60 + 30},1.0")
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    inputs = Inputs([InputSpec("interactions", path, {})])

    cfg = parse_config(Item2VecConfig, {"dim": 32, "epochs": 10, "min_rating": 3.0, "seed": 1}, "x")
    emb = Item2Vec().fit(inputs, cfg, progress=False).validated()
    assert emb.ids.dtype == np.int64 and set(emb.ids.tolist()) <= set(seqs.vocab.tolist())
    pos = {v: i for i, v in enumerate(seqs.vocab.tolist())}
    got_cluster = cluster[[pos[i] for i in emb.ids.tolist()]]
    assert top_k_same_cluster(emb.vectors, got_cluster, k=5) >= 0.8
    assert emb.metadata["sequences"] == 240
    assert emb.metadata["tokens_per_epoch"] == seqs.n_tokens  # the 1.0-rated rows were dropped

    # every event 30 s apart: a 10 s gap leaves only one-item sessions
    cfg = parse_config(Item2VecConfig, {"session_gap": 10, "epochs": 1}, "x")
    with pytest.raises(InputError, match="session_gap=10"):
        Item2Vec().fit(inputs, cfg, progress=False)


# -- determinism -----------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    from embstore.sequences import Sequences
    from embstore.skipgram import SkipGramConfig, train_skipgram
    d = np.load(sys.argv[1], allow_pickle=True)
    seqs = Sequences(vocab=d["vocab"], codes=d["codes"], offsets=d["offsets"])
    codes, vectors, _ = train_skipgram(seqs, SkipGramConfig(dim=16, epochs=2, seed=int(sys.argv[2])), progress=False)
    print(hashlib.sha256(codes.tobytes() + vectors.tobytes()).hexdigest())
    """
)


def _train_in_subprocess(path, seed: int, hashseed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(seed)],
        env=env, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_same_seed_same_vectors_across_processes(tmp_path):
    seqs, _ = planted_sequences(n_users=120, ids="str")
    path = tmp_path / "seqs.npz"
    np.savez(path, vocab=seqs.vocab, codes=seqs.codes, offsets=seqs.offsets)
    a = _train_in_subprocess(path, seed=3, hashseed="1")
    b = _train_in_subprocess(path, seed=3, hashseed="2")
    assert a == b
    # and the same bytes in this process
    codes, vectors, _ = train_skipgram(seqs, SkipGramConfig(dim=16, epochs=2, seed=3), progress=False)
    assert hashlib.sha256(codes.tobytes() + vectors.tobytes()).hexdigest() == a


def test_different_seeds_differ():
    seqs, _ = planted_sequences(n_users=60)
    _, v1, _ = train_skipgram(seqs, SkipGramConfig(dim=8, epochs=1, seed=1), progress=False)
    _, v2, _ = train_skipgram(seqs, SkipGramConfig(dim=8, epochs=1, seed=2), progress=False)
    assert not np.array_equal(v1, v2)


# -- configs ---------------------------------------------------------------------


def test_defaults():
    cfg = parse_config(Item2VecConfig, {}, "producer item2vec")
    # min_count 10, epochs auto (120 on MovieLens), ns_exponent -0.5 (were 1, 5, 0.75): chosen on MovieLens recall
    assert (cfg.dim, cfg.window, cfg.negative, cfg.epochs, cfg.min_count, cfg.workers) == (64, 20, 5, "auto", 10, 1)
    assert cfg.ns_exponent == -0.5 and cfg.sample == 0.0
    assert (SkipGramConfig().window, SkipGramConfig().min_count, SkipGramConfig().epochs) == (5, 1, 5)
    assert SkipGramConfig().ns_exponent == 0.75  # the walk producers keep word2vec's
    assert cfg.min_rating is None and cfg.session_gap is None
    assert parse_config(Item2VecConfig, {"window": "all"}, "x").window == "all"
    for name, field in Item2VecConfig.model_fields.items():
        assert field.description, name


def test_auto_epochs_keep_the_measured_budget_and_the_version_says_so():
    cfg = parse_config(Item2VecConfig, {}, "x")
    assert resolved_epochs(cfg, 61_716)[0].epochs == 120  # MovieLens latest-small, where 120 was measured
    assert resolved_epochs(cfg, 30_000)[0].epochs == 120 and resolved_epochs(cfg, 20_000_000)[0].epochs == 5
    assert resolved_epochs(cfg, 740_000)[0].epochs == 10
    given = parse_config(Item2VecConfig, {"epochs": 3}, "x")
    assert resolved_epochs(given, 10**9) == (given, "given")
    seqs = Sequences.from_lists(np.arange(3), [[0, 1, 2, 0, 1, 2]] * 4)
    emb = Item2Vec().fit(FakeInputs(seqs), parse_config(Item2VecConfig, {"dim": 4, "min_count": 1}, "x"), progress=False)
    assert emb.metadata["epochs"] == 120 and emb.metadata["epochs_rule"].startswith("auto")


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"dimension": 8}, "unknown key 'dimension'"),
        ({"dim": 0}, "dim=0"),
        ({"window": "bogus"}, "window"),
        ({"window": 0}, "window"),
        ({"negative": 0}, "negative"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": 0.01, "min_learning_rate": 0.1}, "min_learning_rate"),
        ({"session_gap": -5}, "session_gap"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_config_is_one_clear_error(values, needle):
    with pytest.raises(ConfigError, match="producer item2vec") as err:
        parse_config(Item2VecConfig, values, "producer item2vec")
    assert needle in str(err.value)


# -- degenerate input ------------------------------------------------------------


def test_no_sequence_with_two_items_is_an_input_error():
    vocab = np.array([1, 2, 3], dtype=np.int64)
    with pytest.raises(InputError, match="nothing to train on"):
        fit(Sequences.from_lists(vocab, [[0], [1], [2]]))
    with pytest.raises(InputError, match="nothing to train on"):
        fit(Sequences.from_lists(vocab[:0], []))
    with pytest.raises(InputError, match="min_rating=4.5"):
        fit(Sequences.from_lists(vocab, [[0]]), min_rating=4.5)


def test_every_item_below_min_count_is_an_input_error():
    vocab = np.array([1, 2, 3], dtype=np.int64)
    with pytest.raises(InputError, match="min_count=5"):
        fit(Sequences.from_lists(vocab, [[0, 1], [1, 2]]), min_count=5)


def test_rare_items_and_single_item_sequences_get_no_vector():
    vocab = np.array(["a", "b", "c", "lonely"], dtype=object)
    seqs = Sequences.from_lists(vocab, [[0, 1, 2], [0, 1], [0, 1], [3]])
    emb = fit(seqs, dim=4, epochs=1, min_count=2)
    assert sorted(emb.ids.tolist()) == ["a", "b"]
    assert emb.metadata["items_below_min_count"] == 1
    assert emb.metadata["sequences_skipped_short"] == 1


def test_rare_items_policy_is_in_the_metrics():
    vocab = np.array(["a", "b", "c", "rare"], dtype=object)
    seqs = Sequences.from_lists(vocab, [[0, 1, 2]] * 10 + [[0, 3]])
    emb = fit(seqs, dim=4, epochs=1)  # default min_count 10: "rare" (seen once) gets no vector
    assert sorted(emb.ids.tolist()) == ["a", "b", "c"]
    m = emb.metadata
    assert (m["items_seen"], m["items_with_vector"], m["items_left_out"], m["min_count"]) == (4, 3, 1, 10)
    assert "left out" in m["rare_items"]
    assert len(fit(seqs, dim=4, epochs=1, min_count=1)) == 4


def test_sequences_longer_than_gensims_limit_are_fed_in_pieces():
    n = MAX_SEQUENCE_TOKENS * 2 + 7
    vocab = np.arange(50, dtype=np.int64)
    seqs = Sequences.from_lists(vocab, [np.arange(n) % 50])
    _, vectors, m = train_skipgram(seqs, SkipGramConfig(dim=4, epochs=1), progress=False)
    assert m["tokens_per_epoch"] == n
    assert m["tokens_trained"] == n  # gensim would silently stop at 10,000 in one piece
    assert vectors.shape == (50, 4)


# -- registration ----------------------------------------------------------------


def test_registers_through_the_hook_and_entry_point():
    got = []
    register_producers(register=got.append)
    assert got == [Item2Vec]
    assert Item2Vec.name == "item2vec" and Item2Vec.requires == frozenset({"interactions"})
    eps = {ep.name: ep.value for ep in md.entry_points(group="embstore")}
    assert eps.get("item2vec") == "embstore_plugins.item2vec"
