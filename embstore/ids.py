"""Ids as users write them and as a version stores them: int64 or str, one conversion for each case.

A version holds integer ids (``int64``) or text ids (``string``). Ids reach embstore
as numpy scalars, CLI arguments, URL parameters, JSON values and data-frame cells;
these helpers turn each into the one representation the version uses, and back into
plain Python values for output.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from embstore.errors import EmbeddingsError


def normalize_ids(ids: Any) -> np.ndarray:
    """Ids as int64 when every id is an integer, else as Python str objects.

    One representation per kind keeps lookups, parquet and Feast join keys consistent.
    """
    try:
        arr = np.asarray(ids)
    except (ValueError, TypeError) as exc:  # ragged nesting, e.g. [[1, 2], [3]]
        raise EmbeddingsError(f"ids must be a 1-D sequence of integers or strings: {exc}") from None
    if arr.ndim != 1:
        raise EmbeddingsError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise EmbeddingsError("ids exceed the int64 range; pass them as strings")
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind in "USO":
        out = np.empty(arr.shape[0], dtype=object)
        for i, v in enumerate(arr.tolist()):
            if isinstance(v, (bool, np.bool_)) or v is None or (isinstance(v, float)):
                raise EmbeddingsError(f"id at row {i} is {v!r}; ids must be integers or strings")
            out[i] = v if isinstance(v, str) else str(v)
        try:
            "".join(out).encode("utf-8")
        except UnicodeEncodeError:
            i = next(i for i, v in enumerate(out) if not _utf8_ok(v))
            raise EmbeddingsError(f"id at row {i} is {out[i]!r}, which is not valid Unicode text (lone surrogate)") from None
        return out
    raise EmbeddingsError(f"ids must be integers or strings, got dtype {arr.dtype}")


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def id_type_of(ids: np.ndarray) -> str:
    """'int64' or 'string': how a version's ids are stored and joined."""
    return "int64" if ids.dtype.kind in "iu" else "string"


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (np.int64(7) -> 7); anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def plain_list(ids: Iterable[Any]) -> list:
    """Ids as a list of plain Python ints and strs, for JSON, messages and output."""
    if isinstance(ids, np.ndarray):
        return ids.tolist()
    return [plain(i) for i in ids]


def typed_id(id_type: str | None, raw: Any) -> Any:
    """An id from a URL, a CLI argument, JSON or a frame cell, as a version with ``id_type``
    stores it: an int for integer sets when it reads as one (7, "7", np.int64(7)), else str.
    An id that cannot be converted is returned as given, so a lookup reports it unknown."""
    raw = plain(raw)
    if id_type == "int64":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        try:
            return int(str(raw).strip())
        except ValueError:
            return raw
    return raw if isinstance(raw, str) else str(raw)


def typed_ids(id_type: str | None, raws: Iterable[Any]) -> list:
    return [typed_id(id_type, r) for r in raws]


def positions(ids: np.ndarray, of: np.ndarray, *, mixed: str = "unknown") -> np.ndarray:
    """For each of ``ids`` its row in ``of`` (int64, -1 when absent).

    When one array holds integers and the other text, ``mixed="unknown"`` finds nothing
    (ids of two kinds never match) and ``mixed="text"`` compares both as text (7 == "7"),
    for inputs whose files spell the same ids differently.
    """
    import pandas as pd

    ids, of = np.asarray(ids), np.asarray(of)
    if (ids.dtype.kind in "iu") != (of.dtype.kind in "iu"):
        if mixed == "unknown":
            return np.full(len(ids), -1, dtype=np.int64)
        ids, of = ids.astype(str).astype(object), of.astype(str).astype(object)
    return pd.Index(of).get_indexer(ids).astype(np.int64)


def one_kind(arrays: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Id arrays of one id space in one kind: unchanged when all hold integers or all text, else
    every one as text (7 -> "7"), for inputs whose files spell the same ids differently."""
    arrays = [np.asarray(a) for a in arrays]
    if len({a.dtype.kind in "iu" for a in arrays}) > 1:
        return [a.astype(str).astype(object) for a in arrays]
    return arrays
