"""Training joins at scale: an as-of join across retrains, and a pinned join, against their floors.

    python bench/bench_join.py [--rows 1000000] [--versions 12] [--ids 100000] [--dim 64]
    python bench/bench_join.py --pinned-version 1000000 --pinned-rows 100000

As-of: ``--versions`` published versions of ``--ids`` × ``--dim`` float32 vectors, valid
from consecutive months; ``--rows`` training rows with random ids and times over the
whole period (some before the first version). Floor, in the same run: pandas
``merge_asof`` of the rows onto the versions' valid-from times, then per version a
hashed id lookup (``pd.Index.get_indexer``) and a numpy fancy index into the vectors
already in memory. Both produce the same per-row vectors (checked on a sample).

Pinned (``--pinned-version N``): one version of N vectors and ``--pinned-rows`` rows:
the cost must follow the rows asked for, not the size of the version.

The store is built in a child process, so the peak memory printed is the join's own
(the peak RSS of the measuring process, which starts with no vectors loaded).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

MONTH = 30 * 24 * 3600
START = 1_500_000_000


def build(home: Path, versions: int, ids: int, dim: int, prefix: str) -> None:
    """Publish the versions (run in a child process)."""
    from embstore import Embeddings, EmbeddingStore

    store = EmbeddingStore.init(home, progress=False)
    rng = np.random.default_rng(0)
    for k in range(versions):
        vectors = rng.standard_normal((ids, dim), dtype=np.float32)
        store.publish(prefix, Embeddings(ids=np.arange(ids, dtype=np.int64), vectors=vectors),
                      valid_from=START + (k + 1) * MONTH, retriever_config={"index": "flat"})
    store.close()


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor_as_of(rows: pd.DataFrame, valid_from: list[int], loaded: list) -> np.ndarray:
    """merge_asof onto the versions' valid-from, then a hashed lookup and fancy index per version."""
    table = pd.DataFrame({"t": np.array(valid_from, dtype=np.int64), "version": np.arange(len(valid_from))})
    order = np.argsort(rows["t"].to_numpy(), kind="stable")
    merged = pd.merge_asof(rows.iloc[order], table, on="t", direction="backward")
    version = np.full(len(rows), -1, dtype=np.int64)
    version[order] = merged["version"].fillna(-1).to_numpy(dtype=np.int64)
    out = np.full((len(rows), loaded[0][1].shape[1]), np.nan, dtype=np.float32)
    keys = rows["item_id"].to_numpy()
    for v, (index, vectors) in enumerate(loaded):
        at = np.flatnonzero(version == v)
        found = index.get_indexer(keys[at])
        hit = found >= 0
        out[at[hit]] = vectors[found[hit]]
    return out


def as_of(args, tmp: Path) -> dict:
    from embstore import EmbeddingStore

    home = tmp / "asof"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--build", str(home), str(args.versions), str(args.ids), str(args.dim),
                    "items"], check=True)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"item_id": rng.integers(0, args.ids, args.rows),
                         "t": rng.integers(START, START + (args.versions + 1) * MONTH, args.rows)})
    before = peak_mib()
    store = EmbeddingStore(home, progress=False)
    versions = [v for v in store.versions("items") if v.status == "published"]
    t0 = time.perf_counter()
    store.join(rows, "items", as_of=True, timestamp_column="t", wide=True)
    cold = time.perf_counter() - t0  # loads and checks each version's files once per process
    t0 = time.perf_counter()
    wide = store.join(rows, "items", as_of=True, timestamp_column="t", wide=True)
    ours_wide = time.perf_counter() - t0
    t0 = time.perf_counter()
    listed = store.join(rows, "items", as_of=True, timestamp_column="t")
    ours_list = time.perf_counter() - t0
    join_peak = peak_mib()
    loaded = [(pd.Index(store.load(v).ids), np.asarray(store.load(v).vectors)) for v in versions]
    valid_from = [int(pd.Timestamp(v.valid_from).timestamp()) for v in versions]
    t0 = time.perf_counter()
    floor = floor_as_of(rows, valid_from, loaded)
    floor_s = time.perf_counter() - t0
    columns = [f"items_embedding_{j}" for j in range(args.dim)]
    sample = rng.choice(len(rows), min(2000, len(rows)), replace=False)
    np.testing.assert_array_equal(wide[columns].to_numpy()[sample], floor[sample])
    assert all((listed["items_embedding"][i] is None) == np.isnan(floor[i, 0]) for i in sample)
    store.close()
    return {"case": "as-of", "rows": args.rows, "versions": args.versions, "ids": args.ids, "dim": args.dim,
            "build_s": round(build_s, 1), "first_join_s": round(cold, 3), "ours_wide_s": round(ours_wide, 3), "ours_list_s": round(ours_list, 3),
            "floor_s": round(floor_s, 3), "wide_ratio": round(ours_wide / floor_s, 2),
            "list_ratio": round(ours_list / floor_s, 2), "rows_with_vector": round(float((~np.isnan(floor[:, 0])).mean()), 3),
            "peak_mib_before": round(before), "peak_mib_join": round(join_peak)}


def pinned(args, tmp: Path) -> dict:
    from embstore import EmbeddingStore

    home = tmp / "pinned"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--build", str(home), "1", str(args.pinned_version), str(args.dim),
                    "big"], check=True)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(2)
    rows = pd.DataFrame({"item_id": rng.integers(0, args.pinned_version, args.pinned_rows),
                         "t": START + 2 * MONTH})
    before = peak_mib()
    store = EmbeddingStore(home, progress=False)
    t0 = time.perf_counter()
    store.join(rows, "big@1", timestamp_column="t", wide=True)
    first = time.perf_counter() - t0  # loads and checks the version's files once per process
    t0 = time.perf_counter()
    store.join(rows, "big@1", timestamp_column="t", wide=True)
    again = time.perf_counter() - t0
    join_peak = peak_mib()
    v = store.resolve("big@1")
    index, vectors = pd.Index(store.load(v).ids), np.asarray(store.load(v).vectors)
    t0 = time.perf_counter()
    merged = rows.merge(pd.DataFrame({"item_id": index, "row": np.arange(len(index))}), on="item_id", how="left")
    vectors[merged["row"].to_numpy()]
    floor_s = time.perf_counter() - t0
    store.close()
    return {"case": "pinned", "rows": args.pinned_rows, "version_rows": args.pinned_version, "dim": args.dim,
            "build_s": round(build_s, 1), "first_join_s": round(first, 3), "join_s": round(again, 3),
            "floor_s": round(floor_s, 3), "ratio": round(again / floor_s, 2),
            "peak_mib_before": round(before), "peak_mib_join": round(join_peak)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--build"]:
        _, home, versions, ids, dim, prefix = argv
        return build(Path(home), int(versions), int(ids), int(dim), prefix)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--versions", type=int, default=12)
    p.add_argument("--ids", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--pinned-version", type=int, default=0, help="also time a pinned join on a version of N vectors")
    p.add_argument("--pinned-rows", type=int, default=100_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(as_of(args, Path(tmp))), flush=True)
        if args.pinned_version:
            print(json.dumps(pinned(args, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
