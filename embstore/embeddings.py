"""The in-memory result of a producer, and the checks it must pass before publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from embstore.errors import EmbeddingsError
from embstore.ids import normalize_ids, plain


def _ragged(rows: Any) -> str:
    """Which row breaks the shape of a ragged list of vectors."""
    try:
        lengths = [len(r) for r in rows]
        bad = next(i for i, n in enumerate(lengths) if n != lengths[0])
        return f"row 0 has dimension {lengths[0]} but row {bad} has {lengths[bad]} (dimension mismatch)"
    except Exception:  # noqa: BLE001 - deeper nesting or rows without a length
        return "its rows are not all numeric sequences of one length (dimension mismatch)"


@dataclass(frozen=True)
class Embeddings:
    """What `Producer.fit` returns.

    ids: 1-D, unique, integers or strings. vectors: float32, shape (n, d), finite.
    extras: per-row arrays published next to the vector (e.g. GBDT leaf indices, shape (n, ...)).
    metadata: JSON-able facts about the run (losses, vocabulary size) stored as version metrics.
    """

    ids: np.ndarray
    vectors: np.ndarray
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    state: Any = None  # what the producer's ``infer`` needs later (weights, vocabularies); saved with the version

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def validated(self) -> "Embeddings":
        """A checked copy: normalized ids, contiguous float32 vectors. Raises EmbeddingsError."""
        ids = normalize_ids(self.ids)
        try:
            vectors = np.asarray(self.vectors)
        except (ValueError, TypeError):  # rows of different lengths
            raise EmbeddingsError(f"vectors must be one (n, dim) array: {_ragged(self.vectors)}") from None
        if vectors.ndim != 2:
            raise EmbeddingsError(f"vectors must be 2-D (n, dim), got shape {vectors.shape}")
        if vectors.shape[0] != ids.shape[0]:
            raise EmbeddingsError(
                f"{ids.shape[0]} ids but {vectors.shape[0]} vectors; they must match row for row"
            )
        if vectors.shape[0] == 0:
            raise EmbeddingsError("no vectors: the producer returned an empty result")
        if vectors.shape[1] == 0:
            raise EmbeddingsError("vectors have dimension 0")
        if vectors.dtype.kind not in "fiu":
            raise EmbeddingsError(f"vectors must be numeric, got dtype {vectors.dtype}")
        with np.errstate(over="ignore"):  # values beyond float32 become inf, reported just below
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        finite = np.isfinite(vectors)
        if not finite.all():
            row = int(np.where(~finite.all(axis=1))[0][0])
            raise EmbeddingsError(
                f"vector for id {plain(ids[row])!r} (row {row}) has NaN or inf; "
                "check the producer's learning rate or input weights"
            )
        uniq, counts = np.unique(ids.astype(str) if ids.dtype == object else ids, return_counts=True)
        if uniq.shape[0] != ids.shape[0]:
            dup = uniq[counts > 1][0]
            raise EmbeddingsError(f"duplicate id {plain(dup)!r}: ids must be unique")
        extras = {}
        for name, arr in self.extras.items():
            if not name.isidentifier() or name in ("embedding", "row"):
                raise EmbeddingsError(f"extra column name {name!r} is not allowed")
            try:
                arr = np.asarray(arr)
            except (ValueError, TypeError) as exc:
                raise EmbeddingsError(f"extra {name!r} is not one array: {exc}") from None
            if arr.ndim not in (1, 2) or arr.dtype.kind not in "iuf":  # what a Feast field can hold
                raise EmbeddingsError(
                    f"extra {name!r} has dtype {arr.dtype} and {arr.ndim} dims; extras must be numeric, 1-D or 2-D"
                )
            if arr.shape[0] != ids.shape[0]:
                raise EmbeddingsError(
                    f"extra {name!r} has {arr.shape[0]} rows for {ids.shape[0]} ids"
                )
            extras[name] = arr
        return Embeddings(ids=ids, vectors=vectors, extras=extras, metadata=dict(self.metadata), state=self.state)
