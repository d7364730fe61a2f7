"""One quality table: every producer with its defaults, on MovieLens (recall) and Cora (linear probe).

    python bench/bench_quality.py                 # the table, through `embstore run` and `embstore export`
    python bench/bench_quality.py --only movielens --producers item2vec,deepwalk
    python bench/bench_quality.py sweep item2vec --set min_count=1,5,10 [--set epochs=5,10]   # tuning aid

MovieLens ml-latest-small (Harper and Konstan, 2015), the protocol of issue 14:
ratings >= 3.5 ordered by time; each user's last item is held out (users whose
held-out item nobody rated in training are not evaluated); the user vector is
the mean of the unit vectors of the user's last 5 training items that have a
vector; items the user has seen are excluded; HR@10 and NDCG@10 by cosine.
"recallable" is the share of held-out items that have a vector at all (a
held-out item without one is a miss).

The users are split in two disjoint halves by user id (odd: the tuning half,
even: the checking half). Each half is its own data set: every method is
trained and evaluated inside one half, so the checking half shares no user, no
rating and no trained vector with the half the defaults were chosen on (and,
having half the ratings, it has more rare items). Popularity (most rated in
training) and item-kNN (cosine on the binary user-item matrix, scores summed
over the same last 5 items, and over the last 20 as bench_item2vec.py and the
data's README measured it) are measured in the same run on the same splits.

Cora (Planetoid split): logistic regression on the frozen vectors, 140 labelled
nodes, 1,000 test nodes; GraphSAGE from the .npz features and from the same
features written as CSV.

The table runs each producer as a new user would: `embstore init`, `embstore
run PRODUCER` with no --config beyond the input columns, `embstore export
vectors.npz`, then the protocol above on the exported vectors. ``sweep`` calls
a producer's ``fit`` directly (no Feast, same vectors) over a grid of config
values and prints both halves: what the defaults were chosen with.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ML = ROOT.parent / "shared" / "data" / "ml-latest-small"
DEFAULT_CORA = ROOT.parent / "shared" / "data" / "cora"
LAST = 5
K = 10
HALVES = ("tuning", "checking")
RECALL_PRODUCERS = ("item2vec", "deepwalk", "node2vec", "eges", "fm")
PROBE_PRODUCERS = ("deepwalk", "node2vec", "graphsage")


# ---------------------------------------------------------------------- the MovieLens protocol


@dataclass
class Split:
    """One half: training rows (canonical columns), held-out item and seen items per user."""

    name: str
    train: pd.DataFrame  # user_id, item_id, timestamp, rating
    truth: dict
    seen: dict


def movielens_halves(path: Path) -> dict[str, Split]:
    ratings = pd.read_csv(path / "ratings.csv")
    pos = ratings[ratings.rating >= 3.5].sort_values(["userId", "timestamp"], kind="stable")
    pos = pos.rename(columns={"userId": "user_id", "movieId": "item_id"})
    out = {}
    for name, parity in zip(HALVES, (1, 0)):
        half = pos[pos.user_id % 2 == parity]
        last = half.groupby("user_id").tail(1)
        train = half.drop(last.index)
        last = last[last.user_id.isin(set(train.user_id)) & last.item_id.isin(set(train.item_id))]
        seen = train.groupby("user_id").item_id.apply(list).to_dict()
        out[name] = Split(name, train.reset_index(drop=True), dict(zip(last.user_id, last.item_id)), seen)
    return out


def hit_metrics(ranked: dict, truth: dict) -> tuple[float, float]:
    hits, ndcg = 0, 0.0
    for user, item in truth.items():
        top = list(ranked.get(user, []))[:K]
        if item in top:
            hits += 1
            ndcg += 1.0 / np.log2(top.index(item) + 2)
    return hits / len(truth), ndcg / len(truth)


def rank_by_vectors(ids: np.ndarray, vectors: np.ndarray, split: Split) -> tuple[dict, float]:
    """Top 10 per user by cosine to the mean of the last 5 unit vectors; and the recallable share."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row = {i: r for r, i in enumerate(ids.tolist())}
    ranked = {}
    for user in split.truth:
        hist = [row[i] for i in split.seen[user][-LAST:] if i in row]
        if not hist:
            continue
        q = unit[hist].mean(axis=0)
        scores = unit @ q
        seen = [row[i] for i in split.seen[user] if i in row]
        scores[seen] = -np.inf
        top = np.argpartition(-scores, K)[:K]
        ranked[user] = ids[top[np.argsort(-scores[top], kind="stable")]].tolist()
    recallable = float(np.mean([item in row for item in split.truth.values()]))
    return ranked, recallable


def popularity(split: Split) -> dict:
    order = split.train.item_id.value_counts().index.tolist()
    out = {}
    for user in split.truth:
        seen = set(split.seen[user])
        out[user] = [i for i in order[: K + len(seen) + 1] if i not in seen][:K]
    return out


def item_knn(split: Split, last: int = LAST) -> dict:
    from scipy import sparse

    train = split.train
    items = np.array(sorted(set(train.item_id)))
    col = {i: c for c, i in enumerate(items)}
    users = {u: k for k, u in enumerate(sorted(set(train.user_id)))}
    m = sparse.csr_matrix((np.ones(len(train)), ([users[u] for u in train.user_id], [col[i] for i in train.item_id])),
                          shape=(len(users), len(items)))
    m.data[:] = 1.0
    m = m.tocsc()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=0))).ravel() + 1e-12
    out = {}
    for user in split.truth:
        hist = [col[i] for i in split.seen[user][-last:]]
        sims = (m[:, hist].T @ m).toarray() / (norms[hist][:, None] * norms[None, :])
        score = sims.sum(axis=0)
        score[[col[i] for i in split.seen[user]]] = -np.inf
        out[user] = items[np.argsort(-score, kind="stable")[:K]].tolist()
    return out


def baselines(halves: dict[str, Split]) -> dict:
    return {name: {"popularity": hit_metrics(popularity(s), s.truth), "item-kNN": hit_metrics(item_knn(s), s.truth)}
            for name, s in halves.items()}


# ---------------------------------------------------------------------- sweeps (fit directly)


def fit_movielens(producer: str, train_csv: Path, config: dict, side_info: Path | None = None):
    from embstore.catalogue import catalogue
    from embstore.config import parse_config
    from embstore.inputs import InputSpec, Inputs

    cls = catalogue().producer(producer)
    cfg = parse_config(cls.Config, config, producer)
    specs = [InputSpec("interactions", train_csv)]
    if side_info is not None and "side_info" in (cls.requires | getattr(cls, "accepts", frozenset())):
        specs.append(InputSpec("side_info", side_info, {"item_id": "movieId"}))
    emb = cls().fit(Inputs(specs), cfg, progress=False)
    return emb


def sweep(args) -> None:
    halves = movielens_halves(args.movielens)
    grid = [(k, [_value(v) for v in vals.split(",")]) for k, vals in (s.split("=", 1) for s in args.set)]
    base = dict(kv.split("=", 1) for kv in args.config)
    base = {k: _value(v) for k, v in base.items()}
    ref = baselines(halves)
    for name in HALVES:
        print(f"{name}: {len(halves[name].truth)} users; popularity HR@10 {ref[name]['popularity'][0]:.3f}, "
              f"item-kNN {ref[name]['item-kNN'][0]:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, s in halves.items():
            paths[name] = Path(tmp) / f"{name}.csv"
            s.train.to_csv(paths[name], index=False)
        keys = [k for k, _ in grid]
        print(f"{args.producer} {base}")
        print("  ".join(f"{k:>12}" for k in keys) + "   tune HR  NDCG  recall | check HR  NDCG  recall   seconds")
        for values in itertools.product(*[v for _, v in grid]):
            cfg = {**base, **dict(zip(keys, values))}
            row = []
            t0 = time.perf_counter()
            for name in HALVES:
                emb = fit_movielens(args.producer, paths[name], cfg)
                ranked, share = rank_by_vectors(np.asarray(emb.ids), np.asarray(emb.vectors), halves[name])
                hr, ndcg = hit_metrics(ranked, halves[name].truth)
                row.append(f"{hr:.3f} {ndcg:.3f} {share:.3f}")
            seconds = time.perf_counter() - t0
            print("  ".join(f"{str(v):>12}" for v in values) + "   " + " | ".join(row) + f"   {seconds:6.1f}",
                  flush=True)


# ---------------------------------------------------------------------- the table (through the CLI)


class Cli:
    """`embstore` as a new user runs it: one home, one process per command."""

    def __init__(self, home: Path):
        self.exe = str(Path(sys.executable).with_name("embstore"))
        self.home = str(home)
        self.run_cmd(["init"])

    def run_cmd(self, args: list[str]) -> str:
        proc = subprocess.run([self.exe, "--home", self.home, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"embstore {' '.join(args)}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        return proc.stdout

    def produce(self, producer: str, set_name: str, inputs: list[str], extra: list[str] = (),
                published: str | None = None) -> tuple[dict, float]:
        """`embstore run` with no --config; returns the metrics of the version of ``published`` (default:
        the set run) and the seconds it took."""
        t0 = time.perf_counter()
        cmd = ["run", producer, "--set", set_name]
        for spec in inputs:
            cmd += ["--input", spec]
        self.run_cmd(cmd + list(extra))
        seconds = time.perf_counter() - t0
        return json.loads(self.run_cmd(["versions", published or set_name, "--json"]))[-1]["metrics"], seconds

    def export(self, ref: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
        self.run_cmd(["export", ref, str(out)])
        with np.load(out, allow_pickle=False) as data:
            return data["ids"], data["vectors"]


def movielens_rows(args, cli: Cli, tmp: Path) -> list[dict]:
    halves = movielens_halves(args.movielens)
    if args.all_users:
        halves = {**halves, "all": _all_users(args.movielens)}
    rows = []
    for name, split in halves.items():
        train = tmp / f"train_{name}.csv"
        split.train.to_csv(train, index=False)
        for method, ranked in (("popularity", popularity(split)), ("item-kNN (last 5)", item_knn(split)),
                               ("item-kNN (last 20)", item_knn(split, 20))):
            rows.append({"half": name, "method": method, "users": len(split.truth),
                         **dict(zip(("hr", "ndcg"), hit_metrics(ranked, split.truth))), "recallable": 1.0})
        for producer in args.producers:
            if producer not in RECALL_PRODUCERS:
                continue
            inputs, extra, ref = [f"interactions={train}"], [], f"{producer}_{name}"
            if producer == "eges":  # the side information is its input; side_fields names the column (README)
                inputs.append(f"side_info={args.movielens / 'movies.csv'}")
                extra = ["--column", "side_info.item_id=movieId", "--config", "side_fields=[genres]"]
            if producer == "fm":  # fm publishes users and items in one space: recall from the items
                ref = f"{producer}_{name}_item"
            metrics, seconds = cli.produce(producer, f"{producer}_{name}", inputs, extra, published=ref)
            ids, vectors = cli.export(ref, tmp / f"{ref}.npz")
            ranked, share = rank_by_vectors(ids, vectors, split)
            hr, ndcg = hit_metrics(ranked, split.truth)
            rows.append({"half": name, "method": producer, "users": len(split.truth), "hr": hr, "ndcg": ndcg,
                         "recallable": share, "seconds": seconds, "items_with_vector": int(ids.shape[0]),
                         "policy": metrics.get("rare_items", "")})
            print(f"  {name:<9} {producer:<10} HR@10 {hr:.3f} NDCG@10 {ndcg:.3f} recallable {share:.3f} "
                  f"({seconds:.0f} s)", file=sys.stderr, flush=True)
    return rows


def _all_users(path: Path) -> Split:
    ratings = pd.read_csv(path / "ratings.csv")
    pos = ratings[ratings.rating >= 3.5].sort_values(["userId", "timestamp"], kind="stable")
    pos = pos.rename(columns={"userId": "user_id", "movieId": "item_id"})
    last = pos.groupby("user_id").tail(1)
    train = pos.drop(last.index)
    last = last[last.user_id.isin(set(train.user_id)) & last.item_id.isin(set(train.item_id))]
    seen = train.groupby("user_id").item_id.apply(list).to_dict()
    return Split("all", train.reset_index(drop=True), dict(zip(last.user_id, last.item_id)), seen)


def cora_rows(args, cli: Cli, tmp: Path) -> list[dict]:
    import scipy.sparse as sp

    nodes = pd.read_csv(args.cora / "nodes.csv").set_index("node_id")
    train, test = nodes[nodes.split == "train"], nodes[nodes.split == "test"]
    x = sp.load_npz(args.cora / "features.npz").tocsr()
    csv = tmp / "cora_features.csv"
    frame = pd.DataFrame(x.toarray(), columns=[f"w{j}" for j in range(x.shape[1])])
    frame.insert(0, "id", np.arange(x.shape[0]))
    frame.to_csv(csv, index=False, float_format="%g")
    runs = []
    for producer in args.producers:
        if producer in ("deepwalk", "node2vec"):
            runs.append((producer, producer, [f"edges={args.cora / 'edges.csv'}"]))
        elif producer == "graphsage":
            for label, feats in (("graphsage (.npz features)", args.cora / "features.npz"),
                                 ("graphsage (CSV features)", csv)):
                runs.append((label, producer, [f"edges={args.cora / 'edges.csv'}", f"features={feats}"]))
    rows = [{"method": "raw features alone", "accuracy": _probe(x, np.arange(x.shape[0]), train, test)}]
    for i, (label, producer, inputs) in enumerate(runs):
        set_name = f"cora_{producer}_{i}"
        _, seconds = cli.produce(producer, set_name, inputs, ["--entity", "node_id"])
        ids, vectors = cli.export(set_name, tmp / f"{set_name}.npz")
        rows.append({"method": label, "accuracy": _probe(vectors, ids, train, test), "seconds": seconds})
        print(f"  cora {label:<28} accuracy {rows[-1]['accuracy']:.3f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return rows


def _probe(vectors, ids: np.ndarray, train: pd.DataFrame, test: pd.DataFrame) -> float:
    """Logistic regression on the 140 labelled nodes; a test node without a vector counts as wrong."""
    from sklearn.linear_model import LogisticRegression

    row = {int(i): r for r, i in enumerate(np.asarray(ids).tolist())}
    tr = train[train.index.isin(row)]
    te = test[test.index.isin(row)]
    clf = LogisticRegression(max_iter=5000).fit(vectors[[row[i] for i in tr.index]], tr.label)
    return float((clf.predict(vectors[[row[i] for i in te.index]]) == te.label).sum() / len(test))


def table(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cli = Cli(tmp / "home")
        ml = movielens_rows(args, cli, tmp) if args.only in (None, "movielens") else []
        cora = cora_rows(args, cli, tmp) if args.only in (None, "cora") else []
    if ml:
        names = list(dict.fromkeys(r["half"] for r in ml))
        users = {r["half"]: r["users"] for r in ml}
        print("MovieLens latest-small, ratings >= 3.5, leave-last-out, user = mean of last 5 items, seen excluded; "
              "each half trained and scored on its own (" + ", ".join(f"{n} {users[n]} users" for n in names) + ")")
        print("| producer (defaults) | " + " | ".join(f"{n}: HR@10 / NDCG@10 / recallable" for n in names) + " |")
        print("|---|" + "---|" * len(names))
        for method in dict.fromkeys(r["method"] for r in ml):
            cells = []
            for n in names:
                r = next(r for r in ml if r["method"] == method and r["half"] == n)
                cells.append(f"{r['hr']:.3f} / {r['ndcg']:.3f} / {r['recallable']:.2f}")
            print(f"| {method} | " + " | ".join(cells) + " |")
        for r in ml:
            if r.get("policy") and r["half"] == names[0]:
                print(f"  {r['method']}: {r['policy']}")
    if cora:
        print("Cora, standard split (140 labelled, 1,000 test), logistic regression on the exported vectors")
        print("| producer (defaults) | test accuracy |")
        print("|---|---|")
        for r in cora:
            print(f"| {r['method']} | {r['accuracy']:.3f} |")


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what")
    s = sub.add_parser("sweep", help="a producer's fit over a grid of config values, both halves")
    s.add_argument("producer")
    s.add_argument("--set", action="append", default=[], help="KEY=V1,V2,... (a grid axis)")
    s.add_argument("--config", action="append", default=[], help="KEY=VALUE held fixed")
    s.add_argument("--movielens", type=Path, default=DEFAULT_ML)
    p.add_argument("--only", choices=["movielens", "cora"], default=None)
    p.add_argument("--producers", default=",".join(dict.fromkeys(RECALL_PRODUCERS + PROBE_PRODUCERS)),
                   type=lambda v: v.split(","))
    p.add_argument("--all-users", action="store_true",
                   help="also every user in one data set (the issue's own protocol, not split)")
    p.add_argument("--movielens", type=Path, default=DEFAULT_ML)
    p.add_argument("--cora", type=Path, default=DEFAULT_CORA)
    args = p.parse_args()
    if args.what == "sweep":
        sweep(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
