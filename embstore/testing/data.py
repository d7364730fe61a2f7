"""The kit's generated data: small input tables and vectors with planted clusters.

60 users with histories mostly inside one of 4 clusters of 10 items
(``c<cluster>_i<item>``, users ``u<n>``), an item graph with most edges inside a
cluster, side information (category, brand, multi-valued tags), 8 numeric
features per item, and a table of user-item events with categorical, numeric and
0/1 ``label`` columns. Everything is seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from embstore.inputs import INPUT_KINDS

_USERS, _CLUSTERS, _PER_CLUSTER, _HISTORY = 60, 4, 10, 12
_FEATURES = 8
_T0 = 1_700_000_000


def _item_ids(id_type: str) -> list:
    if id_type == "int":
        return [1000 + c * 100 + i for c in range(_CLUSTERS) for i in range(_PER_CLUSTER)]
    return [f"c{c}_i{i}" for c in range(_CLUSTERS) for i in range(_PER_CLUSTER)]


def _user_id(u: int, id_type: str) -> Any:
    return u + 1 if id_type == "int" else f"u{u}"


def _interactions(rng: np.random.Generator, items: list, favourite: np.ndarray, id_type: str) -> pd.DataFrame:
    """Each user mostly consumes items of one favourite cluster."""
    rows = []
    for u in range(_USERS):
        for j in range(int(rng.integers(_HISTORY // 2, _HISTORY * 2))):
            c = favourite[u] if rng.random() > 0.1 else int(rng.integers(_CLUSTERS))
            item = items[c * _PER_CLUSTER + int(rng.integers(_PER_CLUSTER))]
            rows.append((_user_id(u, id_type), item, _T0 + u * 10_000 + j * 60, float(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])


def _edges(rng: np.random.Generator, items: list, cluster: np.ndarray) -> pd.DataFrame:
    """Three distinct out-neighbours per item, nine in ten inside its cluster."""
    src, dst = [], []
    n_items = len(items)
    for a in range(n_items):
        same = [b for b in range(n_items) if cluster[b] == cluster[a] and b != a]
        other = [b for b in range(n_items) if cluster[b] != cluster[a]]
        chosen: set[int] = set()
        while len(chosen) < 3:
            pool = same if rng.random() > 0.1 else other
            chosen.add(int(pool[rng.integers(len(pool))]))
        for b in sorted(chosen):
            src.append(items[a])
            dst.append(items[b])
    return pd.DataFrame({"src": src, "dst": dst, "weight": rng.integers(1, 4, size=len(src)).astype(float)})


def _side_info(rng: np.random.Generator, items: list, cluster: np.ndarray) -> pd.DataFrame:
    n_items = len(items)
    return pd.DataFrame({
        "item_id": items,
        "category": [f"cat{c}" for c in cluster],
        "brand": [f"brand{int(b)}" for b in rng.integers(6, size=n_items)],
        "tags": [f"t{c}|t{int(x)}" for c, x in zip(cluster, rng.integers(10, size=n_items))],
    })


def _features(rng: np.random.Generator, items: list, cluster: np.ndarray) -> pd.DataFrame:
    centres = rng.normal(scale=3.0, size=(_CLUSTERS, _FEATURES))
    values = centres[cluster] + rng.normal(size=(len(items), _FEATURES))
    return pd.DataFrame({"id": items, **{f"f{j}": values[:, j].round(4) for j in range(_FEATURES)}})


def _table(rng: np.random.Generator, interactions: pd.DataFrame, items: list, cluster: np.ndarray,
           favourite: np.ndarray, id_type: str, seed: int) -> pd.DataFrame:
    """An event log for tabular producers; label 1 mostly when the item is in the user's cluster."""
    sample = interactions.sample(n=min(400, len(interactions)), random_state=seed).reset_index(drop=True)
    item_cluster = dict(zip(items, cluster))
    user_fav = {_user_id(u, id_type): favourite[u] for u in range(_USERS)}
    shown = [items[int(i)] for i in rng.integers(len(items), size=len(sample))]
    hit = np.array([item_cluster[i] == user_fav[u] for u, i in zip(sample["user_id"], shown)])
    label = np.where(rng.random(len(sample)) < 0.9, hit, ~hit).astype(int)
    return pd.DataFrame({
        "user_id": sample["user_id"],
        "item_id": shown,
        "device": rng.choice(["web", "ios", "android"], size=len(sample)),
        "hour": rng.integers(24, size=len(sample)),
        "price": (rng.gamma(2.0, 10.0, size=len(sample))).round(2),
        "label": label,
    })


def make_frames(kinds: Iterable[str] = INPUT_KINDS, *, seed: int = 0, id_type: str = "str") -> dict[str, pd.DataFrame]:
    """Small input tables of ``kinds`` with planted clusters, in canonical columns.

    ``id_type`` "str" gives ids ``u<n>`` and ``c<cluster>_i<item>``; "int" gives
    users 1..60 and items ``1000 + 100*cluster + item``. All kinds share the item ids:
    interactions (user_id, item_id, timestamp, rating), edges (src, dst, weight),
    side_info (item_id, category, brand, tags with ``a|b`` cells), features (id, f0..f7),
    table (user_id, item_id, device, hour, price, label with 0/1).
    """
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in INPUT_KINDS]
    if unknown:
        raise ValueError(f"unknown input kind(s) {unknown}; known kinds: {', '.join(INPUT_KINDS)}")
    if id_type not in ("str", "int"):
        raise ValueError(f"id_type must be 'str' or 'int', got {id_type!r}")
    rng = np.random.default_rng(seed)
    items = _item_ids(id_type)
    cluster = np.repeat(np.arange(_CLUSTERS), _PER_CLUSTER)
    favourite = rng.integers(_CLUSTERS, size=_USERS)
    frames = {"interactions": _interactions(rng, items, favourite, id_type)}
    # the same draws in the same order whatever kinds are asked for, so every kind is seeded alike
    frames["edges"] = _edges(rng, items, cluster)
    frames["side_info"] = _side_info(rng, items, cluster)
    frames["features"] = _features(rng, items, cluster)
    frames["table"] = _table(rng, frames["interactions"], items, cluster, favourite, id_type, seed)
    return {k: frames[k] for k in kinds}


def tiny_frames(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The smallest consistent inputs: one interaction, one edge, one table row, two items."""
    out = {}
    if "edges" in frames:
        a, b = frames["edges"]["src"].iloc[0], frames["edges"]["dst"].iloc[0]
    else:
        a = b = frames["interactions"]["item_id"].iloc[0] if "interactions" in frames else None
    for kind, frame in frames.items():
        if kind in ("interactions", "edges", "table"):
            out[kind] = frame.iloc[:1]
        else:
            key = "item_id" if kind == "side_info" else "id"
            keep = frame[frame[key].isin([a, b])]
            out[kind] = keep if len(keep) else frame.iloc[:1]
    if "interactions" in out and a is not None:
        out["interactions"] = out["interactions"].assign(item_id=[a])
    return out


def write_frames(directory: Path, frames: Mapping[str, pd.DataFrame], tag: str = "") -> dict[str, Path]:
    """Write each frame as ``<kind><tag>.csv`` into ``directory``; returns kind -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, frame in frames.items():
        path = directory / f"{kind}{tag}.csv"
        frame.to_csv(path, index=False)
        paths[kind] = path
    return paths


def make_inputs(directory: str | Path, kinds: Iterable[str] = INPUT_KINDS, *, seed: int = 0,
                id_type: str = "str") -> dict[str, Path]:
    """Write ``make_frames(kinds)`` as CSV files into ``directory``; returns kind -> path."""
    return write_frames(Path(directory), make_frames(kinds, seed=seed, id_type=id_type))


def make_vectors(n: int = 120, dim: int = 16, *, clusters: int = 6, seed: int = 0) -> np.ndarray:
    """Unit-length float32 vectors around ``clusters`` centres (so ip, cosine and l2 agree on top-1)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + rng.normal(scale=0.5, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
