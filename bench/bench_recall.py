"""Recall@10 against exact search and queries/s of the FAISS retriever's indexes, and where
``index=auto`` stops using the exact one.

    python bench/bench_recall.py                         # flat, LSH, HNSW and auto on 100k and 1M x 64-d
    python bench/bench_recall.py --sizes 100000 --lsh 512:500,1024:1000
    python bench/bench_recall.py --sizes 1000000 --indexes flat,auto,hnsw,hnsw16  # the large-version default
    python bench/bench_recall.py --sizes 10000000 --indexes auto --clusters 1000
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
- hnsw (``hnsw``): hnsw32 (ef_construction 200, what ``index=hnsw`` builds) at ef_search 32 and
  128; ``hnsw16``: hnsw16 with ef_construction 40 (cheaper to build) at ef_search 64 and 128;
- auto (``auto``): what ``index=auto`` builds (flat up to its threshold; above it ivf with
  ``auto_nlist`` lists, nprobe tuned at build), searched with the nprobe it chose and with half
  of it; its build-time report (recall on stored vectors) is printed.

``--indexes`` picks among flat, lsh, hnsw, hnsw16 and auto (flat is always built: it is the
reference). Build seconds include each index's recall measurement at build, as a publish pays it.

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
    """The same built index searched with other search-time options (ef_search, nprobe as given)."""
    other = FaissRetriever(index.config.model_copy(update=changes))
    other.index_, other.kind_, other.nlist_, other.rerank_ = index.index_, index.kind_, index.nlist_, index.rerank_
    other.ef_search_, other.report_ = (None if "ef_search" in changes else index.ef_search_), index.report_
    other.nprobe_ = None if "nprobe" in changes else index.nprobe_
    return other


def row(label: str, build_s: float | None, recall: float, qps: float, p50: float, extra: str = "") -> dict:
    build = f"{build_s:7.1f}s" if build_s is not None else "       -"
    print(f"  {label:24} build {build}  recall@10 {recall:.3f}  {qps:9,.0f} q/s  single p50 {p50:7.3f} ms"
          + (f"  {extra}" if extra else ""), flush=True)
    return {"index": label, "build_s": build_s, "recall@10": recall, "qps": qps, "single_p50_ms": p50}


def compare(sizes: list[int], dim: int, lsh: list[tuple[int, int]], clusters: int, noise: float,
            indexes: list[str]) -> list[dict]:
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

        def searched(index, label, took, **changes):
            other = with_config(index, **changes) if changes else index
            qps, found = batch_qps(other, queries)
            results.append({"n": n, **row(label, took, recall_at_k(found, exact), qps, single_p50_ms(other, queries),
                                          f"{qps / flat_qps:.1f}x flat")})

        for bits, candidates in lsh if "lsh" in indexes else []:
            index, took = built(x, index="lsh", lsh_bits=bits, lsh_candidates=candidates)
            searched(index, f"lsh {bits} bits, {candidates} cand", took)
            del index
            gc.collect()
        for name, m, efc, efs in (("hnsw", 32, 200, (32, 128)), ("hnsw16", 16, 40, (64, 128))):
            if name not in indexes:
                continue
            index, took = built(x, index="hnsw", hnsw_m=m, ef_construction=efc)
            for ef in efs:
                searched(index, f"hnsw{m} efC {efc}, ef {ef}", took, ef_search=ef)
            print(f"  hnsw{m} efC {efc} build report: " + ", ".join(f"{k}={v}" for k, v in index.report().items()),
                  flush=True)
            del index
            gc.collect()
        if "auto" in indexes:
            index, took = built(x, index="auto")
            report = index.report()
            if index.kind_ == "ivf":
                chosen = index.nprobe_
                for nprobe in sorted({max(1, chosen // 2), chosen}):
                    label = f"ivf{index.nlist_} nprobe {nprobe}" + (" (auto)" if nprobe == chosen else "")
                    searched(index, label, took, nprobe=nprobe)
            else:
                searched(index, f"auto: {index.kind_}", took)
            print("  index=auto build report: " + ", ".join(f"{k}={v}" for k, v in report.items()), flush=True)
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
    parser.add_argument("--indexes", default="flat,lsh,hnsw,auto",
                        help="comma-separated: flat (always), lsh, hnsw, hnsw16, auto")
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
    compare(sizes, args.dim, lsh, args.clusters, args.noise, args.indexes.split(","))
    print(f"\ntotal {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
