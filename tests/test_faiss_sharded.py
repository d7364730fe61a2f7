"""The faiss retriever's ivf built in shards (ShardedBuild): trained on a sample, filled shard by shard,
merged on disk; it answers as the ivf built whole, loads from anywhere, and its files are checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embstore.errors import IntegrityError
from embstore.retriever import ShardedBuild
from embstore_plugins.faiss_retriever import IVFDATA_FILE, FaissConfig, FaissRetriever


def planted(n: int = 12_000, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d))
    return (centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def sharded(x: np.ndarray, directory: Path, shards: int = 3, **config) -> tuple[FaissRetriever, list[Path]]:
    """The retriever after the engine's calls: train on its rows, fill ``shards`` shards in two pieces each, merge."""
    directory.mkdir(parents=True, exist_ok=True)
    r = FaissRetriever(FaissConfig(**config))
    trained = r.train_for_shards(x[r.training_rows(len(x))], len(x))
    paths = []
    for number, rows in enumerate(np.array_split(np.arange(len(x)), shards)):
        path = directory / f"shard-{number}.index"
        half = len(rows) // 2
        added = FaissRetriever(FaissConfig(**config)).fill_shard(
            trained, [(rows[:half], x[rows[:half]]), (rows[half:], x[rows[half:]])], path, threads=1)
        assert added == len(rows)
        paths.append(path)
    return r, r.merge_shards(trained, paths, directory / "index", x)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_an_ivf_merged_from_shards_answers_as_the_ivf_built_whole(tmp_path, metric):
    x = planted()
    config = {"metric": metric, "index": "auto", "auto_exact_max": 1000}
    r, files = sharded(x, tmp_path, **config)
    assert isinstance(r, ShardedBuild) and r.shardable(len(x), x.shape[1])
    assert sorted(p.name for p in files) == ["index.faiss", "index.ivfdata", "index.json"]
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["index.faiss", "index.ivfdata", "index.json"]
    whole = FaissRetriever(FaissConfig(**config))
    whole.build(x)  # the same seeded sample trains the same lists
    report = r.report()
    assert report["kind"] == "ivf" and report["build"] == "sharded" and report["shards"] == 3
    for key in ("nlist", "nprobe", "train_points", "kmeans_iterations", "recall@10", "sample"):
        assert report[key] == whole.report()[key], key
    assert report["recall@10"] >= 0.95
    loaded = FaissRetriever.load(tmp_path / "index", FaissConfig(**config))
    rows, scores = loaded.search(x[:500], 10)
    want_rows, want_scores = whole.search(x[:500], 10)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_the_merged_index_loads_from_any_working_directory_and_any_place(tmp_path, monkeypatch):
    x = planted()
    r, _ = sharded(x, tmp_path / "built", index="ivf")
    assert r.report()["chosen"] == "config" and r.report()["recall@10"] >= 0.9
    meta = json.loads((tmp_path / "built" / "index" / "index.json").read_text())
    assert meta["ivfdata"] == IVFDATA_FILE  # a name, not a path
    want = r.search(x[:200], 10)[0]
    moved = tmp_path / "elsewhere" / "index"
    shutil.copytree(tmp_path / "built" / "index", moved)
    shutil.rmtree(tmp_path / "built")
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(FaissRetriever.load(moved).search(x[:200], 10)[0], want)
    saved = FaissRetriever.load(moved).save(tmp_path / "copy")  # the on-disk lists go along
    assert sorted(p.name for p in saved) == ["index.faiss", "index.ivfdata", "index.json"]
    np.testing.assert_array_equal(FaissRetriever.load(tmp_path / "copy").search(x[:200], 10)[0], want)


def test_a_missing_or_short_lists_file_is_named(tmp_path):
    x = planted(4000)
    sharded(x, tmp_path, index="ivf", nlist=32)
    lists = tmp_path / "index" / IVFDATA_FILE
    data = lists.read_bytes()
    lists.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="index.ivfdata is truncated"):
        FaissRetriever.load(tmp_path / "index")
    lists.unlink()
    with pytest.raises(IntegrityError, match="index.ivfdata is missing"):
        FaissRetriever.load(tmp_path / "index")


def test_an_auto_ivf_short_of_its_recall_after_the_merge_becomes_flat(tmp_path):
    x = np.random.default_rng(1).normal(size=(8000, 48)).astype(np.float32)  # no clusters: ivf misses
    r, files = sharded(x, tmp_path, index="auto", auto_exact_max=1000, auto_recall=1.0)
    report = r.report()
    assert report["kind"] == "flat" and report["instead_of"]["kind"] == "ivf" and report["build"] == "sharded"
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["index.faiss", "index.json"]
    assert sorted(p.name for p in files) == ["index.faiss", "index.json"]
    np.testing.assert_array_equal(FaissRetriever.load(tmp_path / "index").search(x[:5], 1)[0][:, 0], np.arange(5))


def test_only_an_ivf_is_built_in_shards():
    assert not FaissRetriever(FaissConfig()).shardable(10_000, 16)  # auto: flat at this size
    assert FaissRetriever(FaissConfig(auto_exact_max=1000)).shardable(10_000, 16)
    assert not FaissRetriever(FaissConfig(index="hnsw")).shardable(10_000_000, 64)
    assert not FaissRetriever(FaissConfig(auto_exact_max=1000, auto_approximate="hnsw")).shardable(10_000, 16)
    rows = FaissRetriever(FaissConfig(index="ivf", nlist=8)).training_rows(10_000)
    assert len(rows) == 8 * 256 and np.all(np.diff(rows) > 0)
