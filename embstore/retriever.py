"""The retriever contract: a nearest-neighbour index over one version's vectors.

A retriever knows rows, not ids: row i is the i-th vector of the version, and
the store maps rows to ids. Results come best first; ``-1`` marks an empty slot
when fewer than k neighbours exist.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pydantic

from embstore.config import PluginConfig

Metric = Literal["ip", "cosine", "l2"]


class RetrieverConfig(PluginConfig):
    metric: Metric = pydantic.Field(
        "cosine",
        description="ip: inner product; cosine: inner product of unit vectors; l2: Euclidean distance",
    )


class Retriever(abc.ABC):
    """Subclass, set ``name`` and ``Config``, implement build/search/save/load (and optionally report).

    Scores: for ip and cosine, the similarity (higher is better); for l2, the
    Euclidean distance (lower is better). Either way results are ordered best first.
    """

    name: ClassVar[str]
    Config: ClassVar[type[RetrieverConfig]] = RetrieverConfig

    def __init__(self, config: RetrieverConfig):
        self.config = config

    @abc.abstractmethod
    def build(self, vectors: np.ndarray) -> None:
        """Index float32 ``vectors`` (n, d); row i becomes result id i."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores for each query row: two arrays of shape (q, k)."""

    @abc.abstractmethod
    def save(self, directory: Path) -> list[Path]:
        """Write the index into ``directory``; return the files written (they get checksums)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: Path, config: RetrieverConfig) -> "Retriever":
        """Read an index written by ``save``."""

    def report(self) -> dict[str, Any]:
        """Facts about the built index for the version's metrics (optional; none by default).

        Called after ``build``; the store keeps the dict, made of JSON values, in the version's
        ``metrics["index"]``, e.g. ``{"kind": "hnsw", "recall@10": 0.97, "sample": 1000}``.
        """
        return {}
