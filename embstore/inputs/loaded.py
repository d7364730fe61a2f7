"""The input files of one run as a producer sees them: ``Inputs``, each kind loaded once on request.

    inputs = Inputs([parse_input_arg("interactions=ratings.csv")])
    seqs = inputs.sequences(min_rating=3.5)
    edges = inputs.edges()            # src, dst, weight
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from embstore.errors import ConfigError, InputError
from embstore.inputs.columns import (
    cell_error,
    check_unique,
    column_label,
    first_true,
    float_column,
    id_columns,
    text_column,
    timestamp_column,
)
from embstore.inputs.readers import read_header, read_table, resolve_columns
from embstore.inputs.sparse import read_npz_features
from embstore.inputs.specs import InputSpec, check_exists, file_format
from embstore.sequences import Sequences


class InputKinds:
    """The kinds of input a run was given, one spec each, and the checks a producer's needs make of
    them before any file is read: shared by every engine's inputs (local files, Spark datasets)."""

    def __init__(self, specs: Iterable[InputSpec]):
        self._specs: dict[str, InputSpec] = {}
        for spec in specs:
            if spec.kind in self._specs:
                raise InputError(
                    f"input {spec.kind!r} given twice ({self._specs[spec.kind].display} and "
                    f"{spec.display}); pass one file per kind"
                )
            self._specs[spec.kind] = spec

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._specs)

    def specs(self) -> list[InputSpec]:
        return list(self._specs.values())

    def spec(self, kind: str) -> InputSpec:
        """The spec of ``kind``; an error telling how to pass it if it was not given."""
        if kind not in self._specs:
            raise InputError(f"no {kind!r} input was given; pass --input {kind}=PATH")
        return self._specs[kind]

    def require(self, kinds: Iterable[str], producer: str) -> None:
        """Fail before training when a producer's required inputs are missing."""
        missing = [k for k in kinds if k not in self._specs]
        if missing:
            names = ", ".join(repr(k) for k in missing)
            how = " ".join(f"--input {k}=PATH" for k in missing)
            raise InputError(f"producer {producer!r} needs input(s) {names}; pass {how}")

    def reject_unused(self, kinds_allowed: Iterable[str], producer: str) -> None:
        """An input the producer ignores is almost always a mistake; say so rather than drop it."""
        allowed = set(kinds_allowed)
        extra = sorted(self.kinds - allowed)
        if extra:
            uses = ", ".join(repr(k) for k in sorted(allowed)) or "none"
            raise InputError(
                f"producer {producer!r} does not use input(s) {', '.join(repr(k) for k in extra)} "
                f"(it uses: {uses}); remove " + " ".join(f"--input {k}=..." for k in extra)
            )

    def column_maps(self) -> dict[str, dict[str, str]]:
        """Each kind's canonical -> actual column mapping, as given (--column)."""
        return {kind: dict(spec.columns) for kind, spec in self._specs.items()}


class Inputs(InputKinds):
    """The input files of one run, loaded lazily and validated once per kind.

    ``until`` (a UTC ``pd.Timestamp``) keeps only interactions dated before it: a version
    trained on them uses no data from ``until`` on (``embstore run --until``)."""

    def __init__(self, specs: Iterable[InputSpec], until: pd.Timestamp | None = None):
        super().__init__(specs)
        for spec in self._specs.values():
            check_exists(spec)
        self.until = until
        self._cache: dict[object, object] = {}

    def before(self, until: pd.Timestamp) -> "Inputs":
        """The same files, with only the interactions dated before ``until``."""
        return Inputs(self._specs.values(), until=until)

    def newest_time(self) -> pd.Timestamp | None:
        """The newest timestamp of the timestamped inputs (interactions, after ``until``), or None
        when no input carries times: the end of what a version trained on them has seen."""
        if "interactions" not in self._specs:
            return None
        return self.interactions()["timestamp"].max()

    def _cached(self, key: object, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _load(self, kind: str, strings: bool = True) -> tuple[InputSpec, dict[str, str], list[str], pa.Table]:
        spec = self.spec(kind)
        check_exists(spec)
        fmt = file_format(kind, spec.path)
        header = read_header(spec, fmt)
        found = resolve_columns(spec, header)
        keep_all = kind in ("side_info", "features")
        columns = header if keep_all else list(found.values())
        return spec, found, header, read_table(spec, fmt, header, columns, strings)

    def interactions(self) -> pd.DataFrame:
        """user_id, item_id, timestamp (UTC), weight (default 1.0) and rating when given; file order."""
        return self._cached("interactions", self._interactions)

    def _interactions(self) -> pd.DataFrame:
        spec, found, _, table = self._load("interactions")
        lab = {c: column_label(spec, a, c) for c, a in found.items()}
        users = id_columns(spec, [(lab["user_id"], table[found["user_id"]])])[0]
        items = id_columns(spec, [(lab["item_id"], table[found["item_id"]])])[0]
        data: dict[str, object] = {
            "user_id": users,
            "item_id": items,
            "timestamp": timestamp_column(spec, lab["timestamp"], table[found["timestamp"]]),
        }
        if "weight" in found:
            data["weight"] = float_column(spec, lab["weight"], table[found["weight"]])
        else:
            data["weight"] = np.ones(table.num_rows, dtype=np.float64)
        if "rating" in found:
            data["rating"] = float_column(spec, lab["rating"], table[found["rating"]])
        frame = pd.DataFrame(data)
        if self.until is not None:
            frame = frame[frame["timestamp"] < self.until].reset_index(drop=True)
            if frame.empty:
                raise InputError(f"{spec.display}: no interaction is dated before {self.until.isoformat()} (--until)")
        return frame

    def sequences(self, min_rating: float | None = None, session_gap: float | None = None) -> Sequences:
        """Per-user item sequences in time order (ties keep file order), users in sorted id order.

        ``min_rating`` drops rows rated below it; ``session_gap`` (seconds) starts a new
        sequence where a user's consecutive events are more than that far apart.
        """
        if session_gap is not None and not (session_gap > 0):
            raise ConfigError(f"session_gap={session_gap!r}: must be a positive number of seconds")
        key = ("sequences", min_rating, session_gap)
        return self._cached(key, lambda: self._sequences(min_rating, session_gap))

    def _sequences(self, min_rating: float | None, session_gap: float | None) -> Sequences:
        df = self.interactions()
        spec = self._specs["interactions"]
        users = df["user_id"].to_numpy()
        items = df["item_id"].to_numpy()
        times = df["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        if min_rating is not None:
            if "rating" not in df.columns:
                raise InputError(
                    f"{spec.display}: min_rating={min_rating} needs a rating column, but there is none; "
                    "map it with --column interactions.rating=NAME or drop min_rating"
                )
            keep = df["rating"].to_numpy() >= min_rating
            if not keep.any():
                raise InputError(f"{spec.display}: no interaction has rating >= {min_rating}")
            users, items, times = users[keep], items[keep], times[keep]
        user_codes, _ = _sorted_codes(users)
        item_codes, vocab = _sorted_codes(items)
        if vocab.shape[0] > np.iinfo(np.int32).max:
            raise InputError(f"{spec.display}: more than 2^31 distinct items")
        order = np.argsort(times, kind="stable")
        order = order[np.argsort(user_codes[order], kind="stable")]
        user_sorted, time_sorted = user_codes[order], times[order]
        starts = np.empty(order.shape[0], dtype=bool)
        starts[0] = True
        starts[1:] = user_sorted[1:] != user_sorted[:-1]
        if session_gap is not None:
            starts[1:] |= np.diff(time_sorted) > int(session_gap * 1e9)
        offsets = np.append(np.flatnonzero(starts), order.shape[0]).astype(np.int64)
        return Sequences(vocab=vocab, codes=item_codes[order].astype(np.int32), offsets=offsets)

    def edges(self) -> pd.DataFrame:
        """src, dst (one id space) and weight (default 1.0, finite and > 0); file order."""
        return self._cached("edges", self._edges)

    def _edges(self) -> pd.DataFrame:
        spec, found, _, table = self._load("edges")
        lab = {c: column_label(spec, a, c) for c, a in found.items()}
        src, dst = id_columns(spec, [(lab[c], table[found[c]]) for c in ("src", "dst")])
        if "weight" in found:
            weight = float_column(spec, lab["weight"], table[found["weight"]], positive=True)
        else:
            weight = np.ones(table.num_rows, dtype=np.float64)
        return pd.DataFrame({"src": src, "dst": dst, "weight": weight})

    def side_info(self) -> pd.DataFrame:
        """item_id plus every other column as strings ('' when missing); one row per item."""
        return self._cached("side_info", self._side_info)

    def _side_info(self) -> pd.DataFrame:
        spec, found, header, table = self._load("side_info")
        id_col = found["item_id"]
        label = column_label(spec, id_col, "item_id")
        ids = id_columns(spec, [(label, table[id_col])])[0]
        check_unique(spec, label, ids)
        others = [c for c in header if c != id_col and c != "item_id"]
        if not others:
            raise InputError(f"{spec.display}: no side-information columns besides {id_col!r}")
        data = {"item_id": ids}
        data.update({c: text_column(table[c]) for c in others})
        return pd.DataFrame(data)

    def features(self) -> tuple[np.ndarray, np.ndarray | sp.csr_matrix]:
        """(ids, float32 matrix): dense from CSV/parquet, CSR from a sparse ``.npz`` (ids 0..n-1)."""
        return self._cached("features", self._features)

    def _features(self) -> tuple[np.ndarray, np.ndarray | sp.csr_matrix]:
        spec = self.spec("features")
        check_exists(spec)
        if file_format("features", spec.path) == "npz":
            return read_npz_features(spec)
        spec, found, header, table = self._load("features")
        id_col = found["id"]
        label = column_label(spec, id_col, "id")
        ids = id_columns(spec, [(label, table[id_col])])[0]
        check_unique(spec, label, ids)
        others = [c for c in header if c != id_col and c != "id"]
        if not others:
            raise InputError(f"{spec.display}: no feature columns besides {id_col!r}")
        matrix = np.empty((table.num_rows, len(others)), dtype=np.float32)
        for j, name in enumerate(others):
            values = float_column(spec, repr(name), table[name])
            with np.errstate(over="ignore"):
                matrix[:, j] = values
            overflow = ~np.isfinite(matrix[:, j])
            if overflow.any():
                i = first_true(overflow)
                raise cell_error(spec, repr(name), i, values[i], "does not fit float32")
        return ids, matrix

    def table(self) -> pd.DataFrame:
        """A generic table for tabular producers, types inferred; mapped columns renamed."""
        return self._cached("table", self._table)

    def _table(self) -> pd.DataFrame:
        spec = self.spec("table")
        check_exists(spec)
        fmt = file_format("table", spec.path)
        header = read_header(spec, fmt)
        for canonical, actual in spec.columns.items():
            if actual not in header:
                raise InputError(
                    f"{spec.display}: no column {actual!r} (mapped from table.{canonical}); "
                    f"columns found: {', '.join(header)}"
                )
        df = read_table(spec, fmt, header, header, strings=False).to_pandas()
        return df.rename(columns={a: c for c, a in spec.columns.items()})

    def fingerprint(self) -> str:
        """sha256 over kinds, column mappings and file bytes: same data, same version fingerprint."""
        return self._cached("fingerprint", self._fingerprint)

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for kind in sorted(self._specs):
            spec = self._specs[kind]
            check_exists(spec)
            mapping = json.dumps(dict(spec.columns), sort_keys=True)
            digest.update(f"{kind}\0{mapping}\0{spec.path.stat().st_size}\0".encode())
            if self.until is not None and kind == "interactions":
                digest.update(f"until\0{self.until.isoformat()}\0".encode())
            with open(spec.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()


def _sorted_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes into the sorted unique values, without sorting all n values (fast for 10M rows)."""
    codes, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques, dtype=values.dtype)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    return rank[codes], uniques[order]
