"""Row-wise vector arithmetic that producers, drift reports, composites and serving share."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray, dtype=None) -> np.ndarray:
    """Each row scaled to unit length; all-zero rows stay zero. Keeps a float32 input float32."""
    x = np.asarray(x, dtype=dtype)
    norms = np.sqrt(np.add.reduce(x * x, axis=1, keepdims=True))  # np.linalg.norm's sum, without its dispatch
    norms[~(norms > 0)] = 1.0
    return x / norms
