"""item2vec on MovieLens latest-small: leave-last-out HR@10 / NDCG@10 through the store,
against popularity and item-kNN measured in the same run, plus training and publish time.

    python bench/bench_item2vec.py [--movielens ../shared/data/ml-latest-small] [--epochs 10]

Protocol (as in the data README): ratings >= 3.5 ordered by time; each user's last
item is held out; the user vector is the mean of the unit vectors of their last 5
training items (--last); items already seen are excluded from the top 10. Options left
unset take the producer's defaults. bench/bench_quality.py runs the same protocol for
every producer, on two disjoint halves of the users.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from embstore.store import EmbeddingStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ML = ROOT.parent / "shared" / "data" / "ml-latest-small"


def split(ratings: pd.DataFrame):
    pos = ratings[ratings.rating >= 3.5].sort_values(["userId", "timestamp"], kind="stable")
    last = pos.groupby("userId").tail(1)
    train = pos.drop(last.index)
    counts = train.groupby("userId").size()
    last = last[last.userId.isin(counts[counts >= 1].index)]
    last = last[last.movieId.isin(set(train.movieId))]  # a never-seen item can't be recalled by anyone
    return train, last


def hit_metrics(ranked: dict, truth: dict, k: int = 10) -> tuple[float, float]:
    hits, ndcg = 0, 0.0
    for user, item in truth.items():
        top = ranked.get(user, [])[:k]
        if item in top:
            hits += 1
            ndcg += 1.0 / np.log2(top.index(item) + 2)
    return hits / len(truth), ndcg / len(truth)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--movielens", type=Path, default=DEFAULT_ML)
    p.add_argument("--epochs", type=int, default=None, help="default: the producer's")
    p.add_argument("--dim", type=int, default=None, help="default: the producer's")
    p.add_argument("--window", default=None, help="default: the producer's")
    p.add_argument("--last", type=int, default=5, help="items of history that form the user vector")
    p.add_argument("--min-count", type=int, default=None, help="items rarer than this get no vector (default: the "
                   "producer's; 1 keeps all, and rare items' noisy vectors crowd the top 10)")
    args = p.parse_args()
    if not (args.movielens / "ratings.csv").exists():
        sys.exit(f"MovieLens not found at {args.movielens}; pass --movielens")

    ratings = pd.read_csv(args.movielens / "ratings.csv")
    train, test = split(ratings)
    truth = dict(zip(test.userId, test.movieId))
    seen = train.groupby("userId").movieId.apply(list).to_dict()

    with tempfile.TemporaryDirectory() as tmp:
        train_path = Path(tmp) / "train.csv"
        train.rename(columns={"userId": "user_id", "movieId": "item_id"}).to_csv(train_path, index=False)
        store = EmbeddingStore.init(Path(tmp) / "home", progress=False)
        t0 = time.perf_counter()
        given = {"epochs": args.epochs, "dim": args.dim, "min_count": args.min_count,
                 "window": args.window if args.window in (None, "all") else int(args.window)}
        version = store.run("item2vec", "movies", {"interactions": train_path},
                            {k: v for k, v in given.items() if v is not None})
        run_s = time.perf_counter() - t0
        with np.load(store.export(version.ref, Path(tmp) / "vectors.npz")) as exported:
            ids, matrix = exported["ids"], exported["vectors"]
        unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        row = {i: r for r, i in enumerate(ids.tolist())}

        t0 = time.perf_counter()
        ranked_i2v = {}
        users = list(truth)
        for u in users:
            hist = [row[i] for i in seen[u][-args.last:] if i in row]
            if not hist:  # no vector for any recent item: counts as a miss
                continue
            q = unit[hist].mean(axis=0)
            ranked_i2v[u] = store.recall(version.ref, vectors=q[None, :], k=10, exclude=seen[u])[0].ids
        recall_s = time.perf_counter() - t0

    popularity = train.movieId.value_counts().index.tolist()
    ranked_pop = {}
    for u in users:
        s = set(seen[u])
        ranked_pop[u] = [i for i in popularity[:400] if i not in s][:10]

    # item-kNN cosine over the user-item matrix, last 20 items, same exclusions
    items = np.array(sorted(set(train.movieId)))
    col = {i: c for c, i in enumerate(items)}
    user_codes = {u: k for k, u in enumerate(sorted(set(train.userId)))}
    from scipy import sparse

    m = sparse.csr_matrix((np.ones(len(train)), ([user_codes[u] for u in train.userId], [col[i] for i in train.movieId])),
                          shape=(len(user_codes), len(items)))
    m.data[:] = 1.0
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=0))).ravel() + 1e-12
    ranked_knn = {}
    for u in users:
        hist = [col[i] for i in seen[u][-args.last:]]
        sims = (m[:, hist].T @ m).toarray() / (norms[hist][:, None] * norms[None, :])
        score = sims.sum(axis=0)
        score[[col[i] for i in seen[u]]] = -np.inf
        ranked_knn[u] = items[np.argsort(-score)[:10]].tolist()

    rows = [
        ("popularity", *hit_metrics(ranked_pop, truth)),
        (f"item-kNN cosine (last {args.last})", *hit_metrics(ranked_knn, truth)),
        (f"item2vec via store ({version.config.get('min_count')} min_count, window {version.config.get('window')}, "
         f"{version.config.get('epochs')} epochs)", *hit_metrics(ranked_i2v, truth)),
    ]
    print(f"MovieLens latest-small, ratings >= 3.5, leave-last-out, {len(truth)} users evaluated")
    print(f"{'method':<52} {'HR@10':>7} {'NDCG@10':>8}")
    for name, hr, ndcg in rows:
        print(f"{name:<52} {hr:7.3f} {ndcg:8.3f}")
    pop_hr = rows[0][1]
    print(f"item2vec HR@10 / popularity HR@10 = {rows[2][1] / pop_hr:.2f}x; / item-kNN = {rows[2][1] / max(rows[1][1], 1e-9):.2f}x")
    recallable = float(np.mean([i in row for i in truth.values()]))
    print(f"held-out items with a vector (recallable): {recallable:.3f}")
    print(f"train+publish {run_s:.1f} s ({version.count} items); recall {len(users)} users {recall_s:.2f} s "
          f"({1000 * recall_s / len(users):.2f} ms/query through the store)")


if __name__ == "__main__":
    main()
