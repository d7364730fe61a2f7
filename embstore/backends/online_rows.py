"""Online rows at bulk speed: the rows Feast's own online writer would write, written in bulk.

``FeatureStore.write_to_online_store`` turns every row into protobuf objects (an EntityKey,
one Value per feature, a datetime per timestamp) and writes them one statement (SQLite) or
two round trips (Redis) at a time: about 16k rows/s here. A version's rows are regular -- one
id type, vectors of one dimension, one timestamp for all rows -- so the same bytes can be
built from arrays: the entity key of an int64 id is a constant prefix and the id's 8 bytes,
the Value of a float32 vector a constant prefix and the vector's own bytes.

    writer = online_writer(feature_store)              # by the repo's online_store type
    writer.write(feature_view, frame, progress=bar.update)

What Feast 0.67 writes for one row of a FeatureView, mirrored here (feast/infra/online_stores/
sqlite.py and redis.py ``online_write_batch``, feast/infra/key_encoding_utils.py
``serialize_entity_key``, feast/type_map.py ``python_values_to_proto_values``, feast/utils.py
``_convert_arrow_fv_to_proto``):

- entity key (serialization version 3, one join key): u32 1, u32 STRING, u32 len(name), name,
  u32 value type, u32 len(value), value -- little-endian; an int64 id is 8 bytes, a string its UTF-8.
- a feature: ``Value.SerializeToString()``; for array<float32>: field 16 (float_list_val), its
  length, then FloatList's packed field 1, its length, the float32 bytes. Features of other types
  (extras such as gbdt_leaf's leaves) are converted by Feast's own ``python_values_to_proto_values``,
  a chunk at a time.
- SQLite (``SqliteRows``): one row per (entity key, feature) in table ``<project>_<view>``:
  entity_key, feature_name, value, value_text (the text of a scalar, else NULL), event_ts,
  created_ts (the timestamps as the sqlite3 adapter Feast registers turns them into, epoch
  seconds), by Feast's own ``INSERT ... ON CONFLICT(entity_key, feature_name) DO UPDATE``; all the
  frame's rows in one transaction (a failed write leaves none of them), in the byte order of their
  entity keys (the table's two indexes then grow at their end: 3-4x faster at 1M rows than id
  order, whose little-endian bytes scatter consecutive ids over the index).
- Redis (``RedisRows``): one hash per entity key + project; field ``mmh3("<view>:<feature>")``
  holds the value, field ``_ts:<view>`` the event time as a protobuf Timestamp; HSET pipelined
  over one connection (commands sent a chunk ahead of the replies read). Rows are written as
  Feast's ``skip_dedup`` path writes them, without first reading each key's previous timestamp:
  a version's view is written only by its own publish (or its rewrite from the same offline
  file, which holds the same bytes). ``key_ttl_seconds`` is honoured as Feast does (EXPIRE).

Each write first runs Feast's own conversion on a few rows of the frame (``CHECK_ROWS``: the
first, the last and some between) and compares its bytes with these; a difference raises
``FeastFormatError`` before anything is written. tests/test_online_rows.py writes whole frames
both ways and compares every stored byte. This is why pyproject pins feast==0.67.*: a Feast
whose format differs fails that test and every write, rather than leaving rows Feast cannot read.

An online store type this module does not know, or a setting that changes what Feast writes
(SQLite's ``vector_enabled`` or ``enable_openai_compatible_store``, a Redis cluster, entity keys
of several columns, a field mapping, another serialization version), raises
``UnsupportedOnlineStore``; ``FeatureRepo.write_online`` then logs it and writes through Feast's
own ``write_to_online_store``.

Memory: the bytes of one chunk (``CHUNK_ROWS`` rows, about 15 MB at 64-d) at a time, beside the
frame (whose list columns are read zero-copy); the key order, 8 bytes a row.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice, repeat
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from embstore.errors import EmbstoreError

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000  # rows encoded (and, for Redis, sent) at a time
CHECK_ROWS = 16  # rows of every write also converted by Feast's own code and compared
SQLITE_TIMEOUT_SECONDS = 120.0  # wait this long for another writer of the SQLite online store
ENTITY_KEY_VERSION = 3


class UnsupportedOnlineStore(EmbstoreError):
    """This online store (or one of its settings) has no bulk writer here: use Feast's own path."""


class FeastFormatError(EmbstoreError):
    """Feast's own conversion of some rows gave other bytes than the bulk writer's."""


# -- one chunk of a frame's rows, as bytes -------------------------------------------------


def blob_list(blobs: np.ndarray | list) -> list:
    """Per-row byte strings: ``blobs`` as they are when a list, else the rows of a (n, w) uint8 matrix."""
    if isinstance(blobs, list):
        return blobs
    # one void scalar per row: tolist() makes their bytes in C (trailing zero bytes kept, unlike "S")
    return np.ascontiguousarray(blobs).view(np.dtype((np.void, blobs.shape[1]))).ravel().tolist()


def _fixed(prefix: bytes, payload: np.ndarray) -> np.ndarray:
    """(n, len(prefix) + w) uint8: ``prefix`` then each row of ``payload`` (n, w) uint8."""
    out = np.empty((payload.shape[0], len(prefix) + payload.shape[1]), dtype=np.uint8)
    out[:, :len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    out[:, len(prefix):] = payload
    return out


def _as_bytes_matrix(values: np.ndarray, dtype: str) -> np.ndarray:
    """The rows of ``values`` (n, ...) in little-endian ``dtype`` as a (n, w) uint8 matrix."""
    values = np.ascontiguousarray(values, dtype=dtype)
    return values.reshape(values.shape[0], -1).view(np.uint8)


@dataclass
class Stamps:
    """A timestamp column: ``codes[i]`` indexes ``values`` (the distinct datetimes, as Feast makes them)."""

    codes: np.ndarray | None  # None when the column holds one value
    values: list

    def per_row(self, rows: np.ndarray, convert: Callable[[Any], Any]) -> "Same | list":
        """The converted value of each of ``rows``: ``Same`` when all rows of the column agree."""
        converted = [convert(v) for v in self.values]
        if len(converted) == 1:
            return Same(converted[0], len(rows))
        return [converted[c] for c in self.codes[rows].tolist()]


@dataclass(frozen=True)
class Same:
    """One value for each of ``n`` rows (iterates as ``n`` repeats)."""

    value: Any
    n: int

    def __iter__(self) -> Iterator:
        return repeat(self.value, self.n)


@dataclass
class Chunk:
    """Some rows of a frame (``rows``, frame positions): entity keys and each feature's values as
    stored bytes."""

    rows: np.ndarray
    keys: np.ndarray | list  # serialized entity keys
    values: dict  # feature -> (value bytes, value_text list or None)

    def __len__(self) -> int:
        return len(self.rows)


class FrameRows:
    """The rows Feast would write for ``frame`` into FeatureView ``fv``, encoded a chunk at a time.

    ``frame`` is a version's offline frame (files.offline_frame: Arrow-backed list columns) or
    its offline file read back (object columns of arrays); it has the view's join key, its
    timestamp columns and its features. ``key_order``: chunks follow the serialized entity keys'
    byte order (SQLite's indexes then grow at their end).
    """

    def __init__(self, fv: "FeatureView", frame: pd.DataFrame, entity_key_version: int, key_order: bool = False):
        from feast.value_type import ValueType

        if entity_key_version != ENTITY_KEY_VERSION:
            raise UnsupportedOnlineStore(f"entity_key_serialization_version {entity_key_version} "
                                         f"(the bulk writer writes version {ENTITY_KEY_VERSION})")
        source = fv.batch_source
        if source is None or source.field_mapping:
            raise UnsupportedOnlineStore(f"feature view {fv.name} has no batch source or maps its fields")
        join = [(f.name, f.dtype.to_value_type()) for f in fv.entity_columns]
        if len(join) != 1 or join[0][1] not in (ValueType.INT64, ValueType.STRING):
            raise UnsupportedOnlineStore(f"feature view {fv.name} has join keys {join}: one int64 or string key only")
        self.fv, self.frame, self.n = fv, frame, len(frame)
        self.key_name, self.key_type = join[0]
        self.int_keys = self.key_type == ValueType.INT64
        self.ids = frame[self.key_name].to_numpy()
        self.features = [(f.name, f.dtype.to_value_type()) for f in fv.features]
        self.event = self._stamps(source.timestamp_field)
        self.created = self._stamps(source.created_timestamp_column) if source.created_timestamp_column else None
        self._key_prefix = self._entity_key_prefix()
        self._float_rows = {name: self._float_matrix(name) for name, vt in self.features if vt == ValueType.FLOAT_LIST}
        self._float_prefix = {name: _float_list_prefix(m.shape[1]) for name, m in self._float_rows.items()
                              if m is not None}
        self.order = self._key_order() if key_order else None

    # -- columns ---------------------------------------------------------------

    def _stamps(self, column: str) -> Stamps:
        """The column's datetimes as Feast's ``_convert_arrow_fv_to_proto`` makes them (through arrow,
        ``pd.to_datetime``, ``_coerce_datetime``), computed once per distinct value."""
        from feast.utils import _coerce_datetime

        raw = pa.array(self.frame[column]).to_numpy(zero_copy_only=False)  # datetime64 of UTC, naive
        codes, distinct = pd.factorize(raw.view(np.int64), sort=False)
        values = [_coerce_datetime(v) for v in pd.to_datetime(distinct.view(raw.dtype))]
        return Stamps(codes=codes if len(values) > 1 else None, values=values)  # one time: no codes kept

    def _float_matrix(self, name: str) -> np.ndarray | None:
        """A float32 list column as one (n, d) matrix (zero-copy from an Arrow-backed column of one
        chunk), or None when its rows are not all finite float32 lists of one length (Feast's own
        converter then makes their values)."""
        try:
            arr = pa.array(self.frame[name])
        except (pa.ArrowException, TypeError, ValueError):
            return None
        parts = []
        for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
            if not (pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type)) or chunk.null_count:
                return None
            if len(chunk) == 0:
                continue
            lengths = np.diff(np.asarray(chunk.offsets))
            values = chunk.flatten()
            if lengths.min() != lengths.max() or lengths[0] == 0 or values.type != pa.float32() or values.null_count:
                return None
            parts.append(values.to_numpy(zero_copy_only=False).reshape(len(chunk), int(lengths[0])))
        if not parts or len({p.shape[1] for p in parts}) != 1:
            return None
        matrix = parts[0] if len(parts) == 1 else np.concatenate(parts)
        finite = all(np.isfinite(matrix[s:s + CHUNK_ROWS]).all() for s in range(0, len(matrix), CHUNK_ROWS))
        return matrix if finite else None  # (checked a chunk at a time: no (n, d) temporary)

    def _key_order(self) -> np.ndarray:
        """Frame positions in the byte order of their serialized entity keys."""
        if self.int_keys:  # the key ends in the id's little-endian bytes: read them big-endian to sort
            return np.argsort(self.ids.astype("<i8").view(">u8"), kind="stable")
        return np.argsort(np.array(self.keys(np.arange(self.n)), dtype="S"), kind="stable")

    # -- bytes -----------------------------------------------------------------

    def _entity_key_prefix(self) -> bytes:
        """What Feast's serialize_entity_key puts before the id's own bytes (and, for strings, its length)."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        value = Value(int64_val=0) if self.int_keys else Value(string_val="")
        encoded = serialize_entity_key(EntityKey(join_keys=[self.key_name], entity_values=[value]),
                                       entity_key_serialization_version=ENTITY_KEY_VERSION)
        return encoded[:-8] if self.int_keys else encoded[:-4]  # the id, or the u32 length 0 of ""

    def keys(self, rows: np.ndarray) -> np.ndarray | list:
        """Serialized entity keys of ``rows``: a (n, w) matrix for int64 ids, a list for strings."""
        ids = self.ids[rows]
        if self.int_keys:
            return _fixed(self._key_prefix, _as_bytes_matrix(ids.astype(np.int64).reshape(-1, 1), "<i8"))
        prefix, pack = self._key_prefix, struct.Struct("<I").pack
        out = []
        for value in ids.tolist():
            raw = value.encode("utf8")
            out.append(prefix + pack(len(raw)) + raw)
        return out

    def feature(self, name: str, value_type: Any, rows: np.ndarray) -> tuple[np.ndarray | list, list | None]:
        """Value bytes of ``name`` for ``rows``, and value_text (None when all are NULL)."""
        matrix = self._float_rows.get(name)
        if matrix is not None:
            return _fixed(self._float_prefix[name], _as_bytes_matrix(matrix[rows], "<f4")), None
        from feast.infra.online_stores.helpers import extract_text_and_num
        from feast.type_map import python_values_to_proto_values

        cells = pa.array(self.frame[name].iloc[rows]).to_numpy(zero_copy_only=False)
        protos = python_values_to_proto_values(cells, value_type)
        texts = [extract_text_and_num(p, False)[0] for p in protos]
        return [p.SerializeToString() for p in protos], (texts if any(t is not None for t in texts) else None)

    def chunk(self, rows: np.ndarray) -> Chunk:
        values = {name: self.feature(name, vt, rows) for name, vt in self.features}
        return Chunk(rows, self.keys(rows), values)

    def chunks(self, size: int | None = None) -> Iterator[Chunk]:
        size = size or CHUNK_ROWS
        for start in range(0, self.n, size):
            stop = min(start + size, self.n)
            yield self.chunk(self.order[start:stop] if self.order is not None else np.arange(start, stop))

    def check_rows(self) -> np.ndarray:
        """The rows compared with Feast's own conversion: first, last and evenly between."""
        return np.unique(np.linspace(0, self.n - 1, num=min(CHECK_ROWS, self.n)).round().astype(np.int64))

    def feast_rows(self, store: "FeatureStore", rows: np.ndarray) -> list:
        """Feast's own (EntityKey, {feature: Value}, event time, created time) for ``rows``."""
        sample = self.frame.iloc[rows]
        return store._get_provider()._prep_rows_to_write_for_ingestion(feature_view=self.fv, df=sample)


def _float_list_prefix(dim: int) -> bytes:
    """What Feast's Value of an array<float32> of ``dim`` values puts before the float32 bytes."""
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    ones = np.ones(dim, dtype=np.float32)
    encoded = python_values_to_proto_values([ones], ValueType.FLOAT_LIST)[0].SerializeToString()
    data = ones.astype("<f4").tobytes()
    if not encoded.endswith(data):
        raise FeastFormatError("Feast's Value of a float32 list does not end with the floats' bytes; "
                               "embstore's bulk online writer matches feast==0.67 (pinned in pyproject)")
    return encoded[:-len(data)]


# -- writers, one per online store type -------------------------------------------------------


class OnlineRowWriter:
    """Writes a frame's rows into one online store type as Feast would; ``types`` are the
    ``online_store.type`` values of feature_store.yaml it serves."""

    types: ClassVar[tuple[str, ...]]
    key_order: ClassVar[bool] = False  # write rows in the byte order of their entity keys

    def __init__(self, store: "FeatureStore"):
        self.store = store
        self.config = store.config
        self.check_config()

    def check_config(self) -> None:
        """Raise UnsupportedOnlineStore when a setting makes Feast write something else."""

    def write(self, fv: "FeatureView", frame: pd.DataFrame, progress: Callable[[int], Any] | None = None) -> None:
        rows = FrameRows(fv, frame, self.config.entity_key_serialization_version, key_order=self.key_order)
        if rows.n == 0:
            return
        self.compare_with_feast(rows)
        self.write_rows(rows, progress)

    def write_rows(self, rows: FrameRows, progress: Callable[[int], Any] | None) -> None:
        raise NotImplementedError

    def stored(self, rows: FrameRows, chunk: Chunk) -> list:
        """What the store would hold for ``chunk``: tuples whose first two items identify them, as
        ``feast_stored`` makes them from Feast's own conversion of the same rows."""
        raise NotImplementedError

    def feast_stored(self, rows: FrameRows, feast_rows: list) -> list:
        raise NotImplementedError

    def compare_with_feast(self, rows: FrameRows) -> None:
        """FeastFormatError unless Feast's own conversion of some rows gives exactly these bytes."""
        picked = rows.check_rows()
        ours = sorted(self.stored(rows, rows.chunk(picked)), key=lambda t: t[:2])
        theirs = sorted(self.feast_stored(rows, rows.feast_rows(self.store, picked)), key=lambda t: t[:2])
        if ours == theirs:
            return
        mine, feast = next(((m, f) for m, f in zip(ours, theirs) if m != f), (ours[len(theirs):], theirs[len(ours):]))
        raise FeastFormatError(
            f"{rows.fv.name}: for a row of the frame Feast {_feast_version()} stores {feast!r:.300}, the bulk "
            f"writer {mine!r:.300}; it mirrors feast==0.67 (pinned in pyproject); nothing was written")


def _feast_version() -> str:
    import feast

    return getattr(feast, "__version__", "?")


class SqliteRows(OnlineRowWriter):
    """Feast's SqliteOnlineStore rows, written in one transaction by executemany of Feast's upsert."""

    types = ("sqlite", "feast.infra.online_stores.sqlite.SqliteOnlineStore")
    key_order = True

    def check_config(self) -> None:
        online = self.config.online_store
        for setting in ("vector_enabled", "enable_openai_compatible_store"):
            if getattr(online, setting, False):
                raise UnsupportedOnlineStore(f"sqlite online store with {setting}: true")

    def _timestamp(self, value: datetime | None) -> Any:
        """The value sqlite3 binds for Feast's naive-UTC datetime (Feast registers the adapter)."""
        from feast.utils import to_naive_utc

        if value is None:
            return None
        value = to_naive_utc(value)
        adapt = sqlite3.adapters.get((type(value), sqlite3.PrepareProtocol))
        return adapt(value) if adapt is not None else value

    def _table(self, fv: "FeatureView") -> str:
        from feast.infra.online_stores.sqlite import _table_id

        return _table_id(self.config.project, fv, self.config.registry.enable_online_feature_view_versioning)

    def _rows(self, rows: FrameRows, chunk: Chunk) -> Iterator[tuple[str, Any]]:
        """(feature name, iterator of row tuples in Feast's column order) for one chunk."""
        keys = blob_list(chunk.keys)
        event = rows.event.per_row(chunk.rows, self._timestamp)
        created = rows.created.per_row(chunk.rows, self._timestamp) if rows.created else Same(None, len(chunk))
        for name, (blobs, texts) in chunk.values.items():
            yield name, zip(keys, repeat(name), blob_list(blobs), texts if texts is not None else repeat(None),
                            event, created)

    def stored(self, rows: FrameRows, chunk: Chunk) -> list:
        return [tuple(row) for _, it in self._rows(rows, chunk) for row in it]

    def feast_stored(self, rows: FrameRows, feast_rows: list) -> list:
        from feast.infra.online_stores import sqlite as feast_sqlite
        from feast.infra.online_stores.helpers import extract_text_and_num

        out = []
        for key, values, event, created in feast_rows:  # as feast_sqlite.SqliteOnlineStore.online_write_batch
            key_bin = feast_sqlite.serialize_entity_key(key, entity_key_serialization_version=ENTITY_KEY_VERSION)
            for name, val in values.items():
                out.append((key_bin, name, val.SerializeToString(), extract_text_and_num(val, False)[0],
                            self._timestamp(event), self._timestamp(created)))
        return out

    def write_rows(self, rows: FrameRows, progress: Callable[[int], Any] | None) -> None:
        from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id

        conn = sqlite3.connect(SqliteOnlineStore._get_db_path(self.config), timeout=SQLITE_TIMEOUT_SECONDS)
        try:
            upsert = SqliteUpsert(conn, _quote_id(self._table(rows.fv)))
            with conn:  # one transaction: every row of the frame, or none
                for chunk in rows.chunks():
                    for _, tuples in self._rows(rows, chunk):
                        upsert.write(tuples)
                    if progress is not None:
                        progress(len(chunk))
        finally:
            conn.close()


class SqliteUpsert:
    """Feast's upsert of SqliteOnlineStore.online_write_batch, ``ROWS_PER_STATEMENT`` rows per
    statement (a third less time than a statement per row; same rows, same values)."""

    COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")
    ROWS_PER_STATEMENT = 500

    def __init__(self, conn: sqlite3.Connection, table: str):
        width = len(self.COLUMNS)
        self.conn = conn
        self.per = max(1, min(self.ROWS_PER_STATEMENT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
        self.one = self._statement(table, 1)
        self.many = self._statement(table, self.per)

    def _statement(self, table: str, rows: int) -> str:
        values = ", ".join(["(" + ", ".join("?" * len(self.COLUMNS)) + ")"] * rows)
        return (f"INSERT INTO {table} ({', '.join(self.COLUMNS)}) VALUES {values} "
                "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
                "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts;")

    def write(self, tuples: Iterator[tuple]) -> None:
        """Write every row of ``tuples`` (in order: a key repeated later wins, as in Feast's loop)."""
        per, many, execute = self.per, self.many, self.conn.execute
        while True:
            group = list(islice(tuples, per))
            if len(group) < per:
                if group:
                    self.conn.executemany(self.one, group)
                return
            execute(many, list(chain.from_iterable(group)))


class RedisRows(OnlineRowWriter):
    """Feast's RedisOnlineStore hashes, HSET pipelined over one connection."""

    types = ("redis", "feast.infra.online_stores.redis.RedisOnlineStore")

    def check_config(self) -> None:
        online = self.config.online_store
        if str(getattr(online, "redis_type", "redis")).rsplit(".", 1)[-1] not in ("redis", "redis_sentinel"):
            raise UnsupportedOnlineStore(f"redis online store of type {online.redis_type}")

    def _view(self, fv: "FeatureView") -> str:
        from feast.infra.online_stores.redis import _versioned_fv_name

        return _versioned_fv_name(fv, self.config)

    def _timestamp(self, value: datetime) -> bytes:
        from feast.utils import make_tzaware
        from google.protobuf.timestamp_pb2 import Timestamp

        ts = Timestamp()
        ts.FromDatetime(make_tzaware(value))
        return ts.SerializeToString()

    def _hashes(self, rows: FrameRows, chunk: Chunk) -> tuple[np.ndarray | list, list]:
        """Redis keys of the chunk's rows, and [(field, value bytes per row)] in Feast's order."""
        from feast.infra.online_stores.helpers import _mmh3

        view = self._view(rows.fv)
        project = self.config.project.encode("utf-8")
        if isinstance(chunk.keys, list):
            keys: np.ndarray | list = [k + project for k in chunk.keys]
        else:
            keys = np.concatenate([chunk.keys, np.broadcast_to(np.frombuffer(project, np.uint8),
                                                               (len(chunk), len(project)))], axis=1)
        fields = [(f"_ts:{view}".encode("utf8"), rows.event.per_row(chunk.rows, self._timestamp))]
        fields += [(_mmh3(f"{view}:{name}"), blobs) for name, (blobs, _) in chunk.values.items()]
        return keys, fields

    def stored(self, rows: FrameRows, chunk: Chunk) -> list:
        keys, fields = self._hashes(rows, chunk)
        columns = [list(v) if isinstance(v, Same) else blob_list(v) for _, v in fields]
        return [(key, f, col[i]) for i, key in enumerate(blob_list(keys)) for (f, _), col in zip(fields, columns)]

    def feast_stored(self, rows: FrameRows, feast_rows: list) -> list:
        from feast.infra.online_stores.helpers import _mmh3, _redis_key

        view = self._view(rows.fv)
        out = []
        for key, values, event, _ in feast_rows:
            redis_key = _redis_key(self.config.project, key, entity_key_serialization_version=ENTITY_KEY_VERSION)
            out.append((redis_key, f"_ts:{view}".encode("utf8"), self._timestamp(event)))
            out.extend((redis_key, _mmh3(f"{view}:{name}"), val.SerializeToString()) for name, val in values.items())
        return out

    def commands(self, rows: FrameRows, chunk: Chunk) -> tuple[bytes, int]:
        """The chunk's HSET (and EXPIRE) commands in the Redis protocol, and how many replies they get."""
        keys, fields = self._hashes(rows, chunk)
        ttl = self.config.online_store.key_ttl_seconds
        parts = [_resp_head(2 + 2 * len(fields)), _resp_bulk(b"HSET"), *_resp_bulks(keys)]
        for name, values in fields:
            parts.append(_resp_bulk(name))
            parts.extend(_resp_bulks(values))
        if ttl:
            parts += [_resp_head(3), _resp_bulk(b"EXPIRE"), *_resp_bulks(keys), _resp_bulk(str(int(ttl)).encode())]
        return _concat_rows(len(chunk), parts), len(chunk) * (2 if ttl else 1)

    def write_rows(self, rows: FrameRows, progress: Callable[[int], Any] | None) -> None:
        client = self.store._get_provider().online_store._get_client(self.config.online_store)
        pool = client.connection_pool
        conn = pool.get_connection()
        pending: tuple[int, int] | None = None  # (replies, rows) sent but not yet read
        try:
            for chunk in rows.chunks():
                packed, replies = self.commands(rows, chunk)
                conn.send_packed_command([packed])  # the next chunk is on its way while these replies are read
                if pending is not None:
                    self._read(conn, *pending, progress)
                pending = (replies, len(chunk))
            if pending is not None:
                self._read(conn, *pending, progress)
        except BaseException:
            conn.disconnect()  # replies may be left unread: never hand this connection out again
            raise
        finally:
            pool.release(conn)

    @staticmethod
    def _read(conn, replies: int, written: int, progress: Callable[[int], Any] | None) -> None:
        for _ in range(replies):
            conn.read_response()  # raises the server's error reply, if any
        if progress is not None:
            progress(written)


def _resp_head(count: int) -> bytes:
    return b"*%d\r\n" % count


def _resp_bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _resp_bulks(values: Any) -> list:
    """One RESP bulk string per row: constant framing around a (n, w) matrix, or per-row framing."""
    if isinstance(values, np.ndarray):
        return [b"$%d\r\n" % values.shape[1], values, b"\r\n"]
    if isinstance(values, Same):
        return [_resp_bulk(values.value)]
    return [[_resp_bulk(v) for v in values]]


def _concat_rows(n: int, parts: list) -> bytes:
    """Row i of the result is the concatenation of each part's row i; a part is constant bytes,
    a (n, w) uint8 matrix or a list of n byte strings. All fixed: one matrix, else joined per row."""
    if all(not isinstance(p, list) for p in parts):
        widths = [len(p) if isinstance(p, bytes) else p.shape[1] for p in parts]
        out = np.empty((n, sum(widths)), dtype=np.uint8)
        at = 0
        for part, width in zip(parts, widths):
            out[:, at:at + width] = np.frombuffer(part, dtype=np.uint8) if isinstance(part, bytes) else part
            at += width
        return out.tobytes()
    columns = [repeat(p, n) if isinstance(p, bytes) else p if isinstance(p, list) else blob_list(p) for p in parts]
    return b"".join(map(b"".join, zip(*columns)))


WRITERS: tuple[type[OnlineRowWriter], ...] = (SqliteRows, RedisRows)


def online_writer(store: "FeatureStore") -> OnlineRowWriter:
    """The bulk writer for the repo's online store type; UnsupportedOnlineStore for any other."""
    kind = store.config.online_store.type
    for cls in WRITERS:
        if kind in cls.types:
            return cls(store)
    known = ", ".join(cls.types[0] for cls in WRITERS)
    raise UnsupportedOnlineStore(f"online store type {kind!r} has no bulk writer (embstore has them for {known})")
