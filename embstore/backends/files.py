"""A version's files on disk, written once and verified by checksum on every load.

Layout under HOME/sets/<set>/v<N>/:
  embeddings.parquet  Feast offline source: <entity>, event_timestamp, created_timestamp, row, embedding, extras
                      (a version written by the spark engine has a partitioned dataset embeddings/ instead)
  ids.parquet         the ids, row i = vector i
  vectors.npy         float32 (n, d): embstore's own copy for fast reads, identical to Feast's
  index/              the retriever's files
  index-shards/       only while an engine builds the index in shards (removed after, built or not)
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embstore.caching import LRU
from embstore.embeddings import Embeddings
from embstore.errors import IntegrityError

if TYPE_CHECKING:
    import pandas as pd  # imported where frames are made: the read path (embstore recall) does without it

VECTORS = "vectors.npy"
IDS = "ids.parquet"
OFFLINE = "embeddings.parquet"
OFFLINE_DATASET = "embeddings"  # the spark engine's partitioned offline dataset
PARTITIONS = ("bucket",)  # its partition column, not one of the version's
INDEX_DIR = "index"
INDEX_STAGING = "index-shards"  # an engine's shards of the index while it is built; removed after
STATE_DIR = "state"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_vectors(directory: Path, emb: Embeddings) -> dict[str, str]:
    """ids.parquet and vectors.npy; returns their checksums by relative path."""
    directory.mkdir(parents=True, exist_ok=True)
    ids_table = pa.table({"id": pa.array(emb.ids, type=pa.int64() if emb.ids.dtype.kind in "iu" else pa.string())})
    pq.write_table(ids_table, directory / IDS)
    np.save(directory / VECTORS, emb.vectors)
    _fsync_dir(directory)
    return {IDS: sha256_file(directory / IDS), VECTORS: sha256_file(directory / VECTORS)}


MAX_LIST_VALUES = 2**31 - 1  # an Arrow list array's int32 offsets address at most this many values per chunk


def list_column(values: np.ndarray) -> pd.Series:
    """A 2-D array's rows as an Arrow-backed list column over the array's own memory: no Python
    object per row (an Arrow ListArray of constant-step offsets; chunks of at most MAX_LIST_VALUES)."""
    import pandas as pd

    values = np.ascontiguousarray(values)
    n, width = values.shape
    flat = values.reshape(-1)
    per_chunk = max(1, MAX_LIST_VALUES // max(width, 1))
    chunks = []
    for start in range(0, n, per_chunk):
        rows = min(per_chunk, n - start)
        offsets = pa.array((np.arange(rows + 1, dtype=np.int64) * width).astype(np.int32))
        chunks.append(pa.ListArray.from_arrays(offsets, pa.array(flat[start * width:(start + rows) * width])))
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array(chunks, type=pa.list_(pa.from_numpy_dtype(values.dtype)))))


def offline_frame(emb: Embeddings, entity: str, valid_from: datetime) -> pd.DataFrame:
    """The rows Feast serves: one per id, all stamped with the version's valid-from time (event and
    created time alike, so Feast's point-in-time join gives them to rows from that time on).

    ``embedding`` and the 2-D extras are Arrow-backed list columns over the arrays' memory
    (``list_column``); memory beyond the vectors: the id, time and row columns (8 bytes each per row)."""
    import pandas as pd

    ts = pd.Timestamp(valid_from).tz_convert("UTC") if pd.Timestamp(valid_from).tzinfo else pd.Timestamp(valid_from, tz="UTC")
    frame = pd.DataFrame(
        {
            entity: emb.ids,
            "event_timestamp": ts,
            "created_timestamp": ts,
            "row": np.arange(len(emb), dtype=np.int64),
            "embedding": list_column(emb.vectors),
        }
    )
    for name, arr in emb.extras.items():
        frame[name] = list_column(arr) if arr.ndim > 1 else arr
    return frame


def _offline_schema(frame: pd.DataFrame) -> pa.Schema:
    """The offline file's schema, pandas metadata included, as embstore has always written it: from
    a frame whose list cells are numpy arrays, with ``embedding`` as list<float32> (made here from
    the first row, so the Arrow-backed columns of ``offline_frame`` write the very same file)."""
    import pandas as pd

    head = frame.iloc[:1]
    head = head.astype({c: object for c, t in head.dtypes.items() if isinstance(t, pd.ArrowDtype)})
    schema = pa.Schema.from_pandas(head, preserve_index=False)
    at = schema.get_field_index("embedding")
    return schema.set(at, pa.field("embedding", pa.list_(pa.float32())))


def write_offline(directory: Path, frame: pd.DataFrame) -> dict[str, str]:
    """Feast's offline source file of the version (columns as ``offline_frame`` makes them, or with
    numpy arrays as list cells): the Arrow columns are written as they are."""
    directory.mkdir(parents=True, exist_ok=True)
    schema = _offline_schema(frame)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(schema.metadata), directory / OFFLINE)
    return {OFFLINE: sha256_file(directory / OFFLINE)}


def verify(directory: Path, checksums: dict[str, str], names: list[str] | None = None) -> None:
    """Raise IntegrityError naming the first file whose bytes differ from the recorded checksum."""
    for rel in names if names is not None else sorted(checksums):
        expected = checksums.get(rel)
        if expected is None:
            raise IntegrityError(f"no checksum recorded for {directory / rel}; the version is incomplete")
        path = directory / rel
        if not path.exists():
            raise IntegrityError(f"{path} is missing; the version's files were removed or moved")
        if sha256_file(path) != expected:
            raise IntegrityError(
                f"{path} does not match its recorded checksum (truncated or altered); "
                "republish the version or roll its alias back"
            )


_INDEX_LOCK = threading.Lock()
SMALL_LOOKUP = 8  # up to this many ids are looked up one at a time (get_loc ~0.5 µs; get_indexer ~3 µs to start)
SCANNED_LOOKUPS = 4  # small lookups answered by scanning the ids before the hash index is built: a process
# that asks for one or two ids (embstore recall) neither builds it (~30 ms per million ids) nor imports pandas
_INT64 = np.iinfo(np.int64)


class IdTable:
    """id -> row: pandas' own hash table of the ids (what a ``pd.Index`` of them looks up with), called
    directly: the same answers as ``Index.get_indexer`` / ``get_loc`` without pandas' Python layers
    over them, which cost more than the lookup on a serving path whose caches the index search has
    just emptied (a get_loc 22 µs cold against 7 µs)."""

    def __init__(self, ids: np.ndarray):
        from pandas._libs import hashtable

        if ids.dtype.kind in "iu":
            table, self.kind = hashtable.Int64HashTable(len(ids)), np.int64
        else:
            table, self.kind = hashtable.PyObjectHashTable(len(ids)), object
        table.map_locations(np.asarray(ids, dtype=self.kind))
        if len(table) != len(ids):  # published versions have unique ids
            raise IntegrityError("a version's ids are not unique; republish it")
        self.get_loc = table.get_item  # a row, or KeyError
        self._lookup = table.lookup

    def get_indexer(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` (int64 keys, or text as objects), -1 for unknown ones."""
        return self._lookup(np.asarray(keys, dtype=self.kind))


@dataclass(frozen=True)
class LoadedVectors:
    """A version's ids and vectors (memory-mapped), with a hashed id → row lookup (``rows``)."""

    ids: np.ndarray
    vectors: np.ndarray

    @cached_property
    def index(self) -> "IdTable":
        """The ids' hash table: rows of many ids at once (``get_indexer``) or of one (``get_loc``).
        Built here, under a lock, so threads doing their first lookup at once share one table."""
        with _INDEX_LOCK:
            return IdTable(self.ids)

    @cached_property
    def _scans(self) -> list[int]:
        return [0]

    def _scan(self, key) -> int:
        """The row of ``key`` by comparing it with every id (get_loc's answer, without the index)."""
        found = np.flatnonzero(self.ids == key)
        if not len(found):
            raise KeyError(key)
        return int(found[0])

    @cached_property
    def row_of(self) -> dict:
        """id → row as a dict, built on first use (``rows`` does not need it)."""
        return {k: i for i, k in enumerate(self.ids.tolist())}

    @cached_property
    def array(self) -> np.ndarray:
        """``vectors`` as a plain ndarray over the same memory map (``take`` returns ndarrays)."""
        return np.asarray(self.vectors)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """A float32 copy of the vectors at ``rows``."""
        out = self.array.take(rows, axis=0)
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def prepare(self) -> "LoadedVectors":
        """Build the id hash table now, not in the first ``rows`` call (about 30 ms per million ids)."""
        self.index
        return self

    def rows(self, ids) -> tuple[np.ndarray, list]:
        """Rows of the known ids (in request order) and the list of unknown ids (in request order).

        In a set of integer ids an id is what ``int()`` makes of it (``"7"`` is 7; text that is
        no integer is unknown); in a set of text ids it is its ``str()``. One hashed lookup for
        the whole batch (``IdTable.get_indexer``)."""
        if not isinstance(ids, (list, tuple, np.ndarray)):
            ids = list(ids)
        if len(ids) <= SMALL_LOOKUP:
            if len(ids) == 1 and type(ids[0]) is int and "index" in self.__dict__:  # a service's one id
                try:
                    return np.array([self.index.get_loc(ids[0])], dtype=np.int64), []
                except (KeyError, OverflowError):
                    pass  # unknown, out of int64, or an int in a set of text ids: the general lookup says which
            return self._rows_one_by_one(ids)
        int_set = self.ids.dtype.kind in "iu"
        keys, valid = _int_keys(ids) if int_set else (_str_keys(ids), None)
        if valid is None:
            positions = self.index.get_indexer(keys)
        else:
            positions = np.full(len(ids), -1, dtype=np.intp)
            positions[valid] = self.index.get_indexer(keys)
        found = positions >= 0
        if found.all():
            return positions.astype(np.int64, copy=False), []
        missing = [ids[i] for i in np.flatnonzero(~found).tolist()]
        return positions[found].astype(np.int64, copy=False), missing

    def _rows_one_by_one(self, ids) -> tuple[np.ndarray, list]:
        rows, missing = [], []
        if "index" not in self.__dict__ and self._scans[0] < SCANNED_LOOKUPS:
            self._scans[0] += 1  # a race only scans once more
            locate = self._scan
        else:
            locate = self.index.get_loc
        as_key = _int_key if self.ids.dtype.kind in "iu" else str
        for raw in ids:
            key, row = as_key(raw), None
            if key is not None:
                try:
                    row = locate(key)
                except KeyError:
                    pass
            if row is None:
                missing.append(raw)
            else:
                rows.append(row)
        return np.asarray(rows, dtype=np.int64), missing


def _int_key(raw) -> int | None:
    """The int64 an id names in a set of integer ids, or None (no integer, or out of range)."""
    try:
        key = int(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return key if _INT64.min <= key <= _INT64.max else None


def _int_keys(ids) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 keys of ``ids`` and a mask of the ids that have one (None: all do). A batch numpy
    reads as integers (ints, bools, numpy integers; ``int()`` gives the same) is taken whole;
    anything else goes through ``_int_key`` one id at a time."""
    try:
        arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
    except (ValueError, TypeError, OverflowError):  # ragged or odd elements
        arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iub":
        if arr.dtype.kind == "u" and arr.size and arr.max() > _INT64.max:
            arr = None
        else:
            return arr.astype(np.int64, copy=False), None
    keys = [_int_key(raw) for raw in ids]
    valid = np.fromiter((k is not None for k in keys), dtype=bool, count=len(keys))
    return np.fromiter((k for k in keys if k is not None), dtype=np.int64), valid


def _str_keys(ids) -> np.ndarray:
    return np.array([raw if type(raw) is str else str(raw) for raw in ids], dtype=object)


_loaded = LRU(32)
_verified = LRU(256)


def _file_state(directory: Path, checksums: dict[str, str], names: list[str]) -> tuple:
    """What a check of these files remembered per process depends on: their recorded checksums,
    sizes and modification times. FileNotFoundError when one is missing."""
    state: list = [str(directory)]
    for name in names:
        st = (directory / name).stat()
        state.append((name, checksums.get(name), st.st_size, st.st_mtime_ns))
    return tuple(state)


def id_array(column: pa.ChunkedArray) -> np.ndarray:
    """The ids of ``ids.parquet`` as numpy: int64 straight from the Arrow buffers, text as objects.
    (pyarrow's own conversions import pandas, ~0.3 s that a command which only reads does without.)"""
    if column.type != pa.int64() or column.null_count:
        return column.to_numpy() if pa.types.is_integer(column.type) else np.asarray(column.to_pylist(), dtype=object)
    parts = [np.frombuffer(c.buffers()[1], dtype=np.int64)[c.offset:c.offset + len(c)] for c in column.chunks]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def load_vectors(directory: Path, checksums: dict[str, str]) -> LoadedVectors:
    """Checked once per process per file state; later calls hit the cache."""
    vpath = directory / VECTORS
    try:
        key = _file_state(directory, checksums, [VECTORS, IDS])
    except FileNotFoundError as exc:
        raise IntegrityError(f"{exc.filename} is missing; the version's files were removed or moved") from None

    def load() -> LoadedVectors:
        verify(directory, checksums, [IDS, VECTORS])
        ids = id_array(pq.ParquetFile(directory / IDS).read(columns=["id"]).column("id"))
        vectors = np.load(vpath, mmap_mode="r")
        return LoadedVectors(ids=ids, vectors=vectors)

    return _loaded.get_or_build(key, load)


def verify_once(directory: Path, checksums: dict[str, str], names: list[str]) -> None:
    """``verify``, remembered per process while each file keeps its size and modification time
    (the policy ``load_vectors`` follows): repeated joins don't re-hash a large offline file."""
    try:
        key = _file_state(directory, checksums, names)
    except FileNotFoundError:
        key = None  # verify names the missing file
    if key is not None and key in _verified:
        return
    verify(directory, checksums, names)
    if key is not None:
        _verified.put(key, True)


def offline_names(checksums: dict[str, str]) -> list[str]:
    """The checksummed files of a version's offline rows: the one file, or a dataset's files."""
    if OFFLINE in checksums:
        return [OFFLINE]
    return sorted(k for k in checksums if k.startswith(OFFLINE_DATASET + "/"))


def offline_location(directory: Path, checksums: dict[str, str]) -> Path:
    """What Feast's source reads: the version's offline file, or its dataset directory."""
    return directory / (OFFLINE if OFFLINE in checksums or not offline_names(checksums) else OFFLINE_DATASET)


def offline_table(location: Path, columns: list[str] | None = None) -> pa.Table:
    """The offline rows of a file or a dataset directory, in row order (a dataset's partition
    columns are not the version's)."""
    if location.is_dir():
        import pyarrow.dataset as ds

        dataset = ds.dataset(location, format="parquet", partitioning="hive")
        names = [n for n in dataset.schema.names if n not in PARTITIONS]
        table = dataset.to_table(columns=columns or names)
        return table.take(np.argsort(table.column("row").to_numpy())) if "row" in table.column_names else table
    return pq.read_table(location, columns=columns)


def read_offline(directory: Path, checksums: dict[str, str]) -> pd.DataFrame:
    """The version's offline rows (Feast's source file or dataset), checksum verified."""
    verify(directory, checksums, offline_names(checksums))
    return offline_table(offline_location(directory, checksums)).to_pandas()


def offline_schema(location: Path) -> pa.Schema:
    if location.is_dir():
        import pyarrow.dataset as ds

        schema = ds.dataset(location, format="parquet", partitioning="hive").schema
        return pa.schema([f for f in schema if f.name not in PARTITIONS])
    return pq.read_schema(location)


def offline_features(parquet: Path, entity: str) -> list[list[str]]:
    """The Feast features of a version's offline file or dataset, as (name, type) pairs:
    ``embedding`` and the extras (the key and the time and row columns are not features)."""
    kinds = {}
    for field in offline_schema(parquet):
        t = field.type
        inner = t.value_type if pa.types.is_list(t) or pa.types.is_large_list(t) else None
        if inner is not None:
            kinds[field.name] = "array<float32>" if pa.types.is_floating(inner) else "array<int64>"
        else:
            kinds[field.name] = "float64" if pa.types.is_floating(t) else "int64"
    extras = [name for name in kinds if name not in _OFFLINE_COLUMNS and name != entity]
    return [["embedding", "array<float32>"]] + [[name, kinds[name]] for name in extras]


_OFFLINE_COLUMNS = {"event_timestamp", "created_timestamp", "row", "embedding"}


def read_extras(directory: Path, checksums: dict[str, str], entity: str) -> dict[str, np.ndarray]:
    """The version's extras (per-row arrays published next to the vector), in row order."""
    verify(directory, checksums, offline_names(checksums))
    location = offline_location(directory, checksums)
    names = [n for n in offline_schema(location).names if n not in _OFFLINE_COLUMNS and n != entity]
    if not names:
        return {}
    table = offline_table(location, columns=["row", *names])
    order = np.argsort(table.column("row").to_numpy())
    extras = {}
    for name in names:
        col = table.column(name).combine_chunks()
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            arr = col.flatten().to_numpy().reshape(len(col), -1)
        else:
            arr = col.to_numpy()
        extras[name] = arr[order]
    return extras


def write_state(directory: Path, state, producer_cls) -> dict[str, str]:
    """The producer's model state under state/ (for cold-start infer), with checksums."""
    target = directory / STATE_DIR
    out = {}
    for path in producer_cls.save_state(state, target):
        out[str(Path(path).resolve().relative_to(directory.resolve()))] = sha256_file(Path(path))
    return out


def read_state(directory: Path, checksums: dict[str, str], producer_cls):
    names = [k for k in checksums if k.startswith(STATE_DIR + "/")]
    verify(directory, checksums, names)
    return producer_cls.load_state(directory / STATE_DIR)
