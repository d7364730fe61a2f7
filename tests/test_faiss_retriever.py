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
from embstore.testing import check_retriever
from embstore_plugins.faiss_retriever import (
    AUTO_EXACT_MAX,
    AUTO_KMEANS_ITER,
    FaissConfig,
    FaissRetriever,
    RecallProbe,
    auto_nlist,
    default_nlist,
    exact_neighbours,
    recall_sample_size,
)

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
        parse_config(FaissConfig, {"index": "annoy"}, "retriever faiss")
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


# -- lsh -----------------------------------------------------------------------


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact)]))


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_lsh_recall_at_10_and_exact_scores(data, metric):
    x, q = data
    exact, _ = make(x, metric=metric, index="flat").search(q, 10)
    r = make(x, metric=metric, index="lsh")
    rows, scores = r.search(q, 10)
    assert recall_at_10(rows, exact) >= 0.9
    xs, qs = (x, q) if metric == "ip" else (x / np.linalg.norm(x, axis=1, keepdims=True),
                                             q / np.linalg.norm(q, axis=1, keepdims=True))
    true_scores = np.einsum("qkd,qd->qk", xs[rows], qs)
    np.testing.assert_allclose(scores, true_scores, rtol=1e-4, atol=1e-4)  # re-ranked by the true score
    assert (np.diff(scores, axis=1) <= 0).all()
    report = r.report()
    assert report["kind"] == "lsh" and report["bits"] == 512 and report["candidates"] == 500
    assert report["recall@10"] >= 0.9 and report["sample"] == 1000


def test_lsh_ip_follows_inner_product_not_angle():
    """Long vectors win under ip though a short one points the query's way: simple-LSH keeps them."""
    rng = np.random.default_rng(4)
    directions = rng.normal(size=(2000, 16)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    x = directions * rng.uniform(0.1, 10, size=(2000, 1)).astype(np.float32)
    q = rng.normal(size=(100, 16)).astype(np.float32)
    exact, _ = make(x, metric="ip", index="flat").search(q, 10)
    rows, _ = make(x, metric="ip", index="lsh").search(q, 10)
    assert recall_at_10(rows, exact) >= 0.9


def test_lsh_refuses_l2_and_checks_its_options():
    with pytest.raises(ConfigError, match="index='lsh'.*cannot serve metric 'l2'.*hnsw, ivf or flat"):
        parse_config(FaissConfig, {"index": "lsh", "metric": "l2"}, "retriever faiss")
    with pytest.raises(ConfigError, match="lsh_bits"):
        parse_config(FaissConfig, {"index": "lsh", "lsh_bits": 100}, "retriever faiss")  # not a multiple of 8
    with pytest.raises(ConfigError, match="lsh_candidates"):
        parse_config(FaissConfig, {"index": "lsh", "lsh_candidates": 0}, "retriever faiss")
    cfg = parse_config(FaissConfig, {"index": "lsh", "lsh_bits": 256}, "retriever faiss")
    assert (cfg.lsh_bits, cfg.lsh_candidates, cfg.metric) == (256, 500, "cosine")


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_lsh_pads_and_takes_candidates_from_the_load_config(tmp_path, metric):
    x = clustered(300, d=8)
    r = make(x, index="lsh", metric=metric, lsh_bits=64)
    written = r.save(tmp_path)
    assert sorted(p.name for p in written) == ["index.faiss", "index.json", "rerank.npy"]
    rows, scores = r.search(x[:2], 400)  # more than the vectors: every row, then -1
    assert sorted(rows[0, :300]) == list(range(300)) and (rows[:, 300:] == -1).all()
    assert np.isneginf(scores[:, 300:]).all() and np.isfinite(scores[:, :300]).all()
    few = FaissRetriever.load(tmp_path, FaissConfig(index="lsh", metric=metric, lsh_candidates=3))
    assert few.search(x[:2], 10)[0].shape == (2, 10)  # candidates raised to k
    loaded = FaissRetriever.load(tmp_path, None)
    np.testing.assert_array_equal(loaded.search(x[:20], 5)[0], r.search(x[:20], 5)[0])
    assert loaded.report() == r.report()


def test_lsh_rerank_file_damage_is_an_integrity_error(tmp_path):
    make(clustered(100, d=8), index="lsh").save(tmp_path)
    path = tmp_path / "rerank.npy"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(IntegrityError, match="rerank.npy"):
        FaissRetriever.load(tmp_path, FaissConfig(index="lsh"))
    path.unlink()
    with pytest.raises(IntegrityError, match="rerank.npy.*missing"):
        FaissRetriever.load(tmp_path, FaissConfig(index="lsh"))


@pytest.mark.parametrize("index", ["hnsw", "ivf", "lsh"])
def test_each_explicit_index_passes_the_conformance_kit(index):
    report = check_retriever(FaissRetriever, {"index": index})
    assert report.ok
    skipped = [name for name, _ in report.skipped]
    assert skipped == (["search (l2)"] if index == "lsh" else [])


# -- the index a version gets by default ----------------------------------------


def test_auto_is_exact_flat_up_to_the_threshold(data):
    x, q = data
    r = make(x)  # 5000 × 32 is far below 6.4M floats
    assert r.config.index == "auto" and r.kind_ == "flat" and AUTO_EXACT_MAX == 6_400_000
    assert r.report() == {"kind": "flat", "chosen": "auto", "count": 5000, "dim": 32, "exact": True,
                          "build_seconds": r.report()["build_seconds"]}
    np.testing.assert_array_equal(r.search(q, 10)[0], make(x, index="flat").search(q, 10)[0])


def test_auto_above_the_threshold_is_ivf_with_measured_recall(tmp_path, data):
    x, q = data
    r = make(x, auto_exact_max=5000 * 32 - 1, metric="l2")
    report = r.report()
    assert r.kind_ == "ivf" and report["kind"] == "ivf" and report["chosen"] == "auto"
    assert report["nlist"] == auto_nlist(5000) == 32 and report["nprobe"] >= 16
    assert (report["train_points"], report["kmeans_iterations"]) == (32 * 64, AUTO_KMEANS_ITER)
    assert report["recall@10"] >= 0.95 and report["sample"] == 1000
    exact, _ = make(x, index="flat", metric="l2").search(q, 10)
    assert recall_at_10(r.search(q, 10)[0], exact) >= 0.9
    r.save(tmp_path)
    loaded = FaissRetriever.load(tmp_path, FaissConfig(auto_exact_max=1, metric="l2"))
    assert loaded.kind_ == "ivf" and loaded.report() == report and loaded.nprobe_ == report["nprobe"]
    np.testing.assert_array_equal(loaded.search(q, 10)[0], r.search(q, 10)[0])
    with pytest.raises(ConfigError, match="index='flat'.*index='ivf'"):
        FaissRetriever.load(tmp_path, FaissConfig(index="flat", metric="l2"))


def test_auto_nlist_and_recall_sample_follow_the_size():
    assert [auto_nlist(n) for n in (1, 300, 3000, 100_000, 1_000_000, 10_000_000)] == [1, 7, 32, 128, 512, 2048]
    assert [recall_sample_size(n, 1000) for n in (500, 100_000, 250_000, 1_000_000, 10_000_000)] == \
        [500, 1000, 1000, 250, 250]
    assert recall_sample_size(2_000_000, 100) == 100


def test_auto_with_hnsw_above_the_threshold(tmp_path, data):
    x, q = data
    r = make(x, auto_exact_max=5000 * 32 - 1, metric="l2", auto_approximate="hnsw")
    report = r.report()
    assert r.kind_ == "hnsw" and report["kind"] == "hnsw" and report["chosen"] == "auto"
    assert report["recall@10"] >= 0.95 and report["sample"] == 1000 and report["ef_search"] >= 128
    exact, _ = make(x, index="flat", metric="l2").search(q, 10)
    assert recall_at_10(r.search(q, 10)[0], exact) >= 0.9
    r.save(tmp_path)
    loaded = FaissRetriever.load(tmp_path, FaissConfig(auto_exact_max=1, metric="l2"))
    assert loaded.kind_ == "hnsw" and loaded.report() == report
    np.testing.assert_array_equal(loaded.search(q, 10)[0], r.search(q, 10)[0])
    with pytest.raises(ConfigError, match="index='flat'.*index='hnsw'"):
        FaissRetriever.load(tmp_path, FaissConfig(index="flat", metric="l2"))


def test_an_explicit_index_always_wins(data):
    x, _ = data
    r = make(x, index="flat", auto_exact_max=0)
    assert r.kind_ == "flat" and r.report()["chosen"] == "config"
    r = make(x[:500], index="hnsw")
    assert r.kind_ == "hnsw" and r.report()["chosen"] == "config" and r.report()["ef_search"] == 128


def test_auto_raises_nprobe_until_the_recall_target(tmp_path):
    x = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)  # no clusters for the lists to follow
    r = make(x, auto_exact_max=0, nprobe=1, auto_recall=0.6, threads=1)
    report = r.report()
    assert r.kind_ == "ivf" and report["nprobe"] > 1 and report["recall@10"] >= 0.6
    assert r.nprobe_ == report["nprobe"]
    r.save(tmp_path)
    assert FaissRetriever.load(tmp_path, FaissConfig(nprobe=1)).nprobe_ == report["nprobe"]
    assert FaissRetriever.load(tmp_path, FaissConfig(index="ivf", nprobe=1)).nprobe_ is None  # explicit


def test_auto_falls_back_to_flat_when_ivf_misses_the_target(caplog):
    x = np.random.default_rng(0).normal(size=(3000, 64)).astype(np.float32)  # no structure: hard for ivf
    r = make(x, auto_exact_max=0, nprobe=1, auto_recall=0.999, threads=1)
    report = r.report()
    assert r.kind_ == "flat" and report["kind"] == "flat" and report["exact"] is True
    assert report["instead_of"]["kind"] == "ivf" and report["instead_of"]["recall@10"] < 0.999
    assert report["instead_of"]["nprobe"] == 32 // 4 and report["instead_of"]["nlist"] == 32
    assert "building flat instead" in caplog.text
    np.testing.assert_array_equal(r.search(x[:5], 3)[0], make(x, index="flat").search(x[:5], 3)[0])


def test_auto_raises_ef_search_until_the_recall_target(tmp_path):
    x = np.random.default_rng(0).normal(size=(3000, 64)).astype(np.float32)  # no structure: hard for hnsw
    r = make(x, auto_exact_max=0, auto_approximate="hnsw", ef_search=1, hnsw_m=16, ef_construction=40, threads=1)
    report = r.report()
    assert r.kind_ == "hnsw" and report["ef_search"] > 1 and report["recall@10"] >= 0.95
    assert r.ef_search_ == report["ef_search"]
    r.save(tmp_path)
    assert FaissRetriever.load(tmp_path, FaissConfig(ef_search=1)).ef_search_ == report["ef_search"]
    assert FaissRetriever.load(tmp_path, FaissConfig(index="hnsw", ef_search=1)).ef_search_ is None  # explicit


def test_auto_falls_back_to_flat_when_hnsw_misses_the_target(caplog):
    x = np.random.default_rng(0).normal(size=(3000, 64)).astype(np.float32)
    r = make(x, auto_exact_max=0, auto_approximate="hnsw", ef_search=1, hnsw_m=2, ef_construction=1,
             threads=1)  # a broken graph
    report = r.report()
    assert r.kind_ == "flat" and report["kind"] == "flat" and report["exact"] is True
    assert report["instead_of"]["kind"] == "hnsw" and report["instead_of"]["recall@10"] < 0.95
    assert report["instead_of"]["ef_search"] == 1024
    assert "building flat instead" in caplog.text
    np.testing.assert_array_equal(r.search(x[:5], 3)[0], make(x, index="flat").search(x[:5], 3)[0])


def test_report_needs_an_index():
    with pytest.raises(RuntimeError, match="build"):
        FaissRetriever(FaissConfig()).report()


# -- measuring recall ------------------------------------------------------------


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_neighbours_in_blocks_match_brute_force(metric):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(103, 6)).astype(np.float32)
    q = rng.normal(size=(9, 6)).astype(np.float32)
    rows, near = exact_neighbours(x, q, 7, metric, block=10)
    want, _ = brute_force(x, q, 7, metric)
    np.testing.assert_array_equal(rows, want)
    assert (np.diff(near, axis=1) <= 0).all()


def test_recall_probe_leaves_the_query_out_and_forgives_ties():
    rng = np.random.default_rng(6)
    x = np.repeat(rng.normal(size=(200, 8)).astype(np.float32), 3, axis=0)  # every vector three times
    exact = FaissRetriever(FaissConfig(index="flat", metric="l2"))
    exact.build(x)
    probe = RecallProbe(x, "l2", sample=100, seed=0)
    assert probe.k == 10 and len(probe.rows) == 100
    assert probe.measure(lambda q, k: exact.search(q, k)[0]) == 1.0
    shuffled = lambda q, k: exact.search(q, k)[0][:, ::-1].copy()  # same rows, other order: still found
    assert probe.measure(shuffled) == 1.0
    assert probe.measure(lambda q, k: np.full((len(q), k), -1)) == 0.0
    random_rows = lambda q, k: rng.integers(0, len(x), size=(len(q), k))
    assert probe.measure(random_rows) < 0.2
    assert RecallProbe(x[:1], "ip", sample=10, seed=0).k == 0  # one vector: nothing to measure


# -- through the store: the version's metrics -------------------------------------


def test_publish_records_the_index_report_in_the_metrics(store):
    from conftest import clustered_embeddings

    small = store.publish("items", clustered_embeddings(per_cluster=60))
    assert small.metrics["source"] == "test"  # the producer's metrics stay
    assert small.metrics["index"]["kind"] == "flat" and small.metrics["index"]["chosen"] == "auto"
    assert small.retriever_config["index"] == "auto"

    big = store.publish("items", clustered_embeddings(per_cluster=60), retriever_config={"auto_exact_max": 100})
    index = store.resolve(big.ref).metrics["index"]
    assert index["kind"] == "ivf" and index["recall@10"] >= 0.95 and index["sample"] == 300
    [res] = store.recall(big.ref, ids=[0], k=10)
    assert len(res.ids) == 10 and all(i // 60 == 0 for i in res.ids)

    lsh = store.publish("items", clustered_embeddings(per_cluster=60), retriever_config={"index": "lsh"})
    index = store.resolve(lsh.ref).metrics["index"]
    assert (index["kind"], index["chosen"], index["bits"]) == ("lsh", "config", 512) and index["recall@10"] >= 0.9
    [res] = store.recall(lsh.ref, ids=[0], k=10)
    assert all(i // 60 == 0 for i in res.ids)


def test_unit_rows_reads_normalised_rows_of_any_shape():
    from embstore.linalg import unit_rows
    from embstore_plugins.faiss_retriever import UnitRows

    x = np.random.default_rng(8).normal(size=(50, 6)).astype(np.float32)
    x[7] = 0
    u, want = UnitRows(x), unit_rows(x)
    assert len(u) == 50 and u.shape == (50, 6)
    np.testing.assert_array_equal(u[3:9], want[3:9])
    np.testing.assert_array_equal(u[np.array([[1, 7], [4, 4]])], want[np.array([[1, 7], [4, 4]])])


@pytest.mark.parametrize("index", ["auto", "flat"])
def test_cosine_builds_copy_no_whole_normalised_set(index):
    """flat and ivf copy the vectors into the index: for cosine they are normalised a block at a
    time, so the build's own numpy memory stays well below one more copy of the set (the recall
    measurement's blocks, sample × EXACT_BLOCK scores, kept small here)."""
    import tracemalloc

    x = clustered(200_000, d=64)
    r = FaissRetriever(FaissConfig(index=index, auto_exact_max=0, recall_sample=50))
    tracemalloc.start()
    try:
        r.build(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.kind_ == ("ivf" if index == "auto" else "flat")
    assert peak < 0.5 * x.nbytes, (peak, x.nbytes)
    exact = np.argsort(-(x[:5] / np.linalg.norm(x[:5], axis=1, keepdims=True))
                       @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T, axis=1)[:, :5]
    if index == "flat":
        np.testing.assert_array_equal(r.search(x[:5], 5)[0][:, 0], exact[:, 0])


def test_a_build_asks_its_thread_count_before_every_block_and_restores_it():
    """The publisher lowers build_threads while the version's writes run beside the build and lifts it
    after: an ivf build reads it before each block it adds, and leaves the thread's count as it was."""
    import faiss

    from embstore_plugins.faiss_retriever import ROW_BLOCK, FaissConfig, FaissRetriever

    asked = []

    class Watched(FaissRetriever):
        @property
        def build_threads(self):
            asked.append(len(asked))
            return 1 if len(asked) < 3 else None

        @build_threads.setter
        def build_threads(self, value):
            pass

    x = np.random.default_rng(0).normal(size=(3 * ROW_BLOCK, 4)).astype(np.float32)
    before = faiss.omp_get_max_threads()
    index = Watched(FaissConfig(index="ivf", nlist=8, metric="l2"))
    index.build(x)
    assert len(asked) >= 1 + 3  # the context's read, then one per block
    assert faiss.omp_get_max_threads() == before and len(index) == len(x)
