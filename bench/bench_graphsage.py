"""GraphSAGE benchmarks: linear probe on Cora, and epoch time / memory at scale.

    python bench/bench_graphsage.py cora  [--cora ../shared/data/cora] [--epochs 5] [--config aggregator=pool ...]
    python bench/bench_graphsage.py planted [--p-in 0.7]   # a generated Citeseer-sized graph, a second check
    python bench/bench_graphsage.py scale [--nodes 100000 --edges 1000000 --communities 20 --epochs 1]

cora: unsupervised GraphSAGE on the 2,708-node citation graph with its sparse
1,433-column bag-of-words features; a logistic regression on the frozen vectors,
trained on the standard Planetoid split (140 train nodes), scored on the 1,000
test nodes. Target ≥ 0.75 (DeepWalk ~0.67-0.71 here, best unsupervised ~0.82).
Then an inductive check: 10% of the test nodes are removed from training and
embedded afterwards with ``infer`` from their features and edges; the probe is
scored on them.

scale: a generated power-law graph (n nodes, m undirected edges) with planted
communities and sparse bag-of-words features that lean towards a community's
words; seconds per epoch, the peak resident memory of the process, and a
community probe on the vectors against the same probe on the raw features.
``--new-nodes`` nodes (and their edges) are held out of training and embedded
afterwards by ``infer``; the probe is scored on them too.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from graphs import planted_communities, topic_features  # bench/graphs.py: scripts run from bench/

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORA = ROOT.parent / "shared" / "data" / "cora"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(extra: list[str], base: dict):
    from embstore.config import parse_config, parse_key_values
    from embstore_plugins.graphsage import GraphSage

    return parse_config(GraphSage.Config, {**base, **parse_key_values(extra, "--config")}, "graphsage")


def _probe(vectors: np.ndarray, ids: np.ndarray, nodes: pd.DataFrame, test_ids) -> float:
    from sklearn.linear_model import LogisticRegression

    row = {i: r for r, i in enumerate(ids.tolist())}
    train = nodes[nodes.split == "train"]
    clf = LogisticRegression(max_iter=5000, C=1.0).fit(vectors[[row[i] for i in train.index]], train.label)
    test = nodes.loc[list(test_ids)]
    return float((clf.predict(vectors[[row[i] for i in test.index]]) == test.label).mean())


def cora(args) -> None:
    from embstore.inputs import Inputs, InputSpec
    from embstore_plugins.graphsage import GraphSage

    nodes = pd.read_csv(args.cora / "nodes.csv").set_index("node_id")
    cfg = _config(args.config, {**({"epochs": args.epochs} if args.epochs else {}), "seed": args.seed})
    print(f"Cora: {len(nodes)} nodes, train {int((nodes.split == 'train').sum())}, "
          f"test {int((nodes.split == 'test').sum())}; config: {cfg.model_dump()}")
    test = nodes.index[nodes.split == "test"]
    x = sp.load_npz(args.cora / "features.npz").tocsr()
    # the same features from three files: .npz (sparse), CSV and parquet (dense columns)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"npz": args.cora / "features.npz", "csv": Path(tmp) / "features.csv",
                 "parquet": Path(tmp) / "features.parquet"}
        _features_csv(files["csv"], np.arange(x.shape[0]), x)
        _features_frame(np.arange(x.shape[0]), x).to_parquet(files["parquet"], index=False)
        first = None
        for kind in args.formats.split(","):
            inputs = Inputs([InputSpec("edges", args.cora / "edges.csv"), InputSpec("features", files[kind])])
            t0 = time.perf_counter()
            emb = GraphSage().fit(inputs, cfg, progress=args.progress)
            seconds = time.perf_counter() - t0
            acc = _probe(emb.vectors, emb.ids, nodes, test)
            m = emb.metadata
            same = ""
            if first is None:
                first = emb
            else:
                same = f"; largest difference from {args.formats.split(',')[0]}'s vectors " \
                       f"{float(np.abs(emb.vectors - first.vectors).max()):.1e}"
            print(f"transductive, features from .{kind}: test accuracy {acc:.3f}  (feature_norm {m['feature_norm']}, "
                  f"fit {seconds:.1f} s, epochs {m['epochs_run']}, s/epoch {np.mean(m['epoch_seconds']):.1f}, "
                  f"last loss {m['epoch_losses'][-1]:.4f}, peak RSS {_peak_mb():.0f} MB{same})", flush=True)
    if args.no_inductive:
        return

    # inductive: hide 10% of the test nodes (and their edges) from training, infer them afterwards
    rng = np.random.default_rng(args.seed)
    hidden = np.sort(rng.choice(np.asarray(test), size=len(test) // 10, replace=False))
    edges = pd.read_csv(args.cora / "edges.csv")
    x = sp.load_npz(args.cora / "features.npz").tocsr()
    touches = edges.src.isin(hidden) | edges.dst.isin(hidden)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        edges[~touches].to_csv(tmp / "train_edges.csv", index=False)
        edges[touches].to_csv(tmp / "new_edges.csv", index=False)
        keep = np.setdiff1d(np.arange(x.shape[0]), hidden)
        # the trained graph keeps every other node (isolated ones too) through a CSV of its features
        _features_csv(tmp / "train_features.csv", keep, x[keep])
        _features_csv(tmp / "new_features.csv", hidden, x[hidden])
        t0 = time.perf_counter()
        trained = GraphSage().fit(Inputs([InputSpec("edges", tmp / "train_edges.csv"),
                                          InputSpec("features", tmp / "train_features.csv")]), cfg,
                                  progress=args.progress)
        t1 = time.perf_counter()
        new = GraphSage().infer(trained.state, Inputs([InputSpec("edges", tmp / "new_edges.csv"),
                                                       InputSpec("features", tmp / "new_features.csv")]), cfg)
        t2 = time.perf_counter()
    ids = np.concatenate([trained.ids, new.ids])
    vectors = np.concatenate([trained.vectors, new.vectors])
    acc_new = _probe(vectors, ids, nodes, hidden)
    acc_seen = _probe(vectors, ids, nodes, np.setdiff1d(np.asarray(test), hidden))
    print(f"inductive: {len(hidden)} test nodes unseen in training, embedded by infer: accuracy {acc_new:.3f} "
          f"(seen test nodes {acc_seen:.3f}; fit {t1 - t0:.1f} s, infer {t2 - t1:.2f} s)")


def _features_frame(ids: np.ndarray, x: sp.csr_matrix) -> pd.DataFrame:
    frame = pd.DataFrame(x.toarray(), columns=[f"w{j}" for j in range(x.shape[1])])
    frame.insert(0, "id", ids)
    return frame


def _features_csv(path: Path, ids: np.ndarray, x: sp.csr_matrix) -> None:
    _features_frame(ids, x).to_csv(path, index=False, float_format="%g")


def planted(args) -> None:
    """A generated citation-like graph (a second graph, so that defaults are not chosen on Cora alone):
    Citeseer's size and sparsity (3,300 nodes, ~4,600 edges, 6 classes, 3,700 words, ~32 words a node),
    power-law degrees with planted classes, words that lean towards a class's topic; Planetoid-style
    split (20 labelled nodes a class, 1,000 test nodes); the probe on raw features alone beside it."""
    from sklearn.linear_model import LogisticRegression

    from embstore.inputs import Inputs, InputSpec
    from embstore_plugins.graphsage import GraphSage

    n, classes = 3300, 6
    src, dst, labels = planted_communities(n, 4600, classes, p_in=args.p_in, seed=args.seed)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    x = topic_features(labels, words=3700, per_node=32, topic_words=60, on_topic=0.1, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    train = np.concatenate([rng.choice(np.flatnonzero(labels == c), 20, replace=False) for c in range(classes)])
    rest = np.setdiff1d(np.arange(n), train)
    test = rng.choice(rest, 1000, replace=False)
    cfg = _config(args.config, {**({"epochs": args.epochs} if args.epochs else {}), "seed": args.seed})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pd.DataFrame({"src": src, "dst": dst}).to_csv(tmp / "edges.csv", index=False)
        sp.save_npz(tmp / "features.npz", x)
        t0 = time.perf_counter()
        emb = GraphSage().fit(Inputs([InputSpec("edges", tmp / "edges.csv"), InputSpec("features", tmp / "features.npz")]),
                              cfg, progress=args.progress)
        seconds = time.perf_counter() - t0
    row = np.empty(n, np.int64)
    row[emb.ids.astype(np.int64)] = np.arange(n)
    for name, feats in [("graphsage vectors", emb.vectors[row]), ("raw features alone", x)]:
        clf = LogisticRegression(max_iter=5000).fit(feats[train], labels[train])
        print(f"planted citation-like graph ({n} nodes, {src.size} edges, {classes} classes, p_in {args.p_in}), "
              f"{name}: test accuracy {(clf.predict(feats[test]) == labels[test]).mean():.3f}"
              + (f" (fit {seconds:.1f} s)" if name.startswith("graphsage") else ""), flush=True)


def scale(args) -> None:
    from sklearn.linear_model import LogisticRegression

    from embstore.inputs import Inputs, InputSpec
    from embstore_plugins.graphsage import GraphSage

    # the graph over nodes + new nodes; the new ones (the last ids) and their edges are held out of
    # training and embedded afterwards by infer, from their features and edges
    total = args.nodes + args.new_nodes
    src, dst, labels = planted_communities(total, args.edges * total // args.nodes, args.communities, args.p_in,
                                           args.seed)
    x_all = topic_features(labels, words=args.features, seed=args.seed)
    x = x_all[: args.nodes]
    new = (src >= args.nodes) | (dst >= args.nodes)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pd.DataFrame({"src": src[~new], "dst": dst[~new]}).to_csv(tmp / "edges.csv", index=False)
        pd.DataFrame({"src": src[new], "dst": dst[new]}).to_csv(tmp / "new_edges.csv", index=False)
        sp.save_npz(tmp / "features.npz", x)
        _features_csv(tmp / "new_features.csv", np.arange(args.nodes, total), x_all[args.nodes :])
        cfg = _config(args.config, {**({"epochs": args.epochs} if args.epochs else {}), "seed": args.seed,
                                    "walks_per_node": 1})
        before = _peak_mb()
        t0 = time.perf_counter()
        emb = GraphSage().fit(Inputs([InputSpec("edges", tmp / "edges.csv"), InputSpec("features", tmp / "features.npz")]),
                              cfg, progress=args.progress)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        inferred = GraphSage().infer(emb.state, Inputs([InputSpec("edges", tmp / "new_edges.csv"),
                                                        InputSpec("features", tmp / "new_features.csv")]), cfg)
        infer_seconds = time.perf_counter() - t1
    m = emb.metadata
    print(f"generated graph: {m['nodes']} nodes, {m['edges']} arcs, {args.communities} "
          f"planted communities (p_in {args.p_in}), {m['features']} sparse features; pairs/epoch {m['pairs']}; "
          f"config {cfg.model_dump()}")
    print(f"fit {seconds:.1f} s; s/epoch {m['epoch_seconds']}; losses {m['epoch_losses']}; peak RSS {_peak_mb():.0f} MB "
          f"(before fit {before:.0f} MB)")
    # probe: which community? 2% of nodes labelled, 10,000 others scored; the same split on raw features
    rng = np.random.default_rng(args.seed)
    row = np.empty(args.nodes, np.int64)
    row[emb.ids.astype(np.int64)] = np.arange(emb.ids.shape[0])
    order = rng.permutation(args.nodes)
    train, test = order[: args.nodes // 50], order[args.nodes // 50 :][:10_000]
    for name, feats in [("graphsage vectors", emb.vectors[row]), ("raw word counts alone", x)]:
        clf = LogisticRegression(max_iter=2000).fit(feats[train], labels[train])
        print(f"community probe, {name}: test accuracy {(clf.predict(feats[test]) == labels[test]).mean():.3f} "
              f"(train {train.size}, test {test.size}, chance {1 / args.communities:.3f})")
        if name == "graphsage vectors":
            new_acc = (clf.predict(inferred.vectors) == labels[inferred.ids.astype(np.int64)]).mean()
            print(f"inductive: {inferred.metadata['new_nodes']} nodes held out of training, embedded by infer in "
                  f"{infer_seconds:.1f} s ({int(new.sum())} edges): probe accuracy on them {new_acc:.3f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["cora", "planted", "scale"])
    p.add_argument("--cora", type=Path, default=DEFAULT_CORA)
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the config default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nodes", type=int, default=100_000)
    p.add_argument("--edges", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=300, help="scale: vocabulary of the generated bag-of-words")
    p.add_argument("--communities", type=int, default=20, help="scale: planted communities")
    p.add_argument("--new-nodes", type=int, default=1000, help="scale: nodes held out of training, then inferred")
    p.add_argument("--p-in", type=float, default=None,
                   help="planted, scale: share of edges drawn inside a community (default 0.7: a share of edges "
                   "within a class like Citeseer's 0.74; scale: 0.5)")
    p.add_argument("--config", action="append", default=[], help="KEY=VALUE over the benchmark's config")
    p.add_argument("--formats", default="npz,csv,parquet", help="cora: feature files to train from (same features)")
    p.add_argument("--no-inductive", action="store_true", help="cora: skip the inductive check")
    p.add_argument("--progress", action="store_true", help="draw progress bars")
    args = p.parse_args(argv)
    if args.p_in is None:
        args.p_in = 0.5 if args.what == "scale" else 0.7
    {"cora": cora, "planted": planted, "scale": scale}[args.what](args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
