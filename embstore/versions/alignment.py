"""Versions that downstream models survive: rotating a new version onto a reference version.

A retrain changes what each dimension means. Rotating the new version onto a
reference version (orthogonal Procrustes on the ids both share) makes its
coordinates comparable to the reference's while keeping every distance, inner
product and cosine *within* the new version exactly as trained: recall results
do not change, and a ranking model trained on the reference keeps working on
the refreshed vectors (worse only by the residual the report shows).

    store.run("item2vec", "items", inputs, align_to="prev")   # or "prod", "items@3", "other_set@prod"

``align_to`` names the reference: ``prev`` (the latest published version of the
same set), an alias or number of the same set (``prod``, ``3``) or any full ref
(``set@prod``). When the set has no published version yet (the first run of a
job that always passes ``--align-to prod``) nothing is rotated and the version's
``alignment`` metric says so; any other missing reference is an error.

Alignment is a pure rotation: no translation and no scaling, because either
would change inner products and so the version's own neighbourhoods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embstore.embeddings import Embeddings
from embstore.errors import EmbeddingsError, NotFoundError
from embstore.ids import positions
from embstore.refs import Ref

if TYPE_CHECKING:
    from embstore.refs import VersionInfo
    from embstore.versions.reader import VersionReader


class AlignmentError(EmbeddingsError):
    """The new vectors cannot be rotated onto the reference (dimension mismatch, too few shared ids)."""


# -- the maths ---------------------------------------------------------------


def procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal matrix R (d × d) minimising ||source @ R - target||_F (rows paired by index)."""
    from scipy.linalg import orthogonal_procrustes

    rotation, _ = orthogonal_procrustes(np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64))
    return rotation


def relative_residual(x: np.ndarray, y: np.ndarray) -> float:
    """||x - y||_F / ||y||_F: 0 when identical, about sqrt(2) for unrelated vectors of equal norms."""
    denom = float(np.linalg.norm(y))
    return float(np.linalg.norm(np.asarray(x, np.float64) - y) / denom) if denom else 0.0


def mean_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over rows of cos(x_i, y_i)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    nx = np.linalg.norm(x, axis=1)
    ny = np.linalg.norm(y, axis=1)
    ok = (nx > 0) & (ny > 0)
    if not ok.any():
        return 0.0
    return float(np.mean(np.einsum("ij,ij->i", x[ok], y[ok]) / (nx[ok] * ny[ok])))


def min_shared_for(dim: int) -> int:
    """Fewest shared ids for a well-determined rotation: one per dimension (at least 2)."""
    return max(2, int(dim))


# -- alignment at publish ----------------------------------------------------


def reference_for(reader: "VersionReader", set_name: str, align_to: str) -> "VersionInfo | None":
    """The version ``align_to`` names for a new version of ``set_name``, or None when the set
    has no published version yet (nothing to align to on a first run)."""
    align_to = str(align_to).strip()
    if not align_to:
        raise AlignmentError("align_to is empty: name 'prev', an alias (prod), a number or a ref (set@prod)")
    if "@" in align_to:
        return reader.resolve(Ref.parse(align_to))
    try:
        latest = reader.resolve(Ref(set_name))
    except NotFoundError:
        return None  # a new set, or one without a published version: the first run aligns nothing
    if align_to == "prev":
        return latest
    return reader.resolve(Ref.parse(f"{set_name}@{align_to}"))


def align(emb: Embeddings, reference: "VersionInfo", ref_ids: np.ndarray, ref_vectors: np.ndarray) -> tuple[Embeddings, dict]:
    """Rotate validated ``emb`` onto the reference vectors; returns the rotated Embeddings and a report."""
    return align_together([(emb, reference, ref_ids, ref_vectors)])[0]


def align_together(pairs: list[tuple[Embeddings, "VersionInfo", np.ndarray, np.ndarray]]) -> list[tuple[Embeddings, dict]]:
    """One rotation fitted on the shared ids of every (new Embeddings, reference version, its ids,
    its vectors) pair, applied to every new set: sets rotated together keep their inner products
    with each other. Returns each rotated Embeddings with its report."""
    xs, ys = [], []
    for emb, reference, ref_ids, ref_vectors in pairs:
        if emb.dim != reference.dim:
            raise AlignmentError(
                f"cannot align onto {reference.ref}: it has dimension {reference.dim}, the new vectors have "
                f"dimension {emb.dim}; alignment needs the same dimension (align to another version or drop align_to)"
            )
        rows = positions(emb.ids, ref_ids)
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


def align_for_publish(reader: "VersionReader", set_name: str, emb: Embeddings,
                      align_to: str) -> tuple[Embeddings, str | None]:
    """What ``publish(..., align_to=...)`` does before any file is written: the rotated
    Embeddings (alignment report in its metadata) and the pinned ref it was aligned to."""
    reference = reference_for(reader, set_name, align_to)
    if reference is None:
        note = {"skipped": f"{set_name} has no published version to align to yet", "requested": str(align_to)}
        return Embeddings(emb.ids, emb.vectors, emb.extras, {**dict(emb.metadata), "alignment": note}), None
    loaded = reader.load(reference)
    aligned, _ = align(emb, reference, loaded.ids, loaded.vectors)
    return aligned, reference.ref


@dataclass(frozen=True)
class PreAligned:
    """``publish(align_to=PreAligned(ref))``: the vectors were already rotated onto ``ref``
    (a producer publishing several sets rotates them together); publish records it."""

    ref: str


def align_roles(reader: "VersionReader", sets: Mapping[str, Embeddings],
                align_to: str) -> dict[str, tuple[Embeddings, "PreAligned | None"]]:
    """One rotation for all the sets a multi-set producer publishes (fm's users and items), fitted
    on the shared ids of every set against each set's own reference version: rotating them together
    keeps every inner product between them, which per-set rotations would not.
    ``sets`` maps set name to its new Embeddings; returns, per set, the rotated Embeddings and what
    to pass as ``align_to`` to ``publish``."""
    if "@" in str(align_to):
        raise AlignmentError(f"align_to={align_to!r}: a producer that publishes several sets aligns each onto "
                             "its own set's version; name 'prev', an alias (prod) or a number")
    refs = {name: reference_for(reader, name, align_to) for name in sets}
    missing = [name for name, ref in refs.items() if ref is None]
    if missing:  # a first run (or a new role): nothing to align to
        note = {"skipped": f"{', '.join(missing)} has no published version to align to yet",
                "requested": str(align_to)}
        return {name: (Embeddings(e.ids, e.vectors, e.extras, {**dict(e.metadata), "alignment": note}), None)
                for name, e in sets.items()}
    pairs = []
    for name, emb in sets.items():
        loaded = reader.load(refs[name])
        pairs.append((emb, refs[name], loaded.ids, loaded.vectors))
    out = {}
    for name, (rotated, report) in zip(sets, align_together(pairs)):
        report["joint_with"] = sorted(sets)
        out[name] = (rotated, PreAligned(refs[name].ref))
    return out
