"""EmbeddingStore: the one entry object of the Python API.

    store = EmbeddingStore.init("~/emb")          # or EmbeddingStore("~/emb")
    ref = store.run("item2vec", "item_item2vec", {"interactions": "ratings.csv"}, promote="prod")
    store.recall("item_item2vec@prod", ids=[1], k=10)
    store.join(training_rows, "item_item2vec@prod")
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from embstore import storage
from embstore.config import parse_config
from embstore.embeddings import Embeddings
from embstore.ids import id_type_of
from embstore.errors import (
    ConfigError,
    EmbeddingsError,
    EmbstoreError,
    InputError,
    IntegrityError,
    PublishError,
    UnknownIdsError,
)
from embstore.feast_store import FeastBackend, render_repo
from embstore.progress import Steps, bar
from embstore.refs import Ref, check_alias_name, check_set_name
from embstore.registry import Registry, VersionInfo
from embstore.settings import StoreSettings, load_settings, resolve_home, write_default_settings

PUBLISH_STEPS = ("validate", "files", "offline", "feast_apply", "online", "index", "publish")
FAULT_ENV = "EMBSTORE_FAULT_AFTER"  # test hook: "step" or "step:raise"; kills the process after that step


def _fault_after(step: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, _, mode = spec.partition(":")
    if target == step:
        if mode == "raise":
            raise RuntimeError(f"injected fault after step {step!r}")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Vectors:
    """Vectors for requested ids: ``matrix[i]`` belongs to ``ids[i]``; ``missing`` lists unknown ids."""

    ids: list
    matrix: np.ndarray
    missing: list

    def __array__(self, dtype=None, copy=None):
        return self.matrix if dtype is None else self.matrix.astype(dtype)


@dataclass(frozen=True)
class Neighbours:
    """Top-k result of one query, best first (query is None for raw-vector queries)."""

    query: Any
    ids: list
    scores: list[float]

    def as_dict(self) -> dict:
        return {"query": self.query, "ids": self.ids, "scores": self.scores}


class EmbeddingStore:
    """Train, version, publish and read embeddings in one home directory."""

    def __init__(self, home: str | os.PathLike | None = None, progress: bool | None = None):
        self.home = resolve_home(home)
        self.settings: StoreSettings = load_settings(self.home)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.registry = Registry(self.settings.registry_url_for(self.home))
        repo = self.settings.repo_path(self.home)
        render_repo(repo, self.settings)
        self.feast = FeastBackend(repo)
        self._retrievers: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        if self.settings.plugins:
            os.environ.setdefault("EMBSTORE_PLUGINS", ",".join(self.settings.plugins))
        self.registry.reap_dead_builders()

    @classmethod
    def init(cls, home: str | os.PathLike | None = None, progress: bool | None = None,
             **settings: Any) -> "EmbeddingStore":
        """Create (or open) a home: settings file, Feast repo, registry schema at head."""
        path = resolve_home(home)
        path.mkdir(parents=True, exist_ok=True)
        write_default_settings(path, settings)
        (path / "sets").mkdir(exist_ok=True)
        return cls(path, progress=progress)

    def close(self) -> None:
        self.registry.close()

    # -- producing -----------------------------------------------------------

    def run(self, producer: str, set_name: str, inputs: Mapping[str, Any] | Any,
            config: Mapping[str, Any] | None = None, *, promote: str | None = None,
            entity: str | None = None, retriever: str | None = None,
            retriever_config: Mapping[str, Any] | None = None, align_to: str | None = None,
            evaluate: Any = None, gates: Any = None) -> VersionInfo | list[VersionInfo]:
        """Train ``producer`` on ``inputs`` and publish the result as the next version of ``set_name``
        (or of ``<set_name>_<role>`` for each role of a multi-entity producer, returned as a list).

        ``inputs`` maps kind → path (or InputSpec), or is an ``Inputs`` object.
        ``align_to``, ``evaluate`` and ``gates``: see ``publish``.
        """
        from embstore.evaluation import Checks
        from embstore.inputs import Inputs, InputSpec
        from embstore.plugins import get_registry

        check_set_name(set_name)
        if promote:
            check_alias_name(promote)
        plugins = get_registry()
        cls = plugins.producer(producer)
        cfg = parse_config(cls.Config, config, f"producer {producer!r}")
        rcls, rcfg = self._retriever_for(retriever, {**cls.retriever_defaults, **dict(retriever_config or {})})
        if not isinstance(inputs, Inputs):
            specs = []
            for kind, value in dict(inputs).items():
                specs.append(value if isinstance(value, InputSpec) else InputSpec(kind, Path(value)))
            inputs = Inputs(specs)
        inputs.require(cls.requires, producer)
        inputs.reject_unused(cls.requires | cls.accepts, producer)
        checks = Checks.prepare(evaluate, gates)  # unknown evaluator, bad config or gate: fail before training
        if cls.entities and checks:
            raise ConfigError(f"producer {producer!r} publishes several sets in one space; "
                              "evaluate and gates are not supported for it yet")
        fingerprint = inputs.fingerprint()
        import inspect

        fit_kwargs = {"progress": self.progress} if "progress" in inspect.signature(cls.fit).parameters else {}
        result = cls().fit(inputs, cfg, **fit_kwargs)
        info = plugins.owner("producer", producer)
        common = dict(
            producer=producer, plugin=info.name, plugin_version=info.version,
            config=cfg.model_dump(mode="json"), input_fingerprint=fingerprint,
            retriever=rcls.name, retriever_config=rcfg,
        )
        if cls.entities:
            return self._publish_roles(set_name, cls.entities, result, promote, producer, common, align_to)
        if not isinstance(result, Embeddings):
            raise EmbeddingsError(f"producer {producer!r} returned {type(result).__name__}, not Embeddings")
        return self.publish(set_name, result, entity=entity or cls.entity, promote=promote, align_to=align_to,
                            evaluate=checks, **common)

    def _publish_roles(self, set_name: str, roles: Mapping[str, str], result: Any, promote: str | None,
                       producer: str, common: dict, align_to: str | None = None) -> list[VersionInfo]:
        """Publish one set per role, then move all their aliases in one transaction. ``align_to``
        rotates all the roles' sets with one rotation (embstore.alignment.align_roles)."""
        if not isinstance(result, Mapping) or set(result) != set(roles):
            raise EmbeddingsError(
                f"producer {producer!r} must return Embeddings for roles {sorted(roles)}, "
                f"got {sorted(result) if isinstance(result, Mapping) else type(result).__name__}"
            )
        for role, emb in result.items():  # all valid before anything is stored
            if not isinstance(emb, Embeddings):
                raise EmbeddingsError(f"producer {producer!r} returned {type(emb).__name__} for role {role!r}")
        sets = {f"{set_name}_{role}": result[role].validated() for role in roles}
        if align_to:
            from embstore.alignment import align_roles

            aligned = align_roles(self, sets, align_to)
        else:
            aligned = {name: (emb, None) for name, emb in sets.items()}
        published = [
            self.publish(name, aligned[name][0], entity=roles[role], align_to=aligned[name][1], **common)
            for role, name in zip(roles, sets)
        ]
        if promote:
            published = self.registry.promote_many([(v.set, v.number) for v in published], promote)
        return published

    def _retriever_for(self, name: str | None, config: Mapping[str, Any] | None):
        from embstore.plugins import get_registry

        name = name or self.settings.retriever
        rcls = get_registry().retriever(name)
        merged = {**self.settings.retriever_config, **dict(config or {})} if name == self.settings.retriever else dict(config or {})
        return rcls, parse_config(rcls.Config, merged, f"retriever {name!r}")

    def publish(self, set_name: str, embeddings: Embeddings, *, producer: str = "external",
                plugin: str = "external", plugin_version: str = "unknown", config: Mapping[str, Any] | None = None,
                input_fingerprint: str | None = None, entity: str = "item_id", promote: str | None = None,
                retriever: str | None = None, retriever_config: Any = None, align_to: Any = None,
                evaluate: Any = None, gates: Any = None) -> VersionInfo:
        """All or nothing: a failure at any step marks the new version failed and moves no alias.

        ``align_to`` ('prev', an alias or number of this set, or a ref) rotates the vectors onto that
        version before anything is written (embstore.alignment). ``evaluate`` ({evaluator: config})
        and ``gates`` (["hr@10>=0.05"]) run after publish; ``promote`` then moves the alias only if
        every gate passes, else GateError (embstore.evaluation).
        """
        if evaluate or gates:
            from embstore.evaluation import publish_gated

            return publish_gated(self, set_name, embeddings, evaluate=evaluate, gates=gates, promote=promote,
                                 producer=producer, plugin=plugin, plugin_version=plugin_version, config=config,
                                 input_fingerprint=input_fingerprint, entity=entity, retriever=retriever,
                                 retriever_config=retriever_config, align_to=align_to)
        check_set_name(set_name)
        if promote:
            check_alias_name(promote)
        if not entity.isidentifier():
            raise ConfigError(f"entity {entity!r} must be a column name like item_id")
        emb = embeddings.validated()  # bad vectors: one clear error, nothing stored
        aligned_to = None
        if align_to:
            from embstore.alignment import PreAligned, align_for_publish

            if isinstance(align_to, PreAligned):  # rotated by the caller, with the sets it belongs with
                aligned_to = align_to.ref
            else:
                emb, aligned_to = align_for_publish(self, set_name, emb, align_to)
        if retriever_config is None or isinstance(retriever_config, Mapping):
            rcls, rcfg = self._retriever_for(retriever, retriever_config)
        else:
            from embstore.plugins import get_registry

            rcls, rcfg = get_registry().retriever(retriever), retriever_config
        id_type = id_type_of(emb.ids)
        self.feast.check_entity(entity, id_type)  # before anything is stored
        version = self.registry.begin_version(
            set_name, entity, producer, plugin, plugin_version, dict(config or {}), rcls.name,
            rcfg.model_dump(mode="json"), input_fingerprint,
        )
        number = version.number
        directory = self.home / "sets" / set_name / f"v{number}"
        steps = Steps(PUBLISH_STEPS, f"publish {set_name}@{number}", enabled=self.progress)
        try:
            if directory.exists():  # leftovers of an earlier failed attempt under this number
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            self.registry.update_version(set_name, number, step="validate", id_type=id_type,
                                         dim=emb.dim, count=len(emb), storage_path=str(directory))
            steps.done("validate")
            _fault_after("validate")
            checksums = storage.write_vectors(directory, emb)
            if emb.state is not None:
                checksums.update(storage.write_state(directory, emb.state, self._producer_class(producer)))
            self.registry.update_version(set_name, number, step="files", checksums=checksums)
            steps.done("files")
            _fault_after("files")
            frame = storage.offline_frame(emb, entity, version.created_at)
            checksums.update(storage.write_offline(directory, frame))
            self.registry.update_version(set_name, number, step="offline", checksums=checksums)
            steps.done("offline")
            _fault_after("offline")
            fv = self.feast.apply_version(set_name, number, entity, id_type, directory / storage.OFFLINE,
                                          dict(emb.extras))
            self.registry.update_version(set_name, number, step="feast_apply", feature_view=fv)
            steps.done("feast_apply")
            _fault_after("feast_apply")
            with bar(len(frame), "online store", unit="rows", enabled=self.progress) as b:
                self.feast.write_online(fv, frame, progress=b.update)
            del frame
            self.registry.update_version(set_name, number, step="online")
            steps.done("online")
            _fault_after("online")
            index = rcls(rcfg)
            index.build(emb.vectors)
            index_dir = directory / storage.INDEX_DIR
            index_dir.mkdir()
            for path in index.save(index_dir):
                checksums[str(Path(path).resolve().relative_to(directory.resolve()))] = storage.sha256_file(Path(path))
            self.registry.update_version(set_name, number, step="index", checksums=checksums)
            steps.done("index")
            _fault_after("index")
            published = self.registry.publish(set_name, number, promote, checksums=checksums,
                                              metrics=_jsonable(dict(emb.metadata)), aligned_to=aligned_to)
            steps.done("publish")
            return published
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            outcome = "the version is marked failed, aliases unchanged"
            try:
                self.registry.mark_failed(set_name, number, message)
            except EmbstoreError:  # the registry is down too: the version is marked failed once it is back
                outcome = "aliases unchanged; the version will be marked failed once the registry is reachable"
            finally:
                steps.close()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]  # the full text is in the version's error
            if isinstance(exc, EmbstoreError):
                raise PublishError(f"publishing {set_name}@{number} failed ({first}); {outcome}") from exc
            raise PublishError(
                f"publishing {set_name}@{number} failed at step {self._step_of(set_name, number)!r}: "
                f"{type(exc).__name__}: {first}; {outcome}"
            ) from exc
        finally:
            steps.close()

    @staticmethod
    def _producer_class(name: str):
        from embstore.plugins import get_registry
        from embstore.producer import Producer

        return get_registry().producers.get(name, Producer)

    def infer(self, ref: str | Ref, inputs: Mapping[str, Any] | Any) -> Embeddings:
        """Embed entities the version never saw (cold start) with its producer's ``infer``,
        from the model state saved with the version (checksum verified)."""
        from embstore.inputs import Inputs, InputSpec
        from embstore.plugins import get_registry

        version = self.resolve(ref)
        cls = get_registry().producers.get(version.producer)
        if cls is None or not cls.can_infer():
            raise ConfigError(f"{version.ref} was made by {version.producer!r}, which cannot embed unseen entities")
        if not any(k.startswith(storage.STATE_DIR + "/") for k in version.checksums):
            raise ConfigError(f"{version.ref} has no saved model state to infer from; republish it with this embstore")
        if not isinstance(inputs, Inputs):
            inputs = Inputs([v if isinstance(v, InputSpec) else InputSpec(k, Path(v)) for k, v in dict(inputs).items()])
        state = storage.read_state(Path(version.storage_path), version.checksums, cls)
        cfg = parse_config(cls.Config, version.config, f"producer {version.producer!r}")
        emb = cls().infer(state, inputs, cfg)
        if not isinstance(emb, Embeddings):
            raise EmbeddingsError(f"producer {version.producer!r} infer returned {type(emb).__name__}, not Embeddings")
        return emb.validated()

    def publish_inferred(self, ref: str | Ref, inferred: Embeddings, *, set_name: str | None = None,
                         promote: str | None = None) -> VersionInfo:
        """Publish the version's vectors plus newly inferred ones as the next version of its set
        (or ``set_name``). Ids the version already has keep their trained vectors; the version's
        extras (e.g. gbdt_leaf's leaves) are carried over and the new rows' appended."""
        version = self.resolve(ref)
        loaded = self._loaded(version)
        new = inferred.validated()
        known = set(loaded.ids.tolist())
        fresh = np.array([i not in known for i in new.ids.tolist()], dtype=bool)
        if not fresh.any():
            raise EmbeddingsError(f"every inferred id is already in {version.ref}; nothing new to publish")
        if new.dim != version.dim:
            raise EmbeddingsError(f"inferred vectors have dimension {new.dim}, {version.ref} has {version.dim}")
        ids = np.concatenate([loaded.ids, new.ids[fresh]]) if loaded.ids.dtype == new.ids.dtype else np.array(
            loaded.ids.tolist() + new.ids[fresh].tolist(), dtype=object)
        vectors = np.concatenate([np.asarray(loaded.vectors), new.vectors[fresh]])
        extras = {}
        for name, arr in storage.read_extras(Path(version.storage_path), version.checksums, version.entity).items():
            if name not in new.extras:
                raise EmbeddingsError(f"{version.ref} publishes the extra {name!r} per row and the inferred rows have "
                                      "none; the producer's infer must return it")
            add = new.extras[name][fresh]
            if arr.shape[1:] != add.shape[1:]:
                raise EmbeddingsError(f"extra {name!r}: {version.ref} has shape {arr.shape[1:]} per row, the inferred "
                                      f"rows {add.shape[1:]}")
            extras[name] = np.concatenate([arr, add])
        state = None
        if any(k.startswith(storage.STATE_DIR + "/") for k in version.checksums):
            cls = self._producer_class(version.producer)
            state = storage.read_state(Path(version.storage_path), version.checksums, cls)
        merged = Embeddings(ids=ids, vectors=vectors, extras=extras, state=state,
                            metadata={**version.metrics, "inferred_from": version.ref, "inferred_ids": int(fresh.sum())})
        return self.publish(set_name or version.set, merged, producer=version.producer, plugin=version.plugin,
                            plugin_version=version.plugin_version, config=version.config, entity=version.entity,
                            promote=promote, retriever=version.retriever, retriever_config=version.retriever_config)

    def _step_of(self, set_name: str, number: int) -> str | None:
        try:
            return self.registry.version(set_name, number).step
        except EmbstoreError:
            return None

    # -- versions and aliases ------------------------------------------------

    def versions(self, set_name: str) -> list[VersionInfo]:
        return self.registry.versions(set_name)

    def sets(self) -> list[str]:
        return self.registry.set_names()

    def resolve(self, ref: str | Ref | VersionInfo) -> VersionInfo:
        """The published version a ref names now. A VersionInfo passes through, so a caller
        that resolved once (the HTTP server) reads exactly that version in every later call."""
        if isinstance(ref, VersionInfo):
            return ref
        return self.registry.resolve(ref)

    def promote(self, ref: str | Ref, alias: str) -> VersionInfo:
        return self.registry.promote(ref, alias)

    def rollback(self, set_name: str, alias: str) -> VersionInfo:
        return self.registry.rollback(set_name, alias)

    def alias_history(self, set_name: str) -> list[dict]:
        return self.registry.alias_history(set_name)

    def diff(self, a: str | Ref, b: str | Ref, **options: Any) -> dict:
        """Drift report of version ``b`` against ``a`` (embstore.alignment.diff), stored in the newer's metrics."""
        from embstore.alignment import diff

        return diff(self, str(a), str(b), **options)

    def compose(self, set_name: str, refs: Sequence[str | Ref], weights: Sequence[float] | None = None,
                **options: Any) -> VersionInfo:
        """Publish the (weighted) concatenation of other versions as a version of ``set_name``
        (embstore.composite.compose)."""
        from embstore.composite import compose

        return compose(self, set_name, [str(r) for r in refs], weights, **options)

    # -- reading -------------------------------------------------------------

    def _loaded(self, version: VersionInfo) -> storage.LoadedVectors:
        return storage.load_vectors(Path(version.storage_path), version.checksums)

    def vectors(self, ref: str | Ref, ids: Iterable[Any], *, allow_missing: bool = False) -> Vectors:
        """Vectors for ``ids``; unknown ids raise UnknownIdsError unless ``allow_missing``."""
        version = self.resolve(ref)
        loaded = self._loaded(version)
        ids = list(ids)
        rows, missing = loaded.rows(ids)
        if missing and not allow_missing:
            shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise UnknownIdsError(f"{len(missing)} of {len(ids)} ids are not in {version.ref}: {shown}", missing)
        found = loaded.ids[rows].tolist()
        return Vectors(ids=found, matrix=np.array(loaded.vectors[rows], dtype=np.float32), missing=missing)

    def export(self, ref: str | Ref, out: str | os.PathLike) -> Path:
        """Write columns ``id`` and ``vector`` (list of float32) to a parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        version = self.resolve(ref)
        loaded = self._loaded(version)
        vec = np.asarray(loaded.vectors, dtype=np.float32)
        flat = pa.array(vec.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, vec.size + 1, vec.shape[1], dtype=np.int32))
        ids = pa.array(loaded.ids.tolist(), type=pa.int64() if loaded.ids.dtype.kind in "iu" else pa.string())
        table = pa.table({"id": ids, "vector": pa.ListArray.from_arrays(offsets, flat)})
        out = Path(out)
        tmp = out.with_name(out.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, out)
        return out

    def retriever(self, ref: str | Ref):
        """The loaded index of a version (cached; checksums verified on first load)."""
        version = self.resolve(ref)
        return version, self._index(version)

    def _index(self, version: VersionInfo):
        from embstore.plugins import get_registry

        key = (version.storage_path, tuple(sorted(version.checksums.items())))
        with self._lock:
            cached = self._retrievers.get(key)
        if cached is not None:
            return cached
        directory = Path(version.storage_path)
        index_files = [k for k in version.checksums if k.startswith(storage.INDEX_DIR + "/")]
        if not index_files:
            raise IntegrityError(f"{version.ref} has no index files recorded")
        storage.verify(directory, version.checksums, index_files)
        rcls = get_registry().retriever(version.retriever)
        rcfg = parse_config(rcls.Config, version.retriever_config, f"retriever {version.retriever!r}")
        index = rcls.load(directory / storage.INDEX_DIR, rcfg)
        with self._lock:
            if len(self._retrievers) > 16:
                self._retrievers.clear()
            self._retrievers[key] = index
        return index

    def recall(self, ref: str | Ref, ids: Sequence[Any] | None = None, vectors: np.ndarray | None = None,
               k: int = 10, exclude: Iterable[Any] | None = None, *, exclude_query: bool = True) -> list[Neighbours]:
        """Top-k neighbours for each query id (itself excluded) or each raw query vector."""
        if (ids is None) == (vectors is None):
            raise ConfigError("recall needs exactly one of ids=[...] or vectors=...")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        version = self.resolve(ref)
        loaded = self._loaded(version)
        excluded_rows = set(loaded.rows(list(exclude))[0].tolist()) if exclude is not None else set()
        if ids is not None:
            ids = list(ids)
            rows, missing = loaded.rows(ids)
            if missing:
                raise UnknownIdsError(
                    f"{len(missing)} query ids are not in {version.ref}: "
                    + ", ".join(repr(m) for m in missing[:10]), missing
                )
            queries = np.asarray(loaded.vectors[rows], dtype=np.float32)
            query_rows = rows.tolist()
            labels = ids
        else:
            queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
            if queries.ndim != 2 or queries.shape[1] != version.dim:
                raise ConfigError(
                    f"query vectors have dimension {queries.shape[-1]}, {version.ref} has dimension {version.dim}"
                )
            if not np.isfinite(queries).all():
                raise ConfigError("query vectors contain NaN or inf")
            query_rows = [None] * len(queries)
            labels = [None] * len(queries)
        index = self._index(version)
        want = min(k + len(excluded_rows) + (1 if exclude_query and ids is not None else 0), len(loaded.ids))
        found_rows, scores = index.search(queries, want)
        out = []
        for label, qrow, frow, fscore in zip(labels, query_rows, found_rows, scores):
            keep_ids, keep_scores = [], []
            for r, s in zip(frow.tolist(), fscore.tolist()):
                if r < 0 or r in excluded_rows or (exclude_query and r == qrow):
                    continue
                keep_ids.append(loaded.ids[r].item() if hasattr(loaded.ids[r], "item") else loaded.ids[r])
                keep_scores.append(float(s))
                if len(keep_ids) == k:
                    break
            out.append(Neighbours(query=label, ids=keep_ids, scores=keep_scores))
        return out

    def join(self, entity_df: pd.DataFrame, ref: str | Ref, *, column: str | None = None,
             timestamp_column: str = "event_timestamp", live: bool = False) -> pd.DataFrame:
        """Point-in-time join through Feast: each row gets the vector of ``ref``'s version as of
        the row's timestamp, or None when the version was built after that time or lacks the id.

        Every input row comes back, in order, with its index; the vector column is named
        ``column`` (default ``<set>_embedding``).

        ``live=True`` (``ref`` must be an alias, ``set@prod``): each row gets the version the alias
        named at the row's timestamp by alias history, in a ``<column>_version`` column too; rows
        from before the alias first pointed anywhere get None (embstore.timeline).
        """
        if live:
            from embstore.timeline import join_live

            return join_live(self, entity_df, ref, column=column, timestamp_column=timestamp_column)
        version = self.resolve(ref)
        entity = version.entity
        for needed in (entity, timestamp_column):
            if needed not in entity_df.columns:
                raise InputError(
                    f"join needs columns {entity!r} and {timestamp_column!r}; entity_df has {list(entity_df.columns)}"
                )
        column = column or f"{version.set}_embedding"
        loaded = self._loaded(version)
        storage.verify_once(Path(version.storage_path), version.checksums, [storage.OFFLINE])
        keys = entity_df[entity]
        if keys.isna().any():
            raise InputError(f"entity_df column {entity!r} has empty ids at rows {list(keys[keys.isna()].index[:5])}")
        ts = pd.to_datetime(entity_df[timestamp_column], utc=True, errors="coerce")
        if ts.isna().any():
            raise InputError(f"entity_df column {timestamp_column!r} has missing or unparseable times")
        if version.id_type == "int64":
            try:
                keys = keys.astype("int64")
            except (TypeError, ValueError):
                raise InputError(f"{version.ref} has integer ids; entity_df column {entity!r} is not integer") from None
        else:
            keys = keys.astype(str)
        frame = pd.DataFrame({entity: keys.to_numpy(), "event_timestamp": ts.to_numpy()})
        pairs = frame.drop_duplicates().reset_index(drop=True)
        pairs["__pair"] = np.arange(len(pairs), dtype=np.int64)
        pair_rows = self.feast.historical_rows(version.feature_view, entity, pairs)
        pairs["__row"] = pairs["__pair"].map(pair_rows)
        merged = frame.merge(pairs, on=[entity, "event_timestamp"], how="left")
        rows = merged["__row"].to_numpy()
        result = entity_df.copy()
        vec = loaded.vectors
        result[column] = [None if pd.isna(r) else np.array(vec[int(r)], dtype=np.float32) for r in rows]
        return result

    def online_vectors(self, ref: str | Ref, ids: Sequence[Any]) -> list:
        """Vectors as Feast's online store serves them (None for unknown ids)."""
        version = self.resolve(ref)
        return self.feast.online_vectors(version.feature_view, version.entity, list(ids))

    def materialize(self, ref: str | Ref) -> int:
        """Rewrite a published version's rows into Feast's online store from its checksummed
        offline parquet: the repair after an online store lost its data (a Redis restart
        without persistence). Returns the rows written."""
        import pyarrow.parquet as pq

        version = self.resolve(ref)
        directory = Path(version.storage_path)
        storage.verify(directory, version.checksums, [storage.OFFLINE])
        frame = pq.read_table(directory / storage.OFFLINE).to_pandas()
        with bar(len(frame), f"online store {version.ref}", unit="rows", enabled=self.progress) as b:
            self.feast.restore_online(version.feature_view, frame, progress=b.update)
        return len(frame)

    def gc(self) -> list[str]:
        """Remove the files and Feast views of failed versions; published data is never touched."""
        self.registry.reap_dead_builders()
        removed = []
        for set_name in self.sets():
            for v in self.versions(set_name):
                if v.status != "failed" or v.step == "collected":
                    continue
                self.feast.delete_version(set_name, v.number)
                if v.storage_path and Path(v.storage_path).exists():
                    shutil.rmtree(v.storage_path)
                self.registry.update_version(set_name, v.number, step="collected")
                removed.append(v.ref)
        return removed


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
