"""Sparse ``features`` as ``.npz`` files: writing them with node ids, reading and checking them.

    save_sparse_features("features.npz", csr_matrix, ids=node_ids)   # row i is node ids[i]
    embstore run graphsage ... --input features=features.npz

A file written by ``scipy.sparse.save_npz`` reads too; its row i is the node with id i.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from embstore.errors import InputError
from embstore.inputs.columns import check_unique, first_true
from embstore.inputs.specs import InputSpec


def save_sparse_features(path: str | Path, matrix, ids: Iterable | None = None) -> None:
    """Write sparse features as the ``features`` input reads them: scipy's ``.npz`` format (what
    ``scipy.sparse.save_npz`` writes) plus, when given, the node ids (row i is node ``ids[i]``,
    integers or strings; without ids, row i is node i). New nodes for ``embstore infer`` need ids."""
    m = sp.csr_matrix(matrix)
    arrays = {"format": np.array(b"csr"), "shape": np.array(m.shape), "data": m.data, "indices": m.indices,
              "indptr": m.indptr}
    if ids is not None:
        ids = np.asarray(list(ids))
        if ids.dtype.kind not in "iuU":
            raise InputError(f"sparse feature ids must be integers or strings, got {ids.dtype}")
        if ids.shape != (m.shape[0],):
            raise InputError(f"{len(ids)} ids for {m.shape[0]} feature rows; give one id per row")
        arrays["ids"] = ids
    np.savez_compressed(path, **arrays)


def read_npz_features(spec: InputSpec) -> tuple[np.ndarray, sp.csr_matrix]:
    """A scipy sparse matrix saved with ``scipy.sparse.save_npz`` (row i is the node with id i) or
    with ``save_sparse_features`` (an ``ids`` array names the rows)."""
    try:
        matrix = sp.load_npz(spec.path)
    except Exception as exc:  # scipy raises ValueError, OSError, zipfile errors, KeyError...
        raise InputError(
            f"{spec.display}: not a scipy sparse .npz (save it with scipy.sparse.save_npz): {exc}"
        ) from None
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(f"{spec.display}: empty feature matrix of shape {matrix.shape}")
    bad = ~np.isfinite(matrix.data)
    if bad.any():
        k = first_true(bad)
        row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
        raise InputError(
            f"{spec.display}: row {row} (0-based) column {int(matrix.indices[k])}: "
            f"{float(matrix.data[k])!r} is not finite (or does not fit float32)"
        )
    with np.load(spec.path, allow_pickle=False) as stored:
        ids = stored["ids"] if "ids" in stored.files else None
    if ids is None:
        return np.arange(matrix.shape[0], dtype=np.int64), matrix
    if ids.shape != (matrix.shape[0],) or ids.dtype.kind not in "iuU":
        raise InputError(f"{spec.display}: its ids array must hold one integer or string per row "
                         f"({matrix.shape[0]} rows), found {ids.dtype} of shape {ids.shape}")
    ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids.astype(str).astype(object)
    check_unique(spec, "'ids'", ids)
    return ids, matrix
