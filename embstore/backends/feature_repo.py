"""The Feast feature repo of a store: one FeatureView per published version.

Rendered from the backend's settings (``render_repo``), then driven through
Feast's own API (``FeatureRepo``): apply a version's view, write and read its
online rows, run point-in-time joins, delete a failed version's view. Feast is
imported on first use (embstore.backends.feast_import).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import pandas as pd

from embstore.backends.feast_import import import_feast

MANIFEST = "embstore_objects.json"
DEFINITIONS = "embstore_definitions.py"
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


def feature_service_name(set_name: str, alias: str) -> str:
    return f"{set_name}__{alias}"


def feature_type(values: np.ndarray) -> str:
    """The Feast type of a per-row extra (``embstore_definitions.FEATURE_TYPES``)."""
    kind = values.dtype.kind
    if values.ndim == 1 and kind in "iuf":
        return "float64" if kind == "f" else "int64"
    if values.ndim == 2 and kind in "iuf":
        return "array<float32>" if kind == "f" else "array<int64>"
    raise PublishError(f"an extra of dtype {values.dtype} and {values.ndim} dims cannot be a Feast feature")


def render_repo(repo: Path, project: str, backend: "Backend", offline_store: dict | None = None) -> bool:
    """Write HOME/feature_repo/feature_store.yaml (the packaged template with the backend's
    ``registry`` and ``online_store`` entries) and the Feast definitions module, rewriting only
    what changed. True when the repo's Feast registry moved (a home of embstore 0.1, whose
    embedded registry was a file, now has a SQL registry that must be filled)."""
    import yaml

    import embstore_feature_repo

    template_dir = Path(embstore_feature_repo.__file__).parent
    data = (repo / "data").resolve()
    data.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((template_dir / "feature_store.yaml").read_text().replace("{data}", str(data)))
    config["project"] = project
    config.update(backend.feast_config(data))  # the template's keys keep their places
    if offline_store is not None:
        config["offline_store"] = offline_store
    backend.prepare()
    target = repo / "feature_store.yaml"
    before = yaml.safe_load(target.read_text()) if target.exists() else None
    text = "# written by embstore from HOME/embstore.yaml; edit that file instead\n" + yaml.safe_dump(config, sort_keys=False)
    _write_if_changed(target, text)
    _write_if_changed(repo / DEFINITIONS, (template_dir / DEFINITIONS).read_text())
    return before is not None and before.get("registry") != config["registry"]


def _write_if_changed(target: Path, text: str) -> None:
    if not target.exists() or target.read_text() != text:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


def _definitions():
    """The definitions module Feast reads from the repo, as packaged (its ``objects`` builds the
    Feast objects of a manifest, for embstore and ``feast apply`` alike)."""
    import_feast()
    from embstore_feature_repo import embstore_definitions

    return embstore_definitions


class FeatureRepo:
    """Applies, writes and reads the FeatureViews and FeatureServices of embstore versions in one
    Feast repo, keeping the repo's manifest (``embstore_objects.json``) equal to Feast's registry."""

    def __init__(self, repo: Path, backend: "Backend | None" = None):
        self.repo = repo
        self.backend = backend
        if not (repo / "feature_store.yaml").exists():
            raise ConfigError(f"no Feast repo at {repo} (feature_store.yaml missing); run `embstore init`")
        self._store = None

    @property
    def store(self):
        if self._store is None:
            logging.getLogger("feast").setLevel(logging.WARNING)
            import_feast()
            from feast import FeatureStore

            store = FeatureStore(repo_path=str(self.repo))
            with self.backend.feast_init_lock(self.repo) if self.backend else contextlib.nullcontext(), _reachable():
                store.registry  # Feast creates its registry tables here: once, not racing other processes
            self._store = store
        return self._store

    def _apply_lock(self):
        """The manifest and Feast's registry change together: serialise appliers across processes."""
        from filelock import FileLock

        return FileLock(self.repo / ".apply.lock")

    # -- the manifest ----------------------------------------------------------

    def manifest(self) -> dict:
        """What the repo's definitions list: entities, views and services by name."""
        path = self.repo / MANIFEST
        found = json.loads(path.read_text()) if path.exists() else {}
        return {key: dict(found.get(key, {})) for key in ("entities", "views", "services")}

    def _write_manifest(self, manifest: dict) -> None:
        _write_if_changed(self.repo / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    def _apply(self, manifest: dict, names: list[str], delete: list = ()) -> None:
        """Apply the manifest's objects ``names`` (``view:x``...) to Feast, delete ``delete``, then
        write the manifest."""
        built = _definitions().objects(manifest)
        objects = [built[n] for n in names]
        if objects or delete:
            self.store.apply(objects, objects_to_delete=list(delete), partial=True)
            self._record_infra()
        self._write_manifest(manifest)

    def _record_infra(self) -> None:
        """Record in Feast's registry the online tables its views need, as ``feast apply`` does, so
        that ``feast plan`` in the repo finds nothing to create."""
        store = self.store
        store.registry.refresh(project=store.project)
        infra = store._get_provider().plan_infra(store.config, store.registry.proto())
        store.registry.update_infra(infra, store.project, commit=True)

    # -- versions and aliases --------------------------------------------------

    def apply_version(self, set_name: str, number: int, entity: str, id_type: str, parquet: Path,
                      extras: dict[str, np.ndarray]) -> str:
        """Register the FeatureView pinned to this version; returns its name."""
        features = [["embedding", "array<float32>"]] + [[col, feature_type(arr)] for col, arr in extras.items()]
        return self.add_view(set_name, number, entity, id_type, str(Path(parquet).resolve()), features)

    def add_view(self, set_name: str, number: int, entity: str, id_type: str, source: str,
                 features: list[list[str]]) -> str:
        name = feature_view_name(set_name, number)
        with self._apply_lock(), _reachable():
            self.check_entity(entity, id_type)
            manifest = self.manifest()
            manifest["entities"].setdefault(entity, {"id_type": id_type})
            manifest["views"][name] = {"set": set_name, "version": number, "entity": entity, "source": source,
                                       "features": features, **self.source_kind()}
            self._apply(manifest, [f"entity:{entity}", f"view:{name}"])
        return name

    def config(self) -> dict:
        import yaml

        return yaml.safe_load((self.repo / "feature_store.yaml").read_text()) or {}

    def online_store_type(self) -> str:
        return str((self.config().get("online_store") or {}).get("type", "sqlite"))

    def source_kind(self) -> dict:
        """How the repo's views read their offline rows: Feast's file source, or a Spark source when
        the repo's offline store is Spark (a home on the spark engine), as the manifest records it."""
        offline = self.config().get("offline_store") or {}
        return {"source_kind": "spark"} if offline.get("type") == "spark" else {}

    def follow_aliases(self, set_name: str, current: Callable[[], dict[str, str]]) -> None:
        """Make the set's FeatureServices ``<set>__<alias>`` name exactly ``current()`` (alias -> view),
        read under the lock: of two processes moving aliases at once, the one that writes last has
        read the registry last, so Feast ends where the registry is."""
        with self._apply_lock(), _reachable():
            aliases = current()
            manifest = self.manifest()
            services = manifest["services"]
            wanted = {feature_service_name(set_name, a): {"set": set_name, "alias": a, "view": view}
                      for a, view in aliases.items() if view in manifest["views"]}
            gone = [n for n, spec in services.items() if spec["set"] == set_name and n not in wanted]
            changed = [n for n, spec in wanted.items() if services.get(n) != spec]
            if not changed and not gone:
                return
            stale = [self.store.get_feature_service(n) for n in gone]
            for n in gone:
                services.pop(n)
            services.update(wanted)
            self._apply(manifest, [f"service:{n}" for n in changed], delete=stale)

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
        """Write ``frame`` (a version's offline rows) into the view's online rows: in bulk, exactly as
        Feast would (embstore.backends.online_rows: one transaction on SQLite, pipelined on Redis);
        through Feast's own ``write_to_online_store`` for an online store it has no bulk writer for."""
        from embstore.backends.online_rows import UnsupportedOnlineStore, online_writer

        with _reachable():
            self.store.refresh_registry()  # the SQL registry's cache does not see our own apply
            try:
                writer = online_writer(self.store)
            except UnsupportedOnlineStore as exc:
                logging.getLogger(__name__).warning("%s; writing online rows through Feast's write_to_online_store "
                                                    "(slower)", exc)
            else:
                fv = self.store.registry.get_feature_view(name, self.store.project, allow_cache=False)
                try:
                    writer.write(fv, frame, progress=progress)
                    return
                except UnsupportedOnlineStore as exc:
                    logging.getLogger(__name__).warning("%s; writing online rows through Feast's "
                                                        "write_to_online_store (slower)", exc)
            self._write_online_through_feast(name, frame, progress)

    def _write_online_through_feast(self, name: str, frame: pd.DataFrame, progress=None) -> None:
        """Feast's own path, in chunks (faster and leaner than materialize for whole-table loads)."""
        for start in range(0, len(frame), ONLINE_CHUNK_ROWS):
            chunk = frame.iloc[start : start + ONLINE_CHUNK_ROWS]
            # Feast converts only the first record batch of a chunk: give it plain numpy/object columns
            chunk = chunk.astype({c: object for c, t in chunk.dtypes.items() if isinstance(t, pd.ArrowDtype)})
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

    def delete_version(self, set_name: str, number: int) -> None:
        """Remove a (failed) version's view, online rows first, and its manifest entry."""
        name = feature_view_name(set_name, number)
        with self._apply_lock(), _reachable():
            self.store.refresh_registry()
            manifest = self.manifest()
            try:
                fv = self.store.get_feature_view(name)
            except Exception as exc:  # FeatureViewNotFoundException: nothing in Feast to delete
                if _connection_error(exc):
                    raise
                fv = None
            if fv is not None:
                # online rows first: Feast's SQL registry forgets the view at once, before the online
                # store is touched, so an online store that is down would strand the rows for good;
                # this way it fails while the view is still registered and the next gc finds both
                self.store._get_provider().update_infra(
                    self.store.project, tables_to_delete=[fv], tables_to_keep=[], entities_to_delete=[],
                    entities_to_keep=[], partial=True,
                )
                self.store.apply([], objects_to_delete=[fv], partial=False)
                self._record_infra()
            manifest["views"].pop(name, None)
            self._write_manifest(manifest)

    def rebuild(self, manifest: dict) -> list[str]:
        """Make Feast's registry and the repo's manifest hold exactly ``manifest``'s embstore objects
        (views, services, entities); embstore-tagged objects it does not list are deleted. Returns
        what changed, one line each (empty when they already agreed)."""
        with self._apply_lock(), _reachable():
            self.store.refresh_registry()
            built = _definitions().objects(manifest)
            have = {**{f"view:{v.name}": v for v in self.store.list_feature_views() if "embstore_set" in (v.tags or {})},
                    **{f"service:{s.name}": s for s in self.store.list_feature_services()
                       if "embstore_set" in (s.tags or {})}}
            have_entities = {f"entity:{e.name}" for e in self.store.list_entities()}
            apply = [n for n, obj in built.items()
                     if (n not in have_entities if n.startswith("entity:") else have.get(n) != obj)]
            delete = [n for n in have if n not in built]
            if apply or delete:
                self.store.apply([built[n] for n in apply], objects_to_delete=[have[n] for n in delete], partial=True)
            self._record_infra()
            before = self.manifest()
            self._write_manifest(manifest)
        return ([f"applied {n}" for n in apply] + [f"deleted {n}" for n in delete]
                + (["rewrote the manifest"] if before != manifest else []))

    def feature_services(self) -> dict:
        """Every feature service in the repo's registry, by name."""
        with _reachable():
            self.store.refresh_registry()
            return {fs.name: fs for fs in self.store.list_feature_services()}

    def feature_views(self) -> dict:
        """Every feature view in the repo's registry, by name (embstore's and any others)."""
        with _reachable():
            self.store.refresh_registry()
            return {fv.name: fv for fv in self.store.list_feature_views()}

    def feature_view_names(self) -> list[str]:
        return list(self.feature_views())
