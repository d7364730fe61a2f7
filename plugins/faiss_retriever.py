"""The built-in FAISS retriever: exact (flat), HNSW and IVF-flat indexes.

Scores follow the Retriever contract: for ``ip`` the raw inner product, for
``cosine`` the cosine similarity (stored vectors and queries are normalised to
unit length; a zero vector stays zero and scores 0 against everything), for
``l2`` the Euclidean distance (the square root of faiss's squared L2). Rows come
best first. A slot with no neighbour -- k larger than the index, or an
approximate index that found fewer than k -- has row ``-1`` and the worst
possible score: ``-inf`` for ip and cosine, ``+inf`` for l2. Padding therefore
never outranks a real hit and is never NaN; drop it with ``rows >= 0``.

Determinism: flat search is exact. IVF training is seeded (``seed``) and gives
the same index for the same vectors. HNSW graph construction inserts vectors in
parallel, so two builds agree exactly only with ``threads=1``; a saved index
always answers the same way after ``load``.

faiss is imported where it is used, so listing plugins stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np
import pydantic

from embstore.errors import ConfigError, IntegrityError, first_line
from embstore.hookspecs import hookimpl
from embstore.linalg import unit_rows
from embstore.retriever import Retriever, RetrieverConfig

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT_VERSION = 1

IndexType = Literal["flat", "hnsw", "ivf"]


class FaissConfig(RetrieverConfig):
    index: IndexType = pydantic.Field(
        "flat",
        description="flat: exact search; hnsw: graph-based approximate search; ivf: inverted lists (IVF-flat)",
    )
    hnsw_m: int = pydantic.Field(32, ge=2, description="HNSW: links per node (more = better recall, more memory)")
    ef_construction: int = pydantic.Field(200, ge=1, description="HNSW: candidate list size while building")
    ef_search: int = pydantic.Field(
        128, ge=1, description="HNSW: candidate list size while searching (raised to k when smaller)"
    )
    nlist: int | None = pydantic.Field(
        None,
        ge=1,
        description="IVF: number of inverted lists; None = about 4*sqrt(n), at most n//39 (at least 1). "
        "Capped to n when larger than the number of vectors",
    )
    nprobe: int = pydantic.Field(16, ge=1, description="IVF: lists visited per query (capped to nlist)")
    batch_size: int = pydantic.Field(4096, ge=1, description="queries sent to faiss per call")
    threads: int | None = pydantic.Field(
        None, ge=1, description="OpenMP threads faiss uses during build and search; None = faiss default"
    )
    seed: int = pydantic.Field(0, ge=0, description="IVF: k-means seed, for reproducible training")


def _faiss() -> Any:
    import faiss

    return faiss


def default_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, but at most n//39 so k-means has 39 points per centroid; at least 1."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 39))


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
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{what} contain NaN or inf in {bad.size} row(s), first at row {int(bad[0])}"
        )
    return arr


@contextlib.contextmanager
def _omp_threads(threads: int | None) -> Iterator[None]:
    """Run faiss with ``threads`` OpenMP threads, restoring the previous setting after.

    faiss's thread count is process-wide, so concurrent callers with different
    settings see each other's value while this is active.
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


class FaissRetriever(Retriever):
    """Top-k search over one version's vectors with faiss.

    ``build(vectors)`` or ``FaissRetriever.load(directory, config)`` first, then
    ``search(queries, k)``. Build-time options (``index``, ``metric``, ``hnsw_m``,
    ``ef_construction``, ``nlist``, ``seed``) are fixed in the saved index;
    search-time options (``ef_search``, ``nprobe``, ``batch_size``, ``threads``)
    come from the config given to ``load`` and may differ from the build's.
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
        self.nlist_: int | None = None

    # -- facts ---------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self._built().d)

    def __len__(self) -> int:
        return int(self._built().ntotal)

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
        faiss = _faiss()
        x = _as_matrix(vectors, "vectors")
        n, d = x.shape
        if n == 0 or d == 0:
            raise ValueError(f"cannot build an index from vectors of shape {x.shape}; need at least one row and column")
        if self.config.metric == "cosine":
            x = unit_rows(x)
        cfg = self.config
        metric = self._metric_type()
        started = time.perf_counter()
        with _omp_threads(cfg.threads):
            if cfg.index == "flat":
                index = faiss.IndexFlat(d, metric)
                self.nlist_ = None
            elif cfg.index == "hnsw":
                index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, metric)
                index.hnsw.efConstruction = cfg.ef_construction
                index.hnsw.efSearch = cfg.ef_search
            else:
                nlist = default_nlist(n) if cfg.nlist is None else cfg.nlist
                if nlist > n:
                    log.warning("faiss ivf: nlist=%d is more than the %d vectors; using nlist=%d", nlist, n, n)
                    nlist = n
                quantizer = faiss.IndexFlat(d, metric)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
                index.cp.seed = cfg.seed
                index.nprobe = min(cfg.nprobe, nlist)
                index.train(x)
                self.nlist_ = nlist
            index.add(x)
        self.index_ = index
        log.info(
            "faiss %s index (%s) built: %d vectors, dim %d, %.2fs",
            cfg.index, cfg.metric, n, d, time.perf_counter() - started,
        )

    # -- search --------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows (int64) and scores (float32), each of shape (q, k), best first.

        A 1-D query of length d is treated as one query. Empty slots have row -1
        and score -inf (ip, cosine) or +inf (l2).
        """
        faiss = _faiss()
        index = self._built()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        q = _as_matrix(queries, "queries", dim=index.d)
        if self.config.metric == "cosine":
            q = unit_rows(q)
        params = None
        if self.config.index == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, k))
        elif self.config.index == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.config.nprobe, index.nlist))
        rows = np.full((q.shape[0], k), -1, dtype=np.int64)
        raw = np.empty((q.shape[0], k), dtype=np.float32)
        step = self.config.batch_size
        with _omp_threads(self.config.threads):
            for start in range(0, q.shape[0], step):
                stop = min(start + step, q.shape[0])
                if params is None:
                    dist, ids = index.search(q[start:stop], k)
                else:
                    dist, ids = index.search(q[start:stop], k, params=params)
                raw[start:stop] = dist
                rows[start:stop] = ids
        empty = rows < 0
        if self.config.metric == "l2":
            scores = np.sqrt(np.maximum(raw, 0, out=raw), out=raw)
            scores[empty] = np.inf
        else:
            scores = raw
            scores[empty] = -np.inf
        return rows, scores

    # -- persistence ---------------------------------------------------------

    def _meta(self) -> dict:
        index = self._built()
        return {
            "format": FORMAT_VERSION,
            "retriever": self.name,
            "metric": self.config.metric,
            "index": self.config.index,
            "dim": int(index.d),
            "count": int(index.ntotal),
            "nlist": self.nlist_,
            "faiss_version": _faiss().__version__,
        }

    def save(self, directory: Path) -> list[Path]:
        """Write ``index.faiss`` and ``index.json`` into ``directory`` (created if missing)."""
        faiss = _faiss()
        index = self._built()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index_path = directory / INDEX_FILE
        meta_path = directory / META_FILE
        # Write beside the target and rename, so a crash never leaves half a file under the real name.
        tmp_index = directory / f".{INDEX_FILE}.tmp"
        tmp_meta = directory / f".{META_FILE}.tmp"
        faiss.write_index(index, str(tmp_index))
        tmp_meta.write_text(json.dumps(self._meta(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp_index, index_path)
        os.replace(tmp_meta, meta_path)
        return [index_path, meta_path]

    @classmethod
    def load(cls, directory: Path, config: RetrieverConfig | None = None) -> "FaissRetriever":
        """Read an index written by ``save``; IntegrityError names the file when it is missing or damaged.

        Without a config, metric and index type come from ``index.json`` and the
        search options take their defaults.
        """
        faiss = _faiss()
        directory = Path(directory)
        meta_path = directory / META_FILE
        index_path = directory / INDEX_FILE
        meta = _read_meta(meta_path)
        self = cls(config if config is not None else FaissConfig(metric=meta["metric"], index=meta["index"]))
        for key, wanted in (("metric", self.config.metric), ("index", self.config.index)):
            if meta[key] != wanted:
                raise ConfigError(
                    f"retriever faiss config: {key}={wanted!r}, but the index in {directory} "
                    f"was built with {key}={meta[key]!r}"
                )
        if not index_path.is_file():
            raise IntegrityError(f"faiss index file {index_path} is missing")
        try:
            index = faiss.read_index(str(index_path))
        except (RuntimeError, MemoryError) as exc:
            raise IntegrityError(
                f"faiss index file {index_path} is truncated or unreadable: {first_line(exc)}"
            ) from None
        expected = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}[meta["index"]]
        found = []
        if not isinstance(index, expected):
            found.append(f"type {type(index).__name__}, expected {expected.__name__}")
        if index.metric_type != self._metric_type():
            found.append(f"metric type {index.metric_type}, expected {self._metric_type()}")
        if index.d != meta["dim"]:
            found.append(f"dim {index.d}, {META_FILE} says {meta['dim']}")
        if index.ntotal != meta["count"]:
            found.append(f"count {index.ntotal}, {META_FILE} says {meta['count']}")
        if found:
            raise IntegrityError(f"faiss index file {index_path} does not match {meta_path}: " + "; ".join(found))
        if meta["index"] == "hnsw":
            index.hnsw.efSearch = self.config.ef_search
        elif meta["index"] == "ivf":
            index.nprobe = min(self.config.nprobe, index.nlist)
            self.nlist_ = int(index.nlist)
        self.index_ = index
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
    if meta["index"] not in ("flat", "hnsw", "ivf") or meta["metric"] not in ("ip", "cosine", "l2"):
        raise IntegrityError(
            f"faiss index metadata {path} names unknown index {meta['index']!r} or metric {meta['metric']!r}"
        )
    return meta


@hookimpl
def register_retrievers(register) -> None:
    register(FaissRetriever)
