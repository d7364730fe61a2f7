"""A version's index built shard by shard on the executors (a retriever that is a ShardedBuild: faiss's ivf).

    builds = shard_index_min_rows <= count and retriever.shardable(count, dim)
    paths = build_sharded(writers, retriever, emb, entity, valid_from, directory, staging)

The lists are trained on the driver on ``retriever.training_rows(count)`` (for faiss auto's
sample: 64 vectors a list), and the trained, empty index (nlist × dim floats) is broadcast.
The version's rows (``SparkWriters.rows``, the cached DataFrame the offline and online rows
were written from) are exchanged into ranges of about ``shard_index_rows`` rows, one task
each; a task streams its Arrow batches into a copy of the trained index, the row numbers as
ids, and writes it as a shard file into ``staging`` (a directory of the version's, on the
volume the driver and the executors share). The driver merges the shards on disk into the
index directory and measures recall against exact search on the vectors it holds.

What the executors hold: one shard's vectors and lists at a time (about ``shard_index_rows``
× dim × 4 bytes, and the Arrow batches they came in). What the driver holds: the collected
vectors (the producer returned them there) and, while merging, the shards' lists
memory-mapped from disk. The range exchange moves the version's vectors between executors
once (count × dim × 4 bytes), as the offline write did.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embstore.embeddings import Embeddings
from embstore.errors import PublishError
from embstore.faults import fault_after, fault_spec

if TYPE_CHECKING:
    from embstore.retriever import ShardedBuild
    from embstore_plugins.spark.writers import SparkWriters

log = logging.getLogger(__name__)

def build_sharded(writers: "SparkWriters", retriever: "ShardedBuild", emb: Embeddings, entity: str,
                  valid_from: Any, directory: Path, staging: Path) -> list[Path]:
    """Train on the driver, fill the shards on the executors, merge on the driver; the index files."""
    config = writers.engine.config
    count, dim = len(emb), emb.dim
    started = time.perf_counter()
    sample_rows = retriever.training_rows(count)
    trained = retriever.train_for_shards(np.ascontiguousarray(emb.vectors[sample_rows]), count)
    trained_s = time.perf_counter() - started
    session = writers.engine.session
    shared = session.sparkContext.broadcast(trained)
    where, fault = str(staging), fault_spec()

    def fill(batches):
        import pyarrow as pa
        from pyspark import TaskContext

        task = TaskContext.get()
        pieces = ((b.column("row").to_numpy(), b.column("embedding").flatten().to_numpy().reshape(b.num_rows, dim))
                  for b in batches if b.num_rows)
        first = next(pieces, None)
        paths, rows = [], []
        if first is not None:  # a range Spark's sampled bounds left empty writes no shard
            path = Path(where) / f"shard-{task.partitionId():05d}.index"
            rows.append(retriever.fill_shard(shared.value, itertools.chain([first], pieces), path,
                                             threads=max(1, int(task.cpus()))))
            paths.append(str(path))
            fault_after("index_shard", fault)  # tests: a fault inside the shard step, on an executor
        yield pa.RecordBatch.from_pydict({"path": paths, "rows": rows},
                                         schema=pa.schema([("path", pa.string()), ("rows", pa.int64())]))

    # one shard a range of rows: the rows' own partitions hold whole buckets of a million rows, and
    # hashing buckets to partitions puts several in one (both of a 2M version's), which would fill them
    # in one task; a range exchange spreads them (Spark samples its bounds: shards come out near the size)
    shards = max(1, -(-count // config.shard_index_rows))
    frame = writers.rows(emb, entity, valid_from).select("row", "embedding").repartitionByRange(shards, "row")
    try:
        done = frame.mapInArrow(fill, "path string, rows long").collect()
    except Exception as exc:  # noqa: BLE001 - Spark's error names the task, not the cause: say the cause
        raise PublishError(f"the executors could not build the index shards: {executor_cause(exc)}") from exc
    finally:
        shared.unpersist()
    filled_s = time.perf_counter() - started - trained_s
    total = sum(r["rows"] for r in done)
    if total != count:
        raise PublishError(f"the executors added {total} of the version's {count} rows to the index shards")
    paths = sorted(Path(r["path"]) for r in done)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise PublishError(f"index shard {missing[0]} written by an executor is not visible on the driver: "
                           "HOME must be a volume the driver and the executors share")
    fault_after("index_shards")  # tests: a fault between the executors' shards and the driver's merge
    written = retriever.merge_shards(trained, paths, directory, emb.vectors)
    log.info("index of %d vectors built in %d shards: trained on %d rows in %.1fs, shards filled in %.1fs, "
             "merged and measured in %.1fs", count, len(paths), len(sample_rows), trained_s, filled_s,
             time.perf_counter() - started - trained_s - filled_s)
    return written


def executor_cause(exc: BaseException) -> str:
    """The Python error an executor raised, from Spark's wrapping of it (its traceback's last line),
    else the exception's first line."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    raised = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*", ln)
              and not ln.startswith(("PythonException", "org.apache", "py4j"))]
    if raised:
        return raised[-1]
    return next((ln for ln in lines if ln), type(exc).__name__)
