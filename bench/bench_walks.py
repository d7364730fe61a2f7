"""Walk speed of embstore's engine against pecanpy on the same graph.

    python bench/bench_walks.py --pecanpy-python /tmp/pecanpy-venv/bin/python

Generates a seeded degree-corrected planted-partition graph (power-law degrees,
communities), times ``embstore.walks.random_walks`` after a warm-up (JIT),
then runs pecanpy 2.0.9 on the same edge list in its own interpreter (it needs
numpy<2, so it cannot share our venv):

    python3 -m venv /tmp/pecanpy-venv
    /tmp/pecanpy-venv/bin/pip install pecanpy==2.0.9 "numpy<2"

Steps are moves (nodes in a walk minus one), counted for both engines from
their output. Both walk ``--steps`` moves per walk from every node
``--walks-per-node`` times, on all cores, undirected. For pecanpy, two figures:
"kernel" is its numba walk loop alone, warmed up (the fair engine-to-engine
figure, used for the ratio); "simulate_walks" is its public call end to end,
which also compiles fresh closures and maps every walk to a list of str ids.
pecanpy's table precomputation (alias tables, PreComp's per-edge tables) is
timed separately and not counted in either; ours builds alias tables during
the warm-up and the timed run is a complete ``random_walks`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from embstore.graph import Graph
from embstore.walks import WalkConfig, random_walks


def planted_partition(n: int, m: int, seed: int, gamma: float = 2.5, communities: int = 0,
                      mixing: float = 0.2, weighted: bool = True):  # fmt: skip
    """~m undirected edges on n nodes: power-law expected degrees (exponent gamma), communities.

    Each edge picks its source in proportion to the node's propensity, then a
    target the same way inside the source's community (prob 1 - mixing) or in
    the whole graph. Self loops and repeats are dropped. Weights 1..5 or all 1.
    """
    rng = np.random.default_rng(seed)
    k = communities or max(2, n // 200)
    theta = (np.arange(n) + 10.0) ** (-1.0 / (gamma - 1.0))
    theta = theta[rng.permutation(n)]
    comm = rng.integers(0, k, n)
    order = np.argsort(comm, kind="stable")  # nodes grouped by community
    cum = np.cumsum(theta[order])
    bounds = np.searchsorted(comm[order], np.arange(k + 1))
    lo = np.where(bounds[:-1] > 0, cum[np.maximum(bounds[:-1] - 1, 0)], 0.0)
    hi = cum[np.maximum(bounds[1:] - 1, 0)]
    key = np.zeros(0, np.int64)
    for _ in range(20):  # draw until self loops and repeats are made up for
        draw = int((m - key.size) * 1.3) + 1000
        src = order[np.minimum(np.searchsorted(cum, rng.random(draw) * cum[-1], side="right"), n - 1)]
        inside = rng.random(draw) >= mixing
        c = comm[src]
        target = np.where(inside, lo[c] + rng.random(draw) * (hi[c] - lo[c]),
                          rng.random(draw) * cum[-1])  # fmt: skip
        dst = order[np.minimum(np.searchsorted(cum, target, side="right"), n - 1)]
        a, b = np.minimum(src, dst), np.maximum(src, dst)
        keep = a != b
        key = np.unique(np.concatenate([key, a[keep].astype(np.int64) * n + b[keep]]))
        if key.size >= m:
            break
    key = key[rng.permutation(key.size)[:m]]
    a, b = key // n, key % n
    w = rng.integers(1, 6, a.size).astype(np.float64) if weighted else np.ones(a.size)
    return a, b, w


PECANPY_DRIVER = r"""
import json, sys, time
import numpy as np
from numba_progress import ProgressBar
from pecanpy import pecanpy as pp

path, mode, p, q, weighted, nw, steps, seed, e2e = sys.argv[1:]
p, q, nw, steps, seed = float(p), float(q), int(nw), int(steps), int(seed)
weighted, e2e = weighted == "1", e2e == "1"
g = getattr(pp, mode)(p=p, q=q, workers=__import__("os").cpu_count(), verbose=False, random_state=seed)
t = time.perf_counter(); g.read_edg(path, weighted=weighted, directed=False)
load = time.perf_counter() - t
t = time.perf_counter(); g._preprocess_transition_probs(); prep = time.perf_counter() - t
n = g.num_nodes
starts = np.concatenate([np.arange(n, dtype=np.uint32)] * nw)
np.random.seed(seed); np.random.shuffle(starts)
move_forward, has_nbrs = g.get_move_forward(), g.get_has_nbrs()
with ProgressBar(total=starts.size, disable=True) as bar:
    t = time.perf_counter()
    g._random_walks(64, steps, seed, starts[:64], has_nbrs, move_forward, bar)  # JIT warm-up
    jit = time.perf_counter() - t
    t = time.perf_counter()
    mat = g._random_walks(starts.size, steps, seed, starts, has_nbrs, move_forward, bar)
    kernel = time.perf_counter() - t
kernel_steps = int((mat[:, -1].astype(np.int64) - 1).sum())
del mat
out = dict(mode=mode, nodes=n, load_s=load, prep_s=prep, jit_s=jit, kernel_s=kernel,
           kernel_steps=kernel_steps)
if e2e:
    t = time.perf_counter(); walks = g.simulate_walks(nw, steps)
    out["e2e_s"] = time.perf_counter() - t
    out["e2e_steps"] = sum(len(w) - 1 for w in walks)
print("RESULT " + json.dumps(out))
"""


def run_pecanpy(python: str, path: str, mode: str, p: float, q: float, weighted: bool,
                walks_per_node: int, steps: int, seed: int, e2e: bool, timeout: float):  # fmt: skip
    cmd = [python, "-c", PECANPY_DRIVER, path, mode, str(p), str(q), "1" if weighted else "0",
           str(walks_per_node), str(steps), str(seed), "1" if e2e else "0"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "error": f"timed out after {timeout:.0f}s"}
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
    return {"mode": mode, "error": f"exit {res.returncode}: " + " | ".join(tail)}


def time_ours(graph: Graph, cfg: WalkConfig, repeats: int):
    random_walks(graph, cfg.model_copy(update={"walks_per_node": 1, "walk_length": 5}), progress=False)
    best = None
    for _ in range(repeats):
        t = time.perf_counter()
        walks = random_walks(graph, cfg, progress=False)
        dt = time.perf_counter() - t
        steps = walks.n_tokens - len(walks)
        del walks
        best = dt if best is None else min(best, dt)
    return steps, best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000, help="undirected edges")
    ap.add_argument("--gamma", type=float, default=2.5, help="power-law exponent of degrees")
    ap.add_argument("--walks-per-node", type=int, default=10)
    ap.add_argument("--steps", type=int, default=80, help="moves per walk (walk_length - 1 nodes)")
    ap.add_argument("--unweighted", action="store_true", help="all weights 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of ours; best is kept")
    ap.add_argument("--pecanpy-python", default=os.environ.get("PECANPY_PYTHON"),
                    help="python of a venv with pecanpy==2.0.9 (default: $PECANPY_PYTHON)")  # fmt: skip
    ap.add_argument("--pecanpy-modes", default="auto",
                    help="comma list for p,q != 1 (auto: PreComp,SparseOTF; fastest is reported)")  # fmt: skip
    ap.add_argument("--no-e2e", action="store_true", help="skip pecanpy's simulate_walks timing")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per pecanpy run")
    args = ap.parse_args(argv)
    weighted = not args.unweighted

    t = time.perf_counter()
    a, b, w = planted_partition(args.nodes, args.edges, args.seed, args.gamma, weighted=weighted)
    graph = Graph.from_edges(a, b, w, directed=False)
    deg = graph.degree()
    print(f"graph: {graph.n_nodes} nodes, {a.size} undirected edges ({graph.n_edges} arcs), "
          f"max degree {deg.max()}, mean {deg.mean():.1f}, {'weighted 1..5' if weighted else 'unweighted'}"
          f" (built in {time.perf_counter() - t:.1f}s)")  # fmt: skip
    import numba

    print(f"threads: {numba.config.NUMBA_NUM_THREADS}; walks: {args.walks_per_node} per node × "
          f"{args.steps} steps; load average {os.getloadavg()[0]:.1f}")  # fmt: skip

    settings = [(1.0, 1.0), (0.25, 4.0)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graph.edg")
        if args.pecanpy_python:
            np.savetxt(path, np.column_stack([a, b, w]), fmt=["%d", "%d", "%g"], delimiter="\t")
        else:
            print("note: no --pecanpy-python / $PECANPY_PYTHON given; pecanpy reference skipped")
        for p, q in settings:
            cfg = WalkConfig(walk_length=args.steps + 1, walks_per_node=args.walks_per_node,
                             p=p, q=q, weighted=weighted, seed=args.seed)  # fmt: skip
            steps, secs = time_ours(graph, cfg, args.repeats)
            ours = steps / secs
            print(f"ours p={p:g} q={q:g}: {steps} steps in {secs:.2f}s = {ours / 1e6:.2f}M steps/s",
                  flush=True)  # fmt: skip
            best = None
            if args.pecanpy_python:
                if p == q == 1:
                    modes = ["PreCompFirstOrder" if weighted else "FirstOrderUnweighted"]
                elif args.pecanpy_modes == "auto":
                    modes = ["PreComp", "SparseOTF"]
                else:
                    modes = args.pecanpy_modes.split(",")
                for mode in modes:
                    r = run_pecanpy(args.pecanpy_python, path, mode, p, q, weighted,
                                    args.walks_per_node, args.steps, args.seed, not args.no_e2e,
                                    args.timeout)  # fmt: skip
                    if "error" in r:
                        print(f"pecanpy {mode} p={p:g} q={q:g}: {r['error']}", flush=True)
                        continue
                    r["kernel_rate"] = r["kernel_steps"] / r["kernel_s"]
                    e2e = ""
                    if "e2e_s" in r:
                        r["e2e_rate"] = r["e2e_steps"] / r["e2e_s"]
                        e2e = f"; simulate_walks {r['e2e_s']:.2f}s = {r['e2e_rate'] / 1e6:.2f}M/s"
                    print(f"pecanpy {mode} p={p:g} q={q:g}: prep {r['prep_s']:.2f}s; kernel "
                          f"{r['kernel_steps']} steps in {r['kernel_s']:.2f}s = "
                          f"{r['kernel_rate'] / 1e6:.2f}M steps/s{e2e}", flush=True)  # fmt: skip
                    if best is None or r["kernel_rate"] > best["kernel_rate"]:
                        best = r
            rows.append((p, q, ours, best))

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other work on this machine skews both engines)")
    print("| setting | ours steps/s | pecanpy mode | pecanpy kernel steps/s | ours / kernel "
          "| pecanpy simulate_walks steps/s | ours / simulate_walks |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for p, q, ours, best in rows:
        if best is None:
            print(f"| p={p:g} q={q:g} | {ours / 1e6:.2f}M | – | – | – | – | – |")
            continue
        e2e = e2e_ratio = "–"
        if "e2e_rate" in best:
            e2e = f"{best['e2e_rate'] / 1e6:.2f}M"
            e2e_ratio = f"{ours / best['e2e_rate']:.2f}×"
        print(f"| p={p:g} q={q:g} | {ours / 1e6:.2f}M | {best['mode']} | "
              f"{best['kernel_rate'] / 1e6:.2f}M | {ours / best['kernel_rate']:.2f}× | {e2e} | "
              f"{e2e_ratio} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
