"""The built-in FAISS retriever: exact (flat), HNSW, IVF-flat and LSH indexes, or one chosen by size.

``index=auto`` (the default) gives a version the exact flat index while flat stays fast and an
IVF index above that, tuned at build to a measured recall:

- count × dim ≤ ``auto_exact_max`` (6.4M floats, e.g. 100k vectors of 64-d): ``flat``. Measured
  on a 2-core machine with ``bench/bench_recall.py threshold`` (cosine, one thread per query):
  flat answers one query in 0.22 ms at 50k × 64, 0.55 ms at 100k × 64, 1.5 ms at 200k × 64,
  3.6 ms at 400k × 64 and about 8 ms at 1M × 64 (its time follows count × dim: 0.61 ms at
  50k × 128, 1.7 ms at 100k × 128), while an approximate index answers in 0.1-0.4 ms. Up to
  6.4M floats flat stays near half a millisecond, exact and free to build; beyond, its time
  grows with the size (1.5 ms at twice as many floats, 115 ms at 10M × 64).
- above it: ``ivf`` (``auto_approximate``): IVF-flat with ``auto_nlist(n)`` lists (sqrt(n)/2 as a
  power of two: 128 at 100k, 512 at 1M, ``AUTO_NLIST_MAX`` 2048 from 4M), k-means (seeded) on
  ``AUTO_TRAIN_PER_LIST`` (64) sampled vectors per list for ``AUTO_KMEANS_ITER`` (10)
  iterations; then ``recall_sample`` of the version's own vectors are searched with it and
  exactly (matrix product in blocks), and ``nprobe`` is doubled from its setting (16) up to a
  quarter of the lists until recall@10 reaches ``auto_recall`` (0.95); the value reached is saved
  with the index and searches use it. If a quarter of the lists falls short, the version gets
  the flat index after all (logged, and said in the report).

  Why IVF above the threshold, measured with ``bench/bench_recall.py`` on the 2-core machine
  while other jobs ran (times pessimistic; recall on 1,000 held-out draws, not stored vectors):
  at 1M × 64 (100 clusters) HNSW32 with ef_construction 200 (what ``index=hnsw`` builds) took
  537 s to build and found 0.994 at ef_search 128 (0.39 ms a query); HNSW16 with
  ef_construction 40 took 111 s and found 0.895 at ef_search 128; auto's IVF (512 lists) took
  5.9 s with its recall measurement and found 1.000 at the nprobe it chose, 16 (0.37 ms). On
  harder data (10,000 clusters, noise 0.5): HNSW16/40 87 s, 0.980; IVF 5.6 s, 0.949 held out
  (0.965 on the stored sample it was tuned on). At 10M × 64, IVF with 2048 lists: 110 s,
  0.975 at nprobe 16, 0.89 ms a query (flat: 115 ms). A whole publish of 1M vectors takes
  10-17 s here (bench/bench_publish.py), so a graph built in minutes would be most of it,
  while IVF costs seconds: adding n vectors costs n × nlist × dim, hence half of sqrt(n) lists.
  Held-out queries (a user's mean vector) find a little less than the stored sample says
  (0.949 against 0.965 above): raise ``auto_recall`` for a margin.
  ``auto_approximate=hnsw`` builds HNSW instead (``hnsw_m``, ``ef_construction``), its
  ``ef_search`` doubled from 128 up to ``AUTO_EF_MAX`` (1024) the same way (else flat); it starts
  at 128 because HNSW's held-out recall trails its stored one more (at 1M × 64, ef_search 32
  gave 0.97 on stored vectors but 0.87 on held-out draws).

The recall sample is ``recall_sample`` (1,000) stored vectors, fewer above 250k vectors so
that sample × count stays near ``RECALL_WORK`` (250 × 1M; never below 250): the exact search
costs sample × count × dim multiply-adds, 1.2-1.8 s at 1M and 13 s at 10M here.

An explicit ``index=`` always wins: ``flat``, ``hnsw``, ``ivf`` or ``lsh`` are built as asked,
with their own options. Every approximate index measures its recall@10 at build the same way;
``report()`` gives the facts (kind, parameters, recall, sample, seconds), which the store keeps
in the version's ``metrics["index"]``.

IVF built in shards (``ShardedBuild``, used by the spark engine for large versions): the lists
are trained on the driver on a sample of the version's rows -- ``index=auto``'s rule above
(``AUTO_TRAIN_PER_LIST`` per list, ``AUTO_KMEANS_ITER`` iterations), or for an explicit
``index=ivf`` ``SHARD_TRAIN_PER_LIST`` (256, the bound faiss's own k-means samples a local
build down to) -- and the trained empty index is serialised; each shard adds its rows (unit
rows for cosine, as ``build`` adds them) with their row numbers as ids into a copy and is
written as an index file; ``merge_shards`` merges the shards' lists with faiss's on-disk merge
(``faiss.contrib.ondisk.merge_ondisk``) into ``index.ivfdata`` beside ``index.faiss``, which
names it without a directory, so ``load`` memory-maps it read-only wherever the version's
directory is and whatever the working directory. Recall is then measured (and for auto
``nprobe`` tuned, else flat) on the recall sample exactly as after ``build``; the report says
``build: sharded`` and the number of ``shards``.

``index=lsh`` is random-hyperplane LSH (SimHash; FAISS ``IndexLSH``: ``lsh_bits`` sign bits of
random projections, Hamming distance over all codes) with an exact re-rank of the
``lsh_candidates`` nearest codes. Hyperplanes hash angles, so it serves ``cosine`` directly and
``ip`` through the simple-LSH transform (Neyshabur and Srebro, 2015: a stored x becomes
[x/M, sqrt(1 - |x/M|^2)] with M the largest norm, a query q becomes [q/|q|, 0], and their
angle orders stored vectors by inner product); ``l2`` is refused with a ConfigError, since
angles do not order Euclidean distances. Measured with ``bench/bench_recall.py`` on clustered
64-d vectors (cosine, held-out queries): the defaults (512 bits, 500 candidates) give recall@10
0.996 at 100k but 0.847 at 1M; 1024 bits and 1000 candidates give 0.991 at 1M, at 2.4 times
flat's queries/s and a fifteenth of HNSW's, since every query scans every code. Bucketed
multi-probe (faiss ``IndexBinaryMultiHash`` over the same codes), tried once outside the
bench, was no better at 1M (0.81-0.85 at 47-630 queries/s), so it is not offered.

Scores follow the Retriever contract: for ``ip`` the raw inner product, for
``cosine`` the cosine similarity (stored vectors and queries are normalised to
unit length; a zero vector stays zero and scores 0 against everything), for
``l2`` the Euclidean distance (the square root of faiss's squared L2). Rows come
best first. A slot with no neighbour -- k larger than the index, or an
approximate index that found fewer than k -- has row ``-1`` and the worst
possible score: ``-inf`` for ip and cosine, ``+inf`` for l2. Padding therefore
never outranks a real hit and is never NaN; drop it with ``rows >= 0``.

Determinism: flat search is exact. IVF training is seeded (``seed``) and gives
the same index for the same vectors; LSH's projections are fixed by faiss, so the
same vectors give the same codes. HNSW graph construction inserts vectors in
parallel, so two builds agree exactly only with ``threads=1`` (and auto's tuned
``ef_search`` may then differ too); a saved index always answers the same way after ``load``.
The recall sample is drawn with ``seed``.

faiss is imported where it is used, so listing plugins stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import pydantic

from embstore.errors import ConfigError, IntegrityError, first_line
from embstore.hookspecs import hookimpl
from embstore.linalg import unit_rows
from embstore.retriever import Retriever, RetrieverConfig, ShardedBuild

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
RERANK_FILE = "rerank.npy"  # lsh: the vectors its candidates are re-ranked with
IVFDATA_FILE = "index.ivfdata"  # ivf built in shards: the merged inverted lists, memory-mapped on load
FORMAT_VERSION = 1

IndexType = Literal["auto", "flat", "hnsw", "ivf", "lsh"]
KINDS = ("flat", "hnsw", "ivf", "lsh")  # what a built index is; "auto" resolves to flat or hnsw

# auto: exact flat up to this many stored floats (count × dim); see the module docstring
AUTO_EXACT_MAX = 6_400_000
AUTO_EF_MAX = 1024  # auto with hnsw: the largest ef_search tried before falling back to flat
# auto with ivf (the default above the threshold; see the module docstring): about sqrt(n)/2 lists, a
# power of two, at most AUTO_NLIST_MAX; k-means on AUTO_TRAIN_PER_LIST sampled vectors per list for
# AUTO_KMEANS_ITER iterations; nprobe doubled from ``nprobe`` up to a quarter of the lists
AUTO_NLIST_MAX = 2048
AUTO_TRAIN_PER_LIST = 64
AUTO_KMEANS_ITER = 10
# an explicit index=ivf built in shards trains on this many sampled vectors per list: the bound faiss's
# k-means (max_points_per_centroid) samples a local build's training set down to anyway
SHARD_TRAIN_PER_LIST = 256
# the exact search behind a recall measurement costs sample x count x dim multiply-adds: above
# RECALL_WORK / recall_sample vectors the sample shrinks to keep sample x count near RECALL_WORK
# (250 queries at 1M: 0.8 s here), never below RECALL_SAMPLE_MIN
RECALL_WORK = 250 * 1_000_000
RECALL_SAMPLE_MIN = 250
RECALL_K = 10
EXACT_BLOCK = 16384  # stored rows per matrix product when searching exactly for the recall sample
ROW_BLOCK = 65536  # rows checked, normalised or added to an index at a time


class FaissConfig(RetrieverConfig):
    index: IndexType = pydantic.Field(
        "auto",
        description="auto: flat while count × dim <= auto_exact_max, else auto_approximate (ivf) tuned to "
        "auto_recall; "
        "flat: exact search; hnsw: graph-based approximate search; ivf: inverted lists (IVF-flat); "
        "lsh: random-hyperplane LSH with an exact re-rank (metric cosine or ip)",
    )
    hnsw_m: int = pydantic.Field(32, ge=2, description="HNSW: links per node (more = better recall, more memory)")
    ef_construction: int = pydantic.Field(200, ge=1, description="HNSW: candidate list size while building")
    ef_search: int = pydantic.Field(
        128, ge=1, description="HNSW: candidate list size while searching (raised to k when smaller; "
        "with index=auto the least value tried, raised at build until auto_recall is reached)"
    )
    nlist: int | None = pydantic.Field(
        None,
        ge=1,
        description="IVF: number of inverted lists; None = about 4*sqrt(n), at most n//39 (at least 1). "
        "Capped to n when larger than the number of vectors",
    )
    nprobe: int = pydantic.Field(16, ge=1, description="IVF: lists visited per query (capped to nlist)")
    lsh_bits: int = pydantic.Field(
        512, ge=8, le=65536, multiple_of=8,
        description="LSH: hash bits per vector, one random hyperplane each (more = better candidates; "
        "bits/8 bytes per vector, scanned for every query)",
    )
    lsh_candidates: int = pydantic.Field(
        500, ge=1, description="LSH: nearest codes by Hamming distance re-ranked exactly per query "
        "(raised to k when smaller; more = better recall, slower)"
    )
    auto_exact_max: int = pydantic.Field(
        AUTO_EXACT_MAX, ge=0, description="auto: versions with count × dim up to this get the exact flat "
        "index (6.4M = 100k × 64-d, where flat answers one query in ~0.55 ms on one core), larger ones hnsw "
        "(measured by bench/bench_recall.py threshold)"
    )
    auto_approximate: Literal["ivf", "hnsw"] = pydantic.Field(
        "ivf", description="auto: the index above auto_exact_max: ivf (k-means lists, nprobe raised until "
        "auto_recall; 1M x 64 builds in seconds) or hnsw (ef_search raised until auto_recall; minutes at 1M)"
    )
    auto_recall: float = pydantic.Field(
        0.95, gt=0, le=1, description="auto: recall@10 against exact search the approximate index must reach "
        "on the recall sample (else the version gets flat)"
    )
    recall_sample: int = pydantic.Field(
        1000, ge=1, description="approximate indexes: stored vectors searched at build to measure "
        "recall@10 against exact search (recorded in the version's metrics); fewer above 250k vectors, "
        "so that sample x count stays near 250 x 1M (never fewer than 250)"
    )
    batch_size: int = pydantic.Field(4096, ge=1, description="queries sent to faiss per call")
    threads: int | None = pydantic.Field(
        None, ge=1, description="OpenMP threads faiss uses during build and search; None = faiss default"
    )
    seed: int = pydantic.Field(0, ge=0, description="IVF: k-means seed; and the recall sample's draw")

    @pydantic.field_validator("index")
    @classmethod
    def _lsh_metric(cls, value: str, info: pydantic.ValidationInfo) -> str:
        if value == "lsh" and info.data.get("metric") == "l2":
            raise ValueError(
                "lsh cannot serve metric 'l2': random hyperplanes hash angles, which order neighbours by "
                "cosine (and by inner product after the simple-LSH transform) but not by Euclidean distance; "
                "use metric=cosine or metric=ip with lsh, or index=hnsw, ivf or flat for l2"
            )
        return value


def _faiss() -> Any:
    import faiss

    return faiss


def default_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, but at most n//39 so k-means has 39 points per centroid; at least 1."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 39))


def auto_nlist(n: int) -> int:
    """index=auto's ivf: sqrt(n)/2 rounded to a power of two (512 at 1M), at most AUTO_NLIST_MAX and
    n//39, at least 1. Adding n vectors costs n x nlist x dim (assigning each to its list): half
    of sqrt(n) lists keep that to seconds at 1M while a query scans nprobe/nlist of the vectors."""
    return max(1, min(AUTO_NLIST_MAX, 2 ** int(round(math.log2(max(1.0, math.sqrt(n) / 2)))), n // 39))


def recall_sample_size(n: int, wanted: int) -> int:
    """Stored vectors searched to measure recall: ``wanted``, fewer for large n (RECALL_WORK)."""
    return min(wanted, n, max(RECALL_SAMPLE_MIN, RECALL_WORK // max(n, 1)))


class UnitRows:
    """The rows of ``x`` scaled to unit length as they are read (``u[a:b]``, ``u[rows]`` of any
    shape): cosine indexes that copy their vectors anyway (flat, ivf) are built a block at a time,
    without a normalised copy of the whole set beside the caller's and the index's."""

    def __init__(self, x: np.ndarray):
        self.x, self.shape = x, x.shape

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return unit_rows(self.x[key])
        rows = np.asarray(key)
        return unit_rows(self.x[rows.reshape(-1)]).reshape(*rows.shape, self.shape[1])


def _add(index: Any, x: "np.ndarray | UnitRows", threads: Callable[[], int | None] | None = None) -> None:
    """Add ``x`` a block at a time; ``threads()`` (if given) is asked before each block, so a build's
    thread count can change while it runs (the publisher lifts it once the version's writes are done)."""
    for start in range(0, len(x), ROW_BLOCK):
        if threads is not None and (count := threads()) is not None:
            _faiss().omp_set_num_threads(count)
        index.add(np.ascontiguousarray(x[start:start + ROW_BLOCK]))


def _held_vectors(index: Any) -> np.ndarray:
    """The vectors a flat or hnsw index holds, as a numpy view of its own memory (valid while the
    index lives and takes no more vectors): row i is what ``reconstruct(i)`` copies out."""
    faiss = _faiss()
    flat = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    n, d = int(flat.ntotal), int(flat.d)
    if n == 0:
        return np.empty((0, d), dtype=np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)


def _as_matrix(values: Any, what: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 (n, d) array of finite values, or a ValueError saying what is wrong."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numeric, got dtype {arr.dtype}")
    if what == "queries" and arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, d), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]}, but the index has dimension {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if len(arr) <= ROW_BLOCK and np.isfinite(arr).all():  # the usual case, one check (the hot query path)
        return arr
    finite = np.empty(len(arr), dtype=bool)
    for start in range(0, len(arr), ROW_BLOCK):  # a block at a time: no (n, d) temporary
        finite[start:start + ROW_BLOCK] = np.isfinite(arr[start:start + ROW_BLOCK]).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{what} contain NaN or inf in {bad.size} row(s), first at row {int(bad[0])}"
        )
    return arr


@contextlib.contextmanager
def _omp_threads(threads: int | None) -> Iterator[None]:
    """Run faiss with ``threads`` OpenMP threads, restoring the previous setting after.

    OpenMP keeps the count per calling thread (a build in a background thread at 1 leaves the
    threads that search at theirs).
    """
    if threads is None:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """Send C-level stdout to stderr meanwhile: faiss's on-disk lists print ``resizing ...`` with
    printf, and stdout belongs to the caller (``embstore run --json`` prints the version there).
    C's buffers are flushed on either side, so nothing printed before or after changes stream."""
    import ctypes
    import sys

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def _read_index_file(index_path: Path, ivfdata: Path | None) -> Any:
    """faiss's index at ``index_path``; with ``ivfdata`` (an ivf built in shards) its on-disk lists
    are memory-mapped read-only from that path, not from the name stored in the index file
    (relative, which faiss would resolve against the working directory). IntegrityError names a
    missing or short lists file (mapping past its end would crash the process on first search)."""
    faiss = _faiss()
    if ivfdata is None:
        return faiss.read_index(str(index_path))
    if not ivfdata.is_file():
        raise IntegrityError(f"faiss inverted lists file {ivfdata} is missing")
    index = faiss.read_index(str(index_path), faiss.IO_FLAG_SKIP_IVF_DATA | faiss.IO_FLAG_READ_ONLY)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    if not isinstance(lists, faiss.OnDiskInvertedLists):
        raise IntegrityError(f"faiss index file {index_path} holds {type(lists).__name__}, but its "
                             f"{META_FILE} names the on-disk lists {ivfdata.name}")
    size = ivfdata.stat().st_size
    if size < lists.totsize:
        raise IntegrityError(f"faiss inverted lists file {ivfdata} is truncated: {size} bytes, the index "
                             f"needs {lists.totsize}")
    lists.filename = str(ivfdata.resolve())
    lists.do_mmap()
    return index


# -- exact search and recall, for the measurement at build ----------------------------


def _nearness(x: np.ndarray, queries: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """Exact nearness (higher = nearer) of ``rows`` (q, k) to each query: the inner product, or
    2 q·x - |x|^2 for l2 (the squared distance minus |q|^2, negated: the same order)."""
    stored = x[np.where(rows >= 0, rows, 0)]
    near = np.matmul(stored, queries[:, :, None])[..., 0]
    if metric == "l2":
        near = 2 * near - np.einsum("qkd,qkd->qk", stored, stored)
    return np.where(rows >= 0, near, -np.inf)


def exact_neighbours(x: np.ndarray, queries: np.ndarray, k: int, metric: str,
                     block: int = EXACT_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k rows of ``x`` for each query and their nearness, nearest first, by matrix
    product over blocks of ``block`` stored rows (memory: queries × block scores at a time).

    ``metric`` is "ip" (inner product; normalise both sides first for cosine) or "l2";
    nearness is the inner product, or 2 q·x - |x|^2 for l2. Once every query has k rows, a block
    only adds the scores above a query's current k-th (few: k × ln(blocks) per query over all
    blocks), so selecting costs little beside the matrix products.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    nq, k = len(q), min(k, len(x))
    best_near = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((nq, 0), dtype=np.int64)
    for start in range(0, len(x), block):
        part = np.asarray(x[start:start + block], dtype=np.float32)
        near = q @ part.T
        if metric == "l2":
            near = 2 * near - np.einsum("nd,nd->n", part, part)[None, :]
        if best_near.shape[1] == k:  # only scores above the k-th so far can enter
            kth = best_near.min(axis=1)
            flat = np.flatnonzero(near > kth[:, None])  # (2-D nonzero is ten times slower)
            if flat.size:
                which, cols = np.divmod(flat, near.shape[1])
                best_rows, best_near = _merge_best(best_rows, best_near, which, cols + start, near[which, cols], k)
            continue
        if k < near.shape[1]:  # the block's own k best, then merge them with the best so far
            top = np.argpartition(-near, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(near.shape[1]), near.shape)
        best_near = np.concatenate([best_near, np.take_along_axis(near, top, axis=1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        if best_near.shape[1] > k:
            keep = np.argpartition(-best_near, k - 1, axis=1)[:, :k]
            best_near = np.take_along_axis(best_near, keep, axis=1)
            best_rows = np.take_along_axis(best_rows, keep, axis=1)
    order = np.argsort(-best_near, axis=1, kind="stable")
    return np.take_along_axis(best_rows, order, axis=1), np.take_along_axis(best_near, order, axis=1)


def _merge_best(best_rows: np.ndarray, best_near: np.ndarray, which: np.ndarray, rows: np.ndarray,
                near: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k best of its current (q, k) best and the candidates (query ``which``, row, nearness)."""
    nq = len(best_rows)
    queries = np.concatenate([np.repeat(np.arange(nq), k), which])
    all_near = np.concatenate([best_near.ravel(), near.astype(best_near.dtype, copy=False)])
    all_rows = np.concatenate([best_rows.ravel(), rows])
    order = np.lexsort((-all_near, queries))
    queries, all_near, all_rows = queries[order], all_near[order], all_rows[order]
    rank = np.arange(len(queries)) - np.searchsorted(queries, np.arange(nq))[queries]
    keep = rank < k
    return all_rows[keep].reshape(nq, k), all_near[keep].reshape(nq, k)


class RecallProbe:
    """recall@k of an index against exact search, with ``sample`` of the indexed vectors as queries.

    Each query is a stored row, and as in recall by id the row itself is left out of both
    lists: the exact k nearest others are the truth. A found row counts when its exact
    nearness is at least the k-th true one's (so ties and duplicate vectors are not misses).
    ``x`` is what the index holds (unit rows for cosine) and ``metric`` "ip" or "l2".
    """

    def __init__(self, x: np.ndarray, metric: str, sample: int, seed: int, k: int = RECALL_K):
        self.x, self.metric = x, metric
        self.k = min(k, len(x) - 1)
        rng = np.random.default_rng(seed)
        self.rows = np.sort(rng.choice(len(x), size=min(sample, len(x)), replace=False))
        self.queries = np.ascontiguousarray(x[self.rows])
        if self.k < 1:
            return
        truth, near = exact_neighbours(x, self.queries, self.k + 1, metric)
        others = np.where(truth != self.rows[:, None], near, -np.inf)
        self.kth = -np.sort(-others, axis=1)[:, self.k - 1]  # the k-th nearest other row

    def measure(self, search: Callable[[np.ndarray, int], np.ndarray]) -> float:
        """recall@k of ``search(queries, n)``, which returns (q, n) rows best first (-1 = none)."""
        found = np.asarray(search(self.queries, self.k + 1))
        # drop the query's own row; keep the first k of the others
        order = np.argsort(found == self.rows[:, None], axis=1, kind="stable")
        found = np.take_along_axis(found, order, axis=1)[:, : self.k]
        near = _nearness(self.x, self.queries, found, self.metric)
        tolerance = 1e-5 * (1 + np.abs(self.kth))
        hits = (found >= 0) & (near >= (self.kth - tolerance)[:, None])
        return float(hits.sum() / hits.size)


# -- LSH -----------------------------------------------------------------------------


def _mips_stored(x: np.ndarray) -> np.ndarray:
    """Simple-LSH: [x/M, sqrt(1 - |x/M|^2)] with M the largest norm (unit length, one more dimension)."""
    norms = np.linalg.norm(x, axis=1)
    scale = float(norms.max()) or 1.0
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = x / scale
    out[:, -1] = np.sqrt(np.maximum(0.0, 1.0 - (norms / scale) ** 2))
    return out


def _mips_queries(q: np.ndarray) -> np.ndarray:
    """Simple-LSH: [q/|q|, 0] (a zero query stays zero)."""
    out = np.zeros((q.shape[0], q.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = unit_rows(q)
    return out


class FaissRetriever(Retriever, ShardedBuild):
    """Top-k search over one version's vectors with faiss.

    ``build(vectors)`` or ``FaissRetriever.load(directory, config)`` first, then
    ``search(queries, k)``. Build-time options (``index``, ``metric``, ``hnsw_m``,
    ``ef_construction``, ``nlist``, ``lsh_bits``, ``seed``, and the ``auto_*`` choice) are
    fixed in the saved index; search-time options (``ef_search``, ``nprobe``, ``lsh_candidates``,
    ``batch_size``, ``threads``) come from the config given to ``load`` and may differ from the
    build's. ``kind_`` is the index built (``auto`` resolved); ``report()`` what was measured.
    An ivf can also be built in shards (``ShardedBuild``: ``train_for_shards``, ``fill_shard``
    on each shard's machine, ``merge_shards``; see the module docstring).
    """

    name = "faiss"
    Config = FaissConfig

    def __init__(self, config: FaissConfig | RetrieverConfig | None = None):
        if config is None:
            config = FaissConfig()
        elif not isinstance(config, FaissConfig):
            if not isinstance(config, RetrieverConfig):
                raise TypeError(f"FaissRetriever needs a FaissConfig, got {type(config).__name__}")
            config = FaissConfig(**config.model_dump())
        super().__init__(config)
        self.config: FaissConfig = config
        self.index_: "faiss.Index | None" = None
        self.kind_: str | None = None
        self.nlist_: int | None = None
        self.ef_search_: int | None = None  # hnsw built by auto: the tuned ef_search
        self.nprobe_: int | None = None  # ivf built by auto: the tuned nprobe
        self.training_: dict[str, int] | None = None  # ivf built by auto: its k-means sample and iterations
        self.rerank_: np.ndarray | None = None  # lsh: the vectors candidates are re-ranked with
        self.chosen_: str | None = None  # "auto" or "config": how kind_ was chosen
        self.ivfdata_: str | None = None  # ivf built in shards: its on-disk lists file, beside index.faiss
        self.threads_before_: int | None = None  # OpenMP threads of the thread that builds, before it did
        self.shards_started_: float | None = None  # ivf built in shards: when train_for_shards began
        self.report_: dict[str, Any] = {}
        self.params_: dict[int, Any] = {}  # faiss search parameters by ef_search / nprobe
        self.stored_: tuple[Any, np.ndarray] | None = None  # flat, hnsw: (index, a view of the vectors it holds)

    # -- facts ---------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.rerank_.shape[1]) if self.kind_ == "lsh" else int(self._built().d)

    def __len__(self) -> int:
        return int(self._built().ntotal)

    def report(self) -> dict[str, Any]:
        """Facts about the built index for the version's metrics: ``kind`` (flat, hnsw, ivf, lsh),
        ``chosen`` (auto or config), its parameters, and for approximate indexes ``recall@10``
        against exact search on ``sample`` stored vectors, with the seconds it took."""
        self._built()
        return dict(self.report_)

    def _built(self) -> "faiss.Index":
        if self.index_ is None:
            raise RuntimeError("faiss retriever has no index yet: call build(vectors) or load(directory, config)")
        return self.index_

    def _metric_type(self) -> int:
        faiss = _faiss()
        return faiss.METRIC_L2 if self.config.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    # -- build ---------------------------------------------------------------

    def build(self, vectors: np.ndarray) -> None:
        """Index float32 ``vectors`` (n, d); row i becomes result row i. The input is not modified."""
        x = _as_matrix(vectors, "vectors")
        n, d = x.shape
        if n == 0 or d == 0:
            raise ValueError(f"cannot build an index from vectors of shape {x.shape}; need at least one row and column")
        cfg = self.config
        auto = cfg.index == "auto"
        kind = self._kind_for(n, d)
        if cfg.metric == "cosine":  # hnsw and lsh keep (or insert from) the whole normalised set
            x = unit_rows(x) if kind in ("hnsw", "lsh") else UnitRows(x)
        elif kind == "lsh" and np.may_share_memory(x, vectors):
            x = x.copy()  # lsh keeps x for re-ranking: never the caller's array
        started = time.perf_counter()
        self.threads_before_ = _faiss().omp_get_max_threads()
        with _omp_threads(cfg.threads if cfg.threads is not None else self.build_threads):
            self._make(kind, x, auto)
            self.chosen_ = "auto" if auto else "config"
            measured = {} if kind == "flat" else self._measure(x, auto)  # may fall back to flat
        report: dict[str, Any] = {"kind": self.kind_, "chosen": self.chosen_, "count": n, "dim": d}
        if self.kind_ == "flat":
            report["exact"] = True
        else:
            report.update(self._parameters())
        report.update(measured)
        report["build_seconds"] = round(time.perf_counter() - started, 3)
        self.report_ = report
        recall = report.get(f"recall@{RECALL_K}")
        log.info("faiss %s index (%s) built: %d vectors, dim %d, %.2fs%s", self.kind_, cfg.metric, n, d,
                 report["build_seconds"], "" if recall is None else f", recall@{RECALL_K} {recall:.3f}")

    def _kind_for(self, n: int, d: int) -> str:
        """The index kind this config gives n vectors of d (``auto`` resolved by size)."""
        cfg = self.config
        if cfg.index != "auto":
            return cfg.index
        return "flat" if n * d <= cfg.auto_exact_max else cfg.auto_approximate

    def _ivf_nlist(self, n: int, auto: bool) -> int:
        """The ivf's lists for n vectors: the config's, else auto_nlist (auto) or default_nlist; at most n."""
        cfg = self.config
        nlist = cfg.nlist if cfg.nlist is not None else auto_nlist(n) if auto else default_nlist(n)
        if nlist > n:
            log.warning("faiss ivf: nlist=%d is more than the %d vectors; using nlist=%d", nlist, n, n)
            nlist = n
        return nlist

    def _empty_ivf(self, d: int, nlist: int, auto: bool) -> "faiss.IndexIVFFlat":
        """An untrained IVF-flat with the config's metric, seed and nprobe (auto: its short k-means)."""
        faiss = _faiss()
        metric = self._metric_type()
        index = faiss.IndexIVFFlat(faiss.IndexFlat(d, metric), d, nlist, metric)
        index.cp.seed = self.config.seed
        index.nprobe = min(self.config.nprobe, nlist)
        if auto:
            index.cp.niter = AUTO_KMEANS_ITER
            index.cp.max_points_per_centroid = AUTO_TRAIN_PER_LIST
        return index

    def _ivf_training_rows(self, n: int, nlist: int, per_list: int) -> np.ndarray | None:
        """The sorted rows k-means trains on, ``per_list`` per list drawn with the seed; None: all n."""
        size = min(n, nlist * per_list)
        return np.sort(np.random.default_rng(self.config.seed).choice(n, size=size, replace=False)) \
            if size < n else None

    def _make(self, kind: str, x: "np.ndarray | UnitRows", auto: bool = False) -> None:
        """Build index ``kind`` over the prepared rows ``x`` (unit rows for cosine); ``auto``: ivf
        with auto_nlist lists and a short k-means on a sample (AUTO_TRAIN_PER_LIST, AUTO_KMEANS_ITER)."""
        faiss = _faiss()
        cfg = self.config
        n, d = x.shape
        metric = self._metric_type()
        self.nlist_ = self.ef_search_ = self.nprobe_ = self.rerank_ = self.ivfdata_ = None
        self.training_ = None
        if kind == "flat":
            index = faiss.IndexFlat(d, metric)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, metric)
            index.hnsw.efConstruction = cfg.ef_construction
            index.hnsw.efSearch = cfg.ef_search
        elif kind == "ivf":
            nlist = self._ivf_nlist(n, auto)
            index = self._empty_ivf(d, nlist, auto)
            if auto:
                # the sample k-means would draw anyway, drawn here with the seed (and only it normalised)
                rows = self._ivf_training_rows(n, nlist, AUTO_TRAIN_PER_LIST)
                train = x[rows] if rows is not None else x[:]
                self.training_ = {"train_points": int(len(train)), "kmeans_iterations": AUTO_KMEANS_ITER}
            else:
                train = x[:]
            index.train(np.ascontiguousarray(train))
            del train
            self.nlist_ = nlist
        else:
            hashed = _mips_stored(x) if cfg.metric == "ip" else x
            index = faiss.IndexLSH(hashed.shape[1], cfg.lsh_bits, True, False)  # rotate_data, zero thresholds
            index.add(hashed)
            self.rerank_ = x
        if kind == "hnsw":
            index.add(np.asarray(x[:]))
        elif kind != "lsh":
            _add(index, x, self._build_threads_now)
        self.index_, self.kind_, self.params_ = index, kind, {}

    def _build_threads_now(self) -> int | None:
        """OpenMP threads for the next block a build adds: the config's, else ``build_threads`` (which
        the publisher lowers while the version's writes run beside the build), else what the
        building thread had (OMP_NUM_THREADS, or every core)."""
        if self.config.threads is not None:
            return self.config.threads
        return self.build_threads or self.threads_before_

    def _parameters(self) -> dict[str, Any]:
        cfg = self.config
        if self.kind_ == "hnsw":
            return {"hnsw_m": cfg.hnsw_m, "ef_construction": cfg.ef_construction, "ef_search": cfg.ef_search}
        if self.kind_ == "ivf":
            return {"nlist": self.nlist_, "nprobe": min(cfg.nprobe, self.nlist_ or 1), **(self.training_ or {})}
        if self.kind_ == "lsh":
            return {"bits": cfg.lsh_bits, "candidates": cfg.lsh_candidates}
        return {}

    def _measure(self, x: np.ndarray, auto: bool) -> dict[str, Any]:
        """recall@10 on the sample; for auto, the least ef_search (hnsw) or nprobe (ivf), doubled from
        the config's, reaching auto_recall, or else flat."""
        cfg = self.config
        started = time.perf_counter()
        probe = RecallProbe(x, "l2" if cfg.metric == "l2" else "ip", recall_sample_size(len(x), cfg.recall_sample),
                            cfg.seed)
        if probe.k < 1:  # one vector: nothing to measure
            return {}
        key = f"recall@{probe.k}"
        if self.kind_ == "ivf":
            name, value, most = "nprobe", min(cfg.nprobe, self.nlist_), max(min(cfg.nprobe, self.nlist_),
                                                                             self.nlist_ // 4)
        else:
            name, value, most = "ef_search", cfg.ef_search, AUTO_EF_MAX
        recall = probe.measure(lambda q, k: self._search_rows(q, k, value)[0])
        while auto and self.kind_ in ("hnsw", "ivf") and recall < cfg.auto_recall and value < most:
            value = min(2 * value, most)
            recall = probe.measure(lambda q, k: self._search_rows(q, k, value)[0])
        out: dict[str, Any] = {key: round(recall, 4), "sample": len(probe.rows),
                               "recall_seconds": round(time.perf_counter() - started, 3)}
        if auto and recall < cfg.auto_recall:
            log.warning("faiss auto: %s reached recall@%d %.3f < %.2f at %s %d; building flat instead",
                        self.kind_, probe.k, recall, cfg.auto_recall, name, value)
            missed = {"kind": self.kind_, key: round(recall, 4), name: value, "sample": len(probe.rows),
                      "recall_seconds": out["recall_seconds"]}
            if self.kind_ == "ivf":
                missed["nlist"] = self.nlist_
            self._make("flat", x)
            return {"instead_of": missed}
        if auto and self.kind_ == "ivf":
            self.nprobe_ = out["nprobe"] = value
        elif auto:
            self.ef_search_ = out["ef_search"] = value
        return out

    # -- built in shards (ShardedBuild) --------------------------------------

    def shardable(self, count: int, dim: int) -> bool:
        """True when this config gives ``count`` × ``dim`` an ivf (``index=ivf``, or auto above
        auto_exact_max with auto_approximate=ivf): its lists can be filled shard by shard."""
        return count > 0 and dim > 0 and self._kind_for(count, dim) == "ivf"

    def training_rows(self, count: int) -> np.ndarray:
        """The rows k-means trains on: auto's sample (AUTO_TRAIN_PER_LIST per list), or for an explicit
        ivf SHARD_TRAIN_PER_LIST per list, drawn with the seed; all rows when there are fewer."""
        auto = self.config.index == "auto"
        nlist = self._ivf_nlist(count, auto)
        rows = self._ivf_training_rows(count, nlist, AUTO_TRAIN_PER_LIST if auto else SHARD_TRAIN_PER_LIST)
        return np.arange(count, dtype=np.int64) if rows is None else rows.astype(np.int64)

    def train_for_shards(self, sample: np.ndarray, count: int) -> bytes:
        """The ivf's lists trained on ``sample`` (the vectors of ``training_rows(count)``), empty, as
        faiss's serialised bytes: small (nlist × dim floats), sent to every shard."""
        if not self.shardable(count, int(np.shape(sample)[1]) if np.ndim(sample) == 2 else 0):
            raise ConfigError(f"retriever faiss config index={self.config.index!r} does not give {count} "
                              "vectors an ivf, which is the only index built in shards; use index=ivf "
                              "or index=auto above auto_exact_max")
        self.shards_started_ = time.perf_counter()
        cfg = self.config
        x = _as_matrix(sample, "training sample")
        if cfg.metric == "cosine":
            x = unit_rows(x)
        auto = cfg.index == "auto"
        nlist = self._ivf_nlist(count, auto)
        if len(x) < nlist:
            raise ValueError(f"a training sample of {len(x)} vectors cannot train {nlist} lists; pass the "
                             f"vectors of training_rows({count}) ({len(self.training_rows(count))} rows)")
        index = self._empty_ivf(x.shape[1], nlist, auto)
        with _omp_threads(cfg.threads):
            index.train(x)
        self.nlist_ = nlist
        self.training_ = {"train_points": int(len(x)), "kmeans_iterations": int(index.cp.niter)}
        return _faiss().serialize_index(index).tobytes()

    def fill_shard(self, trained: bytes, pieces: Iterable[tuple[np.ndarray, np.ndarray]], path: Path,
                   threads: int | None = None) -> int:
        """Add each piece (rows, vectors) to a copy of ``trained`` with the rows as ids (unit rows for
        cosine, as ``build`` adds them) and write it to ``path`` (through a temporary name: a retried
        or speculative task never leaves half a file there); returns the rows added."""
        faiss = _faiss()
        index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
        added = 0
        with _omp_threads(threads if threads is not None else self.config.threads):
            for rows, vectors in pieces:
                x = _as_matrix(vectors, "vectors", dim=index.d)
                ids = np.ascontiguousarray(rows, dtype=np.int64)
                if ids.shape != (len(x),):
                    raise ValueError(f"a shard piece has {ids.size} rows for {len(x)} vectors")
                if self.config.metric == "cosine":
                    x = unit_rows(x)
                index.add_with_ids(x, ids)
                added += len(ids)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
        return added

    def merge_shards(self, trained: bytes, paths: Sequence[Path], directory: Path,
                     vectors: np.ndarray | None) -> list[Path]:
        """Merge the shards' lists on disk into ``index.ivfdata`` beside ``index.faiss`` and
        ``index.json`` in ``directory``; with ``vectors`` (all rows), recall@10 is measured and
        auto's nprobe tuned as after ``build`` (an auto ivf short of auto_recall becomes flat, built
        here from ``vectors``). Leaves this retriever loaded from the written files."""
        from faiss.contrib.ondisk import merge_ondisk

        faiss = _faiss()
        cfg = self.config
        auto = cfg.index == "auto"
        if not paths:
            raise ValueError("merge_shards needs at least one shard file")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
        lists_tmp = directory / f".{IVFDATA_FILE}.tmp"
        with _c_stdout_to_stderr():
            merge_ondisk(index, [str(p) for p in paths], str(lists_tmp))
        # the name without a directory: load maps it from beside index.faiss, wherever that is
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists).filename = IVFDATA_FILE
        merge_seconds = time.perf_counter() - started
        if vectors is not None and len(vectors) != index.ntotal:
            raise ValueError(f"the shards hold {index.ntotal} vectors, but {len(vectors)} were given to measure "
                             "recall with: a shard is missing or was merged twice")
        self.index_, self.kind_, self.params_ = index, "ivf", {}
        self.nlist_, self.nprobe_, self.ef_search_, self.rerank_ = int(index.nlist), None, None, None
        self.ivfdata_ = IVFDATA_FILE
        self.chosen_ = "auto" if auto else "config"
        measured: dict[str, Any] = {}
        if vectors is not None:
            x = _as_matrix(vectors, "vectors", dim=int(index.d))
            with _omp_threads(cfg.threads):
                measured = self._measure(UnitRows(x) if cfg.metric == "cosine" else x, auto)
        report: dict[str, Any] = {"kind": self.kind_, "chosen": self.chosen_, "count": int(index.ntotal),
                                  "dim": int(index.d)}
        if self.kind_ == "flat":  # auto's ivf fell short of auto_recall: flat, built from the vectors
            report["exact"] = True
        else:
            report.update(self._parameters())
        report.update(measured)
        report.update({"build": "sharded", "shards": len(paths), "merge_seconds": round(merge_seconds, 3),
                       "build_seconds": round(time.perf_counter() - (self.shards_started_ or started), 3)})
        self.report_ = report
        if self.kind_ == "flat":
            lists_tmp.unlink()
            return self.save(directory)
        written = [(directory / f".{INDEX_FILE}.tmp", directory / INDEX_FILE), (lists_tmp, directory / IVFDATA_FILE),
                   (directory / f".{META_FILE}.tmp", directory / META_FILE)]
        faiss.write_index(index, str(written[0][0]))
        written[2][0].write_text(json.dumps(self._meta(), indent=2, sort_keys=True) + "\n")
        for source, target in written:
            os.replace(source, target)
        # the merged lists were mapped writable under the temporary name: read back as load reads them
        self.index_ = _read_index_file(directory / INDEX_FILE, directory / IVFDATA_FILE)
        self.index_.nprobe = min(max(cfg.nprobe, self.nprobe_ or 0), self.nlist_)
        recall = report.get(f"recall@{RECALL_K}")
        log.info("faiss ivf index (%s) merged from %d shards: %d vectors, dim %d, %.2fs%s", cfg.metric, len(paths),
                 report["count"], report["dim"], report["build_seconds"],
                 "" if recall is None else f", recall@{RECALL_K} {recall:.3f}")
        return [target for _, target in written]

    # -- search --------------------------------------------------------------

    def _search_rows(self, q: np.ndarray, k: int, effort: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and faiss's scores (squared distances for l2) for prepared queries ``q``, batched;
        ``effort`` overrides ef_search (hnsw) or nprobe (ivf)."""
        index = self._built()
        cfg = self.config
        params = None
        if self.kind_ == "hnsw":
            ef = effort if effort is not None else max(cfg.ef_search, self.ef_search_ or 0)
            params = self._search_params(max(ef, k))
        elif self.kind_ == "ivf":
            nprobe = effort if effort is not None else max(cfg.nprobe, self.nprobe_ or 0)
            params = self._search_params(min(nprobe, index.nlist))
        if q.shape[0] <= cfg.batch_size and self.kind_ != "lsh":  # one batch: faiss's own arrays
            raw, rows = index.search(q, k) if params is None else index.search(q, k, params=params)
            return rows, raw
        rows = np.full((q.shape[0], k), -1, dtype=np.int64)
        raw = np.empty((q.shape[0], k), dtype=np.float32)
        for start in range(0, q.shape[0], cfg.batch_size):
            stop = min(start + cfg.batch_size, q.shape[0])
            if self.kind_ == "lsh":
                raw[start:stop], rows[start:stop] = self._lsh_search(q[start:stop], k)
            elif params is None:
                raw[start:stop], rows[start:stop] = index.search(q[start:stop], k)
            else:
                raw[start:stop], rows[start:stop] = index.search(q[start:stop], k, params=params)
        return rows, raw

    def _search_params(self, effort: int) -> "faiss.SearchParameters":
        """faiss's search parameters for an ef_search (hnsw) or nprobe (ivf), made once per value:
        searches only read them, so concurrent searches share them (making one costs as much as a
        tenth of a hot HNSW query)."""
        params = self.params_.get(effort)
        if params is None:
            faiss = _faiss()
            if self.kind_ == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=effort)
            else:
                params = faiss.SearchParametersIVF(nprobe=effort)
            if len(self.params_) >= 64:
                self.params_.clear()
            self.params_[effort] = params
        return params

    def _lsh_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``lsh_candidates`` nearest codes by Hamming distance, re-ranked by the exact score."""
        x = self.rerank_
        n = x.shape[0]
        wanted = min(max(self.config.lsh_candidates, k), n)
        hashed = _mips_queries(q) if self.config.metric == "ip" else q
        _, cand = self._built().search(hashed, wanted)
        keep = min(k, wanted)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        rows = np.full((q.shape[0], k), -1, dtype=np.int64)
        step = max(1, (1 << 23) // (wanted * x.shape[1]))  # about 32 MB of gathered vectors at a time
        for start in range(0, q.shape[0], step):
            c = cand[start:start + step]
            near = np.matmul(x[np.where(c >= 0, c, 0)], q[start:start + step, :, None])[..., 0]
            near[c < 0] = -np.inf
            if keep < wanted:
                top = np.argpartition(-near, keep - 1, axis=1)[:, :keep]
                c, near = np.take_along_axis(c, top, axis=1), np.take_along_axis(near, top, axis=1)
            order = np.argsort(-near, axis=1, kind="stable")
            rows[start:start + step, :keep] = np.take_along_axis(c, order, axis=1)
            scores[start:start + step, :keep] = np.take_along_axis(near, order, axis=1)
        return scores, rows

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows (int64) and scores (float32), each of shape (q, k), best first.

        A 1-D query of length d is treated as one query. Empty slots have row -1
        and score -inf (ip, cosine) or +inf (l2).
        """
        self._built()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        q = _as_matrix(queries, "queries", dim=self.dim)
        if self.config.metric == "cosine":
            q = unit_rows(q)
        return self._answer(q, k)

    def search_rows(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``search`` of the stored vectors at ``rows``, read back from the index: flat and hnsw keep
        them as they were indexed (unit length for cosine), which are the very queries ``search``
        would make of them, so the caller fetches, checks and normalises nothing (the hot path
        of recall by id). None for ivf and lsh, which keep no vector to read back by row."""
        index = self.index_
        if index is None or self.kind_ not in ("flat", "hnsw"):
            return None
        stored = self.stored_
        if stored is None or stored[0] is not index:
            stored = self.stored_ = (index, _held_vectors(index))
        if len(rows) == 1:  # one query, the hot path of a service: a view of the held vector, no copy
            row = int(rows[0])
            return self._answer(stored[1][row:row + 1], int(k))
        return self._answer(stored[1][rows], int(k))

    def _answer(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores for prepared queries, empty slots marked as ``search`` says."""
        if self.config.threads is None:
            rows, raw = self._search_rows(q, k)
        else:
            with _omp_threads(self.config.threads):
                rows, raw = self._search_rows(q, k)
        if self.config.metric == "l2":
            scores = np.sqrt(np.maximum(raw, 0, out=raw), out=raw)
            scores[rows < 0] = np.inf
            return rows, scores
        last = rows[:, -1]  # faiss leaves empty slots at the end of a row: none there, none at all
        if last[0] < 0 if len(last) == 1 else (last < 0).any():
            raw[rows < 0] = -np.inf
        return rows, raw

    # -- persistence ---------------------------------------------------------

    def _meta(self) -> dict:
        index = self._built()
        return {
            "format": FORMAT_VERSION,
            "retriever": self.name,
            "metric": self.config.metric,
            "index": self.kind_,
            "chosen": self.chosen_,
            "dim": self.dim,
            "count": int(index.ntotal),
            "nlist": self.nlist_,
            "ef_search": self.ef_search_,
            "nprobe": self.nprobe_,
            "report": self.report_,
            "faiss_version": _faiss().__version__,
            **({"ivfdata": self.ivfdata_} if self.ivfdata_ else {}),
        }

    def save(self, directory: Path) -> list[Path]:
        """Write ``index.faiss`` and ``index.json`` (and for lsh ``rerank.npy``, for an ivf built in
        shards a copy of ``index.ivfdata``) into ``directory`` (created if missing)."""
        faiss = _faiss()
        index = self._built()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename, so a crash never leaves half a file under the real name.
        written: list[tuple[Path, Path]] = []
        tmp = directory / f".{INDEX_FILE}.tmp"
        faiss.write_index(index, str(tmp))
        written.append((tmp, directory / INDEX_FILE))
        if self.ivfdata_:  # built in shards: the on-disk lists go along (load maps them from beside the index)
            source = Path(faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists).filename)
            if source.resolve() != (directory / IVFDATA_FILE).resolve():
                tmp = directory / f".{IVFDATA_FILE}.tmp"
                shutil.copyfile(source, tmp)
                written.append((tmp, directory / IVFDATA_FILE))
        if self.kind_ == "lsh":
            tmp = directory / f".{RERANK_FILE}.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, self.rerank_, allow_pickle=False)
            written.append((tmp, directory / RERANK_FILE))
        tmp = directory / f".{META_FILE}.tmp"
        tmp.write_text(json.dumps(self._meta(), indent=2, sort_keys=True) + "\n")
        written.append((tmp, directory / META_FILE))
        for source, target in written:
            os.replace(source, target)
        return [target for _, target in written]

    @classmethod
    def load(cls, directory: Path, config: RetrieverConfig | None = None) -> "FaissRetriever":
        """Read an index written by ``save``; IntegrityError names the file when it is missing or damaged.

        Without a config, metric and index type come from ``index.json`` and the
        search options take their defaults. A config with ``index=auto`` loads whatever
        kind was built; any other kind must match the saved one.
        """
        faiss = _faiss()
        directory = Path(directory)
        meta_path = directory / META_FILE
        index_path = directory / INDEX_FILE
        meta = _read_meta(meta_path)
        if config is None:
            kind = "auto" if meta.get("chosen") == "auto" else meta["index"]
            config = FaissConfig(metric=meta["metric"], index=kind)
        self = cls(config)
        wanted_kind = meta["index"] if self.config.index == "auto" else self.config.index
        for key, wanted in (("metric", self.config.metric), ("index", wanted_kind)):
            if meta[key] != wanted:
                raise ConfigError(
                    f"retriever faiss config: {key}={wanted!r}, but the index in {directory} "
                    f"was built with {key}={meta[key]!r}"
                )
        if not index_path.is_file():
            raise IntegrityError(f"faiss index file {index_path} is missing")
        ivfdata = meta.get("ivfdata")
        if ivfdata is not None and (not isinstance(ivfdata, str) or Path(ivfdata).name != ivfdata
                                    or meta["index"] != "ivf"):
            raise IntegrityError(f"faiss index metadata {meta_path} names on-disk lists {ivfdata!r}: expected "
                                 "a file name beside the index of an ivf")
        try:
            index = _read_index_file(index_path, None if ivfdata is None else directory / ivfdata)
        except (RuntimeError, MemoryError) as exc:
            raise IntegrityError(
                f"faiss index file {index_path} is truncated or unreadable: {first_line(exc)}"
            ) from None
        kind = meta["index"]
        expected = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat,
                    "lsh": faiss.IndexLSH}[kind]
        hashed_dim = meta["dim"] + (1 if kind == "lsh" and meta["metric"] == "ip" else 0)
        found = []
        if not isinstance(index, expected):
            found.append(f"type {type(index).__name__}, expected {expected.__name__}")
        if kind != "lsh" and index.metric_type != self._metric_type():  # lsh's codes compare by Hamming distance
            found.append(f"metric type {index.metric_type}, expected {self._metric_type()}")
        if index.d != hashed_dim:
            found.append(f"dim {index.d}, {META_FILE} says {meta['dim']}")
        if index.ntotal != meta["count"]:
            found.append(f"count {index.ntotal}, {META_FILE} says {meta['count']}")
        if found:
            raise IntegrityError(f"faiss index file {index_path} does not match {meta_path}: " + "; ".join(found))
        if kind == "hnsw":
            if self.config.index == "auto" and isinstance(meta.get("ef_search"), int):
                self.ef_search_ = meta["ef_search"]
            index.hnsw.efSearch = max(self.config.ef_search, self.ef_search_ or 0)
        elif kind == "ivf":
            if self.config.index == "auto" and isinstance(meta.get("nprobe"), int):
                self.nprobe_ = meta["nprobe"]
            index.nprobe = min(max(self.config.nprobe, self.nprobe_ or 0), index.nlist)
            self.nlist_ = int(index.nlist)
        elif kind == "lsh":
            self.rerank_ = _read_rerank(directory / RERANK_FILE, meta["count"], meta["dim"])
        self.index_, self.kind_, self.ivfdata_ = index, kind, ivfdata
        self.chosen_ = meta.get("chosen") if meta.get("chosen") in ("auto", "config") else "config"
        self.report_ = meta["report"] if isinstance(meta.get("report"), dict) else {"kind": kind}
        return self


def _read_meta(path: Path) -> dict:
    """index.json as a dict with the keys load relies on, or IntegrityError naming the file."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise IntegrityError(f"faiss index metadata {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"faiss index metadata {path} is unreadable: {exc}") from None
    required = {"metric": str, "index": str, "dim": int, "count": int}
    problems = [
        key for key, kind in required.items() if not isinstance(meta, dict) or not isinstance(meta.get(key), kind)
    ]
    if problems:
        raise IntegrityError(f"faiss index metadata {path} lacks valid {', '.join(problems)}")
    if meta["index"] not in KINDS or meta["metric"] not in ("ip", "cosine", "l2"):
        raise IntegrityError(
            f"faiss index metadata {path} names unknown index {meta['index']!r} or metric {meta['metric']!r}"
        )
    return meta


def _read_rerank(path: Path, count: int, dim: int) -> np.ndarray:
    """lsh's re-rank vectors, checked against index.json, or IntegrityError naming the file."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise IntegrityError(f"faiss lsh vectors {path} are missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise IntegrityError(f"faiss lsh vectors {path} are truncated or unreadable: {first_line(exc)}") from None
    if x.dtype != np.float32 or x.shape != (count, dim):
        raise IntegrityError(f"faiss lsh vectors {path} hold {x.dtype} {x.shape}, {META_FILE} says float32 "
                             f"({count}, {dim})")
    return x


@hookimpl
def register_retrievers(register) -> None:
    register(FaissRetriever)
