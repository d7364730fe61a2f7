"""Generated graphs shared by the benchmarks (imported as `graphs`: scripts run from bench/)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np


def power_law_edge_chunks(nodes: int, edges: int, seed: int = 0,
                          chunk: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Edges whose source follows a Zipf-like degree distribution and whose other end is
    uniform (so every node stays reachable), ``chunk`` edges at a time (all at once if None)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, nodes + 1) ** 0.8
    cdf = np.cumsum(weights / weights.sum())
    perm = rng.permutation(nodes)
    step = chunk or edges
    for start in range(0, edges, step):
        m = min(step, edges - start)
        yield perm[np.searchsorted(cdf, rng.random(m))], rng.integers(0, nodes, m)


def power_law_edges(nodes: int, edges: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All edges of ``power_law_edge_chunks`` as two arrays (src, dst)."""
    return next(power_law_edge_chunks(nodes, edges, seed))


def write_power_law_edges(path: Path, nodes: int, edges: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    """The same graph as a `src,dst` CSV, written a chunk at a time (10M edges stay small in memory)."""
    with open(path, "w") as fh:
        fh.write("src,dst\n")
        for src, dst in power_law_edge_chunks(nodes, edges, seed, chunk):
            np.savetxt(fh, np.column_stack([src, dst]), fmt="%d", delimiter=",")
