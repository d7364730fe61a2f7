"""Importing Feast at a fraction of its own start-up cost (typeguard off, torch deferred).

Feast costs seconds and hundreds of MB to import, so embstore imports it only where
it is used (``import_feast()``): the CLI's help, plugin listing and the read path
never pay for it.
"""

from __future__ import annotations

import sys
import threading

# what embstore uses of Feast, imported together by import_feast
FEAST_MODULES = ("feast", "feast.types", "feast.utils", "feast.infra.registry.file", "feast.infra.registry.sql",
                 "feast.infra.online_stores.sqlite", "feast.infra.online_stores.redis",
                 "feast.infra.offline_stores.dask", "feast.infra.offline_stores.file_source")
_import_lock = threading.Lock()


def import_feast() -> None:
    """Import Feast without typeguard instrumenting it and without torch. Feast wraps its classes
    in typeguard's ``@typechecked``, which parses their source when Feast is imported: about 2.5 s
    of every process that touches Feast. The checks only guard arguments of Feast constructors,
    which embstore builds itself. typeguard is restored as soon as these modules are in, so code
    of the user's own that uses ``@typechecked`` is untouched. Torch: see _lazy_torch_wrapper."""
    if "feast" in sys.modules:
        return
    import importlib

    import typeguard

    with _import_lock:
        if "feast" in sys.modules:
            return
        real = typeguard.typechecked

        def unchecked(target=None, **_options):
            return (lambda t: t) if target is None else target

        typeguard.typechecked = unchecked
        sys.modules.setdefault("feast.torch_wrapper", _lazy_torch_wrapper())
        try:
            for name in FEAST_MODULES:
                importlib.import_module(name)
            feast = sys.modules["feast"]
            if not hasattr(feast, "torch_wrapper"):  # what the import system does for a loaded submodule
                feast.torch_wrapper = sys.modules["feast.torch_wrapper"]
        finally:
            typeguard.typechecked = real


def _lazy_torch_wrapper():
    """Feast's ``feast.torch_wrapper`` (pinned 0.67) imports torch when Feast is imported, 1.5 s,
    only to offer ``get_torch()`` to tensor conversions embstore never calls; this one imports
    torch when ``get_torch`` is called."""
    import importlib.util
    import types

    module = types.ModuleType("feast.torch_wrapper", "torch for Feast, imported on first use (embstore)")

    def get_torch():
        import torch

        return torch

    module.get_torch = get_torch
    module.TORCH_AVAILABLE = importlib.util.find_spec("torch") is not None
    return module
