"""Reading published versions: resolve a ref, load its vectors and index, answer lookups and recall.

Every load is checked against the checksums recorded at publish, once per process
per file state (embstore.backends.files); loaded indexes are kept per version.

Resolved refs are kept until the registry's change counter moves (``Registry.change_marker``:
one primary-key read on a connection of its own, bumped in the same transaction as every
publish, alias move, rollback and version update), so a call costs no registry query while
nothing changed, and the first call after a change, from any process, sees it. A service that
reads one version per request pins it instead (``VersionReader.pin``): a PinnedVersion skips the
counter read and the file check, and follows its ref only when ``refresh()`` is called.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from embstore.backends import files
from embstore.caching import LRU
from embstore.config import parse_config
from embstore.errors import ConfigError, IntegrityError, UnknownIdsError
from embstore.refs import Ref, VersionInfo

if TYPE_CHECKING:
    from embstore.backends.registry import Registry
    from embstore.catalogue import PluginCatalogue
    from embstore.retriever import Retriever


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


class _Opened:
    """A version's loaded vectors and index in one reader, with the state of the vectors' files."""

    __slots__ = ("paths", "checksums", "state", "loaded", "retriever")

    def __init__(self, version: VersionInfo):
        self.paths = (os.path.join(version.storage_path, files.VECTORS), os.path.join(version.storage_path, files.IDS))
        self.checksums = version.checksums
        self.state: tuple | None = None
        self.loaded: files.LoadedVectors | None = None
        self.retriever: "Retriever | None" = None

    def state_now(self) -> tuple | None:
        try:
            a, b = os.stat(self.paths[0]), os.stat(self.paths[1])
        except OSError:
            return None  # files.load_vectors names what is missing
        return a.st_size, a.st_mtime_ns, a.st_ino, b.st_size, b.st_mtime_ns, b.st_ino


EXPORT_FORMATS = {"parquet": (".parquet", ".pq"), "npz": (".npz",)}


def unknown_ids(missing: list, asked: int, ref: str, what: str = "ids") -> UnknownIdsError:
    shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
    return UnknownIdsError(f"{len(missing)} of {asked} {what} are not in {ref}: {shown}", missing)


class VersionReader:
    """Resolves refs against the registry and reads the published versions they name."""

    RESOLVED_MAX = 4096  # refs kept resolved (the whole memory is dropped when it grows past this)
    OPENED_MAX = 16  # versions whose loaded vectors and index the reader holds (as many as indexes are kept)

    def __init__(self, registry: "Registry", plugins: Callable[[], "PluginCatalogue"]):
        self.registry = registry
        self.plugins = plugins  # the current catalogue, looked up on use (plugins may be reloaded)
        self._indexes = LRU(16)
        self._resolved: dict[str, tuple[int, VersionInfo]] = {}  # ref text -> (change counter, version)
        self._opened: dict[str, _Opened] = {}  # storage path -> its loaded vectors, their files' state, index
        self._opening = threading.Lock()

    @classmethod
    def open(cls, home: str | os.PathLike | None = None) -> "VersionReader":
        """A reader of a home's published versions and nothing more: no Feast repo, no publisher,
        no reaping of dead builders (EmbeddingStore does those). What read-only commands open, so
        they start fast; ``close()`` it after."""
        from functools import partial

        from embstore.backends import open_backend
        from embstore.backends.registry import Registry
        from embstore.catalogue import catalogue
        from embstore.settings import load_settings, resolve_home

        path = resolve_home(home)
        settings = load_settings(path)
        backend = open_backend(settings, path)
        return cls(Registry(backend.registry_url()), partial(catalogue, tuple(settings.plugins)))

    def close(self) -> None:
        self.registry.close()

    def resolve(self, ref: str | Ref | VersionInfo) -> VersionInfo:
        """The published version a ref names now: a move committed before this call, by any
        process, is always seen. A VersionInfo passes through, so a caller that resolved once
        (the HTTP server) reads exactly that version in every later call."""
        if isinstance(ref, VersionInfo):
            return ref
        key = ref if isinstance(ref, str) else str(ref)
        marker = self.registry.change_marker()  # read before resolving: a change in between is seen next time
        if marker is not None:
            hit = self._resolved.get(key)
            if hit is not None and hit[0] == marker:
                return hit[1]
        version = self.registry.resolve(ref)
        if marker is not None:
            if len(self._resolved) >= self.RESOLVED_MAX:
                self._resolved.clear()
            self._resolved[key] = (marker, version)
        return version

    def ready(self, ref: str | Ref | VersionInfo) -> VersionInfo | None:
        """The version ``ref`` names now if this reader holds its vectors and index already (a read of
        it then touches no disk), else None: what a server may answer without leaving its event loop."""
        version = self.resolve(ref)
        opened = self._opened.get(version.storage_path)
        if opened is not None and opened.retriever is not None and opened.checksums == version.checksums:
            return version
        return None

    def load(self, ref: str | Ref | VersionInfo) -> files.LoadedVectors:
        """All ids and vectors of a version (memory-mapped), with an id -> row lookup."""
        return self._open(self.resolve(ref)).loaded

    def _open(self, version: VersionInfo) -> "_Opened":
        """The reader's entry of a version with its vectors loaded. While their files keep their
        size, modification time and inode, the same load serves after two stat calls; otherwise
        files.load_vectors checks them again (once per process per file state)."""
        opened = self._opened.get(version.storage_path)
        if opened is not None and opened.checksums == version.checksums:
            state = opened.state_now()
            if state is not None and state == opened.state:
                return opened
        fresh = _Opened(version)
        fresh.state = fresh.state_now()  # before loading: a change during the load is seen next time
        fresh.loaded = files.load_vectors(Path(version.storage_path), version.checksums)
        if opened is not None and opened.checksums == version.checksums:
            fresh.retriever = opened.retriever  # the index files are not what changed
        with self._opening:
            self._opened.pop(version.storage_path, None)
            while len(self._opened) >= self.OPENED_MAX:
                self._opened.pop(next(iter(self._opened)))
            self._opened[version.storage_path] = fresh
        return fresh

    def index(self, ref: str | Ref | VersionInfo) -> "Retriever":
        """The version's loaded index (checksums verified on first load)."""
        version = self.resolve(ref)
        opened = self._opened.get(version.storage_path)
        if opened is not None and opened.retriever is not None and opened.checksums == version.checksums:
            return opened.retriever
        key = (version.storage_path, tuple(sorted(version.checksums.items())))
        retriever = self._indexes.get_or_build(key, lambda: self._load_index(version))
        if opened is not None and opened.checksums == version.checksums:
            opened.retriever = retriever
        return retriever

    def _load_index(self, version: VersionInfo) -> "Retriever":
        directory = Path(version.storage_path)
        index_files = [k for k in version.checksums if k.startswith(files.INDEX_DIR + "/")]
        if not index_files:
            raise IntegrityError(f"{version.ref} has no index files recorded")
        files.verify(directory, version.checksums, index_files)
        rcls = self.plugins().retriever(version.retriever)
        rcfg = parse_config(rcls.Config, version.retriever_config, f"retriever {version.retriever!r}")
        return rcls.load(directory / files.INDEX_DIR, rcfg)

    def pin(self, ref: str | Ref | VersionInfo) -> "PinnedVersion":
        """The version ``ref`` names now, held open with its vectors and index loaded (checked as
        any load is): what a service reads through when it must not pay a registry read and a file
        check on every call. It keeps reading that version; ``refresh()`` follows the ref."""
        version = self.resolve(ref)
        opened = self._open(version)
        retriever = opened.retriever if opened.retriever is not None else self.index(version)
        return PinnedVersion(self, ref, version, opened.loaded, retriever)

    def vectors(self, ref: str | Ref | VersionInfo, ids: Iterable[Any], *, allow_missing: bool = False) -> Vectors:
        """Vectors for ``ids``; unknown ids raise UnknownIdsError unless ``allow_missing``."""
        version = self.resolve(ref)
        return _vectors(version, self._open(version).loaded, ids, allow_missing)

    def recall(self, ref: str | Ref | VersionInfo, ids: Sequence[Any] | None = None, vectors: np.ndarray | None = None,
               k: int = 10, exclude: Iterable[Any] | None = None, *, exclude_query: bool = True) -> list[Neighbours]:
        """Top-k neighbours for each query id (itself excluded) or each raw query vector."""
        _check_recall(ids, vectors, k)
        version = self.resolve(ref)
        opened = self._open(version)
        retriever = opened.retriever if opened.retriever is not None else self.index(version)
        return _recall(version, opened.loaded, retriever, ids, vectors, k, exclude, exclude_query)

    def export(self, ref: str | Ref | VersionInfo, out: str | os.PathLike) -> Path:
        """Write the version's ids and vectors to ``out``, in the format its name ends with:
        ``.parquet`` (columns ``id`` and ``vector``, a list of float32) or ``.npz`` (arrays ``ids``
        and ``vectors``). Any other name is refused before anything is read."""
        out = Path(out)
        kind = next((k for k, endings in EXPORT_FORMATS.items() if out.name.lower().endswith(endings)), None)
        if kind is None:
            raise ConfigError(f"cannot export to {out.name}: name it .parquet (columns id, vector) or .npz "
                              "(arrays ids and vectors); a .npy holds one array and would lose the ids")
        loaded = self.load(ref)
        vec = np.asarray(loaded.vectors, dtype=np.float32)
        tmp = out.with_name(f".{out.name}.tmp")
        if kind == "npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=loaded.ids.astype(str) if loaded.ids.dtype == object else loaded.ids, vectors=vec)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = pa.array(vec.reshape(-1), type=pa.float32())
            offsets = pa.array(np.arange(0, vec.size + 1, vec.shape[1], dtype=np.int32))
            ids = pa.array(loaded.ids.tolist(), type=pa.int64() if loaded.ids.dtype.kind in "iu" else pa.string())
            pq.write_table(pa.table({"id": ids, "vector": pa.ListArray.from_arrays(offsets, flat)}), tmp)
        os.replace(tmp, out)
        return out


class PinnedVersion:
    """One published version held open for a service: its loaded vectors and index, checked once
    when pinned, answer every call with no change-counter read and no file check (a recall by id
    then costs the index search and little more: bench/bench_read.py). It never moves by itself:
    ``refresh()`` is where its holder sees an alias move, at the cost of one unpinned call."""

    __slots__ = ("ref", "version", "loaded", "retriever", "_reader")

    def __init__(self, reader: VersionReader, ref: str | Ref | VersionInfo, version: VersionInfo,
                 loaded: files.LoadedVectors, retriever: "Retriever"):
        self.ref, self.version, self.loaded, self.retriever = ref, version, loaded, retriever
        self._reader = reader

    def __repr__(self) -> str:
        return f"PinnedVersion({self.version.ref}, pinned as {str(self.ref)!r})"

    def refresh(self) -> "PinnedVersion":
        """The pin of what the ref names now: this one while the ref names the same version and its
        files are unchanged, a new one (loaded and checked) after an alias move, from any process,
        that committed before this call."""
        version = self._reader.resolve(self.ref)
        opened = self._reader._open(version)
        if opened.loaded is self.loaded and version.checksums == self.version.checksums:
            return self
        return self._reader.pin(version if isinstance(self.ref, VersionInfo) else self.ref)

    def vectors(self, ids: Iterable[Any], *, allow_missing: bool = False) -> Vectors:
        """Vectors for ``ids`` from the pinned version (as ``EmbeddingStore.vectors``)."""
        return _vectors(self.version, self.loaded, ids, allow_missing)

    def recall(self, ids: Sequence[Any] | None = None, vectors: np.ndarray | None = None, k: int = 10,
               exclude: Iterable[Any] | None = None, *, exclude_query: bool = True) -> list[Neighbours]:
        """Top-k neighbours in the pinned version (as ``EmbeddingStore.recall``)."""
        _check_recall(ids, vectors, k)
        return _recall(self.version, self.loaded, self.retriever, ids, vectors, k, exclude, exclude_query)


def _vectors(version: VersionInfo, loaded: files.LoadedVectors, ids: Iterable[Any], allow_missing: bool) -> Vectors:
    if not isinstance(ids, (list, tuple, np.ndarray)):
        ids = list(ids)
    rows, missing = loaded.rows(ids)
    if missing and not allow_missing:
        raise unknown_ids(missing, len(ids), version.ref)
    return Vectors(ids=loaded.ids[rows].tolist(), matrix=loaded.take(rows), missing=missing)


def _check_recall(ids: Any, vectors: Any, k: Any) -> None:
    if (ids is None) == (vectors is None):
        raise ConfigError("recall needs exactly one of ids=[...] or vectors=...")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")


def _recall(version: VersionInfo, loaded: files.LoadedVectors, retriever: "Retriever", ids: Sequence[Any] | None,
            vectors: Any, k: int, exclude: Iterable[Any] | None, exclude_query: bool) -> list[Neighbours]:
    """The top-k neighbours of query ids (themselves skipped if ``exclude_query``) or raw vectors."""
    excluded = set(loaded.rows(list(exclude))[0].tolist()) if exclude is not None else None
    extra = len(excluded) if excluded else 0
    all_ids = loaded.ids
    if ids is not None:
        ids = ids if type(ids) is list else list(ids)
        rows, missing = loaded.rows(ids)
        if missing:
            raise UnknownIdsError(f"{len(missing)} query ids are not in {version.ref}: "
                                  + ", ".join(repr(m) for m in missing[:10]), missing)
        want = min(k + extra + (1 if exclude_query else 0), len(all_ids))
        found = retriever.search_rows(rows, want)  # the index's own copies of the queries, if it keeps them
        found_rows, scores = found if found is not None else retriever.search(loaded.take(rows), want)
        skips, labels = rows.tolist() if exclude_query else [None] * len(ids), ids
    else:
        queries = _query_vectors(version, vectors)
        found_rows, scores = retriever.search(queries, min(k + extra, len(all_ids)))
        skips = labels = [None] * len(queries)
    out = []
    for label, skip, frow, fscore in zip(labels, skips, found_rows.tolist(), scores.tolist()):
        if excluded:
            kept = [i for i, r in enumerate(frow) if r >= 0 and r != skip and r not in excluded][:k]
            frow, fscore = [frow[i] for i in kept], [fscore[i] for i in kept]
        else:  # the common case, kept short: it runs right after a search has emptied the caches
            if skip is not None and skip in frow:
                at = frow.index(skip)
                del frow[at], fscore[at]
            if frow and frow[-1] < 0:  # empty slots come last
                kept = frow.index(-1)
                frow, fscore = frow[:kept], fscore[:kept]
            if len(frow) > k:
                frow, fscore = frow[:k], fscore[:k]
        out.append(Neighbours(query=label, ids=all_ids.take(frow).tolist(), scores=fscore))
    return out


def _query_vectors(version: VersionInfo, vectors: Any) -> np.ndarray:
    queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if queries.ndim != 2 or queries.shape[1] != version.dim:
        raise ConfigError(
            f"query vectors have dimension {queries.shape[-1]}, {version.ref} has dimension {version.dim}"
        )
    if not np.isfinite(queries).all():
        raise ConfigError("query vectors contain NaN or inf")
    return queries
