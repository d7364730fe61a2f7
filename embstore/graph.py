"""The graph producers walk and sample: weighted CSR arrays, built once from edges or sequences.

Every producer that walks (DeepWalk, node2vec, EGES) or samples neighbourhoods
(GraphSAGE) reads the same structure::

    from embstore.graph import Graph

    g = Graph.from_edges(["a", "a", "b"], ["b", "c", "c"], weight=[2.0, 1.0, 5.0], directed=False)
    g.n_nodes, g.n_edges          # 3 nodes, 6 arcs (each undirected edge stored both ways)
    g.neighbors("a")              # codes of a's out-neighbours, sorted: array([1, 2], dtype=int32)
    g.ids[g.neighbors("a")]       # array(['b', 'c'], dtype=object)

Node ``c`` (a code) stands for the id ``ids[c]``. Its out-neighbours are
``indices[indptr[c]:indptr[c+1]]``, sorted ascending with no duplicates, and
``weights`` holds the matching edge weights, so "does the edge u->v exist" is a
binary search in u's row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np

from embstore.errors import EmbeddingsError, InputError
from embstore.ids import normalize_ids, one_kind, plain
from embstore.sequences import Sequences

if TYPE_CHECKING:
    from embstore.options import GraphOptions

T = TypeVar("T")

_MAX_NODES = int(np.iinfo(np.int32).max)


@dataclass(frozen=True, eq=False)
class Graph:
    """A directed or undirected weighted graph in CSR form.

    ids:     normalized node ids (int64, or object array of str); code ``c`` is ``ids[c]``.
    indptr:  int64, length n_nodes + 1; row ``c`` is ``indptr[c]:indptr[c+1]``.
    indices: int32 out-neighbour codes, sorted within each row, no duplicates.
    weights: float32 edge weights (> 0), aligned with ``indices``.
    directed: False when every edge is stored in both directions (a self loop once).

    Build with :meth:`from_edges` or :meth:`from_sequences` rather than by hand. The
    arrays never change, so what is derived from them is kept with :meth:`memo`.
    """

    ids: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    directed: bool = True
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_edges(
        cls,
        src: Any,
        dst: Any,
        weight: Any = None,
        directed: bool = True,
        nodes: Any = None,
    ) -> "Graph":
        """Build from parallel arrays of source ids, target ids and optional weights.

        Ids are integers or strings (mixed columns are read as strings); they are
        mapped to codes once, in sorted id order. ``weight`` defaults to 1 per edge
        and must be finite and > 0. Repeated edges are merged with their weights
        summed; self loops are kept. ``directed=False`` stores each edge both ways
        (a self loop once). ``nodes`` adds ids that may have no edges at all.
        """
        src_ids = _as_ids(src, "src")
        dst_ids = _as_ids(dst, "dst")
        if src_ids.shape[0] != dst_ids.shape[0]:
            raise InputError(
                f"src has {src_ids.shape[0]} ids but dst has {dst_ids.shape[0]}; "
                "they must match row for row"
            )
        m = src_ids.shape[0]
        w = _as_weights(weight, m)
        parts = [src_ids, dst_ids]
        if nodes is not None:
            parts.append(_as_ids(nodes, "nodes"))
        ids, codes = _factorize(np.concatenate(one_kind(parts)))  # some int, some str columns: as str
        if ids.shape[0] > _MAX_NODES:
            raise InputError(f"{ids.shape[0]} nodes: at most {_MAX_NODES} are supported")
        return cls._from_codes(ids, codes[:m], codes[m : 2 * m], w, directed)

    @classmethod
    def from_sequences(
        cls, seqs: Sequences, directed: bool = True, self_loops: bool = True
    ) -> "Graph":
        """Item graph from behaviour sequences: an edge A->B each time a sequence moves from A to B.

        Weights count the moves (A->B seen 3 times gives weight 3). Sequences are
        not joined: a session split is already a sequence boundary. Every vocab
        entry becomes a node, with or without edges, and codes stay the sequence
        codes (``graph.ids`` is ``seqs.vocab``). ``self_loops=False`` drops moves
        from an item to itself (repeated views); ``directed=False`` counts A->B
        and B->A together.
        """
        try:
            ids = normalize_ids(seqs.vocab)
        except EmbeddingsError as exc:
            raise InputError(f"sequence vocab: {exc}") from None
        n = ids.shape[0]
        if _factorize(ids)[0].shape[0] != n:
            raise InputError("sequence vocab has duplicate ids; each id must appear once")
        if n > _MAX_NODES:
            raise InputError(f"{n} nodes: at most {_MAX_NODES} are supported")
        codes = np.asarray(seqs.codes)
        offsets = np.asarray(seqs.offsets, dtype=np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= n):
            raise InputError(f"sequence codes must lie in [0, {n}) (the vocab size)")
        # A move is (codes[i], codes[i+1]) unless i is the last token of its sequence.
        if codes.size > 1:
            last = offsets[1:] - 1
            last = last[(last >= 0) & (last < codes.size - 1) & (offsets[1:] > offsets[:-1])]
            keep = np.ones(codes.size - 1, dtype=bool)
            keep[last] = False
            src, dst = codes[:-1][keep], codes[1:][keep]
        else:
            src = dst = np.zeros(0, dtype=np.int32)
        if not self_loops:
            differ = src != dst
            src, dst = src[differ], dst[differ]
        return cls._from_codes(ids, src, dst, np.ones(src.shape[0], np.float64), directed)

    @classmethod
    def _from_codes(
        cls, ids: np.ndarray, src: np.ndarray, dst: np.ndarray, w: np.ndarray, directed: bool
    ) -> "Graph":
        """CSR from code pairs: sort by (src, dst), merge repeats (weights summed)."""
        n = ids.shape[0]
        src = src.astype(np.int64, copy=False)
        dst = dst.astype(np.int64, copy=False)
        w = w.astype(np.float64, copy=False)
        if not directed:
            other = src != dst  # a self loop is stored once
            src, dst, w = (
                np.concatenate([src, dst[other]]),
                np.concatenate([dst, src[other]]),
                np.concatenate([w, w[other]]),
            )
        key = src * n + dst
        order = np.argsort(key, kind="stable")
        key = key[order]
        if key.size:
            first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            merged_w = np.add.reduceat(w[order], first)
            key = key[first]
        else:
            merged_w = np.zeros(0, np.float64)
        rows = key // n if n else key
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        indices = (key - rows * n).astype(np.int32)
        weights = merged_w.astype(np.float32)
        if weights.size and not np.isfinite(weights).all():
            raise InputError("summed edge weights overflow float32; scale the weights down")
        return cls(ids=ids, indptr=indptr, indices=indices, weights=weights, directed=bool(directed))

    # ------------------------------------------------------------------ queries

    def memo(self, key: str, build: Callable[[], T]) -> T:
        """What ``build()`` returns, built on the first call for ``key`` and kept with the graph.

        For tables derived from the (immutable) arrays, e.g. the walk engine's sampling
        table: built once, reused by every run on this graph.
        """
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @property
    def n_nodes(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def n_edges(self) -> int:
        """Stored arcs: an undirected edge counts twice, an undirected self loop once."""
        return int(self.indices.shape[0])

    def degree(self, weighted: bool = False) -> np.ndarray:
        """Out-degree of every node, by code: arc counts (int64) or weight sums (float64)."""
        if not weighted:
            return np.diff(self.indptr)
        return self.memo("wdeg", self._weighted_degree)

    def _weighted_degree(self) -> np.ndarray:
        sums = np.zeros(self.n_nodes, np.float64)
        nonempty = np.flatnonzero(np.diff(self.indptr))
        if nonempty.size:
            sums[nonempty] = np.add.reduceat(self.weights.astype(np.float64), self.indptr[nonempty])
        sums.setflags(write=False)
        return sums

    def codes_of(self, node_ids: Any) -> np.ndarray:
        """Codes (int64) of the given ids; raises InputError naming the first unknown id."""
        arr = np.asarray(node_ids)
        scalar = arr.ndim == 0
        arr = arr.reshape(-1)
        ids = self.ids
        if ids.dtype.kind == "O":
            arr = np.array([str(v) for v in arr.tolist()], dtype=object)
        elif arr.size and arr.dtype.kind not in "iu":
            raise InputError(f"unknown node id {plain(arr[0])!r}: ids of this graph are integers")
        else:
            arr = arr.astype(np.int64)
        sorter = self._sorter()
        pos = np.searchsorted(ids, arr, sorter=sorter)
        pos = np.minimum(pos, max(ids.shape[0] - 1, 0))
        codes = sorter[pos] if ids.shape[0] else np.zeros(arr.shape[0], np.int64)
        found = ids[codes] == arr if ids.shape[0] else np.zeros(arr.shape[0], bool)
        if not np.all(found):
            bad = plain(arr[np.flatnonzero(~np.asarray(found, bool))[0]])
            raise InputError(f"unknown node id {bad!r}: not in the graph")
        codes = codes.astype(np.int64)
        return codes[0] if scalar else codes

    def neighbors(self, u: Any) -> np.ndarray:
        """Codes of ``u``'s out-neighbours (a read-only view, sorted); ``ids[...]`` gives ids."""
        c = int(self.codes_of(u))
        view = self.indices[self.indptr[c] : self.indptr[c + 1]]
        view.flags.writeable = False
        return view

    def has_edge(self, u: Any, v: Any) -> bool:
        """True when the arc u->v exists (either way round for an undirected graph)."""
        cu, cv = (int(c) for c in self.codes_of([u, v]))
        row = self.indices[self.indptr[cu] : self.indptr[cu + 1]]
        k = int(np.searchsorted(row, cv))
        return k < row.shape[0] and int(row[k]) == cv

    def edge_weight(self, u: Any, v: Any) -> float:
        """Weight of the arc u->v, 0.0 when it does not exist."""
        cu, cv = (int(c) for c in self.codes_of([u, v]))
        lo, hi = int(self.indptr[cu]), int(self.indptr[cu + 1])
        k = lo + int(np.searchsorted(self.indices[lo:hi], cv))
        return float(self.weights[k]) if k < hi and int(self.indices[k]) == cv else 0.0

    def _sorter(self) -> np.ndarray:
        return self.memo("sorter", self._id_order)

    def _id_order(self) -> np.ndarray:
        ids = self.ids
        if ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1])):
            return np.arange(ids.shape[0], dtype=np.int64)
        return np.argsort(ids, kind="stable")

    def __repr__(self) -> str:
        kind = "directed" if self.directed else "undirected"
        return f"Graph({kind}, n_nodes={self.n_nodes}, n_edges={self.n_edges}, ids={_kind(self.ids)})"


def _kind(ids: np.ndarray) -> str:
    return "strings" if ids.dtype.kind == "O" else "integers"


def _as_ids(values: Any, what: str) -> np.ndarray:
    try:
        return normalize_ids(values)
    except EmbeddingsError as exc:
        raise InputError(f"{what}: {exc}") from None


def _as_weights(weight: Any, m: int) -> np.ndarray:
    if weight is None:
        return np.ones(m, dtype=np.float64)
    w = np.asarray(weight)
    if w.ndim != 1 or w.shape[0] != m:
        raise InputError(f"weight must be 1-D with one value per edge ({m}), got shape {w.shape}")
    if w.dtype.kind not in "fiub":
        raise InputError(f"weight must be numeric, got dtype {w.dtype}")
    w = w.astype(np.float64)
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"edge weight at row {row} is {w[row]!r}; weights must be finite and > 0")
    return w


def _factorize(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids and the code of every input id (np.unique semantics)."""
    if ids.dtype.kind != "O":
        uniq, inv = np.unique(ids, return_inverse=True)
        return uniq.astype(np.int64, copy=False), inv.reshape(-1)
    # Hash first (pandas), then sort the few uniques: much faster than sorting every string.
    import pandas as pd

    codes, uniq = pd.factorize(ids, sort=True)
    out = np.empty(len(uniq), dtype=object)
    out[:] = list(uniq)
    return out, codes.astype(np.int64, copy=False)


def build_graph(inputs: Any, config: "GraphOptions", producer: str) -> "Graph":
    """The graph a producer walks: from edges or from interaction sequences, never both.

    ``config`` (any config composed with :class:`embstore.options.GraphOptions`) supplies
    ``directed`` (None: directed for interactions, undirected for edges), ``min_rating``,
    ``session_gap``, ``self_loops`` and ``min_interactions``.
    """
    return build_graph_report(inputs, config, producer)[0]


def build_graph_report(inputs: Any, config: "GraphOptions", producer: str) -> tuple["Graph", dict]:
    """:func:`build_graph`, and what it left out: ``{"items_seen": ..., "items_left_out": ...,
    "min_interactions": ...}`` for interactions (items below ``min_interactions`` are no nodes); for
    undirected edges written both ways (see :func:`listed_both_ways`) ``{"edges_listed_both_ways": n}``,
    the rows read once instead of twice; else ``{}``."""
    given = inputs.kinds & {"interactions", "edges"}
    if len(given) != 1:
        raise InputError(
            f"producer {producer!r} walks one graph: pass either --input edges=PATH or --input interactions=PATH"
            + (" (both were given)" if len(given) == 2 else "")
        )
    if "edges" in given:
        edges = inputs.edges()
        directed = False if config.directed is None else config.directed
        src, dst, weight = edges["src"].to_numpy(), edges["dst"].to_numpy(), edges["weight"].to_numpy()
        report: dict = {}
        if not directed:
            once = listed_both_ways(src, dst, weight)
            if once is not None:  # a symmetric matrix written out: read each edge once
                report["edges_listed_both_ways"] = int((~once).sum())
                src, dst, weight = src[once], dst[once], weight[once]
        return Graph.from_edges(src, dst, weight, directed=directed), report
    seqs = inputs.sequences(min_rating=config.min_rating, session_gap=config.session_gap)
    threshold = int(getattr(config, "min_interactions", 1))
    kept = frequent_items(seqs, threshold)
    directed = True if config.directed is None else config.directed
    graph = Graph.from_sequences(kept, directed=directed, self_loops=config.self_loops)
    seen = int(np.count_nonzero(np.bincount(np.asarray(seqs.codes), minlength=seqs.vocab.shape[0])))
    left = seen - int(np.count_nonzero(np.bincount(np.asarray(kept.codes), minlength=kept.vocab.shape[0])))
    return graph, {"items_seen": seen, "items_left_out": left, "min_interactions": threshold}


def listed_both_ways(src: Any, dst: Any, weight: Any) -> np.ndarray | None:
    """For an undirected edge list that gives every edge in both directions with the same weight (a
    symmetric adjacency matrix written out, as the node2vec paper's .mat graphs are): a mask keeping
    each edge once (the row with src <= dst). None when the list is not written that way.

    An undirected graph sums repeated edges, so such a list would double every edge but a self loop
    (written once): its walks would step onto self loops half as often as the same graph with each edge
    written once, or as the node2vec reference implementation (networkx ``to_undirected``, which keeps
    one weight per edge) does.
    """
    try:
        s, d = _factorize(np.concatenate(one_kind([_as_ids(src, "src"), _as_ids(dst, "dst")])))[1].reshape(2, -1)
    except InputError:
        return None
    w = np.ones(s.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
    forward, backward = s < d, s > d
    if forward.sum() != backward.sum() or not forward.any():
        return None
    a = np.lexsort((w[forward], d[forward], s[forward]))
    b = np.lexsort((w[backward], s[backward], d[backward]))
    if not (np.array_equal(s[forward][a], d[backward][b]) and np.array_equal(d[forward][a], s[backward][b])
            and np.array_equal(w[forward][a], w[backward][b])):
        return None
    return ~backward


def frequent_items(seqs: Sequences, min_count: int) -> Sequences:
    """``seqs`` without the items that occur fewer than ``min_count`` times in them.

    The kept items' neighbours in a sequence become adjacent (as a dropped word in
    word2vec), and the vocabulary shrinks to the kept items, so a dropped item is
    no node at all: it starts no walks and gets no vector. ``min_count`` 1 returns
    ``seqs`` itself.
    """
    if min_count <= 1:
        return seqs
    codes = np.asarray(seqs.codes)
    n = int(seqs.vocab.shape[0])
    counts = np.bincount(codes, minlength=n)[:n]
    keep = counts >= min_count
    new_code = np.cumsum(keep) - 1
    kept = keep[codes]
    running = np.concatenate(([0], np.cumsum(kept, dtype=np.int64)))
    offsets = running[np.asarray(seqs.offsets, dtype=np.int64)]
    return Sequences(vocab=seqs.vocab[keep], codes=new_code[codes[kept]].astype(np.int32), offsets=offsets)
