"""The Python API end to end with a real Feast repo and FAISS index, on both backends:
embedded (SQLite registry, file/SQLite Feast) and team (PostgreSQL registries, Redis online store)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from conftest import clustered_embeddings
from embstore.embeddings import Embeddings
from embstore.errors import (
    EmbstoreError,
    ConfigError,
    EmbeddingsError,
    IntegrityError,
    NotFoundError,
    PublishError,
    UnknownIdsError,
)
from embstore.store import EmbeddingStore


@pytest.fixture
def store(any_store):
    return any_store


def test_publish_then_read_vectors_back_exactly(store):
    emb = clustered_embeddings()
    v = store.publish("items", emb, promote="prod")
    assert (v.ref, v.status, v.dim, v.count, v.aliases) == ("items@1", "published", 16, 100, ("prod",))
    got = store.vectors("items@prod", [5, 0, 99])
    assert got.matrix.dtype == np.float32
    np.testing.assert_array_equal(got.matrix, emb.vectors[[5, 0, 99]])
    assert got.ids == [5, 0, 99] and got.missing == []


def test_unknown_ids_are_reported_never_zero_filled(store):
    store.publish("items", clustered_embeddings())
    with pytest.raises(UnknownIdsError) as err:
        store.vectors("items", [1, 12345, "nope"])
    assert err.value.missing == [12345, "nope"]
    got = store.vectors("items", [1, 12345], allow_missing=True)
    assert got.ids == [1] and got.missing == [12345] and got.matrix.shape == (1, 16)


def test_feast_online_store_serves_the_same_vectors(store):
    emb = clustered_embeddings(string_ids=True)
    store.publish("items", emb)
    online = store.online_vectors("items", ["item-3", "item-77", "absent"])
    np.testing.assert_allclose(online[0], emb.vectors[3], rtol=0, atol=0)
    np.testing.assert_allclose(online[1], emb.vectors[77], rtol=0, atol=0)
    assert online[2] is None


def test_refs_latest_pinned_and_alias(store):
    a, b = clustered_embeddings(seed=1), clustered_embeddings(seed=2)
    store.publish("items", a, promote="prod")
    store.publish("items", b)
    assert store.resolve("items").number == 2
    assert store.resolve("items@prod").number == 1
    assert store.resolve("items@1").number == 1
    np.testing.assert_array_equal(store.vectors("items@prod", [0]).matrix[0], a.vectors[0])
    np.testing.assert_array_equal(store.vectors("items", [0]).matrix[0], b.vectors[0])
    with pytest.raises(NotFoundError, match="no alias 'canary'"):
        store.resolve("items@canary")
    with pytest.raises(NotFoundError, match="unknown embedding set 'nope'"):
        store.resolve("nope")
    with pytest.raises(NotFoundError, match="items@9 does not exist"):
        store.resolve("items@9")


def test_promote_rollback_and_history(store):
    for seed in (1, 2, 3):
        store.publish("items", clustered_embeddings(seed=seed))
    store.promote("items@1", "prod")
    store.promote("items@3", "prod")
    assert store.resolve("items@prod").number == 3
    assert store.rollback("items", "prod").number == 1
    history = store.alias_history("items")
    assert [(h["version"], h["previous"], h["action"]) for h in history] == [
        (1, None, "promote"), (3, 1, "promote"), (1, 3, "rollback")
    ]


def test_recall_finds_cluster_mates_and_excludes(store):
    store.publish("items", clustered_embeddings(), retriever_config={"metric": "cosine"})
    [res] = store.recall("items", ids=[3], k=5)
    assert res.query == 3 and len(res.ids) == 5 and 3 not in res.ids
    assert all(i // 20 == 0 for i in res.ids)
    assert res.scores == sorted(res.scores, reverse=True)
    [res2] = store.recall("items", ids=[3], k=5, exclude=res.ids[:2])
    assert not set(res.ids[:2]) & set(res2.ids)
    vec = store.vectors("items", [41]).matrix
    [raw] = store.recall("items", vectors=vec, k=1)
    assert raw.ids == [41] and raw.query is None


def test_recall_errors(store):
    store.publish("items", clustered_embeddings())
    with pytest.raises(UnknownIdsError):
        store.recall("items", ids=[999], k=3)
    with pytest.raises(ConfigError, match="dimension 3"):
        store.recall("items", vectors=np.ones((1, 3)), k=3)
    with pytest.raises(ConfigError, match="positive"):
        store.recall("items", ids=[1], k=0)


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_each_index_type_serves_recall(store, index):
    store.publish("items", clustered_embeddings(per_cluster=60), retriever_config={"index": index, "metric": "l2"})
    [res] = store.recall("items", ids=[0], k=10)
    assert len(res.ids) == 10 and all(i // 60 == 0 for i in res.ids)
    assert res.scores == sorted(res.scores)  # l2: distances ascending


def test_point_in_time_join_returns_every_row_in_order(store):
    emb = clustered_embeddings()
    v = store.publish("items", emb)
    built = pd.Timestamp(v.created_at)
    rows = pd.DataFrame({
        "item_id": [4, 4, 7, 4, 500, 9],
        "event_timestamp": [built + timedelta(hours=1)] * 2 + [built - timedelta(days=1), built + timedelta(days=2),
                                                               built + timedelta(hours=1), built + timedelta(hours=3)],
        "label": [1, 0, 1, 1, 0, 1],
    }, index=[10, 11, 12, 13, 14, 15])
    out = store.join(rows, "items@1")
    assert list(out.index) == [10, 11, 12, 13, 14, 15] and list(out["label"]) == [1, 0, 1, 1, 0, 1]
    col = out["items_embedding"]
    np.testing.assert_array_equal(col[10], emb.vectors[4])  # duplicate (key, time) rows both kept
    np.testing.assert_array_equal(col[11], emb.vectors[4])
    assert col[12] is None  # the row predates the version: never a later embedding
    np.testing.assert_array_equal(col[13], emb.vectors[4])
    assert col[14] is None  # unknown id
    np.testing.assert_array_equal(col[15], emb.vectors[9])


def test_join_pinned_versions_keep_their_own_vectors(store):
    a, b = clustered_embeddings(seed=1), clustered_embeddings(seed=2)
    store.publish("items", a)
    vb = store.publish("items", b, promote="prod")
    later = pd.Timestamp(vb.created_at) + timedelta(hours=1)
    rows = pd.DataFrame({"item_id": [1, 2], "event_timestamp": [later, later]})
    np.testing.assert_array_equal(store.join(rows, "items@1")["items_embedding"][0], a.vectors[1])
    np.testing.assert_array_equal(store.join(rows, "items@prod")["items_embedding"][1], b.vectors[2])


def test_export_writes_id_and_vector(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = clustered_embeddings(string_ids=True)
    store.publish("items", emb)
    table = pq.read_table(store.export("items", tmp_path / "out.parquet"))
    assert table.column_names == ["id", "vector"]
    vtype = table.schema.field("vector").type
    assert pa.types.is_list(vtype) and vtype.value_type == pa.float32()
    assert table.column("id").to_pylist()[:2] == ["item-0", "item-1"]
    np.testing.assert_array_equal(np.asarray(table.column("vector").to_pylist()[7], dtype=np.float32), emb.vectors[7])


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda e: Embeddings(np.array([1, 1, 2]), e.vectors[:3]), "duplicate id 1"),
        (lambda e: Embeddings(e.ids, np.where(np.arange(100)[:, None] == 7, np.nan, e.vectors)), "NaN or inf"),
        (lambda e: Embeddings(e.ids[:5], e.vectors[:4]), "5 ids but 4 vectors"),
        (lambda e: Embeddings(e.ids[:0], e.vectors[:0]), "empty"),
    ],
)
def test_invalid_embeddings_change_nothing(store, bad, message):
    emb = clustered_embeddings()
    store.publish("items", emb, promote="prod")
    with pytest.raises(EmbeddingsError, match=message):
        store.publish("items", bad(emb), promote="prod")
    assert [v.number for v in store.versions("items")] == [1]
    assert store.resolve("items@prod").number == 1


def test_failure_mid_publish_marks_failed_and_keeps_alias(store, monkeypatch):
    store.publish("items", clustered_embeddings(seed=1), promote="prod")
    monkeypatch.setenv("EMBSTORE_FAULT_AFTER", "online:raise")
    with pytest.raises(PublishError, match="marked failed"):
        store.publish("items", clustered_embeddings(seed=2), promote="prod")
    monkeypatch.delenv("EMBSTORE_FAULT_AFTER")
    v1, v2 = store.versions("items")
    assert (v1.status, v2.status) == ("published", "failed") and "injected fault" in v2.error
    assert store.resolve("items@prod").number == 1 and store.resolve("items").number == 1
    with pytest.raises(NotFoundError, match="failed"):
        store.resolve("items@2")
    assert store.gc() == ["items@2"]
    assert "items__v2" not in store.feast.feature_view_names()
    assert store.recall("items@prod", ids=[0], k=3)[0].ids  # published data untouched by gc
    v3 = store.publish("items", clustered_embeddings(seed=3))
    assert v3.number == 3


def test_corrupted_files_are_detected_by_checksum(home):
    s = EmbeddingStore.init(home, progress=False)
    v = s.publish("items", clustered_embeddings())
    s.close()
    index_file = home / "sets" / "items" / "v1" / "index" / "index.faiss"
    index_file.write_bytes(index_file.read_bytes()[:-16])
    fresh = EmbeddingStore(home, progress=False)
    with pytest.raises(IntegrityError, match="index.faiss does not match its recorded checksum"):
        fresh.recall("items", ids=[0], k=3)
    vec_file = home / "sets" / "items" / "v1" / "vectors.npy"
    raw = bytearray(vec_file.read_bytes())
    raw[-1] ^= 0xFF
    vec_file.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="vectors.npy"):
        fresh.vectors(v.ref, [1])


def test_entity_id_type_conflict_is_a_clear_error(store):
    store.publish("items", clustered_embeddings())
    with pytest.raises(PublishError, match="INT64 ids"):
        store.publish("other", clustered_embeddings(string_ids=True))
    store.publish("other", clustered_embeddings(string_ids=True), entity="item_key")
    assert store.resolve("other").entity == "item_key"


def test_bad_names_are_rejected(store):
    with pytest.raises(ConfigError, match="set name"):
        store.publish("bad name", clustered_embeddings())
    with pytest.raises(ConfigError, match="alias"):
        store.publish("items", clustered_embeddings(), promote="3")
    assert store.sets() == []


def test_materialize_restores_a_lost_online_store(store):
    emb = clustered_embeddings(string_ids=True)
    store.publish("items", emb, promote="prod")
    fs = store.feast.store  # the online store loses the view's rows (e.g. Redis restarted empty)
    fv = fs.get_feature_view("items__v1")
    fs._get_provider().teardown_infra(fs.project, [fv], [fs.get_entity("item_id")])
    try:
        assert store.online_vectors("items@prod", ["item-5"]) == [None]  # Redis: the rows are gone
    except EmbstoreError as exc:  # SQLite: the table is gone, and the error says how to repair
        assert "embstore materialize" in str(exc)
    assert store.materialize("items@prod") == 100
    np.testing.assert_array_equal(np.asarray(store.online_vectors("items@prod", ["item-5"])[0], dtype=np.float32),
                                  emb.vectors[5])


def test_an_index_build_that_fails_fails_the_publish_and_writes_into_no_row(store, monkeypatch):
    """The index is built while the offline and online rows are written: its failure still fails
    the publish (nothing recallable, alias unchanged), and it cannot write into the vectors."""
    from embstore_plugins.faiss_retriever import FaissRetriever

    store.publish("items", clustered_embeddings(seed=1), promote="prod")
    emb = clustered_embeddings(seed=2)
    before = emb.vectors.copy()
    monkeypatch.setattr(FaissRetriever, "build", lambda self, vectors: vectors.__imul__(2.0))
    with pytest.raises(PublishError, match="read-only"):
        store.publish("items", emb, promote="prod")
    np.testing.assert_array_equal(emb.vectors, before)
    v2 = store.versions("items")[-1]
    assert v2.status == "failed" and store.resolve("items@prod").number == 1
    assert store.gc() == ["items@2"]


def test_importing_feast_leaves_typeguard_working_for_user_code(tmp_path):
    """embstore imports Feast with typeguard's instrumentation off and torch deferred (seconds per
    process) and restores typeguard: a user's own @typechecked functions still check arguments."""
    code = (
        "import typeguard\n"
        "real = typeguard.typechecked\n"
        "from embstore.backends.feast_import import import_feast\n"
        "import_feast()\n"
        "import sys, feast, feast.torch_wrapper\n"
        "assert typeguard.typechecked is real\n"
        "assert 'torch' not in sys.modules  # Feast's torch import waits for first use\n"
        "assert feast.torch_wrapper.get_torch().__name__ == 'torch'\n"
        "@typeguard.typechecked\n"
        "def f(x: int) -> int:\n"
        "    return x\n"
        "try:\n"
        "    f('not an int')\n"
        "except typeguard.TypeCheckError:\n"
        "    print('checked')\n"
    )
    script = tmp_path / "user_code.py"  # typeguard instruments functions it can read the source of
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "checked"
