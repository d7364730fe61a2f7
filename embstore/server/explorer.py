"""The explorer page: judge an embedding version by looking at it.

``GET /explorer?ref=movies@prod&q=Toy Story&k=10&compare=movies@1&color=genres``
renders, on the server, the chosen item with its metadata, its k nearest
neighbours with scores, a histogram of the scores of its nearest few hundred,
an optional side-by-side comparison with a second version (with the overlap of
the two top-k lists), and a 2-D PCA map of a sample of the version's vectors
coloured by a metadata column, with the item and its neighbours highlighted.
The page works without JavaScript; a few lines of it add type-ahead
suggestions and submit on change. Nothing is fetched from the internet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse

from embstore.caching import LRU
from embstore.errors import EmbstoreError, NotFoundError, UnknownIdsError
from embstore.ids import plain_list, typed_id
from embstore.linalg import unit_rows

HERE = Path(__file__).resolve().parent
HIST_DEFAULT = 300
HIST_MAX = 1000
HIST_BINS = 30
MAP_SAMPLE = 1500
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
        cosine = str(version.retriever_config.get("metric", "cosine")) == "cosine"
        key = (version.storage_path, sample, cosine)
        return self._cache.get_or_build(key, lambda: pca_projection(store.load(version).vectors, sample, cosine))


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

    def neighbours(self, version, item_id, k: int, n_hist: int):
        res = self.store.recall(version.ref, ids=[item_id], k=max(k, n_hist))[0]
        return res.ids, res.scores

    def rows_for(self, meta, ids: list, scores: list[float], other: set | None = None) -> list[dict]:
        out = []
        metas = meta.rows(ids) if meta else [None] * len(ids)
        for rank, (i, s, m) in enumerate(zip(ids, scores, metas), 1):
            label = (m or {}).get(meta.title_column) if meta and meta.title_column else None
            out.append({"rank": rank, "id": i, "label": label, "meta": m or {}, "score": _fmt_score(s),
                        "raw": s, "shared": other is not None and i in other})
        return out

    def render(self, ref: str | None, q: str, item_id: str | None, k: int, compare: str | None,
               color: str | None, n_hist: int, sample: int) -> str:
        ctx: dict[str, Any] = {"groups": self.ref_options(), "ref": ref, "q": q, "k": k, "compare": compare,
                               "color": color, "n_hist": n_hist, "sample": sample, "errors": []}
        if not ctx["groups"]:
            ctx["errors"].append("nothing is published yet: run `embstore run ...` and reload")
            return _env().get_template("explorer.html").render(**ctx)
        if not ref:  # the first set, at its prod alias when it has one
            values = [o["value"] for o in ctx["groups"][0]["options"]]
            ref = next((v for v in values if v.endswith("@prod")), values[0])
            ctx["ref"] = ref
        try:
            version = self.store.resolve(ref)
        except EmbstoreError as exc:
            ctx["errors"].append(str(exc))
            return _env().get_template("explorer.html").render(**ctx)
        meta = self.meta(version.set)
        ctx.update(version=version, metric=str(version.retriever_config.get("metric", "cosine")), meta=meta,
                   set_versions=self.store.versions(version.set),
                   columns=[c for c in (meta.columns if meta else []) if c != meta.title_column],
                   colour_columns=meta.colour_columns() if meta else [])
        if meta and (color is None or color not in ctx["colour_columns"]):
            color = ctx["colour_columns"][0] if ctx["colour_columns"] else None
            ctx["color"] = color
        try:
            item, others, message = self.find_item(version, meta, q, item_id)
        except EmbstoreError as exc:
            item, others, message = None, [], str(exc)
        if message:
            ctx["errors"].append(message)
        ctx["others"] = [{"id": i, "label": lab} for i, lab in others]
        ids, scores = [], []
        if item is not None:
            ctx["item"] = {"id": item, "label": meta.label(item) if meta else None,
                           "meta": (meta.row(item) or {}) if meta else {}}
            ctx["q"] = ctx["item"]["label"] or str(item)
            ids, scores = self.neighbours(version, item, k, n_hist)
            cut = scores[k - 1] if len(scores) >= k else None
            ctx["hist"] = histogram(scores[:n_hist], cut)
        else:
            ctx["examples"] = self.examples(version, meta)
        top = ids[:k]
        if compare and item is not None:
            ctx["cmp"] = self.comparison(version, meta, compare, item, k, top, scores[:k])
        ctx["rows"] = self.rows_for(meta, top, scores[:k])
        try:
            ctx["map"] = self.map(version, meta, color, item, top, sample)
        except EmbstoreError as exc:
            ctx["errors"].append(f"map: {exc}")
        return _env().get_template("explorer.html").render(**ctx)

    def examples(self, version, meta, n: int = 6) -> list[dict]:
        loaded = self.store.load(version)
        rng = np.random.default_rng(1)
        rows = rng.choice(len(loaded.ids), size=min(n, len(loaded.ids)), replace=False)
        ids = plain_list(loaded.ids[rows])
        return [{"id": i, "label": (meta.label(i) if meta else None) or str(i)} for i in ids]

    def comparison(self, version, meta, compare: str, item, k: int, top: list, top_scores: list) -> dict:
        out: dict[str, Any] = {"ref": compare}
        try:
            other = self.store.resolve(compare)
            out["version"] = other
            res = self.store.recall(other.ref, ids=[item], k=k)[0]
        except UnknownIdsError:
            out["error"] = f"{compare} has no item {item!r}"
            return out
        except EmbstoreError as exc:
            out["error"] = str(exc)
            return out
        ids = res.ids
        shared = set(top) & set(ids)
        union = set(top) | set(ids)
        out.update(
            ids=ids,
            rows_a=self.rows_for(meta, top, top_scores, set(ids)),
            rows=self.rows_for(self.meta(other.set) or meta, ids, res.scores, set(top)),
            shared=len(shared), k=k, jaccard=len(shared) / len(union) if union else 1.0,
            same=other.storage_path == version.storage_path,
            dims=(version.dim, other.dim),
        )
        return out

    def map(self, version, meta, color: str | None, item, top: list, sample: int) -> dict:
        proj = self.projections.get(self.store, version, sample)
        loaded = self.store.load(version)
        sample_ids = loaded.ids[proj.rows].tolist()
        if meta and color:
            cats = meta.categories(color)
            order = [c for c in cats.value_counts().index.tolist() if c != "other"]
            legend_names = order + ["other", "no metadata"]
            sample_cats = meta.category_of(color, sample_ids)
            labels = [lab or str(i) for i, lab in zip(sample_ids, meta.labels(sample_ids))]
        else:
            legend_names, sample_cats, labels = ["all"], ["all"] * len(sample_ids), [str(i) for i in sample_ids]
        legend = [(name, PALETTE[j] if j < len(PALETTE) and name not in ("other", "no metadata") else GREY)
                  for j, name in enumerate(legend_names)]
        if legend_names == ["all"]:
            legend = [("all", PALETTE[0])]
        highlight = []
        if item is not None:
            hl_ids = [item] + list(top)
            vecs = self.store.vectors(version.ref, hl_ids).matrix
            xy = proj.project(vecs)
            hl_cats = meta.category_of(color, hl_ids) if meta and color else ["all"] * len(hl_ids)
            for j, (i, (x, y), cat) in enumerate(zip(hl_ids, xy.tolist(), hl_cats)):
                label = (meta.label(i) if meta else None) or str(i)
                highlight.append({"id": i, "x": x, "y": y, "kind": "item" if j == 0 else "neighbour",
                                  "rank": j, "label": label, "category": cat})
            highlight.reverse()  # the item is drawn last, on top
        present = set(sample_cats) | {h["category"] for h in highlight}
        geometry = scatter(proj.coords, sample_cats, labels, highlight, legend)
        geometry["legend"] = [(n, c) for n, c in legend if n in present]
        geometry["explained"] = [round(100 * e, 1) for e in proj.explained]
        geometry["sample"] = len(proj.rows)
        geometry["total"] = len(loaded.ids)
        geometry["color"] = color
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


def explorer_router(service) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    explorer = Explorer(service)

    @router.get("/explorer", response_class=HTMLResponse)
    def page(
        ref: str | None = Query(None),
        q: str = Query(""),
        id: str | None = Query(None),
        k: int = Query(10, ge=1, le=100),
        compare: str | None = Query(None),
        color: str | None = Query(None),
        n: int = Query(HIST_DEFAULT, ge=10, le=HIST_MAX),
        sample: int = Query(MAP_SAMPLE, ge=100, le=20_000),
    ) -> HTMLResponse:
        html = explorer.render(ref, q, id, k, compare or None, color or None, n, sample)
        return HTMLResponse(html)

    @router.get("/explorer/suggest")
    def suggest(ref: str = Query(...), q: str = Query(""), limit: int = Query(8, ge=1, le=50)) -> JSONResponse:
        if not q.strip():
            return JSONResponse([])
        try:
            return JSONResponse(explorer.suggest(ref, q, limit))
        except NotFoundError:
            return JSONResponse([])

    return router
