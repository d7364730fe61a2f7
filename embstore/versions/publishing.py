"""Publishing a version: all or nothing, one method per step, from one request object.

    request = PublishRequest("items", embeddings, Provenance("item2vec", ...), promote="prod")
    publisher.publish(request)

Steps, in order: validate → files (ids.parquet, vectors.npy, model state) → offline
(Feast's parquet source) → feast_apply (the version's FeatureView) → online (Feast's
online store) → index (the retriever's files) → publish (mark published and move the
alias in one registry transaction). The index is built in a thread from the files step
on, while the offline and online rows are written (both wait on I/O, FAISS releases the
GIL); the index step waits for it and writes its files, so steps are recorded and
faults land in the same order. Likewise the offline file is written in a thread from
the offline step on, beside the online rows (pyarrow and hashlib release the GIL too):
the online step waits for it and records its checksum. When the engine's writers build the index themselves
(``VersionWriters.builds_index``: the spark engine's shard-by-shard FAISS build), they do
it in the index step, with a staging directory in the version's directory that is
removed afterwards. Every file's sha256 is recorded. If any step
fails, or the process is killed, the version is marked failed (a killed publisher's
version when the store is next opened), no alias moves and ``collect`` (``embstore
gc``) removes its leftovers. With evaluators or gates in the request, the version is
published without moving the alias, then the gates decide (embstore.versions.gates).
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from embstore.backends import files
from embstore.config import PluginConfig, parse_config
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, EmbstoreError, PublishError, first_line
from embstore.faults import fault_after
from embstore.ids import id_type_of
from embstore.producer import Producer
from embstore.progress import Steps, bar
from embstore.refs import VersionInfo, check_alias_name, check_set_name
from embstore.versions.alignment import PreAligned, align_for_publish
from embstore.versions.gates import Checks

if TYPE_CHECKING:
    from embstore.backends.feature_repo import FeatureRepo
    from embstore.backends.registry import Registry
    from embstore.catalogue import PluginCatalogue
    from embstore.versions.aliases import Aliases
    from embstore.versions.gates import Gatekeeper
    from embstore.versions.reader import VersionReader

STEPS = ("validate", "files", "offline", "feast_apply", "online", "index", "publish")


@dataclass(frozen=True)
class Provenance:
    """Where a version's vectors came from, recorded with it."""

    producer: str = "external"
    plugin: str = "external"
    plugin_version: str = "unknown"
    config: Mapping[str, Any] = field(default_factory=dict)
    input_fingerprint: str | None = None


@dataclass(frozen=True)
class PublishRequest:
    """Everything one publish needs. ``retriever_config`` is a mapping (merged over the store's
    defaults) or an already validated config; ``align_to`` is 'prev', an alias, a number, a ref,
    or PreAligned when the caller rotated the vectors itself; ``checks`` are evaluators and gates."""

    set_name: str
    embeddings: Embeddings
    provenance: Provenance = Provenance()
    entity: str = "item_id"
    promote: str | None = None
    retriever: str | None = None
    retriever_config: Mapping[str, Any] | PluginConfig | None = None
    align_to: str | PreAligned | None = None
    checks: Checks = Checks()
    valid_from: datetime | None = None  # training rows from this time on may use the vectors; None: build time
    writers: Any = None  # an engine's VersionWriters for the offline data and online rows; None: the store's


class Publisher:
    """Publishes versions into the registry, the version files, Feast and the index."""

    def __init__(self, registry: "Registry", feast: "FeatureRepo", plugins: Callable[[], "PluginCatalogue"],
                 reader: "VersionReader", aliases: "Aliases", gates: "Gatekeeper", sets_dir: Path, *, retriever: str,
                 retriever_config: Mapping[str, Any], progress: bool):
        self.registry, self.feast, self.plugins, self.reader = registry, feast, plugins, reader
        self.aliases, self.gates = aliases, gates
        self.sets_dir = sets_dir
        self.default_retriever, self.default_retriever_config = retriever, dict(retriever_config)
        self.progress = progress

    def retriever_for(self, name: str | None, config: Mapping[str, Any] | PluginConfig | None):
        """The retriever class and validated config for a new version (the store's default
        retriever's settings apply under the given config)."""
        name = name or self.default_retriever
        rcls = self.plugins().retriever(name)
        if isinstance(config, PluginConfig):
            return rcls, config
        merged = {**self.default_retriever_config, **dict(config or {})} if name == self.default_retriever \
            else dict(config or {})
        return rcls, parse_config(rcls.Config, merged, f"retriever {name!r}")

    def publish(self, request: PublishRequest) -> VersionInfo:
        check_set_name(request.set_name)
        if request.promote:
            check_alias_name(request.promote)
        if not request.checks:
            return Publication(self, request).run()
        version = Publication(self, replace(request, promote=None, checks=Checks())).run()
        return self.gates.evaluate(version, request.checks, request.promote)

    def rematerialize(self, version: VersionInfo) -> int:
        """Rewrite a published version's online rows from its checksummed offline file (after the
        online store lost them); returns the rows written."""
        frame = files.read_offline(Path(version.storage_path), version.checksums)
        with bar(len(frame), f"online store {version.ref}", unit="rows", enabled=self.progress) as b:
            self.feast.restore_online(version.feature_view, frame, progress=b.update)
        return len(frame)

    def producer_class(self, name: str) -> type[Producer]:
        return self.plugins().producers.get(name, Producer)

    def collect(self) -> list[str]:
        """Remove the files and Feast views of failed versions; published data is never touched."""
        self.registry.reap_dead_builders()
        removed = []
        for set_name in self.registry.set_names():
            for v in self.registry.versions(set_name):
                if v.status != "failed" or v.step == "collected":
                    continue
                self.feast.delete_version(set_name, v.number)
                if v.storage_path and Path(v.storage_path).exists():
                    shutil.rmtree(v.storage_path)
                self.registry.update_version(set_name, v.number, step="collected")
                removed.append(v.ref)
        return removed


class Background:
    """``work(*args)`` in a thread of its own: ``result`` waits and gives what it returned, or raises
    what it raised. The index build and the offline file run this way beside the online rows."""

    def __init__(self, name: str, work: Callable[..., Any], *args: Any):
        self.value, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(work, args), name=f"embstore-{name}", daemon=True)
        self.thread.start()

    def _run(self, work: Callable[..., Any], args: tuple) -> None:
        try:
            self.value = work(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the publishing thread by result()
            self.error = exc

    def result(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


def built(retriever: Any, vectors: np.ndarray) -> Any:
    retriever.build(vectors)
    return retriever


def build_threads() -> int:
    """Threads for an index built beside the offline and online writes: every core but one, which
    the writes keep (on 2 cores a 2-threaded build slowed the online rows by a third: 1M rows
    published in 10.2 s, 9.4 s with the build on one thread; bench/bench_publish.py). A build
    that retriever adds in blocks (faiss ivf, flat) takes every core again once the writes are done."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


class Publication:
    """One version on its way to published: ``run`` takes it through STEPS, one method each."""

    def __init__(self, publisher: Publisher, request: PublishRequest):
        self.p, self.request = publisher, request
        self.checksums: dict[str, str] = {}

    def run(self) -> VersionInfo:
        self.prepare()  # everything that can be refused is refused before a version number exists
        self.version = self.p.registry.begin_version(
            self.set_name, self.request.entity, self.provenance.producer, self.provenance.plugin,
            self.provenance.plugin_version, dict(self.provenance.config), self.rcls.name,
            self.rcfg.model_dump(mode="json"), self.provenance.input_fingerprint, self.valid_from(),
        )
        self.number = self.version.number
        self.directory = self.p.sets_dir / self.set_name / f"v{self.number}"
        steps = Steps(STEPS, f"publish {self.set_name}@{self.number}", enabled=self.p.progress)
        try:
            for step in STEPS:
                published = getattr(self, f"step_{step}")()
                steps.done(step)
                if step != "publish":
                    fault_after(step)
        except BaseException as exc:
            error = self.failed(exc)
            if error is exc:
                raise
            raise error from exc
        finally:
            steps.close()
        if self.request.promote:  # the alias moved with the publish: its FeatureService follows
            self.p.aliases.follow(self.set_name)
        return published

    def valid_from(self) -> datetime | None:
        """The request's valid-from as the registry stores it (microseconds, rounded up so no row
        before the true time is let in)."""
        if self.request.valid_from is None:
            return None
        import pandas as pd

        stamp = pd.Timestamp(self.request.valid_from)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.ceil("us").to_pydatetime()

    @property
    def set_name(self) -> str:
        return self.request.set_name

    @property
    def provenance(self) -> Provenance:
        return self.request.provenance

    def prepare(self) -> None:
        r = self.request
        if not r.entity.isidentifier():
            raise ConfigError(f"entity {r.entity!r} must be a column name like item_id")
        self.emb = r.embeddings.validated()  # bad vectors: one clear error, nothing stored
        self.aligned_to = None
        if isinstance(r.align_to, PreAligned):  # rotated by the caller, with the sets it belongs with
            self.aligned_to = r.align_to.ref
        elif r.align_to:
            self.emb, self.aligned_to = align_for_publish(self.p.reader, r.set_name, self.emb, r.align_to)
        self.rcls, self.rcfg = self.p.retriever_for(r.retriever, r.retriever_config)
        self.id_type = id_type_of(self.emb.ids)
        self.p.feast.check_entity(r.entity, self.id_type)

    def record(self, step: str, **fields: Any) -> None:
        self.p.registry.update_version(self.set_name, self.number, step=step, **fields)

    def step_validate(self) -> None:
        if self.directory.exists():  # leftovers of an earlier failed attempt under this number
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        self.record("validate", id_type=self.id_type, dim=self.emb.dim, count=len(self.emb),
                    storage_path=str(self.directory))

    def step_files(self) -> None:
        self.checksums.update(files.write_vectors(self.directory, self.emb))
        if self.emb.state is not None:
            producer = self.p.producer_class(self.provenance.producer)
            self.checksums.update(files.write_state(self.directory, self.emb.state, producer))
        self.record("files", checksums=self.checksums)
        retriever, writers = self.rcls(self.rcfg), self.request.writers
        if writers is not None and writers.builds_index(retriever, len(self.emb), self.emb.dim):
            self.index_build = None  # the engine builds it in the index step (e.g. shard by shard on its executors)
            self.engine_index = retriever
            return
        vectors = self.emb.vectors.view()  # read-only: a build that writes into its input would change the rows
        vectors.flags.writeable = False    # the offline and online steps are writing at the same time
        retriever.build_threads = build_threads()  # lifted when the writes are done (step_online)
        self.index_retriever = retriever
        self.index_build = Background("index", built, retriever, vectors)  # overlaps offline and online

    def step_offline(self) -> None:
        writers = self.request.writers
        if writers is None:  # the file is written beside the online rows; the online step waits for it
            self.frame = files.offline_frame(self.emb, self.request.entity, self.version.valid_from)
            self.offline_write = Background("offline", files.write_offline, self.directory, self.frame)
            self.offline = self.directory / files.OFFLINE
        else:  # an engine's (a Spark dataset written by the executors)
            written = writers.write_offline(self.emb, self.request.entity, self.version.valid_from, self.directory)
            for path in written.files:
                self.checksums[str(Path(path).resolve().relative_to(self.directory.resolve()))] = files.sha256_file(path)
            self.offline = written.location
        self.record("offline", checksums=self.checksums)

    def step_feast_apply(self) -> None:
        self.feature_view = self.p.feast.apply_version(
            self.set_name, self.number, self.request.entity, self.id_type, self.offline, dict(self.emb.extras))
        self.record("feast_apply", feature_view=self.feature_view)

    def step_online(self) -> None:
        with bar(len(self.emb), "online store", unit="rows", enabled=self.p.progress) as b:
            if self.request.writers is None:
                self.p.feast.write_online(self.feature_view, self.frame, progress=b.update)
                del self.frame
                self.checksums.update(self.offline_write.result())
                self.offline_write = None
            else:
                self.request.writers.write_online(self.feature_view, self.emb, self.request.entity,
                                                  self.version.valid_from, progress=b.update)
        if getattr(self, "index_build", None) is not None:
            self.index_retriever.build_threads = None  # the writes are done: the build may use every core
        self.record("online", checksums=self.checksums)

    def step_index(self) -> None:
        index_dir = self.directory / files.INDEX_DIR
        if self.index_build is not None:
            index = self.index_build.result()
            self.index_report = dict(index.report() or {})  # kept in the version's metrics["index"]
            index_dir.mkdir()
            written = index.save(index_dir)
        else:
            index, written = self.engine_index, self.engine_built_index(index_dir)
            self.index_report = dict(index.report() or {})
        for path in written:
            relative = str(Path(path).resolve().relative_to(self.directory.resolve()))
            self.checksums[relative] = files.sha256_file(Path(path))
        self.record("index", checksums=self.checksums)

    def engine_built_index(self, index_dir: Path) -> list[Path]:
        """The engine's build of the index into ``index_dir``, its intermediate files in a staging
        directory of the version that is gone afterwards, built or not."""
        staging = self.directory / files.INDEX_STAGING
        index_dir.mkdir()
        staging.mkdir()
        try:
            return self.request.writers.build_index(self.engine_index, self.emb, self.request.entity,
                                                    self.version.valid_from, index_dir, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def step_publish(self) -> VersionInfo:
        metrics = {**self.emb.metadata, **({"index": self.index_report} if self.index_report else {})}
        return self.p.registry.publish(self.set_name, self.number, self.request.promote, checksums=self.checksums,
                                       metrics=jsonable(metrics), aligned_to=self.aligned_to)

    def failed(self, exc: BaseException) -> BaseException:
        """Mark the version failed and say so in one line (the full text is in the version's error)."""
        writing = getattr(self, "offline_write", None)
        if writing is not None:  # no thread left writing into a failed version's directory
            writing.thread.join()
        outcome = "the version is marked failed, aliases unchanged"
        try:
            self.p.registry.mark_failed(self.set_name, self.number, f"{type(exc).__name__}: {exc}")
        except EmbstoreError:  # the registry is down too: the version is marked failed once it is back
            outcome = "aliases unchanged; the version will be marked failed once the registry is reachable"
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
        first = first_line(exc) if str(exc).strip() else ""
        if isinstance(exc, EmbstoreError):
            return PublishError(f"publishing {self.set_name}@{self.number} failed ({first}); {outcome}")
        return PublishError(f"publishing {self.set_name}@{self.number} failed at step {self.step_now()!r}: "
                            f"{type(exc).__name__}: {first}; {outcome}")

    def step_now(self) -> str | None:
        try:
            return self.p.registry.version(self.set_name, self.number).step
        except EmbstoreError:
            return None


def jsonable(value: Any) -> Any:
    """Metrics as plain JSON values (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
