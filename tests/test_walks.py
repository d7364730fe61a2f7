"""Graph building and the shared walk engine (DeepWalk / node2vec walks).

Statistical checks use fixed seeds, so they are deterministic: a chi-square
p-value far below any threshold here would mean a biased sampler, not bad luck.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from embstore.config import parse_config
from embstore.errors import ConfigError, InputError
from embstore.graph import Graph, frequent_items, listed_both_ways
from embstore.sequences import Sequences
from embstore.walks import WalkConfig, iter_walk_chunks, random_walks


def walks_of(graph, **cfg):
    return random_walks(graph, WalkConfig(**cfg), progress=False)


def assert_steps_follow_edges(graph: Graph, walks: Sequences) -> None:
    codes, offsets = walks.codes.astype(np.int64), walks.offsets
    assert walks.vocab is graph.ids
    assert offsets[0] == 0 and offsets[-1] == codes.size
    assert codes.size == 0 or (codes.min() >= 0 and codes.max() < graph.n_nodes)
    is_last = np.zeros(codes.size, bool)
    is_last[offsets[1:][offsets[1:] > offsets[:-1]] - 1] = True
    src, dst = codes[:-1][~is_last[:-1]], codes[1:][~is_last[:-1]]
    n = graph.n_nodes
    rows = np.repeat(np.arange(n), np.diff(graph.indptr))
    arcs = rows * n + graph.indices  # sorted: CSR rows are sorted by (row, neighbour)
    keys = src * n + dst
    pos = np.minimum(np.searchsorted(arcs, keys), arcs.size - 1)
    assert np.all(arcs[pos] == keys), "a step followed no edge"


def chi2_p(observed, expected_weights) -> float:
    observed = np.asarray(observed, float)
    expected = np.asarray(expected_weights, float)
    expected = expected / expected.sum() * observed.sum()
    return stats.chisquare(observed, expected).pvalue


def random_graph(n=300, m=2000, seed=1, directed=False):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    w = rng.integers(1, 10, m).astype(float)
    return Graph.from_edges(src, dst, w, directed=directed, nodes=np.arange(n))


# ------------------------------------------------------------------ graph


def test_from_edges_builds_sorted_csr_and_sums_duplicates():
    g = Graph.from_edges([3, 1, 1, 3, 2], [1, 2, 3, 1, 2], weight=[1, 2, 3, 4, 5])
    assert g.ids.tolist() == [1, 2, 3]
    assert g.indptr.dtype == np.int64 and g.indices.dtype == np.int32
    assert g.weights.dtype == np.float32
    assert g.n_nodes == 3 and g.n_edges == 4
    assert g.ids[g.neighbors(1)].tolist() == [2, 3]
    assert g.edge_weight(3, 1) == 5.0  # 1 + 4
    assert g.has_edge(2, 2)  # self loop kept
    assert g.has_edge(1, 3) and not g.has_edge(3, 2)
    assert g.degree().tolist() == [2, 1, 1]
    assert g.degree(weighted=True).tolist() == [5.0, 5.0, 5.0]
    with pytest.raises(ValueError):
        g.neighbors(1)[0] = 7  # a read-only view


def test_undirected_stores_both_directions_and_self_loops_once():
    g = Graph.from_edges(["a", "b"], ["b", "b"], weight=[2.0, 3.0], directed=False)
    assert not g.directed
    assert g.has_edge("a", "b") and g.has_edge("b", "a")
    assert g.edge_weight("b", "a") == 2.0
    assert g.edge_weight("b", "b") == 3.0
    assert g.n_edges == 3


def test_string_ids_mixed_ids_and_isolated_nodes():
    g = Graph.from_edges(np.array(["x", "y"]), ["y", "z"], nodes=["w"])
    assert g.ids.dtype == object and g.ids.tolist() == ["w", "x", "y", "z"]
    assert g.degree().tolist() == [0, 1, 1, 0]
    mixed = Graph.from_edges([1, 2], ["a", "b"])
    assert mixed.ids.tolist() == ["1", "2", "a", "b"]
    assert mixed.has_edge(1, "a")  # an int asks for its string form


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(src=[1, 2], dst=[1]), "must match"),
        (dict(src=[1], dst=[2], weight=[0.0]), "finite and > 0"),
        (dict(src=[1], dst=[2], weight=[np.nan]), "finite and > 0"),
        (dict(src=[1], dst=[2], weight=[1.0, 2.0]), "one value per edge"),
        (dict(src=[1.5], dst=[2]), "integers or strings"),
    ],
)
def test_from_edges_rejects_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        Graph.from_edges(**kwargs)


def test_unknown_node_id_is_an_input_error():
    g = Graph.from_edges([1], [2])
    with pytest.raises(InputError, match="unknown node id 5"):
        g.neighbors(5)
    with pytest.raises(InputError, match="integers"):
        g.has_edge("a", 1)


def test_from_sequences_counts_moves_within_sequences_only():
    vocab = np.array(["a", "b", "c", "d"], dtype=object)
    seqs = Sequences.from_lists(vocab, [[0, 1, 2], [0, 1], [], [2, 2, 3], [3]])
    g = Graph.from_sequences(seqs)
    assert g.ids is not vocab and g.ids.tolist() == ["a", "b", "c", "d"]
    assert g.edge_weight("a", "b") == 2.0
    assert g.edge_weight("b", "c") == 1.0
    assert g.edge_weight("c", "c") == 1.0  # a repeat is a self loop
    assert g.edge_weight("c", "d") == 1.0
    assert not g.has_edge("c", "a")  # no move across a sequence boundary
    assert not g.has_edge("b", "a")
    assert g.n_edges == 4
    no_loops = Graph.from_sequences(seqs, self_loops=False)
    assert not no_loops.has_edge("c", "c") and no_loops.n_edges == 3
    undirected = Graph.from_sequences(seqs, directed=False)
    assert undirected.edge_weight("b", "a") == 2.0


def test_frequent_items_leaves_rare_items_out_and_joins_their_neighbours():
    vocab = np.array(["a", "b", "rare", "c", "unused"], dtype=object)
    seqs = Sequences.from_lists(vocab, [[0, 2, 1], [], [0, 1, 3], [3], [3, 0, 1]])
    kept = frequent_items(seqs, 2)
    assert kept.vocab.tolist() == ["a", "b", "c"]
    assert [kept.vocab[s].tolist() for s in kept] == [["a", "b"], [], ["a", "b", "c"], ["c"], ["c", "a", "b"]]
    g = Graph.from_sequences(kept)
    assert g.edge_weight("a", "b") == 3.0 and g.ids.tolist() == ["a", "b", "c"]  # a -> rare -> b is a -> b now
    assert frequent_items(seqs, 1) is seqs


def test_an_undirected_list_written_both_ways_is_read_once():
    src, dst, w = np.array([1, 2, 3, 1, 3]), np.array([2, 1, 3, 3, 1]), np.array([2.0, 2.0, 5.0, 1.0, 1.0])
    once = listed_both_ways(src, dst, w)
    assert once.tolist() == [True, False, True, True, False]
    assert listed_both_ways(src[once], dst[once], w[once]) is None  # each edge once already
    assert listed_both_ways(np.array([1, 2]), np.array([2, 1]), np.array([1.0, 2.0])) is None  # weights differ


def test_from_sequences_rejects_codes_outside_the_vocab():
    seqs = Sequences.from_lists(np.array([10, 20]), [[0, 2]])
    with pytest.raises(InputError, match="vocab size"):
        Graph.from_sequences(seqs)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "values, key",
    [
        ({"p": 0}, "p"),
        ({"q": -1.0}, "q"),
        ({"p": float("inf")}, "p"),
        ({"walk_length": 0}, "walk_length"),
        ({"walks_per_node": 0}, "walks_per_node"),
        ({"start": "hubs"}, "start"),
        ({"workers": 0}, "workers"),
        ({"walk_lenght": 10}, "walk_lenght"),
    ],
)
def test_bad_config_is_a_config_error(values, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(WalkConfig, values, "node2vec")


def test_random_walks_takes_a_mapping_and_validates_it():
    g = Graph.from_edges([1], [2])
    assert len(random_walks(g, {"walks_per_node": 2, "walk_length": 3}, progress=False)) == 4
    with pytest.raises(ConfigError, match="p"):
        random_walks(g, {"p": 0}, progress=False)


def test_every_field_is_described():
    for name, field in WalkConfig.model_fields.items():
        assert field.description, name


# ------------------------------------------------------------------ walk structure


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pq", [(1.0, 1.0), (0.25, 4.0), (4.0, 0.25)])
def test_every_step_follows_an_edge(directed, weighted, pq):
    g = random_graph(directed=directed)
    p, q = pq
    walks = walks_of(g, walk_length=20, walks_per_node=3, p=p, q=q, weighted=weighted, seed=3)
    assert len(walks) == g.n_nodes * 3
    assert walks.codes.dtype == np.int32 and walks.offsets.dtype == np.int64
    assert walks.lengths.max() == 20
    assert_steps_follow_edges(g, walks)
    # uniform start: each round starts every node once
    starts = walks.codes[walks.offsets[:-1]]
    assert np.all(np.bincount(starts, minlength=g.n_nodes) == 3)


def test_dead_ends_end_walks_early():
    g = Graph.from_edges([0, 1], [1, 2])  # 0 -> 1 -> 2, and 2 has no out-edge
    for p, q in [(1, 1), (0.5, 2)]:
        walks = walks_of(g, walk_length=5, walks_per_node=2, p=p, q=q)
        by_start = {int(w[0]): w.tolist() for w in walks}
        assert by_start == {0: [0, 1, 2], 1: [1, 2], 2: [2]}
        assert sorted(walks.lengths.tolist()) == [1, 1, 2, 2, 3, 3]


def test_self_loops_are_walked():
    g = Graph.from_edges([0, 1], [0, 0])  # 0 -> 0 only; 1 -> 0
    for p, q in [(1, 1), (0.5, 3), (3, 0.5)]:
        walks = walks_of(g, walk_length=4, walks_per_node=1, p=p, q=q)
        assert sorted(w.tolist() for w in walks) == [[0, 0, 0, 0], [1, 0, 0, 0]]


def test_walks_stay_in_their_component():
    a = random_graph(n=50, m=200, seed=1)
    src = np.concatenate([np.repeat(np.arange(50), np.diff(a.indptr)), 100 + np.arange(30)])
    dst = np.concatenate([a.indices, 100 + (np.arange(30) + 1) % 30])  # a ring 100..129
    g = Graph.from_edges(src, dst, directed=False)
    walks = walks_of(g, walk_length=30, walks_per_node=2, p=0.5, q=2)
    for w in walks:
        ids = g.ids[w]
        assert np.all(ids < 100) or np.all(ids >= 100)
    assert_steps_follow_edges(g, walks)


def test_directed_walks_follow_arrows_undirected_walk_back():
    src, dst = ["a", "b"], ["b", "c"]
    directed = walks_of(Graph.from_edges(src, dst), walk_length=4, walks_per_node=1)
    assert sorted(directed.vocab[w].tolist() for w in directed) == [
        ["a", "b", "c"],
        ["b", "c"],
        ["c"],
    ]
    g = Graph.from_edges(src, dst, directed=False)
    walks = walks_of(g, walk_length=4, walks_per_node=5)
    assert np.all(walks.lengths == 4)
    assert_steps_follow_edges(g, walks)


def test_walk_length_one_and_isolated_nodes():
    g = Graph.from_edges([1], [2], nodes=[3])
    walks = walks_of(g, walk_length=1, walks_per_node=2)
    assert walks.lengths.tolist() == [1] * 6
    assert sorted(walks.codes.tolist()) == [0, 0, 1, 1, 2, 2]


def test_empty_graph_is_an_input_error():
    g = Graph.from_edges(np.zeros(0, np.int64), np.zeros(0, np.int64))
    with pytest.raises(InputError, match="no nodes"):
        walks_of(g)


def test_string_ids_walks_use_graph_vocab():
    g = Graph.from_edges(["u", "v", "w"], ["v", "w", "u"], directed=False)
    walks = walks_of(g, walk_length=6, walks_per_node=2, p=2, q=0.5)
    assert walks.vocab is g.ids and walks.vocab.dtype == object
    assert_steps_follow_edges(g, walks)


# ------------------------------------------------------------------ distributions


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("directed", [True, False])
def test_first_order_frequencies_match_edge_weights(weighted, directed):
    weights = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    g = Graph.from_edges(np.zeros(5, int), np.arange(1, 6), weights, directed=directed)
    walks = walks_of(g, walk_length=2, walks_per_node=20_000, weighted=weighted, seed=11)
    from_hub = walks.codes[walks.offsets[:-1][walks.codes[walks.offsets[:-1]] == 0] + 1]
    counts = np.bincount(from_hub, minlength=6)[1:]
    assert counts.sum() == 20_000
    expected = weights if weighted else np.ones(5)
    assert chi2_p(counts, expected) > 1e-3
    assert np.allclose(counts / counts.sum(), expected / expected.sum(), atol=0.012)


def _second_steps(walks, t, v):
    """Third node of every walk that starts t, v."""
    first = walks.offsets[:-1]
    full = walks.lengths >= 3
    starts = first[full]
    mask = (walks.codes[starts] == t) & (walks.codes[starts + 1] == v)
    return walks.codes[starts[mask] + 2]


@pytest.mark.parametrize("p, q", [(0.5, 2.0), (2.0, 0.5), (0.25, 4.0), (1.0, 3.0), (3.0, 1.0)])
@pytest.mark.parametrize("weighted", [False, True])
def test_node2vec_return_common_and_far_ratios_directed(p, q, weighted):
    # Walks that start t -> v: from v, back to t (1/p), to c which t also reaches (1),
    # to f which t does not reach (1/q).
    t, v, c, f = 0, 1, 2, 3
    w_vt, w_vc, w_vf = (2.0, 1.0, 3.0) if weighted else (1.0, 1.0, 1.0)
    g = Graph.from_edges(
        [t, t, v, v, v], [v, c, t, c, f], weight=[5.0, 7.0, w_vt, w_vc, w_vf], directed=True
    )
    walks = walks_of(g, walk_length=3, walks_per_node=30_000, p=p, q=q, weighted=weighted, seed=5)
    nxt = _second_steps(walks, t, v)
    assert nxt.size > 10_000
    counts = np.bincount(nxt, minlength=4)[[t, c, f]]
    expected = np.array([w_vt / p, w_vc * 1.0, w_vf / q])
    assert chi2_p(counts, expected) > 1e-3, (counts, expected)
    assert np.allclose(counts / counts.sum(), expected / expected.sum(), atol=0.015)


@pytest.mark.parametrize("p, q", [(0.5, 2.0), (2.0, 0.5), (0.25, 4.0)])
def test_node2vec_ratios_undirected_weighted(p, q):
    # Undirected: t - v, t - c, v - c, v - f, plus t - s so t has a second choice.
    t, v, c, f, s = 0, 1, 2, 3, 4
    g = Graph.from_edges([t, t, v, v, t], [v, c, c, f, s], weight=[2.0, 1.0, 3.0, 4.0, 1.0],
                         directed=False)  # fmt: skip
    walks = walks_of(g, walk_length=3, walks_per_node=60_000, p=p, q=q, seed=9)
    nxt = _second_steps(walks, t, v)
    assert nxt.size > 20_000
    counts = np.bincount(nxt, minlength=5)[[t, c, f]]
    expected = np.array([2.0 / p, 3.0 * 1.0, 4.0 / q])
    assert chi2_p(counts, expected) > 1e-3, (counts, expected)


def test_node2vec_exact_when_rejection_gives_up():
    # 1/q tiny with many far nodes: most proposals are rejected, so the engine falls
    # back to the exact draw often; the distribution must not change.
    t, v, c = 0, 1, 2
    far = np.arange(3, 33)
    src = [t, t, v, v] + [v] * far.size
    dst = [v, c, t, c] + far.tolist()
    g = Graph.from_edges(src, dst, directed=True)
    p, q = 50.0, 200.0
    walks = walks_of(g, walk_length=3, walks_per_node=40_000, p=p, q=q, seed=2)
    nxt = _second_steps(walks, t, v)
    counts = np.array([(nxt == t).sum(), (nxt == c).sum(), np.isin(nxt, far).sum()])
    expected = np.array([1 / p, 1.0, far.size / q])
    assert chi2_p(counts, expected) > 1e-3, (counts, expected)


def test_degree_start_follows_weighted_out_degree():
    g = Graph.from_edges([0, 0, 1, 2], [1, 2, 2, 0], weight=[1.0, 3.0, 2.0, 2.0], nodes=[3])
    walks = walks_of(g, walk_length=1, walks_per_node=5_000, start="degree", seed=4)
    assert len(walks) == 4 * 5_000
    counts = np.bincount(walks.codes, minlength=4)
    assert counts[3] == 0  # no out-edges: never a start
    assert chi2_p(counts[:3], [4.0, 2.0, 2.0]) > 1e-3
    unweighted = walks_of(g, walk_length=1, walks_per_node=5_000, start="degree", weighted=False)
    assert chi2_p(np.bincount(unweighted.codes, minlength=4)[:3], [2.0, 1.0, 1.0]) > 1e-3


def test_degree_start_needs_an_edge():
    g = Graph.from_edges(np.zeros(0, np.int64), np.zeros(0, np.int64), nodes=[1, 2])
    with pytest.raises(InputError, match="at least one edge"):
        walks_of(g, start="degree")


# ------------------------------------------------------------------ reproducibility


@pytest.mark.parametrize("pq", [(1.0, 1.0), (0.5, 2.0)])
def test_same_seed_same_walks_on_any_thread_count_and_chunking(pq):
    g = random_graph(n=400, m=3000, seed=7)
    p, q = pq
    cfg = dict(walk_length=15, walks_per_node=4, p=p, q=q, seed=123)
    one = walks_of(g, workers=1, **cfg)
    two = walks_of(g, workers=2, **cfg)
    again = walks_of(g, **cfg)
    for other in (two, again):
        assert np.array_equal(one.codes, other.codes)
        assert np.array_equal(one.offsets, other.offsets)
    chunks = list(iter_walk_chunks(g, WalkConfig(**cfg), chunk_walks=333))
    assert [len(c) for c in chunks[:-1]] == [333] * (len(chunks) - 1)
    assert np.array_equal(np.concatenate([c.codes for c in chunks]), one.codes)
    assert np.array_equal(np.concatenate([c.lengths for c in chunks]), one.lengths)
    assert all(c.vocab is g.ids for c in chunks)
    other_seed = walks_of(g, **{**cfg, "seed": 124})
    assert not np.array_equal(other_seed.codes, one.codes)


def test_chunks_with_dead_ends_match_the_full_run():
    g = random_graph(n=200, m=300, seed=3, directed=True)  # many nodes without out-edges
    cfg = WalkConfig(walk_length=12, walks_per_node=3, p=0.5, q=2.0, seed=1)
    full = random_walks(g, cfg, progress=False)
    assert full.lengths.min() < 12
    chunks = list(iter_walk_chunks(g, cfg, chunk_walks=101))
    assert np.array_equal(np.concatenate([c.codes for c in chunks]), full.codes)
    assert_steps_follow_edges(g, full)
    with pytest.raises(InputError, match="chunk_walks"):
        next(iter_walk_chunks(g, cfg, chunk_walks=0))


def test_progress_bar_goes_to_stderr(capsys):
    g = random_graph(n=50, m=100)
    random_walks(g, WalkConfig(walk_length=3, walks_per_node=1), progress=True)
    captured = capsys.readouterr()
    assert "walks" in captured.err and captured.out == ""


@pytest.mark.parametrize("directed", [False, True])
def test_neighbour_check_has_no_false_answers(directed):
    # The node2vec "is x a neighbour of t" test (filter, then binary search) against the truth.
    from embstore import walks as w

    g = random_graph(n=500, m=6000, seed=5, directed=directed)
    plan = w._Plan(g, WalkConfig(p=0.5, q=2.0))
    dense = np.zeros((g.n_nodes, g.n_nodes), bool)
    dense[np.repeat(np.arange(g.n_nodes), np.diff(g.indptr)), g.indices] = True
    rng = np.random.default_rng(0)
    pairs = np.concatenate([rng.integers(0, g.n_nodes, (3000, 2)), np.argwhere(dense)[:3000]])
    for t, x in pairs:
        assert w._adjacent(plan.arrays, directed, np.int64(t), np.int64(x)) == dense[t, x]
