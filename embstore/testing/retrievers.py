"""The retriever contract: ``RetrieverSubject``, its ``check_*`` functions, and ``check_retriever``.

Each metric the Config allows (ip, cosine, l2) gets its own build and search
checks, built once per metric on the subject (``subject.results(metric)``).
Approximate indexes are held to near-exact answers on this small data: the
top-1 of a stored vector must be itself and recall@10 against exact search at least 0.9.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np

from embstore.config import PluginConfig
from embstore.errors import ConfigError, EmbstoreError
from embstore.retriever import Retriever, RetrieverConfig
from embstore.testing.common import PluginSubject, check_is_subclass, check_name, config_checks
from embstore.testing.data import make_vectors
from embstore.testing.runner import BoundCheck, Check, ConformanceReport, Failed, Skip, check, describe
from embstore.testing.runner import finish, run_checks

METRICS = ("ip", "cosine", "l2")


def _metric_scores(metric: str, queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Exact scores of every stored row for each query: similarity (ip, cosine) or distance (l2)."""
    q, x = queries.astype(np.float64), stored.astype(np.float64)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if metric == "l2":
        sq = (q ** 2).sum(1)[:, None] + (x ** 2).sum(1)[None, :] - 2 * q @ x.T
        return np.sqrt(np.maximum(sq, 0))
    return q @ x.T


def _better_first(metric: str, scores: np.ndarray) -> bool:
    """Scores of one result row are ordered best first (small tolerance for float noise)."""
    s = scores.astype(np.float64)
    if s.size < 2:
        return True
    with np.errstate(invalid="ignore"):
        step = np.diff(s)
    tol = 1e-5 * max(1.0, float(np.max(np.abs(s[np.isfinite(s)]))) if np.isfinite(s).any() else 1.0)
    with np.errstate(invalid="ignore"):
        ok = step >= -tol if metric == "l2" else step <= tol
    # infinities on both sides give NaN steps: equal padding scores are in order
    both_inf = np.isinf(s[1:]) & np.isinf(s[:-1]) & (np.sign(s[1:]) == np.sign(s[:-1]))
    return bool((ok | both_inf).all())


class RetrieverSubject(PluginSubject):
    """A Retriever class under test: its config per metric, the data, and one index per metric.

    n, dim: size of the generated unit-length vectors (``make_vectors``); seed: their seed.
    """

    kind: ClassVar[str] = "retriever"
    base: ClassVar[type] = Retriever
    config_base: ClassVar[type[PluginConfig]] = RetrieverConfig
    example_name: ClassVar[str] = "faiss"
    k: ClassVar[int] = 10

    def __init__(self, cls: Any, config: Mapping[str, Any] | None = None, *, n: int = 120, dim: int = 16,
                 seed: int = 0, workdir: str | Path | None = None) -> None:
        super().__init__(cls, config, workdir=workdir)
        self.vectors = make_vectors(n, dim, seed=seed)
        self.queries = np.concatenate([self.vectors[:10], make_vectors(5, dim, seed=seed + 2)])
        self.rng = np.random.default_rng(seed + 1)

    @property
    def metrics(self) -> list[str]:
        """The metrics the Config accepts, in the order of METRICS."""
        return self.needs(check_metrics)

    def allows(self, metric: str) -> bool:
        """Whether the metric's checks apply; False also when that cannot be told."""
        try:
            return metric in self.outcome(self.bind(check_metrics))
        except Exception:
            return False

    def metric_config(self, metric: str) -> Any:
        return self.parse({**self.values, "metric": metric})

    def built(self, metric: str) -> tuple[Retriever, np.ndarray, np.ndarray]:
        """The index built over ``vectors`` with this metric, and its rows and scores for ``queries``."""
        return self.needs(check_build, metric=metric)

    def results(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores for ``queries``, once they have the right shapes and dtypes."""
        return self.needs(check_shapes, metric=metric)

    @property
    def first_metric(self) -> str:
        """The metric the edge cases use, once its searches have the right shapes."""
        metric = self.metrics[0]
        self.results(metric)
        return metric


# --------------------------------------------------------------------------- config


@check("config: supports at least one metric")
def check_metrics(s: RetrieverSubject) -> list[str]:
    s.needs(check_name)
    s.config
    allowed = []
    for metric in METRICS:
        try:
            s.metric_config(metric)
            allowed.append(metric)
        except ConfigError:
            continue
    if not allowed:
        raise Failed("the Config accepts none of the metrics ip, cosine, l2")
    return allowed


@check("search ({metric})")
def check_metric_allowed(s: RetrieverSubject, metric: str) -> None:
    """Stands in for a metric's checks when the Config does not allow the metric."""
    if metric not in s.metrics:
        raise Skip("the Config does not allow this metric")


# --------------------------------------------------------------------------- per metric


@check("build ({metric})")
def check_build(s: RetrieverSubject, metric: str) -> tuple[Retriever, np.ndarray, np.ndarray]:
    s.metrics
    index = s.cls(s.metric_config(metric))
    before_v, before_q = s.vectors.copy(), s.queries.copy()
    index.build(s.vectors)
    rows, scores = index.search(s.queries, s.k)
    if not (np.array_equal(s.vectors, before_v) and np.array_equal(s.queries, before_q)):
        raise Failed("build or search modified the caller's array (normalise a copy)")
    return index, rows, scores


def _shape_problem(rows: np.ndarray, scores: np.ndarray, q: int, k: int, n: int) -> str | None:
    """What is wrong with the shapes, dtypes and range of one search's results, if anything."""
    if rows.shape != (q, k) or scores.shape != (q, k):
        return (f"search({q} queries, k={k}) must return two ({q}, {k}) arrays, "
                f"got rows {rows.shape} and scores {scores.shape}")
    if rows.dtype.kind not in "iu":
        return f"rows must be integers, got dtype {rows.dtype}"
    if scores.dtype.kind != "f":
        return f"scores must be floats, got dtype {scores.dtype}"
    if ((rows < -1) | (rows >= n)).any():
        return f"rows must be in [0, {n}) or -1 for an empty slot, found {rows[(rows < -1) | (rows >= n)][:3]}"
    return None


@check("search: shapes and dtypes ({metric})")
def check_shapes(s: RetrieverSubject, metric: str) -> tuple[np.ndarray, np.ndarray]:
    _, rows, scores = s.built(metric)
    rows, scores = np.asarray(rows), np.asarray(scores)
    problem = _shape_problem(rows, scores, s.queries.shape[0], s.k, s.vectors.shape[0])
    if problem:
        raise Failed(problem)
    for i, row in enumerate(rows):
        real = row[row >= 0]
        if len(np.unique(real)) != len(real):
            raise Failed(f"query {i} lists a row twice: {row.tolist()}")
        if (row[: len(real)] < 0).any():
            raise Failed(f"query {i}: empty slots (-1) must come after every hit, got {row.tolist()}")
    if np.isnan(scores).any():
        raise Failed("scores contain NaN")
    return rows, scores


@check("search: best first ({metric})")
def check_best_first(s: RetrieverSubject, metric: str) -> None:
    _, scores = s.results(metric)
    for i, row in enumerate(scores):
        if not _better_first(metric, row):
            better = "lower distances" if metric == "l2" else "higher scores"
            raise Failed(f"query {i}: results are not best first ({better} first): {np.round(row, 4).tolist()}")


@check("search: scores follow the metric ({metric})")
def check_scores_match(s: RetrieverSubject, metric: str) -> None:
    rows, scores = s.results(metric)
    scores = scores.astype(np.float64)
    exact = _metric_scores(metric, s.queries, s.vectors)
    hit = rows >= 0
    want = np.take_along_axis(exact, np.where(hit, rows, 0), axis=1)
    bad = hit & ~np.isclose(scores, want, rtol=1e-3, atol=1e-3)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        what = {"ip": "the inner product", "cosine": "the cosine similarity",
                "l2": "the Euclidean distance (not squared)"}[metric]
        raise Failed(f"query {i}, row {rows[i, j]}: score {scores[i, j]:.5f}, expected {what} "
                     f"{want[i, j]:.5f}")


@check("search: a stored vector is its own top-1 ({metric})")
def check_top1(s: RetrieverSubject, metric: str) -> None:
    rows, _ = s.results(metric)
    wrong = [i for i in range(10) if rows[i, 0] != i]
    if wrong:
        i = wrong[0]
        raise Failed(f"a query equal to stored row {i} found row {rows[i, 0]} first "
                     f"({len(wrong)} of 10 stored vectors are not their own top-1)")


@check("search: recall@10 against exact search ({metric})")
def check_recall(s: RetrieverSubject, metric: str) -> None:
    rows, _ = s.results(metric)
    k = s.k
    exact = _metric_scores(metric, s.queries, s.vectors)
    order = np.argsort(exact, axis=1) if metric == "l2" else np.argsort(-exact, axis=1)
    truth = order[:, :k]
    found = np.mean([len(set(rows[i].tolist()) & set(truth[i].tolist())) / k for i in range(len(rows))])
    if found < 0.9:
        raise Failed(f"recall@{k} against exact search is {found:.2f} on {len(s.vectors)} vectors; "
                     "expected >= 0.9")


def _saved_files(index: Retriever, directory: Path) -> None:
    """Save ``index`` into ``directory``; Failed unless it lists the files it wrote there."""
    directory.mkdir(parents=True, exist_ok=True)
    written = index.save(directory)
    if not isinstance(written, (list, tuple)) or not written:
        raise Failed(f"save must return the list of files it wrote (they get checksums), got {written!r}")
    for path in map(Path, written):
        if not path.is_file():
            raise Failed(f"save listed {path}, which is not a file")
        try:
            path.resolve().relative_to(directory.resolve())
        except ValueError:
            raise Failed(f"save wrote {path} outside the directory it was given ({directory})") from None


@check("save/load: same results after a round trip ({metric})")
def check_save_load(s: RetrieverSubject, metric: str) -> None:
    rows, scores = s.results(metric)
    index, _, _ = s.built(metric)
    directory = s.root / metric
    _saved_files(index, directory)
    loaded = s.cls.load(directory, s.metric_config(metric))
    if not isinstance(loaded, s.cls):
        raise Failed(f"load must return a {s.cls.__name__}, got {type(loaded).__name__}")
    again_rows, again_scores = loaded.search(s.queries, s.k)
    if not np.array_equal(np.asarray(again_rows), rows):
        raise Failed("after save and load, search returns different rows")
    if not np.allclose(np.asarray(again_scores), scores, rtol=1e-5, atol=1e-6, equal_nan=True):
        raise Failed("after save and load, search returns different scores")


@check("search_rows: what search gives for the stored rows ({metric})")
def check_search_rows(s: RetrieverSubject, metric: str) -> None:
    index, rows, scores = s.built(metric)
    stored = np.arange(10, dtype=np.int64)  # queries[:10] are vectors[:10]
    found = index.search_rows(stored, s.k)
    if found is None:  # optional: the store then passes the vectors to search
        return
    got_rows, got_scores = (np.asarray(a) for a in found)
    problem = _shape_problem(got_rows, got_scores, len(stored), s.k, s.vectors.shape[0])
    if problem:
        raise Failed(f"search_rows: {problem}")
    if not np.array_equal(got_rows, rows[:10]) or not np.allclose(got_scores, scores[:10], rtol=1e-5, atol=1e-6):
        i = int(np.flatnonzero((got_rows != rows[:10]).any(axis=1) | ~np.isclose(got_scores, scores[:10]).all(axis=1))[0])
        raise Failed(f"search_rows for stored row {i} gave rows {got_rows[i].tolist()}, but search of that vector "
                     f"gives {rows[i].tolist()}")


PER_METRIC = (check_build, check_shapes, check_best_first, check_scores_match, check_top1, check_recall,
              check_search_rows, check_save_load)


# --------------------------------------------------------------------------- edge cases


@check("search: k larger than the index pads with -1")
def check_padding(s: RetrieverSubject) -> None:
    metric = s.first_metric
    few = s.vectors[:5]
    index = s.cls(s.metric_config(metric))
    index.build(few)
    rows, scores = (np.asarray(a) for a in index.search(few[:2], 8))
    if rows.shape != (2, 8) or scores.shape != (2, 8):
        raise Failed(f"search(k=8) over 5 vectors must return (2, 8) arrays, got {rows.shape}, {scores.shape}")
    for i in range(2):
        if sorted(rows[i, :5].tolist()) != [0, 1, 2, 3, 4] or (rows[i, 5:] != -1).any():
            raise Failed(f"k=8 over 5 vectors: expected the 5 rows then -1 -1 -1, got {rows[i].tolist()}")
        if np.isnan(scores[i]).any() or not _better_first(metric, scores[i]):
            raise Failed(f"padding scores must not be NaN nor outrank a hit: {scores[i].tolist()}")


@check("search: dimension mismatch raises")
def check_dimension_mismatch(s: RetrieverSubject) -> None:
    index = s.cls(s.metric_config(s.first_metric))
    index.build(s.vectors)
    dim = s.vectors.shape[1]
    wrong = s.rng.normal(size=(2, dim + 1)).astype(np.float32)
    try:
        index.search(wrong, 3)
    except (ValueError, EmbstoreError):
        return
    except Exception as exc:
        raise Failed(f"queries of the wrong dimension raised {describe(exc)}; raise a ValueError "
                     "or EmbstoreError naming both dimensions") from None
    raise Failed(f"queries of dimension {dim + 1} against an index of dimension {dim} did not raise")


# --------------------------------------------------------------------------- the whole contract


def retriever_suite(s: RetrieverSubject) -> Iterator[Check]:
    """Every check of the retriever contract for this subject, in report order."""
    yield s.bind(check_is_subclass)
    if not s.is_subclass:
        return
    yield s.bind(check_name)
    yield from config_checks(s)
    yield s.bind(check_metrics)
    for metric in METRICS:
        if s.allows(metric):
            yield from (s.bind(fn, metric=metric) for fn in PER_METRIC)
        else:
            yield s.bind(check_metric_allowed, metric=metric)
    if any(s.allows(metric) for metric in METRICS):
        yield s.bind(check_padding)
        yield s.bind(check_dimension_mismatch)


def retriever_checks(retriever: type[Retriever], config: Mapping[str, Any] | None = None, *,
                     n: int = 120, dim: int = 16, seed: int = 0,
                     workdir: str | Path | None = None) -> Iterator[tuple[str, BoundCheck]]:
    """(test id, check) for each check of ``retriever``; calling a check runs it (see BoundCheck).

    The checks share one subject, so each metric's index is built once between them.
    Arguments as for ``check_retriever``. Which metrics get checks is decided here, from the Config.
    """
    subject = RetrieverSubject(retriever, config, n=n, dim=dim, seed=seed, workdir=workdir)
    for chk in retriever_suite(subject):
        bound = BoundCheck(subject, chk)
        yield bound.id, bound


def check_retriever(retriever: type[Retriever], config: Mapping[str, Any] | None = None, *,
                    n: int = 120, dim: int = 16, seed: int = 0,
                    workdir: str | Path | None = None) -> ConformanceReport:
    """Run a Retriever class through the whole contract; raise ConformanceError listing every failure.

    retriever: the Retriever subclass (not an instance).
    config:    config values over ``conformance_config`` and the defaults; ``metric`` is set by the
               kit to each metric the Config allows (ip, cosine, l2).
    n, dim:    size of the generated unit-length vectors (``make_vectors``).
    workdir:   where save/load writes (a temporary directory by default).

    Approximate indexes are held to near-exact answers on this small data: the
    top-1 of a stored vector must be itself and recall@10 against exact search at least 0.9.
    """
    subject = RetrieverSubject(retriever, config, n=n, dim=dim, seed=seed, workdir=workdir)
    with subject:
        return finish(run_checks(subject, retriever_suite(subject)))
