"""Loading and validating producer inputs: interactions, edges, side info, features, tables.

Producers never read files themselves: they ask an ``Inputs`` for a kind and get
validated, typed data back, so every producer reports bad input the same way.

    inputs = Inputs([parse_input_arg("interactions=ratings.csv")])
    seqs = inputs.sequences(min_rating=3.5)

Files are CSV (``.csv``, ``.csv.gz``, UTF-8, comma separated, header line) or
parquet (``.parquet``, ``.pq``); ``features`` may also be a scipy sparse ``.npz``
(row i is node id i). Errors are one ``InputError`` naming the file, the column
and the first bad row. Rows are counted as *data rows* from 1, the header not
counted, so data row N is line N+1 of a plain CSV.

Ids become int64 when every value of the column (of src and dst together for
edges) is a canonical decimal integer (``-12``, ``7``; not ``007``, ``+7`` or
``7.0``) that fits int64; otherwise all of them are kept as strings. Leading and
trailing whitespace is trimmed from ids and numbers.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from embstore.errors import ConfigError, InputError
from embstore.sequences import Sequences

INPUT_KINDS = ("interactions", "edges", "side_info", "features", "table")

# kind -> (required canonical columns, optional canonical columns); ``table`` maps freely.
_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "interactions": (("user_id", "item_id", "timestamp"), ("rating", "weight")),
    "edges": (("src", "dst"), ("weight",)),
    "side_info": (("item_id",), ()),
    "features": (("id",), ()),
    "table": ((), ()),
}
_CSV = (".csv", ".csv.gz")
_PARQUET = (".parquet", ".pq")
_NPZ = (".npz",)
_INT64_SECONDS = 9.2e9  # |unix seconds| that still fit datetime64[ns]


def _file_format(kind: str, path: Path) -> str:
    """'csv', 'parquet' or 'npz' from the file name; anything else is refused up front."""
    name = path.name.lower()
    if name.endswith(_CSV):
        return "csv"
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(_NPZ) and kind == "features":
        return "npz"
    allowed = _CSV + _PARQUET + (_NPZ if kind == "features" else ())
    raise InputError(
        f"{path}: cannot read a {kind!r} input from this file type; "
        f"use one of {', '.join(allowed)}"
    )


@dataclass(frozen=True)
class InputSpec:
    """One input file: its kind, path and a canonical -> actual column-name mapping."""

    kind: str
    path: Path
    columns: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise InputError(
                f"unknown input kind {self.kind!r}; known kinds: {', '.join(INPUT_KINDS)}"
            )
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "columns", dict(self.columns))
        if self.kind != "table":
            required, optional = _COLUMNS[self.kind]
            for canonical in self.columns:
                if canonical not in required + optional:
                    raise InputError(
                        f"--column {self.kind}.{canonical}: {self.kind} has no column "
                        f"{canonical!r}; it maps: {', '.join(required + optional)}"
                    )

    @property
    def display(self) -> str:
        return str(self.path)


def parse_input_arg(arg: str) -> InputSpec:
    """``KIND=PATH`` from the CLI, checked now so a typo fails before any training."""
    kind, sep, path = arg.partition("=")
    if not sep or not kind or not path:
        raise InputError(
            f"--input {arg!r}: expected KIND=PATH with KIND one of {', '.join(INPUT_KINDS)}"
        )
    spec = InputSpec(kind.strip(), Path(path))
    _check_exists(spec)
    _file_format(spec.kind, spec.path)
    return spec


def parse_column_arg(arg: str) -> tuple[str, str, str]:
    """``KIND.CANONICAL=ACTUAL`` from the CLI, e.g. ``interactions.user_id=userId``."""
    target, sep, actual = arg.partition("=")
    kind, dot, canonical = target.partition(".")
    if not sep or not dot or not kind or not canonical or not actual:
        raise InputError(
            f"--column {arg!r}: expected KIND.COLUMN=NAME, e.g. interactions.user_id=userId"
        )
    if kind not in INPUT_KINDS:
        raise InputError(
            f"--column {arg!r}: unknown input kind {kind!r}; known kinds: {', '.join(INPUT_KINDS)}"
        )
    return kind, canonical, actual


def specs_from_args(input_args: Iterable[str], column_args: Iterable[str] = ()) -> list[InputSpec]:
    """Combine ``--input`` and ``--column`` options into specs; a mapping needs its input."""
    specs = [parse_input_arg(a) for a in input_args]
    by_kind = {s.kind: s for s in specs}
    mappings: dict[str, dict[str, str]] = {}
    for arg in column_args:
        kind, canonical, actual = parse_column_arg(arg)
        if kind not in by_kind:
            raise InputError(
                f"--column {arg!r} maps a column of {kind!r}, but no --input {kind}=PATH was given"
            )
        mappings.setdefault(kind, {})[canonical] = actual
    return [InputSpec(s.kind, s.path, mappings.get(s.kind, {})) for s in specs]


def split_multi(values: Iterable[str], sep: str = "|") -> list[list[str]]:
    """Split multi-valued side-info cells (``Adventure|Comedy``); empty parts are dropped."""
    return [[p.strip() for p in str(v).split(sep) if p.strip()] for v in values]


def _check_exists(spec: InputSpec) -> None:
    if not spec.path.exists():
        raise InputError(f"{spec.kind} input {spec.display}: file not found")
    if not spec.path.is_file():
        raise InputError(f"{spec.kind} input {spec.display}: not a file")


# ---------------------------------------------------------------- reading files


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _csv_header(spec: InputSpec) -> list[str]:
    """Column names from the first line; read by hand so we can name encoding problems."""
    try:
        with _open_binary(spec.path) as f:
            line = f.readline()
    except (OSError, EOFError) as exc:
        raise InputError(f"{spec.display}: cannot read file: {exc}") from None
    if not line.strip():
        raise InputError(f"{spec.display}: file is empty (expected a header line and data rows)")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{spec.display}: the header: byte 0x{line[exc.start]:02x} is not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from None
    return next(csv.reader([text.rstrip("\r\n")]))


def _utf8_error(spec: InputSpec, header: list[str]) -> InputError:
    """Find the first non-UTF-8 line (only on the error path) and name its row and column."""
    with _open_binary(spec.path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                column = ""
                fields = next(csv.reader([raw.decode("latin-1")]), [])
                for i, value in enumerate(fields):
                    try:
                        value.encode("latin-1").decode("utf-8")
                    except UnicodeDecodeError:
                        if i < len(header):
                            column = f"column {header[i]!r} "
                        break
                return InputError(
                    f"{spec.display}: {column}data row {lineno - 1}: byte 0x{raw[exc.start]:02x} "
                    "is not valid UTF-8; re-save the file as UTF-8"
                )
    return InputError(f"{spec.display}: file is not valid UTF-8; re-save it as UTF-8")


def _header(spec: InputSpec, fmt: str) -> list[str]:
    if fmt == "csv":
        return _csv_header(spec)
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(spec.path).names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{spec.display}: not a readable parquet file: {exc}") from None
    return [n for n in names if not n.startswith("__index_level_")]


def _read(spec: InputSpec, fmt: str, header: list[str], columns: list[str], strings: bool) -> pa.Table:
    """Read ``columns`` (CSV: as strings when ``strings``, so we parse and report them ourselves)."""
    if fmt == "csv":
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.string() for c in columns} if strings else None,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        try:
            table = pacsv.read_csv(str(spec.path), convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "UTF-8" in str(exc):
                raise _utf8_error(spec, header) from None
            raise InputError(f"{spec.display}: not a well-formed CSV file: {exc}") from None
        except (pa.ArrowException, OSError, EOFError) as exc:
            raise InputError(f"{spec.display}: cannot read CSV file: {exc}") from None
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(spec.path, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{spec.display}: not a readable parquet file: {exc}") from None
    if table.num_rows == 0:
        raise InputError(f"{spec.display}: no data rows (only a header or an empty table)")
    return table


def _resolve(spec: InputSpec, header: list[str]) -> dict[str, str]:
    """canonical -> actual column for the columns present; a missing required one is an error."""
    required, optional = _COLUMNS[spec.kind]
    found = {}
    for canonical in required + optional:
        actual = spec.columns.get(canonical, canonical)
        if actual in header:
            found[canonical] = actual
        elif canonical in spec.columns or canonical in required:
            squash = canonical.replace("_", "").lower()
            guess = next((h for h in header if h.replace("_", "").lower() == squash), "NAME")
            mapped = f" (mapped from {spec.kind}.{canonical})" if canonical in spec.columns else ""
            raise InputError(
                f"{spec.display}: no column {actual!r}{mapped}; columns found: "
                f"{', '.join(header)}; map it with --column {spec.kind}.{canonical}={guess}"
            )
    return found


# ---------------------------------------------------------------- column conversion


def _label(spec: InputSpec, actual: str, canonical: str) -> str:
    return repr(actual) if actual == canonical else f"{actual!r} ({spec.kind}.{canonical})"


def _cell_error(spec: InputSpec, column: str, row: int, value: object, problem: str) -> InputError:
    """The one error format for a bad cell; ``row`` is 0-based here, shown 1-based."""
    if isinstance(value, np.generic):
        value = value.item()
    return InputError(f"{spec.display}: column {column} data row {row + 1}: {value!r} {problem}")


def _empty_error(spec: InputSpec, column: str, row: int, what: str) -> InputError:
    return InputError(f"{spec.display}: column {column} data row {row + 1} is empty; {what}")


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _null_or_empty(arr: pa.ChunkedArray) -> np.ndarray:
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        empty = pc.equal(arr, "").fill_null(True).to_numpy(zero_copy_only=False)
        return nulls | empty
    return nulls


def _trimmed(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.utf8_trim_whitespace(arr)


def _is_text(arr: pa.ChunkedArray) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _id_columns(spec: InputSpec, cols: list[tuple[str, pa.ChunkedArray]]) -> list[np.ndarray]:
    """Id columns sharing one id space: all int64, or all Python str."""
    prepared = []
    for label, arr in cols:
        if _is_text(arr):
            arr = _trimmed(arr)
        elif pa.types.is_floating(arr.type):
            values = arr.to_numpy()
            finite = np.isfinite(values)
            bad = ~finite | (np.where(finite, values, 0) % 1 != 0)
            if bad.any():
                i = _first(bad)
                if np.isnan(values[i]):
                    raise _empty_error(spec, label, i, "every row needs an id")
                raise _cell_error(spec, label, i, values[i], "is not an integer or string id")
            arr = pc.cast(arr, pa.int64())
        elif pa.types.is_boolean(arr.type) or not pa.types.is_integer(arr.type):
            raise InputError(
                f"{spec.display}: column {label} has type {arr.type}; ids must be integers or strings"
            )
        missing = _null_or_empty(arr)
        if missing.any():
            raise _empty_error(spec, label, _first(missing), "every row needs an id")
        prepared.append((label, arr))

    as_ints: list[pa.ChunkedArray | None] = []
    for _, arr in prepared:
        if pa.types.is_integer(arr.type):
            try:
                as_ints.append(pc.cast(arr, pa.int64()))
            except pa.ArrowInvalid:  # uint64 beyond int64: kept as strings, like such ids in a CSV
                as_ints.append(None)
            continue
        try:
            ints = pc.cast(arr, pa.int64())
        except pa.ArrowInvalid:
            as_ints.append(None)
            continue
        canonical = pc.all(pc.equal(pc.cast(ints, pa.string()), arr)).as_py()
        as_ints.append(ints if canonical else None)
    if all(a is not None for a in as_ints):
        return [a.to_numpy().astype(np.int64, copy=False) for a in as_ints]  # type: ignore[union-attr]
    out = []
    for _, arr in prepared:
        text = arr if _is_text(arr) else pc.cast(arr, pa.string())
        out.append(np.asarray(text.to_numpy(zero_copy_only=False), dtype=object))
    return out


def _parses_as_float(value: str) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _float_column(
    spec: InputSpec, label: str, arr: pa.ChunkedArray, *, positive: bool = False
) -> np.ndarray:
    """Finite float64 values (and > 0 when ``positive``), or an error naming the first bad cell."""
    raw = None
    if _is_text(arr):
        arr = _trimmed(arr)
        missing = _null_or_empty(arr)
        if missing.any():
            raise _empty_error(spec, label, _first(missing), "a number is required")
        try:
            values = pc.cast(arr, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            raw = arr.to_numpy(zero_copy_only=False)
            values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)
    elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        missing = _null_or_empty(arr)
        if missing.any():
            raise _empty_error(spec, label, _first(missing), "a number is required")
        values = pc.cast(arr, pa.float64()).to_numpy()
    else:
        raise InputError(f"{spec.display}: column {label} has type {arr.type}; expected numbers")
    bad = ~np.isfinite(values)
    if positive:
        bad |= np.where(bad, False, values <= 0)
    if bad.any():
        i = _first(bad)
        shown = raw[i] if raw is not None else (arr[i].as_py() if _is_text(arr) else values[i])
        if raw is not None and not _parses_as_float(shown):
            problem = "is not a number"
        elif np.isnan(values[i]):
            problem = "is NaN; values must be finite"
        elif np.isinf(values[i]):
            problem = "is infinite; values must be finite"
        else:
            problem = "must be > 0"
        raise _cell_error(spec, label, i, shown, problem)
    return values


def _seconds_to_utc(spec: InputSpec, label: str, seconds: np.ndarray, raw) -> pd.DatetimeIndex:
    """Unix seconds to UTC; ``raw`` (the text as read, or None) is only used to show a bad cell."""
    fine = seconds.size == 0 or (-_INT64_SECONDS <= seconds.min() and seconds.max() <= _INT64_SECONDS)
    if not fine:  # NaN fails both comparisons, so it lands here too
        bad = ~np.isfinite(seconds) | (np.abs(np.where(np.isfinite(seconds), seconds, 0)) > _INT64_SECONDS)
        i = _first(bad)
        shown = seconds[i] if raw is None else raw[i]
        shown = shown.as_py() if isinstance(shown, pa.Scalar) else shown
        problem = (
            "is not a finite number of unix seconds"
            if not np.isfinite(seconds[i])
            else "is out of range for unix seconds (milliseconds? divide by 1000)"
        )
        raise _cell_error(spec, label, i, shown, problem)
    if seconds.dtype.kind in "iu":
        nanos = pa.array(seconds.astype(np.int64) * 1_000_000_000, type=pa.timestamp("ns", tz="UTC"))
        return pd.DatetimeIndex(nanos.to_pandas())
    return pd.to_datetime(seconds, unit="s", utc=True)


def _timestamp_column(spec: InputSpec, label: str, arr: pa.ChunkedArray) -> pd.DatetimeIndex:
    """UTC timestamps from unix seconds (numbers) or ISO-8601 text; naive times are taken as UTC."""
    missing = _null_or_empty(arr)
    if missing.any():
        raise _empty_error(spec, label, _first(missing), "every interaction needs a timestamp")
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        return pd.DatetimeIndex(pd.to_datetime(arr.to_pandas(), utc=True)).as_unit("ns")
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return _seconds_to_utc(spec, label, arr.to_numpy(), None)
    if not _is_text(arr):
        raise InputError(f"{spec.display}: column {label} has type {arr.type}; expected times")
    arr = _trimmed(arr)
    for target in (pa.int64(), pa.float64()):
        try:
            numbers = pc.cast(arr, target).to_numpy()
        except pa.ArrowInvalid:
            continue
        return _seconds_to_utc(spec, label, numbers, arr)
    for target in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):  # all ISO, all zoned or all naive
        try:
            stamps = pd.DatetimeIndex(pc.cast(arr, target).to_pandas())
        except pa.ArrowInvalid:
            continue
        return stamps if stamps.tz is not None else stamps.tz_localize("UTC")
    return _mixed_times(spec, label, arr)


# An ISO time with a zone: a time part followed by Z or an offset (date-only '2021-03-01' has none).
_ZONED = r"[T ][0-9:.,]+ ?(?:[zZ]|[+-][0-9]{2}(?::?[0-9]{2})?)$"


def _mixed_times(spec: InputSpec, label: str, arr: pa.ChunkedArray) -> pd.DatetimeIndex:
    """The slow path: numbers and ISO text mixed, or a bad cell to find.

    Zoned and naive ISO strings are parsed apart: pandas applies a previous row's
    offset to naive strings when they are mixed.
    """
    raw = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    is_number = ~np.isnan(numbers)
    in_range = is_number & (np.abs(np.where(is_number, numbers, 0)) <= _INT64_SECONDS)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    out[in_range] = pd.to_datetime(numbers[in_range], unit="s", utc=True)
    zoned = raw.str.contains(_ZONED, regex=True).to_numpy(dtype=bool) & ~is_number
    for mask in (zoned, ~zoned & ~is_number):
        if mask.any():
            parsed = pd.to_datetime(raw[mask], format="ISO8601", utc=True, errors="coerce")
            out[mask] = parsed.dt.as_unit("ns")
    bad = out.isna().to_numpy()
    if bad.any():
        i = _first(bad)
        problem = (
            "is out of range for unix seconds (milliseconds? divide by 1000)"
            if is_number[i]
            else "is not a number or ISO-8601 time"
        )
        raise _cell_error(spec, label, i, raw.iloc[i], problem)
    return pd.DatetimeIndex(out)


def _text_column(arr: pa.ChunkedArray) -> np.ndarray:
    """Side-info cells as Python str, missing as ''."""
    if not _is_text(arr):
        arr = pc.cast(arr, pa.string())
    return np.asarray(arr.fill_null("").to_numpy(zero_copy_only=False), dtype=object)


def _check_unique(spec: InputSpec, label: str, ids: np.ndarray) -> None:
    dup = pd.Series(ids).duplicated(keep="first").to_numpy()
    if dup.any():
        i = _first(dup)
        first = int(np.flatnonzero(ids[:i] == ids[i])[0])
        raise _cell_error(
            spec, label, i, ids[i], f"is a duplicate id (first at data row {first + 1}); ids must be unique"
        )


def _sorted_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes into the sorted unique values, without sorting all n values (fast for 10M rows)."""
    codes, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques, dtype=values.dtype)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    return rank[codes], uniques[order]


# ---------------------------------------------------------------- the Inputs object


class Inputs:
    """The input files of one run, loaded lazily and validated once per kind."""

    def __init__(self, specs: Iterable[InputSpec]):
        self._specs: dict[str, InputSpec] = {}
        for spec in specs:
            if spec.kind in self._specs:
                raise InputError(
                    f"input {spec.kind!r} given twice ({self._specs[spec.kind].display} and "
                    f"{spec.display}); pass one file per kind"
                )
            _check_exists(spec)
            self._specs[spec.kind] = spec
        self._cache: dict[object, object] = {}

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._specs)

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

    def _cached(self, key: object, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _load(self, kind: str, strings: bool = True) -> tuple[InputSpec, dict[str, str], list[str], pa.Table]:
        spec = self.spec(kind)
        _check_exists(spec)
        fmt = _file_format(kind, spec.path)
        header = _header(spec, fmt)
        found = _resolve(spec, header)
        keep_all = kind in ("side_info", "features")
        columns = header if keep_all else list(found.values())
        return spec, found, header, _read(spec, fmt, header, columns, strings)

    def interactions(self) -> pd.DataFrame:
        """user_id, item_id, timestamp (UTC), weight (default 1.0) and rating when given; file order."""
        return self._cached("interactions", self._interactions)

    def _interactions(self) -> pd.DataFrame:
        spec, found, _, table = self._load("interactions")
        lab = {c: _label(spec, a, c) for c, a in found.items()}
        users = _id_columns(spec, [(lab["user_id"], table[found["user_id"]])])[0]
        items = _id_columns(spec, [(lab["item_id"], table[found["item_id"]])])[0]
        data: dict[str, object] = {
            "user_id": users,
            "item_id": items,
            "timestamp": _timestamp_column(spec, lab["timestamp"], table[found["timestamp"]]),
        }
        if "weight" in found:
            data["weight"] = _float_column(spec, lab["weight"], table[found["weight"]])
        else:
            data["weight"] = np.ones(table.num_rows, dtype=np.float64)
        if "rating" in found:
            data["rating"] = _float_column(spec, lab["rating"], table[found["rating"]])
        return pd.DataFrame(data)

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
        lab = {c: _label(spec, a, c) for c, a in found.items()}
        src, dst = _id_columns(spec, [(lab[c], table[found[c]]) for c in ("src", "dst")])
        if "weight" in found:
            weight = _float_column(spec, lab["weight"], table[found["weight"]], positive=True)
        else:
            weight = np.ones(table.num_rows, dtype=np.float64)
        return pd.DataFrame({"src": src, "dst": dst, "weight": weight})

    def side_info(self) -> pd.DataFrame:
        """item_id plus every other column as strings ('' when missing); one row per item."""
        return self._cached("side_info", self._side_info)

    def _side_info(self) -> pd.DataFrame:
        spec, found, header, table = self._load("side_info")
        id_col = found["item_id"]
        label = _label(spec, id_col, "item_id")
        ids = _id_columns(spec, [(label, table[id_col])])[0]
        _check_unique(spec, label, ids)
        others = [c for c in header if c != id_col and c != "item_id"]
        if not others:
            raise InputError(f"{spec.display}: no side-information columns besides {id_col!r}")
        data = {"item_id": ids}
        data.update({c: _text_column(table[c]) for c in others})
        return pd.DataFrame(data)

    def features(self) -> tuple[np.ndarray, np.ndarray | sp.csr_matrix]:
        """(ids, float32 matrix): dense from CSV/parquet, CSR from a sparse ``.npz`` (ids 0..n-1)."""
        return self._cached("features", self._features)

    def _features(self) -> tuple[np.ndarray, np.ndarray | sp.csr_matrix]:
        spec = self.spec("features")
        _check_exists(spec)
        if _file_format("features", spec.path) == "npz":
            return _npz_features(spec)
        spec, found, header, table = self._load("features")
        id_col = found["id"]
        label = _label(spec, id_col, "id")
        ids = _id_columns(spec, [(label, table[id_col])])[0]
        _check_unique(spec, label, ids)
        others = [c for c in header if c != id_col and c != "id"]
        if not others:
            raise InputError(f"{spec.display}: no feature columns besides {id_col!r}")
        matrix = np.empty((table.num_rows, len(others)), dtype=np.float32)
        for j, name in enumerate(others):
            values = _float_column(spec, repr(name), table[name])
            with np.errstate(over="ignore"):
                matrix[:, j] = values
            overflow = ~np.isfinite(matrix[:, j])
            if overflow.any():
                i = _first(overflow)
                raise _cell_error(spec, repr(name), i, values[i], "does not fit float32")
        return ids, matrix

    def table(self) -> pd.DataFrame:
        """A generic table for tabular producers, types inferred; mapped columns renamed."""
        return self._cached("table", self._table)

    def _table(self) -> pd.DataFrame:
        spec = self.spec("table")
        _check_exists(spec)
        fmt = _file_format("table", spec.path)
        header = _header(spec, fmt)
        for canonical, actual in spec.columns.items():
            if actual not in header:
                raise InputError(
                    f"{spec.display}: no column {actual!r} (mapped from table.{canonical}); "
                    f"columns found: {', '.join(header)}"
                )
        df = _read(spec, fmt, header, header, strings=False).to_pandas()
        return df.rename(columns={a: c for c, a in spec.columns.items()})

    def fingerprint(self) -> str:
        """sha256 over kinds, column mappings and file bytes: same data, same version fingerprint."""
        return self._cached("fingerprint", self._fingerprint)

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for kind in sorted(self._specs):
            spec = self._specs[kind]
            _check_exists(spec)
            mapping = json.dumps(dict(spec.columns), sort_keys=True)
            digest.update(f"{kind}\0{mapping}\0{spec.path.stat().st_size}\0".encode())
            with open(spec.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()


def save_sparse_features(path: str | Path, matrix, ids: Iterable | None = None) -> None:
    """Write sparse features as the ``features`` input reads them: scipy's ``.npz`` format (what
    ``scipy.sparse.save_npz`` writes) plus, when given, the node ids (row i is node ``ids[i]``,
    integers or strings; without ids, row i is node i). New nodes for ``embstore infer`` need ids."""
    m = sp.csr_matrix(matrix)
    arrays = {"format": np.array(b"csr"), "shape": np.array(m.shape), "data": m.data, "indices": m.indices,
              "indptr": m.indptr}
    if ids is not None:
        ids = np.asarray(list(ids))
        if ids.dtype.kind not in "iuU":
            raise InputError(f"sparse feature ids must be integers or strings, got {ids.dtype}")
        if ids.shape != (m.shape[0],):
            raise InputError(f"{len(ids)} ids for {m.shape[0]} feature rows; give one id per row")
        arrays["ids"] = ids
    np.savez_compressed(path, **arrays)


def _npz_features(spec: InputSpec) -> tuple[np.ndarray, sp.csr_matrix]:
    """A scipy sparse matrix saved with ``scipy.sparse.save_npz`` (row i is the node with id i) or
    with ``save_sparse_features`` (an ``ids`` array names the rows)."""
    try:
        matrix = sp.load_npz(spec.path)
    except Exception as exc:  # scipy raises ValueError, OSError, zipfile errors, KeyError...
        raise InputError(
            f"{spec.display}: not a scipy sparse .npz (save it with scipy.sparse.save_npz): {exc}"
        ) from None
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(f"{spec.display}: empty feature matrix of shape {matrix.shape}")
    bad = ~np.isfinite(matrix.data)
    if bad.any():
        k = _first(bad)
        row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
        raise InputError(
            f"{spec.display}: row {row} (0-based) column {int(matrix.indices[k])}: "
            f"{float(matrix.data[k])!r} is not finite (or does not fit float32)"
        )
    with np.load(spec.path, allow_pickle=False) as stored:
        ids = stored["ids"] if "ids" in stored.files else None
    if ids is None:
        return np.arange(matrix.shape[0], dtype=np.int64), matrix
    if ids.shape != (matrix.shape[0],) or ids.dtype.kind not in "iuU":
        raise InputError(f"{spec.display}: its ids array must hold one integer or string per row "
                         f"({matrix.shape[0]} rows), found {ids.dtype} of shape {ids.shape}")
    ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids.astype(str).astype(object)
    _check_unique(spec, "'ids'", ids)
    return ids, matrix
