"""Where versions meet Feast: one FeatureView per published version.

Feast is imported lazily (it costs seconds and hundreds of MB), so the CLI's
help and plugin listing stay instant.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd

from embstore.errors import BackendUnavailableError, ConfigError, EmbstoreError, PublishError

if TYPE_CHECKING:
    from embstore.settings import StoreSettings

ONLINE_CHUNK_ROWS = 10_000


def feature_view_name(set_name: str, number: int) -> str:
    return f"{set_name}__v{number}"


def _connection_error(exc: BaseException) -> bool:
    """A lost or refused connection (redis, SQLAlchemy/psycopg, sqlite lock, OS), by class name so
    neither redis nor a database driver has to be imported."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectionError", "TimeoutError", "OperationalError", "InterfaceError"})


@contextmanager
def _reachable() -> Iterator[None]:
    """Turn a Feast backend that is down into one BackendUnavailableError line naming it."""
    try:
        yield
    except EmbstoreError:
        raise
    except Exception as exc:
        if "no such table" in str(exc):  # the SQLite online store lost its data, the server is fine
            raise EmbstoreError(
                f"Feast's online store has lost this version's table ({str(exc).strip()}); "
                "rewrite it with `embstore materialize REF`"
            ) from exc
        if not _connection_error(exc):
            raise
        module = type(exc).__module__
        what = ("online store (Redis)" if module.startswith("redis")
                else "registry (SQL database)" if module.startswith(("sqlalchemy", "psycopg"))
                else "backend")
        lines = str(exc).strip().splitlines()
        raise BackendUnavailableError(
            f"Feast {what} is unreachable: {lines[0] if lines else type(exc).__name__}; "
            "check that it is running (embstore doctor), then retry"
        ) from exc


def render_repo(repo: Path, settings: "StoreSettings") -> None:
    """Write HOME/feature_repo/feature_store.yaml for the configured backend.

    embedded: the packaged template (file registry, SQLite online store under repo/data).
    team: Feast's SQL registry in PostgreSQL schema ``<schema>_feast`` and its online store on Redis.
    """
    import yaml

    import embstore_feature_repo
    from embstore.registry import ensure_pg_schema
    from embstore.settings import redis_connection_string, with_search_path

    template = (Path(embstore_feature_repo.__file__).parent / "feature_store.yaml").read_text()
    data = repo / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(template.replace("{data}", str(data.resolve())))
    config["project"] = settings.project
    if isinstance(config.get("registry"), str):  # embedded file registry: written atomically (see below)
        config["registry"] = {"path": config["registry"], "registry_store_type": f"{__name__}.AtomicFileRegistryStore"}
    if settings.backend == "team":
        url = with_search_path(settings.postgres_url, settings.feast_schema())
        ensure_pg_schema(url)
        config["registry"] = {"registry_type": "sql", "path": url, "cache_ttl_seconds": 0,
                              "sqlalchemy_config_kwargs": {"pool_pre_ping": True}}
        config["online_store"] = {"type": "redis", "connection_string": redis_connection_string(settings.redis_url)}
    text = "# written by embstore from HOME/embstore.yaml; edit that file instead\n" + yaml.safe_dump(config, sort_keys=False)
    target = repo / "feature_store.yaml"
    if not target.exists() or target.read_text() != text:
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


def __getattr__(name: str):
    """Feast loads ``AtomicFileRegistryStore`` by its path; it is built on first use so that
    importing this module does not import Feast."""
    if name == "AtomicFileRegistryStore":
        return _atomic_file_registry_store()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# what embstore uses of Feast, imported together by _import_feast
_FEAST_MODULES = ("feast", "feast.types", "feast.utils", "feast.infra.registry.file", "feast.infra.registry.sql",
                  "feast.infra.online_stores.sqlite", "feast.infra.online_stores.redis",
                  "feast.infra.offline_stores.dask", "feast.infra.offline_stores.file_source")
_import_lock = threading.Lock()


def _import_feast() -> None:
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
            for name in _FEAST_MODULES:
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


_ATOMIC_STORE: list = []


def _atomic_file_registry_store() -> type:
    """Feast's file registry store, but written to a temp file and renamed into place: Feast's own
    truncates the file and rewrites it, so a concurrent reader can see half a registry and a
    publisher killed in the middle leaves it truncated (every feature view lost)."""
    if _ATOMIC_STORE:
        return _ATOMIC_STORE[0]
    import uuid

    _import_feast()
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

    _ATOMIC_STORE.append(AtomicFileRegistryStore)
    return AtomicFileRegistryStore


class FeastBackend:
    """Applies, writes and reads the FeatureViews of embstore versions in one Feast repo."""

    def __init__(self, repo: Path):
        self.repo = repo
        if not (repo / "feature_store.yaml").exists():
            raise ConfigError(f"no Feast repo at {repo} (feature_store.yaml missing); run `embstore init`")
        self._store = None

    @property
    def store(self):
        if self._store is None:
            logging.getLogger("feast").setLevel(logging.WARNING)
            _import_feast()
            from feast import FeatureStore

            self._store = FeatureStore(repo_path=str(self.repo))
        return self._store

    @contextmanager
    def _apply_lock(self) -> Iterator[None]:
        """Feast's file registry is read-modify-write: serialise appliers across processes."""
        with open(self.repo / ".apply.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def apply_version(self, set_name: str, number: int, entity: str, id_type: str, parquet: Path,
                      extras: dict[str, np.ndarray]) -> str:
        """Register the FeatureView pinned to this version; returns its name."""
        _import_feast()
        from feast import Entity, FeatureView, Field, FileSource, ValueType
        from feast.types import Array, Float32, Float64, Int64, String

        value_type = ValueType.INT64 if id_type == "int64" else ValueType.STRING
        name = feature_view_name(set_name, number)
        with self._apply_lock(), _reachable():
            existing = self.check_entity(entity, id_type)
            ent = existing or Entity(name=entity, join_keys=[entity], value_type=value_type)
            scalar = {"i": Int64, "u": Int64, "f": Float64}
            schema = [
                Field(name=entity, dtype=Int64 if id_type == "int64" else String),
                Field(name="embedding", dtype=Array(Float32)),
                Field(name="row", dtype=Int64),
            ]
            for col, arr in extras.items():
                kind = arr.dtype.kind
                if arr.ndim == 1 and kind in scalar:
                    schema.append(Field(name=col, dtype=scalar[kind]))
                elif arr.ndim == 2 and kind in "iuf":
                    schema.append(Field(name=col, dtype=Array(Int64 if kind in "iu" else Float32)))
                else:
                    raise PublishError(f"extra {col!r} has dtype {arr.dtype} and {arr.ndim} dims; Feast can't store it")
            source = FileSource(
                name=f"{name}__source",
                path=str(parquet.resolve()),
                timestamp_field="event_timestamp",
                created_timestamp_column="created_timestamp",
            )
            fv = FeatureView(
                name=name,
                entities=[ent],
                schema=schema,
                source=source,
                ttl=timedelta(0),
                online=True,
                tags={"embstore_set": set_name, "embstore_version": str(number)},
                description=f"embstore {set_name}@{number}",
            )
            self.store.apply([ent, source, fv])
        return name

    def check_entity(self, entity: str, id_type: str):
        """The existing Feast entity of that name, if any; PublishError if its id type differs."""
        _import_feast()
        from feast import ValueType

        value_type = ValueType.INT64 if id_type == "int64" else ValueType.STRING
        with _reachable():
            self.store.refresh_registry()
            try:
                existing = self.store.get_entity(entity)
            except Exception as exc:  # feast raises EntityNotFoundException
                if _connection_error(exc):
                    raise
                return None
        if existing.value_type not in (value_type, ValueType.UNKNOWN):
            raise PublishError(
                f"Feast entity {entity!r} holds {existing.value_type.name} ids but this version has "
                f"{id_type} ids; publish it under another entity name (--entity)"
            )
        return existing

    def write_online(self, name: str, frame: pd.DataFrame, progress=None) -> None:
        """Chunked writes (faster and leaner than materialize for whole-table loads)."""
        with _reachable():
            self.store.refresh_registry()  # the SQL registry's cache does not see our own apply
            for start in range(0, len(frame), ONLINE_CHUNK_ROWS):
                chunk = frame.iloc[start : start + ONLINE_CHUNK_ROWS]
                # not from the cache: a refresh that fails (registry briefly down) leaves it stale silently
                self.store.write_to_online_store(name, chunk, allow_registry_cache=False)
                if progress is not None:
                    progress(len(chunk))

    def restore_online(self, name: str, frame: pd.DataFrame, progress=None) -> None:
        """Recreate the view's online table if the store lost it, then write ``frame`` again."""
        with _reachable():
            fv = self.store.registry.get_feature_view(name, self.store.project, allow_cache=False)
            entities = [self.store.registry.get_entity(e, self.store.project, allow_cache=False) for e in fv.entities]
            self.store._get_provider().update_infra(
                self.store.project, tables_to_delete=[], tables_to_keep=[fv], entities_to_delete=[],
                entities_to_keep=entities, partial=True,
            )
        self.write_online(name, frame, progress=progress)

    def online_vectors(self, name: str, entity: str, ids: list) -> list:
        """Vectors as Feast's online store returns them (None for unknown ids)."""
        with _reachable():
            self.store.refresh_registry()
            rows = [{entity: i} for i in ids]
            out = self.store.get_online_features(features=[f"{name}:embedding"], entity_rows=rows).to_dict()
        return out["embedding"]

    def historical_rows(self, name: str, entity: str, pairs: pd.DataFrame) -> pd.Series:
        """Point-in-time join of each (id, event_timestamp) pair to its row in the version.

        ``pairs`` must be unique on (entity, event_timestamp) and carry a ``__pair``
        column; Feast's file store drops duplicate pairs and rows dated before the
        first feature row, so callers join the result back by ``__pair``.
        """
        with _reachable():
            self.store.refresh_registry()
            job = self.store.get_historical_features(
                entity_df=pairs, features=[f"{name}:row"], filter_by_created_timestamp=True
            )
            out = job.to_df()
        rows = pd.Series(out["row"].to_numpy(), index=out["__pair"].to_numpy())
        return rows

    def delete_version(self, set_name: str, number: int) -> None:
        name = feature_view_name(set_name, number)
        with self._apply_lock(), _reachable():
            self.store.refresh_registry()
            try:
                fv = self.store.get_feature_view(name)
            except Exception as exc:  # FeatureViewNotFoundException: nothing to delete
                if _connection_error(exc):
                    raise
                return
            # online rows first: Feast's SQL registry forgets the view at once, before the online
            # store is touched, so an online store that is down would strand the rows for good;
            # this way it fails while the view is still registered and the next gc finds both
            self.store._get_provider().update_infra(
                self.store.project, tables_to_delete=[fv], tables_to_keep=[], entities_to_delete=[],
                entities_to_keep=[], partial=True,
            )
            self.store.apply([], objects_to_delete=[fv], partial=False)

    def feature_view_names(self) -> list[str]:
        with _reachable():
            self.store.refresh_registry()
            return [fv.name for fv in self.store.list_feature_views()]
