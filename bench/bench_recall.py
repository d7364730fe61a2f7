"""Recall@10 against exact search and queries/s of the FAISS retriever's indexes, and where
``index=auto`` stops using the exact one.

    python bench/bench_recall.py                         # flat, LSH and HNSW on 100k and 1M x 64-d
    python bench/bench_recall.py --sizes 100000 --lsh 512:500,1024:1000
    python bench/bench_recall.py threshold               # flat latency vs HNSW build cost by size

Data: synthetic clustered float32 vectors, 64-d: ``--clusters`` random N(0, 1) centres with
N(0, ``--noise``^2) per coordinate around them (defaults 100 and 0.35), generated once for the
largest size; each size is a prefix of the same vectors, so 100k and 1M are the same
distribution. Queries are 1,000 more draws from the same centres (not stored vectors). Metric
cosine, the store's default; k = 10.

``compare`` (default), per size, every index built by the plugin itself (``FaissRetriever``):

- flat: exact, the reference (its recall is 1 by definition);
- lsh with each ``--lsh bits:candidates`` pair: random-hyperplane codes, Hamming scan, exact
  re-rank of the candidates;
- hnsw32 (ef_construction 200) at ef_search 32 and at the ef_search ``index=auto`` would use
  (128 unless the build-time sample needed more). Above the auto threshold the index is built
  with ``index=auto`` itself, so its build-time report (recall on 1,000 stored vectors) is printed.

Each row: build seconds, recall@10 of the held-out queries against exact search, queries/s of
one batched call of 1,000 queries (faiss's default threads: 2 here) and the p50 latency of a
single query with one thread (as ``embstore serve`` runs faiss). The machine may be shared:
times are pessimistic, recalls are not.

``threshold``: flat single-query p50 (one thread) and the HNSW32 build time for sizes from
25k to 400k at 64-d (and 128-d at two sizes, to show that flat's time follows count x dim):
the measurement behind ``AUTO_EXACT_MAX`` in plugins/faiss_retriever.py.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time

import numpy as np

from embstore_plugins.faiss_retriever import AUTO_EXACT_MAX, FaissConfig, FaissRetriever

K = 10
QUERIES = 1000


def clustered(rows: int, dim: int, clusters: int, noise: float, seed: int) -> np.ndarray:
    """``rows`` draws around ``clusters`` centres (the centres depend on ``clusters`` and dim only)."""
    centres = np.random.default_rng(0).normal(size=(clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 100_000):
        stop = min(start + 100_000, rows)
        which = rng.integers(0, clusters, size=stop - start)
        out[start:stop] = centres[which] + noise * rng.normal(size=(stop - start, dim)).astype(np.float32)
    return out


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(e.tolist())) / exact.shape[1] for a, e in zip(found, exact)]))


def batch_qps(index: FaissRetriever, queries: np.ndarray, repeats: int = 2) -> tuple[float, np.ndarray]:
    """Best queries/s of ``repeats`` batched calls, and the rows found."""
    best, rows = 0.0, None
    for _ in range(repeats):
        started = time.perf_counter()
        rows, _ = index.search(queries, K)
        best = max(best, len(queries) / (time.perf_counter() - started))
    return best, rows


def single_p50_ms(index: FaissRetriever, queries: np.ndarray, count: int = 200) -> float:
    """p50 milliseconds of one query per call, with faiss on one thread."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        times = []
        for q in queries[:count]:
            started = time.perf_counter()
            index.search(q[None, :], K)
            times.append(time.perf_counter() - started)
    finally:
        faiss.omp_set_num_threads(before)
    return float(np.median(times) * 1e3)


def built(x: np.ndarray, **config) -> tuple[FaissRetriever, float]:
    index = FaissRetriever(FaissConfig(metric="cosine", **config))
    started = time.perf_counter()
    index.build(x)
    return index, time.perf_counter() - started


def with_config(index: FaissRetriever, **changes) -> FaissRetriever:
    """The same built index searched with other search-time options."""
    other = FaissRetriever(index.config.model_copy(update=changes))
    other.index_, other.kind_, other.nlist_, other.rerank_ = index.index_, index.kind_, index.nlist_, index.rerank_
    other.ef_search_, other.report_ = (None if "ef_search" in changes else index.ef_search_), index.report_
    return other


def row(label: str, build_s: float | None, recall: float, qps: float, p50: float, extra: str = "") -> dict:
    build = f"{build_s:7.1f}s" if build_s is not None else "       -"
    print(f"  {label:24} build {build}  recall@10 {recall:.3f}  {qps:9,.0f} q/s  single p50 {p50:7.3f} ms"
          + (f"  {extra}" if extra else ""), flush=True)
    return {"index": label, "build_s": build_s, "recall@10": recall, "qps": qps, "single_p50_ms": p50}


def compare(sizes: list[int], dim: int, lsh: list[tuple[int, int]], clusters: int, noise: float) -> list[dict]:
    data = clustered(max(sizes), dim, clusters, noise, seed=0)
    queries = clustered(QUERIES, dim, clusters, noise, seed=7)
    results = []
    for n in sizes:
        x = data[:n]
        print(f"\n{n:,} x {dim}-d ({clusters} clusters, noise {noise}), {QUERIES} held-out queries, cosine",
              flush=True)
        flat, took = built(x, index="flat")
        qps, exact = batch_qps(flat, queries)
        results.append({"n": n, **row("flat (exact)", took, 1.0, qps, single_p50_ms(flat, queries))})
        flat_qps = qps
        del flat
        gc.collect()
        for bits, candidates in lsh:
            index, took = built(x, index="lsh", lsh_bits=bits, lsh_candidates=candidates)
            qps, found = batch_qps(index, queries)
            results.append({"n": n, **row(f"lsh {bits} bits, {candidates} cand", took, recall_at_k(found, exact),
                                          qps, single_p50_ms(index, queries), f"{qps / flat_qps:.1f}x flat")})
            del index
            gc.collect()
        auto = n * dim > AUTO_EXACT_MAX
        index, took = built(x, index="auto" if auto else "hnsw")
        report = index.report()
        for ef in (32, None):
            searched = index if ef is None else with_config(index, ef_search=ef)
            label = f"hnsw32 ef {ef if ef else max(index.config.ef_search, index.ef_search_ or 0)}"
            label += " (auto)" if ef is None and auto else ""
            qps, found = batch_qps(searched, queries)
            results.append({"n": n, **row(label, took, recall_at_k(found, exact), qps,
                                          single_p50_ms(searched, queries), f"{qps / flat_qps:.1f}x flat")})
        print(f"  {'index=auto' if auto else 'index=hnsw'} build report: "
              + ", ".join(f"{k}={v}" for k, v in report.items()), flush=True)
        if not auto:
            print(f"  index=auto here: flat ({n:,} x {dim} = {n * dim:,} <= {AUTO_EXACT_MAX:,} floats)", flush=True)
        del index
        gc.collect()
    return results


def threshold(clusters: int, noise: float) -> None:
    print("flat single-query p50 (1 thread) and HNSW32 (ef_construction 200) build time, cosine", flush=True)
    cases = [(25_000, 64), (50_000, 64), (100_000, 64), (200_000, 64), (400_000, 64), (50_000, 128), (100_000, 128)]
    data = {d: clustered(max(n for n, dd in cases if dd == d), d, clusters, noise, seed=0) for d in {64, 128}}
    queries = {d: clustered(200, d, clusters, noise, seed=7) for d in data}
    for n, d in cases:
        x = data[d][:n]
        flat, _ = built(x, index="flat")
        p50 = single_p50_ms(flat, queries[d])
        del flat
        hnsw, took = built(x, index="hnsw")
        h50 = single_p50_ms(hnsw, queries[d])
        print(f"  {n:>8,} x {d:>3}  ({n * d / 1e6:5.1f}M floats)  flat p50 {p50:6.3f} ms   "
              f"hnsw build {took:6.1f}s, p50 {h50:.3f} ms (ef 128)", flush=True)
        del hnsw
        gc.collect()
    print(f"index=auto uses flat up to {AUTO_EXACT_MAX:,} floats (count x dim)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["compare", "threshold"], default="compare")
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated vector counts")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--lsh", default="512:500,1024:1000", help="bits:candidates pairs, comma-separated")
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.35)
    args = parser.parse_args()
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}", flush=True)
    if args.mode == "threshold":
        threshold(args.clusters, args.noise)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    lsh = [tuple(int(v) for v in pair.split(":")) for pair in args.lsh.split(",") if pair]
    started = time.perf_counter()
    compare(sizes, args.dim, lsh, args.clusters, args.noise)
    print(f"\ntotal {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
