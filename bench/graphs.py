"""Generated graphs shared by the benchmarks (imported as `graphs`: scripts run from bench/)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np


def power_law_edge_chunks(nodes: int, edges: int, seed: int = 0,
                          chunk: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Edges whose source follows a Zipf-like degree distribution and whose other end is
    uniform (so every node stays reachable), ``chunk`` edges at a time (all at once if None)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, nodes + 1) ** 0.8
    cdf = np.cumsum(weights / weights.sum())
    perm = rng.permutation(nodes)
    step = chunk or edges
    for start in range(0, edges, step):
        m = min(step, edges - start)
        yield perm[np.searchsorted(cdf, rng.random(m))], rng.integers(0, nodes, m)


def power_law_edges(nodes: int, edges: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All edges of ``power_law_edge_chunks`` as two arrays (src, dst)."""
    return next(power_law_edge_chunks(nodes, edges, seed))


def write_power_law_edges(path: Path, nodes: int, edges: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    """The same graph as a `src,dst` CSV, written a chunk at a time (10M edges stay small in memory)."""
    with open(path, "w") as fh:
        fh.write("src,dst\n")
        for src, dst in power_law_edge_chunks(nodes, edges, seed, chunk):
            np.savetxt(fh, np.column_stack([src, dst]), fmt="%d", delimiter=",")


def planted_communities(nodes: int, edges: int, communities: int, p_in: float = 0.8,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A power-law graph with planted communities: each edge's source is drawn as in
    ``power_law_edges``; its other end is a uniform member of the source's community with
    probability ``p_in``, else any node. Returns (src, dst, community of each node)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, communities, nodes)
    src, dst = power_law_edges(nodes, edges, seed + 1)
    members = np.argsort(labels, kind="stable")
    size = np.bincount(labels, minlength=communities)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    same = rng.random(edges) < p_in
    c = labels[src[same]]
    dst[same] = members[start[c] + (rng.random(c.shape[0]) * size[c]).astype(np.int64)]
    return src, dst, labels


def topic_features(labels: np.ndarray, words: int = 300, per_node: int = 20, topic_words: int = 30,
                   on_topic: float = 0.3, seed: int = 0):
    """Sparse bag-of-words rows (scipy CSR, float32): each of a node's ``per_node`` words comes from
    its community's ``topic_words`` words with probability ``on_topic``, else from all ``words``,
    so features alone say little about the community and neighbours say more."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    topics = np.stack([rng.choice(words, topic_words, replace=False) for _ in range(int(labels.max()) + 1)])
    rows = np.repeat(np.arange(n), per_node)
    cols = rng.integers(0, words, n * per_node)
    on = rng.random(n * per_node) < on_topic
    cols[on] = topics[labels[rows[on]], rng.integers(0, topic_words, int(on.sum()))]
    x = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n, words))
    x.sum_duplicates()
    return x
