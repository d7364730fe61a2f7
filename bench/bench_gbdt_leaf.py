"""gbdt_leaf on MovieLens-derived tabular features: AUC of logistic regression on the
one-hot leaves (GBDT+LR) against LightGBM alone on the same split, and leaf-embedding
throughput (leaves + dense sketch) in rows/s for 1M rows.

    python bench/bench_gbdt_leaf.py [--movielens ../shared/data/ml-latest-small] [--trees 100] [--threads 0]

The table: one row per rating of ml-latest-small, label rating >= 3.5. Features,
computed from earlier ratings only (strictly before the row, in time order, so
nothing leaks from the label): the user's and the movie's count, mean rating and
share of positives so far; the movie's year (from its title), its first genre
(a string column: categorical) and 19 genre flags; hour and weekday of the
rating. Split by time into A (first 60% of ratings), B (next 20%) and test (last 20%).

gbdt_leaf trains its trees on A; the rows of B and test go into the same table
with an empty label, so they are embedded without being trained on (its
documented way to embed unlabelled rows). GBDT+LR, as in He et al. (2014): a
logistic regression (scikit-learn, C picked on the last quarter of B) on B's
one-hot leaves -- leaves of rows the trees were fitted on look purer than they
are, so the LR must learn on rows the trees did not see. LightGBM alone: the same
trees scoring the test rows, and, as a second reference, LightGBM retrained on
A+B with the same settings. Also in the same run: logistic regression on the raw
features (standardised, NaN as 0 plus an indicator) trained on A+B, and on the
published dense vector (leaf sketch) trained on B.

Throughput: the trained booster embeds 1M rows resampled from the table
(predict(pred_leaf=True) plus the leaf sketch, the work of gbdt_leaf after
training), against LightGBM's own predict of scores on the same rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ML = ROOT.parent / "shared" / "data" / "ml-latest-small"
POSITIVE = 3.5


def prior_stats(frame: pd.DataFrame, key: str, prefix: str) -> pd.DataFrame:
    """Count, mean rating and positive share of ``key``'s ratings strictly before each row."""
    g = frame.groupby(key, sort=False)
    n = g.cumcount()
    rating_sum = g["rating"].cumsum() - frame["rating"]
    pos_sum = g["positive"].cumsum() - frame["positive"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            f"{prefix}_n": n,
            f"{prefix}_mean": np.where(n > 0, rating_sum / n.where(n > 0, 1), np.nan),
            f"{prefix}_pos": np.where(n > 0, pos_sum / n.where(n > 0, 1), np.nan),
        })


def build_table(ml: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The feature table in time order and each row's part: 'A', 'B' or 'test'."""
    ratings = pd.read_csv(ml / "ratings.csv")
    movies = pd.read_csv(ml / "movies.csv")
    r = ratings.sort_values(["timestamp", "userId", "movieId"], kind="stable").reset_index(drop=True)
    r["positive"] = (r.rating >= POSITIVE).astype(float)
    feats = pd.concat([prior_stats(r, "userId", "user"), prior_stats(r, "movieId", "movie")], axis=1)
    genres = movies.set_index("movieId").genres.str.split("|")
    all_genres = sorted({g for gs in genres for g in gs if g != "(no genres listed)"})
    movie_genres = genres.reindex(r.movieId)
    for g in all_genres:
        col = "g_" + "".join(ch for ch in g.lower() if ch.isalnum())
        feats[col] = np.array([g in gs for gs in movie_genres], dtype=np.int8)
    feats["first_genre"] = [gs[0] for gs in movie_genres]
    year = movies.set_index("movieId").title.str.extract(r"\((\d{4})\)\s*$")[0].astype(float)
    feats["year"] = year.reindex(r.movieId).to_numpy()
    when = pd.to_datetime(r.timestamp, unit="s", utc=True)
    feats["hour"] = when.dt.hour.to_numpy()
    feats["weekday"] = when.dt.weekday.to_numpy()
    feats.insert(0, "row", np.arange(len(r)))
    feats["label"] = r.positive
    part = np.full(len(r), "A", dtype=object)
    part[int(len(r) * 0.6):] = "B"
    part[int(len(r) * 0.8):] = "test"
    return feats, part


def lr_auc(X_fit, y_fit, X_test, y_test) -> tuple[float, float]:
    """AUC of a logistic regression with C picked on the last quarter of the (time-ordered) fit rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    n = X_fit.shape[0]
    head, tail = np.arange(int(n * 0.75)), np.arange(int(n * 0.75), n)
    best = None
    for C in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
        model = LogisticRegression(C=C, max_iter=3000).fit(X_fit[head], y_fit[head])
        auc = roc_auc_score(y_fit[tail], model.decision_function(X_fit[tail]))
        if best is None or auc > best[1]:
            best = (C, auc)
    model = LogisticRegression(C=best[0], max_iter=3000).fit(X_fit, y_fit)
    return roc_auc_score(y_test, model.decision_function(X_test)), best[0]


def leaf_one_hot(leaves: np.ndarray, per_tree: int):
    import scipy.sparse as sp

    n, trees = leaves.shape
    cols = (leaves + np.arange(trees) * per_tree).ravel()
    return sp.csr_matrix((np.ones(n * trees, dtype=np.float32), cols, np.arange(0, n * trees + 1, trees)),
                         shape=(n, trees * per_tree))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--movielens", type=Path, default=DEFAULT_ML)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--leaves", type=int, default=31)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="LightGBM threads (0: all cores)")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows for the throughput part")
    p.add_argument("--progress", action="store_true", default=None)
    args = p.parse_args()
    if not (args.movielens / "ratings.csv").exists():
        sys.exit(f"MovieLens not found at {args.movielens}; pass --movielens")

    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from embstore.config import parse_config
    from embstore.inputs import Inputs, InputSpec
    from embstore_plugins.gbdt_leaf import GBDTLeaf, GBDTLeafConfig, leaf_sketch, predict_leaves

    t0 = time.perf_counter()
    feats, part = build_table(args.movielens)
    A, B, test = part == "A", part == "B", part == "test"
    y = feats["label"].to_numpy().copy()
    table = feats.copy()
    table.loc[~A, "label"] = np.nan  # embedded, not trained on
    print(f"table: {len(table)} rows x {table.shape[1] - 2} features ({time.perf_counter() - t0:.1f} s); "
          f"by time A {int(A.sum())} / B {int(B.sum())} / test {int(test.sum())}; "
          f"positive share {y.mean():.3f}; threads {args.threads or os.cpu_count()}")

    settings = {"trees": args.trees, "leaves": args.leaves, "dim": args.dim, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.parquet"
        table.to_parquet(path)
        producer = GBDTLeaf()
        t0 = time.perf_counter()
        emb = producer.fit(Inputs([InputSpec("table", path)]),
                           parse_config(GBDTLeafConfig, {"id": "row", **settings}, "gbdt_leaf"),
                           progress=args.progress)
        fit_seconds = time.perf_counter() - t0
        table.loc[B, "label"] = y[B]  # the reference LightGBM trains on A+B
        path_ab = Path(tmp) / "table_ab.parquet"
        table.to_parquet(path_ab)
        producer_ab = GBDTLeaf()
        producer_ab.fit(Inputs([InputSpec("table", path_ab)]),
                        parse_config(GBDTLeafConfig, {"id": "row", **settings}, "gbdt_leaf"), progress=False)
    booster, X = producer.booster_, producer.features_
    leaves = emb.extras["leaves"]

    gbdt_auc = roc_auc_score(y[test], booster.predict(X[test], num_threads=args.threads))
    gbdt_ab_auc = roc_auc_score(y[test], producer_ab.booster_.predict(X[test], num_threads=args.threads))
    H = leaf_one_hot(leaves, args.leaves)
    gbdt_lr_auc, c_leaf = lr_auc(H[B], y[B], H[test], y[test])
    raw = X.drop(columns=["first_genre"]).to_numpy(dtype=np.float64)
    raw = np.hstack([np.nan_to_num(raw), np.isnan(raw).astype(float)])
    AB = A | B
    scaler = StandardScaler().fit(raw[AB])
    raw_auc, c_raw = lr_auc(scaler.transform(raw[AB]), y[AB], scaler.transform(raw[test]), y[test])
    V = emb.vectors
    vec_auc, c_vec = lr_auc(V[B], y[B], V[test], y[test])
    print(f"gbdt_leaf fit: {fit_seconds:.1f} s ({emb.metadata['trees_used']} trees x {args.leaves} leaves on "
          f"{emb.metadata['rows_trained']} rows, {len(emb)} rows embedded)")
    print(f"test AUC  LightGBM alone (trees of A)      {gbdt_auc:.4f}")
    print(f"test AUC  LightGBM alone (retrained on A+B) {gbdt_ab_auc:.4f}")
    print(f"test AUC  GBDT+LR (A trees, LR on B leaves) {gbdt_lr_auc:.4f}  ratio to LightGBM(A) "
          f"{gbdt_lr_auc / gbdt_auc:.4f}, to LightGBM(A+B) {gbdt_lr_auc / gbdt_ab_auc:.4f}  (C={c_leaf})")
    print(f"test AUC  LR on raw features (A+B)          {raw_auc:.4f}  ratio to LightGBM(A+B) "
          f"{raw_auc / gbdt_ab_auc:.4f}  (C={c_raw})")
    print(f"test AUC  LR on {args.dim}-d leaf sketch (B)      {vec_auc:.4f}  ratio to LightGBM(A) "
          f"{vec_auc / gbdt_auc:.4f}  (C={c_vec})")

    rng = np.random.default_rng(0)
    big = X.iloc[rng.integers(0, len(X), args.rows)].reset_index(drop=True)
    trees = emb.metadata["trees_used"]
    t0 = time.perf_counter()
    big_leaves = predict_leaves(booster, big, trees, args.threads)
    t_leaves = time.perf_counter() - t0
    t0 = time.perf_counter()
    leaf_sketch(big_leaves, args.leaves, args.dim, 0)
    t_sketch = time.perf_counter() - t0
    t0 = time.perf_counter()
    booster.predict(big, num_iteration=trees, num_threads=args.threads)
    t_score = time.perf_counter() - t0
    total = t_leaves + t_sketch
    print(f"throughput on {args.rows} rows: leaves {args.rows / t_leaves:,.0f} rows/s, sketch "
          f"{args.rows / t_sketch:,.0f} rows/s, leaves+sketch {args.rows / total:,.0f} rows/s ({total:.1f} s); "
          f"LightGBM score predict {args.rows / t_score:,.0f} rows/s; ratio {t_score / total:.2f}")


if __name__ == "__main__":
    main()
