"""The read path against its floor, in one process: `vectors()` and `recall()` on a published version.

    python bench/bench_read.py                                   # 1M x 64, HNSW index
    python bench/bench_read.py --index auto                      # the index a version gets by default
    python bench/bench_read.py --home /tmp/bench-read --keep      # build once, reuse next time
    python bench/bench_read.py --rows 100000 --rounds 2000

Publishes ``--rows`` clustered random vectors as ``bench_items@prod`` (or reuses the home's, as
bench/bench_serve.py builds it: the two scripts can share ``--home``), then measures, interleaved
round by round in a shuffled order so a busy machine slows floor and store alike:

1. ``store.vectors(ref, ids)`` for ``--batch`` random ids (a fresh batch every round) against the
   floor: a dict id -> row built beforehand plus one numpy fancy index into the same vectors in
   memory (a fresh batch misses the CPU caches: so does the floor); and for one id;
2. Feast's ``get_online_features`` for the same batch, through the alias's FeatureService (the peer:
   what a ranking service reading Feast pays);
3. ``store.recall(ref, ids=[id], k)`` and the same recall through a pin (``store.pin(ref)``, what a
   service holds: no change-counter read or file check per call) against the raw FAISS index the
   version loaded: its own ``search`` of the prepared (unit, for cosine) query with the same k + 1
   and ``efSearch``;
4. the first call after a change: the alias is promoted again (the registry's change counter moves)
   and the next ``vectors()`` call must see it.

Prints medians and ratios (target: vectors within 2x of the floor, a pinned recall within 1.2x of
the raw index) and writes them as JSON (``--out``). FAISS runs one OpenMP thread, as ``embstore serve`` does.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `embstore serve` does; before faiss loads OpenMP

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import REF, SET, build  # noqa: E402  (one way to build the benchmark's version)


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def measure(home: Path, rounds: int, batch: int, k: int, feast_rounds: int) -> dict:
    import faiss

    from embstore.store import EmbeddingStore

    store = EmbeddingStore(home, progress=False)
    version = store.resolve(REF)
    pinned = store.pin(REF)
    loaded = store.load(version).prepare()
    retriever = store.reader.index(version)
    rows = len(loaded.ids)
    ids = loaded.ids
    rng = np.random.default_rng(7)
    batches = [ids[rng.integers(0, rows, size=batch)].tolist() for _ in range(rounds)]
    singles = ids[rng.integers(0, rows, size=rounds)].tolist()

    # the floor: a dict and a fancy index into the vectors held in memory
    started = time.perf_counter()
    row_of = {key: i for i, key in enumerate(ids.tolist())}
    in_memory = np.array(loaded.vectors)
    floor_setup = time.perf_counter() - started

    # the raw index: faiss's own search, query prepared as the retriever prepares it
    index = retriever.index_
    metric = version.retriever_config.get("metric", "cosine")
    params = None
    if retriever.kind_ == "hnsw":
        ef = max(retriever.config.ef_search, retriever.ef_search_ or 0)
        params = faiss.SearchParametersHNSW(efSearch=max(ef, k + 1))
    elif retriever.kind_ == "ivf":
        nprobe = getattr(retriever, "nprobe_", None) or retriever.config.nprobe  # a tuned value if it has one
        params = faiss.SearchParametersIVF(nprobe=min(nprobe, index.nlist))

    def prepared(i: int) -> np.ndarray:
        q = in_memory[row_of[i]][None, :].astype(np.float32)
        if metric == "cosine":
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        return q

    queries = [prepared(i) for i in singles]

    def raw_search(q: np.ndarray):
        return index.search(q, k + 1) if params is None else index.search(q, k + 1, params=params)

    # warm every path once, outside the timing
    store.vectors(REF, batches[0])
    store.vectors(REF, singles[:1])
    store.recall(REF, ids=singles[:1], k=k)
    assert pinned.recall(ids=singles[:5], k=k) == store.recall(REF, ids=singles[:5], k=k), "a pin answers otherwise"
    raw_search(queries[0])
    for i in batches[0][:50]:
        in_memory[[row_of[i]]]
    got = store.vectors(REF, batches[0])  # the answers are the floor's, not just fast
    assert np.array_equal(got.matrix, in_memory[[row_of[i] for i in batches[0]]]), "vectors() differs from the floor"
    calls = {
        "floor": lambda r: in_memory[[row_of[i] for i in batches[r]]],
        "vectors": lambda r: store.vectors(REF, batches[r]),
        "vectors_1": lambda r: store.vectors(REF, [singles[r]]),
        "raw": lambda r: raw_search(queries[r]),
        "recall": lambda r: store.recall(REF, ids=[singles[r]], k=k),
        "pinned_recall": lambda r: pinned.recall(ids=[singles[r]], k=k),
        "pinned_vectors": lambda r: pinned.vectors(batches[r]),
        "search": lambda r: retriever.search(queries[r], k + 1),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    clock = time.perf_counter
    for r in range(rounds):
        rng.shuffle(order)  # a new order every round: no call always follows the cache-clearing batch
        for name in order:
            call = calls[name]
            t = clock()
            call(r)
            times[name].append(clock() - t)
    medians = {name: round(_median_us(xs), 1) for name, xs in times.items()}
    p99 = {name: round(float(np.percentile(np.asarray(xs) * 1e6, 99)), 1) for name, xs in times.items()}

    # the peer: Feast's online read of the same ids through the alias's FeatureService
    fs = store.feast.store
    service = fs.get_feature_service(f"{SET}__prod")
    entity = version.entity
    feast_times = []
    fs.get_online_features(features=service, entity_rows=[{entity: i} for i in batches[0][:10]])
    for r in range(feast_rounds):
        t = clock()
        out = fs.get_online_features(features=service, entity_rows=[{entity: i} for i in batches[r]]).to_dict()
        feast_times.append(clock() - t)
    feast_vectors = out[next(name for name in out if name.endswith("embedding"))]
    assert np.allclose(np.asarray(feast_vectors, dtype=np.float32),
                       store.vectors(REF, batches[feast_rounds - 1]).matrix), "Feast serves other vectors"

    # an alias move is seen by the next call: promote again (the change counter moves), call, time it
    after_change = []
    for _ in range(20):
        before = store.registry.change_marker()
        store.promote(version.ref, "prod")
        assert store.registry.change_marker() != before
        t = clock()
        assert store.vectors(REF, singles[:1]).ids == singles[:1]
        after_change.append(clock() - t)
    marker = []
    for _ in range(2000):
        t = clock()
        store.registry.change_marker()
        marker.append(clock() - t)
    store.close()
    return {
        "version": version.ref, "rows": rows, "dim": version.dim, "index": retriever.report(),
        "batch": batch, "k": k, "rounds": rounds, "floor_setup_seconds": round(floor_setup, 2),
        "median_us": medians, "p99_us": p99,
        "feast_online_median_us": round(_median_us(feast_times), 1), "feast_rounds": feast_rounds,
        "first_call_after_a_change_median_us": round(_median_us(after_change), 1),
        "change_marker_read_median_us": round(_median_us(marker), 1),
        "ratios": {
            "vectors_vs_floor": round(medians["vectors"] / medians["floor"], 2),
            "recall_vs_raw_index": round(medians["recall"] / medians["raw"], 3),
            "pinned_recall_vs_raw_index": round(medians["pinned_recall"] / medians["raw"], 3),
            "pinned_vectors_vs_floor": round(medians["pinned_vectors"] / medians["floor"], 2),
            "feast_vs_floor": round(_median_us(feast_times) / medians["floor"], 1),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw"], default="hnsw",
                    help="faiss index of the published version (auto: what a version gets by default)")
    ap.add_argument("--batch", type=int, default=1000, help="ids per vectors() call")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1000, help="interleaved rounds of every measurement")
    ap.add_argument("--feast-rounds", type=int, default=30, help="Feast online reads (about 30 ms each)")
    ap.add_argument("--home", type=Path, help="store home to build or reuse (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep a temporary home")
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench_read.json"))
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-read-"))
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}}
    try:
        result["build"] = build(home, args.rows, args.dim, args.index)
        result.update(measure(home, args.rounds, args.batch, args.k, args.feast_rounds))
    finally:
        if args.home is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    m, r = result["median_us"], result["ratios"]
    print(f"{result['version']}: {result['rows']:,} x {result['dim']}, index {result['index'].get('kind')}, "
          f"{result['rounds']} interleaved rounds (median, p99 in µs)")
    print(f"  vectors() {args.batch} ids   {m['vectors']:9.1f}  p99 {result['p99_us']['vectors']:9.1f}   "
          f"floor (dict + fancy index) {m['floor']:.1f}: {r['vectors_vs_floor']}x (target <= 2)")
    print(f"  vectors() 1 id          {m['vectors_1']:9.1f}  p99 {result['p99_us']['vectors_1']:9.1f}")
    print(f"  Feast get_online_features {args.batch} ids {result['feast_online_median_us']:9.1f}: "
          f"{r['feast_vs_floor']}x the floor")
    print(f"  recall() 1 id, k={args.k}    {m['recall']:9.1f}  p99 {result['p99_us']['recall']:9.1f}   "
          f"raw index search {m['raw']:.1f}: {r['recall_vs_raw_index']}x; the retriever's search {m['search']:.1f}")
    print(f"  pinned recall() 1 id    {m['pinned_recall']:9.1f}  p99 {result['p99_us']['pinned_recall']:9.1f}   "
          f"{r['pinned_recall_vs_raw_index']}x the raw index search (target <= 1.2)")
    print(f"  pinned vectors() {args.batch} ids {m['pinned_vectors']:9.1f}: {r['pinned_vectors_vs_floor']}x the floor")
    print(f"  first vectors() call after an alias move {result['first_call_after_a_change_median_us']:.1f}; "
          f"change-counter read {result['change_marker_read_median_us']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
