"""Point in time across versions: which version an alias named when, and joins that follow it.

    store.join(training_rows, "items@prod", live=True)

A pinned join (``items@3``) gives every row version 3's vector (None before it was
built). A live join gives each row the version ``prod`` named at the row's
timestamp, by the alias's recorded history (promotes and rollbacks alike), then
joins that version through Feast's point-in-time join. A row never sees a version
the alias moved to after the row's time, and rows from before the alias first
pointed anywhere get None. The ``<column>_version`` column says which version
each row was served (None before the alias existed); a row whose id that version
lacks gets the version number and a None vector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from embstore.errors import ConfigError, InputError, NotFoundError
from embstore.refs import Ref

if TYPE_CHECKING:
    from embstore.store import EmbeddingStore


def alias_timeline(store: "EmbeddingStore", set_name: str, alias: str) -> tuple[np.ndarray, np.ndarray]:
    """The moves of ``alias`` as (times in UTC nanoseconds, version numbers), in the order they happened."""
    events = [e for e in store.alias_history(set_name) if e["alias"] == alias]
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


def join_live(store: "EmbeddingStore", entity_df: pd.DataFrame, ref, *, column: str | None = None,
              timestamp_column: str = "event_timestamp") -> pd.DataFrame:
    """``store.join(entity_df, "set@alias", live=True)``: see the module docstring."""
    parsed = Ref.parse(ref) if not isinstance(ref, Ref) else ref
    if parsed.alias is None:
        raise ConfigError(f"a live join follows an alias's history: give set@alias (e.g. {parsed.set}@prod), not {parsed}")
    current = store.resolve(parsed)
    entity = current.entity
    for needed in (entity, timestamp_column):
        if needed not in entity_df.columns:
            raise InputError(
                f"join needs columns {entity!r} and {timestamp_column!r}; entity_df has {list(entity_df.columns)}"
            )
    ts = pd.to_datetime(entity_df[timestamp_column], utc=True, errors="coerce")
    if ts.isna().any():
        raise InputError(f"entity_df column {timestamp_column!r} has missing or unparseable times")
    move_times, move_versions = alias_timeline(store, parsed.set, parsed.alias)
    served = live_versions(pd.DatetimeIndex(ts).as_unit("ns").asi8, move_times, move_versions)
    column = column or f"{parsed.set}_embedding"
    vectors: list = [None] * len(entity_df)
    for number in np.unique(served[served >= 0]).tolist():
        positions = np.flatnonzero(served == number)
        joined = store.join(entity_df.iloc[positions], f"{parsed.set}@{number}", column=column,
                            timestamp_column=timestamp_column)
        for pos, vec in zip(positions.tolist(), joined[column].tolist()):
            vectors[pos] = vec
    result = entity_df.copy()
    result[column] = vectors
    result[f"{column}_version"] = pd.array([None if v < 0 else int(v) for v in served.tolist()], dtype="Int64")
    return result
