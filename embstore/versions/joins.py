"""Training joins: embeddings onto rows that carry an id and a time, point in time correct.

    store.join(rows, "items@3")                    # pinned: rows at or after items@3's valid-from get its vector
    store.join(rows, "items", as_of=True)          # as-of: each row the newest version valid at its time
    store.join(rows, "items@prod", live=True)      # live: the version the alias named at each row's time
    store.join(rows, "items@3", on="movieId", timestamp_column="ts", wide=True)

A version's vectors use no data after its valid-from time (the end of its training
data), so a row dated at or after it may use them and an earlier row may not.

- pinned (``set@3``, or ``set@prod`` resolved now): every row from the version's
  valid-from on gets its vector, earlier rows None;
- as-of (``as_of=True`` on a set name): each row gets the published version of the set
  with the latest valid-from at or before the row's time (ties: the higher version
  number), named in ``<column>_version`` — point in time across retrains;
- live (``live=True`` on ``set@alias``): each row gets the version the alias named at
  the row's time by its recorded history (promotes and rollbacks alike), from that
  version's valid-from on, also named in ``<column>_version``.

Every input row comes back, in order, with its index; an id the version lacks gets
None. Times follow embstore's one rule (embstore.times): datetimes (naive = UTC), ISO
text, or integer unix seconds. The key column is the set's entity unless ``on`` names
another. The vectors come as one column of float32 arrays (``column``, default
``<set>_embedding``), or with ``wide=True`` as float32 columns ``<column>_0`` …
``<column>_{d-1}`` (NaN where there is no vector).

The join reads embstore's own copy of each version (vectors.npy and ids.parquet, the
same rows as the Feast offline file; ``embstore check`` verifies they agree), so its
cost follows the rows asked for, not the size of the version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from pathlib import Path

import numpy as np
import pandas as pd

from embstore.backends import files
from embstore.errors import ConfigError, InputError, NotFoundError
from embstore.refs import Ref, VersionInfo
from embstore.times import times_of

if TYPE_CHECKING:
    from embstore.backends.registry import Registry
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


def as_of_versions(row_times: np.ndarray, versions: list["VersionInfo"]) -> np.ndarray:
    """For each row time (UTC ns) the number of the version with the latest valid-from at or
    before it (ties: the higher number), or -1 when none is valid yet."""
    ordered = sorted(versions, key=lambda v: (ns(v.valid_from), v.number))
    starts = np.array([ns(v.valid_from) for v in ordered], dtype=np.int64)
    numbers = np.array([v.number for v in ordered], dtype=np.int64)
    return live_versions(row_times, starts, numbers)


def past_events(row_users: np.ndarray, row_times: np.ndarray, event_users: np.ndarray, event_times: np.ndarray,
                last: int) -> np.ndarray:
    """For each row, the positions (into the events) of its user's ``last`` events strictly before
    the row's time, oldest first, -1 where there are fewer: shape (rows, last)."""
    order = np.lexsort((event_times, pd.factorize(event_users)[0]))
    events = pd.DataFrame({"user": event_users[order], "t": event_times[order], "pos": order})
    events["rank"] = events.groupby("user", sort=False).cumcount()
    probe = pd.DataFrame({"user": row_users, "t": row_times, "row": np.arange(len(row_users))}).sort_values("t", kind="stable")
    found = pd.merge_asof(probe, events.sort_values("t", kind="stable")[["user", "t", "rank"]].assign(at=lambda f: f.index),
                          on="t", by="user", allow_exact_matches=False, direction="backward")
    found = found.sort_values("row")
    newest = found["at"].to_numpy(dtype=np.float64)  # index into the (user, time)-sorted events, NaN: none yet
    rank = found["rank"].to_numpy(dtype=np.float64)
    window = np.full((len(row_users), last), -1, dtype=np.int64)
    known = ~np.isnan(newest)
    for j in range(last):  # column j: the (last-1-j)-th event before the newest one
        back = last - 1 - j
        ok = known & (rank >= back)
        window[ok, j] = events["pos"].to_numpy()[(newest[ok] - back).astype(np.int64)]
    return window


def ns(when) -> int:
    return int(pd.Timestamp(when).as_unit("ns").value)


class Joiner:
    """Joins versions onto training rows from embstore's checksummed copy of each version."""

    def __init__(self, reader: "VersionReader", registry: "Registry"):
        self.reader, self.registry = reader, registry

    def join(self, rows: pd.DataFrame, ref, *, column: str | None = None, timestamp_column: str = "event_timestamp",
             on: str | None = None, as_of: bool = False, live: bool = False, wide: bool = False) -> pd.DataFrame:
        if as_of and live:
            raise ConfigError("a join is as-of (each row the newest valid version) or live (the version an alias "
                              "named at the row's time), not both")
        if as_of or live:
            parsed = ref if isinstance(ref, Ref) else Ref.parse(ref.ref if isinstance(ref, VersionInfo) else str(ref))
            if as_of:
                return self.join_as_of(rows, parsed, column, timestamp_column, on, wide)
            return self.join_live(rows, parsed, column, timestamp_column, on, wide)
        version = self.reader.resolve(ref)
        times, keys = self.keys_and_times(rows, on or version.entity, timestamp_column)
        served = np.where(times >= ns(version.valid_from), version.number, -1)
        return self.gathered(rows, keys, served, {version.number: version}, column or f"{version.set}_embedding",
                             wide, version_column=False)

    def join_as_of(self, rows: pd.DataFrame, ref: Ref, column: str | None, timestamp_column: str,
                   on: str | None, wide: bool) -> pd.DataFrame:
        if ref.version is not None or ref.alias is not None:
            raise ConfigError(f"an as-of join picks the version per row: give a set name ({ref.set}), not {ref}")
        versions = [v for v in self.registry.versions(ref.set) if v.status == "published"]
        if not versions:
            raise NotFoundError(f"set {ref.set!r} has no published version yet")
        times, keys = self.keys_and_times(rows, on or versions[-1].entity, timestamp_column)
        served = as_of_versions(times, versions)
        return self.gathered(rows, keys, served, {v.number: v for v in versions}, column or f"{ref.set}_embedding",
                             wide, version_column=True)

    def join_live(self, rows: pd.DataFrame, ref: Ref, column: str | None, timestamp_column: str,
                  on: str | None, wide: bool) -> pd.DataFrame:
        if ref.alias is None:
            raise ConfigError(f"a live join follows an alias's history: give set@alias (e.g. {ref.set}@prod), not {ref}")
        current = self.reader.resolve(ref)
        times, keys = self.keys_and_times(rows, on or current.entity, timestamp_column)
        move_times, move_versions = alias_timeline(self.registry, ref.set, ref.alias)
        served = live_versions(times, move_times, move_versions)
        versions = {n: self.reader.resolve(f"{ref.set}@{n}") for n in np.unique(served[served >= 0]).tolist()}
        for number, v in versions.items():  # from each version's valid-from on, as a pinned join
            served[(served == number) & (times < ns(v.valid_from))] = -1
        return self.gathered(rows, keys, served, versions, column or f"{ref.set}_embedding", wide, version_column=True)

    def history(self, rows: pd.DataFrame, events: pd.DataFrame, ref, *, last: int = 10, user: str = "user_id",
                item: str = "item_id", timestamp_column: str = "event_timestamp", events_timestamp: str = "timestamp",
                column: str | None = None, wide: bool = False) -> pd.DataFrame:
        """``rows`` with, for each row, the mean vector of its user's ``last`` events strictly before
        the row's time: a user feature a ranking model can train on without seeing its future.

        ``events`` holds the users' histories (``user``, ``item`` and ``events_timestamp``
        columns); ``rows`` the training rows (``user`` and ``timestamp_column``). The items'
        vectors come from the version valid at the row's time: ``ref`` a set name picks it per row
        as an as-of join does (named in ``<column>_version``), a pinned ref uses that version from
        its valid-from on. Items the version lacks are left out of the mean; a row with none of
        its user's items gets None. Default column: ``<set>_history``."""
        if last < 1:
            raise ConfigError(f"last={last!r}: average at least one past event")
        parsed = ref if isinstance(ref, Ref) else Ref.parse(ref.ref if isinstance(ref, VersionInfo) else str(ref))
        as_of = parsed.version is None and parsed.alias is None
        for frame, needed, what in ((rows, (user, timestamp_column), "rows"), (events, (user, item, events_timestamp), "events")):
            missing = [c for c in needed if c not in frame.columns]
            if missing:
                raise InputError(f"history needs {what} columns {list(needed)}; {what} lack {missing} "
                                 f"(have {list(frame.columns)})")
        row_times = times_of(rows[timestamp_column].reset_index(drop=True), f"rows column {timestamp_column!r}").asi8
        if as_of:
            versions = {v.number: v for v in self.registry.versions(parsed.set) if v.status == "published"}
            if not versions:
                raise NotFoundError(f"set {parsed.set!r} has no published version yet")
            served = as_of_versions(row_times, list(versions.values()))
        else:
            version = self.reader.resolve(parsed)
            versions = {version.number: version}
            served = np.where(row_times >= ns(version.valid_from), version.number, -1)
        window = past_events(rows[user].to_numpy(), row_times, events[user].to_numpy(),
                             times_of(events[events_timestamp].reset_index(drop=True),
                                      f"events column {events_timestamp!r}").asi8, last)
        event_items = events[item].reset_index(drop=True)
        column = column or f"{parsed.set}_history"
        dim = {v.dim for v in versions.values()}
        if wide and len(dim) > 1:
            raise ConfigError(f"the versions joined have dimensions {sorted(dim)}; wide columns need one dimension")
        out = np.full((len(rows), max(dim)), np.nan, dtype=np.float32) if wide else np.full(len(rows), None, dtype=object)
        for number in np.unique(served[served >= 0]).tolist():
            at = np.flatnonzero(served == number)
            picked = window[at]  # (rows, last) positions into events, -1 where the user has fewer events
            item_rows = np.full(picked.shape, -1, dtype=np.int64)
            have = picked >= 0
            item_rows[have] = self.rows_of(versions[number], event_items.iloc[picked[have]])
            vectors = self.reader.load(versions[number]).vectors
            counts = (item_rows >= 0).sum(axis=1)
            sums = np.zeros((len(at), versions[number].dim), dtype=np.float64)
            for j in range(picked.shape[1]):
                ok = item_rows[:, j] >= 0
                sums[ok] += vectors[item_rows[ok, j]]
            means = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
            filled = counts > 0
            if wide:
                out[at[filled]] = means[filled]
            else:
                out[at[filled]] = list(means[filled])
        result = rows.copy()
        if wide:
            extra = pd.DataFrame(out, index=rows.index, columns=[f"{column}_{j}" for j in range(out.shape[1])])
            result = pd.concat([result.drop(columns=[c for c in extra.columns if c in result.columns]), extra], axis=1)
        else:
            result[column] = out
        if as_of:
            result[f"{column}_version"] = pd.array([None if v < 0 else int(v) for v in served.tolist()], dtype="Int64")
        return result

    @staticmethod
    def keys_and_times(rows: pd.DataFrame, key: str, timestamp_column: str) -> tuple[np.ndarray, pd.Series]:
        """The rows' times (UTC ns) and keys; one InputError naming what is missing or unreadable."""
        for needed in (key, timestamp_column):
            if needed not in rows.columns:
                raise InputError(f"join needs columns {key!r} (the ids; name another with on=) and "
                                 f"{timestamp_column!r} (the rows' times; timestamp_column=); "
                                 f"the rows have {list(rows.columns)}")
        keys = rows[key]
        if keys.isna().any():
            raise InputError(f"rows column {key!r} has empty ids at rows {list(keys[keys.isna()].index[:5])}")
        times = times_of(rows[timestamp_column].reset_index(drop=True), f"rows column {timestamp_column!r}")
        return times.asi8, keys

    def gathered(self, rows: pd.DataFrame, keys: pd.Series, served: np.ndarray, versions: dict[int, "VersionInfo"],
                 column: str, wide: bool, version_column: bool) -> pd.DataFrame:
        """``rows`` with the vector of version ``served[i]`` for row i (-1: none), by id."""
        n = len(rows)
        dims = {v.dim for v in versions.values() if (served == v.number).any()}
        if wide and len(dims) > 1:
            raise ConfigError(f"the versions joined have dimensions {sorted(dims)}; wide columns need one "
                              "dimension (join them as a list column, or pin one version)")
        dim = dims.pop() if dims else next(iter(versions.values())).dim
        matrix = np.full((n, dim), np.nan, dtype=np.float32) if wide else None
        vectors = np.full(n, None, dtype=object) if not wide else None
        for number in np.unique(served[served >= 0]).tolist():
            version = versions[number]
            at = np.flatnonzero(served == number)
            rows_in = self.rows_of(version, keys.iloc[at])
            hit = rows_in >= 0
            at, rows_in = at[hit], rows_in[hit]
            block = np.asarray(self.reader.load(version).vectors[rows_in], dtype=np.float32)
            if wide:
                matrix[at] = block
            else:
                vectors[at] = list(block)
        result = rows.copy()
        if wide:
            extra = pd.DataFrame(matrix, index=rows.index, columns=[f"{column}_{j}" for j in range(dim)])
            result = pd.concat([result.drop(columns=[c for c in extra.columns if c in result.columns]), extra], axis=1)
        else:
            result[column] = vectors
        if version_column:  # the version each row was served, also when it lacks the row's id
            result[f"{column}_version"] = pd.array([None if v < 0 else int(v) for v in served.tolist()], dtype="Int64")
        return result

    def rows_of(self, version: "VersionInfo", keys: pd.Series) -> np.ndarray:
        """Row in the version of each key (-1 when absent), keys read as the version's id type.
        The version's Feast offline file is verified too (once per process per file state): a
        join answers for what Feast holds."""
        loaded = self.reader.load(version)
        files.verify_once(Path(version.storage_path), version.checksums, files.offline_names(version.checksums))
        if version.id_type == "int64":
            values = pd.to_numeric(keys, errors="coerce")
            if values.isna().any() or not np.all(np.mod(values.to_numpy(dtype=np.float64), 1) == 0):
                bad = keys[values.isna() | (np.mod(values.fillna(0).to_numpy(dtype=np.float64), 1) != 0)]
                raise InputError(f"{version.ref} has integer ids; rows column {keys.name!r} holds "
                                 f"{bad.iloc[0]!r} at row {bad.index[0]!r}")
            return loaded.index.get_indexer(values.to_numpy().astype(np.int64)).astype(np.int64)
        return loaded.index.get_indexer(keys.astype(str).to_numpy(dtype=object)).astype(np.int64)
