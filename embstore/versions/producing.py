"""Producing versions: train a producer and publish what it returns, one set per role, and embed
entities a version never saw (cold start) with the model saved beside it.

    producing.run(RunRequest("item2vec", "items", inputs, config={"epochs": 10}, promote="prod"))
    producing.infer("items_eges@prod", {"side_info": "new_items.csv"})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from embstore.backends import files
from embstore.config import parse_config
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, EmbeddingsError
from embstore.inputs import Inputs, InputSpec
from embstore.refs import VersionInfo, check_alias_name, check_set_name
from embstore.times import parse_time
from embstore.versions.alignment import align_roles
from embstore.versions.gates import Checks
from embstore.versions.publishing import Provenance, PublishRequest

if TYPE_CHECKING:
    from embstore.catalogue import PluginCatalogue
    from embstore.engine import Engine, RunInputs, VersionWriters
    from embstore.producer import Producer
    from embstore.versions.aliases import Aliases
    from embstore.versions.publishing import Publisher
    from embstore.versions.reader import VersionReader


def as_inputs(inputs: Mapping[str, Any] | Inputs) -> Inputs:
    """An ``Inputs`` from kind → path (or InputSpec), or the Inputs given."""
    if isinstance(inputs, Inputs):
        return inputs
    return Inputs(input_specs(inputs))


def input_specs(inputs: Mapping[str, Any] | Inputs | Sequence[InputSpec]) -> list[InputSpec]:
    """The InputSpecs of kind → path (or InputSpec), of an Inputs, or the specs given."""
    if isinstance(inputs, Inputs):
        return inputs.specs()
    if isinstance(inputs, Mapping):
        return [v if isinstance(v, InputSpec) else InputSpec(k, Path(v)) for k, v in inputs.items()]
    return list(inputs)


def engine_inputs(engine: "Engine", inputs: Mapping[str, Any] | Inputs | Sequence[InputSpec]) -> "RunInputs":
    """The run's inputs as ``engine`` opens them (an Inputs given to the local engine is used as is)."""
    if isinstance(inputs, Inputs) and engine.name == "local":
        return inputs
    return engine.inputs(input_specs(inputs))


class Engines:
    """The engines runs use, opened once per store: the home's (``engine:`` with ``engine_config:``)
    unless a run names another."""

    def __init__(self, plugins: Callable[[], "PluginCatalogue"], default: str, config: Mapping[str, Any], home: Path):
        self.plugins, self.default, self.default_config, self.home = plugins, default, dict(config), home
        self.open: dict[str, "Engine"] = {}

    def get(self, name: str | None = None) -> "Engine":
        name = name or self.default
        if name not in self.open:
            cls = self.plugins().engine(name)
            values = self.default_config if name == self.default else {}
            self.open[name] = cls(parse_config(cls.Config, values, f"engine {name!r}"), self.home)
        return self.open[name]

    def close(self) -> None:
        for engine in self.open.values():
            engine.close()
        self.open.clear()


def valid_from_for(inputs: Inputs, explicit: Any = None) -> pd.Timestamp | None:
    """When a version trained on ``inputs`` may be used from: ``explicit`` if given (refused when
    earlier than the newest input row, which would let rows see vectors trained on their future),
    else ``inputs.until`` (the cutoff), else the newest input timestamp, else None (the build time)."""
    newest = inputs.newest_time()
    if explicit is not None:
        chosen = parse_time(explicit, "valid_from")
        if newest is not None and chosen < newest:
            raise ConfigError(
                f"valid_from {chosen.isoformat()} is earlier than the newest input row ({newest.isoformat()}): "
                "rows in between would get vectors trained on their future; give a time at or after it, "
                "or train only on earlier rows with --until"
            )
        return chosen
    return inputs.until if inputs.until is not None else newest


@dataclass(frozen=True)
class RunRequest:
    """One training run: ``producer`` on ``inputs``, published as the next version of ``set_name``."""

    producer: str
    set_name: str
    inputs: Mapping[str, Any] | Inputs
    config: Mapping[str, Any] | None = None
    promote: str | None = None
    entity: str | None = None
    retriever: str | None = None
    retriever_config: Mapping[str, Any] = field(default_factory=dict)
    align_to: str | None = None
    evaluate: Any = None  # evaluators: {name: config}, ["name:k=v"], or prepared Checks
    gates: Any = None
    until: Any = None  # train only on interactions before this time; the version is valid from it
    valid_from: Any = None  # explicit valid-from; refused when earlier than the newest input row
    engine: str | None = None  # engine plugin for this run (default: the home's)


class Producing:
    """Runs producers and publishes their results; embeds unseen entities with saved models."""

    def __init__(self, plugins: Callable[[], "PluginCatalogue"], reader: "VersionReader", publisher: "Publisher",
                 aliases: "Aliases", engines: "Engines", progress: bool):
        self.plugins, self.reader, self.publisher, self.aliases = plugins, reader, publisher, aliases
        self.engines, self.progress = engines, progress

    def run(self, request: RunRequest) -> VersionInfo | list[VersionInfo]:
        """Everything that can be refused is refused before training: names, config, retriever,
        inputs, evaluators and gates."""
        check_set_name(request.set_name)
        if request.promote:
            check_alias_name(request.promote)
        plugins = self.plugins()
        cls = plugins.producer(request.producer)
        cfg = parse_config(cls.Config, request.config, f"producer {request.producer!r}")
        rcls, rcfg = self.publisher.retriever_for(request.retriever,
                                                  {**cls.retriever_defaults, **dict(request.retriever_config)})
        engine = self.engines.get(request.engine)
        inputs = engine_inputs(engine, request.inputs)
        inputs.require(cls.requires, request.producer)
        inputs.reject_unused(cls.requires | cls.accepts, request.producer)
        if cls.entities and (request.evaluate or request.gates):
            raise ConfigError(f"producer {request.producer!r} publishes several sets in one space; "
                              "evaluate and gates are not supported for it yet")
        checks = Checks.prepare(request.evaluate, request.gates, plugins, columns=inputs.column_maps())
        writers = engine.writers(self.publisher.feast.repo)
        if writers is not None:
            writers.check(self.publisher.feast.online_store_type())
        if request.until is not None:
            inputs = inputs.before(parse_time(request.until, "until"))
        valid_from = valid_from_for(inputs, request.valid_from)
        fingerprint = inputs.fingerprint()
        result = engine.fit(cls, inputs, cfg, self.progress)
        info = plugins.owner("producer", request.producer)
        provenance = Provenance(request.producer, info.name, info.version, cfg.model_dump(mode="json"), fingerprint)
        if cls.entities:
            return self.publish_roles(request, cls, result, provenance, rcls.name, rcfg, valid_from, writers)
        if not isinstance(result, Embeddings):
            raise EmbeddingsError(f"producer {request.producer!r} returned {type(result).__name__}, not Embeddings")
        return self.publisher.publish(PublishRequest(
            request.set_name, result, provenance, entity=request.entity or cls.entity, promote=request.promote,
            retriever=rcls.name, retriever_config=rcfg, align_to=request.align_to, checks=checks,
            valid_from=valid_from, writers=writers))

    def publish_roles(self, request: RunRequest, cls: type["Producer"], result: Any, provenance: Provenance,
                      retriever: str, retriever_config: Any, valid_from: pd.Timestamp | None,
                      writers: "VersionWriters | None") -> list[VersionInfo]:
        """Publish one set per role, then move all their aliases in one transaction. ``align_to``
        rotates all the roles' sets with one rotation (embstore.versions.alignment.align_roles)."""
        roles = cls.entities
        if not isinstance(result, Mapping) or set(result) != set(roles):
            raise EmbeddingsError(
                f"producer {request.producer!r} must return Embeddings for roles {sorted(roles)}, "
                f"got {sorted(result) if isinstance(result, Mapping) else type(result).__name__}"
            )
        for role, emb in result.items():  # all valid before anything is stored
            if not isinstance(emb, Embeddings):
                raise EmbeddingsError(f"producer {request.producer!r} returned {type(emb).__name__} for role {role!r}")
        sets = {f"{request.set_name}_{role}": result[role].validated() for role in roles}
        if request.align_to:
            aligned = align_roles(self.reader, sets, request.align_to)
        else:
            aligned = {name: (emb, None) for name, emb in sets.items()}
        published = [
            self.publisher.publish(PublishRequest(name, aligned[name][0], provenance, entity=roles[role],
                                                  retriever=retriever, retriever_config=retriever_config,
                                                  align_to=aligned[name][1], valid_from=valid_from, writers=writers))
            for role, name in zip(roles, sets)
        ]
        if request.promote:
            published = self.aliases.promote_many([(v.set, v.number) for v in published], request.promote)
        return published

    def infer(self, ref: Any, inputs: Mapping[str, Any] | Inputs) -> Embeddings:
        """Embed entities the version never saw (cold start) with its producer's ``infer``,
        from the model state saved with the version (checksum verified)."""
        version = self.reader.resolve(ref)
        cls = self.plugins().producers.get(version.producer)
        if cls is None or not cls.can_infer():
            raise ConfigError(f"{version.ref} was made by {version.producer!r}, which cannot embed unseen entities")
        if not any(k.startswith(files.STATE_DIR + "/") for k in version.checksums):
            raise ConfigError(f"{version.ref} has no saved model state to infer from; republish it with this embstore")
        inputs = as_inputs(inputs)
        state = files.read_state(Path(version.storage_path), version.checksums, cls)
        cfg = parse_config(cls.Config, version.config, f"producer {version.producer!r}")
        emb = cls().infer(state, inputs, cfg)
        if not isinstance(emb, Embeddings):
            raise EmbeddingsError(f"producer {version.producer!r} infer returned {type(emb).__name__}, not Embeddings")
        return emb.validated()

    def publish_inferred(self, ref: Any, inferred: Embeddings, *, set_name: str | None = None,
                         promote: str | None = None) -> VersionInfo:
        """Publish the version's vectors plus newly inferred ones as the next version of its set
        (or ``set_name``). Ids the version already has keep their trained vectors; the version's
        extras (e.g. gbdt_leaf's leaves) are carried over and the new rows' appended."""
        version = self.reader.resolve(ref)
        loaded = self.reader.load(version)
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
        state = None
        if any(k.startswith(files.STATE_DIR + "/") for k in version.checksums):
            state = files.read_state(Path(version.storage_path), version.checksums,
                                     self.publisher.producer_class(version.producer))
        merged = Embeddings(ids=ids, vectors=vectors, extras=self.merged_extras(version, new, fresh), state=state,
                            metadata={**version.metrics, "inferred_from": version.ref, "inferred_ids": int(fresh.sum())})
        provenance = Provenance(version.producer, version.plugin, version.plugin_version, version.config)
        return self.publisher.publish(PublishRequest(  # new items from side info: no later data than the base's
            set_name or version.set, merged, provenance, entity=version.entity, promote=promote,
            retriever=version.retriever, retriever_config=version.retriever_config, valid_from=version.valid_from))

    @staticmethod
    def merged_extras(version: VersionInfo, new: Embeddings, fresh: np.ndarray) -> dict[str, np.ndarray]:
        extras = {}
        for name, arr in files.read_extras(Path(version.storage_path), version.checksums, version.entity).items():
            if name not in new.extras:
                raise EmbeddingsError(f"{version.ref} publishes the extra {name!r} per row and the inferred rows have "
                                      "none; the producer's infer must return it")
            add = new.extras[name][fresh]
            if arr.shape[1:] != add.shape[1:]:
                raise EmbeddingsError(f"extra {name!r}: {version.ref} has shape {arr.shape[1:]} per row, the inferred "
                                      f"rows {add.shape[1:]}")
            extras[name] = np.concatenate([arr, add])
        return extras
