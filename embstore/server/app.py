"""The HTTP app: JSON recall endpoints under ``/api`` and the explorer page.

Every request resolves its ref (``set``, ``set@3``, ``set@prod``) against the
registry, so an alias move is seen by the next request without a restart;
the vectors and index of each version stay loaded in the store's caches, so
the switch costs nothing once the new version is warm (``Warmer`` loads
newly aliased versions in the background).

    app = create_app(EmbeddingStore(home), metadata={"movies": Metadata.load("movies.csv")})
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Union

import numpy as np
import pydantic
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embstore.errors import (
    ConfigError,
    EmbeddingsError,
    EmbstoreError,
    InputError,
    IntegrityError,
    NotFoundError,
    UnknownIdsError,
    first_line,
)
from embstore.ids import typed_id
from embstore.linalg import unit_rows
from embstore.refs import Ref

log = logging.getLogger("embstore.server")

Id = Union[int, str]
DEFAULT_MAX_K = 1000

# -- response and request bodies ----------------------------------------------


class ErrorOut(pydantic.BaseModel):
    error: str = pydantic.Field(description="not_found, unknown_ids, invalid_request or integrity")
    message: str = pydantic.Field(description="what is wrong, in one line")
    missing: list[Id] | None = pydantic.Field(None, description="unknown_ids: the ids the version lacks")


class RecallOut(pydantic.BaseModel):
    ref: str = pydantic.Field(description="the version that answered, e.g. movies@3 (an alias resolved now)")
    metric: str = pydantic.Field(description="ip or cosine: higher is closer; l2: a distance, lower is closer")
    query: Id | None = pydantic.Field(description="the query id; null for vector and user queries")
    ids: list[Id] = pydantic.Field(description="neighbour ids, best first")
    scores: list[float] = pydantic.Field(description="their scores, same order")
    missing: list[Id] = pydantic.Field(default_factory=list, description="recent ids skipped as unknown")


class SimilarOut(pydantic.BaseModel):
    ref: str = pydantic.Field(description="the version that answered, e.g. movies@3 (an alias resolved now)")
    metric: str = pydantic.Field(description="ip or cosine: higher is closer; l2: a distance, lower is closer")
    query: Id = pydantic.Field(description="the query id")
    ids: list[Id] = pydantic.Field(description="neighbour ids, best first")
    scores: list[float] = pydantic.Field(description="their scores, same order")
    query_metadata: dict[str, Any] | None = pydantic.Field(
        None, description="with metadata=true: the query's row of the set's metadata table (null if it has none); "
                          "absent otherwise")
    metadata: list[dict[str, Any] | None] | None = pydantic.Field(
        None, description="with metadata=true: each neighbour's row of the set's metadata table (column -> value, "
                          "null where the table lacks the id), same order as ids; absent otherwise")


class VectorsIn(pydantic.BaseModel):
    ids: list[Id] = pydantic.Field(min_length=1, max_length=10_000, description="ids to read")
    allow_missing: bool = pydantic.Field(False, description="skip unknown ids (listed in missing) instead of 404")


class VectorsOut(pydantic.BaseModel):
    ref: str
    dim: int
    ids: list[Id] = pydantic.Field(description="the found ids, in request order")
    vectors: list[list[float]] = pydantic.Field(description="float32 values, vectors[i] belongs to ids[i]")
    missing: list[Id] = pydantic.Field(default_factory=list)


class VectorRecallIn(pydantic.BaseModel):
    vector: list[float] = pydantic.Field(min_length=1, description="query vector of the set's dimension")
    k: int = pydantic.Field(10, ge=1, description="neighbours wanted (at most the server's --max-k)")
    exclude: list[Id] = pydantic.Field(default_factory=list, description="ids never returned")


class UserRecallIn(pydantic.BaseModel):
    """Give exactly one source of the user's vector: recent_ids (the mean of those items'
    vectors, each scaled to unit length first under the cosine metric), or user_ref and user_id
    (the user's row in a user embedding set of the same space and dimension, e.g. FM's)."""

    recent_ids: list[Id] | None = pydantic.Field(None, min_length=1, max_length=10_000,
                                                 description="items the user touched recently")
    user_ref: str | None = pydantic.Field(None, description="user embedding set ref, e.g. fm_user@prod")
    user_id: Id | None = pydantic.Field(None, description="the user's id in user_ref")
    k: int = pydantic.Field(10, ge=1, description="neighbours wanted (at most the server's --max-k)")
    exclude: list[Id] = pydantic.Field(default_factory=list, description="ids never returned")
    exclude_recent: bool = pydantic.Field(True, description="leave the recent ids out of the result")
    allow_missing: bool = pydantic.Field(False, description="skip unknown recent ids instead of 404")


class VersionOut(pydantic.BaseModel):
    ref: str
    number: int
    status: str
    producer: str
    plugin: str
    plugin_version: str
    config: dict[str, Any]
    retriever: str
    retriever_config: dict[str, Any]
    entity: str
    id_type: str | None
    dim: int | None
    count: int | None
    metrics: dict[str, Any]
    aliases: list[str]
    created_at: str | None
    published_at: str | None
    error: str | None


class AliasEventOut(pydantic.BaseModel):
    alias: str
    version: int
    previous: int | None
    action: str
    moved_at: str


class SetVersionsOut(pydantic.BaseModel):
    set: str
    latest: int | None = pydantic.Field(description="latest published version (what the bare set name means)")
    aliases: dict[str, int] = pydantic.Field(description="alias -> version number")
    versions: list[VersionOut]
    alias_history: list[AliasEventOut]


class SetSummaryOut(pydantic.BaseModel):
    name: str
    latest: int | None
    aliases: dict[str, int]
    versions: int


class SetsOut(pydantic.BaseModel):
    sets: list[SetSummaryOut]


# -- the service ----------------------------------------------------------------


def version_out(v) -> VersionOut:
    d = v.as_dict()
    return VersionOut(**{k: d[k] for k in VersionOut.model_fields})


def metric_of(v) -> str:
    return str((v.retriever_config or {}).get("metric", "cosine"))


class Service:
    """What the routes share: the store, metadata per set and the limits."""

    def __init__(self, store, metadata: dict | None = None, max_k: int = DEFAULT_MAX_K):
        self.store = store
        self.metadata = dict(metadata or {})
        self.max_k = max_k

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.max_k:
            raise ConfigError(f"k must be between 1 and {self.max_k}, got {k}")

    def similar(self, ref: str, item_id: Any, k: int, exclude: list | None = None,
                with_metadata: bool = False) -> SimilarOut:
        self.check_k(k)
        v = self.store.resolve(ref)
        meta = self.metadata.get(v.set)
        if with_metadata and meta is None:
            raise ConfigError(f"this server has no metadata for set {v.set!r} (start it with "
                              f"--metadata {v.set}=FILE[:ID_COLUMN]); ask without metadata=true")
        query = typed_id(v.id_type, item_id)
        res = self.store.recall(v, ids=[query], k=k, exclude=exclude or None)[0]
        found = dict(ref=v.ref, metric=metric_of(v), query=query, ids=res.ids, scores=res.scores)
        if with_metadata:  # only then are the two fields set, and so sent (response_model_exclude_unset)
            found.update(query_metadata=meta.row(query), metadata=meta.rows(res.ids))
        return SimilarOut(**found)

    def vector_recall(self, ref: str, vector, k: int, exclude: list | None = None, version=None,
                      missing: list | None = None) -> RecallOut:
        self.check_k(k)
        v = version or self.store.resolve(ref)
        res = self.store.recall(v, vectors=np.asarray(vector, dtype=np.float32).reshape(1, -1), k=k,
                                exclude=exclude or None)[0]
        return RecallOut(ref=v.ref, metric=metric_of(v), query=None, ids=res.ids, scores=res.scores,
                         missing=missing or [])

    def user_recall(self, ref: str, body: UserRecallIn) -> RecallOut:
        self.check_k(body.k)
        by_items = body.recent_ids is not None
        by_user = body.user_ref is not None or body.user_id is not None
        if by_items == by_user:
            raise ConfigError("give either recent_ids, or user_ref and user_id")
        v = self.store.resolve(ref)
        exclude = list(body.exclude)
        missing: list = []
        if by_items:
            got = self.store.vectors(v, body.recent_ids, allow_missing=body.allow_missing)
            missing = got.missing
            if not got.ids:
                raise UnknownIdsError(f"none of the {len(body.recent_ids)} recent ids are in {v.ref}", missing)
            matrix = got.matrix.astype(np.float64)
            if metric_of(v) == "cosine":
                matrix = unit_rows(matrix)
            vector = matrix.mean(axis=0)
            if body.exclude_recent:
                exclude += got.ids
        else:
            if body.user_ref is None or body.user_id is None:
                raise ConfigError("a user embedding set query needs both user_ref and user_id")
            user_version = self.store.resolve(body.user_ref)
            if user_version.dim != v.dim:
                raise ConfigError(
                    f"user set {user_version.ref} has dimension {user_version.dim}, {v.ref} has {v.dim}; "
                    "user and item vectors must share one space"
                )
            vector = self.store.vectors(user_version, [typed_id(user_version.id_type, body.user_id)]).matrix[0]
        return self.vector_recall(v.ref, vector, body.k, exclude, version=v, missing=missing)

    def vectors(self, ref: str, body: VectorsIn) -> VectorsOut:
        v = self.store.resolve(ref)
        got = self.store.vectors(v, body.ids, allow_missing=body.allow_missing)
        return VectorsOut(ref=v.ref, dim=v.dim, ids=got.ids, vectors=got.matrix.tolist(), missing=got.missing)

    def set_versions(self, name: str) -> SetVersionsOut:
        ref = Ref.parse(name)
        if ref.version is not None or ref.alias is not None:
            raise ConfigError(f"name a set, not a version: {name!r} -> {ref.set!r}")
        rows = self.store.versions(ref.set)
        published = [v.number for v in rows if v.status == "published"]
        aliases = {a: v.number for v in rows for a in v.aliases}
        return SetVersionsOut(
            set=ref.set, latest=max(published) if published else None, aliases=aliases,
            versions=[version_out(v) for v in rows], alias_history=self.store.alias_history(ref.set),
        )

    def sets(self) -> SetsOut:
        out = []
        for name in self.store.sets():
            rows = self.store.versions(name)
            published = [v.number for v in rows if v.status == "published"]
            out.append(SetSummaryOut(name=name, latest=max(published) if published else None,
                                     aliases={a: v.number for v in rows for a in v.aliases}, versions=len(rows)))
        return SetsOut(sets=out)


class Warmer:
    """Keeps the vectors and index of every set's latest version and aliased versions loaded,
    checking every ``interval`` seconds, so the first request after an alias move is fast."""

    def __init__(self, store, interval: float):
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warm: set[tuple[str, int]] = set()

    def targets(self) -> list[str]:
        refs = []
        for name in self.store.sets():
            rows = [v for v in self.store.versions(name) if v.status == "published"]
            if not rows:
                continue
            refs.extend(v.ref for v in rows if v.aliases or v is rows[-1])
        return refs

    def warm_once(self) -> list[str]:
        loaded = []
        try:
            targets = self.targets()
        except Exception as exc:  # the registry may be briefly unreachable: try again next round
            log.warning("warm-up: cannot list versions: %s", exc)
            return loaded
        for ref in targets:
            try:
                self.store.vectors(ref, [])
                self.store.retriever(ref)
            except Exception as exc:
                log.warning("warm-up of %s failed: %s", ref, exc)
                continue
            number = int(ref.rsplit("@", 1)[1])
            key = (ref.rsplit("@", 1)[0], number)
            if key not in self._warm:
                self._warm.add(key)
                loaded.append(ref)
                log.info("loaded %s", ref)
        return loaded

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="embstore-warmer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.warm_once()

    def stop(self) -> None:
        self._stop.set()


# -- errors -------------------------------------------------------------------

def _error_status(exc: EmbstoreError) -> tuple[int, str]:
    if isinstance(exc, UnknownIdsError):
        return 404, "unknown_ids"
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, (ConfigError, InputError, EmbeddingsError)):
        return 422, "invalid_request"
    if isinstance(exc, IntegrityError):
        return 500, "integrity"  # stored data failed its checksum: not the client's fault
    return 400, "error"


def _embstore_error(_request: Request, exc: EmbstoreError) -> JSONResponse:
    status, code = _error_status(exc)
    body: dict[str, Any] = {"error": code, "message": first_line(exc) if str(exc) else code}
    if isinstance(exc, UnknownIdsError):
        body["missing"] = list(exc.missing)
    return JSONResponse(body, status_code=status)


def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], (dict, list)) else ""
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}{got}")
    return JSONResponse({"error": "invalid_request", "message": "; ".join(parts)}, status_code=422)


def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = "no such endpoint; see /docs" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse({"error": code, "message": message}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


ERRORS = {
    404: {"model": ErrorOut, "description": "unknown set, version, alias or id"},
    422: {"model": ErrorOut, "description": "invalid request: k out of range, wrong dimension, bad ref, "
                                           "metadata asked of a set the server has none for"},
}

REF = Path(description="a ref: set (latest published), set@3 (pinned) or set@prod (alias)",
           examples=["movies_item2vec@prod"])


def api_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/api")
    max_k = service.max_k

    @router.get("/health", tags=["meta"], summary="liveness")
    def health() -> dict:
        return {"status": "ok"}

    @router.get("/sets", response_model=SetsOut, tags=["versions"], summary="embedding sets with their aliases")
    def sets() -> SetsOut:
        return service.sets()

    @router.get("/sets/{name}/versions", response_model=SetVersionsOut, responses=ERRORS, tags=["versions"],
                summary="versions, aliases and alias history of a set")
    def versions(name: str = Path(description="set name", examples=["movies_item2vec"])) -> SetVersionsOut:
        return service.set_versions(name)

    @router.get("/sets/{ref}", response_model=VersionOut, responses=ERRORS, tags=["versions"], summary="the version a ref names now")
    def resolve(ref: str = REF) -> VersionOut:
        return version_out(service.store.resolve(ref))

    @router.get("/sets/{ref}/similar", response_model=SimilarOut, responses=ERRORS, response_model_exclude_unset=True,
                tags=["recall"], summary="similar items for an id, optionally with their metadata")
    def similar(
        ref: str = REF,
        id: str = Query(..., description="the item id", examples=["1"]),
        k: int = Query(10, ge=1, le=max_k, description="neighbours wanted"),
        exclude: list[str] = Query([], description="ids never returned (repeat the parameter)"),
        metadata: bool = Query(False, description="add query_metadata and metadata (the rows of the set's table "
                                                  "given to embstore serve --metadata); 422 when the server has none "
                                                  "for the set"),
    ) -> SimilarOut:
        return service.similar(ref, id, k, exclude, with_metadata=metadata)

    @router.post("/sets/{ref}/recall/user", response_model=RecallOut, responses=ERRORS, tags=["recall"],
                 summary="recall for a user: from recent item ids, or from a user embedding set")
    def recall_user(body: UserRecallIn, ref: str = REF) -> RecallOut:
        return service.user_recall(ref, body)

    @router.post("/sets/{ref}/recall/vector", response_model=RecallOut, responses=ERRORS, response_model_exclude={"missing"},
                 tags=["recall"], summary="recall for a raw vector")
    def recall_vector(body: VectorRecallIn, ref: str = REF) -> RecallOut:
        return service.vector_recall(ref, body.vector, body.k, body.exclude)

    @router.post("/sets/{ref}/vectors", response_model=VectorsOut, responses=ERRORS, tags=["vectors"],
                 summary="vectors for a batch of ids")
    def vectors(body: VectorsIn, ref: str = REF) -> VectorsOut:
        return service.vectors(ref, body)

    return router


def create_app(store, metadata: dict | None = None, *, max_k: int = DEFAULT_MAX_K,
               warm_interval: float = 0.0, preload: bool = False) -> FastAPI:
    """The ASGI app over an open ``EmbeddingStore``; ``metadata`` maps set name -> Metadata."""
    from contextlib import asynccontextmanager

    from fastapi_offline import FastAPIOffline

    from embstore.server.explorer import explorer_router, static_app

    service = Service(store, metadata, max_k)
    warmer = Warmer(store, warm_interval)

    @asynccontextmanager
    async def lifespan(_app):
        if preload:
            warmer.warm_once()
        warmer.start()
        yield
        warmer.stop()

    app = FastAPIOffline(  # FastAPI with Swagger UI (/docs) and ReDoc (/redoc) served from local assets
        title="embstore",
        summary="Recall over embedding versions, and an explorer page to judge them.",
        description=(
            "Refs name versions: `set` (latest published), `set@3` (pinned), `set@prod` (an alias, resolved "
            "on every request). Errors are JSON `{error, message}` with 404 for unknown sets, versions, aliases "
            "and ids (`missing` lists the ids) and 422 for invalid requests (k out of range, wrong dimension)."
        ),
        version=_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.warmer = warmer
    app.add_exception_handler(EmbstoreError, _embstore_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(api_router(service))
    app.include_router(explorer_router(service))
    app.mount("/static", static_app(), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/explorer")

    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("embstore")
    except Exception:
        return "unknown"
