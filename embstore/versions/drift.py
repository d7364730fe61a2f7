"""Drift between two versions: which ids came and went, how far shared ids moved, how much
their neighbourhoods still agree.

    store.diff("items@1", "items@2")     # the report, also stored in items@2's metrics
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from embstore.ids import plain_list, positions
from embstore.linalg import unit_rows
from embstore.versions.alignment import mean_cosine, procrustes

if TYPE_CHECKING:
    from embstore.backends.registry import Registry
    from embstore.refs import VersionInfo
    from embstore.versions.reader import VersionReader

DRIFT_K = 10
DRIFT_SAMPLE = 1000
SHOWN_IDS = 20  # ids added / removed listed in a report (the counts are exact)


def exact_top_k(unit: np.ndarray, queries: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """Rows of the k nearest rows (cosine; ``unit`` rows are unit vectors) of each query row,
    the query itself excluded, best first. Exact: a blocked matrix product."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        q = queries[start:start + block]
        sims = unit[q] @ unit.T
        sims[np.arange(len(q)), q] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out[start:start + block] = np.take_along_axis(part, order, axis=1)
    return out


def drift_report(reader: "VersionReader", a: str, b: str, *, k: int = DRIFT_K, sample: int = DRIFT_SAMPLE,
                 seed: int = 0) -> dict[str, Any]:
    """How version ``b`` differs from version ``a``.

    - ``ids_added`` / ``ids_removed``: ids in b but not a, and in a but not b (counts, plus the
      first few of each in ``added`` / ``removed``);
    - ``mean_cosine``: mean cosine between a's vector and b's vector of each shared id after
      rotating b onto a (Procrustes on all shared ids); ``mean_cosine_raw`` without the rotation
      (near 1 only when b was aligned to a or barely changed). None when dimensions differ;
    - ``neighbour_overlap`` (with ``k``): for a sample of shared ids, the share of its k nearest neighbours
      (exact cosine search among the shared ids, itself excluded) that both versions agree on.
      1 means the same neighbourhoods; it needs no alignment and works across dimensions.
    """
    va, vb = reader.resolve(a), reader.resolve(b)
    la, lb = reader.load(va), reader.load(vb)
    pos = positions(lb.ids, la.ids)  # row in a of each id of b
    in_b = np.flatnonzero(pos >= 0)
    in_a = pos[in_b]
    shared = len(in_b)
    added = lb.ids[pos < 0]
    removed_mask = np.ones(len(la.ids), dtype=bool)
    removed_mask[in_a] = False
    removed = la.ids[removed_mask]
    report: dict[str, Any] = {
        "from": va.ref, "to": vb.ref, "dims": [va.dim, vb.dim],
        "shared_ids": int(shared), "ids_added": int(len(added)), "ids_removed": int(len(removed)),
        "added": plain_list(added[:SHOWN_IDS]), "removed": plain_list(removed[:SHOWN_IDS]),
        "mean_cosine": None, "mean_cosine_raw": None,
    }
    xa = np.asarray(la.vectors[in_a], dtype=np.float64)
    xb = np.asarray(lb.vectors[in_b], dtype=np.float64)
    if va.dim == vb.dim and shared >= 2:
        report["mean_cosine_raw"] = mean_cosine(xb, xa)
        report["mean_cosine"] = mean_cosine(xb @ procrustes(xb, xa), xa)
    report.update(neighbour_overlap(xa, xb, k, sample, seed))
    return report


def neighbour_overlap(xa: np.ndarray, xb: np.ndarray, k: int, sample: int, seed: int) -> dict[str, Any]:
    """``k``, ``sample`` and ``neighbour_overlap`` of a report: rows of xa and xb are the same ids."""
    shared = len(xa)
    k = int(min(k, shared - 1)) if shared > 1 else 0
    if k < 1:
        return {"k": k, "sample": 0, "neighbour_overlap": None}
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(shared, size=min(sample, shared), replace=False))
    top_a = exact_top_k(unit_rows(xa, np.float32), queries, k)
    top_b = exact_top_k(unit_rows(xb, np.float32), queries, k)
    overlap = [len(np.intersect1d(ra, rb, assume_unique=True)) / k for ra, rb in zip(top_a, top_b)]
    return {"k": k, "sample": int(len(queries)), "neighbour_overlap": float(np.mean(overlap))}


def newer_of(a: "VersionInfo", b: "VersionInfo") -> "VersionInfo":
    """The later-built of two versions (by build time, then number)."""
    return max((a, b), key=lambda v: (v.created_at, v.number))


def diff(reader: "VersionReader", registry: "Registry", a: str, b: str, *, k: int = DRIFT_K,
         sample: int = DRIFT_SAMPLE, seed: int = 0, save: bool = True) -> dict[str, Any]:
    """The drift report of ``b`` against ``a``; with ``save`` it is also stored in the newer
    version's metrics under ``drift`` → the other version's ref (the only change a published
    version's record may take: metrics grow, vectors never change)."""
    report = drift_report(reader, a, b, k=k, sample=sample, seed=seed)
    if save:
        va, vb = reader.resolve(report["from"]), reader.resolve(report["to"])
        if va.ref != vb.ref:
            newer = newer_of(va, vb)
            other = va if newer is vb else vb
            registry.extend_metrics(newer.set, newer.number, {"drift": {other.ref: report}})
            report["stored_in"] = newer.ref
    return report
