"""A version's Feast rows written by Spark: the offline rows as a partitioned parquet dataset, the online
rows from the executors straight into the team backend's online store (Redis); a large version's IVF index
filled shard by shard on the executors (embstore_plugins.spark.index).

The rows are the ones the local engine writes (embstore.backends.files.offline_frame: the
entity, the valid-from time as event and created time, the row, the embedding, the extras),
cut into ``bucket`` partitions by row; the online writer on each executor is embstore's
bulk writer (embstore.backends.online_rows), which writes exactly what Feast writes. A
SQLite online store cannot take writers on other hosts and is refused before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embstore.backends import files
from embstore.embeddings import Embeddings
from embstore.engine import OfflineData, VersionWriters
from embstore.errors import ConfigError, PublishError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from embstore.retriever import Retriever
    from embstore_plugins.spark import SparkEngine

ROWS_PER_BUCKET = 1_000_000


class SparkWriters(VersionWriters):
    def __init__(self, engine: "SparkEngine", repo: Path):
        self.engine, self.repo = engine, repo
        self._frames: dict[int, "DataFrame"] = {}

    def check(self, online_store: str) -> None:
        if online_store.rsplit(".", 1)[-1].lower().startswith("sqlite"):
            raise ConfigError("the spark engine writes online rows from its executors, and a SQLite online store "
                              "cannot take writers on other hosts: use the team backend (embstore init --postgres URL "
                              "--redis URL), or run with --engine local")

    def rows(self, emb: Embeddings, entity: str, valid_from: Any) -> "DataFrame":
        """The version's rows as a Spark DataFrame (created once per version from the driver's arrays)."""
        key = id(emb)
        if key not in self._frames:
            stamp = pd.Timestamp(valid_from)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            n = len(emb)
            frame = pd.DataFrame({entity: emb.ids, "event_timestamp": stamp, "created_timestamp": stamp,
                                  "row": np.arange(n, dtype=np.int64), "embedding": list(emb.vectors)})
            for name, arr in emb.extras.items():
                frame[name] = list(arr) if arr.ndim > 1 else arr
            frame["bucket"] = (frame["row"] // ROWS_PER_BUCKET).astype(np.int32)
            session = self.engine.session
            session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
            buckets = max(1, -(-n // ROWS_PER_BUCKET))
            self._frames.clear()
            self._frames[key] = session.createDataFrame(frame).repartition(max(buckets, 2), "bucket").cache()
        return self._frames[key]

    def builds_index(self, retriever: "Retriever", count: int, dim: int) -> bool:
        """From shard_index_min_rows rows on, an index the retriever can build in shards (faiss's ivf)."""
        from embstore.retriever import ShardedBuild

        return (count >= self.engine.config.shard_index_min_rows and isinstance(retriever, ShardedBuild)
                and retriever.shardable(count, dim))

    def build_index(self, retriever: "Retriever", emb: Embeddings, entity: str, valid_from: Any, directory: Path,
                    staging: Path) -> list[Path]:
        from embstore_plugins.spark.index import build_sharded

        return build_sharded(self, retriever, emb, entity, valid_from, directory, staging)

    def write_offline(self, emb: Embeddings, entity: str, valid_from: Any, directory: Path) -> OfflineData:
        target = directory / files.OFFLINE_DATASET
        self.rows(emb, entity, valid_from).write.mode("error").partitionBy(*files.PARTITIONS).parquet(str(target))
        written = sorted(p for p in target.rglob("*.parquet") if p.is_file())
        for marker in target.rglob("*"):
            if marker.is_file() and marker.suffix != ".parquet":
                marker.unlink()  # _SUCCESS and .crc files: not part of the version
        if not written:
            raise PublishError(f"Spark wrote no offline files under {target}")
        return OfflineData(files=written, location=target)

    def write_online(self, feature_view: str, emb: Embeddings, entity: str, valid_from: Any, progress=None) -> None:
        repo = str(self.repo)
        dim = emb.dim
        extras = {name: arr.ndim for name, arr in emb.extras.items()}

        def write(batches):
            import pyarrow as pa

            from embstore.backends.feast_import import import_feast
            from embstore.backends.online_rows import online_writer

            import_feast()
            from feast import FeatureStore

            store = FeatureStore(repo_path=repo)
            fv = store.registry.get_feature_view(feature_view, store.project, allow_cache=False)
            writer = online_writer(store)
            written = 0
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                ids = batch.column(entity).to_numpy(zero_copy_only=False)
                vectors = batch.column("embedding").flatten().to_numpy().reshape(batch.num_rows, dim).astype(np.float32)
                part_extras = {}
                for name, ndim in extras.items():
                    col = batch.column(name)
                    part_extras[name] = (col.flatten().to_numpy().reshape(batch.num_rows, -1) if ndim > 1
                                         else col.to_numpy(zero_copy_only=False))
                part = Embeddings(ids=ids if ids.dtype.kind in "iu" else ids.astype(object), vectors=vectors,
                                  extras=part_extras)
                frame = files.offline_frame(part, entity, valid_from)
                frame["row"] = batch.column("row").to_numpy()
                writer.write(fv, frame)
                written += batch.num_rows
            yield pa.RecordBatch.from_pydict({"written": [written]})

        done = self.rows(emb, entity, valid_from).mapInArrow(write, "written long").collect()
        total = sum(r["written"] for r in done)
        if total != len(emb):
            raise PublishError(f"the executors wrote {total} online rows of {len(emb)}")
        if progress is not None:
            progress(total)
