"""Side information shown next to ids in the explorer: titles, genres, any column.

One table per embedding set, given on the command line as ``SET=PATH[:ID_COLUMN]``
(CSV or parquet), e.g. ``movies_item2vec=ml-latest-small/movies.csv:movieId``
(``embstore recall --metadata`` takes ``PATH[:ID_COLUMN]``). Without
``:ID_COLUMN`` the id column is ``id`` or ``item_id`` if present, else the first
column. Every other column is shown; a column named ``title``, ``name`` or
``label`` (else the first text column) labels items.

Title search matches words in any order and case, accents ignored, with a
trailing article read in front: "the matrix" finds "Matrix, The (1999)" first,
"star wars empire" finds "Star Wars: Episode V - The Empire Strikes Back (1980)".

Cells such as ``Adventure|Comedy`` are multi-valued (a text column where more
than 5% of cells contain ``|``). A map coloured by such a column uses each
cell's first listed value, or one chosen value against the rest
(``categories(column, value="Comedy")``); numeric columns with many values are
cut into quintiles.
"""

from __future__ import annotations

import re
import unicodedata
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
_WORD = re.compile(r"\w+")
# "Matrix, The (1999)" is read as "The Matrix (1999)"; articles of the languages MovieLens titles use
_TRAILING_ARTICLE = re.compile(
    r"^(?P<name>.+?), (?P<article>the|a|an|les|la|le|l'|los|las|el|il|lo|i|gli|das|der|die|den|det|de|het|een)"
    r"(?P<rest>\s*(\(.*\))?)$"
)
_YEAR = re.compile(r"\s*\(\d{4}(\s*-\s*\d{0,4})?\)\s*$")


def parse_metadata_arg(arg: str) -> tuple[str, Path, str | None]:
    """``SET=PATH[:ID_COLUMN]`` -> (set, path, id column or None)."""
    set_name, sep, rest = arg.partition("=")
    if not sep or not rest:
        raise ConfigError(f"--metadata {arg!r}: expected SET=PATH[:ID_COLUMN], e.g. movies=movies.csv:movieId")
    check_set_name(set_name)
    path, id_column = _path_and_column(rest, arg)
    return set_name, path, id_column


def parse_metadata_path(arg: str) -> tuple[Path, str | None]:
    """``PATH[:ID_COLUMN]`` -> (path, id column or None); a path that exists as given wins."""
    if not arg:
        raise ConfigError("--metadata '': expected PATH[:ID_COLUMN], e.g. movies.csv:movieId")
    return _path_and_column(arg, arg)


def _path_and_column(rest: str, arg: str) -> tuple[Path, str | None]:
    path, id_column = Path(rest), None
    if not path.exists() and ":" in rest:
        head, _, tail = rest.rpartition(":")
        path, id_column = Path(head), tail or None
    if not path.is_file():
        raise ConfigError(f"--metadata {arg!r}: file {path} not found")
    return path, id_column


def fold(text: str) -> str:
    """Lower case without accents: what title search compares."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def natural_title(title: str) -> str:
    """The folded title with a trailing article moved to the front: "Matrix, The (1999)" -> "the matrix (1999)"."""
    folded = fold(title).strip()
    m = _TRAILING_ARTICLE.match(folded)
    if m:
        return f"{m['article']} {m['name']}{m['rest']}"
    return folded


@dataclass
class Metadata:
    """A metadata table indexed by id, with lookups the explorer needs."""

    path: Path
    id_column: str
    frame: pd.DataFrame  # indexed by normalised id; columns are the shown columns
    title_column: str | None
    multi_columns: set[str] = field(default_factory=set)
    int_ids: bool = True
    _categories: dict[tuple[str, str | None], pd.Series] = field(default_factory=dict, repr=False)
    _colour_columns: list[str] | None = field(default=None, repr=False)
    _search: pd.DataFrame | None = field(default=None, repr=False)
    _values: dict[str, list[tuple[str, int]]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path, id_column: str | None = None, *, prepare_search: bool = True) -> "Metadata":
        """Read the table; ``prepare_search`` builds the title-search table now (the server does, so the
        first keystroke is fast) instead of on the first search."""
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
        if prepare_search:
            meta.search_table()
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

    def search_table(self) -> pd.DataFrame | None:
        """Per id, the folded title (``text``), its words between spaces (``spaced``, for word-prefix
        matches) and the natural reading with and without the year; built once."""
        if self._search is None and self.title_column is not None:
            titles = self.frame[self.title_column].astype(str)
            text = titles.map(fold)
            natural = titles.map(natural_title)
            natural_words = natural.map(lambda t: " ".join(_WORD.findall(t)))
            bare = natural.map(lambda t: " ".join(_WORD.findall(_YEAR.sub("", t))))
            self._search = pd.DataFrame({
                "title": titles,
                "text": text,
                "words": text.map(lambda t: " ".join(_WORD.findall(t))),
                "spaced": " " + natural_words + " ",
                "natural": natural_words,
                "bare": bare,
                "bare_name": text.map(lambda t: " ".join(_WORD.findall(_YEAR.sub("", t).split(", ")[0]))),
            }, index=self.frame.index)
        return self._search

    def search(self, query: str, limit: int = 10, allowed=None) -> list[tuple[Any, str]]:
        """Ids whose label matches ``query``, best first. Words match in any order and case, accents
        ignored. Ranks: the whole title (without its year; "Matrix, The" as "the matrix" or "matrix"), then
        titles that start with the query, then titles holding every word as a word start, then
        titles holding every word anywhere; shorter titles first within a rank.
        ``allowed(id) -> bool`` filters ids."""
        table = self.search_table()
        terms = words(query)
        if table is None or not terms:
            return []
        hits = np.ones(len(table), dtype=bool)
        for term in dict.fromkeys(terms):
            hits &= table["text"].str.contains(term, regex=False).to_numpy()
            if not hits.any():
                return []
        found = table[hits]
        phrase = " ".join(terms)
        word_start = np.ones(len(found), dtype=bool)
        for term in dict.fromkeys(terms):
            word_start &= found["spaced"].str.contains(" " + term, regex=False).to_numpy()
        exact = np.zeros(len(found), dtype=bool)
        for column in ("bare", "natural", "bare_name"):
            exact |= (found[column] == phrase).to_numpy()
        prefix = found["natural"].str.startswith(phrase).to_numpy() | found["words"].str.startswith(phrase).to_numpy()
        rank = np.where(exact, 0, np.where(prefix, 1, np.where(word_start, 2, 3)))
        order = np.lexsort((np.arange(len(found)), found["title"].str.len().to_numpy(), rank))
        out = []
        for row in order.tolist():
            plain = _plain(found.index[row])
            if allowed is not None and not allowed(plain):
                continue
            out.append((plain, found["title"].iat[row]))
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

    def is_numeric(self, column: str) -> bool:
        series = self.frame[column]
        return bool(pd.api.types.is_numeric_dtype(series) and series.nunique() > MAX_CATEGORIES)

    def values(self, column: str, limit: int = 60) -> list[tuple[str, int]]:
        """The values of a column with how many ids have each, most frequent first; every value
        of a multi-valued cell counts (``Comedy|Drama`` counts for both)."""
        self._check_column(column)
        if column not in self._values:
            series = self.frame[column].dropna().astype(str)
            if column in self.multi_columns:
                series = series.str.split(MULTI_SEPARATOR, regex=False).explode().str.strip()
            counts = series[series != ""].value_counts()
            self._values[column] = [(str(v), int(c)) for v, c in counts.items()]
        return self._values[column][:limit]

    def _check_column(self, column: str) -> None:
        if column not in self.frame.columns:
            raise ConfigError(f"metadata has no column {column!r}; columns: {', '.join(self.columns)}")

    def categories(self, column: str, value: str | None = None) -> pd.Series:
        """Per id, the colour category of ``column``: one of the most frequent (first) values or
        "other"; numeric columns are cut into quintiles. With ``value``: ``value`` where the cell is
        (or, multi-valued, contains) it, else ``not <value>``."""
        key = (column, value)
        cached = self._categories.get(key)
        if cached is not None:
            return cached
        self._check_column(column)
        series = self.frame[column]
        if value is not None:
            text = series.astype(str)
            if column in self.multi_columns:
                has = text.str.split(MULTI_SEPARATOR, regex=False).map(lambda parts: value in [p.strip() for p in parts])
            else:
                has = text == value
            cats = pd.Series(np.where(has.to_numpy(), value, f"not {value}"), index=series.index)
            cats = cats.where(series.notna(), "missing")
        elif self.is_numeric(column):
            bins = pd.qcut(series, 5, duplicates="drop")
            cats = bins.astype(str).where(series.notna(), "missing")
        else:
            values = self._first_values(column)
            top = values.value_counts().index[:MAX_CATEGORIES]
            cats = values.where(values.isin(top), "other")
        self._categories[key] = cats
        return cats

    def category_of(self, column: str, ids: list, value: str | None = None) -> list[str]:
        found = self.categories(column, value).reindex([self.key(i) for i in ids])
        return ["no metadata" if pd.isna(v) else v for v in found.tolist()]

    def colouring_note(self, column: str, value: str | None = None) -> str:
        """How the map's colours were chosen, for its legend."""
        if value is not None:
            how = "containing" if column in self.multi_columns else "equal to"
            return f"{column} {how} {value!r} against the rest"
        if self.is_numeric(column):
            return f"{column} in quintiles"
        if column in self.multi_columns:
            example = next((v for v in self.frame[column].astype(str) if MULTI_SEPARATOR in v), "a|b")
            first = example.split(MULTI_SEPARATOR)[0]
            return (f"first listed value of {column} ({example} counts as {first}); "
                    f"the {MAX_CATEGORIES} most frequent, the rest grey")
        return f"{column}: the {MAX_CATEGORIES} most frequent values, the rest grey"


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
