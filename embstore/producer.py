"""The producer contract: a named algorithm that turns inputs into Embeddings."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

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
    entity:    default join key of the sets it fills (``item_id``, ``node_id``, ``user_id``).

    ``fit`` must be deterministic for a fixed ``seed`` in the config where the
    underlying library allows it, and say in its docstring where it does not.
    Producers that can embed unseen entities also override ``infer``.
    """

    name: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    requires: ClassVar[frozenset[str]] = frozenset()
    accepts: ClassVar[frozenset[str]] = frozenset()
    entity: ClassVar[str] = "item_id"

    @abc.abstractmethod
    def fit(self, inputs: "Inputs", config: Any) -> Embeddings:
        """Train on ``inputs`` with a validated ``config`` and return the vectors."""

    def infer(self, state: Any, inputs: "Inputs", config: Any) -> Embeddings:  # pragma: no cover
        raise NotImplementedError(f"producer {self.name!r} cannot embed unseen entities")
