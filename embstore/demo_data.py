"""Interactions with planted structure, so the demo (and tests) can check that
an embedding found it: items belong to clusters, and each user consumes items
of one or two clusters. Item ids read ``c<cluster>_i<item>``.

    python -m embstore.demo_data OUT.csv [--users 600 --clusters 8 --items-per-cluster 30 --seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def planted_interactions(users: int = 600, clusters: int = 8, items_per_cluster: int = 30,
                         history: int = 25, noise: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """user_id, item_id, timestamp, rating; a share ``noise`` of events is a random item."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = 1_700_000_000
    for u in range(users):
        favourite = rng.integers(clusters)
        n = int(rng.integers(history // 2, history * 2))
        for j in range(n):
            c = favourite if rng.random() > noise else rng.integers(clusters)
            item = rng.integers(items_per_cluster)
            rows.append((f"u{u}", f"c{c}_i{item}", t0 + u * 10_000 + j * 60, float(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--items-per-cluster", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frame = planted_interactions(args.users, args.clusters, args.items_per_cluster, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} interactions of {args.users} users on "
          f"{args.clusters * args.items_per_cluster} items to {args.out}")


if __name__ == "__main__":
    main()
