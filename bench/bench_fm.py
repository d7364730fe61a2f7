"""fm on MovieLens latest-small: AUC against logistic regression on the same one-hot
features, and user -> item HR@10 (leave-last-out, through the store) against popularity.

    python bench/bench_fm.py [--movielens ../shared/data/ml-latest-small] [--epochs 10] [--dim 32]

Part 1, AUC (time-based split per user): each user's ratings ordered by time, the
last 20% are the test period, the rest train. Ratings >= 3.5 are positives; in
training, lower ratings are explicit negatives (fm's ``low_ratings: negative``) and
every positive gets 4 sampled unseen items as negatives. Features for both models:
one-hot user id, one-hot item id, genres (multi-hot, 1/k each, from movies.csv).
Logistic regression (scikit-learn, C picked on the last 10% of training time) sees
one fixed draw of negatives; fm redraws them every epoch. Test: test-period
positives of known items against (a) one sampled unseen item per positive and
(b) the test period's ratings < 3.5 (explicit negatives).

Part 2, HR@10 / NDCG@10 leave-last-out, the data README's protocol: ratings >= 3.5
ordered by time, each user's last one held out (608 users), items among the user's
other positives excluded from the top 10. Popularity ranks by count of training
positives. fm trains through ``EmbeddingStore.run`` (FAISS retriever, inner product)
on each user's ratings before the held-out one (lower ratings as explicit negatives,
movies.csv genres as side information); its top 10 come from ``store.recall``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ML = ROOT.parent / "shared" / "data" / "ml-latest-small"
POSITIVE = 3.5


def write_interactions(frame: pd.DataFrame, path: Path) -> Path:
    frame.rename(columns={"userId": "user_id", "movieId": "item_id"})[
        ["user_id", "item_id", "timestamp", "rating"]
    ].to_csv(path, index=False)
    return path


def one_hot(users, items, genre_of, n_users, n_items, genre_vocab):
    """CSR rows: user one-hot | item one-hot | genres (1/k each)."""
    import scipy.sparse as sp

    rows, cols, vals = [], [], []
    n = len(users)
    rows += [np.arange(n), np.arange(n)]
    cols += [users, n_users + items]
    vals += [np.ones(n), np.ones(n)]
    g_rows, g_cols, g_vals = [], [], []
    for r, i in enumerate(items):
        gs = genre_of[i]
        for g in gs:
            g_rows.append(r)
            g_cols.append(n_users + n_items + genre_vocab[g])
            g_vals.append(1.0 / len(gs))
    rows.append(np.asarray(g_rows, dtype=np.int64))
    cols.append(np.asarray(g_cols, dtype=np.int64))
    vals.append(np.asarray(g_vals))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n_users + n_items + len(genre_vocab)))


def part_auc(ratings: pd.DataFrame, movies: Path, args, tmp: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from embstore.config import parse_config
    from embstore.inputs import Inputs, InputSpec
    from embstore.negatives import NegativeSampler
    from embstore_plugins.fm import FactorizationMachine, FMConfig

    r = ratings.sort_values(["userId", "timestamp"], kind="stable").reset_index(drop=True)
    rank = r.groupby("userId").cumcount()
    size = r.groupby("userId")["userId"].transform("size")
    is_test = rank >= np.ceil(size * 0.8)
    train, test = r[~is_test], r[is_test]
    test = test[test.movieId.isin(set(train.movieId))]

    cfg = parse_config(FMConfig, {"dim": args.dim, "epochs": args.epochs, "min_rating": POSITIVE,
                                  "side_fields": ["genres"], "seed": 0}, "fm")
    inputs = Inputs([InputSpec("interactions", write_interactions(train, tmp / "train.csv")),
                     InputSpec("side_info", movies, {"item_id": "movieId"})])
    t0 = time.perf_counter()
    result = FactorizationMachine().fit(inputs, cfg, progress=args.progress)
    fm_seconds = time.perf_counter() - t0
    users, items = result["user"].ids, result["item"].ids
    U, I = result["user"].vectors, result["item"].vectors
    w0 = result["user"].metadata["global_bias"]

    # shared coding for LR: the same users, items and genres fm saw
    mv = pd.read_csv(movies)
    genres = dict(zip(mv.movieId, mv.genres.str.split("|")))
    genre_vocab = {g: k for k, g in enumerate(sorted({g for gs in genres.values() for g in gs}))}
    genre_of = [genres.get(i, []) for i in items]
    u_code = lambda s: np.searchsorted(users, s.to_numpy())  # noqa: E731
    i_code = lambda s: np.searchsorted(items, s.to_numpy())  # noqa: E731

    rng = np.random.default_rng(1)
    sampler = NegativeSampler(len(items), u_code(train.userId), i_code(train.movieId))
    # test negatives must be unseen in the whole data, not only in training
    known = r[r.movieId.isin(set(items))]
    sampler_all = NegativeSampler(len(items), u_code(known.userId), i_code(known.movieId))
    pos_test = test[test.rating >= POSITIVE]
    low_test = test[test.rating < POSITIVE]
    tu, ti = u_code(pos_test.userId), i_code(pos_test.movieId)
    nu = tu
    ni = sampler_all.sample(tu, 1, rng).ravel()
    lu, li = u_code(low_test.userId), i_code(low_test.movieId)

    def fm_score(uc, ic):
        return (U[uc] * I[ic]).sum(1) + w0

    # LR training set: positives, explicit negatives, 4 sampled negatives per positive (one draw)
    trp = train[train.rating >= POSITIVE]
    trn = train[train.rating < POSITIVE]
    pu, pi = u_code(trp.userId), i_code(trp.movieId)
    su = np.repeat(pu, 4)
    si = sampler.sample(pu, 4, rng).ravel()
    xu = np.concatenate([pu, u_code(trn.userId), su])
    xi = np.concatenate([pi, i_code(trn.movieId), si])
    y = np.concatenate([np.ones(len(pu)), np.zeros(len(trn) + len(su))])
    ts = np.concatenate([trp.timestamp.to_numpy(), trn.timestamp.to_numpy(), np.repeat(trp.timestamp.to_numpy(), 4)])
    X = one_hot(xu, xi, genre_of, len(users), len(items), genre_vocab)
    cut = np.quantile(ts, 0.9)
    fit_rows, val_rows = ts < cut, ts >= cut
    best = None
    for C in (0.1, 0.3, 1.0, 3.0):
        lr = LogisticRegression(C=C, max_iter=2000).fit(X[fit_rows], y[fit_rows])
        auc = roc_auc_score(y[val_rows], lr.decision_function(X[val_rows]))
        if best is None or auc > best[1]:
            best = (C, auc)
    t0 = time.perf_counter()
    lr = LogisticRegression(C=best[0], max_iter=2000).fit(X, y)
    lr_seconds = time.perf_counter() - t0

    def lr_score(uc, ic):
        return lr.decision_function(one_hot(uc, ic, genre_of, len(users), len(items), genre_vocab))

    y_s = np.r_[np.ones(len(tu)), np.zeros(len(nu))]
    y_e = np.r_[np.ones(len(tu)), np.zeros(len(lu))]
    fm_s = roc_auc_score(y_s, np.r_[fm_score(tu, ti), fm_score(nu, ni)])
    lr_s = roc_auc_score(y_s, np.r_[lr_score(tu, ti), lr_score(nu, ni)])
    fm_e = roc_auc_score(y_e, np.r_[fm_score(tu, ti), fm_score(lu, li)])
    lr_e = roc_auc_score(y_e, np.r_[lr_score(tu, ti), lr_score(lu, li)])
    print(f"split: per-user time, last 20% test; train {len(train)} ratings, test {len(pos_test)} positives "
          f"(+{len(nu)} sampled, {len(lu)} rated < {POSITIVE}) of {pos_test.userId.nunique()} users")
    print(f"fm  dim={args.dim} epochs={args.epochs}: train {fm_seconds:.1f} s "
          f"({result['user'].metadata['examples_per_second']:.0f} examples/s)")
    print(f"LR  C={best[0]} (val AUC {best[1]:.4f}): train {lr_seconds:.1f} s")
    print(f"AUC positives vs sampled unseen items: fm {fm_s:.4f}  LR {lr_s:.4f}  ratio {fm_s / lr_s:.3f}")
    print(f"AUC positives vs rated < {POSITIVE}:        fm {fm_e:.4f}  LR {lr_e:.4f}  ratio {fm_e / lr_e:.3f}")


def part_hr(ratings: pd.DataFrame, movies: Path, args, tmp: Path) -> None:
    from embstore.inputs import InputSpec
    from embstore.store import EmbeddingStore

    ordered = ratings.sort_values(["userId", "timestamp"], kind="stable")
    pos = ordered[ordered.rating >= POSITIVE]
    last = pos.groupby("userId").tail(1)
    train_pos = pos.drop(last.index)
    last = last[last.userId.isin(set(train_pos.userId))]
    truth = dict(zip(last.userId, last.movieId))
    # fm trains on every rating before the held-out one (lower ratings as explicit negatives)
    position = ordered.groupby("userId").cumcount()
    cut = ordered.userId.map(pd.Series(position[last.index].to_numpy(), index=last.userId.to_numpy()))
    train = ordered[cut.isna() | (position < cut)]
    seen = train_pos.groupby("userId").movieId.apply(set).to_dict()
    k = 10

    def metrics(ranked: dict) -> tuple[float, float]:
        hits, ndcg = 0, 0.0
        for u, item in truth.items():
            top = ranked[u][:k]
            if item in top:
                hits += 1
                ndcg += 1 / np.log2(top.index(item) + 2)
        return hits / len(truth), ndcg / len(truth)

    popular = train_pos.movieId.value_counts().index.tolist()
    pop_rank = {u: [i for i in popular[: k + len(seen.get(u, ()))] if i not in seen.get(u, ())] for u in truth}
    pop_hr, pop_ndcg = metrics(pop_rank)

    store = EmbeddingStore.init(tmp / "home", progress=args.progress)
    try:
        config = {"dim": args.dim, "epochs": args.epochs, "min_rating": POSITIVE, "side_fields": ["genres"], "seed": 0}
        t0 = time.perf_counter()
        inputs = {"interactions": write_interactions(train, tmp / "loo.csv"),
                  "side_info": InputSpec("side_info", movies, {"item_id": "movieId"})}
        store.run("fm", "ml_fm", inputs, config, retriever_config={"metric": "ip"})
        run_seconds = time.perf_counter() - t0
        users = list(truth)
        U = store.vectors("ml_fm_user", users).matrix
        t0 = time.perf_counter()
        want = k + max(len(seen.get(u, ())) for u in users)
        hits = store.recall("ml_fm_item", vectors=U, k=want)
        recall_seconds = time.perf_counter() - t0
    finally:
        store.close()
    fm_rank = {u: [i for i in h.ids if i not in seen.get(u, ())] for u, h in zip(users, hits)}
    fm_hr, fm_ndcg = metrics(fm_rank)
    print(f"leave-last-out: {len(truth)} users; fm train+publish {run_seconds:.1f} s, "
          f"recall for all users {recall_seconds:.2f} s")
    print(f"HR@10   fm {fm_hr:.4f}  popularity {pop_hr:.4f}  ratio {fm_hr / pop_hr:.2f}")
    print(f"NDCG@10 fm {fm_ndcg:.4f}  popularity {pop_ndcg:.4f}  ratio {fm_ndcg / pop_ndcg:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--movielens", type=Path, default=DEFAULT_ML)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--part", choices=["auc", "hr", "both"], default="both")
    p.add_argument("--progress", action="store_true", default=None, help="force progress bars")
    args = p.parse_args()
    if not (args.movielens / "ratings.csv").exists():
        sys.exit(f"MovieLens not found at {args.movielens}; pass --movielens")
    ratings = pd.read_csv(args.movielens / "ratings.csv")
    movies = args.movielens / "movies.csv"
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("auc", "both"):
            part_auc(ratings, movies, args, Path(tmp))
        if args.part in ("hr", "both"):
            part_hr(ratings, movies, args, Path(tmp))


if __name__ == "__main__":
    main()
