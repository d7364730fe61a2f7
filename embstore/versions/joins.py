"""Training joins: embeddings onto rows with a key and a time, point in time correct.

    store.join(training_rows, "items@3")                # pinned: one version for every row
    store.join(training_rows, "items@prod", live=True)  # live: the version the alias named at each row's time

A pinned join gives every row the version's vector as of the row's time through
Feast's point-in-time join (None before the version was built, or when it lacks
the id). A live join gives each row the version ``prod`` named at the row's
timestamp, by the alias's recorded history (promotes and rollbacks alike), then
joins that version: a row never sees a version the alias moved to after the
row's time, and rows from before the alias first pointed anywhere get None. The
``<column>_version`` column says which version each row was served. Every input
row comes back, in order, with its index.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from embstore.backends import files
from embstore.errors import ConfigError, InputError, NotFoundError
from embstore.refs import Ref

if TYPE_CHECKING:
    from embstore.backends.feature_repo import FeatureRepo
    from embstore.backends.registry import Registry
    from embstore.refs import VersionInfo
    from embstore.versions.reader import VersionReader


def alias_timeline(registry: "Registry", set_name: str, alias: str) -> tuple[np.ndarray, np.ndarray]:
    """The moves of ``alias`` as (times in UTC nanoseconds, version numbers), in the order they happened."""
    events = [e for e in registry.alias_history(set_name) if e["alias"] == alias]
    if not events:
        raise NotFoundError(f"set {set_name!r} has no alias {alias!r}, so it has no history to follow")
    times = pd.to_datetime([e["moved_at"] for e in events], utc=True).as_unit("ns").asi8
    versions = np.array([e["version"] for e in events], dtype=np.int64)
    order = np.argsort(times, kind="stable")  # history order already; stable if clocks of hosts disagree
    return times[order], versions[order]


def live_versions(row_times: Sequence[int] | np.ndarray, move_times: np.ndarray, move_versions: np.ndarray) -> np.ndarray:
    """For each row time (UTC ns) the version named by the last move at or before it, or -1."""
    idx = np.searchsorted(np.asarray(move_times, dtype=np.int64), np.asarray(row_times, dtype=np.int64), side="right") - 1
    return np.where(idx >= 0, np.asarray(move_versions, dtype=np.int64)[np.maximum(idx, 0)], -1)


def row_times(entity_df: pd.DataFrame, entity: str, timestamp_column: str) -> pd.Series:
    """The rows' times in UTC; one InputError naming what is missing or unreadable."""
    for needed in (entity, timestamp_column):
        if needed not in entity_df.columns:
            raise InputError(
                f"join needs columns {entity!r} and {timestamp_column!r}; entity_df has {list(entity_df.columns)}"
            )
    ts = pd.to_datetime(entity_df[timestamp_column], utc=True, errors="coerce")
    if ts.isna().any():
        raise InputError(f"entity_df column {timestamp_column!r} has missing or unparseable times")
    return ts


class Joiner:
    """Joins versions onto training rows through the Feast feature repo."""

    def __init__(self, reader: "VersionReader", feast: "FeatureRepo", registry: "Registry"):
        self.reader, self.feast, self.registry = reader, feast, registry

    def join(self, entity_df: pd.DataFrame, ref, *, column: str | None = None,
             timestamp_column: str = "event_timestamp", live: bool = False) -> pd.DataFrame:
        if live:
            return self.join_live(entity_df, ref, column=column, timestamp_column=timestamp_column)
        return self.join_pinned(entity_df, self.reader.resolve(ref), column=column, timestamp_column=timestamp_column)

    def join_pinned(self, entity_df: pd.DataFrame, version: "VersionInfo", *, column: str | None,
                    timestamp_column: str) -> pd.DataFrame:
        entity = version.entity
        ts = row_times(entity_df, entity, timestamp_column)
        column = column or f"{version.set}_embedding"
        loaded = self.reader.load(version)
        files.verify_once(Path(version.storage_path), version.checksums, [files.OFFLINE])
        keys = entity_df[entity]
        if keys.isna().any():
            raise InputError(f"entity_df column {entity!r} has empty ids at rows {list(keys[keys.isna()].index[:5])}")
        if version.id_type == "int64":
            try:
                keys = keys.astype("int64")
            except (TypeError, ValueError):
                raise InputError(f"{version.ref} has integer ids; entity_df column {entity!r} is not integer") from None
        else:
            keys = keys.astype(str)
        frame = pd.DataFrame({entity: keys.to_numpy(), "event_timestamp": ts.to_numpy()})
        pairs = frame.drop_duplicates().reset_index(drop=True)
        pairs["__pair"] = np.arange(len(pairs), dtype=np.int64)
        pair_rows = self.feast.historical_rows(version.feature_view, entity, pairs)
        pairs["__row"] = pairs["__pair"].map(pair_rows)
        merged = frame.merge(pairs, on=[entity, "event_timestamp"], how="left")
        rows = merged["__row"].to_numpy()
        result = entity_df.copy()
        vec = loaded.vectors
        result[column] = [None if pd.isna(r) else np.array(vec[int(r)], dtype=np.float32) for r in rows]
        return result

    def join_live(self, entity_df: pd.DataFrame, ref, *, column: str | None, timestamp_column: str) -> pd.DataFrame:
        parsed = Ref.parse(ref) if not isinstance(ref, Ref) else ref
        if parsed.alias is None:
            raise ConfigError(f"a live join follows an alias's history: give set@alias (e.g. {parsed.set}@prod), not {parsed}")
        current = self.reader.resolve(parsed)
        ts = row_times(entity_df, current.entity, timestamp_column)
        move_times, move_versions = alias_timeline(self.registry, parsed.set, parsed.alias)
        served = live_versions(pd.DatetimeIndex(ts).as_unit("ns").asi8, move_times, move_versions)
        column = column or f"{parsed.set}_embedding"
        vectors: list = [None] * len(entity_df)
        for number in np.unique(served[served >= 0]).tolist():
            positions = np.flatnonzero(served == number)
            joined = self.join_pinned(entity_df.iloc[positions], self.reader.resolve(f"{parsed.set}@{number}"),
                                      column=column, timestamp_column=timestamp_column)
            for pos, vec in zip(positions.tolist(), joined[column].tolist()):
                vectors[pos] = vec
        result = entity_df.copy()
        result[column] = vectors
        result[f"{column}_version"] = pd.array([None if v < 0 else int(v) for v in served.tolist()], dtype="Int64")
        return result
