"""The spark engine: inputs read and producers trained on a Spark cluster (``pip install embstore[spark]``).

    embstore init --engine spark --spark-master spark://head:7077 --postgres URL --redis URL
    embstore run item2vec --set items --input interactions=s3a://lake/events/ ...   # or --engine spark per run

What runs where:

- inputs are read by Spark: parquet datasets (directories, globs, hive-style partitions)
  or CSV files, typed by the local engine's rules (embstore_plugins.spark.inputs);
- item2vec trains on Spark ML's Word2Vec over Spark-built per-user sequences; DeepWalk
  and node2vec walk on the executors (embstore's walk engine over a broadcast graph)
  and train the same Word2Vec (embstore_plugins.spark.training: its limits);
- every other producer runs on the driver from inputs Spark read, typed and wrote to
  local files (say so in the log: it needs one machine for its training);
- the version's offline rows are written by Spark as a partitioned parquet dataset and
  registered in Feast through Feast's Spark offline store (historical joins run on
  Spark); its online rows are written by the executors, straight into the team
  backend's Redis (SQLite cannot take writers on other hosts: refused);
- the FAISS index is built on the driver from the collected vectors; from
  ``shard_index_min_rows`` rows on, an IVF (index=ivf, or auto above its exact threshold)
  is trained on the driver on a sample and filled shard by shard on the executors, then
  merged on disk by the driver (embstore_plugins.spark.index).

pyspark is imported only when the engine is used.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field

from embstore.config import PluginConfig
from embstore.engine import Engine
from embstore.errors import ConfigError
from embstore.hookspecs import hookimpl

log = logging.getLogger(__name__)

SPARK_PRODUCERS = ("item2vec", "deepwalk", "node2vec")


class SparkConfig(PluginConfig):
    master: str = Field("local[2]", min_length=1, description="Spark master URL: local[N], spark://host:7077, yarn, k8s://...")
    app_name: str = Field("embstore", min_length=1, description="Spark application name")
    conf: dict[str, str] = Field(default_factory=dict, description="extra Spark conf, e.g. {spark.executor.memory: 8g}")
    trainer: Literal["auto", "driver", "word2vec"] = Field(
        "auto", description="item2vec, deepwalk, node2vec: driver collects the sequences or walks Spark built and trains "
        "them on the driver with embstore's skip-gram (negative sampling, the local engine's defaults and quality); "
        "word2vec trains on the executors with Spark ML's Word2Vec (hierarchical softmax, lower recall on MovieLens); "
        "auto: driver up to driver_max_tokens, else word2vec")
    driver_max_tokens: int = Field(
        50_000_000, ge=0, description="trainer auto: the largest corpus (interactions, or walks x walk_length) trained "
        "on the driver; collecting it takes about 8 bytes a token of driver memory (keep spark.driver.maxResultSize "
        "above that), training it the driver's cores")
    partitions: int = Field(1, ge=1, description="Word2Vec partitions: more train faster, fewer train better (Spark averages "
                                                 "the partitions' models)")
    shard_index_min_rows: int = Field(
        2_000_000, ge=1, description="versions with at least this many rows whose index is an IVF (index=ivf, or auto "
        "above auto_exact_max) get it trained on the driver on a sample, filled shard by shard on the executors and "
        "merged on disk; smaller ones are built on the driver, a small part of their publish (docs/spark.md)")
    shard_index_rows: int = Field(
        1_000_000, ge=1, description="rows per index shard, one task each (Spark's range exchange makes them about "
        "that size): an executor task holds one shard's vectors and lists (about rows x dim x 4 bytes); fewer rows "
        "give more tasks to spread over the executors' cores")


class SparkEngine(Engine):
    """Inputs read and producers trained on Spark (a cluster, or local[N]); the version's offline rows
    written by Spark and its online rows by the executors (the team backend's Redis)."""

    name = "spark"
    Config = SparkConfig

    def __init__(self, config: SparkConfig, home: Path):
        super().__init__(config, home)
        self._session = None

    @property
    def session(self):
        if self._session is None:
            try:
                from pyspark.sql import SparkSession
            except ImportError:
                raise ConfigError("the spark engine needs pyspark: pip install 'embstore[spark]'") from None
            if self.config.master.startswith("local"):  # the workers run this interpreter, with embstore in it
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = (SparkSession.builder.master(self.config.master).appName(self.config.app_name)
                       .config("spark.sql.session.timeZone", "UTC").config("spark.ui.showConsoleProgress", "false"))
            for key, value in self.spark_conf().items():
                builder = builder.config(key, value)
            self._session = builder.getOrCreate()
            self._session.sparkContext.setLogLevel("WARN")
        return self._session

    def spark_conf(self) -> dict[str, str]:
        """The session's conf: on a local master the Python workers are this interpreter (a cluster's
        executors need embstore installed in their own Python: spark.pyspark.python)."""
        local = {"spark.pyspark.python": sys.executable} if self.config.master.startswith("local") else {}
        return {"spark.ui.enabled": "false", **local, **self.config.conf}

    def inputs(self, specs: Sequence[Any]):
        from embstore_plugins.spark.inputs import SparkInputs

        return SparkInputs(self.session, specs)

    def fit(self, producer, inputs, config, progress: bool) -> Any:
        from embstore_plugins.spark import training

        trainer = dict(trainer=self.config.trainer, driver_max_tokens=self.config.driver_max_tokens, progress=progress,
                       scratch=str(self.home))
        if producer.name == "item2vec":
            return training.item2vec(inputs, config, self.config.partitions, **trainer)
        if producer.name in ("deepwalk", "node2vec"):
            return training.random_walk_producer(inputs, config, self.config.partitions, producer.name, **trainer)
        log.warning("producer %s has no Spark implementation: its inputs are read by Spark and it trains on the "
                    "driver, on one machine", producer.name)
        from embstore_plugins.local_engine import LocalEngine

        with tempfile.TemporaryDirectory(prefix="embstore-driver-") as tmp:
            local = inputs.to_local(inputs.kinds, Path(tmp))
            return LocalEngine(self.config, self.home).fit(producer, local, config, progress)

    def feast_offline_store(self) -> dict[str, Any]:
        return {"type": "spark", "spark_conf": {"spark.master": self.config.master, "spark.sql.session.timeZone": "UTC",
                                                **self.spark_conf()}}

    def writers(self, repo: Path):
        from embstore_plugins.spark.writers import SparkWriters

        return SparkWriters(self, repo)

    def close(self) -> None:
        """Let go of the session; it stays up for the rest of the process (Spark keeps one session per
        process, which another store or a user's own code may share), and stops when the process exits."""
        self._session = None


@hookimpl
def register_engines(register) -> None:
    register(SparkEngine)
