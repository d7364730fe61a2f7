"""Times as users give them, read by one rule everywhere: datetimes (naive = UTC), ISO-8601 text,
or integer unix seconds, as the input loader reads a ``timestamp`` column.

    times_of(training_rows["event_timestamp"], "rows column 'event_timestamp'")   # -> UTC DatetimeIndex
    parse_time("2018-01-01")                                                      # -> Timestamp UTC
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from embstore.errors import ConfigError, InputError
from embstore.ids import plain
from embstore.inputs.columns import utc_times


def times_of(values: Any, what: str) -> pd.DatetimeIndex:
    """UTC times of a column (a Series, array or list); one InputError naming ``what`` and the first
    bad row (0-based, as pandas counts) otherwise."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        index = pd.DatetimeIndex(series)
        if index.isna().any():
            raise InputError(f"{what} row {int(np.argmax(index.isna()))} is empty; every row needs a time")
        return (index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")).as_unit("ns")
    try:
        arr = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers and text mixed in an object column
        arr = pa.array(series.map(lambda v: None if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v))
                                  else str(plain(v))), type=pa.string())

    def bad(row: int, value: object, problem: str | None) -> InputError:
        if problem is None:
            return InputError(f"{what} row {row} is empty; every row needs a time")
        return InputError(f"{what} row {row}: {plain(value)!r} {problem}")

    return utc_times(arr, bad)


def parse_time(value: Any, what: str = "time") -> pd.Timestamp:
    """One time (a CLI option or API argument) in UTC by the same rule; ConfigError if it is none."""
    if isinstance(value, (datetime, date, pd.Timestamp, np.datetime64)):
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise ConfigError(f"{what} {value!r} is not a time: give ISO-8601 (2018-01-01T00:00:00Z) or unix seconds")
    try:
        return times_of([value], what)[0]
    except InputError:
        raise ConfigError(f"{what} {value!r} is not a time: give ISO-8601 (2018-01-01T00:00:00Z) "
                          "or unix seconds") from None
