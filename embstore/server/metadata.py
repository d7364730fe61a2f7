"""Side information shown next to ids in the explorer: titles, genres, any column.

One table per embedding set, given on the command line as ``SET=PATH[:ID_COLUMN]``
(CSV or parquet), e.g. ``movies_item2vec=ml-latest-small/movies.csv:movieId``.
Without ``:ID_COLUMN`` the id column is ``id`` or ``item_id`` if present, else
the first column. Every other column is shown; a column named ``title`` or
``name`` (else the first text column) labels items; cells such as
``Adventure|Comedy`` are multi-valued, and colouring uses their first value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embstore.errors import ConfigError
from embstore.refs import check_set_name

MULTI_SEPARATOR = "|"
MAX_CATEGORIES = 9  # colours for the most frequent values; the rest are "other"
_ID_CANDIDATES = ("id", "item_id")
_TITLE_CANDIDATES = ("title", "name", "label")


def parse_metadata_arg(arg: str) -> tuple[str, Path, str | None]:
    """``SET=PATH[:ID_COLUMN]`` -> (set, path, id column or None)."""
    set_name, sep, rest = arg.partition("=")
    if not sep or not rest:
        raise ConfigError(f"--metadata {arg!r}: expected SET=PATH[:ID_COLUMN], e.g. movies=movies.csv:movieId")
    check_set_name(set_name)
    path, id_column = Path(rest), None
    if not path.exists() and ":" in rest:
        head, _, tail = rest.rpartition(":")
        path, id_column = Path(head), tail or None
    if not path.is_file():
        raise ConfigError(f"--metadata {arg!r}: file {path} not found")
    return set_name, path, id_column


@dataclass
class Metadata:
    """A metadata table indexed by id, with lookups the explorer needs."""

    path: Path
    id_column: str
    frame: pd.DataFrame  # indexed by normalised id; columns are the shown columns
    title_column: str | None
    multi_columns: set[str] = field(default_factory=set)
    int_ids: bool = True
    _categories: dict[str, pd.Series] = field(default_factory=dict, repr=False)
    _colour_columns: list[str] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path, id_column: str | None = None) -> "Metadata":
        path = Path(path)
        name = path.name.lower()
        try:
            if name.endswith((".parquet", ".pq")):
                frame = pd.read_parquet(path)
            elif name.endswith((".csv", ".csv.gz")):
                frame = pd.read_csv(path, low_memory=False)
            else:
                raise ConfigError(f"metadata file {path} must be .csv, .csv.gz or .parquet")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read metadata file {path}: {exc}") from None
        if frame.empty or len(frame.columns) < 1:
            raise ConfigError(f"metadata file {path} has no rows")
        if id_column is None:
            id_column = next((c for c in _ID_CANDIDATES if c in frame.columns), frame.columns[0])
        if id_column not in frame.columns:
            raise ConfigError(
                f"metadata file {path} has no column {id_column!r}; columns: {', '.join(map(str, frame.columns))}"
            )
        ids = frame[id_column]
        int_ids = pd.api.types.is_integer_dtype(ids)
        if not int_ids:
            ids = ids.astype(str).str.strip()
        frame = frame.drop(columns=[id_column])
        frame.index = pd.Index(ids, name=id_column)
        frame = frame[~frame.index.duplicated(keep="first")]
        text_columns = [c for c in frame.columns if frame[c].dtype == object]
        title = next((c for c in frame.columns if str(c).lower() in _TITLE_CANDIDATES), None)
        if title is None and text_columns:
            title = text_columns[0]
        multi = {
            c for c in text_columns
            if c != title and frame[c].astype(str).str.contains(MULTI_SEPARATOR, regex=False).mean() > 0.05
        }
        meta = cls(path=path, id_column=str(id_column), frame=frame, title_column=title,
                   multi_columns=multi, int_ids=int_ids)
        meta.colour_columns()  # computed once, at start-up
        return meta

    # -- lookups -------------------------------------------------------------

    def key(self, item_id: Any) -> Any:
        if self.int_ids:
            try:
                return int(item_id)
            except (TypeError, ValueError):
                return None
        return str(item_id)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def row(self, item_id: Any) -> dict[str, Any] | None:
        key = self.key(item_id)
        if key is None or key not in self.frame.index:
            return None
        values = self.frame.loc[key]
        return {str(c): _plain(values[c]) for c in self.frame.columns}

    def rows(self, ids: list) -> list[dict[str, Any] | None]:
        return [self.row(i) for i in ids]

    def label(self, item_id: Any) -> str | None:
        if self.title_column is None:
            return None
        row = self.row(item_id)
        value = row.get(self.title_column) if row else None
        return None if value is None else str(value)

    def labels(self, ids: list) -> list[str | None]:
        """Labels of many ids at once (None where unknown)."""
        if self.title_column is None:
            return [None] * len(ids)
        found = self.frame[self.title_column].reindex([self.key(i) for i in ids])
        return [None if pd.isna(v) else str(v) for v in found.tolist()]

    def search(self, query: str, limit: int = 10, allowed=None) -> list[tuple[Any, str]]:
        """Ids whose label matches ``query`` best first: exact, then prefix, then substring;
        shorter labels first within each group. ``allowed(id) -> bool`` filters ids."""
        query = query.strip().lower()
        if not query or self.title_column is None:
            return []
        titles = self.frame[self.title_column].astype(str)
        lower = titles.str.lower()
        hits = lower.str.contains(query, regex=False)
        if not hits.any():
            return []
        found = lower[hits]
        rank = np.where(found == query, 0, np.where(found.str.startswith(query), 1, 2))
        order = pd.DataFrame({"rank": rank, "length": found.str.len().to_numpy(), "pos": np.arange(len(found))},
                             index=found.index).sort_values(["rank", "length", "pos"])
        out = []
        for item_id in order.index:
            plain = _plain(item_id)
            if allowed is not None and not allowed(plain):
                continue
            out.append((plain, titles.loc[item_id]))
            if len(out) >= limit:
                break
        return out

    # -- colouring -----------------------------------------------------------

    def colour_columns(self) -> list[str]:
        """Columns worth colouring a map by: few distinct (first) values, or numeric."""
        if self._colour_columns is not None:
            return self._colour_columns
        out = []
        for c in self.frame.columns:
            if c == self.title_column:
                continue
            series = self.frame[c]
            if pd.api.types.is_numeric_dtype(series) and series.nunique() > 1:
                out.append(str(c))
            elif self._first_values(str(c)).nunique() <= 200:
                out.append(str(c))
        self._colour_columns = out
        return out

    def _first_values(self, column: str) -> pd.Series:
        series = self.frame[column]
        if column in self.multi_columns:
            return series.astype(str).str.split(MULTI_SEPARATOR, regex=False).str[0]
        return series.astype(str)

    def categories(self, column: str) -> pd.Series:
        """Per id, the colour category of ``column``: one of the most frequent values or "other".
        Numeric columns are cut into quintiles."""
        cached = self._categories.get(column)
        if cached is not None:
            return cached
        if column not in self.frame.columns:
            raise ConfigError(f"metadata has no column {column!r}; columns: {', '.join(self.columns)}")
        series = self.frame[column]
        if pd.api.types.is_numeric_dtype(series) and series.nunique() > MAX_CATEGORIES:
            bins = pd.qcut(series, 5, duplicates="drop")
            cats = bins.astype(str).where(series.notna(), "missing")
        else:
            values = self._first_values(column)
            top = values.value_counts().index[:MAX_CATEGORIES]
            cats = values.where(values.isin(top), "other")
        self._categories[column] = cats
        return cats

    def category_of(self, column: str, ids: list) -> list[str]:
        found = self.categories(column).reindex([self.key(i) for i in ids])
        return ["no metadata" if pd.isna(v) else v for v in found.tolist()]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
