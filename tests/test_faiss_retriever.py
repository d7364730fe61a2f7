"""The built-in FAISS retriever: exactness, recall, batching, persistence, errors, registration."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json

import numpy as np
import pluggy
import pytest

from embstore import hookspecs
from embstore.config import parse_config
from embstore.errors import ConfigError, IntegrityError
from embstore.retriever import Retriever
from embstore_plugins import faiss_retriever
from embstore_plugins.faiss_retriever import FaissConfig, FaissRetriever, default_nlist

METRICS = ["ip", "cosine", "l2"]
INDEXES = ["flat", "hnsw", "ivf"]


def clustered(n: int, d: int = 32, centers: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)).astype(np.float32) * 3
    return (c[rng.integers(0, centers, n)] + rng.normal(size=(n, d))).astype(np.float32)


def make(vectors: np.ndarray, **config) -> FaissRetriever:
    r = FaissRetriever(FaissConfig(**config))
    r.build(vectors)
    return r


def brute_force(x: np.ndarray, q: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    if metric == "l2":
        scores = np.sqrt(((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1))
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = q64 @ x64.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = clustered(5000)
    q = clustered(200, seed=1)
    return x, q


# -- exactness ---------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_flat_matches_brute_force(metric):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    q = rng.normal(size=(40, 16)).astype(np.float32)
    rows, scores = make(x, metric=metric).search(q, 10)
    want_rows, want_scores = brute_force(x, q, 10, metric)
    assert rows.dtype == np.int64 and scores.dtype == np.float32
    assert rows.shape == scores.shape == (40, 10)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)


def test_cosine_zero_vectors_stay_finite():
    x = np.array([[0, 0], [1, 0], [0, 2]], dtype=np.float32)
    r = make(x, metric="cosine")
    rows, scores = r.search(np.array([[3, 0], [0, 0]], dtype=np.float32), 3)
    assert np.isfinite(scores).all()
    assert rows[0, 0] == 1 and scores[0, 0] == pytest.approx(1.0)
    np.testing.assert_array_equal(scores[1], 0)
    np.testing.assert_array_equal(x, [[0, 0], [1, 0], [0, 2]])  # input not normalised in place


def test_l2_scores_are_distances_ascending():
    x = np.array([[0, 0], [3, 4], [1, 0]], dtype=np.float32)
    rows, scores = make(x, metric="l2").search(np.zeros((1, 2), np.float32), 3)
    np.testing.assert_array_equal(rows, [[0, 2, 1]])
    np.testing.assert_allclose(scores, [[0, 1, 5]])


# -- approximate indexes -----------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_recall_at_10(data, index, metric):
    x, q = data
    exact, _ = make(x, metric=metric).search(q, 10)
    approx, scores = make(x, metric=metric, index=index).search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.9, f"{index}/{metric} recall@10 = {recall:.3f}"
    assert (approx >= 0).all()
    diffs = np.diff(scores, axis=1)
    assert (diffs >= 0).all() if metric == "l2" else (diffs <= 0).all()


def test_default_nlist():
    assert default_nlist(5000) == 128  # 4*sqrt(5000) ~ 283, capped to 5000//39
    assert default_nlist(1_000_000) == 4000
    assert default_nlist(10) == 1


def test_ivf_is_reproducible_with_seed(data):
    x, q = data
    a = make(x[:2000], index="ivf", seed=7, threads=1).search(q, 5)
    b = make(x[:2000], index="ivf", seed=7, threads=1).search(q, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_ivf_nlist_larger_than_n_is_capped():
    x = clustered(20, d=4)
    r = make(x, index="ivf", nlist=64, metric="l2")
    assert r.nlist_ == 20
    rows, _ = r.search(x[:3], 1)
    assert rows.shape == (3, 1)


# -- batching ----------------------------------------------------------------


@pytest.mark.parametrize("index", INDEXES)
def test_batched_queries_equal_one_batch(data, index):
    x, q = data
    one = make(x[:2000], index=index, threads=1)
    rows, scores = one.search(q[:130], 10)
    batched = FaissRetriever(FaissConfig(index=index, batch_size=25, threads=1))
    batched.index_ = one.index_  # same index, only the batching differs
    b_rows, b_scores = batched.search(q[:130], 10)
    np.testing.assert_array_equal(b_rows, rows)
    np.testing.assert_allclose(b_scores, scores, rtol=1e-5, atol=1e-5)


def test_threads_setting_is_restored():
    import faiss

    before = faiss.omp_get_max_threads()
    make(clustered(100, d=4), threads=1).search(clustered(5, d=4), 3)
    assert faiss.omp_get_max_threads() == before


# -- persistence ---------------------------------------------------------------


@pytest.mark.parametrize("index", INDEXES)
def test_save_load_round_trip(tmp_path, data, index):
    x, q = data
    config = FaissConfig(index=index, metric="cosine")
    r = FaissRetriever(config)
    r.build(x[:2000])
    rows, scores = r.search(q, 10)
    written = r.save(tmp_path / "idx")
    assert sorted(p.name for p in written) == ["index.faiss", "index.json"]
    assert all(p.is_file() for p in written)
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["metric"] == "cosine" and meta["index"] == index
    assert meta["dim"] == 32 and meta["count"] == 2000

    loaded = FaissRetriever.load(tmp_path / "idx", config)
    assert isinstance(loaded, FaissRetriever)
    assert loaded.dim == 32 and len(loaded) == 2000
    l_rows, l_scores = loaded.search(q, 10)
    np.testing.assert_array_equal(l_rows, rows)
    np.testing.assert_array_equal(l_scores, scores)


def test_load_without_config_uses_saved_metric_and_index(tmp_path):
    x = clustered(500, d=8)
    r = make(x, index="hnsw", metric="l2")
    r.save(tmp_path)
    loaded = FaissRetriever.load(tmp_path, None)
    assert loaded.config.metric == "l2" and loaded.config.index == "hnsw"
    np.testing.assert_array_equal(loaded.search(x[:5], 3)[0], r.search(x[:5], 3)[0])


@pytest.mark.parametrize("index", INDEXES)
def test_truncated_index_file_raises_integrity_error(tmp_path, index):
    make(clustered(1000, d=8), index=index).save(tmp_path)
    path = tmp_path / "index.faiss"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="index.faiss"):
        FaissRetriever.load(tmp_path, FaissConfig(index=index))


def test_garbage_or_missing_index_file_raises_integrity_error(tmp_path):
    make(clustered(50, d=8)).save(tmp_path)
    (tmp_path / "index.faiss").write_bytes(b"not a faiss index at all")
    with pytest.raises(IntegrityError, match="index.faiss"):
        FaissRetriever.load(tmp_path, FaissConfig())
    (tmp_path / "index.faiss").unlink()
    with pytest.raises(IntegrityError, match="index.faiss"):
        FaissRetriever.load(tmp_path, FaissConfig())


def test_count_mismatch_with_metadata_raises_integrity_error(tmp_path):
    make(clustered(50, d=8)).save(tmp_path)
    meta_path = tmp_path / "index.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "count": 51}))
    with pytest.raises(IntegrityError, match="count 50, index.json says 51"):
        FaissRetriever.load(tmp_path, FaissConfig())
    meta_path.write_text("{broken")
    with pytest.raises(IntegrityError, match="index.json"):
        FaissRetriever.load(tmp_path, FaissConfig())


def test_load_with_other_metric_is_a_config_error(tmp_path):
    make(clustered(50, d=8), metric="l2").save(tmp_path)
    with pytest.raises(ConfigError, match="metric='cosine'.*metric='l2'"):
        FaissRetriever.load(tmp_path, FaissConfig(metric="cosine"))


# -- edges and errors ----------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index", INDEXES)
def test_k_larger_than_n_pads(index, metric):
    x = clustered(5, d=4)
    rows, scores = make(x, index=index, metric=metric).search(x[:2], 8)
    assert rows.shape == scores.shape == (2, 8)
    assert not np.isnan(scores).any()
    for r, s in zip(rows, scores):
        assert sorted(r[:5]) == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(r[5:], -1)
        assert np.isfinite(s[:5]).all()
        np.testing.assert_array_equal(s[5:], np.inf if metric == "l2" else -np.inf)


def test_dimension_mismatch_names_both_dims():
    r = make(clustered(20, d=8))
    with pytest.raises(ValueError, match="dimension 5.*dimension 8"):
        r.search(np.zeros((2, 5), np.float32), 3)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(k):
    r = make(clustered(20, d=8))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        r.search(np.zeros((1, 8), np.float32), k)


def test_non_finite_queries_and_vectors_rejected():
    r = make(clustered(20, d=4))
    q = np.zeros((3, 4), np.float32)
    q[2, 1] = np.nan
    with pytest.raises(ValueError, match="first at row 2"):
        r.search(q, 1)
    with pytest.raises(ValueError, match="vectors contain NaN or inf"):
        make(np.array([[1.0, np.inf]], np.float32))
    with pytest.raises(ValueError, match="at least one row"):
        make(np.zeros((0, 4), np.float32))


def test_single_query_vector_and_empty_query_batch():
    x = clustered(20, d=4)
    r = make(x, metric="l2")
    rows, _ = r.search(x[3], 1)
    np.testing.assert_array_equal(rows, [[3]])
    rows, scores = r.search(np.zeros((0, 4), np.float32), 2)
    assert rows.shape == scores.shape == (0, 2)


def test_search_before_build():
    with pytest.raises(RuntimeError, match="build"):
        FaissRetriever(FaissConfig()).search(np.zeros((1, 4), np.float32), 1)


def test_unknown_or_bad_config_key_is_config_error():
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        parse_config(FaissConfig, {"nope": 1}, "retriever faiss")
    with pytest.raises(ConfigError, match="index"):
        parse_config(FaissConfig, {"index": "lsh"}, "retriever faiss")
    with pytest.raises(ConfigError, match="nprobe"):
        parse_config(FaissConfig, {"nprobe": 0}, "retriever faiss")
    cfg = parse_config(FaissConfig, {"index": "hnsw", "metric": "ip"}, "retriever faiss")
    assert cfg.index == "hnsw" and cfg.ef_search == 128


def test_every_config_field_is_described():
    for name, field in FaissConfig.model_fields.items():
        assert field.description, name


# -- registration --------------------------------------------------------------


def test_hookimpl_registers_the_retriever():
    found: list[type] = []
    faiss_retriever.register_retrievers(register=found.append)
    assert found == [FaissRetriever]

    pm = pluggy.PluginManager("embstore")
    pm.add_hookspecs(hookspecs)
    pm.register(faiss_retriever, name="faiss")
    pm.check_pending()
    via_pluggy: list[type] = []
    pm.hook.register_retrievers(register=via_pluggy.append)
    assert via_pluggy == [FaissRetriever]
    assert issubclass(FaissRetriever, Retriever) and FaissRetriever.name == "faiss"


def test_entry_point_points_at_this_module():
    eps = {ep.name: ep.value for ep in md.entry_points(group="embstore")}
    assert eps.get("faiss") == "embstore_plugins.faiss_retriever"


def test_found_through_the_plugin_registry():
    # The registry loads every entry point, and the item2vec plugin may not be written yet.
    try:
        importlib.import_module("embstore_plugins.item2vec")
    except Exception as exc:  # noqa: BLE001 - any import failure means "not ready", not a faiss bug
        pytest.skip(f"embstore_plugins.item2vec cannot be imported yet: {exc}")
    from embstore.catalogue import catalogue

    registry = catalogue(reload=True)
    assert registry.retriever("faiss") is FaissRetriever
    assert registry.owner("retriever", "faiss").module == "embstore_plugins.faiss_retriever"
