"""Row-wise vector arithmetic that producers, drift reports, composites and serving share."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray, dtype=None) -> np.ndarray:
    """Each row scaled to unit length (all-zero rows stay zero), as ``dtype`` (default: x's float type)."""
    x = np.asarray(x, dtype=dtype) if dtype is not None else np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1).astype(x.dtype)
