"""The bulk online writer (embstore.backends.online_rows) stores exactly what Feast stores.

Each test writes the same frame through Feast's own ``FeatureStore.write_to_online_store`` and
through embstore's writer into the same view (clearing it in between), compares every stored byte
(SQLite rows; Redis hash fields and values) and reads both back with Feast's
``get_online_features``. Feast is pinned (feast==0.67.* in pyproject) because of this: a Feast whose
online format differs fails here, and embstore's writer refuses to write (FeastFormatError).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from conftest import clustered_embeddings
from embstore.backends import files, online_rows
from embstore.embeddings import Embeddings
from embstore.ops.consistency import check_store


def _view_fields(store, view: str) -> set[bytes]:
    from feast.infra.online_stores.helpers import _mmh3

    fv = store.feast.store.get_feature_view(view)
    return {f"_ts:{view}".encode()} | {_mmh3(f"{view}:{f.name}") for f in fv.features}


def _redis(store):
    import redis

    from embstore.backends.team import redis_address

    host, port = redis_address(store.settings.redis_url)
    return redis.Redis(host=host, port=port)


def stored(store, view: str) -> list:
    """Everything the online store holds for ``view``, in a stable order: SQLite rows, or Redis
    (key, field, value) triples of the view's fields."""
    project = store.feast.store.project
    if store.backend.name == "embedded":
        con = sqlite3.connect(store.home / "feature_repo" / "data" / "online.db")
        try:
            return con.execute(f'SELECT * FROM "{project}_{view}" ORDER BY entity_key, feature_name').fetchall()
        finally:
            con.close()
    client, fields = _redis(store), _view_fields(store, view)
    out = []
    for key in client.scan_iter(b"*" + project.encode()):
        out.extend((key, f, v) for f, v in client.hgetall(key).items() if f in fields)
    return sorted(out)


def clear(store, view: str) -> None:
    project = store.feast.store.project
    if store.backend.name == "embedded":
        con = sqlite3.connect(store.home / "feature_repo" / "data" / "online.db")
        with con:
            con.execute(f'DELETE FROM "{project}_{view}"')
        con.close()
        return
    client, fields = _redis(store), list(_view_fields(store, view))
    for key in client.scan_iter(b"*" + project.encode()):
        client.hdel(key, *fields)
    assert stored(store, view) == []


def numpy_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as embstore built it before the bulk writer: list cells as numpy arrays."""
    return frame.astype({c: object for c, t in frame.dtypes.items() if isinstance(t, pd.ArrowDtype)})


def feast_online(store, view: str, entity: str, ids: list) -> dict:
    store.feast.store.refresh_registry()
    features = [f"{view}:{f.name}" for f in store.feast.store.get_feature_view(view).features]
    return store.feast.store.get_online_features(features=features, entity_rows=[{entity: i} for i in ids]).to_dict()


def both_ways(store, view: str, entity: str, frame: pd.DataFrame, ids: list) -> tuple[list, dict]:
    """Write ``frame`` with Feast's own writer, then with embstore's; assert the stored bytes and
    Feast's reads agree. Returns what is stored and what Feast reads."""
    clear(store, view)
    store.feast.store.write_to_online_store(view, numpy_cells(frame), allow_registry_cache=False)
    theirs, read_theirs = stored(store, view), feast_online(store, view, entity, ids)
    clear(store, view)
    store.feast.write_online(view, frame)
    ours, read_ours = stored(store, view), feast_online(store, view, entity, ids)
    assert len(ours) == len(theirs) > 0
    assert ours == theirs  # every byte: keys, feature names, values, value_text, timestamps
    assert read_ours == read_theirs
    return ours, read_ours


def _extras(n: int, rng) -> dict:
    return {"leaves": rng.integers(0, 40, size=(n, 6)), "score": rng.normal(size=n),
            "count": rng.integers(-5, 1_000_000, size=n), "side": rng.normal(size=(n, 3)).astype(np.float32)}


CASES = {
    "int ids": lambda rng: Embeddings(ids=rng.permutation(np.arange(-50, 250)) * 7_919_000_003,
                                      vectors=rng.normal(size=(300, 16)).astype(np.float32)),
    "string ids": lambda rng: Embeddings(
        ids=np.array([f"item-{i}" * (1 + i % 4) + ("é✓" if i % 3 == 0 else "") for i in range(300)], dtype=object),
        vectors=rng.normal(size=(300, 8)).astype(np.float32)),
    "extras": lambda rng: Embeddings(ids=np.arange(300), vectors=rng.normal(size=(300, 5)).astype(np.float32),
                                     extras=_extras(300, rng)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bulk_rows_equal_feasts_own(any_store, case, monkeypatch):
    monkeypatch.setattr(online_rows, "CHUNK_ROWS", 64)  # several chunks (and Redis sends ahead of its replies)
    emb = CASES[case](np.random.default_rng(7)).validated()
    entity = "item_id"
    v = any_store.publish("items", emb, retriever_config={"index": "flat"}, promote="prod")
    frame = files.offline_frame(emb, entity, v.valid_from)
    ids = emb.ids.tolist()
    published = stored(any_store, v.feature_view)  # what the publish itself wrote, with the bulk writer
    ours, read = both_ways(any_store, v.feature_view, entity, frame, ids + ([10**15] if case != "string ids" else ["nope"]))
    assert published == ours
    np.testing.assert_array_equal(np.array(read["embedding"][:-1], dtype=np.float32), emb.vectors)
    assert read["embedding"][-1] is None
    for name, arr in emb.extras.items():
        np.testing.assert_array_equal(np.array(read[name][:-1]), arr)
    # the version's offline file read back (what `embstore materialize` writes from) gives the same bytes
    clear(any_store, v.feature_view)
    assert any_store.materialize("items@1") == len(emb)
    assert stored(any_store, v.feature_view) == ours
    report = check_store(any_store, online_sample=50)
    assert report.ok and report.checked_online_rows == 50, [f.line() for f in report.inconsistencies]


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_rows_of_several_times_equal_feasts_own(any_store, tz, monkeypatch):
    """Rows with their own event and created times (not one valid-from for all), in any local
    time zone (Feast's SQLite adapter turns naive UTC times into epoch seconds by local time)."""
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        monkeypatch.setattr(online_rows, "CHUNK_ROWS", 16)
        emb = clustered_embeddings().validated()
        v = any_store.publish("items", emb, retriever_config={"index": "flat"})
        frame = files.offline_frame(emb, "item_id", v.valid_from)
        base = datetime(2024, 3, 10, 6, 59, 59, 999_999, tzinfo=timezone.utc)
        frame["event_timestamp"] = [base + timedelta(hours=i % 5, microseconds=i) for i in range(len(frame))]
        frame["created_timestamp"] = [base + timedelta(days=i % 3) for i in range(len(frame))]
        both_ways(any_store, v.feature_view, "item_id", frame, emb.ids.tolist())
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_changed_feast_format_fails_before_writing(any_store, monkeypatch):
    """If Feast encodes an entity key otherwise (here: big-endian ids), the bulk writer's check of
    Feast's own conversion refuses the write and nothing is stored."""
    import feast.infra.key_encoding_utils as keys
    import feast.infra.online_stores.helpers as helpers
    import feast.infra.online_stores.sqlite as feast_sqlite

    emb = clustered_embeddings().validated()
    v = any_store.publish("items", emb, retriever_config={"index": "flat"})
    frame = files.offline_frame(emb, "item_id", v.valid_from)
    clear(any_store, v.feature_view)
    original = keys.serialize_entity_key

    def big_endian(entity_key, entity_key_serialization_version=3):
        out = original(entity_key, entity_key_serialization_version=entity_key_serialization_version)
        return out[:-8] + out[-8:][::-1]

    for module in (keys, helpers, feast_sqlite):  # wherever Feast's writers look it up
        monkeypatch.setattr(module, "serialize_entity_key", big_endian)
    with pytest.raises(online_rows.FeastFormatError, match="feast==0.67"):
        any_store.feast.write_online(v.feature_view, frame)
    assert stored(any_store, v.feature_view) == []


def test_an_online_store_without_bulk_writer_goes_through_feast(store, monkeypatch, caplog):
    monkeypatch.setattr(online_rows, "WRITERS", (online_rows.RedisRows,))  # as if sqlite had no bulk writer
    emb = clustered_embeddings().validated()
    with caplog.at_level(logging.WARNING, logger="embstore.backends.feature_repo"):
        v = store.publish("items", emb, retriever_config={"index": "flat"})
    assert "online store type 'sqlite' has no bulk writer" in caplog.text
    assert "through Feast's write_to_online_store" in caplog.text
    monkeypatch.undo()
    through_feast = stored(store, v.feature_view)
    both_ways(store, v.feature_view, "item_id", files.offline_frame(emb, "item_id", v.valid_from), emb.ids.tolist())
    assert stored(store, v.feature_view) == through_feast
    with pytest.raises(online_rows.UnsupportedOnlineStore, match="has no bulk writer"):
        monkeypatch.setattr(online_rows, "WRITERS", ())
        online_rows.online_writer(store.feast.store)


def test_sqlite_write_is_one_transaction(store, monkeypatch):
    """A write that fails part way leaves none of its rows (one transaction), and the publish fails
    with the version marked failed."""
    monkeypatch.setattr(online_rows, "CHUNK_ROWS", 10)
    emb = clustered_embeddings().validated()
    calls = []

    def progress(rows):
        calls.append(rows)
        if len(calls) == 3:
            raise RuntimeError("disk gone")

    v = store.publish("items", emb, retriever_config={"index": "flat"})
    clear(store, v.feature_view)
    with pytest.raises(RuntimeError, match="disk gone"):
        store.feast.write_online(v.feature_view, files.offline_frame(emb, "item_id", v.valid_from), progress=progress)
    assert calls == [10, 10, 10] and stored(store, v.feature_view) == []


def test_offline_file_is_the_file_embstore_always_wrote(tmp_path):
    """files.offline_frame + write_offline (Arrow columns over the arrays) write byte for byte the
    file of the former per-row path (a numpy array per cell, ``pa.array(list)`` for embedding)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def former(emb, entity, valid_from, directory):
        ts = pd.Timestamp(valid_from).tz_convert("UTC")
        frame = pd.DataFrame({entity: emb.ids, "event_timestamp": ts, "created_timestamp": ts,
                              "row": np.arange(len(emb), dtype=np.int64), "embedding": list(emb.vectors)})
        for name, arr in emb.extras.items():
            frame[name] = list(arr) if arr.ndim > 1 else arr
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(table.schema.get_field_index("embedding"), "embedding",
                                 pa.array(frame["embedding"].tolist(), type=pa.list_(pa.float32())))
        directory.mkdir(parents=True)
        pq.write_table(table, directory / files.OFFLINE)
        return files.sha256_file(directory / files.OFFLINE)

    rng = np.random.default_rng(3)
    valid_from = datetime(2024, 5, 1, 12, 30, 1, 123456, tzinfo=timezone.utc)
    for name, make in CASES.items():
        emb = make(rng).validated()
        expected = former(emb, "item_id", valid_from, tmp_path / name / "old")
        got = files.write_offline(tmp_path / name / "new", files.offline_frame(emb, "item_id", valid_from))
        assert got[files.OFFLINE] == expected, name
    one = Embeddings(ids=np.array([5]), vectors=np.ones((1, 3), dtype=np.float32)).validated()
    assert files.write_offline(tmp_path / "one", files.offline_frame(one, "item_id", valid_from))[files.OFFLINE] \
        == former(one, "item_id", valid_from, tmp_path / "one-old")


def test_list_column_chunks_beyond_int32_offsets(monkeypatch):
    """An Arrow list array addresses 2**31 - 1 values per chunk: larger arrays are chunked, and
    the bulk writer reads the chunks back as one matrix."""
    monkeypatch.setattr(files, "MAX_LIST_VALUES", 40)
    x = np.arange(30 * 4, dtype=np.float32).reshape(30, 4)
    col = files.list_column(x)
    assert col.array._pa_array.num_chunks == 3  # 10 rows of 4 per chunk
    np.testing.assert_array_equal(np.stack(col.to_numpy()), x)


def test_chunked_list_columns_publish_and_write_the_same_rows(any_store, monkeypatch):
    monkeypatch.setattr(files, "MAX_LIST_VALUES", 16 * 7)  # 7 rows of 16-d per Arrow chunk
    emb = clustered_embeddings().validated()
    v = any_store.publish("items", emb, retriever_config={"index": "flat"})
    offline = files.read_offline(__import__("pathlib").Path(v.storage_path), v.checksums)
    np.testing.assert_array_equal(np.stack(offline["embedding"].to_numpy()), emb.vectors)
    published = stored(any_store, v.feature_view)
    ours, _ = both_ways(any_store, v.feature_view, "item_id", files.offline_frame(emb, "item_id", v.valid_from),
                        emb.ids.tolist())
    assert published == ours


def test_redis_rows_expire_as_feasts_do(team_available, home):
    """With the online store's key_ttl_seconds set, every hash gets Feast's EXPIRE too."""
    from conftest import drop_team_store, team_settings
    from embstore.store import EmbeddingStore

    store = EmbeddingStore.init(home, progress=False, **team_settings())
    try:
        store.feast.store.config.online_store.key_ttl_seconds = 3600
        emb = clustered_embeddings().validated()
        v = store.publish("items", emb, retriever_config={"index": "flat"})
        both_ways(store, v.feature_view, "item_id", files.offline_frame(emb, "item_id", v.valid_from),
                  emb.ids.tolist())
        client = _redis(store)
        ttls = {client.ttl(k) for k in client.scan_iter(b"*" + store.feast.store.project.encode())}
        assert ttls and all(3500 < t <= 3600 for t in ttls)
    finally:
        drop_team_store(store)
