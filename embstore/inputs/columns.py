"""Turning columns as read into typed values: ids, numbers, timestamps, text, multi-valued cells.

Each converter returns numpy (or pandas) values or raises one ``InputError``
naming the file, the column and the first bad data row (counted from 1, the
header not counted), in the one format of :func:`cell_error`.

Ids become int64 when every value of the column (of src and dst together for
edges) is a canonical decimal integer (``-12``, ``7``; not ``007``, ``+7`` or
``7.0``) that fits int64; otherwise all of them are kept as strings. Leading and
trailing whitespace is trimmed from ids and numbers.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from embstore.errors import InputError
from embstore.ids import plain
from embstore.inputs.specs import InputSpec

_INT64_SECONDS = 9.2e9  # |unix seconds| that still fit datetime64[ns]
CellProblem = Callable[[int, object, "str | None"], Exception]  # (0-based row, value, problem; None: empty)


def column_label(spec: InputSpec, actual: str, canonical: str) -> str:
    """A column as errors name it: 'userId' (interactions.user_id) when it was mapped."""
    return repr(actual) if actual == canonical else f"{actual!r} ({spec.kind}.{canonical})"


def cell_error(spec: InputSpec, column: str, row: int, value: object, problem: str) -> InputError:
    """The one error format for a bad cell; ``row`` is 0-based here, shown 1-based."""
    return InputError(f"{spec.display}: column {column} data row {row + 1}: {plain(value)!r} {problem}")


def empty_error(spec: InputSpec, column: str, row: int, what: str) -> InputError:
    """The error for an empty cell where ``what`` (e.g. "every row needs an id") says why it may not be."""
    return InputError(f"{spec.display}: column {column} data row {row + 1} is empty; {what}")


def first_true(mask: np.ndarray) -> int:
    """The 0-based row of the first True in ``mask`` (call it only when there is one)."""
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


def id_columns(spec: InputSpec, cols: list[tuple[str, pa.ChunkedArray]]) -> list[np.ndarray]:
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
                i = first_true(bad)
                if np.isnan(values[i]):
                    raise empty_error(spec, label, i, "every row needs an id")
                raise cell_error(spec, label, i, values[i], "is not an integer or string id")
            arr = pc.cast(arr, pa.int64())
        elif pa.types.is_boolean(arr.type) or not pa.types.is_integer(arr.type):
            raise InputError(
                f"{spec.display}: column {label} has type {arr.type}; ids must be integers or strings"
            )
        missing = _null_or_empty(arr)
        if missing.any():
            raise empty_error(spec, label, first_true(missing), "every row needs an id")
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


def float_column(
    spec: InputSpec, label: str, arr: pa.ChunkedArray, *, positive: bool = False
) -> np.ndarray:
    """Finite float64 values (and > 0 when ``positive``), or an error naming the first bad cell."""
    raw = None
    if _is_text(arr):
        arr = _trimmed(arr)
        missing = _null_or_empty(arr)
        if missing.any():
            raise empty_error(spec, label, first_true(missing), "a number is required")
        try:
            values = pc.cast(arr, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            raw = arr.to_numpy(zero_copy_only=False)
            values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)
    elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        missing = _null_or_empty(arr)
        if missing.any():
            raise empty_error(spec, label, first_true(missing), "a number is required")
        values = pc.cast(arr, pa.float64()).to_numpy()
    else:
        raise InputError(f"{spec.display}: column {label} has type {arr.type}; expected numbers")
    bad = ~np.isfinite(values)
    if positive:
        bad |= np.where(bad, False, values <= 0)
    if bad.any():
        i = first_true(bad)
        shown = raw[i] if raw is not None else (arr[i].as_py() if _is_text(arr) else values[i])
        if raw is not None and not _parses_as_float(shown):
            problem = "is not a number"
        elif np.isnan(values[i]):
            problem = "is NaN; values must be finite"
        elif np.isinf(values[i]):
            problem = "is infinite; values must be finite"
        else:
            problem = "must be > 0"
        raise cell_error(spec, label, i, shown, problem)
    return values


def _seconds_to_utc(seconds: np.ndarray, raw, bad: CellProblem) -> pd.DatetimeIndex:
    """Unix seconds to UTC; ``raw`` (the text as read, or None) is only used to show a bad cell."""
    fine = seconds.size == 0 or (-_INT64_SECONDS <= seconds.min() and seconds.max() <= _INT64_SECONDS)
    if not fine:  # NaN fails both comparisons, so it lands here too
        wrong = ~np.isfinite(seconds) | (np.abs(np.where(np.isfinite(seconds), seconds, 0)) > _INT64_SECONDS)
        i = first_true(wrong)
        shown = seconds[i] if raw is None else raw[i]
        shown = shown.as_py() if isinstance(shown, pa.Scalar) else shown
        problem = (
            "is not a finite number of unix seconds"
            if not np.isfinite(seconds[i])
            else "is out of range for unix seconds (milliseconds? divide by 1000)"
        )
        raise bad(i, shown, problem)
    if seconds.dtype.kind in "iu":
        nanos = pa.array(seconds.astype(np.int64) * 1_000_000_000, type=pa.timestamp("ns", tz="UTC"))
        return pd.DatetimeIndex(nanos.to_pandas())
    return pd.to_datetime(seconds, unit="s", utc=True)


def utc_times(arr: pa.ChunkedArray | pa.Array, bad: CellProblem) -> pd.DatetimeIndex:
    """The one rule for reading times, in inputs, joins and CLI options alike: datetimes and dates
    (naive ones taken as UTC), ISO-8601 text (zoned or naive = UTC), or unix seconds as numbers or
    numeric text. ``bad(row, value, problem)`` builds the error for the first cell that is none of
    those (an empty cell is ``problem=None``)."""
    arr = arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
    missing = _null_or_empty(arr)
    if missing.any():
        raise bad(first_true(missing), None, None)
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        return pd.DatetimeIndex(pd.to_datetime(arr.to_pandas(), utc=True)).as_unit("ns")
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return _seconds_to_utc(arr.to_numpy(), None, bad)
    if not _is_text(arr):
        raise bad(0, arr[0].as_py() if len(arr) else None, f"has type {arr.type}; expected times")
    arr = _trimmed(arr)
    for target in (pa.int64(), pa.float64()):
        try:
            numbers = pc.cast(arr, target).to_numpy()
        except pa.ArrowInvalid:
            continue
        return _seconds_to_utc(numbers, arr, bad)
    for target in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):  # all ISO, all zoned or all naive
        try:
            stamps = pd.DatetimeIndex(pc.cast(arr, target).to_pandas())
        except pa.ArrowInvalid:
            continue
        return stamps if stamps.tz is not None else stamps.tz_localize("UTC")
    return _mixed_times(arr, bad)


def timestamp_column(spec: InputSpec, label: str, arr: pa.ChunkedArray) -> pd.DatetimeIndex:
    """UTC timestamps of an input column (see ``utc_times``); errors name the file, column and row."""
    if not (_is_text(arr) or pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type)
            or pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        raise InputError(f"{spec.display}: column {label} has type {arr.type}; expected times")

    def bad(row: int, value: object, problem: str | None) -> InputError:
        if problem is None:
            return empty_error(spec, label, row, "every interaction needs a timestamp")
        return cell_error(spec, label, row, value, problem)

    return utc_times(arr, bad)


# An ISO time with a zone: a time part followed by Z or an offset (date-only '2021-03-01' has none).
_ZONED = r"[T ][0-9:.,]+ ?(?:[zZ]|[+-][0-9]{2}(?::?[0-9]{2})?)$"


def _mixed_times(arr: pa.ChunkedArray, bad: CellProblem) -> pd.DatetimeIndex:
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
    failed = out.isna().to_numpy()
    if failed.any():
        i = first_true(failed)
        problem = (
            "is out of range for unix seconds (milliseconds? divide by 1000)"
            if is_number[i]
            else "is not a number or ISO-8601 time"
        )
        raise bad(i, raw.iloc[i], problem)
    return pd.DatetimeIndex(out)


def text_column(arr: pa.ChunkedArray) -> np.ndarray:
    """Side-info cells as Python str, missing as ''."""
    if not _is_text(arr):
        arr = pc.cast(arr, pa.string())
    return np.asarray(arr.fill_null("").to_numpy(zero_copy_only=False), dtype=object)


def check_unique(spec: InputSpec, label: str, ids: np.ndarray) -> None:
    dup = pd.Series(ids).duplicated(keep="first").to_numpy()
    if dup.any():
        i = first_true(dup)
        first = int(np.flatnonzero(ids[:i] == ids[i])[0])
        raise cell_error(
            spec, label, i, ids[i], f"is a duplicate id (first at data row {first + 1}); ids must be unique"
        )


def split_multi(values: Iterable[str], sep: str = "|") -> list[list[str]]:
    """Split multi-valued side-info cells (``Adventure|Comedy``); empty parts are dropped."""
    return [[p.strip() for p in str(v).split(sep) if p.strip()] for v in values]
