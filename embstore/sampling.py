"""Sampling for graph learners: skip-gram pairs from walks, negatives, and neighbourhoods.

EGES and GraphSAGE (and any torch producer that trains on a graph) draw their
examples here instead of writing their own loops::

    from embstore.sampling import walk_pairs, UnigramTable, Neighbourhood

    walks = random_walks(graph, WalkConfig(walk_length=5, walks_per_node=10))
    centers, contexts = walk_pairs(walks, window=2)      # int64 codes, both directions
    negatives = UnigramTable(np.bincount(walks.codes, minlength=graph.n_nodes), exponent=0.75)
    neg = negatives.sample(1024, rng)                    # codes drawn ∝ count**0.75

    hood = Neighbourhood.of_graph(graph)                 # or Neighbourhood.importance(graph, ...)
    nbrs = hood.sample(batch_codes, k=10, rng=rng)       # (len(batch), 10) neighbour codes

Everything is vectorised numpy, so a mini-batch costs a few array operations,
and every draw comes from the ``numpy.random.Generator`` passed in: the same
generator state gives the same samples.

Neighbour sampling is with replacement, with probability proportional to the
arc weight (``weighted=True``) or uniform; a node without out-arcs samples
itself, so every row of the result is full and its mean is a plain average.
``Neighbourhood.importance`` is PinSAGE's neighbourhood: the ``top`` nodes most
often visited by short random walks from a node (walks from the shared engine,
:mod:`embstore.walks`), weighted by visit counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embstore.errors import InputError
from embstore.graph import Graph
from embstore.sequences import Sequences


def walk_pairs(walks: Sequences, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (center, context) code pair at distance 1..``window`` inside one walk, both ways.

    Returned as two int64 arrays in a fixed order (by distance, then position);
    shuffle them per epoch. A walk of length L gives 2·Σ_{d≤window} (L-d) pairs.
    """
    if window < 1:
        raise InputError(f"window must be >= 1, got {window}")
    codes = np.asarray(walks.codes, dtype=np.int64)
    offsets = np.asarray(walks.offsets, dtype=np.int64)
    if codes.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    walk_of = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    centers, contexts = [], []
    for d in range(1, window + 1):
        if d >= codes.size:
            break
        same = walk_of[:-d] == walk_of[d:]
        a, b = codes[:-d][same], codes[d:][same]
        centers += [a, b]
        contexts += [b, a]
    return np.concatenate(centers), np.concatenate(contexts)


class UnigramTable:
    """Draws codes with probability ∝ ``counts ** exponent`` (word2vec's negatives at 0.75).

    Codes with count 0 are never drawn (unless every count is 0 and exponent is 0,
    which is refused).
    """

    def __init__(self, counts: np.ndarray, exponent: float = 0.75):
        counts = np.asarray(counts, dtype=np.float64)
        weights = np.where(counts > 0, counts, 0.0) ** exponent
        weights[counts <= 0] = 0.0
        total = weights.sum()
        if not total > 0:
            raise InputError("negative sampling needs at least one node that occurs in the walks")
        self.cdf = np.cumsum(weights / total)
        self.cdf[-1] = 1.0

    def sample(self, n: int | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.searchsorted(self.cdf, rng.random(n), side="right").astype(np.int64)


@dataclass(frozen=True)
class Neighbourhood:
    """Whom a node aggregates from: a CSR of (neighbour code, weight) rows.

    indptr:  int64, n + 1.  indices: int64 neighbour codes.  weights: float64 > 0.
    weighted: sample ∝ weights (else uniformly within a row).
    """

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    weighted: bool

    @property
    def n_nodes(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @classmethod
    def of_graph(cls, graph: Graph, weighted: bool = False) -> "Neighbourhood":
        """A node's out-neighbours in ``graph``, sampled uniformly or by edge weight."""
        return cls(np.asarray(graph.indptr, np.int64), np.asarray(graph.indices, np.int64),
                   np.asarray(graph.weights, np.float64), bool(weighted))

    @classmethod
    def importance(cls, graph: Graph, top: int = 10, walks_per_node: int = 20, walk_length: int = 4,
                   seed: int = 0, progress: bool | None = False) -> "Neighbourhood":
        """PinSAGE: the ``top`` nodes most visited by ``walks_per_node`` walks of ``walk_length``
        nodes started at each node (ties: lower code first), weighted by visit count. ``progress``
        draws the walks' bar (None: only when stderr is a terminal)."""
        from embstore.walks import WalkConfig, random_walks

        n = graph.n_nodes
        if graph.n_edges == 0:
            return cls(np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0), True)
        walks = random_walks(graph, WalkConfig(walk_length=walk_length, walks_per_node=walks_per_node,
                                               seed=seed, workers=1), progress=progress)
        codes = np.asarray(walks.codes, np.int64)
        offsets = np.asarray(walks.offsets, np.int64)
        lengths = np.diff(offsets)
        start = np.repeat(codes[offsets[:-1]], lengths)
        visited = start != codes  # the start itself (and returns to it) do not count
        key = np.unique(start[visited] * n + codes[visited], return_counts=True)
        src, dst, count = key[0] // n, key[0] % n, key[1]
        order = np.lexsort((dst, -count, src))  # by source, most visited first
        src, dst, count = src[order], dst[order], count[order]
        first = np.searchsorted(src, np.arange(n))
        rank = np.arange(src.shape[0]) - first[src]
        keep = rank < top
        src, dst, count = src[keep], dst[keep], count[keep]
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        return cls(indptr, dst.astype(np.int64), count.astype(np.float64), True)

    def sample(self, nodes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` neighbours of each node (with replacement), shape (len(nodes), k), int64 codes."""
        nodes = np.asarray(nodes, np.int64)
        lo, hi = self.indptr[nodes], self.indptr[nodes + 1]
        deg = hi - lo
        u = rng.random((nodes.shape[0], k))
        if self.weighted and self.indices.size:
            cum = self._cumulative()
            base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
            total = np.where(deg > 0, cum[np.maximum(hi - 1, 0)] - base, 0.0)
            target = base[:, None] + u * total[:, None]
            pos = np.searchsorted(cum, target, side="right")
            pos = np.clip(pos, lo[:, None], np.maximum(hi - 1, lo)[:, None])
        else:
            pos = lo[:, None] + np.minimum((u * deg[:, None]).astype(np.int64), np.maximum(deg - 1, 0)[:, None])
        out = self.indices[np.minimum(pos, max(self.indices.shape[0] - 1, 0))] if self.indices.size else \
            np.zeros_like(pos)
        return np.where(deg[:, None] > 0, out, nodes[:, None])

    def _cumulative(self) -> np.ndarray:
        cum = getattr(self, "_cum", None)
        if cum is None:
            cum = np.cumsum(self.weights)
            object.__setattr__(self, "_cum", cum)
        return cum

    def with_self_loops(self) -> "Neighbourhood":
        """The same rows, where a node without neighbours gets itself (weight 1): what sampling does."""
        deg = np.diff(self.indptr)
        empty = np.flatnonzero(deg == 0)
        if empty.size == 0:
            return self
        n = self.n_nodes
        rows = np.concatenate([np.repeat(np.arange(n), deg), empty])
        cols = np.concatenate([self.indices, empty])
        w = np.concatenate([self.weights, np.ones(empty.size)])
        order = np.argsort(rows, kind="stable")
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return Neighbourhood(indptr, cols[order], w[order], self.weighted)

    def row_normalized(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, values) of the averaging matrix the sampler estimates: each row sums to 1
        (by weight when weighted, else uniform); nodes without neighbours average themselves."""
        full = self.with_self_loops()
        deg = np.diff(full.indptr)
        rows = np.repeat(np.arange(full.n_nodes), deg)
        if full.weighted:
            sums = np.add.reduceat(full.weights, full.indptr[:-1]) if full.weights.size else np.zeros(0)
            vals = full.weights / sums[rows]
        else:
            vals = 1.0 / deg[rows]
        return rows, full.indices, vals
