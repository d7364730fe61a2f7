"""The Feast feature repo of a store: one FeatureView per published version.

Rendered from the backend's settings (``render_repo``), then driven through
Feast's own API (``FeatureRepo``): apply a version's view, write and read its
online rows, run point-in-time joins, delete a failed version's view. Feast is
imported on first use (embstore.backends.feast_import).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd

from embstore.backends.feast_import import import_feast
from embstore.errors import BackendUnavailableError, ConfigError, EmbstoreError, PublishError, first_line

if TYPE_CHECKING:
    from embstore.backends.base import Backend

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
        raise BackendUnavailableError(
            f"Feast {what} is unreachable: {first_line(exc)}; "
            "check that it is running (embstore doctor), then retry"
        ) from exc


def render_repo(repo: Path, project: str, backend: "Backend") -> None:
    """Write HOME/feature_repo/feature_store.yaml: the packaged template with the backend's
    ``registry`` and ``online_store`` entries (rewritten only when it changes)."""
    import yaml

    import embstore_feature_repo

    template = (Path(embstore_feature_repo.__file__).parent / "feature_store.yaml").read_text()
    data = (repo / "data").resolve()
    data.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(template.replace("{data}", str(data)))
    config["project"] = project
    config.update(backend.feast_config(data))  # the template's keys keep their places
    backend.prepare()
    text = "# written by embstore from HOME/embstore.yaml; edit that file instead\n" + yaml.safe_dump(config, sort_keys=False)
    target = repo / "feature_store.yaml"
    if not target.exists() or target.read_text() != text:
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


class FeatureRepo:
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
            import_feast()
            from feast import FeatureStore

            self._store = FeatureStore(repo_path=str(self.repo))
        return self._store

    def _apply_lock(self):
        """Feast's file registry is read-modify-write: serialise appliers across processes."""
        from filelock import FileLock

        return FileLock(self.repo / ".apply.lock")

    def apply_version(self, set_name: str, number: int, entity: str, id_type: str, parquet: Path,
                      extras: dict[str, np.ndarray]) -> str:
        """Register the FeatureView pinned to this version; returns its name."""
        import_feast()
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
        import_feast()
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

    def feature_views(self) -> dict:
        """Every feature view in the repo's registry, by name (embstore's and any others)."""
        with _reachable():
            self.store.refresh_registry()
            return {fv.name: fv for fv in self.store.list_feature_views()}

    def feature_view_names(self) -> list[str]:
        return list(self.feature_views())
