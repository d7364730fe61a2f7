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
    s = sub.add_parser("scale")
    s.add_argument("--nodes", type=int, default=1_000_000)
    s.add_argument("--edges", type=int, default=10_000_000)
    s.add_argument("--walks-per-node", type=int, default=2)
    s.add_argument("--walk-length", type=int, default=40)
    s.add_argument("--dim", type=int, default=64)
    s.add_argument("--tmp", default=None)
    s.add_argument("--index", default="flat", help="retriever index of the published version (flat: the index is not what is measured)")
    args = p.parse_args()
    {"cora": cora, "scale": scale}[args.what](args)


if __name__ == "__main__":
    main()
