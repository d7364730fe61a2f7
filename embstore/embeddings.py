"""The in-memory result of a producer, and the checks it must pass before publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from embstore.errors import EmbeddingsError


def normalize_ids(ids: Any) -> np.ndarray:
    """Ids as int64 when every id is an integer, else as Python str objects.

    One representation per kind keeps lookups, parquet and Feast join keys consistent.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise EmbeddingsError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise EmbeddingsError("ids exceed the int64 range; pass them as strings")
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind in "USO":
        out = np.empty(arr.shape[0], dtype=object)
        for i, v in enumerate(arr.tolist()):
            if isinstance(v, (bool, np.bool_)) or v is None or (isinstance(v, float)):
                raise EmbeddingsError(f"id at row {i} is {v!r}; ids must be integers or strings")
            out[i] = v if isinstance(v, str) else str(v)
        return out
    raise EmbeddingsError(f"ids must be integers or strings, got dtype {arr.dtype}")


def id_type_of(ids: np.ndarray) -> str:
    """'int64' or 'string': how a version's ids are stored and joined."""
    return "int64" if ids.dtype.kind in "iu" else "string"


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

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def validated(self) -> "Embeddings":
        """A checked copy: normalized ids, contiguous float32 vectors. Raises EmbeddingsError."""
        ids = normalize_ids(self.ids)
        vectors = np.asarray(self.vectors)
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
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        finite = np.isfinite(vectors)
        if not finite.all():
            row = int(np.where(~finite.all(axis=1))[0][0])
            raise EmbeddingsError(
                f"vector for id {ids[row].item() if hasattr(ids[row], 'item') else ids[row]!r} (row {row}) has NaN or inf; "
                "check the producer's learning rate or input weights"
            )
        uniq, counts = np.unique(ids.astype(str) if ids.dtype == object else ids, return_counts=True)
        if uniq.shape[0] != ids.shape[0]:
            dup = uniq[counts > 1][0]
            dup = dup.item() if hasattr(dup, "item") else dup
            raise EmbeddingsError(f"duplicate id {dup!r}: ids must be unique")
        extras = {}
        for name, arr in self.extras.items():
            if not name.isidentifier() or name in ("embedding", "row"):
                raise EmbeddingsError(f"extra column name {name!r} is not allowed")
            arr = np.asarray(arr)
            if arr.shape[0] != ids.shape[0]:
                raise EmbeddingsError(
                    f"extra {name!r} has {arr.shape[0]} rows for {ids.shape[0]} ids"
                )
            extras[name] = arr
        return Embeddings(ids=ids, vectors=vectors, extras=extras, metadata=dict(self.metadata))
