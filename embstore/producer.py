"""The producer contract: a named algorithm that turns inputs into Embeddings."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings

if TYPE_CHECKING:
    from embstore.inputs import Inputs


class Producer(abc.ABC):
    """Subclass, set the class attributes, implement ``fit``; register via ``register_producers``.

    name:      unique producer name used on the CLI (``embstore run NAME``).
    Config:    a PluginConfig subclass; every option with a default and a description.
    requires:  input kinds that must be given (interactions, edges, side_info, features, table).
    accepts:   further input kinds that are used when given.
    entity:    default join key of the set it fills (``item_id``, ``node_id``, ``user_id``).
    entities:  for producers that embed several entity kinds in one space (FM's users and
               items): role → join key, e.g. {"user": "user_id", "item": "item_id"}. ``fit``
               then returns {role: Embeddings}; each role is published as set ``<set>_<role>``
               and their aliases move together, so user@prod and item@prod always match.
    retriever_defaults: index options this producer's vectors call for, under the user's own
               ``--retriever-config`` (FM sets metric=ip: its inner product is the model's logit).
    ``fit`` may take a keyword ``progress`` (bool): the store passes whether to draw bars.

    ``fit`` must be deterministic for a fixed ``seed`` in the config where the
    underlying library allows it, and say in its docstring where it does not.
    Producers that can embed unseen entities also override ``infer``.
    """

    name: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    requires: ClassVar[frozenset[str]] = frozenset()
    accepts: ClassVar[frozenset[str]] = frozenset()
    entity: ClassVar[str] = "item_id"
    entities: ClassVar[Mapping[str, str] | None] = None
    retriever_defaults: ClassVar[Mapping[str, Any]] = {}  # e.g. {"metric": "ip"} when scores are inner products

    @abc.abstractmethod
    def fit(self, inputs: "Inputs", config: Any) -> Embeddings | Mapping[str, Embeddings]:
        """Train on ``inputs`` with a validated ``config`` and return the vectors
        (a mapping role → Embeddings when ``entities`` is set)."""

    def infer(self, state: Any, inputs: "Inputs", config: Any) -> Embeddings:
        """Embed entities unseen in training (cold start) from ``inputs``, using the ``state``
        that ``fit`` returned in ``Embeddings.state`` (read back by ``load_state``)."""
        from embstore.errors import PluginError

        raise PluginError(f"producer {self.name!r} cannot embed unseen entities (it has no infer)")

    @classmethod
    def can_infer(cls) -> bool:
        return cls.infer is not Producer.infer

    @classmethod
    def save_state(cls, state: Any, directory: Path) -> list[Path]:
        """Write ``state`` into ``directory``; the files get checksums. Default: torch.save when
        torch is installed (tensors, state dicts), else pickle."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "state.pt"
        try:
            import torch

            torch.save(state, path)
        except ImportError:
            import pickle

            path.write_bytes(pickle.dumps(state, protocol=5))
        return [path]

    @classmethod
    def load_state(cls, directory: Path) -> Any:
        path = directory / "state.pt"
        try:
            import torch

            return torch.load(path, weights_only=False)
        except ImportError:
            import pickle

            return pickle.loads(path.read_bytes())
