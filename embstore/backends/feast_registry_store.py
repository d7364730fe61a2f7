"""Feast's file registry, written atomically: the embedded repo's registry store.

Feast's own FileRegistryStore truncates the registry file and rewrites it, so a
concurrent reader can see half a registry and a publisher killed in the middle
leaves it truncated (every feature view lost). This one writes a temporary file
and renames it into place. Feast loads it by the class path in feature_store.yaml
(``embstore.feast_store.AtomicFileRegistryStore``, which re-exports it).
"""

from __future__ import annotations

import os

from embstore.backends.feast_import import import_feast

_BUILT: list = []


def atomic_file_registry_store() -> type:
    """The class, built once: it subclasses Feast's, so Feast is imported only when it is asked for."""
    if _BUILT:
        return _BUILT[0]
    import uuid

    import_feast()
    from feast.infra.registry.file import FileRegistryStore
    from feast.utils import _utc_now

    class AtomicFileRegistryStore(FileRegistryStore):
        def _write_registry(self, registry_proto) -> None:
            registry_proto.version_id = str(uuid.uuid4())
            registry_proto.last_updated.FromDatetime(_utc_now())
            self._filepath.parent.mkdir(exist_ok=True)
            tmp = self._filepath.with_name(f".{self._filepath.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(registry_proto.SerializeToString())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._filepath)

    _BUILT.append(AtomicFileRegistryStore)
    return AtomicFileRegistryStore


def __getattr__(name: str):
    """``AtomicFileRegistryStore`` is built on first use, so importing this module does not import Feast."""
    if name == "AtomicFileRegistryStore":
        return atomic_file_registry_store()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
