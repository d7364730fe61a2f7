"""The HTTP app: JSON recall endpoints under ``/api`` and the explorer page.

Every request resolves its ref (``set``, ``set@3``, ``set@prod``): the reader keeps
resolved refs until the registry's change counter moves, so an alias move is seen
by the next request without a restart, at the cost of one counter read; the vectors
and index of each version stay loaded in the store's caches, so the switch costs
nothing once the new version is warm (``Warmer`` loads newly aliased versions in the
background).

Routes run their work in the request thread pool and send pydantic's JSON of the
response model (one hop off the event loop); ``/api/sets/{ref}/similar``, the one
recall services call per request, is answered in the event loop by an ASGI
middleware when its version is loaded (see ``_similar_route``). With a token every request but
/api/health needs it (embstore.server.auth). The OpenAPI schema says what the
server accepts: a schemathesis run of it is bench/bench_schema.py.

    app = create_app(EmbeddingStore(home), metadata={"movies": Metadata.load("movies.csv")})
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from typing import Annotated, Any, Union

import numpy as np
import pydantic
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from embstore.errors import (
    BackendUnavailableError,
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
from embstore.server.common import metric_of

log = logging.getLogger("embstore.server")

def _integral(value: Any) -> Any:
    """JSON's integers include 57.0: taken as 57 (bools, text and fractions stay refused)."""
    return int(value) if type(value) is float and value.is_integer() else value


JsonInt = Annotated[int, pydantic.BeforeValidator(_integral)]
Id = Union[JsonInt, str]
DEFAULT_MAX_K = 1000
FLOAT32_MAX = 3.4028234663852886e38  # larger query values would be inf once float32
# What Ref.parse accepts (embstore.refs): a set name (a letter, then letters, digits and single
# underscores, 100 at most), then optionally @ and a version number or an alias; (?![\s\S]) ends
# the text in every regex dialect (a '$' lets Python's re take a trailing newline).
SET_PATTERN = r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_)){0,99}(?![\s\S])"
REF_PATTERN = r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_)){0,99}(?:@(?:[0-9]+|[A-Za-z][A-Za-z0-9_-]{0,99}))?(?![\s\S])"

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


STRICT = pydantic.ConfigDict(strict=True)  # JSON bodies: 1 is no bool, "3" no integer, true no id


class VectorsIn(pydantic.BaseModel):
    model_config = STRICT

    ids: list[Id] = pydantic.Field(min_length=1, max_length=10_000, description="ids to read", examples=[[1, 2, 3]])
    allow_missing: bool = pydantic.Field(False, description="skip unknown ids (listed in missing) instead of 404")


class VectorsOut(pydantic.BaseModel):
    ref: str
    dim: int
    ids: list[Id] = pydantic.Field(description="the found ids, in request order")
    vectors: list[list[float]] = pydantic.Field(description="float32 values, vectors[i] belongs to ids[i]")
    missing: list[Id] = pydantic.Field(default_factory=list)


QueryValue = Annotated[float, pydantic.Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX, allow_inf_nan=False)]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)  # optional, but never null: absent means "not given"


class VectorRecallIn(pydantic.BaseModel):
    model_config = STRICT

    vector: list[QueryValue] = pydantic.Field(min_length=1, description="query vector of the set's dimension "
                                                                        "(float32 values)")
    k: JsonInt = pydantic.Field(10, ge=1, description="neighbours wanted (at most the server's --max-k)")
    exclude: list[Id] = pydantic.Field(default_factory=list, description="ids never returned")


class UserRecallIn(pydantic.BaseModel):
    """Give exactly one source of the user's vector: recent_ids (the mean of those items'
    vectors, each scaled to unit length first under the cosine metric), or user_ref and user_id
    (the user's row in a user embedding set of the same space and dimension, e.g. FM's)."""

    model_config = pydantic.ConfigDict(strict=True, json_schema_extra={"oneOf": [
        {"required": ["recent_ids"], "not": {"anyOf": [{"required": ["user_ref"]}, {"required": ["user_id"]}]}},
        {"required": ["user_ref", "user_id"], "not": {"required": ["recent_ids"]}},
    ]})

    recent_ids: list[Id] = pydantic.Field(None, min_length=1, max_length=10_000, json_schema_extra=_no_default,
                                          description="items the user touched recently", examples=[[1, 2, 3]])
    user_ref: str = pydantic.Field(None, json_schema_extra=lambda schema: (_no_default(schema),
                                                                           schema.update(pattern=REF_PATTERN)),
                                   description="user embedding set ref, e.g. fm_user@prod (with user_id)")
    user_id: Id = pydantic.Field(None, json_schema_extra=_no_default, description="the user's id in user_ref")
    k: JsonInt = pydantic.Field(10, ge=1, description="neighbours wanted (at most the server's --max-k)")
    exclude: list[Id] = pydantic.Field(default_factory=list, description="ids never returned")
    exclude_recent: bool = pydantic.Field(True, description="leave the recent ids out of the result")
    allow_missing: bool = pydantic.Field(False, description="skip unknown recent ids instead of 404")

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> "UserRecallIn":
        by_items = self.recent_ids is not None
        by_user = self.user_ref is not None or self.user_id is not None
        if by_items == by_user:
            raise ValueError("give either recent_ids, or user_ref and user_id")
        if by_user and (self.user_ref is None or self.user_id is None):
            raise ValueError("a user embedding set query needs both user_ref and user_id")
        return self


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
        return SimilarOut.model_construct(**found)  # our own values: validating them cost 5% of a request

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
                self.store.load(ref).prepare()  # vectors mapped, the id hash table built
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
    if isinstance(exc, BackendUnavailableError):
        return 503, "unavailable"  # the registry is down: retry later
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
    for err in exc.errors():  # loc without where it came from and pydantic's validator tags (function-before[...])
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path") and "[" not in str(p))
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], (dict, list)) else ""
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}{got}")
    return JSONResponse({"error": "invalid_request", "message": "; ".join(parts)}, status_code=422)


def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # FastAPI's "error parsing the body" (not JSON, not UTF-8): one code for bad bodies
        return JSONResponse({"error": "invalid_request", "message": f"body: {exc.detail} (send JSON in UTF-8)"},
                            status_code=422)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = "no such endpoint; see /docs" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse({"error": code, "message": message}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


ERRORS = {
    404: {"model": ErrorOut, "description": "unknown set, version, alias or id"},
    422: {"model": ErrorOut, "description": "invalid request: k out of range, wrong dimension, bad ref, "
                                           "metadata asked of a set the server has none for"},
    500: {"model": ErrorOut, "description": "integrity: the version's stored files fail their checksums "
                                           "(republish it or roll the alias back)"},
    503: {"model": ErrorOut, "description": "unavailable: the version registry is unreachable; retry"},
}

REF = Path(description="a ref: set (latest published), set@3 (pinned) or set@prod (alias)",
           examples=["movies_item2vec@prod"], json_schema_extra={"pattern": REF_PATTERN})
SET_NAME = Path(description="set name", examples=["movies_item2vec"], json_schema_extra={"pattern": SET_PATTERN})


class SimilarQuery:
    """The query of /similar (id, k, exclude, metadata), read with pydantic's own validators, so
    values and errors are what FastAPI's declared parameters give, at a fraction of the cost.
    ``parameters()`` documents them (and the path's ref) as FastAPI would."""

    def __init__(self, max_k: int):
        self.max_k = max_k
        self._k = pydantic.TypeAdapter(Annotated[int, pydantic.Field(ge=1, le=max_k)])
        self._flag = pydantic.TypeAdapter(bool)

    def parse(self, params) -> tuple[str, int, list[str], bool]:
        errors: list[dict] = []
        item = params.get("id")
        if item is None:
            errors.append({"type": "missing", "loc": ("query", "id"), "msg": "Field required", "input": None})
        k = self._value(self._k, params.get("k"), 10, "k", errors)
        metadata = self._value(self._flag, params.get("metadata"), False, "metadata", errors)
        if errors:
            raise RequestValidationError(errors)
        return item, k, params.getlist("exclude"), metadata

    @staticmethod
    def _value(adapter, raw, default, name: str, errors: list) -> Any:
        if raw is None:
            return default
        try:
            return adapter.validate_python(raw)
        except pydantic.ValidationError as exc:
            errors.extend({**e, "loc": ("query", name, *e["loc"])} for e in exc.errors())
            return default

    def parameters(self) -> list[dict]:
        def param(name, where, schema, description, required=False):
            return {"name": name, "in": where, "required": required, "description": description,
                    "schema": {**schema, "description": description}}

        return [
            param("ref", "path", {"type": "string", "pattern": REF_PATTERN, "examples": ["movies_item2vec@prod"]},
                  REF.description, required=True),
            param("id", "query", {"type": "string", "examples": ["1"]}, "the item id", required=True),
            param("k", "query", {"type": "integer", "minimum": 1, "maximum": self.max_k, "default": 10},
                  "neighbours wanted"),
            param("exclude", "query", {"type": "array", "items": {"type": "string"}, "default": []},
                  "ids never returned (repeat the parameter)"),
            param("metadata", "query", {"type": "boolean", "default": False},
                  "add query_metadata and metadata (the rows of the set's table given to embstore serve "
                  "--metadata); 422 when the server has none for the set"),
        ]


async def _answer(call, *args, **dump) -> Response:
    """Run a service call in the request thread pool (it may search an index or wait on the
    registry) and send its model as JSON, serialised by pydantic in that thread: one hop off the
    event loop per request, where FastAPI's own response_model path takes several."""
    def work() -> bytes:
        return call(*args).model_dump_json(**dump).encode()

    return Response(await run_in_threadpool(work), media_type="application/json")


def _similar_route(app: FastAPI, service: Service) -> None:
    """GET /api/sets/{ref}/similar, the endpoint recall services call per request. Its query is read
    by SimilarQuery (pydantic's own validators, none of FastAPI's per-request parameter machinery).
    A version already loaded is answered by SimilarFastPath, in front of the app's routing; the
    route here answers the rest (a version read from disk first, in the thread pool) and every
    error, in the app's error format, and documents the endpoint in the OpenAPI schema."""
    similar_query = SimilarQuery(service.max_k)

    async def similar(request: Request) -> Response:
        item, k, exclude, metadata = similar_query.parse(request.query_params)
        return await _answer(service.similar, request.path_params["ref"], item, k, exclude, metadata,
                             exclude_unset=True)

    app.get("/api/sets/{ref}/similar", response_model=SimilarOut, responses=ERRORS, tags=["recall"],
            summary="similar items for an id, optionally with their metadata",
            openapi_extra={"parameters": similar_query.parameters()})(similar)
    app.add_middleware(SimilarFastPath, service=service, query=similar_query)


class SimilarFastPath:
    """ASGI middleware answering /similar for a version already loaded in this process, in the event
    loop: no routing, request and response objects, and no hop to the thread pool and back, which
    together cost as much as the search (8 clients, 2 workers: p50 6.0 / p99 12.0 ms before, see
    bench/bench_serve.py). Anything else, or anything that goes wrong (a bad query, an unknown
    id), passes to the app, whose route answers it in the documented format."""

    PREFIX, SUFFIX = "/api/sets/", "/similar"
    HEADERS = [(b"content-type", b"application/json")]

    def __init__(self, app, service: Service, query: SimilarQuery):
        self.app, self.service, self.query = app, service, query

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            if path.startswith(self.PREFIX) and path.endswith(self.SUFFIX):
                body = self.answer(path[len(self.PREFIX):-len(self.SUFFIX)], scope["query_string"])
                if body is not None:
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [*self.HEADERS, (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def answer(self, ref: str, query_string: bytes) -> bytes | None:
        """The response body, or None: not a ref, not loaded, or an error the route will report."""
        from starlette.datastructures import QueryParams

        if not ref or "/" in ref:
            return None
        try:
            version = self.service.store.ready(ref)
            if version is None:
                return None
            item, k, exclude, metadata = self.query.parse(QueryParams(query_string))
            return self.service.similar(version, item, k, exclude, metadata).model_dump_json(exclude_unset=True).encode()
        except Exception:  # noqa: BLE001 - the route computes the same error and reports it properly
            return None


def api_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/api")
    max_k = service.max_k

    @router.get("/health", tags=["meta"], summary="liveness")
    def health() -> dict:
        return {"status": "ok"}

    @router.get("/sets", response_model=SetsOut, tags=["versions"], summary="embedding sets with their aliases")
    async def sets() -> Response:
        return await _answer(service.sets)

    @router.get("/sets/{name}/versions", response_model=SetVersionsOut, responses=ERRORS, tags=["versions"],
                summary="versions, aliases and alias history of a set")
    async def versions(name: str = SET_NAME) -> Response:
        return await _answer(service.set_versions, name)

    @router.get("/sets/{ref}", response_model=VersionOut, responses=ERRORS, tags=["versions"], summary="the version a ref names now")
    async def resolve(ref: str = REF) -> Response:
        return await _answer(lambda r: version_out(service.store.resolve(r)), ref)


    @router.post("/sets/{ref}/recall/user", response_model=RecallOut, responses=ERRORS, tags=["recall"],
                 summary="recall for a user: from recent item ids, or from a user embedding set")
    async def recall_user(body: UserRecallIn, ref: str = REF) -> Response:
        return await _answer(service.user_recall, ref, body)

    @router.post("/sets/{ref}/recall/vector", response_model=RecallOut, responses=ERRORS, response_model_exclude={"missing"},
                 tags=["recall"], summary="recall for a raw vector")
    async def recall_vector(body: VectorRecallIn, ref: str = REF) -> Response:
        return await _answer(service.vector_recall, ref, body.vector, body.k, body.exclude, exclude={"missing"})

    @router.post("/sets/{ref}/vectors", response_model=VectorsOut, responses=ERRORS, tags=["vectors"],
                 summary="vectors for a batch of ids")
    async def vectors(body: VectorsIn, ref: str = REF) -> Response:
        return await _answer(service.vectors, ref, body)

    return router


def create_app(store, metadata: dict | None = None, *, max_k: int = DEFAULT_MAX_K,
               warm_interval: float = 0.0, preload: bool = False, token: str | None = None,
               threads: int | None = None, close_store: bool = False, freeze: bool = False) -> FastAPI:
    """The ASGI app over an open ``EmbeddingStore``; ``metadata`` maps set name -> Metadata.

    ``token``: every request but /api/health, /login and static assets needs it (embstore.server.auth).
    ``threads``: size of the thread pool requests run in (default: anyio's 40).
    ``close_store``: close the store when the app shuts down (a worker process that opened it).
    ``freeze``: once started, leave every object then alive out of the cyclic collector's passes
    (a process that only serves: ``embstore serve``)."""
    from contextlib import asynccontextmanager

    from fastapi_offline import FastAPIOffline

    from embstore.server.explorer import explorer_router, static_app

    service = Service(store, metadata, max_k)
    warmer = Warmer(store, warm_interval)

    @asynccontextmanager
    async def lifespan(_app):
        if threads is not None:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        if preload:
            warmer.warm_once()
        if freeze:
            _freeze_startup_objects()
        warmer.start()
        yield
        warmer.stop()
        if close_store:
            store.close()

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
    _similar_route(app, service)
    app.include_router(explorer_router(service))
    app.mount("/static", static_app(), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/explorer")

    if token is not None:
        _require_token(app, token)
    _document(app, max_k, token is not None)
    return app


def _freeze_startup_objects() -> None:
    """Leave every object alive once the server is up (modules, plugins, the preloaded versions) out
    of the cyclic collector's later passes: a full pass over them takes about 70 ms with a 1M-vector
    version loaded, and stops every request in flight while it runs (rare: full passes follow
    growth of the surviving objects, which serving barely makes)."""
    import gc

    gc.collect()
    gc.freeze()


def _document(app: FastAPI, max_k: int, with_token: bool) -> None:
    """What the generated OpenAPI schema cannot know by itself: the server's --max-k as the bodies'
    k maximum, and with a token the bearer scheme and the 401 of every operation but /api/health."""
    from embstore.server import auth

    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {})
        for name in ("VectorRecallIn", "UserRecallIn"):
            k = components.get("schemas", {}).get(name, {}).get("properties", {}).get("k")
            if k is not None:
                k["maximum"] = max_k
        if with_token:
            components.setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer",
                "description": "the token given to embstore serve (--token or EMBSTORE_TOKEN)"}
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    if path in auth.OPEN_PATHS:
                        operation["security"] = []
                        continue
                    operation["security"] = [{"bearer": []}]
                    operation.setdefault("responses", {})["401"] = {
                        "description": "unauthorized: the request lacks this server's token",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
        return schema

    app.openapi = openapi


def _require_token(app: FastAPI, token: str) -> None:
    """The token gate, the sign-in page and the bearer scheme in the OpenAPI schema."""
    from fastapi.responses import HTMLResponse

    from embstore.server import auth

    auth.check_token(token)
    app.add_middleware(auth.TokenGate, token=token)

    @app.get("/login", include_in_schema=False)
    def login_form(next: str = "/explorer") -> HTMLResponse:
        return HTMLResponse(auth.login_page(auth.safe_next(next)))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        given, target = auth.login_form(await request.body())
        target = auth.safe_next(target)
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse(auth.login_page(target, "That is not this server's token."), status_code=401)
        return Response(status_code=303, headers={"location": target, "set-cookie": auth.cookie_header(token)})

    @app.get("/logout", include_in_schema=False)
    def logout() -> Response:
        return Response(status_code=303, headers={"location": "/login", "set-cookie": auth.cookie_header(None)})


WORKER_ENV = "EMBSTORE_SERVE_WORKER"  # JSON settings of `embstore serve --workers N` for each worker process


def worker_app() -> FastAPI:
    """The app one worker process of ``embstore serve --workers N`` builds (uvicorn calls this
    factory in each process): the store opened anew, the settings read from EMBSTORE_SERVE_WORKER."""
    import sys

    from embstore.server.metadata import Metadata
    from embstore.store import EmbeddingStore

    cfg = json.loads(os.environ[WORKER_ENV])
    if cfg.get("switch_interval"):
        sys.setswitchinterval(cfg["switch_interval"])
    tables = {name: Metadata.load(path, column) for name, path, column in cfg["metadata"]}
    store = EmbeddingStore(cfg["home"], progress=False)
    return create_app(store, tables, max_k=cfg["max_k"], warm_interval=cfg["watch"], preload=cfg["preload"],
                      token=cfg.get("token"), threads=cfg.get("threads"), close_store=True, freeze=True)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("embstore")
    except Exception:
        return "unknown"
