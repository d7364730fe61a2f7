"""EmbeddingStore: the one entry object of the Python API.

    store = EmbeddingStore.init("~/emb")          # or EmbeddingStore("~/emb")
    ref = store.run("item2vec", "item_item2vec", {"interactions": "ratings.csv"}, promote="prod")
    store.recall("item_item2vec@prod", ids=[1], k=10)
    store.join(training_rows, "item_item2vec@prod")

The store wires its collaborators together from HOME's settings and delegates to
them: the backend (embstore.backends), the version registry, the Feast feature
repo, the reader, publisher, producer runs, joins and gates (embstore.versions).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from embstore.backends import open_backend
from embstore.backends.feature_repo import MANIFEST, FeatureRepo, render_repo
from embstore.backends.files import LoadedVectors
from embstore.backends.registry import Registry
from embstore.catalogue import PluginCatalogue, catalogue
from embstore.embeddings import Embeddings
from embstore.progress import wanted
from embstore.refs import Ref, VersionInfo
from embstore.settings import StoreSettings, load_settings, parse_settings, resolve_home, write_default_settings
from embstore.times import parse_time
from embstore.versions import composite, drift, feast_state
from embstore.versions.aliases import Aliases
from embstore.versions.gates import Checks, Gatekeeper
from embstore.versions.joins import Joiner
from embstore.versions.producing import Engines, Producing, RunRequest
from embstore.versions.publishing import Provenance, Publisher, PublishRequest
from embstore.versions.reader import Neighbours, PinnedVersion, VersionReader, Vectors

__all__ = ["EmbeddingStore", "Neighbours", "Vectors"]


class EmbeddingStore:
    """Train, version, publish and read embeddings in one home directory."""

    def __init__(self, home: str | os.PathLike | None = None, progress: bool | None = None):
        self.home = resolve_home(home)
        self.settings: StoreSettings = load_settings(self.home)
        self.backend = open_backend(self.settings, self.home)
        self.progress = wanted(progress)
        self.registry = Registry(self.backend.registry_url())
        repo = self.settings.repo_path(self.home)
        plugins = partial(catalogue, tuple(self.settings.plugins))
        self.engines = Engines(plugins, self.settings.engine, self.settings.engine_config, self.home)
        registry_moved = render_repo(repo, self.settings.project, self.backend, self.engines.get().feast_offline_store())
        self.feast = FeatureRepo(repo, self.backend)
        self.reader = VersionReader(self.registry, plugins)
        self.aliases = Aliases(self.registry, self.feast)
        self.gates = Gatekeeper(self.registry, self.aliases, host=self)
        self.publisher = Publisher(self.registry, self.feast, plugins, self.reader, self.aliases, self.gates,
                                   self.home / "sets", retriever=self.settings.retriever,
                                   retriever_config=self.settings.retriever_config, progress=self.progress)
        self.producing = Producing(plugins, self.reader, self.publisher, self.aliases, self.engines, self.progress)
        self.joiner = Joiner(self.reader, self.registry)
        self.registry.reap_dead_builders()
        if registry_moved or not (repo / MANIFEST).exists() and self.registry.set_names():
            feast_state.repair(self.registry, self.feast)  # a home of 0.1: fill the repo's definitions

    @classmethod
    def init(cls, home: str | os.PathLike | None = None, progress: bool | None = None,
             **settings: Any) -> "EmbeddingStore":
        """Create (or open) a home: settings file, Feast repo, registry schema at head."""
        path = resolve_home(home)
        parsed = parse_settings(settings)
        open_backend(parsed, path)  # a backend missing its settings is refused before anything is written
        path.mkdir(parents=True, exist_ok=True)
        write_default_settings(path, parsed)
        (path / "sets").mkdir(exist_ok=True)
        return cls(path, progress=progress)

    def close(self) -> None:
        self.engines.close()
        self.registry.close()

    @property
    def catalogue(self) -> PluginCatalogue:
        """The plugins this store uses: entry points, EMBSTORE_PLUGINS and the home's ``plugins:`` setting."""
        return catalogue(self.settings.plugins)

    # -- producing -----------------------------------------------------------

    def run(self, producer: str, set_name: str, inputs: Mapping[str, Any] | Any,
            config: Mapping[str, Any] | None = None, *, promote: str | None = None,
            entity: str | None = None, retriever: str | None = None,
            retriever_config: Mapping[str, Any] | None = None, align_to: str | None = None,
            evaluate: Any = None, gates: Any = None, until: Any = None,
            valid_from: Any = None, engine: str | None = None) -> VersionInfo | list[VersionInfo]:
        """Train ``producer`` on ``inputs`` and publish the result as the next version of ``set_name``
        (or of ``<set_name>_<role>`` for each role of a multi-entity producer, returned as a list).

        ``inputs`` maps kind → path (or InputSpec), or is an ``Inputs`` object.
        ``until`` (a time: datetime, ISO text or unix seconds) trains only on interactions before it
        and makes the version valid from it; by default a version is valid from its newest input
        timestamp (the end of its training data), or from its build time when no input has times.
        ``valid_from`` sets it explicitly and is refused when earlier than the newest input row.
        ``engine`` names the engine plugin for this run (default: the home's ``engine:``, local).
        ``align_to``, ``evaluate`` and ``gates``: see ``publish``.
        """
        return self.producing.run(RunRequest(
            producer, set_name, inputs, config, promote=promote, entity=entity, retriever=retriever,
            retriever_config=dict(retriever_config or {}), align_to=align_to, evaluate=evaluate, gates=gates,
            until=until, valid_from=valid_from, engine=engine))

    def publish(self, set_name: str, embeddings: Embeddings, *, producer: str = "external",
                plugin: str = "external", plugin_version: str = "unknown", config: Mapping[str, Any] | None = None,
                input_fingerprint: str | None = None, entity: str = "item_id", promote: str | None = None,
                retriever: str | None = None, retriever_config: Any = None, align_to: Any = None,
                evaluate: Any = None, gates: Any = None, valid_from: Any = None) -> VersionInfo:
        """All or nothing: a failure at any step marks the new version failed and moves no alias.

        ``valid_from`` (a time) is when training rows may start using the vectors: the end of the data
        they were trained on; default the build time.

        ``align_to`` ('prev', an alias or number of this set, or a ref) rotates the vectors onto that
        version before anything is written (embstore.versions.alignment). ``evaluate`` ({evaluator:
        config}) and ``gates`` (["hr@10>=0.05"]) run after publish; ``promote`` then moves the alias
        only if every gate passes, else GateError (embstore.versions.gates).
        """
        checks = Checks.prepare(evaluate, gates, self.catalogue)
        provenance = Provenance(producer, plugin, plugin_version, dict(config or {}), input_fingerprint)
        return self.publisher.publish(PublishRequest(
            set_name, embeddings, provenance, entity=entity, promote=promote, retriever=retriever,
            retriever_config=retriever_config, align_to=align_to, checks=checks,
            valid_from=None if valid_from is None else parse_time(valid_from, "valid_from")))

    def infer(self, ref: str | Ref, inputs: Mapping[str, Any] | Any) -> Embeddings:
        """Embed entities the version never saw (cold start) with its producer's ``infer``,
        from the model state saved with the version (checksum verified)."""
        return self.producing.infer(ref, inputs)

    def publish_inferred(self, ref: str | Ref, inferred: Embeddings, *, set_name: str | None = None,
                         promote: str | None = None) -> VersionInfo:
        """Publish the version's vectors plus newly inferred ones as the next version of its set
        (or ``set_name``). Ids the version already has keep their trained vectors; the version's
        extras (e.g. gbdt_leaf's leaves) are carried over and the new rows' appended."""
        return self.producing.publish_inferred(ref, inferred, set_name=set_name, promote=promote)

    def compose(self, set_name: str, refs: Sequence[str | Ref], weights: Sequence[float] | None = None,
                *, normalize: bool = False, promote: str | None = None, retriever: str | None = None,
                retriever_config: Any = None, align_to: str | None = None, evaluate: Any = None,
                gates: Any = None) -> VersionInfo:
        """Publish the (weighted) concatenation of other versions as a version of ``set_name``
        (embstore.versions.composite)."""
        checks = Checks.prepare(evaluate, gates, self.catalogue)
        return composite.compose(self.reader, self.publisher, set_name, [str(r) for r in refs], weights,
                                 normalize=normalize, promote=promote, retriever=retriever,
                                 retriever_config=retriever_config, align_to=align_to, checks=checks)

    def evaluate(self, ref: str | Ref | VersionInfo, evaluate: Any = None, gates: Any = None, *,
                 promote: str | None = None) -> VersionInfo:
        """Run evaluators on a published version, store their metrics and gate results, and move
        ``promote`` to it only if every gate passes (else GateError; embstore.versions.gates)."""
        return self.gates.evaluate(self.reader.resolve(ref), Checks.prepare(evaluate, gates, self.catalogue), promote)

    def gc(self) -> list[str]:
        """Remove the files and Feast views of failed versions; published data is never touched."""
        return self.publisher.collect()

    # -- versions and aliases ------------------------------------------------

    def versions(self, set_name: str) -> list[VersionInfo]:
        return self.registry.versions(set_name)

    def sets(self) -> list[str]:
        return self.registry.set_names()

    def resolve(self, ref: str | Ref | VersionInfo) -> VersionInfo:
        """The published version a ref names now. A VersionInfo passes through, so a caller
        that resolved once (the HTTP server) reads exactly that version in every later call."""
        return self.reader.resolve(ref)

    def ready(self, ref: str | Ref | VersionInfo) -> VersionInfo | None:
        """The version a ref names now, if its vectors and index are loaded in this process; else None."""
        return self.reader.ready(ref)

    def promote(self, ref: str | Ref, alias: str) -> VersionInfo:
        """Point ``alias`` at the version ``ref`` names; its Feast FeatureService follows."""
        return self.aliases.promote(ref, alias)

    def rollback(self, set_name: str, alias: str) -> VersionInfo:
        """Point ``alias`` back at the version it named before its last move."""
        return self.aliases.rollback(set_name, alias)

    def repair_feast(self) -> list[str]:
        """Make Feast's views and services (and the repo's definitions) match the registry; returns
        what changed (embstore.versions.feast_state)."""
        return feast_state.repair(self.registry, self.feast)

    def alias_history(self, set_name: str) -> list[dict]:
        return self.registry.alias_history(set_name)

    def diff(self, a: str | Ref, b: str | Ref, **options: Any) -> dict:
        """Drift report of version ``b`` against ``a`` (embstore.versions.drift), stored in the newer's metrics."""
        return drift.diff(self.reader, self.registry, str(a), str(b), **options)

    # -- reading -------------------------------------------------------------

    def load(self, ref: str | Ref | VersionInfo) -> LoadedVectors:
        """All ids and vectors of a version (memory-mapped, checksums verified once per process)."""
        return self.reader.load(ref)

    def vectors(self, ref: str | Ref, ids: Iterable[Any], *, allow_missing: bool = False) -> Vectors:
        """Vectors for ``ids``; unknown ids raise UnknownIdsError unless ``allow_missing``."""
        return self.reader.vectors(ref, ids, allow_missing=allow_missing)

    def export(self, ref: str | Ref, out: str | os.PathLike) -> Path:
        """Write columns ``id`` and ``vector`` (list of float32) to a parquet file."""
        return self.reader.export(ref, out)

    def retriever(self, ref: str | Ref):
        """The version a ref names and its loaded index (cached; checksums verified on first load)."""
        version = self.reader.resolve(ref)
        return version, self.reader.index(version)

    def recall(self, ref: str | Ref, ids: Sequence[Any] | None = None, vectors: np.ndarray | None = None,
               k: int = 10, exclude: Iterable[Any] | None = None, *, exclude_query: bool = True) -> list[Neighbours]:
        """Top-k neighbours for each query id (itself excluded) or each raw query vector."""
        return self.reader.recall(ref, ids, vectors, k, exclude, exclude_query=exclude_query)

    def pin(self, ref: str | Ref) -> PinnedVersion:
        """The version ``ref`` names now, held open for a service that reads it per request:
        ``vectors`` and ``recall`` as here, without this facade's per-call change-counter read and
        file check; ``pin.refresh()`` follows the ref (a new pin after an alias move)."""
        return self.reader.pin(ref)

    def join(self, rows: pd.DataFrame, ref: str | Ref, *, column: str | None = None,
             timestamp_column: str = "event_timestamp", on: str | None = None, as_of: bool = False,
             live: bool = False, wide: bool = False) -> pd.DataFrame:
        """Point-in-time join of embeddings onto training rows (embstore.versions.joins).

        Pinned (``set@3``, ``set@prod`` resolved now): rows at or after the version's valid-from
        get its vector, earlier rows None. ``as_of=True`` on a set name: each row gets the newest
        published version valid at its time, named in ``<column>_version``. ``live=True`` on
        ``set@alias``: each row the version the alias named at its time. Every input row comes
        back, in order; unknown ids get None. ``on`` names the key column (default: the set's
        entity); ``timestamp_column`` the rows' times (datetimes, ISO text or unix seconds; naive
        = UTC); ``wide=True`` gives float32 columns ``<column>_0 …`` instead of one list column.
        """
        return self.joiner.join(rows, ref, column=column, timestamp_column=timestamp_column, on=on, as_of=as_of,
                                live=live, wide=wide)

    def history(self, rows: pd.DataFrame, events: pd.DataFrame, ref: str | Ref, *, last: int = 10,
                user: str = "user_id", item: str = "item_id", timestamp_column: str = "event_timestamp",
                events_timestamp: str = "timestamp", column: str | None = None, wide: bool = False) -> pd.DataFrame:
        """Per training row, the mean vector of its user's ``last`` events strictly before the row's
        time, from the version valid at that time (``ref`` a set: as-of per row); a user feature
        that never sees the row's future (embstore.versions.joins)."""
        return self.joiner.history(rows, events, ref, last=last, user=user, item=item,
                                   timestamp_column=timestamp_column, events_timestamp=events_timestamp,
                                   column=column, wide=wide)

    def online_vectors(self, ref: str | Ref, ids: Sequence[Any]) -> list:
        """Vectors as Feast's online store serves them (None for unknown ids)."""
        version = self.reader.resolve(ref)
        return self.feast.online_vectors(version.feature_view, version.entity, list(ids))

    def materialize(self, ref: str | Ref) -> int:
        """Rewrite a published version's rows into Feast's online store from its checksummed
        offline parquet: the repair after an online store lost its data (a Redis restart
        without persistence). Returns the rows written."""
        return self.publisher.rematerialize(self.reader.resolve(ref))
