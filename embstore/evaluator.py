"""The evaluator contract: a named check that scores a published version for quality gates.

An evaluator reads a version through the store it is handed (``StoreView``: the
public read API of ``EmbeddingStore``) and returns metrics by name; gates on those
metrics decide whether an alias may move to the version (``embstore.versions.gates``).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Protocol

from embstore.config import PluginConfig

if TYPE_CHECKING:
    import numpy as np

    from embstore.refs import VersionInfo


class StoreView(Protocol):
    """What an evaluator may call on the store it is given (all read-only)."""

    def resolve(self, ref: Any) -> "VersionInfo": ...

    def vectors(self, ref: Any, ids: Iterable[Any], *, allow_missing: bool = False) -> Any: ...

    def recall(self, ref: Any, ids: Any = None, vectors: "np.ndarray | None" = None, k: int = 10,
               exclude: Iterable[Any] | None = None, *, exclude_query: bool = True) -> list: ...

    def diff(self, a: Any, b: Any, **options: Any) -> dict: ...


class Evaluator(abc.ABC):
    """Subclass, set ``name`` and ``Config``, implement ``evaluate``; register via ``register_evaluators``.

    name:    unique evaluator name, used as ``--evaluate NAME:KEY=VALUE,...`` and in pipeline files.
    Config:  a PluginConfig subclass; validated before any training, unknown keys are errors.
    reads:   the input kind of the file its config's ``path`` names (e.g. "interactions"), when it has
             a ``columns`` option: a run's ``--column`` mapping of that kind is then its default, so
             the held-out file of a run needs no mapping of its own.

    ``evaluate(store, version, config)`` reads the published ``version`` (a VersionInfo)
    through the store's public API (``store.vectors``, ``store.recall``, ``store.resolve``,
    ``store.diff``) and returns metrics by name, e.g. ``{"hr@10": 0.071, "ndcg@10": 0.034}``:
    plain numbers, or None for "does not apply this time". The names are what gates refer to,
    so keep them stable and distinct from other evaluators'. It must not change the version.
    """

    name: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    reads: ClassVar[str | None] = None

    @abc.abstractmethod
    def evaluate(self, store: StoreView, version: "VersionInfo", config: Any) -> dict[str, float | None]:
        """Score ``version``; return metric name → value (None: not applicable)."""
