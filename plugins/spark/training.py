"""Producers on Spark: item2vec on per-user sequences built by Spark, DeepWalk and node2vec with walks
generated on the executors by embstore's walk engine over a broadcast graph; then one of two trainers
(the engine's ``trainer``):

- ``driver``: the sequences or walks are collected on the driver (through Arrow, 8 bytes a token
  while collected, then 4) and trained there by embstore's own skip-gram with negative sampling,
  the local engine's trainer with the same defaults: the same quality as the local engine.
- ``word2vec``: Spark ML's Word2Vec on the executors, for corpora too large to collect. It is a
  skip-gram trained with hierarchical softmax, not negative sampling: ``negative``,
  ``ns_exponent``, ``sample`` and ``min_learning_rate`` do not apply and a value other than the
  default is refused; ``window: all`` is refused too. Its vocabulary and vectors live on the
  driver: vocabulary × dimension must stay below 2^31 floats. It trains each partition's
  sentences apart and averages: ``partitions`` (default 1) trades accuracy for parallelism.
  Sentences longer than 10,000 items are cut into pieces, as the local trainer feeds gensim.
  On MovieLens it recalls less than the driver trainer (bench/bench_spark.py, docs/spark.md).

``auto`` (the default) trains on the driver while the corpus has at most ``driver_max_tokens``
tokens, else with Word2Vec; the version's metrics say which (``trainer``, ``trainer_rule``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, InputError
from embstore.processes import HOST, pid_alive
from embstore.skipgram import MAX_SEQUENCE_TOKENS, SkipGramConfig, rare_items_policy

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from embstore.sequences import Sequences
    from embstore_plugins.spark.inputs import SparkInputs

WORD2VEC_LIMIT = 2**31  # floats Spark's Word2Vec holds on the driver (vocabulary × dimension)
NOT_ON_SPARK = ("negative", "ns_exponent", "sample", "min_learning_rate")
Trainer = Literal["auto", "driver", "word2vec"]


def chosen_trainer(trainer: Trainer, tokens: int, driver_max_tokens: int) -> tuple[str, str]:
    """The trainer a corpus of ``tokens`` gets, and why."""
    if trainer != "auto":
        return trainer, "given"
    if tokens <= driver_max_tokens:
        return "driver", f"auto: {tokens:,} tokens <= driver_max_tokens {driver_max_tokens:,}"
    return "word2vec", f"auto: {tokens:,} tokens > driver_max_tokens {driver_max_tokens:,}"


def collected(frame: "DataFrame", column: str, vocab: np.ndarray | None = None,
              scratch: str | os.PathLike | None = None) -> "Sequences":
    """An array column of a DataFrame as Sequences on the driver, in the frame's row order: its
    values coded against ``vocab`` when they are codes already (walks), else against their sorted
    distinct values (ids, as the local engine's sequences hold them). The executors write the
    column as parquet into ``scratch`` (a directory they and the driver share: the home) and the
    driver reads it: no result passes through the JVM driver's memory or maxResultSize (collecting
    20M tokens with toArrow failed in local[2] with the default 1 GB driver)."""
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from embstore.sequences import Sequences

    if scratch is not None:
        remove_abandoned_collections(scratch)
    tmp = tempfile.mkdtemp(prefix=f"{COLLECT_PREFIX}{HOST}-{os.getpid()}-", dir=scratch)
    try:
        frame.select(column).write.parquet(os.path.join(tmp, "part"))
        parts = sorted(Path(tmp, "part").glob("part-*.parquet"))  # in partition order: the frame's row order
        arr = pa.concat_tables([pq.read_table(p, columns=[column]) for p in parts]).column(column) if parts else \
            pa.chunked_array([], type=pa.list_(pa.int64()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if len(arr) == 0:
        arr = pa.array([], type=arr.type)
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    offsets = offsets - offsets[0] if len(offsets) else np.zeros(1, dtype=np.int64)
    values = arr.flatten()
    if vocab is not None:
        return Sequences(vocab=vocab, codes=values.to_numpy(zero_copy_only=False).astype(np.int32), offsets=offsets)
    # Arrow's hash encoding, then its distinct values sorted: np.unique's answer without sorting every
    # token or making a Python object of each text id
    encoded = values.dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    distinct = distinct.astype(np.int64) if distinct.dtype.kind in "iu" else distinct.astype(object)
    order = np.argsort(distinct, kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    return Sequences(vocab=distinct[order], codes=codes, offsets=offsets)


COLLECT_PREFIX = ".collect-"  # + host-pid-: the driver that collects into it


def remove_abandoned_collections(scratch: str | os.PathLike) -> list[Path]:
    """Remove the collection directories that drivers on this host left when they were killed
    (their process is gone); another host's are left to that host's next run."""
    import shutil

    removed = []
    for path in Path(scratch).glob(f"{COLLECT_PREFIX}*"):
        owner = path.name[len(COLLECT_PREFIX):].rsplit("-", 2)
        if len(owner) != 3 or owner[0] != HOST or not owner[1].isdigit() or pid_alive(int(owner[1])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


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


def item2vec(inputs: "SparkInputs", config: Any, partitions: int, trainer: Trainer = "auto",
             driver_max_tokens: int = 0, progress: bool | None = None, scratch: str | None = None) -> Embeddings:
    """item2vec on Spark: the per-user sequences built by Spark (kept while their counts are taken
    in one pass and the model trains, so the input is read once), then the chosen trainer."""
    from pyspark.sql import functions as F

    from embstore_plugins.item2vec import train_item2vec

    seqs = inputs.sequences(min_rating=config.min_rating, session_gap=config.session_gap).persist()
    try:
        int_ids = dict(seqs.schema["items"].dataType.jsonValue()).get("elementType") == "long"
        counts = seqs.select(F.sum(F.when(F.size("items") >= 2, 1).otherwise(0)).alias("trainable"),
                             F.sum(F.size("items")).alias("interactions")).first()
        if not counts["trainable"]:
            raise InputError("item2vec has nothing to train on: no user has 2 or more interactions")
        interactions = int(counts["interactions"])
        how, why = chosen_trainer(trainer, interactions, driver_max_tokens)
        if how == "driver":  # the local engine's trainer on the same sequences
            t0 = time.perf_counter()
            sequences = collected(seqs.orderBy("user", "session"), "items", scratch=scratch)  # the local engine's order
            emb = train_item2vec(sequences, config, progress)
            emb.metadata.update(trainer="driver", trainer_rule=why, sequences=int(counts["trainable"]),
                                collect_seconds=round(time.perf_counter() - t0 - emb.metadata.get("train_seconds", 0), 3))
            return emb
        seen = int(seqs.select(F.explode("items").alias("item")).distinct().count())
        config, rule = spark_epochs(config, interactions)
        sentences = seqs.where(F.size("items") >= 2).select(
            F.transform("items", lambda i: i.cast("string")).alias("tokens"))
        words, vectors, metrics = word2vec(sentences, config, partitions, "item2vec")
    finally:
        seqs.unpersist()
    metrics.update(sequences=int(counts["trainable"]), epochs_rule=rule, trainer_rule=why)
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


def random_walk_producer(inputs: "SparkInputs", config: Any, partitions: int, producer: str,
                         trainer: Trainer = "auto", driver_max_tokens: int = 0,
                         progress: bool | None = None, scratch: str | None = None) -> Embeddings:
    """DeepWalk / node2vec on Spark: the graph broadcast to the executors, each task walking a range of
    walk indices (walk i depends only on the seed and i, so the walks equal the local engine's), then
    the chosen trainer on the walks."""
    from embstore.skipgram import train_skipgram
    from embstore.walks import walk_count, walk_range

    t0 = time.perf_counter()
    graph = walk_graph(inputs, config)
    if graph.n_edges == 0:
        raise InputError(f"producer {producer!r}: the graph has no edges, so there is nothing to walk")
    walk_config = config.walk_config(config.seed)
    session = inputs.session
    shared = session.sparkContext.broadcast(graph)
    total = walk_count(graph, walk_config)
    how, why = chosen_trainer(trainer, int(total) * int(walk_config.walk_length), driver_max_tokens)
    tasks = max(1, session.sparkContext.defaultParallelism * 2)
    bounds = np.linspace(0, total, tasks + 1).astype(np.int64)
    ranges = session.sparkContext.parallelize(list(zip(bounds[:-1].tolist(), bounds[1:].tolist())), tasks)
    as_text = how == "word2vec"

    def walk(part):
        g = shared.value
        for a, b in part:
            if b > a:
                for w in walk_range(g, walk_config, a, b):
                    yield ([str(c) for c in w.tolist()],) if as_text else (w.tolist(),)

    t1 = time.perf_counter()
    if how == "driver":  # walks made on the executors, trained here by the local engine's trainer
        walks = collected(session.createDataFrame(ranges.mapPartitions(walk), "codes array<int>"), "codes", graph.ids,
                          scratch=scratch)
        t2 = time.perf_counter()
        codes, vectors, metrics = train_skipgram(walks, config, progress=progress)
        metrics.update(trainer="driver", walk_steps=walks.n_tokens, walk_seconds=round(t2 - t1, 3))
    else:
        sentences = session.createDataFrame(ranges.mapPartitions(walk), "tokens array<string>")
        words, vectors, metrics = word2vec(sentences, config, partitions, producer)
        codes = np.asarray([int(w) for w in words], dtype=np.int64)
    metrics.update(nodes=graph.n_nodes, edges=graph.n_edges, directed=graph.directed, walks=int(total),
                   graph_seconds=round(t1 - t0, 3), walk_tasks=tasks, nodes_without_vector=int(graph.n_nodes - len(codes)),
                   trainer_rule=why)
    if "interactions" in inputs.kinds:  # an item graph: say what happened to the rare items, as locally
        seen = inputs.items_seen(config.min_rating, config.session_gap)
        metrics.update(rare_items_policy(seen, len(codes), "min_interactions", int(getattr(config, "min_interactions", 1))))
    shared.unpersist()
    return Embeddings(ids=graph.ids[codes], vectors=vectors, metadata=metrics)
