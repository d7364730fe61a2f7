"""The spark engine in local[2]: lake-style inputs, the local engine's semantics, and every guarantee
of the lifecycle (numbers, valid-from, aliases, all or nothing, Feast's Spark offline store, online
rows from the executors in Redis)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import MOVIELENS, drop_team_store, team_settings
from embstore.errors import ConfigError
from embstore.graph import Graph, frequent_items
from embstore.inputs import Inputs, InputSpec
from embstore.store import EmbeddingStore

pytestmark = pytest.mark.spark
COLUMNS = {"user_id": "userId", "item_id": "movieId"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, spark_available) -> Path:
    """MovieLens as a lake would hold it: hive-style partitions, several parquet files each."""
    root = tmp_path_factory.mktemp("lake") / "ratings"
    ratings = pd.read_csv(MOVIELENS / "ratings.csv")
    for part, group in ratings.groupby(ratings["userId"] % 3):
        (root / f"shard={part}").mkdir(parents=True)
        for i, chunk in enumerate(np.array_split(group, 2)):
            pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), root / f"shard={part}" / f"f{i}.parquet")
    return root


@pytest.fixture(scope="module")
def in_file_order(dataset, tmp_path_factory) -> Path:
    """The same rows as one local file, in the order the dataset holds them (file path, row)."""
    path = tmp_path_factory.mktemp("local") / "ratings.parquet"
    frames = [pq.read_table(f).to_pandas() for f in sorted(dataset.rglob("*.parquet"))]
    pd.concat(frames).drop(columns=["shard"], errors="ignore").to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def engine(spark_available, tmp_path_factory):
    from embstore_plugins.spark import SparkConfig, SparkEngine

    return SparkEngine(SparkConfig(master="local[2]"), tmp_path_factory.mktemp("engine"))


@pytest.fixture
def team_spark_store(home, team_available, spark_available):
    store = EmbeddingStore.init(home, progress=False, engine="spark", engine_config={"master": "local[2]"},
                                **team_settings())
    try:
        yield store
    finally:
        drop_team_store(store)


def test_sequences_and_item_graph_equal_the_local_engines_on_movielens(engine, dataset, in_file_order):
    spark = engine.inputs([InputSpec("interactions", dataset, COLUMNS)])
    local = Inputs([InputSpec("interactions", in_file_order, COLUMNS)])
    for min_rating, gap in ((3.5, None), (None, 3600.0)):
        seqs = spark.sequences(min_rating=min_rating, session_gap=gap).toPandas().sort_values(["user", "session"])
        expected = local.sequences(min_rating=min_rating, session_gap=gap)
        assert [list(s) for s in seqs["items"]] == [expected.vocab[s].tolist() for s in expected]
    from embstore_plugins.random_walks import DeepWalkConfig
    from embstore_plugins.spark.training import walk_graph

    for directed, self_loops in ((None, True), (False, False)):
        config = DeepWalkConfig(min_rating=3.5, directed=directed, self_loops=self_loops)
        got = walk_graph(spark, config)
        want = Graph.from_sequences(frequent_items(local.sequences(min_rating=3.5), config.min_interactions),
                                    directed=directed is not False, self_loops=self_loops)
        for part in ("ids", "indptr", "indices", "weights"):
            np.testing.assert_array_equal(getattr(got, part), getattr(want, part))
    assert spark.newest_time() == local.newest_time()


def test_walks_from_the_executors_are_the_local_walks(engine):
    from embstore.walks import WalkConfig, random_walks, walk_range

    rng = np.random.default_rng(0)
    graph = Graph.from_edges(rng.integers(0, 300, 3000), rng.integers(0, 300, 3000), directed=False)
    config = WalkConfig(walk_length=12, walks_per_node=3, p=0.5, q=2.0, seed=7)
    whole = random_walks(graph, config, progress=False)
    parts = engine.session.sparkContext.parallelize([(0, 250), (250, 601), (601, 900)], 3).map(
        lambda r: [w.tolist() for w in walk_range(graph, config, *r)]).collect()
    assert [w for part in parts for w in part] == [w.tolist() for w in whole]


def test_the_driver_trainer_gives_the_local_engines_vectors(engine, dataset, in_file_order):
    """trainer auto on a corpus that fits the driver: Spark builds the sequences, the driver trains them
    with the local engine's skip-gram, and with one worker the vectors are the local engine's, bit for bit."""
    from embstore.config import parse_config
    from embstore_plugins.item2vec import Item2Vec, Item2VecConfig
    from embstore_plugins.spark import training

    config = parse_config(Item2VecConfig, {"min_rating": 3.5, "epochs": 2, "dim": 8, "workers": 1}, "item2vec")
    spark = training.item2vec(engine.inputs([InputSpec("interactions", dataset, COLUMNS)]), config, 1,
                              driver_max_tokens=10**6, progress=False)
    local = Item2Vec().fit(Inputs([InputSpec("interactions", in_file_order, COLUMNS)]), config, progress=False)
    assert spark.metadata["trainer"] == "driver" and "<= driver_max_tokens" in spark.metadata["trainer_rule"]
    np.testing.assert_array_equal(spark.ids, local.ids)
    np.testing.assert_array_equal(spark.vectors, local.vectors)
    for key in ("items_seen", "items_with_vector", "epochs"):
        assert spark.metadata[key] == local.metadata[key]


def test_deepwalk_walks_on_the_executors_and_trains_on_the_driver_as_locally(engine, dataset, in_file_order):
    from embstore.config import parse_config
    from embstore_plugins.random_walks import DeepWalk, DeepWalkConfig
    from embstore_plugins.spark import training

    config = parse_config(DeepWalkConfig, {"min_rating": 3.5, "walks_per_node": 2, "walk_length": 10, "epochs": 1,
                                           "dim": 8, "workers": 1}, "deepwalk")
    spark = training.random_walk_producer(engine.inputs([InputSpec("interactions", dataset, COLUMNS)]), config, 1,
                                          "deepwalk", driver_max_tokens=10**6, progress=False)
    local = DeepWalk().fit(Inputs([InputSpec("interactions", in_file_order, COLUMNS)]), config, progress=False)
    assert spark.metadata["trainer"] == "driver" and spark.metadata["walk_steps"] == local.metadata["walk_steps"]
    np.testing.assert_array_equal(spark.ids, local.ids)
    np.testing.assert_array_equal(spark.vectors, local.vectors)


def test_word2vec_trains_on_the_executors_above_the_driver_budget(engine, dataset):
    from embstore.config import parse_config
    from embstore_plugins.item2vec import Item2VecConfig
    from embstore_plugins.spark import training

    inputs = engine.inputs([InputSpec("interactions", dataset, COLUMNS)])
    config = parse_config(Item2VecConfig, {"min_rating": 3.5, "epochs": 1, "dim": 8}, "item2vec")
    emb = training.item2vec(inputs, config, 1, driver_max_tokens=1000)
    assert emb.metadata["trainer"] == "spark-ml-word2vec" and "> driver_max_tokens 1,000" in emb.metadata["trainer_rule"]
    assert emb.metadata["items_with_vector"] == len(emb) > 1000
    with pytest.raises(ConfigError, match="Spark ML's Word2Vec .* has no negative"):
        training.item2vec(inputs, config.model_copy(update={"negative": 7}), 1, trainer="word2vec")
    driver = training.item2vec(inputs, config.model_copy(update={"negative": 7}), 1, trainer="driver")
    assert driver.metadata["trainer"] == "driver" and len(driver) == len(emb)


def test_a_spark_run_publishes_with_every_guarantee(team_spark_store, dataset):
    store = team_spark_store
    inputs = [InputSpec("interactions", dataset, COLUMNS)]
    v1 = store.run("item2vec", "movies", inputs, {"min_rating": 3.5, "epochs": 1, "dim": 16}, promote="prod",
                   until="2015-01-01")
    assert v1.valid_from == pd.Timestamp("2015-01-01", tz="UTC") and v1.metrics["trainer"] == "driver"
    assert any(k.startswith("embeddings/bucket=0/") for k in v1.checksums)  # Spark's partitioned dataset
    ratings = pd.read_csv(MOVIELENS / "ratings.csv")  # the rare-items policy, said as the local engine says it
    trained = ratings[(ratings.rating >= 3.5) & (ratings.timestamp < pd.Timestamp("2015-01-01").timestamp())]
    assert v1.metrics["min_count"] == 10 and v1.metrics["items_seen"] == trained.movieId.nunique()
    assert v1.metrics["items_with_vector"] == v1.count == (trained.movieId.value_counts() >= 10).sum()
    assert v1.metrics["items_left_out"] == v1.metrics["items_seen"] - v1.count
    ids = store.load(v1).ids[:20].tolist()
    online = np.asarray(store.online_vectors("movies@prod", ids), dtype=np.float32)  # written by the executors
    np.testing.assert_array_equal(online, store.vectors(v1, ids).matrix)
    fs = store.feast.store  # Feast's own historical join, on Spark
    rows = pd.DataFrame({"item_id": ids[:3], "event_timestamp": pd.to_datetime(["2016-01-01"] * 3, utc=True)})
    joined = fs.get_historical_features(entity_df=rows, features=["movies__v1:embedding"]).to_df()
    got = {r.item_id: np.asarray(r.embedding, dtype=np.float32) for r in joined.itertuples()}
    for i in ids[:3]:
        np.testing.assert_array_equal(got[i], store.vectors(v1, [i]).matrix[0])
    ours = store.join(rows.assign(event_timestamp=pd.to_datetime(["2014-01-01", "2016-01-01", "2016-01-01"], utc=True)),
                      "movies@1")
    assert ours["movies_embedding"][0] is None and ours["movies_embedding"][1] is not None
    from embstore.ops.consistency import check_store

    assert check_store(store).ok


def test_a_kill_during_a_spark_publish_leaves_the_previous_version_serving(team_spark_store, dataset, cli_env):
    store = team_spark_store
    inputs = [InputSpec("interactions", dataset, COLUMNS)]
    first = store.run("item2vec", "movies", inputs, {"min_rating": 3.5, "epochs": 1, "dim": 8}, promote="prod")
    code = textwrap.dedent(f"""
        from embstore.inputs import InputSpec
        from embstore.store import EmbeddingStore
        store = EmbeddingStore({str(store.home)!r}, progress=False)
        store.run("item2vec", "movies", [InputSpec("interactions", {str(dataset)!r}, {COLUMNS!r})],
                  {{"min_rating": 3.5, "epochs": 1, "dim": 8, "seed": 2}}, promote="prod")
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=dict(cli_env, EMBSTORE_FAULT_AFTER="online"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    again = EmbeddingStore(store.home, progress=False)  # reopening reaps the killed publisher's version
    assert [v.status for v in again.versions("movies")] == ["published", "failed"]
    assert again.resolve("movies@prod").number == first.number == 1
    np.testing.assert_array_equal(again.vectors("movies@prod", [260]).matrix, store.vectors(first, [260]).matrix)
    assert again.gc() == ["movies@2"] and not (store.home / "sets" / "movies" / "v2").exists()
    again.close()


def test_the_spark_engine_refuses_a_sqlite_online_store_before_training(home, dataset, spark_available):
    store = EmbeddingStore.init(home, progress=False, engine="spark", engine_config={"master": "local[2]"})
    with pytest.raises(ConfigError, match="SQLite online store cannot take writers on other hosts"):
        store.run("item2vec", "movies", [InputSpec("interactions", dataset, COLUMNS)])
    assert store.sets() == []
    store.close()


def test_auto_epochs_on_spark_stay_at_what_hierarchical_softmax_was_measured_with():
    from embstore.config import parse_config
    from embstore_plugins.item2vec import Item2VecConfig
    from embstore_plugins.spark.training import spark_epochs

    auto = parse_config(Item2VecConfig, {}, "x")
    assert spark_epochs(auto, 61_716)[0].epochs == 10 and "at most 10 on spark" in spark_epochs(auto, 61_716)[1]
    assert spark_epochs(auto, 20_000_000)[0].epochs == 5
    given = parse_config(Item2VecConfig, {"epochs": 40}, "x")
    assert spark_epochs(given, 61_716) == (given, "given")


def test_a_killed_drivers_collection_directory_is_removed_by_the_next_run_on_its_host(tmp_path):
    """The driver trainer collects into ``.collect-<host>-<pid>-*`` in the home; a driver killed
    mid-collection leaves it, and the next collection on that host removes it (only if its
    process is gone: a running driver's, another host's and anything else stay)."""
    import os
    import socket

    from embstore_plugins.spark.training import remove_abandoned_collections

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead = tmp_path / f".collect-{host}-{gone.pid}-abc_12"
    running = tmp_path / f".collect-{host}-{os.getpid()}-xyz"
    elsewhere = tmp_path / f".collect-other-host-{gone.pid}-q1"
    unrelated = tmp_path / "sets"
    for path in (dead, running, elsewhere, unrelated):
        (path / "part").mkdir(parents=True)
    assert remove_abandoned_collections(tmp_path) == [dead]
    assert not dead.exists() and running.exists() and elsewhere.exists() and unrelated.exists()
