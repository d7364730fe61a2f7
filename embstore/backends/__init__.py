"""Backends by configuration: ``backend: embedded``, ``backend: team`` or ``backend: package.module:Class``.

    backend = open_backend(settings, home)      # validated: a missing setting is one ConfigError
    backend.registry_url(); backend.feast_config(data_dir)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from embstore.backends.base import Backend
from embstore.errors import ConfigError

if TYPE_CHECKING:
    from embstore.settings import StoreSettings

BUILT_IN = {"embedded": "embstore.backends.embedded:EmbeddedBackend", "team": "embstore.backends.team:TeamBackend"}


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass a ``backend`` setting names (a built-in name or a class path)."""
    path = BUILT_IN.get(name, name)
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, sep, attr = path.rpartition(".")
    if not sep or not module_name or not attr:
        raise ConfigError(f"backend {name!r} is not {', '.join(BUILT_IN)} or a class path package.module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"backend {name!r}: cannot load {path}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(f"backend {name!r}: {path} is not an embstore.backends.Backend subclass")
    return cls


def open_backend(settings: "StoreSettings", home: Path) -> Backend:
    return backend_class(settings.backend)(settings, home)


__all__ = ["Backend", "BUILT_IN", "backend_class", "open_backend"]
