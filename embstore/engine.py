"""The engine contract: where a run reads its inputs and trains, and who writes its Feast rows.

The ``local`` engine (the default) does everything in this process; the ``spark`` engine
reads lake-scale inputs and trains on a Spark cluster. An engine registers through the
``register_engines`` hook like producers and retrievers, and is chosen per home
(``engine:`` and ``engine_config:`` in HOME/embstore.yaml, ``embstore init --engine``)
or per run (``embstore run --engine``). Whatever the engine, a version goes through
the same publication (embstore.versions.publishing): numbers, valid-from, aliases and
all or nothing; an engine may write the version's offline data and online rows itself
(``writers``), e.g. from a cluster's executors, and build its index there when the
retriever can be built in shards (embstore.retriever.ShardedBuild).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping, Protocol, Sequence

from embstore.config import PluginConfig

if TYPE_CHECKING:
    import pandas as pd

    from embstore.embeddings import Embeddings
    from embstore.inputs import InputSpec
    from embstore.producer import Producer
    from embstore.retriever import Retriever


class RunInputs(Protocol):
    """What a run needs of its inputs on any engine (``embstore.inputs.Inputs`` is the local one)."""

    @property
    def kinds(self) -> frozenset[str]: ...

    def require(self, kinds: Iterable[str], producer: str) -> None: ...

    def reject_unused(self, kinds_allowed: Iterable[str], producer: str) -> None: ...

    def column_maps(self) -> dict[str, dict[str, str]]: ...

    def before(self, until: "pd.Timestamp") -> "RunInputs": ...

    def newest_time(self) -> "pd.Timestamp | None": ...

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class OfflineData:
    """What a writer made of a version's offline rows: the files (under the version's directory,
    each gets a checksum) and the location Feast's source reads (a file or a dataset directory)."""

    files: Sequence[Path]
    location: Path


class VersionWriters(abc.ABC):
    """Writes a version's Feast rows somewhere other than this process (a cluster's executors)."""

    def check(self, online_store: str) -> None:
        """Refuse, before anything is trained, an online store (its feature_store.yaml type) these
        writers cannot write to."""

    @abc.abstractmethod
    def write_offline(self, emb: "Embeddings", entity: str, valid_from: Any, directory: Path) -> OfflineData:
        """Write the version's offline rows (the columns of embstore.backends.files.offline_frame)."""

    @abc.abstractmethod
    def write_online(self, feature_view: str, emb: "Embeddings", entity: str, valid_from: Any,
                     progress=None) -> None:
        """Write the version's online rows, exactly as Feast's online store holds them."""

    def builds_index(self, retriever: "Retriever", count: int, dim: int) -> bool:
        """True when ``build_index`` builds this version's index (asked before the offline step; by
        default never: the store builds it in this process with ``retriever.build``)."""
        return False

    def build_index(self, retriever: "Retriever", emb: "Embeddings", entity: str, valid_from: Any,
                    directory: Path, staging: Path) -> list[Path]:
        """Build the index into ``directory`` (called in the index step, after the online rows) and
        return its files, leaving ``retriever`` built (its ``report()`` goes into the version's
        metrics). ``staging`` is an empty directory in the version's directory for intermediate
        files; the store removes it afterwards, whatever happened."""
        raise NotImplementedError(f"{type(self).__name__} says builds_index but has no build_index")


class Engine(abc.ABC):
    """Subclass, set ``name`` and ``Config``, implement ``inputs`` and ``fit``; register via
    ``register_engines``.

    ``inputs(specs)`` opens a run's inputs (files, or for a cluster engine datasets:
    directories, globs, partitions); ``fit(producer, inputs, config)`` trains and returns
    what the producer's ``fit`` returns (Embeddings, or {role: Embeddings}), on whatever
    machines the engine uses. ``writers()`` may return VersionWriters for the version's
    offline data and online rows; None (the default) lets the store write them.
    """

    name: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig, home: Path):
        self.config = config
        self.home = home

    @abc.abstractmethod
    def inputs(self, specs: Sequence["InputSpec"]) -> RunInputs:
        """The run's inputs, validated as far as can be before training."""

    @abc.abstractmethod
    def fit(self, producer: type["Producer"], inputs: RunInputs, config: Any, progress: bool) -> Any:
        """Train ``producer`` with its validated ``config`` on ``inputs``."""

    def writers(self, repo: Path) -> VersionWriters | None:
        """Writers of the versions' Feast rows in the feature repo at ``repo``; None: the store writes them."""
        return None

    def feast_offline_store(self) -> dict[str, Any]:
        """The ``offline_store`` entry of the repo's feature_store.yaml: where Feast's historical
        joins of the views run (the file offline store by default)."""
        return {"type": "file"}

    def close(self) -> None:
        """Release what the engine holds (a Spark session)."""
