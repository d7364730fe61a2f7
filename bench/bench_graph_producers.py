"""DeepWalk / node2vec benchmarks: quality on Cora, and end-to-end scale.

    python bench/bench_graph_producers.py cora  [--cora ../shared/data/cora]
    python bench/bench_graph_producers.py scale [--nodes 1000000 --edges 10000000 --walks-per-node 2 --walk-length 40]

cora: logistic regression on the embeddings with the standard Planetoid split
(140 train / 1,000 test); published DeepWalk accuracy on this split is ~0.67.
scale: `embstore run node2vec` as a subprocess on a generated power-law graph;
wall time and peak resident memory of that process (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from graphs import write_power_law_edges  # bench/graphs.py: scripts run from bench/

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORA = ROOT.parent / "shared" / "data" / "cora"


def cora(args) -> None:
    from sklearn.linear_model import LogisticRegression

    from embstore.config import parse_config
    from embstore.inputs import InputSpec, Inputs
    from embstore.plugins import get_registry

    nodes = pd.read_csv(args.cora / "nodes.csv").set_index("node_id")
    base = {"walk_length": 80, "walks_per_node": 10, "window": 10, "dim": 128, "epochs": args.epochs, "seed": 1,
            "workers": 2}
    settings = [("deepwalk", {}), ("node2vec", {"p": 1.0, "q": 0.5}), ("node2vec", {"p": 4.0, "q": 1.0}),
                ("node2vec", {"p": 0.25, "q": 4.0})]
    print(f"Cora, standard split: train {int((nodes.split == 'train').sum())}, test {int((nodes.split == 'test').sum())}; "
          f"walks {base['walks_per_node']}x{base['walk_length']}, window {base['window']}, dim {base['dim']}, "
          f"{base['epochs']} epochs")
    print(f"{'producer':<26} {'test acc':>8} {'train s':>8}")
    for name, extra in settings:
        cls = get_registry().producer(name)
        cfg = parse_config(cls.Config, {**base, **extra}, name)
        t0 = time.perf_counter()
        emb = cls().fit(Inputs([InputSpec("edges", args.cora / "edges.csv")]), cfg, progress=False)
        seconds = time.perf_counter() - t0
        row = {i: r for r, i in enumerate(emb.ids.tolist())}
        x = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
        train = nodes[(nodes.split == "train") & nodes.index.isin(row)]
        test = nodes[(nodes.split == "test")]
        missing = int((~test.index.isin(row)).sum())
        test = test[test.index.isin(row)]
        clf = LogisticRegression(max_iter=5000, C=1.0).fit(x[[row[i] for i in train.index]], train.label)
        correct = (clf.predict(x[[row[i] for i in test.index]]) == test.label).sum()
        acc = correct / (len(test) + missing)  # a node without a vector counts as wrong
        label = name + (f" p={extra['p']} q={extra['q']}" if extra else "")
        print(f"{label:<26} {acc:8.3f} {seconds:8.1f}")
    print("reference: DeepWalk 0.67 (Planetoid / GCN papers), GCN 0.815")


def cooccurrence_corpus(tags: int = 40, words: int = 4800, tokens: int = 200_000, seed: int = 0):
    """A generated weighted word co-occurrence graph with multi-label nodes, of the character of the
    node2vec paper's Wikipedia POS network (4,777 words, 184,812 weighted edges, 40 labels): a hidden
    Markov corpus where each tag (the label) has a few likely successor tags and emits words with
    Zipf-like frequencies; a word may be emitted by up to 3 tags, and its labels are the tags it was
    emitted by. Edges join words at most 2 positions apart, weighted by how often they are (undirected).
    Returns (src, dst, weight, labels as a node × tag 0/1 matrix, node ids)."""
    rng = np.random.default_rng(seed)
    trans = np.full((tags, tags), 0.02 / tags)
    for t in range(tags):
        trans[t, rng.choice(tags, 4, replace=False)] += rng.dirichlet(np.ones(4)) * 0.98
    trans /= trans.sum(axis=1, keepdims=True)
    n_tags = rng.choice([1, 2, 3], size=words, p=[0.75, 0.2, 0.05])
    owner = [rng.choice(tags, k, replace=False) for k in n_tags]
    rank_weight = 1.0 / np.arange(1, words + 1) ** 1.05  # Zipf: a few words are very frequent
    rng.shuffle(rank_weight)
    emit_words, emit_cdf = [], []
    for t in range(tags):
        ws = np.array([w for w in range(words) if t in owner[w]])
        pr = rank_weight[ws] / rank_weight[ws].sum()
        emit_words.append(ws)
        emit_cdf.append(np.cumsum(pr))
    tag_seq = np.empty(tokens, np.int64)
    tag_cdf = np.cumsum(trans, axis=1)
    u = rng.random(tokens)
    t = 0
    for i in range(tokens):
        t = min(int(np.searchsorted(tag_cdf[t], u[i])), tags - 1)
        tag_seq[i] = t
    word_seq = np.empty(tokens, np.int64)
    for t in range(tags):
        at = np.flatnonzero(tag_seq == t)
        pick = np.minimum(np.searchsorted(emit_cdf[t], rng.random(at.size)), emit_words[t].size - 1)
        word_seq[at] = emit_words[t][pick]
    seen = np.unique(word_seq)
    labels = np.zeros((words, tags), np.int8)
    labels[word_seq, tag_seq] = 1
    pairs = [np.stack([word_seq[:-d], word_seq[d:]], 1) for d in (1, 2)]
    pairs = np.concatenate(pairs)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    return uniq[:, 0], uniq[:, 1], counts.astype(np.float64), labels[seen], seen


def macro_micro_f1(x: np.ndarray, labels: np.ndarray, train_share: float = 0.5, splits: int = 5,
                   seed: int = 0) -> tuple[float, float]:
    """The node2vec paper's protocol: one-vs-rest L2 logistic regression on ``train_share`` of the
    nodes; each test node is given its top-k labels, k its true number of labels; Macro- and Micro-F1,
    averaged over ``splits`` random splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    rng = np.random.default_rng(seed)
    keep = labels.sum(axis=0) > 0
    labels = labels[:, keep]
    macro, micro = [], []
    for _ in range(splits):
        order = rng.permutation(x.shape[0])
        cut = int(train_share * x.shape[0])
        tr, te = order[:cut], order[cut:]
        ok = labels[tr].sum(axis=0) > 0  # a label no training node has cannot be learned
        clf = OneVsRestClassifier(LogisticRegression(max_iter=1000), n_jobs=1).fit(x[tr], labels[tr][:, ok])
        scores = clf.predict_proba(x[te])
        pred = np.zeros_like(labels[te])
        k = labels[te].sum(axis=1)
        top = np.argsort(-scores, axis=1)
        cols = np.flatnonzero(ok)
        for i in range(te.size):
            pred[i, cols[top[i, : k[i]]]] = 1
        macro.append(f1_score(labels[te], pred, average="macro", zero_division=0))
        micro.append(f1_score(labels[te], pred, average="micro", zero_division=0))
    return float(np.mean(macro)), float(np.mean(micro))


def multilabel(args) -> None:
    """node2vec against its paper's protocol on generated graphs of the paper's kinds (see cooccurrence_corpus)."""
    from embstore.config import parse_config
    from embstore.inputs import InputSpec, Inputs
    from embstore.catalogue import catalogue

    src, dst, weight, labels, ids = cooccurrence_corpus(seed=args.seed)
    print(f"generated co-occurrence graph: {ids.size} words, {src.size} weighted edges (weights 1..{int(weight.max())}, "
          f"median {np.median(weight):.0f}), {labels.shape[1]} labels, {labels.sum(1).mean():.2f} a node; "
          f"Macro/Micro-F1 of one-vs-rest logistic regression on 50% of the nodes, {args.splits} splits")
    settings = [("defaults", {})] + [(s, dict(kv.split("=", 1) for kv in s.split(","))) for s in args.setting]
    cls = catalogue().producer("node2vec")
    with tempfile.TemporaryDirectory() as tmp:
        for unweighted in (False, True):
            edges = Path(tmp) / "edges.csv"
            frame = pd.DataFrame({"src": src, "dst": dst})
            if not unweighted:
                frame["weight"] = weight
            frame.to_csv(edges, index=False)
            kind = "unweighted (the same edges, weight 1)" if unweighted else "weighted"
            for name, extra in settings:
                cfg = parse_config(cls.Config, {"dim": 128, "seed": args.seed, **extra}, "node2vec")
                t0 = time.perf_counter()
                emb = cls().fit(Inputs([InputSpec("edges", edges)]), cfg, progress=False)
                seconds = time.perf_counter() - t0
                row = {int(i): r for r, i in enumerate(emb.ids.tolist())}
                have = np.array([int(i) in row for i in ids])
                x = np.zeros((ids.size, emb.dim), np.float32)  # a node without a vector: a zero vector
                x[have] = emb.vectors[[row[int(i)] for i in ids[have]]]
                macro, micro = macro_micro_f1(x, labels, splits=args.splits, seed=args.seed)
                print(f"{kind:<40} {name:<44} Macro-F1 {macro:.4f}  Micro-F1 {micro:.4f}  "
                      f"({seconds:.0f} s, {int((~have).sum())} nodes without a vector)", flush=True)


def scale(args) -> None:
    exe = Path(sys.executable).with_name("embstore")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        edges = Path(tmp) / "edges.csv"
        t0 = time.perf_counter()
        write_power_law_edges(edges, args.nodes, args.edges)
        print(f"generated {args.nodes:,} nodes / {args.edges:,} edges in {time.perf_counter() - t0:.0f} s ({edges.stat().st_size / 1e6:.0f} MB)")
        home = Path(tmp) / "home"
        subprocess.run([str(exe), "--home", str(home), "init"], check=True, capture_output=True)
        cmd = [str(exe), "--home", str(home), "run", "node2vec", "--set", "big", "--input", f"edges={edges}",
               "--entity", "node_id", "--config", f"walks_per_node={args.walks_per_node}",
               "--config", f"walk_length={args.walk_length}", "--config", "p=0.25", "--config", "q=4",
               "--config", f"dim={args.dim}", "--config", "epochs=1", "--config", "workers=2",
               "--config", "window=5", "--retriever-config", f"index={args.index}"]
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            sys.exit(f"run failed: {proc.stderr.strip().splitlines()[-1]}")
        versions = subprocess.run([str(exe), "--home", str(home), "versions", "big", "--json"], capture_output=True, text=True)
        import json

        info = json.loads(versions.stdout)[-1]
        m = info["metrics"]
        print(f"embstore run node2vec p=0.25 q=4: {proc.stdout.strip()} published {info['count']:,} vectors of dim {info['dim']}")
        print(f"  walks {m['walks']:,} ({m['walk_steps']:,} tokens) in {m['walk_seconds']:.0f} s; graph {m['graph_seconds']:.0f} s; "
              f"skip-gram {m.get('train_seconds', float('nan')):.0f} s")
        print(f"  wall time {wall:.0f} s end to end (load, graph, walks, training, Feast offline+online, {args.index} index)")
        print(f"  peak memory {max(peak_kb, before) / 1e6:.2f} GB (max RSS of the run process)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cora")
    c.add_argument("--cora", type=Path, default=DEFAULT_CORA)
    c.add_argument("--epochs", type=int, default=5)
    m = sub.add_parser("multilabel", help="node2vec under its paper's protocol on a generated weighted graph")
    m.add_argument("--setting", action="append", default=[],
                   help="KEY=VALUE[,KEY=VALUE...]: a config compared with the defaults (all at dim 128)")
    m.add_argument("--splits", type=int, default=3)
    m.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("scale")
    s.add_argument("--nodes", type=int, default=1_000_000)
    s.add_argument("--edges", type=int, default=10_000_000)
    s.add_argument("--walks-per-node", type=int, default=2)
    s.add_argument("--walk-length", type=int, default=40)
    s.add_argument("--dim", type=int, default=64)
    s.add_argument("--tmp", default=None)
    s.add_argument("--index", default="flat", help="retriever index of the published version (flat: the index is not what is measured)")
    args = p.parse_args()
    {"cora": cora, "multilabel": multilabel, "scale": scale}[args.what](args)


if __name__ == "__main__":
    main()
