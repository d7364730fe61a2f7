"""embstore: a plugin-based embedding feature store.

    from embstore import EmbeddingStore, Embeddings, Producer, hookimpl

The names below are imported on first use, so ``import embstore`` stays instant
and a plugin module that imports the contracts never loads the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "EmbeddingStore": "embstore.store",
    "Embeddings": "embstore.embeddings",
    "Producer": "embstore.producer",
    "Retriever": "embstore.retriever",
    "RetrieverConfig": "embstore.retriever",
    "Evaluator": "embstore.evaluator",
    "PluginConfig": "embstore.config",
    "hookimpl": "embstore.hookspecs",
    "Ref": "embstore.refs",
    "VersionInfo": "embstore.refs",
    "PinnedVersion": "embstore.versions.reader",
    "EmbstoreError": "embstore.errors",
    "ConfigError": "embstore.errors",
    "InputError": "embstore.errors",
    "EmbeddingsError": "embstore.errors",
    "NotFoundError": "embstore.errors",
    "UnknownIdsError": "embstore.errors",
    "PluginError": "embstore.errors",
    "IntegrityError": "embstore.errors",
    "PublishError": "embstore.errors",
    "BackendUnavailableError": "embstore.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embstore' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
