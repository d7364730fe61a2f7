"""Versions that downstream models survive: alignment onto a reference, and drift between versions.

A retrain changes what each dimension means. Rotating the new version onto a
reference version (orthogonal Procrustes on the ids both share) makes its
coordinates comparable to the reference's while keeping every distance, inner
product and cosine *within* the new version exactly as trained: recall results
do not change, and a ranking model trained on the reference keeps working on
the refreshed vectors (worse only by the residual the report shows).

    store.run("item2vec", "items", inputs, align_to="prev")   # or "prod", "items@3", "other_set@prod"
    store.diff("items@1", "items@2")                          # drift report, also stored in items@2's metrics

``align_to`` names the reference: ``prev`` (the latest published version of the
same set), an alias or number of the same set (``prod``, ``3``) or any full ref
(``set@prod``). When the set has no published version yet (the first run of a
job that always passes ``--align-to prod``) nothing is rotated and the version's
``alignment`` metric says so; any other missing reference is an error.

Alignment is a pure rotation: no translation and no scaling, because either
would change inner products and so the version's own neighbourhoods.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from embstore.errors import EmbeddingsError, NotFoundError
from embstore.refs import Ref

if TYPE_CHECKING:
    import numpy as np

    from embstore.embeddings import Embeddings
    from embstore.registry import VersionInfo
    from embstore.store import EmbeddingStore

DRIFT_K = 10
DRIFT_SAMPLE = 1000
_SHOWN_IDS = 20  # ids added / removed listed in a report (the counts are exact)


class AlignmentError(EmbeddingsError):
    """The new vectors cannot be rotated onto the reference (dimension mismatch, too few shared ids)."""


# -- the maths ---------------------------------------------------------------


def procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal matrix R (d × d) minimising ||source @ R - target||_F (rows paired by index)."""
    import numpy as np

    m = np.asarray(source, dtype=np.float64).T @ np.asarray(target, dtype=np.float64)
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def relative_residual(x: np.ndarray, y: np.ndarray) -> float:
    """||x - y||_F / ||y||_F: 0 when identical, about sqrt(2) for unrelated vectors of equal norms."""
    import numpy as np

    denom = float(np.linalg.norm(y))
    return float(np.linalg.norm(np.asarray(x, np.float64) - y) / denom) if denom else 0.0


def mean_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over rows of cos(x_i, y_i)."""
    import numpy as np

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    nx = np.linalg.norm(x, axis=1)
    ny = np.linalg.norm(y, axis=1)
    ok = (nx > 0) & (ny > 0)
    if not ok.any():
        return 0.0
    return float(np.mean(np.einsum("ij,ij->i", x[ok], y[ok]) / (nx[ok] * ny[ok])))


def _positions(ids: np.ndarray, of: np.ndarray) -> np.ndarray:
    """For each id in ``ids`` its row in ``of``, or -1 (ids of one kind: int64 or str)."""
    import numpy as np
    import pandas as pd

    if (ids.dtype.kind in "iu") != (of.dtype.kind in "iu"):
        return np.full(len(ids), -1, dtype=np.int64)
    return pd.Index(of).get_indexer(ids).astype(np.int64)


def min_shared_for(dim: int) -> int:
    """Fewest shared ids for a well-determined rotation: one per dimension (at least 2)."""
    return max(2, int(dim))


# -- alignment at publish ----------------------------------------------------


def reference_for(store: "EmbeddingStore", set_name: str, align_to: str) -> "VersionInfo | None":
    """The version ``align_to`` names for a new version of ``set_name``, or None when the set
    has no published version yet (nothing to align to on a first run)."""
    align_to = str(align_to).strip()
    if not align_to:
        raise AlignmentError("align_to is empty: name 'prev', an alias (prod), a number or a ref (set@prod)")
    if "@" in align_to:
        return store.resolve(Ref.parse(align_to))
    try:
        latest = store.resolve(Ref(set_name))
    except NotFoundError:
        return None  # a new set, or one without a published version: the first run aligns nothing
    if align_to == "prev":
        return latest
    return store.resolve(Ref.parse(f"{set_name}@{align_to}"))


def align(emb: Embeddings, reference: "VersionInfo", ref_ids: np.ndarray, ref_vectors: np.ndarray) -> tuple[Embeddings, dict]:
    """Rotate validated ``emb`` onto the reference vectors; returns the rotated Embeddings and a report."""
    return align_together([(emb, reference, ref_ids, ref_vectors)])[0]


def align_together(pairs: list[tuple[Embeddings, "VersionInfo", np.ndarray, np.ndarray]]) -> list[tuple[Embeddings, dict]]:
    """One rotation fitted on the shared ids of every (new Embeddings, reference version, its ids,
    its vectors) pair, applied to every new set: sets rotated together keep their inner products
    with each other. Returns each rotated Embeddings with its report."""
    import numpy as np
    from embstore.embeddings import Embeddings

    xs, ys = [], []
    for emb, reference, ref_ids, ref_vectors in pairs:
        if emb.dim != reference.dim:
            raise AlignmentError(
                f"cannot align onto {reference.ref}: it has dimension {reference.dim}, the new vectors have "
                f"dimension {emb.dim}; alignment needs the same dimension (align to another version or drop align_to)"
            )
        rows = _positions(emb.ids, ref_ids)
        mine = np.flatnonzero(rows >= 0)
        xs.append(np.asarray(emb.vectors[mine], dtype=np.float64))
        ys.append(np.asarray(ref_vectors[rows[mine]], dtype=np.float64))
    shared = sum(len(x) for x in xs)
    need = min_shared_for(pairs[0][0].dim)
    if shared < need:
        refs = ", ".join(reference.ref for _, reference, _, _ in pairs)
        raise AlignmentError(
            f"cannot align onto {refs}: only {shared} ids are shared with {'it' if len(pairs) == 1 else 'them'}, "
            f"need at least {need} (one per dimension) to fit a rotation"
        )
    r = procrustes(np.concatenate(xs), np.concatenate(ys))
    out = []
    for (emb, reference, _, _), x, y in zip(pairs, xs, ys):
        report = {
            "reference": reference.ref,
            "shared_ids": int(len(x)),
            "residual_before": relative_residual(x, y),
            "residual_after": relative_residual(x @ r, y),
            "mean_cosine_before": mean_cosine(x, y),
            "mean_cosine_after": mean_cosine(x @ r, y),
        }
        rotated = (np.asarray(emb.vectors, dtype=np.float64) @ r).astype(np.float32)
        out.append((Embeddings(ids=emb.ids, vectors=rotated, extras=emb.extras,
                               metadata={**dict(emb.metadata), "alignment": report}), report))
    return out


def align_for_publish(store: "EmbeddingStore", set_name: str, emb: Embeddings,
                      align_to: str) -> tuple[Embeddings, str | None]:
    """What ``publish(..., align_to=...)`` does before any file is written: the rotated
    Embeddings (alignment report in its metadata) and the pinned ref it was aligned to."""
    from embstore.embeddings import Embeddings

    reference = reference_for(store, set_name, align_to)
    if reference is None:
        note = {"skipped": f"{set_name} has no published version to align to yet", "requested": str(align_to)}
        return Embeddings(emb.ids, emb.vectors, emb.extras, {**dict(emb.metadata), "alignment": note}), None
    loaded = store._loaded(reference)
    aligned, _ = align(emb, reference, loaded.ids, loaded.vectors)
    return aligned, reference.ref


@dataclass(frozen=True)
class PreAligned:
    """``publish(align_to=PreAligned(ref))``: the vectors were already rotated onto ``ref``
    (a producer publishing several sets rotates them together); publish records it."""

    ref: str


def align_roles(store: "EmbeddingStore", sets: Mapping[str, Embeddings],
                align_to: str) -> dict[str, tuple[Embeddings, "PreAligned | None"]]:
    """One rotation for all the sets a multi-set producer publishes (fm's users and items), fitted
    on the shared ids of every set against each set's own reference version: rotating them together
    keeps every inner product between them, which per-set rotations would not.
    ``sets`` maps set name to its new Embeddings; returns, per set, the rotated Embeddings and what
    to pass as ``align_to`` to ``publish``."""
    from embstore.embeddings import Embeddings

    if "@" in str(align_to):
        raise AlignmentError(f"align_to={align_to!r}: a producer that publishes several sets aligns each onto "
                             "its own set's version; name 'prev', an alias (prod) or a number")
    refs = {name: reference_for(store, name, align_to) for name in sets}
    missing = [name for name, ref in refs.items() if ref is None]
    if missing:  # a first run (or a new role): nothing to align to
        note = {"skipped": f"{', '.join(missing)} has no published version to align to yet",
                "requested": str(align_to)}
        return {name: (Embeddings(e.ids, e.vectors, e.extras, {**dict(e.metadata), "alignment": note}), None)
                for name, e in sets.items()}
    pairs = []
    for name, emb in sets.items():
        loaded = store._loaded(refs[name])
        pairs.append((emb, refs[name], loaded.ids, loaded.vectors))
    out = {}
    for name, (rotated, report) in zip(sets, align_together(pairs)):
        report["joint_with"] = sorted(sets)
        out[name] = (rotated, PreAligned(refs[name].ref))
    return out


# -- drift between two versions ----------------------------------------------


def _unit(m: np.ndarray) -> np.ndarray:
    import numpy as np

    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1.0)


def exact_top_k(unit: np.ndarray, queries: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """Rows of the k nearest rows (cosine; ``unit`` rows are unit vectors) of each query row,
    the query itself excluded, best first. Exact: a blocked matrix product."""
    import numpy as np

    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        q = queries[start:start + block]
        sims = unit[q] @ unit.T
        sims[np.arange(len(q)), q] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out[start:start + block] = np.take_along_axis(part, order, axis=1)
    return out


def _id_list(ids: np.ndarray) -> list:
    return [i.item() if hasattr(i, "item") else i for i in ids]


def drift_report(store: "EmbeddingStore", a: str, b: str, *, k: int = DRIFT_K, sample: int = DRIFT_SAMPLE,
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
    import numpy as np

    va, vb = store.resolve(a), store.resolve(b)
    la, lb = store._loaded(va), store._loaded(vb)
    pos = _positions(lb.ids, la.ids)  # row in a of each id of b
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
        "added": _id_list(added[:_SHOWN_IDS]), "removed": _id_list(removed[:_SHOWN_IDS]),
        "mean_cosine": None, "mean_cosine_raw": None,
    }
    xa = np.asarray(la.vectors[in_a], dtype=np.float64)
    xb = np.asarray(lb.vectors[in_b], dtype=np.float64)
    if va.dim == vb.dim and shared >= 2:
        report["mean_cosine_raw"] = mean_cosine(xb, xa)
        report["mean_cosine"] = mean_cosine(xb @ procrustes(xb, xa), xa)
    k = int(min(k, shared - 1)) if shared > 1 else 0
    report["k"] = k
    if k >= 1:
        rng = np.random.default_rng(seed)
        queries = np.sort(rng.choice(shared, size=min(sample, shared), replace=False))
        top_a = exact_top_k(_unit(xa), queries, k)
        top_b = exact_top_k(_unit(xb), queries, k)
        overlap = [len(np.intersect1d(ra, rb, assume_unique=True)) / k for ra, rb in zip(top_a, top_b)]
        report["sample"] = int(len(queries))
        report["neighbour_overlap"] = float(np.mean(overlap))
    else:
        report["sample"] = 0
        report["neighbour_overlap"] = None
    return report


def newer_of(store: "EmbeddingStore", a: "VersionInfo", b: "VersionInfo") -> "VersionInfo":
    """The later-built of two versions (by build time, then number)."""
    return max((a, b), key=lambda v: (v.created_at, v.number))


def diff(store: "EmbeddingStore", a: str, b: str, *, k: int = DRIFT_K, sample: int = DRIFT_SAMPLE,
         seed: int = 0, save: bool = True) -> dict[str, Any]:
    """The drift report of ``b`` against ``a``; with ``save`` it is also stored in the newer
    version's metrics under ``drift`` → the other version's ref (the only change a published
    version's record may take: metrics grow, vectors never change)."""
    report = drift_report(store, a, b, k=k, sample=sample, seed=seed)
    if save:
        va, vb = store.resolve(report["from"]), store.resolve(report["to"])
        if va.ref != vb.ref:
            newer = newer_of(store, va, vb)
            other = va if newer is vb else vb
            store.registry.extend_metrics(newer.set, newer.number, {"drift": {other.ref: report}})
            report["stored_in"] = newer.ref
    return report


# -- CLI ---------------------------------------------------------------------


def _format(report: dict) -> str:
    k = report["k"]
    overlap = report["neighbour_overlap"]
    cos = report["mean_cosine"]
    lines = [
        f"{report['from']} -> {report['to']}  (dimension {report['dims'][0]} -> {report['dims'][1]})",
        f"  ids: {report['shared_ids']} shared, {report['ids_added']} added, {report['ids_removed']} removed",
    ]
    if report["added"]:
        lines.append("  added:   " + ", ".join(map(str, report["added"])) + (" ..." if report["ids_added"] > len(report["added"]) else ""))
    if report["removed"]:
        lines.append("  removed: " + ", ".join(map(str, report["removed"])) + (" ..." if report["ids_removed"] > len(report["removed"]) else ""))
    if cos is None:
        lines.append("  mean cosine of shared ids: n/a (dimensions differ or fewer than 2 shared ids)")
    else:
        lines.append(f"  mean cosine of shared ids: {cos:.4f} after rotating onto {report['from']} "
                     f"({report['mean_cosine_raw']:.4f} as stored)")
    if overlap is not None:
        lines.append(f"  top-{k} neighbour overlap: {overlap:.4f} (exact cosine search, {report['sample']} sampled shared ids)")
    if report.get("stored_in"):
        lines.append(f"  stored in the metrics of {report['stored_in']}")
    return "\n".join(lines)


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("-k", "k", type=click.IntRange(min=1), default=DRIFT_K, show_default=True, help="neighbour list length")
@click.option("--sample", type=click.IntRange(min=1), default=DRIFT_SAMPLE, show_default=True,
              help="shared ids whose neighbour lists are compared")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-save", is_flag=True, help="do not store the report in the newer version's metrics")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def diff_command(state, a: str, b: str, k: int, sample: int, seed: int, no_save: bool, as_json: bool) -> None:
    """Drift from version A to version B: ids added and removed, mean cosine of shared ids
    after alignment, overlap of top-k neighbour lists. Stored in the newer version's metrics."""
    report = state.store().diff(a, b, k=k, sample=sample, seed=seed, save=not no_save)
    click.echo(json.dumps(report, default=str) if as_json else _format(report))
    sys.stdout.flush()


cmd = diff_command
