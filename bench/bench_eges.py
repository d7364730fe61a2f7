"""EGES benchmarks: cold-start recall on MovieLens, and epoch time / memory at scale.

    python bench/bench_eges.py movielens [--movielens ../shared/data/ml-latest-small] [--epochs 3] [--fields genres,decade]
    python bench/bench_eges.py scale --graph cora        [--cora ../shared/data/cora]
    python bench/bench_eges.py scale --graph generated   [--nodes 100000 --edges 1000000]

movielens: 10% of the rated movies are held out of training (every rating of them
removed); EGES trains on the remaining ratings (the item graph of users' time-ordered
histories) with genres as side information, then embeds the held-out movies from
their genres alone (``infer``). For each user who rated a held-out movie, the test
item is the last one they rated; the user's vector is the mean of the vectors of the
movies they rated in training; the held-out movies are ranked by inner product and
HR@10 counts how often the test item is in the top 10. Baselines on the same users
and candidates: popularity within genre (a cold movie scores the share of the user's
training ratings that fall in its genres, averaged over its genres, ties broken by how
many training ratings its genres have overall), and random. With ``--fields
genres,decade`` (or year; both read from the title) the release decade is a second
field, and a baseline adds the user's share of ratings in the movie's decade.

scale: seconds per epoch and peak resident memory of one fit, on Cora's edges or a
generated power-law graph, with generated side information (a 50-value category and
1-3 tags out of 500 per item).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from graphs import power_law_edges  # bench/graphs.py: scripts run from bench/

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ML = ROOT.parent / "shared" / "data" / "ml-latest-small"
DEFAULT_CORA = ROOT.parent / "shared" / "data" / "cora"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(extra: list[str], base: dict):
    from embstore.config import parse_config, parse_key_values
    from embstore_plugins.eges import EGES

    return parse_config(EGES.Config, {**base, **parse_key_values(extra, "--config")}, "eges")


def _hr_at(scores: np.ndarray, target: np.ndarray, k: int, rng: np.random.Generator) -> float:
    """Share of rows whose target column ranks in the top k (ties broken at random)."""
    noise = rng.random(scores.shape) * 1e-9 * (np.abs(scores).max() + 1)
    s = scores + noise
    better = (s > s[np.arange(len(target)), target][:, None]).sum(axis=1)
    return float((better < k).mean())


def movielens(args) -> None:
    from embstore.inputs import Inputs, InputSpec, split_multi
    from embstore_plugins.eges import EGES

    ratings = pd.read_csv(args.movielens / "ratings.csv")
    movies = pd.read_csv(args.movielens / "movies.csv")
    rng = np.random.default_rng(args.seed)
    rated = np.unique(ratings.movieId)
    cold = np.sort(rng.choice(rated, size=len(rated) // 10, replace=False))
    is_cold = ratings.movieId.isin(cold)
    train = ratings[~is_cold]
    fields = args.fields.split(",")
    movies = _with_release_fields(movies)
    unknown = [f for f in fields if f not in movies.columns or f in ("movieId", "title")]
    if unknown:
        raise SystemExit(f"--fields: unknown field {unknown[0]!r}; choose from genres, year, decade")
    cfg = _config(args.config, {**({"epochs": args.epochs} if args.epochs else {}), "side_fields": fields,
                                "seed": args.seed})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train.to_csv(tmp / "train.csv", index=False)
        side = movies[["movieId", *fields]].rename(columns={"movieId": "item_id"})
        side[~side.item_id.isin(cold)].to_csv(tmp / "side.csv", index=False)
        side[side.item_id.isin(cold)].to_csv(tmp / "cold.csv", index=False)
        inputs = Inputs([InputSpec("interactions", tmp / "train.csv",
                                   {"user_id": "userId", "item_id": "movieId"}),
                         InputSpec("side_info", tmp / "side.csv")])
        t0 = time.perf_counter()
        emb = EGES().fit(inputs, cfg, progress=args.progress)
        t1 = time.perf_counter()
        out = EGES().infer(emb.state, Inputs([InputSpec("side_info", tmp / "cold.csv")]), cfg)
        t2 = time.perf_counter()
    m = emb.metadata
    print(f"MovieLens: {len(rated)} rated movies, {len(cold)} held out ({int(is_cold.sum())} ratings); "
          f"graph {m['nodes']} items, {m['edges']} arcs; {m['pairs']} pairs/epoch")
    print(f"fit {t1 - t0:.1f} s (s/epoch {m['epoch_seconds']}, losses {m['epoch_losses']}), "
          f"infer {len(out)} cold movies {t2 - t1:.2f} s; attention mean {m['attention_mean']}; "
          f"peak RSS {_peak_mb():.0f} MB")

    # test users: last-rated held-out movie; history: their training ratings
    test = ratings[is_cold].sort_values(["userId", "timestamp"]).groupby("userId").tail(1)
    test = test[test.userId.isin(train.userId)]
    row = {i: r for r, i in enumerate(emb.ids.tolist())}
    cold_ids = out.ids.tolist()
    col = {i: c for c, i in enumerate(cold_ids)}
    target = np.array([col[i] for i in test.movieId])
    hist = train[train.userId.isin(test.userId)]
    users = test.userId.to_numpy()
    user_row = {u: k for k, u in enumerate(users)}
    # EGES: user = mean of their training movies' vectors
    vec_sum = np.zeros((len(users), emb.dim))
    counts = np.zeros(len(users))
    for u, i in zip(hist.userId.to_numpy(), hist.movieId.to_numpy()):
        if i in row:
            vec_sum[user_row[u]] += emb.vectors[row[i]]
            counts[user_row[u]] += 1
    user_vec = vec_sum / np.maximum(counts, 1)[:, None]
    eges_scores = user_vec @ out.vectors.T
    # popularity within genre (and decade): the user's share of training ratings in the cold movie's values
    history = list(zip(hist.userId.to_numpy(), hist.movieId.to_numpy()))
    genres_of = dict(zip(movies.movieId, split_multi(movies.genres)))
    base_scores = _share_scores(genres_of, cold_ids, history, user_row)
    rows = [(f"EGES cold-start vectors ({'+'.join(fields)})", eges_scores),
            ("popularity within genre", base_scores)]
    if "decade" in fields or "year" in fields:
        decade_of = {i: [d] if d else [] for i, d in zip(movies.movieId, movies.decade)}
        rows.append(("popularity within genre and decade",
                     base_scores + _share_scores(decade_of, cold_ids, history, user_row)))
    rows.append(("random", np.zeros_like(base_scores)))
    k = 10
    print(f"cold-start HR@{k} over {len(users)} users whose last held-out movie is the test item, "
          f"{len(cold_ids)} cold candidates:")
    for name, scores in rows:
        print(f"  {name:<40} {_hr_at(scores, target, k, np.random.default_rng(1)):.3f}")


def _share_scores(values_of: dict, cold_ids: list, history: list[tuple], user_row: dict) -> np.ndarray:
    """(users, cold movies): the share of each user's training ratings that fall in a cold movie's
    values (genres, or its decade), averaged over its values; how many ratings those values have
    overall breaks ties."""
    names = sorted({v for vs in values_of.values() for v in vs})
    col = {v: j for j, v in enumerate(names)}
    cold = np.zeros((len(cold_ids), len(names)))
    for c, i in enumerate(cold_ids):
        for v in values_of.get(i, ()):
            cold[c, col[v]] = 1.0 / len(values_of[i])
    user = np.zeros((len(user_row), len(names)))
    for u, i in history:
        for v in values_of.get(i, ()):
            user[user_row[u], col[v]] += 1
    popularity = user.sum(axis=0)
    user /= np.maximum(user.sum(axis=1, keepdims=True), 1)
    return user @ cold.T + 1e-6 * (cold @ (popularity / popularity.max()))[None, :]


def _with_release_fields(movies: pd.DataFrame) -> pd.DataFrame:
    """Release year and decade from titles such as "Toy Story (1995)" (empty when a title has none)."""
    year = movies.title.str.extract(r"\((\d{4})\)\s*$")[0]
    return movies.assign(year=year.fillna(""), decade=(year.str[:3] + "0s").fillna(""))


def scale(args) -> None:
    from embstore.inputs import Inputs, InputSpec
    from embstore_plugins.eges import EGES

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.graph == "cora":
            edges = pd.read_csv(args.cora / "edges.csv")
            base = {}
        else:
            src, dst = power_law_edges(args.nodes, args.edges, args.seed)
            edges = pd.DataFrame({"src": src, "dst": dst})
            base = {"walks_per_node": 1, "walk_length": 10}
        edges.to_csv(tmp / "edges.csv", index=False)
        ids = np.unique(np.concatenate([edges.src, edges.dst]))
        tags = rng.integers(0, 500, size=(len(ids), 3))
        n_tags = rng.integers(1, 4, size=len(ids))
        pd.DataFrame({
            "item_id": ids,
            "category": [f"c{v}" for v in rng.integers(0, 50, size=len(ids))],
            "tags": ["|".join(f"t{t}" for t in row[:n]) for row, n in zip(tags, n_tags)],
        }).to_csv(tmp / "side.csv", index=False)
        cfg = _config(args.config, {**base, **({"epochs": args.epochs} if args.epochs else {}), "seed": args.seed})
        before = _peak_mb()
        t0 = time.perf_counter()
        emb = EGES().fit(Inputs([InputSpec("edges", tmp / "edges.csv"), InputSpec("side_info", tmp / "side.csv")]),
                         cfg, progress=args.progress)
        seconds = time.perf_counter() - t0
    m = emb.metadata
    print(f"{args.graph} graph: {m['nodes']} nodes, {m['edges']} arcs, {m['pairs']} pairs/epoch "
          f"(walks {cfg.walks_per_node}x{cfg.walk_length}, window {cfg.window}), dim {cfg.dim}, "
          f"batch {cfg.batch_size}")
    print(f"fit {seconds:.1f} s; s/epoch {m['epoch_seconds']}; peak RSS {_peak_mb():.0f} MB "
          f"(before fit {before:.0f} MB)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["movielens", "scale"])
    p.add_argument("--movielens", type=Path, default=DEFAULT_ML)
    p.add_argument("--fields", default="genres",
                   help="movielens: side-information fields, comma-separated, of genres, year, decade "
                   "(year and decade come from the title)")
    p.add_argument("--cora", type=Path, default=DEFAULT_CORA)
    p.add_argument("--graph", choices=["cora", "generated"], default="generated")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the config default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nodes", type=int, default=100_000)
    p.add_argument("--edges", type=int, default=1_000_000)
    p.add_argument("--config", action="append", default=[], help="KEY=VALUE over the benchmark's config")
    p.add_argument("--progress", action="store_true", help="draw progress bars")
    args = p.parse_args(argv)
    (movielens if args.what == "movielens" else scale)(args)


if __name__ == "__main__":
    main()
