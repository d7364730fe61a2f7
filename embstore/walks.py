"""Random walks on a :class:`~embstore.graph.Graph`: DeepWalk (first order) and node2vec (second order).

One engine for every producer that walks::

    from embstore.graph import Graph
    from embstore.walks import WalkConfig, random_walks, iter_walk_chunks

    g = Graph.from_sequences(sessions)                       # or Graph.from_edges(src, dst, w)
    walks = random_walks(g, WalkConfig(walk_length=80, walks_per_node=10, p=0.25, q=4))
    walks.vocab is g.ids; walks[0]                           # int32 codes of the first walk

    for chunk in iter_walk_chunks(g, WalkConfig(), chunk_walks=100_000):   # stream instead
        trainer.feed(chunk)

How a walk moves. From node v, the next node x is drawn with probability
proportional to w(v,x) (``weighted=True``) or uniformly (``weighted=False``).
With p or q other than 1, a walk that came from t to v instead weighs x by
w(v,x)·α, α = 1/p when x is t, 1 when the arc t->x exists, 1/q otherwise
(node2vec). A node without out-edges ends its walk early: the walk is shorter,
never padded. ``walk_length`` counts nodes, start included.

How it is fast. The kernels are compiled with numba (on first use, cached on
disk) and run blocks of walks in parallel on all cores. A walk is a chain of
cache misses, so each thread advances 16 walks in turn, one step each, and
prefetches the next row bounds: the misses of different walks overlap.
First-order steps read one 16-byte row per step (neighbour, alias neighbour,
threshold: Vose's alias method, O(1)). Second-order steps use exact rejection
sampling (as KnightKing does): propose x from the first-order table, accept
with α(x)/max α, where "is x a neighbour of t" is a binary search in t's
sorted row; the high 1/p of the return edge is a separate mass, so small p
does not slow proposals down, and a step that keeps being rejected falls back
to the exact O(degree) draw, which leaves the distribution unchanged.

Reproducibility. Walk ``i`` draws from its own stretch of one SplitMix64
stream keyed by ``(seed, i)``, and start nodes come from the seed alone, so
the walks are the same for any number of threads and any chunking.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator, Mapping

import numpy as np

from embstore.config import parse_config
from embstore.errors import InputError
from embstore.graph import Graph
from embstore.options import WalkConfig
from embstore.progress import bar, wanted
from embstore.sequences import Sequences

__all__ = ["WalkConfig", "iter_walk_chunks", "random_walks"]

log = logging.getLogger(__name__)


def random_walks(
    graph: Graph, config: WalkConfig | Mapping[str, Any] | None = None, progress: bool | None = True
) -> Sequences:
    """All walks of a run, held as int32 codes in one :class:`Sequences` (vocab = ``graph.ids``).

    Walk order: with ``start="uniform"``, round r (of walks_per_node) visits every
    node once in a seeded random order. Peak memory is about 4 bytes × n_walks ×
    walk_length; use :func:`iter_walk_chunks` to stream instead. ``progress`` draws a
    bar on stderr (None: only when stderr is a terminal).
    """
    plan = _Plan(graph, _config(config))
    n_walks, length = plan.n_walks, plan.cfg.walk_length
    out = np.empty(n_walks * length, dtype=np.int32)
    lengths = np.empty(n_walks, dtype=np.int64)
    written = 0
    t0 = time.perf_counter()
    chunk = _default_chunk(n_walks)
    with _walk_bar(n_walks, progress) as shown:
        for a in range(0, n_walks, chunk):
            b = min(a + chunk, n_walks)
            plan.walk(a, b, out[a * length : b * length], lengths[a:b])
            written = _K.compact(out, a * length, written, lengths[a:b], length)
            shown.update(b - a)
    if written < out.shape[0]:
        try:
            out.resize((written,), refcheck=False)  # shrink in place: no second copy
        except (ValueError, SystemError):
            out = out[:written].copy()
    offsets = np.zeros(n_walks + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    _log_rate(n_walks, written, time.perf_counter() - t0)
    return Sequences(vocab=graph.ids, codes=out, offsets=offsets)


def iter_walk_chunks(
    graph: Graph,
    config: WalkConfig | Mapping[str, Any] | None = None,
    chunk_walks: int = 100_000,
    progress: bool | None = False,
) -> Iterator[Sequences]:
    """The walks of :func:`random_walks`, in the same order, as Sequences of ≤ ``chunk_walks`` walks.

    Concatenating the chunks gives exactly what :func:`random_walks` returns;
    only one chunk is held at a time.
    """
    if chunk_walks < 1:
        raise InputError(f"chunk_walks must be >= 1, got {chunk_walks}")
    plan = _Plan(graph, _config(config))
    n_walks, length = plan.n_walks, plan.cfg.walk_length
    t0, tokens = time.perf_counter(), 0
    with _walk_bar(n_walks, progress) as shown:
        for a in range(0, n_walks, chunk_walks):
            b = min(a + chunk_walks, n_walks)
            buf = np.empty((b - a) * length, dtype=np.int32)
            lengths = np.empty(b - a, dtype=np.int64)
            plan.walk(a, b, buf, lengths)
            used = _K.compact(buf, 0, 0, lengths, length)
            codes = buf if used == buf.shape[0] else buf[:used].copy()
            offsets = np.zeros(b - a + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            tokens += used
            shown.update(b - a)
            yield Sequences(vocab=graph.ids, codes=codes, offsets=offsets)
    _log_rate(n_walks, tokens, time.perf_counter() - t0)


def walk_count(graph: Graph, config: WalkConfig | Mapping[str, Any] | None = None) -> int:
    """How many walks a run makes (n_nodes × walks_per_node): walk indices are 0..count-1."""
    return graph.n_nodes * _config(config).walks_per_node


def walk_range(graph: Graph, config: WalkConfig | Mapping[str, Any] | None, start: int, stop: int) -> Sequences:
    """Walks ``start``..``stop``-1 of a run, exactly as :func:`random_walks` makes them: walk i depends
    only on the seed and i, so any split of the indices (threads, chunks, a cluster's tasks) gives the
    same walks."""
    plan = _Plan(graph, _config(config))
    if not 0 <= start <= stop <= plan.n_walks:
        raise InputError(f"walk range {start}..{stop} is outside 0..{plan.n_walks}")
    length = plan.cfg.walk_length
    buf = np.empty((stop - start) * length, dtype=np.int32)
    lengths = np.empty(stop - start, dtype=np.int64)
    plan.walk(start, stop, buf, lengths)
    used = _K.compact(buf, 0, 0, lengths, length)
    offsets = np.zeros(stop - start + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Sequences(vocab=graph.ids, codes=buf[:used].copy() if used < buf.shape[0] else buf, offsets=offsets)


# ---------------------------------------------------------------------- planning


def _config(config: WalkConfig | Mapping[str, Any] | None) -> WalkConfig:
    if isinstance(config, WalkConfig):
        return config
    return parse_config(WalkConfig, config, "walks")


class _Plan:
    """What one run needs: sampling tables, start nodes, seed; walks any range of walk indices."""

    def __init__(self, graph: Graph, cfg: WalkConfig):
        if not isinstance(graph, Graph):
            raise InputError(f"random walks need an embstore.graph.Graph, got {type(graph).__name__}")
        n = graph.n_nodes
        if n == 0:
            raise InputError("the graph has no nodes: nothing to walk")
        _jit()
        self.graph, self.cfg = graph, cfg
        self.n_walks = n * cfg.walks_per_node
        self.second = not (cfg.p == 1.0 and cfg.q == 1.0)
        # Equal weights everywhere sample like no weights at all, without the alias lookups.
        w = graph.weights
        self.use_alias = bool(cfg.weighted and w.size and not np.all(w == w[0]))
        if self.use_alias:
            self.tab = _edge_table(graph)
            self.wdeg = graph.degree(weighted=True)
        else:  # the same kernels read column 0 only: the neighbour codes themselves
            self.tab = graph.indices.view(np.uint32).reshape(-1, 1)
            self.wdeg = graph.degree().astype(np.float64)
            self.wdeg.flags.writeable = False  # same array type as the weighted case: one compile
        self.arrays = (graph.indptr, graph.indices, graph.weights, self.tab,
                       self.tab.view(np.float32), self.wdeg)  # fmt: skip
        self.starts = _start_nodes(graph, cfg, self.wdeg)
        self.seed_state = np.uint64(_splitmix_py((cfg.seed + _GOLDEN_INT) & _MASK64))
        self.threads = _threads(cfg.workers)

    def walk(self, a: int, b: int, out: np.ndarray, lengths: np.ndarray) -> None:
        """Walks a..b-1 into ``out`` (walk i at ``(i-a)*walk_length``), their lengths into ``lengths``."""
        import numba

        g, cfg = self.graph, self.cfg
        before = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        chunksize = numba.set_parallel_chunksize(1)  # threads take blocks as they free up
        try:
            _K.walk(
                self.arrays, g.directed, self.starts[a:b], np.int64(a), self.seed_state,
                np.int64(cfg.walk_length), self.second, self.use_alias, 1.0 / cfg.p, 1.0 / cfg.q,
                out, lengths,
            )  # fmt: skip
        finally:
            numba.set_parallel_chunksize(chunksize)
            numba.set_num_threads(before)


def _start_nodes(graph: Graph, cfg: WalkConfig, wdeg: np.ndarray) -> np.ndarray:
    n, k = graph.n_nodes, cfg.walks_per_node
    rng = np.random.default_rng([cfg.seed & _MASK64, 0x5EED57A2])
    if cfg.start == "uniform":
        starts = np.empty(n * k, dtype=np.int32)
        for r in range(k):  # each round visits every node once, in its own order
            starts[r * n : (r + 1) * n] = rng.permutation(n)
        return starts
    mass = wdeg if cfg.weighted else graph.degree().astype(np.float64)
    total = float(mass.sum())
    if total <= 0:
        raise InputError("start='degree' needs at least one edge; the graph has none")
    cdf = np.cumsum(mass / total)
    cdf[-1] = 1.0
    picks = np.searchsorted(cdf, rng.random(n * k), side="right")
    return np.minimum(picks, n - 1).astype(np.int32)


def _edge_table(graph: Graph) -> np.ndarray:
    """Per arc, one 16-byte row: [neighbour, alias neighbour, keep threshold, alias weight bits].

    A weighted step reads one row (one cache miss) and takes the neighbour when
    32 random bits fall below the threshold, else the alias (Vose's method).
    Kept on the graph (:meth:`Graph.memo`): built once, reused by every run.
    """

    def build() -> np.ndarray:
        m = graph.n_edges
        prob = np.empty(m, np.float64)
        alias = np.empty(m, np.int64)
        _K.build_alias(graph.indptr, graph.weights, prob, alias, np.empty(m, np.int64))
        tab = np.empty((m, 4), np.uint32)
        tab[:, 0] = graph.indices
        tab[:, 1] = graph.indices[alias]
        tab[:, 2] = np.minimum(np.floor(prob * 2.0**32), 2.0**32 - 1).astype(np.uint32)
        tab[:, 3] = graph.weights[alias].view(np.uint32)
        return tab

    return graph.memo("edge_table", build)


def _threads(workers: int | None) -> int:
    import numba

    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    return most if workers is None else max(1, min(int(workers), most))


def _default_chunk(n_walks: int) -> int:
    return int(min(max(n_walks // 64, 1 << 14), 1 << 20))


def _walk_bar(total: int, progress: bool | None):
    return bar(total, "walks", unit="walk", enabled=wanted(progress), unit_scale=True, mininterval=0.5)


def _log_rate(n_walks: int, tokens: int, seconds: float) -> None:
    steps = tokens - n_walks
    rate = steps / seconds if seconds > 0 else float("inf")
    log.info("walked %d walks, %d steps in %.2fs (%.3g steps/s)", n_walks, steps, seconds, rate)


# ---------------------------------------------------------------------- kernels
#
# Plain Python functions, compiled by `_jit` on first use so that importing this
# module (e.g. for WalkConfig) does not import numba. `_jit` rebinds the module
# globals below to their numba dispatchers; the kernels find each other through
# those globals, which is also what lets numba cache them on disk.

_MASK64 = (1 << 64) - 1
_GOLDEN_INT = 0x9E3779B97F4A7C15
_GOLDEN = np.uint64(_GOLDEN_INT)
_STRIDE = np.uint64((_GOLDEN_INT << 24) & _MASK64)  # walk i owns stream positions i·2^24 ...
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SH11, _SH27, _SH30, _SH31, _SH32 = (np.uint64(s) for s in (11, 27, 30, 31, 32))
_LOW32 = np.uint64(0xFFFFFFFF)
_INV53 = 1.0 / 9007199254740992.0
_MAX_TRIES = 16  # rejections before the exact O(degree) draw
_BLOCK = 512  # walks per parallel task
_SLOTS = 16  # walks interleaved within a task
prange = range


def _prefetch(arr, i):
    """Hint the processor to load arr[i] into cache; `_jit` makes it an LLVM prefetch."""


def _splitmix_py(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _next(s):
    """SplitMix64: the next state and a 64-bit random value."""
    s = s + _GOLDEN
    z = s
    z = (z ^ (z >> _SH30)) * _M1
    z = (z ^ (z >> _SH27)) * _M2
    return s, z ^ (z >> _SH31)


def _uniform(s):
    s, r = _next(s)
    return s, np.float64(r >> _SH11) * _INV53


def _find(indices, lo, hi, x):
    """Position of x in the sorted slice indices[lo:hi], or -1.

    Branch-free (the loop runs log2(hi - lo) times whatever the data, and the
    comparison becomes a conditional move), so a miss costs no pipeline flush.
    """
    n = hi - lo
    if n <= 0:
        return -1
    base = lo
    while n > 1:
        half = n >> 1
        base = base + half if indices[base + half] <= x else base
        n -= half
    return base if indices[base] == x else -1


def _adjacent(g, directed, t, x):
    """Does the arc t->x exist? A binary search in t's row.

    t is the node the walk just left, so its row bounds are still in cache;
    looking at x's row instead (shorter, for undirected graphs) measured slower,
    because reading x's bounds is one more cache miss.
    """
    indptr, indices = g[0], g[1]
    return _find(indices, indptr[t], indptr[t + 1], x) >= 0


def _draw_first(s, g, a, d, use_alias, need_w):
    """One first-order step from the row at a (d > 0 arcs): (state, node, arc weight).

    One random draw: its high 32 bits pick a slot, the low 32 bits keep the slot
    or take its alias. The weight is read only when ``need_w``.
    """
    tab, tabf, weights = g[3], g[4], g[2]
    s, r = _next(s)
    k = a + np.int64(((r >> _SH32) * np.uint64(d)) >> _SH32)
    if use_alias:
        # Load both candidates of the row, then select: no branch on a coin flip.
        here, there, threshold = np.int64(tab[k, 0]), np.int64(tab[k, 1]), np.uint64(tab[k, 2])
        alias = (r & _LOW32) >= threshold
        x = there if alias else here
        if need_w:
            return s, x, np.float64(tabf[k, 3]) if alias else np.float64(weights[k])
        return s, x, 1.0
    return s, np.int64(tab[k, 0]), 1.0


def _bias(g, directed, t, x, inv_p, inv_q):
    if x == t:
        return inv_p
    if inv_q == 1.0 or _adjacent(g, directed, t, x):
        return 1.0
    return inv_q


def _draw_exact(s, g, directed, use_alias, t, v, inv_p, inv_q):
    """Second-order step from the full O(degree) distribution (the rejection fallback)."""
    indptr, indices, weights = g[0], g[1], g[2]
    a, b = indptr[v], indptr[v + 1]
    total = 0.0
    for k in range(a, b):
        w = np.float64(weights[k]) if use_alias else 1.0
        total += w * _bias(g, directed, t, np.int64(indices[k]), inv_p, inv_q)
    s, u = _uniform(s)
    u *= total
    acc = 0.0
    k = b - 1
    for j in range(a, b):
        w = np.float64(weights[j]) if use_alias else 1.0
        acc += w * _bias(g, directed, t, np.int64(indices[j]), inv_p, inv_q)
        if u < acc:
            k = j
            break
    return s, np.int64(indices[k]), np.float64(weights[k]) if use_alias else 1.0


def _draw_second(s, g, directed, use_alias, t, v, w_back, inv_p, inv_q, env, low):
    """One node2vec step t -> v -> x by rejection from the first-order proposal.

    Envelope: env·w(v,x) for every x (env = max(1, 1/q)), plus a separate mass
    (1/p - env)·w(v,t) that returns to t directly when 1/p > env. ``w_back`` is
    w(v,t) when known (undirected: the arc just walked), else negative.
    Returns (state, node, arc weight), like _draw_first.
    """
    indptr, indices, weights, wdeg = g[0], g[1], g[2], g[5]
    a, b = indptr[v], indptr[v + 1]
    wv = wdeg[v] if use_alias else np.float64(b - a)  # unweighted: no extra read
    extra = 0.0
    if inv_p > env:
        if w_back < 0.0:  # directed: look the arc v->t up
            w_back = 0.0
            k = _find(indices, a, b, t)
            if k >= 0:
                w_back = np.float64(weights[k]) if use_alias else 1.0
        extra = (inv_p - env) * w_back
    base = env * wv
    total = base + extra
    keep_t = min(inv_p, env)
    for _ in range(_MAX_TRIES):
        s, u = _uniform(s)
        y = u * total
        if y >= base:
            return s, t, w_back
        y = y / wv  # uniform on [0, env), independent of the proposal below
        s, x, w = _draw_first(s, g, a, b - a, use_alias, not directed)
        if x == t:
            if y < keep_t:
                return s, x, w
        elif y < low:
            return s, x, w
        elif _adjacent(g, directed, t, x):
            if y < 1.0:
                return s, x, w
        elif y < inv_q:
            return s, x, w
    return _draw_exact(s, g, directed, use_alias, t, v, inv_p, inv_q)


def _walk(g, directed, starts, first_walk, seed_state, walk_length, second, use_alias, inv_p,
          inv_q, out, lengths):  # fmt: skip
    """Walks first_walk + i for i < len(starts); walk i goes to out[i·walk_length:].

    ``g`` = (indptr, indices, weights, tab, tabf, wdeg). Blocks of walks run in
    parallel. Inside a block, _SLOTS walks advance in turn, one step each, so the
    processor overlaps their memory misses (a walk's own steps depend on each
    other; different walks' steps do not).
    """
    indptr = g[0]
    n_walks = starts.shape[0]
    env = max(1.0, inv_q)
    low = min(1.0, inv_q)
    need_w = second and use_alias and not directed and inv_p > env
    n_blocks = (n_walks + _BLOCK - 1) // _BLOCK
    for blk in prange(n_blocks):
        lo = np.int64(blk) * _BLOCK
        hi = min(lo + _BLOCK, n_walks)
        walk = np.full(_SLOTS, -1, np.int64)
        state = np.zeros(_SLOTS, np.uint64)
        cur = np.zeros(_SLOTS, np.int64)
        prev = np.zeros(_SLOTS, np.int64)
        w_prev = np.zeros(_SLOTS, np.float64)
        count = np.zeros(_SLOTS, np.int64)
        following = lo
        active = 0
        for j in range(_SLOTS):
            following, active = _begin(j, following, hi, walk, state, cur, prev, count, starts,
                                       first_walk, seed_state, walk_length, out, lengths,
                                       active)  # fmt: skip
        while active > 0:
            for j in range(_SLOTS):
                i = walk[j]
                if i < 0:
                    continue
                c = cur[j]
                a = indptr[c]
                d = indptr[c + 1] - a
                if d > 0:
                    if second and prev[j] >= 0:
                        w_back = -1.0 if directed else w_prev[j]
                        s, x, w = _draw_second(state[j], g, directed, use_alias, prev[j], c, w_back,
                                               inv_p, inv_q, env, low)  # fmt: skip
                    else:
                        s, x, w = _draw_first(state[j], g, a, d, use_alias, need_w)
                    state[j] = s
                    out[i * walk_length + count[j]] = x
                    count[j] += 1
                    prev[j] = c
                    cur[j] = x
                    w_prev[j] = w
                    _prefetch(indptr, x)  # x's row bounds, needed at this slot's next turn
                    if second:
                        _prefetch(g[1], a + (d >> 1))  # first probe of the next "t->x?" search
                        if use_alias:
                            _prefetch(g[5], x)  # x's weighted degree
                if d == 0 or count[j] == walk_length:
                    lengths[i] = count[j]
                    active -= 1
                    following, active = _begin(j, following, hi, walk, state, cur, prev, count,
                                               starts, first_walk, seed_state, walk_length, out,
                                               lengths, active)  # fmt: skip


def _begin(j, i, hi, walk, state, cur, prev, count, starts, first_walk, seed_state, walk_length,
           out, lengths, active):  # fmt: skip
    """Put walk i (if i < hi) into slot j; walks of length 1 finish on the spot."""
    walk[j] = -1
    while i < hi:
        node = np.int64(starts[i])
        out[i * walk_length] = node
        if walk_length == 1:
            lengths[i] = 1
            i += 1
            continue
        walk[j] = i
        state[j] = seed_state + (np.uint64(first_walk) + np.uint64(i)) * _STRIDE
        cur[j] = node
        prev[j] = -1
        count[j] = 1
        return i + 1, active + 1
    return i, active


def _compact(out, src, dst, lengths, walk_length):
    """Move walks stored at fixed strides from out[src:] down to out[dst:] back to back."""
    for i in range(lengths.shape[0]):
        n = lengths[i]
        a = src + i * walk_length
        if a != dst:
            for k in range(n):
                out[dst + k] = out[a + k]
        dst += n
    return dst


def _build_alias(indptr, weights, prob, alias, stack):
    """Vose alias table per row: at arc k keep it with prob[k], else go to arc alias[k]."""
    for v in prange(indptr.shape[0] - 1):
        a, b = indptr[v], indptr[v + 1]
        d = b - a
        if d == 0:
            continue
        total = 0.0
        for k in range(a, b):
            total += np.float64(weights[k])
        n_small, n_large = 0, 0  # small stack grows from a upward, large from b-1 downward
        for k in range(a, b):
            prob[k] = np.float64(weights[k]) * d / total
            if prob[k] < 1.0:
                stack[a + n_small] = k
                n_small += 1
            else:
                stack[b - 1 - n_large] = k
                n_large += 1
        while n_small > 0 and n_large > 0:
            n_small -= 1
            small = stack[a + n_small]
            n_large -= 1
            large = stack[b - 1 - n_large]
            alias[small] = large  # prob[small] is final
            prob[large] = (prob[large] + prob[small]) - 1.0
            if prob[large] < 1.0:
                stack[a + n_small] = large
                n_small += 1
            else:
                stack[b - 1 - n_large] = large
                n_large += 1
        while n_large > 0:
            n_large -= 1
            large = stack[b - 1 - n_large]
            prob[large] = 1.0
            alias[large] = large
        while n_small > 0:  # only rounding leftovers
            n_small -= 1
            small = stack[a + n_small]
            prob[small] = 1.0
            alias[small] = small


def _prefetch_intrinsic():
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, arr, idx):
        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                           wraparound=False)  # fmt: skip
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            # read, high temporal locality, data cache
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(arr, idx), codegen

    return prefetch


class _Kernels:
    walk: Any = None
    compact: Any = None
    build_alias: Any = None


_K = _Kernels()
_jit_lock = threading.Lock()


def _jit() -> None:
    """Compile (or load from numba's disk cache) the kernels, once per process."""
    if _K.walk is not None:
        return
    with _jit_lock:
        if _K.walk is not None:
            return
        import numba

        g = globals()
        g["prange"] = numba.prange
        g["_prefetch"] = _prefetch_intrinsic()
        for name in ("_next", "_uniform", "_find", "_adjacent", "_draw_first", "_bias",
                     "_draw_exact", "_draw_second", "_begin"):  # fmt: skip
            g[name] = numba.njit(nogil=True, cache=True)(g[name])
        _K.compact = numba.njit(nogil=True, cache=True)(_compact)
        _K.build_alias = numba.njit(nogil=True, cache=True, parallel=True)(_build_alias)
        _K.walk = numba.njit(nogil=True, cache=True, parallel=True)(_walk)
