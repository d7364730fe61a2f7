"""A run's inputs read by Spark: parquet datasets (directories, globs, hive-style partitions) or CSV
files, with the local engine's semantics (embstore.inputs) for ids, times and sequences.

- Ids become 64-bit integers when every value is an integer (or canonical integer text), else
  text — the rule of ``embstore.inputs``. Times are read by embstore's one rule: timestamps
  and dates (in UTC), unix seconds as numbers or numeric text, ISO-8601 text; internally they
  are microseconds since the epoch.
- Per-user sequences are in time order, ties kept in file order: the dataset's file path,
  then the row within the file (parquet's ``_metadata.row_index``); a CSV file's own order.
- The item graph counts every move A→B within a sequence (weights accumulate), exactly as
  ``Graph.from_sequences`` does.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd

from embstore.errors import ConfigError, InputError
from embstore.inputs import InputKinds, Inputs, InputSpec
from embstore.inputs.specs import COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

CANONICAL_INT = r"^-?(0|[1-9][0-9]{0,18})$"


def dataset_format(spec: InputSpec) -> str:
    """'parquet' for a directory, a glob or a parquet file; 'csv' for a CSV file."""
    name = str(spec.path).lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".npz"):
        raise InputError(f"{spec.path}: the spark engine reads parquet datasets and CSV files, not a sparse .npz; "
                         "write the features as parquet (id and one column per feature), or use --engine local")
    return "parquet"


def dataset_files(spec: InputSpec) -> list[Path]:
    """The files a dataset path names (a file, a directory tree of parquet files, or a glob)."""
    path = str(spec.path)
    if any(ch in path for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(path, recursive=True))
    elif Path(path).is_dir():
        found = sorted(p for p in Path(path).rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
    else:
        found = [Path(path)] if Path(path).is_file() else []
    if not found:
        raise InputError(f"{spec.kind} input {path}: no files (a parquet file, a directory of them, or a glob)")
    return found


class SparkInputs(InputKinds):
    """The inputs of one run on Spark; each kind is read once, with its canonical columns."""

    def __init__(self, session: "SparkSession", specs: Iterable[InputSpec], until: pd.Timestamp | None = None):
        super().__init__(specs)
        for spec in self._specs.values():
            dataset_format(spec)
            dataset_files(spec)
        self.session = session
        self.until = until
        self._frames: dict[str, "DataFrame"] = {}
        self._has_rating = False

    # -- the rest of the RunInputs protocol ----------------------------------------------

    def before(self, until: pd.Timestamp) -> "SparkInputs":
        return SparkInputs(self.session, self._specs.values(), until=until)

    def newest_time(self) -> pd.Timestamp | None:
        if "interactions" not in self._specs:
            return None
        from pyspark.sql import functions as F

        micros = self.interactions().agg(F.max("t")).first()[0]
        return None if micros is None else pd.Timestamp(int(micros), unit="us", tz="UTC")

    def fingerprint(self) -> str:
        """sha256 over kinds, column mappings, ``until`` and every file's path, size and
        modification time (not its bytes: a lake-scale dataset is not read twice for this)."""
        digest = hashlib.sha256()
        for kind in sorted(self._specs):
            spec = self._specs[kind]
            digest.update(f"{kind}\0{json.dumps(dict(spec.columns), sort_keys=True)}\0".encode())
            for f in dataset_files(spec):
                st = f.stat()
                digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        if self.until is not None:
            digest.update(f"until\0{self.until.isoformat()}".encode())
        return digest.hexdigest()

    # -- reading --------------------------------------------------------------------------

    def raw(self, kind: str) -> "DataFrame":
        """The dataset as read, with its file path and row index (for ties in file order)."""
        from pyspark.sql import functions as F

        spec = self.spec(kind)
        reader = self.session.read
        if dataset_format(spec) == "csv":
            frame = reader.option("header", True).option("inferSchema", False).csv(str(spec.path))
            return frame.withColumn("_file", F.lit(str(spec.path))).withColumn("_row", F.monotonically_increasing_id())
        frame = reader.parquet(str(spec.path))
        return frame.select("*", F.col("_metadata.file_path").alias("_file"), F.col("_metadata.row_index").alias("_row"))

    def columns_of(self, kind: str, frame: "DataFrame") -> dict[str, str]:
        """canonical -> actual column, as the local engine resolves them."""
        spec = self.spec(kind)
        required, optional = COLUMNS[kind]
        found = {}
        for canonical in required + optional:
            actual = spec.columns.get(canonical, canonical)
            if actual in frame.columns:
                found[canonical] = actual
            elif canonical in spec.columns or canonical in required:
                raise InputError(f"{spec.path}: no column {actual!r}; columns found: "
                                 f"{', '.join(c for c in frame.columns if not c.startswith('_'))}; "
                                 f"map it with --column {kind}.{canonical}=NAME")
        return found

    def interactions(self) -> "DataFrame":
        """user, item (ids by the local rule), t (microseconds), rating, weight, _file, _row."""
        if "interactions" in self._frames:
            return self._frames["interactions"]
        from pyspark.sql import functions as F

        spec = self.spec("interactions")
        frame = self.raw("interactions")
        found = self.columns_of("interactions", frame)
        user, item = typed_ids(frame, [found["user_id"]], spec)[0], typed_ids(frame, [found["item_id"]], spec)[0]
        out = frame.select(user.alias("user"), item.alias("item"), micros(frame, found["timestamp"], spec).alias("t"),
                           (F.col(found["rating"]).cast("double") if "rating" in found else F.lit(None).cast("double")).alias("rating"),
                           (F.col(found["weight"]).cast("double") if "weight" in found else F.lit(1.0)).alias("weight"),
                           "_file", "_row")
        if self.until is not None:
            cut = int(self.until.value // 1000)
            out = out.where(F.col("t") < cut)
            if out.limit(1).count() == 0:
                raise InputError(f"{spec.path}: no interaction is dated before {self.until.isoformat()} (--until)")
        self._frames["interactions"] = out.cache()
        self._has_rating = "rating" in found
        return self._frames["interactions"]

    def edges(self) -> "DataFrame":
        """src, dst (one id space), weight (default 1, finite and > 0)."""
        from pyspark.sql import functions as F

        spec = self.spec("edges")
        frame = self.raw("edges")
        found = self.columns_of("edges", frame)
        src, dst = typed_ids(frame, [found["src"], found["dst"]], spec)
        weight = F.col(found["weight"]).cast("double") if "weight" in found else F.lit(1.0)
        out = frame.select(src.alias("src"), dst.alias("dst"), weight.alias("weight"))
        bad = out.where(F.col("weight").isNull() | F.isnan("weight") | (F.col("weight") <= 0)
                        | (F.col("weight") == float("inf"))).limit(1).collect()
        if bad:
            raise InputError(f"{spec.path}: edge weight {bad[0]['weight']!r}; weights must be finite and > 0")
        return out

    # -- sequences and the item graph ----------------------------------------------------

    def sequence_events(self, min_rating: float | None = None, session_gap: float | None = None) -> "DataFrame":
        """Every kept interaction with its sequence (user, session) and position, in time order,
        ties in file order, as ``Inputs.sequences`` orders them."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        frame = self.interactions()
        spec = self.spec("interactions")
        if min_rating is not None:
            if not self._has_rating:
                raise InputError(f"{spec.path}: min_rating={min_rating} needs a rating column, but there is none; "
                                 "map it with --column interactions.rating=NAME or drop min_rating")
            frame = frame.where(F.col("rating") >= min_rating)
        if session_gap is not None and not session_gap > 0:
            raise ConfigError(f"session_gap={session_gap!r}: must be a positive number of seconds")
        order = Window.partitionBy("user").orderBy("t", "_file", "_row")
        frame = frame.withColumn("pos", F.row_number().over(order))
        if session_gap is not None:
            gap = (F.col("t") - F.lag("t").over(order)) > int(session_gap * 1e6)
            frame = frame.withColumn("session", F.sum(F.when(gap, 1).otherwise(0)).over(order))
        else:
            frame = frame.withColumn("session", F.lit(0))
        return frame.select("user", "session", "pos", "item")

    def sequences(self, min_rating: float | None = None, session_gap: float | None = None) -> "DataFrame":
        """One row per sequence: user, session, items (an array, in order)."""
        from pyspark.sql import functions as F

        events = self.sequence_events(min_rating, session_gap)
        return (events.groupBy("user", "session")
                .agg(F.sort_array(F.collect_list(F.struct("pos", "item"))).alias("steps"))
                .select("user", "session", F.col("steps.item").alias("items")))

    def frequent_events(self, min_rating: float | None, session_gap: float | None,
                        min_interactions: int = 1) -> "DataFrame":
        """``sequence_events`` without the items seen fewer than ``min_interactions`` times (the
        neighbours of a dropped item become adjacent), as embstore.graph.frequent_items."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        events = self.sequence_events(min_rating, session_gap)
        if min_interactions <= 1:
            return events
        counted = events.withColumn("seen", F.count(F.lit(1)).over(Window.partitionBy("item")))
        return counted.where(F.col("seen") >= min_interactions).drop("seen")

    def moves(self, min_rating: float | None = None, session_gap: float | None = None,
              self_loops: bool = True, min_interactions: int = 1) -> "DataFrame":
        """src, dst, weight: how often a sequence moves from src to dst (Graph.from_sequences's arcs)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        events = self.frequent_events(min_rating, session_gap, min_interactions)
        nxt = F.lead("item").over(Window.partitionBy("user", "session").orderBy("pos"))
        pairs = events.select(F.col("item").alias("src"), nxt.alias("dst")).where(F.col("dst").isNotNull())
        if not self_loops:
            pairs = pairs.where(F.col("src") != F.col("dst"))
        return pairs.groupBy("src", "dst").agg(F.count(F.lit(1)).cast("double").alias("weight"))

    def items_seen(self, min_rating: float | None = None, session_gap: float | None = None) -> int:
        """How many distinct items the sequences hold before any rare-item threshold (the
        ``items_seen`` of a version's rare-items metrics)."""
        return int(self.sequence_events(min_rating, session_gap).select("item").distinct().count())

    def vocabulary(self, min_rating: float | None = None, session_gap: float | None = None,
                   min_interactions: int = 1) -> np.ndarray:
        events = self.frequent_events(min_rating, session_gap, min_interactions)
        ids = [r[0] for r in events.select("item").distinct().collect()]
        return np.sort(np.asarray(ids, dtype=np.int64 if ids and isinstance(ids[0], int) else object))

    # -- to the driver --------------------------------------------------------------------

    def to_local(self, kinds: Iterable[str], directory: Path) -> Inputs:
        """The inputs as local files in ``directory`` (read and typed by Spark, as the local engine
        would have read them), for a producer that runs on the driver."""
        specs = []
        for kind in kinds:
            target = directory / f"{kind}.parquet"
            self.local_frame(kind).toPandas().to_parquet(target, index=False)
            specs.append(InputSpec(kind, target))
        return Inputs(specs)

    def local_frame(self, kind: str) -> "DataFrame":
        from pyspark.sql import functions as F

        if kind == "interactions":
            frame = self.interactions().orderBy("_file", "_row")
            columns = [F.col("user").alias("user_id"), F.col("item").alias("item_id"),
                       F.timestamp_micros("t").alias("timestamp"), "weight"]
            if self._has_rating:
                columns.append("rating")
            return frame.select(*columns)
        if kind == "edges":
            return self.edges()
        frame = self.raw(kind)
        spec = self.spec(kind)
        mapped = {actual: canonical for canonical, actual in spec.columns.items()}
        return frame.select(*[F.col(c).alias(mapped.get(c, c)) for c in frame.columns if not c.startswith("_")])


def typed_ids(frame: "DataFrame", columns: Sequence[str], spec: InputSpec) -> list["Column"]:
    """The columns as ids sharing one id space: all 64-bit integers, or all text (the local rule)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import FloatType, DoubleType, IntegralType, StringType

    kinds = {c: frame.schema[c].dataType for c in columns}
    for c, t in kinds.items():
        if not isinstance(t, (IntegralType, StringType, FloatType, DoubleType)):
            raise InputError(f"{spec.path}: column {c!r} has type {t.simpleString()}; ids must be integers or strings")
        empty = F.col(c).isNull() | ((F.trim(F.col(c)) == "") if isinstance(t, StringType) else F.lit(False))
        row = frame.where(empty).select("_row").limit(1).collect()
        if row:
            raise InputError(f"{spec.path}: column {c!r} has an empty id (row {row[0][0]}); every row needs an id")
    integral = all(isinstance(t, IntegralType) for t in kinds.values())
    if not integral:
        checks = []
        for c, t in kinds.items():
            if isinstance(t, (FloatType, DoubleType)):
                checks.append((F.col(c) % 1 != 0) | F.isnan(c))
            elif isinstance(t, StringType):
                checks.append(~F.trim(F.col(c)).rlike(CANONICAL_INT) | F.trim(F.col(c)).try_cast("bigint").isNull())
        if checks:
            any_text = checks[0]
            for extra in checks[1:]:
                any_text = any_text | extra
            integral = frame.where(any_text).limit(1).count() == 0
    if integral:
        return [F.trim(F.col(c).cast("string")).cast("bigint") if isinstance(kinds[c], StringType)
                else F.col(c).cast("bigint") for c in columns]
    return [F.trim(F.col(c).cast("string")) if not isinstance(kinds[c], (FloatType, DoubleType))
            else F.col(c).cast("bigint").cast("string") for c in columns]


def micros(frame: "DataFrame", column: str, spec: InputSpec) -> "Column":
    """Microseconds since the epoch (UTC) by embstore's one rule for times."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, NumericType, StringType, TimestampNTZType, TimestampType

    t = frame.schema[column].dataType
    c = F.col(column)
    if isinstance(t, (TimestampType, TimestampNTZType)):
        out = F.unix_micros(c.cast("timestamp"))
    elif isinstance(t, DateType):
        out = F.unix_micros(c.cast("timestamp"))
    elif isinstance(t, NumericType):
        out = (c.cast("double") * 1_000_000).cast("bigint")
    elif isinstance(t, StringType):
        text = F.trim(c)
        seconds = text.try_cast("double")
        out = F.when(seconds.isNotNull(), (seconds * 1_000_000).cast("bigint")).otherwise(
            F.unix_micros(F.to_timestamp(text)))
    else:
        raise InputError(f"{spec.path}: column {column!r} has type {t.simpleString()}; expected times")
    bad = frame.where(out.isNull()).select(c.cast("string").alias("v"), "_row").limit(1).collect()
    if bad:
        raise InputError(f"{spec.path}: column {column!r} row {bad[0]['_row']}: {bad[0]['v']!r} is not a number "
                         "of unix seconds or an ISO-8601 time")
    return out
