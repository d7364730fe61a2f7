"""The retriever contract: a nearest-neighbour index over one version's vectors.

A retriever knows rows, not ids: row i is the i-th vector of the version, and
the store maps rows to ids. Results come best first; ``-1`` marks an empty slot
when fewer than k neighbours exist.

A retriever whose index can be filled in pieces on other machines also implements
``ShardedBuild`` (optional): an engine with executors (the spark engine) then trains it on
the driver, fills one shard per piece of the rows where the rows are, and has it merge
the shards into the index directory.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Sequence

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

    build_threads: int | None = None  # set by the publisher, which builds beside the version's writes: the
    # threads ``build`` may use (a retriever that runs threads should stay within it); None: its own choice

    def __init__(self, config: RetrieverConfig):
        self.config = config

    @abc.abstractmethod
    def build(self, vectors: np.ndarray) -> None:
        """Index float32 ``vectors`` (n, d); row i becomes result id i."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores for each query row: two arrays of shape (q, k)."""

    def search_rows(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Optional: ``search`` with the indexed vectors at ``rows`` (int64) as the queries, read from
        the index itself; None (the default) when it keeps none to read, and the store then passes
        the vectors to ``search``. Recall by id takes this path."""
        return None

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


class ShardedBuild(abc.ABC):
    """Optional capability of a Retriever: an index trained on a sample, filled shard by shard
    where the rows are (one shard per piece of them, on any machine), and merged on disk.

    The engine calls, in order: ``shardable(count, dim)`` (does this config give such an index
    for a version of this size?), ``training_rows(count)`` (which rows to train on),
    ``train_for_shards(sample, count)`` on the driver (the trained, empty index as bytes, sent
    to every executor), ``fill_shard(trained, pieces, path)`` once per shard wherever its rows
    are (a fresh copy of the retriever, unpickled there), and ``merge_shards(trained, paths,
    directory, vectors)`` on the driver, which writes the index files (each gets a checksum)
    and leaves the retriever built, so ``report()`` and ``search`` answer as after ``build``.
    Shard files are the engine's to place and remove.
    """

    @abc.abstractmethod
    def shardable(self, count: int, dim: int) -> bool:
        """True when this config gives ``count`` vectors of ``dim`` an index that can be built in shards."""

    @abc.abstractmethod
    def training_rows(self, count: int) -> np.ndarray:
        """The rows (sorted int64 row numbers) whose vectors ``train_for_shards`` needs."""

    @abc.abstractmethod
    def train_for_shards(self, sample: np.ndarray, count: int) -> bytes:
        """Train on ``sample`` (the vectors of ``training_rows(count)``); the empty trained index."""

    @abc.abstractmethod
    def fill_shard(self, trained: bytes, pieces: Iterable[tuple[np.ndarray, np.ndarray]], path: Path,
                   threads: int | None = None) -> int:
        """Add each piece's (rows, vectors) to a copy of ``trained``, the rows as result ids, and
        write it to ``path``; returns the rows added. ``threads``: cores this shard may use."""

    @abc.abstractmethod
    def merge_shards(self, trained: bytes, paths: Sequence[Path], directory: Path,
                     vectors: np.ndarray | None) -> list[Path]:
        """Merge the shards at ``paths`` into the index files in ``directory``; returns the files
        written. ``vectors`` (all rows, when the caller holds them) measure recall against exact
        search as ``build`` does."""
