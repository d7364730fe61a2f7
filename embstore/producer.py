"""The producer contract: a named algorithm that turns inputs into Embeddings."""

from __future__ import annotations

import abc
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

    @abc.abstractmethod
    def fit(self, inputs: "Inputs", config: Any) -> Embeddings | Mapping[str, Embeddings]:
        """Train on ``inputs`` with a validated ``config`` and return the vectors
        (a mapping role → Embeddings when ``entities`` is set)."""

    def infer(self, state: Any, inputs: "Inputs", config: Any) -> Embeddings:  # pragma: no cover
        raise NotImplementedError(f"producer {self.name!r} cannot embed unseen entities")
