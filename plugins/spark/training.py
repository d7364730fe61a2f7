"""Producers on Spark: item2vec on Spark ML's Word2Vec, DeepWalk and node2vec with walks generated on
the executors by embstore's walk engine over a broadcast graph, then the same Word2Vec.

Spark ML's Word2Vec is a skip-gram trained with hierarchical softmax, not negative sampling:
``negative``, ``ns_exponent``, ``sample`` and ``min_learning_rate`` do not apply and a value
other than the default is refused; ``window: all`` is refused too. Its vocabulary and vectors
live on the driver: vocabulary × dimension must stay below 2^31 floats. It trains each
partition's sentences apart and averages: ``partitions`` (default 1) trades accuracy for
parallelism. Sentences longer than 10,000 items are cut into pieces, as the local trainer
feeds gensim.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, InputError
from embstore.skipgram import MAX_SEQUENCE_TOKENS, SkipGramConfig, rare_items_policy

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from embstore_plugins.spark.inputs import SparkInputs

WORD2VEC_LIMIT = 2**31  # floats Spark's Word2Vec holds on the driver (vocabulary × dimension)
NOT_ON_SPARK = ("negative", "ns_exponent", "sample", "min_learning_rate")


def check_word2vec(config: SkipGramConfig, producer: str) -> None:
    """Refuse the skip-gram options Spark ML's Word2Vec has no counterpart for."""
    fields = type(config).model_fields
    changed = [k for k in NOT_ON_SPARK if k in fields and getattr(config, k) != fields[k].default]
    if changed:
        raise ConfigError(f"{producer} on the spark engine trains with Spark ML's Word2Vec (hierarchical softmax), "
                          f"which has no {', '.join(changed)}; drop those options or run with --engine local")
    if config.window == "all":
        raise ConfigError(f"{producer} on the spark engine: window=all is not supported by Spark ML's Word2Vec; "
                          "give a number, or run with --engine local")


def word2vec(sentences: "DataFrame", config: SkipGramConfig, partitions: int, producer: str) -> tuple[list, np.ndarray, dict]:
    """Train on a DataFrame with an array<string> column ``tokens``; the words and their vectors."""
    from pyspark.ml.feature import Word2Vec

    check_word2vec(config, producer)
    t0 = time.perf_counter()
    model = Word2Vec(vectorSize=config.dim, windowSize=int(config.window), minCount=config.min_count,
                     maxIter=config.epochs, stepSize=config.learning_rate, seed=int(config.seed),
                     numPartitions=partitions, maxSentenceLength=MAX_SEQUENCE_TOKENS,
                     inputCol="tokens", outputCol="vec").fit(sentences)
    table = model.getVectors().toPandas()
    if table.empty:
        raise InputError(f"{producer} on spark has nothing to train on: no item occurs min_count={config.min_count} times")
    if len(table) * config.dim >= WORD2VEC_LIMIT:
        raise ConfigError(f"{producer} on spark: {len(table)} items × {config.dim} dimensions is beyond what Spark's "
                          "Word2Vec holds on the driver (2^31 floats); raise min_count or lower dim")
    vectors = np.stack([np.asarray(v.toArray(), dtype=np.float32) for v in table["vector"]])
    metrics = {"trainer": "spark-ml-word2vec", "vocabulary": int(len(table)), "train_seconds": round(time.perf_counter() - t0, 3),
               "partitions": partitions, "epochs": config.epochs, "loss": "hierarchical softmax"}
    return table["word"].tolist(), vectors, metrics


SPARK_AUTO_EPOCHS = 10  # Word2Vec's hierarchical softmax on MovieLens: HR@10 0.071 at 10 passes, 0.046 at 120


def spark_epochs(config: Any, interactions: int) -> tuple[Any, str]:
    """item2vec's ``epochs: auto`` on Spark: the local budget, at most ``SPARK_AUTO_EPOCHS`` passes.
    The budget was measured for negative sampling with ns_exponent -0.5; Spark ML's hierarchical
    softmax overfits with as many passes (MovieLens latest-small, bench_spark.py movielens)."""
    from embstore_plugins.item2vec import resolved_epochs

    if config.epochs != "auto":
        return config, "given"
    resolved, rule = resolved_epochs(config, interactions)
    if resolved.epochs <= SPARK_AUTO_EPOCHS:
        return resolved, rule
    return resolved.model_copy(update={"epochs": SPARK_AUTO_EPOCHS}), f"{rule}, at most {SPARK_AUTO_EPOCHS} on spark"


def typed(words: list[str], int_ids: bool) -> np.ndarray:
    return np.asarray([int(w) for w in words], dtype=np.int64) if int_ids else np.asarray(words, dtype=object)


def item2vec(inputs: "SparkInputs", config: Any, partitions: int) -> Embeddings:
    """item2vec on Spark: the per-user sequences built by Spark (kept while their counts are taken
    in one pass and Word2Vec trains, so the input is read once), then Word2Vec."""
    from pyspark.sql import functions as F

    seqs = inputs.sequences(min_rating=config.min_rating, session_gap=config.session_gap).persist()
    try:
        int_ids = dict(seqs.schema["items"].dataType.jsonValue()).get("elementType") == "long"
        counts = seqs.select(F.sum(F.when(F.size("items") >= 2, 1).otherwise(0)).alias("trainable"),
                             F.sum(F.size("items")).alias("interactions")).first()
        if not counts["trainable"]:
            raise InputError("item2vec has nothing to train on: no user has 2 or more interactions")
        seen = int(seqs.select(F.explode("items").alias("item")).distinct().count())
        config, rule = spark_epochs(config, int(counts["interactions"]))
        sentences = seqs.where(F.size("items") >= 2).select(
            F.transform("items", lambda i: i.cast("string")).alias("tokens"))
        words, vectors, metrics = word2vec(sentences, config, partitions, "item2vec")
    finally:
        seqs.unpersist()
    metrics.update(sequences=int(counts["trainable"]), epochs_rule=rule)
    metrics.update(rare_items_policy(seen, len(words), "min_count", config.min_count))
    return Embeddings(ids=typed(words, int_ids), vectors=vectors, metadata=metrics)


def walk_graph(inputs: "SparkInputs", config: Any):
    """The graph a walk producer walks, built by Spark and collected on the driver as embstore's CSR
    Graph (the same graph the local engine builds: moves counted, or the given edges)."""
    from embstore.graph import Graph

    given = inputs.kinds & {"interactions", "edges"}
    if len(given) != 1:
        raise InputError("the walk producers walk one graph: pass either --input edges=PATH or --input interactions=PATH")
    if "edges" in given:
        edges = inputs.edges().toPandas()
        directed = False if config.directed is None else config.directed
        return Graph.from_edges(edges["src"].to_numpy(), edges["dst"].to_numpy(), edges["weight"].to_numpy(),
                                directed=directed)
    threshold = int(getattr(config, "min_interactions", 1))
    moves = inputs.moves(config.min_rating, config.session_gap, config.self_loops, threshold).toPandas()
    vocab = inputs.vocabulary(config.min_rating, config.session_gap, threshold)
    directed = True if config.directed is None else config.directed
    return Graph.from_edges(moves["src"].to_numpy(), moves["dst"].to_numpy(), moves["weight"].to_numpy(),
                            directed=directed, nodes=vocab)


def random_walk_producer(inputs: "SparkInputs", config: Any, partitions: int, producer: str) -> Embeddings:
    """DeepWalk / node2vec on Spark: the graph broadcast to the executors, each task walking a range of
    walk indices (walk i depends only on the seed and i, so the walks equal the local engine's), then
    Word2Vec on the walks."""
    from embstore.walks import walk_count, walk_range

    t0 = time.perf_counter()
    graph = walk_graph(inputs, config)
    if graph.n_edges == 0:
        raise InputError(f"producer {producer!r}: the graph has no edges, so there is nothing to walk")
    walk_config = config.walk_config(config.seed)
    session = inputs.session
    shared = session.sparkContext.broadcast(graph)
    total = walk_count(graph, walk_config)
    tasks = max(1, session.sparkContext.defaultParallelism * 2)
    bounds = np.linspace(0, total, tasks + 1).astype(np.int64)
    ranges = session.sparkContext.parallelize(list(zip(bounds[:-1].tolist(), bounds[1:].tolist())), tasks)

    def walk(part):
        g = shared.value
        for a, b in part:
            if b > a:
                walks = walk_range(g, walk_config, a, b)
                for w in walks:
                    yield ([str(c) for c in w.tolist()],)

    t1 = time.perf_counter()
    sentences = session.createDataFrame(ranges.mapPartitions(walk), "tokens array<string>")
    words, vectors, metrics = word2vec(sentences, config, partitions, producer)
    codes = np.asarray([int(w) for w in words], dtype=np.int64)
    metrics.update(nodes=graph.n_nodes, edges=graph.n_edges, directed=graph.directed, walks=int(total),
                   graph_seconds=round(t1 - t0, 3), walk_tasks=tasks, nodes_without_vector=int(graph.n_nodes - len(codes)))
    if "interactions" in inputs.kinds:  # an item graph: say what happened to the rare items, as locally
        seen = inputs.items_seen(config.min_rating, config.session_gap)
        metrics.update(rare_items_policy(seen, len(codes), "min_interactions", int(getattr(config, "min_interactions", 1))))
    shared.unpersist()
    return Embeddings(ids=graph.ids[codes], vectors=vectors, metadata=metrics)
