"""The explorer page: judge an embedding version by looking at it.

``GET /explorer?ref=movies@prod&q=Toy Story&k=10&n=500&index=exact&compare=movies@1&color=genres``
renders, on the server, the chosen item with its metadata, its k nearest
neighbours (``k`` up to 500) with scores, a histogram of the scores of its
``n`` nearest (default 500), the overlap between exact search and the
version's own index, an optional side-by-side comparison with a second version
(with the overlap of the two top-k lists), and a 2-D PCA map of a sample of the
version's vectors coloured by a metadata column (``color``; a multi-valued
column by each cell's first value, or ``color_value`` against the rest), with
the item and its neighbours highlighted.

``index=index`` (default) asks the version's own index, as recall does;
``index=exact`` searches the version's vectors by brute force with the
version's metric. Form values that are out of range or malformed give the page
with a message saying which value was used instead, never an error page.

The page works without JavaScript; a few lines of it add type-ahead
suggestions and submit on change. Nothing is fetched from the internet.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from embstore.caching import LRU
from embstore.errors import EmbstoreError, NotFoundError, UnknownIdsError
from embstore.ids import plain_list, typed_id
from embstore.linalg import unit_rows
from embstore.server.common import metric_of

HERE = Path(__file__).resolve().parent
K_DEFAULT = 10
K_MAX = 500
HIST_DEFAULT = 500
HIST_MIN = 10
HIST_MAX = 5000
HIST_BINS = 30
MAP_SAMPLE = 1500
SAMPLE_MIN, SAMPLE_MAX = 100, 20_000
INDEX_CHOICES = ("index", "exact")
MAP_SEED = 0
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
GREY = "#c8c8c8"


def static_app():
    from fastapi.staticfiles import StaticFiles

    return StaticFiles(directory=HERE / "static")


_templates = None


def _env():
    global _templates
    if _templates is None:
        import jinja2

        _templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _templates


# -- projections ------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """PCA of a seeded sample of a version's vectors: ``coords`` (s, 2) for ``rows``."""

    rows: np.ndarray
    coords: np.ndarray
    mean: np.ndarray
    components: np.ndarray  # (2, d)
    cosine: bool
    explained: tuple[float, float]

    def project(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float64)
        if self.cosine:
            x = unit_rows(x)
        return (x - self.mean) @ self.components.T


def pca_projection(vectors: np.ndarray, sample: int, cosine: bool, seed: int = MAP_SEED) -> Projection:
    n = len(vectors)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    x = np.asarray(vectors[rows], dtype=np.float64)
    if cosine:
        x = unit_rows(x)
    mean = x.mean(axis=0)
    centred = x - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])[:2]
    total = float((s ** 2).sum()) or 1.0
    explained = tuple(float(v) / total for v in (s[:2] ** 2)) + (0.0,) * max(0, 2 - len(s))
    return Projection(rows=rows, coords=centred @ components.T, mean=mean, components=components,
                      cosine=cosine, explained=explained[:2])


class Projections:
    """Projections cached per version (a version never changes once published)."""

    def __init__(self, size: int = 8):
        self._cache = LRU(size)

    def get(self, store, version, sample: int) -> Projection:
        cosine = metric_of(version) == "cosine"
        key = (version.storage_path, sample, cosine)
        return self._cache.get_or_build(key, lambda: pca_projection(store.load(version).vectors, sample, cosine))


class Norms:
    """Row norms of versions' vectors (for exact cosine and l2 search), cached per version."""

    def __init__(self, size: int = 8):
        self._cache = LRU(size)

    def get(self, store, version) -> np.ndarray:
        def build() -> np.ndarray:
            vectors = store.load(version).vectors
            out = np.empty(len(vectors), dtype=np.float64)
            for start in range(0, len(vectors), 65536):
                block = np.asarray(vectors[start:start + 65536], dtype=np.float64)
                out[start:start + len(block)] = np.sqrt((block * block).sum(axis=1))
            return out

        return self._cache.get_or_build(version.storage_path, build)


def exact_top(vectors: np.ndarray, norms: np.ndarray, query_row: int, n: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``n`` rows and scores for the vector at ``query_row`` (itself left out),
    with the scores the retriever contract gives: ip, cosine (similarities, best first) or l2
    (Euclidean distance, nearest first)."""
    q = np.asarray(vectors[query_row], dtype=np.float64)
    dots = np.asarray(vectors, dtype=np.float32) @ q.astype(np.float32)
    dots = dots.astype(np.float64)
    if metric == "cosine":
        qn = float(np.linalg.norm(q))
        scores = dots / np.where(norms > 0, norms, 1.0) / (qn if qn > 0 else 1.0)
        scores[norms == 0] = 0.0
    elif metric == "l2":
        scores = np.sqrt(np.maximum(norms ** 2 - 2 * dots + float(q @ q), 0.0))
    else:
        scores = dots
    key = scores.copy() if metric == "l2" else -scores  # ascending: best first
    key[query_row] = np.inf
    n = min(n, len(key) - 1)
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    top = np.argpartition(key, n - 1)[:n]
    top = top[np.lexsort((top, key[top]))]  # ties by row, so the order is reproducible
    return top.astype(np.int64), scores[top]


@dataclass
class Form:
    """The explorer's form, parsed; values that could not be used are replaced and explained."""

    ref: str | None = None
    q: str = ""
    id: str | None = None
    k: int = K_DEFAULT
    n: int = HIST_DEFAULT
    index: str = "index"
    compare: str | None = None
    color: str | None = None
    color_value: str | None = None
    sample: int = MAP_SAMPLE
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, params, k_max: int = K_MAX) -> "Form":
        """From query parameters (strings); never raises."""
        def text(name: str) -> str | None:
            value = params.get(name)
            return value.strip() if isinstance(value, str) and value.strip() else None

        form = cls(ref=text("ref"), q=(params.get("q") or "").strip(), id=text("id"), compare=text("compare"),
                   color=text("color"), color_value=text("color_value"))
        form.k = form._number(params.get("k"), "k", "number of results", K_DEFAULT, 1, k_max)
        form.n = form._number(params.get("n"), "n", "histogram depth", HIST_DEFAULT, HIST_MIN, HIST_MAX)
        form.sample = form._number(params.get("sample"), "sample", "map sample", MAP_SAMPLE, SAMPLE_MIN, SAMPLE_MAX)
        index = text("index") or "index"
        if index not in INDEX_CHOICES:
            form.problems.append(f"index must be 'index' (the version's own) or 'exact', got {index!r}; "
                                 "showing the version's index")
            index = "index"
        form.index = index
        return form

    def _number(self, raw: Any, name: str, what: str, default: int, lo: int, hi: int) -> int:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return default
        try:
            value = int(str(raw).strip())
        except ValueError:
            self.problems.append(f"{what} ({name}) must be a whole number from {lo} to {hi}, got {raw!r}; "
                                 f"showing {default}")
            return default
        if not lo <= value <= hi:
            used = min(max(value, lo), hi)
            self.problems.append(f"{what} ({name}) must be from {lo} to {hi}, got {value}; showing {used}")
            return used
        return value

    def link(self, **changes: Any) -> str:
        """A query string for this form with ``changes``; defaults are left out."""
        state = replace(self, problems=[])
        for key, value in changes.items():
            setattr(state, key, value)
        pairs = [("ref", state.ref), ("id", state.id), ("q", state.q if state.id is None else None),
                 ("k", state.k if state.k != K_DEFAULT else None),
                 ("n", state.n if state.n != HIST_DEFAULT else None),
                 ("index", state.index if state.index != "index" else None),
                 ("compare", state.compare), ("color", state.color), ("color_value", state.color_value),
                 ("sample", state.sample if state.sample != MAP_SAMPLE else None)]
        return "?" + urlencode([(k, str(v)) for k, v in pairs if v not in (None, "")])


def index_name(version, short: bool = False) -> tuple[str, bool]:
    """How the version's own index reads in the page (``short``: in the form), and whether it is
    exact: from the facts the store recorded at build (``metrics["index"]``: kind, exact,
    recall@10) when there are any, else from the retriever config."""
    facts = (version.metrics or {}).get("index")
    facts = facts if isinstance(facts, dict) else {}
    config = version.retriever_config or {}
    kind = str(facts.get("kind") or config.get("index") or "") or None
    exact = bool(facts.get("exact", kind == "flat"))
    name = " ".join(x for x in (version.retriever, kind) if x)
    if not kind:
        return name, exact
    detail = "exact" if exact else "approximate"
    recall = facts.get("recall@10")
    if short:
        return f"{name}, {detail}", exact
    if not exact and isinstance(recall, (int, float)):
        detail += f", recall@10 {recall:.2f} at build"
    return f"{name} ({detail})", exact


# -- pictures -------------------------------------------------------------------


def histogram(scores: list[float], cut: float | None, bins: int = HIST_BINS, width: int = 460,
              height: int = 180) -> dict | None:
    """Bars (svg geometry) of a score histogram; ``cut`` marks the k-th neighbour's score."""
    if not scores:
        return None
    values = np.asarray(scores, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5e-3, hi + 0.5e-3
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    left, right, top, bottom = 40, 10, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = int(counts.max()) or 1
    bar_w = plot_w / bins
    bars = []
    for i, c in enumerate(counts.tolist()):
        h = plot_h * c / peak
        bars.append({"x": left + i * bar_w, "y": top + plot_h - h, "w": max(bar_w - 1, 0.5), "h": h,
                     "count": c, "lo": float(edges[i]), "hi": float(edges[i + 1])})
    cut_x = None
    if cut is not None and lo <= cut <= hi:
        cut_x = left + plot_w * (cut - lo) / (hi - lo)
    return {"width": width, "height": height, "bars": bars, "lo": lo, "hi": hi, "peak": peak,
            "left": left, "top": top, "plot_w": plot_w, "plot_h": plot_h, "cut_x": cut_x, "n": len(values),
            "mid": (lo + hi) / 2}


def scatter(coords: np.ndarray, categories: list[str], labels: list[str], highlight: list[dict],
            legend: list[tuple[str, str]], width: int = 640, height: int = 440) -> dict:
    """Point geometry for the map; ``highlight`` items carry x, y (data space), kind and label."""
    pad = 14
    all_xy = np.vstack([coords] + [np.array([[h["x"], h["y"]]]) for h in highlight]) if len(coords) else \
        np.array([[h["x"], h["y"]] for h in highlight] or [[0.0, 0.0]])
    (x0, y0), (x1, y1) = all_xy.min(axis=0), all_xy.max(axis=0)
    sx = (width - 2 * pad) / ((x1 - x0) or 1.0)
    sy = (height - 2 * pad) / ((y1 - y0) or 1.0)
    colour = dict(legend)

    def place(x: float, y: float) -> tuple[float, float]:
        return pad + (x - x0) * sx, height - pad - (y - y0) * sy

    points = []
    for (x, y), cat, label in zip(coords.tolist(), categories, labels):
        px, py = place(x, y)
        points.append({"x": px, "y": py, "fill": colour.get(cat, GREY), "title": f"{label} · {cat}"})
    marks = []
    for h in highlight:
        px, py = place(h["x"], h["y"])
        marks.append({**h, "px": px, "py": py, "fill": colour.get(h.get("category"), GREY)})
    return {"width": width, "height": height, "points": points, "marks": marks}


# -- the page ---------------------------------------------------------------------


def _fmt_score(s: float) -> str:
    return f"{s:.4f}"


class Explorer:
    def __init__(self, service):
        self.service = service
        self.store = service.store
        self.projections = Projections()
        self.norms = Norms()
        self.k_max = min(K_MAX, service.max_k)

    def meta(self, set_name: str):
        return self.service.metadata.get(set_name)

    def ref_options(self) -> list[dict]:
        groups = []
        for name in self.store.sets():
            rows = [v for v in self.store.versions(name) if v.status == "published"]
            if not rows:
                continue
            options = [{"value": name, "label": f"{name} (latest: v{rows[-1].number})"}]
            aliased = sorted(((a, v.number) for v in rows for a in v.aliases))
            options += [{"value": f"{name}@{a}", "label": f"{name}@{a} → v{n}"} for a, n in aliased]
            options += [{"value": v.ref, "label": f"{v.ref} · {v.producer} · {v.created_at:%m-%d %H:%M}"}
                        for v in reversed(rows)]
            groups.append({"set": name, "options": options})
        return groups

    def find_item(self, version, meta, q: str, item_id: str | None) -> tuple[Any, list[tuple[Any, str]], str | None]:
        """(the item id or None, other matches, a message). ``id`` wins while ``q`` still names it."""
        loaded = self.store.load(version)
        known = lambda i: loaded.rows([i])[0].size > 0  # noqa: E731
        q = (q or "").strip()
        if item_id not in (None, ""):
            tid = typed_id(version.id_type, item_id)
            label = meta.label(tid) if meta else None
            if not q or q in (str(tid), label):
                if known(tid):
                    return tid, [], None
                return None, [], f"id {tid!r} is not in {version.ref}"
        if not q:
            return None, [], None
        tid = typed_id(version.id_type, q)
        if known(tid):
            return tid, [], None
        matches = meta.search(q, limit=8, allowed=known) if meta else []
        if not matches:
            hint = "" if meta else " (no metadata loaded for this set: search by id)"
            return None, [], f"no item in {version.ref} matches {q!r}{hint}"
        return matches[0][0], matches[1:], None

    def neighbours(self, version, item_id, n: int, index: str) -> tuple[list, list[float]]:
        """The ``n`` nearest of ``item_id``: from the version's own index (as recall answers) or
        by brute force over its vectors (``index="exact"``)."""
        if index != "exact":
            res = self.store.recall(version, ids=[item_id], k=n)[0]
            return res.ids, res.scores
        loaded = self.store.load(version)
        rows, missing = loaded.rows([item_id])
        if missing:
            raise UnknownIdsError(f"id {item_id!r} is not in {version.ref}", missing)
        found, scores = exact_top(loaded.vectors, self.norms.get(self.store, version), int(rows[0]), n,
                                  metric_of(version))
        return plain_list(loaded.ids[found]), [float(x) for x in scores]

    def rows_for(self, meta, ids: list, scores: list[float], other: set | None = None) -> list[dict]:
        out = []
        metas = meta.rows(ids) if meta else [None] * len(ids)
        for rank, (i, s, m) in enumerate(zip(ids, scores, metas), 1):
            label = (m or {}).get(meta.title_column) if meta and meta.title_column else None
            out.append({"rank": rank, "id": i, "label": label, "meta": m or {}, "score": _fmt_score(s),
                        "raw": s, "shared": other is not None and i in other})
        return out

    def render(self, form: Form) -> str:
        ctx: dict[str, Any] = {"groups": self.ref_options(), "form": form, "ref": form.ref, "q": form.q, "k": form.k,
                               "compare": form.compare, "color": form.color, "n_hist": form.n, "sample": form.sample,
                               "k_max": self.k_max, "hist_min": HIST_MIN, "hist_max": HIST_MAX,
                               "errors": list(form.problems), "link": form.link}
        if not ctx["groups"]:
            ctx["errors"].append("nothing is published yet: run `embstore run ...` and reload")
            return _env().get_template("explorer.html").render(**ctx)
        if not form.ref:  # the first set, at its prod alias when it has one
            values = [o["value"] for o in ctx["groups"][0]["options"]]
            form.ref = next((v for v in values if v.endswith("@prod")), values[0])
            ctx["ref"] = form.ref
        try:
            version = self.store.resolve(form.ref)
        except EmbstoreError as exc:
            ctx["errors"].append(str(exc))
            return _env().get_template("explorer.html").render(**ctx)
        meta = self.meta(version.set)
        own_index, own_exact = index_name(version)
        ctx.update(version=version, metric=metric_of(version), meta=meta,
                   set_versions=self.store.versions(version.set), own_index=own_index, own_exact=own_exact,
                   own_index_short=index_name(version, short=True)[0],
                   columns=[c for c in (meta.columns if meta else []) if c != meta.title_column],
                   colour_columns=meta.colour_columns() if meta else [])
        self._colouring(form, meta, ctx)
        try:
            item, others, message = self.find_item(version, meta, form.q, form.id)
        except EmbstoreError as exc:
            item, others, message = None, [], str(exc)
        if message:
            ctx["errors"].append(message)
        ctx["others"] = [{"id": i, "label": lab} for i, lab in others]
        ids, scores = [], []
        k = form.k
        if item is not None:
            form.id = str(item)
            ctx["item"] = {"id": item, "label": meta.label(item) if meta else None,
                           "meta": (meta.row(item) or {}) if meta else {}}
            form.q = ctx["q"] = ctx["item"]["label"] or str(item)
            ids, scores = self.neighbours(version, item, max(k, form.n), form.index)
            cut = scores[k - 1] if len(scores) >= k else None
            ctx["hist"] = histogram(scores[:form.n], cut)
            ctx["short_of"] = self.short_of(version, len(ids), k, form)
            ctx["exactness"] = self.exactness(version, meta, item, k, ids[:k], form.index)
        else:
            form.id = None
            ctx["examples"] = self.examples(version, meta)
        top = ids[:k]
        if form.compare and item is not None:
            ctx["cmp"] = self.comparison(version, meta, form.compare, item, k, top, scores[:k], form.index)
        ctx["rows"] = self.rows_for(meta, top, scores[:k])
        try:
            ctx["map"] = self.map(version, meta, form.color, form.color_value, item, top, form.sample)
        except EmbstoreError as exc:
            ctx["errors"].append(f"map: {exc}")
        return _env().get_template("explorer.html").render(**ctx)

    @staticmethod
    def short_of(version, got: int, k: int, form: Form) -> str | None:
        """Say so when the search returned fewer neighbours than the form asked for and the version has."""
        others = max((version.count or 0) - 1, 0)
        wanted = min(max(k, form.n), others)
        if got >= wanted:
            return None
        hint = "" if form.index == "exact" else " (an approximate index can return fewer; choose exact to see all)"
        return f"asked for {wanted:,} of {others:,} other vectors; the search returned {got:,}{hint}"

    def _colouring(self, form: Form, meta, ctx: dict) -> None:
        """Settle the map's colour column and value (unknown ones fall back, with a message)."""
        columns = ctx["colour_columns"]
        if not meta or not columns:
            form.color = form.color_value = None
            ctx["color"] = None
            return
        if form.color is not None and form.color not in columns:
            ctx["errors"].append(f"no metadata column {form.color!r} to colour the map by; "
                                 f"columns: {', '.join(columns)}")
            form.color_value = None
        if form.color not in columns:
            form.color = columns[0]
        ctx["color"] = form.color
        numeric = meta.is_numeric(form.color)
        ctx["color_values"] = [] if numeric else meta.values(form.color)
        ctx["color_multi"] = form.color in meta.multi_columns
        known = {v for v, _ in meta.values(form.color, None)} if not numeric else set()
        if form.color_value is not None and form.color_value not in known:
            ctx["errors"].append(f"{form.color} has no value {form.color_value!r}; colouring by "
                                 + ("quintiles" if numeric else "the most frequent values"))
            form.color_value = None

    def exactness(self, version, meta, item, k: int, top: list, index: str) -> dict:
        """The overlap of the version's own index and exact search in the top k."""
        other = "exact" if index != "exact" else "index"
        ids, _ = self.neighbours(version, item, k, other)
        exact_ids, index_ids = (ids, top) if other == "exact" else (top, ids)
        shared = set(exact_ids) & set(index_ids)
        missed = [i for i in exact_ids if i not in shared]
        label = (lambda i: (meta.label(i) if meta else None) or str(i))
        return {"shared": len(shared), "k": min(k, len(exact_ids)) or k, "recall": len(shared) / max(len(exact_ids), 1),
                "missed": [{"id": i, "label": label(i)} for i in missed]}

    def examples(self, version, meta, n: int = 6) -> list[dict]:
        loaded = self.store.load(version)
        rng = np.random.default_rng(1)
        rows = rng.choice(len(loaded.ids), size=min(n, len(loaded.ids)), replace=False)
        ids = plain_list(loaded.ids[rows])
        return [{"id": i, "label": (meta.label(i) if meta else None) or str(i)} for i in ids]

    def comparison(self, version, meta, compare: str, item, k: int, top: list, top_scores: list,
                   index: str = "index") -> dict:
        out: dict[str, Any] = {"ref": compare}
        try:
            other = self.store.resolve(compare)
            out["version"] = other
            ids, scores = self.neighbours(other, item, k, index)
        except UnknownIdsError:
            out["error"] = f"{compare} has no item {item!r}"
            return out
        except EmbstoreError as exc:
            out["error"] = str(exc)
            return out
        shared = set(top) & set(ids)
        union = set(top) | set(ids)
        out.update(
            ids=ids,
            rows_a=self.rows_for(meta, top, top_scores, set(ids)),
            rows=self.rows_for(self.meta(other.set) or meta, ids, scores, set(top)),
            shared=len(shared), k=k, jaccard=len(shared) / len(union) if union else 1.0,
            same=other.storage_path == version.storage_path,
            dims=(version.dim, other.dim),
        )
        return out

    def map(self, version, meta, color: str | None, value: str | None, item, top: list, sample: int) -> dict:
        proj = self.projections.get(self.store, version, sample)
        loaded = self.store.load(version)
        sample_ids = loaded.ids[proj.rows].tolist()
        note = None
        if meta and color:
            sample_cats = meta.category_of(color, sample_ids, value)
            labels = [lab or str(i) for i, lab in zip(sample_ids, meta.labels(sample_ids))]
            if value is not None:
                legend_names = [value, f"not {value}", "missing", "no metadata"]
            else:
                cats = meta.categories(color)
                order = [c for c in cats.value_counts().index.tolist() if c not in ("other", "missing")]
                if meta.is_numeric(color):
                    order = sorted(order, key=_interval_start)
                legend_names = order + ["other", "missing", "no metadata"]
            note = meta.colouring_note(color, value)
        else:
            legend_names, sample_cats, labels = ["all"], ["all"] * len(sample_ids), [str(i) for i in sample_ids]
        grey = {"other", "missing", "no metadata"} | ({f"not {value}"} if value is not None else set())
        legend, j = [], 0
        for name in legend_names:
            if name in grey or j >= len(PALETTE):
                legend.append((name, GREY))
            else:
                legend.append((name, PALETTE[j]))
                j += 1
        highlight = []
        if item is not None:
            hl_ids = [item] + list(top)
            vecs = self.store.vectors(version, hl_ids).matrix
            xy = proj.project(vecs)
            hl_cats = meta.category_of(color, hl_ids, value) if meta and color else ["all"] * len(hl_ids)
            for j, (i, (x, y), cat) in enumerate(zip(hl_ids, xy.tolist(), hl_cats)):
                label = (meta.label(i) if meta else None) or str(i)
                highlight.append({"id": i, "x": x, "y": y, "kind": "item" if j == 0 else "neighbour",
                                  "rank": j, "label": label, "category": cat})
            highlight.reverse()  # the item is drawn last, on top
        counts: dict[str, int] = {}
        for c in sample_cats:
            counts[c] = counts.get(c, 0) + 1
        present = set(counts) | {h["category"] for h in highlight}
        geometry = scatter(proj.coords, sample_cats, labels, highlight, legend)
        geometry["legend"] = [(n, c, counts.get(n, 0)) for n, c in legend if n in present]
        geometry["explained"] = [round(100 * e, 1) for e in proj.explained]
        geometry["sample"] = len(proj.rows)
        geometry["total"] = len(loaded.ids)
        geometry["color"] = color
        geometry["value"] = value
        geometry["note"] = note
        return geometry

    def suggest(self, ref: str, q: str, limit: int) -> list[dict]:
        version = self.store.resolve(ref)
        meta = self.meta(version.set)
        loaded = self.store.load(version)
        known = lambda i: loaded.rows([i])[0].size > 0  # noqa: E731
        out = []
        tid = typed_id(version.id_type, q.strip())
        if q.strip() and known(tid):
            out.append({"id": tid, "label": (meta.label(tid) if meta else None) or str(tid)})
        if meta:
            out += [{"id": i, "label": lab} for i, lab in meta.search(q, limit=limit, allowed=known) if i != tid]
        return out[:limit]


def _interval_start(label: str) -> float:
    try:
        return float(label.strip("([").split(",")[0])
    except ValueError:
        return float("inf")


def explorer_router(service) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    explorer = Explorer(service)

    @router.get("/explorer", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        """Every parameter is read as text and checked here, so a bad value gives the page with a
        message (never a JSON validation error): ref, q, id, k, n, index, compare, color,
        color_value, sample."""
        form = Form.parse(request.query_params, explorer.k_max)
        return HTMLResponse(explorer.render(form))

    @router.get("/explorer/suggest")
    def suggest(ref: str = Query(...), q: str = Query(""), limit: int = Query(8, ge=1, le=50)) -> JSONResponse:
        if not q.strip():
            return JSONResponse([])
        try:
            return JSONResponse(explorer.suggest(ref, q, limit))
        except NotFoundError:
            return JSONResponse([])

    return router
