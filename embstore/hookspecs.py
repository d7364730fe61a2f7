"""The whole extension surface of embstore.

Built-in plugins (embstore_plugins.*) and a team's own package register through
these same hooks and the same ``embstore`` entry-point group. Registration is by
callback: a plugin calls ``register(cls)`` once for each thing it offers.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("embstore")
hookimpl = pluggy.HookimplMarker("embstore")


@hookspec
def register_producers(register: Callable[[type], None]) -> None:
    """Register Producer subclasses: ``register(MyProducer)`` for each."""


@hookspec
def register_retrievers(register: Callable[[type], None]) -> None:
    """Register Retriever subclasses: ``register(MyRetriever)`` for each."""


@hookspec
def register_engines(register: Callable[[type], None]) -> None:
    """Register Engine subclasses (embstore.engine): ``register(MyEngine)`` for each.

    An engine reads a run's inputs and trains its producer, in this process (``local``) or on
    a cluster (``spark``); every version still goes through the store's publication."""


@hookspec
def register_evaluators(register: Callable[[type], None]) -> None:
    """Register Evaluator subclasses (embstore.evaluator): ``register(MyEvaluator)`` for each.

    An evaluator scores a published version (``evaluate(store, version, config) -> {metric: value}``);
    quality gates on those metrics decide whether an alias may move to the version."""
