"""The spark engine's shard-by-shard FAISS build (local[2], team backend): a large version's ivf trained on
the driver on a sample, filled by the executors shard by shard, merged on disk; all or nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from conftest import drop_team_store, team_settings
from embstore.catalogue import catalogue
from embstore.errors import PublishError
from embstore.linalg import unit_rows
from embstore.ops.consistency import check_store
from embstore.store import EmbeddingStore

pytestmark = pytest.mark.spark
sys.path.insert(0, str(Path(__file__).parent))
COUNT, DIM, SHARD_ROWS = 20_000, 16, 6_000  # four shards of about 5,000 rows (ceil(20,000 / 6,000) ranges)
RETRIEVER = {"index": "auto", "auto_exact_max": 100_000}  # 20k x 16 is above it: auto gives an ivf


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, team_available, spark_available):
    """A team store on spark local[2] that shards indexes from 10k rows, with one version of 20k rows
    published (big@1, prod): the tests below read it, and the fault test publishes after it."""
    items = tmp_path_factory.mktemp("items") / "items.parquet"
    ids = np.arange(COUNT, dtype=np.int64) * 7 + 3
    pd.DataFrame({"item_id": ids, "shelf": ids % 11}).to_parquet(items, index=False)
    config = {"master": "local[2]", "shard_index_min_rows": 10_000, "shard_index_rows": SHARD_ROWS}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBSTORE_PLUGINS", "dev_plugins.planted")
        catalogue(reload=True)
        store = EmbeddingStore.init(tmp_path_factory.mktemp("home") / "home", progress=False, engine="spark",
                                    engine_config=config, **team_settings())
        try:
            yield store, items, publish(store, items)
        finally:
            drop_team_store(store)
    catalogue(reload=True)


def publish(store: EmbeddingStore, items: Path, seed: int = 0):
    return store.run("planted", "big", {"side_info": items}, {"dim": DIM, "seed": seed}, promote="prod",
                     retriever_config=RETRIEVER)


def test_a_large_spark_version_gets_an_ivf_merged_from_shards_equal_to_one_built_whole(sharded, tmp_path,
                                                                                      monkeypatch):
    store, _, version = sharded
    report = version.metrics["index"]
    assert report["kind"] == "ivf" and report["build"] == "sharded" and report["shards"] == 4
    assert report["nlist"] == 64 and report["nprobe"] >= 16 and report["recall@10"] >= 0.9, report
    directory = Path(version.storage_path)
    assert {"index/index.faiss", "index/index.ivfdata", "index/index.json"} <= set(version.checksums)
    assert not (directory / "index-shards").exists()
    assert sorted(p.name for p in (directory / "index").iterdir()) == ["index.faiss", "index.ivfdata", "index.json"]
    assert check_store(store).ok, check_store(store).inconsistencies

    # an ivf built whole from the same lists (the merged index's centroids), the vectors added as build adds them
    stored = np.asarray(store.load(version).vectors)
    merged = faiss.read_index(str(directory / "index" / "index.faiss"), faiss.IO_FLAG_SKIP_IVF_DATA)
    centroids = faiss.extract_index_ivf(merged).quantizer.reconstruct_n(0, report["nlist"])
    quantizer = faiss.IndexFlat(DIM, faiss.METRIC_INNER_PRODUCT)
    quantizer.add(centroids)
    whole = faiss.IndexIVFFlat(quantizer, DIM, report["nlist"], faiss.METRIC_INNER_PRODUCT)
    whole.add(unit_rows(stored))
    whole.nprobe = report["nprobe"]
    sample = np.arange(0, COUNT, 97)
    _, rows = whole.search(unit_rows(stored[sample]), 11)

    monkeypatch.chdir(tmp_path)  # the index is read from another working directory than it was written in
    ids = store.load(version).ids
    found = store.recall("big@1", ids=ids[sample].tolist(), k=10)
    for query, got, want in zip(sample, found, rows):
        assert list(got.ids) == ids[[r for r in want if r != query][:10]].tolist()


def test_a_fault_in_the_shard_step_leaves_the_previous_version_serving(sharded, monkeypatch):
    store, items, first = sharded
    monkeypatch.setenv("EMBSTORE_FAULT_AFTER", "index_shard:raise")  # raised on an executor, after a shard
    with pytest.raises(PublishError, match="injected fault after step 'index_shard'"):
        publish(store, items, seed=1)  # the error says what the executor raised
    monkeypatch.delenv("EMBSTORE_FAULT_AFTER")
    assert [v.status for v in store.versions("big")] == ["published", "failed"]
    assert store.resolve("big@prod").number == first.number == 1
    failed = Path(store.versions("big")[1].storage_path)
    assert not (failed / "index-shards").exists()
    query = store.load(first).ids[:3].tolist()
    assert [len(n.ids) for n in store.recall("big@prod", ids=query, k=5)] == [5, 5, 5]
    assert store.gc() == ["big@2"] and not failed.exists()
    assert check_store(store).ok
