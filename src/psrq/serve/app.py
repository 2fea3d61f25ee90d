"""The FastAPI application of `psrq serve`.

    app = create_app(ServeSettings(spec=ServeSpec(quantizer="runs/lastfm2k/quantizers/psrq")))

Routes: POST /v1/items/sids, POST /v1/score, GET /healthz, /readyz, /v1/version, /docs,
POST /admin/reload (bearer token from $PSRQ_ADMIN_TOKEN; without it admin routes are off),
and the semantic-ID explorer (GET / and /v1/explorer/...). docs/serving.md shows each one.

A request reads `holder.current` once and uses that `Loaded` to the end, so a reload (which
builds a complete new `Loaded` before assigning it) swaps models without failing anyone.
Every bad request gets a 4xx JSON body {"error": ..., "detail": [{"field", "reason"}]}.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from psrq.errors import PsrqError
from psrq.formats.sids import JOINT
from psrq.serve import schemas as s
from psrq.serve.assign import AudioUpload, RequestError, assign_sids, gather_vectors, sids_response
from psrq.serve.loaded import Loaded, ServeSpec, load_artifacts

T = TypeVar("T")

ADMIN_TOKEN_ENV = "PSRQ_ADMIN_TOKEN"
SETTINGS_ENV = "PSRQ_SERVE_SETTINGS"  # JSON of ServeSettings, for `uvicorn --factory` workers


@dataclass
class ServeSettings:
    spec: ServeSpec
    max_batch: int = 256  # items per POST /v1/items/sids
    max_candidates: int = 1000  # candidates per POST /v1/score
    max_history: int = 1000  # history items accepted (the ranker keeps its newest max_history)
    max_body_bytes: int = 8 << 20  # any request body (uploaded audio included)
    admin_token: str | None = field(default=None, repr=False)
    # With several workers: a reload done by one worker is recorded here and the others follow.
    reload_file: str | None = None

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "spec": self.spec.__dict__, "admin_token": None})

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        d = json.loads(text)
        return cls(**{**d, "spec": ServeSpec(**d["spec"])})


class ModelHolder:
    """The current `Loaded`; replaced (never mutated) by a reload."""

    def __init__(self, loaded: Loaded) -> None:
        self.current = loaded
        self.reload_lock = asyncio.Lock()
        self._compute_limiter: anyio.CapacityLimiter | None = None

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, one model computation at a time in this process.

        Why one: scoring and assignment are short and hold the GIL between torch and numpy
        calls, so several threads of one process contend instead of overlapping (measured on 2
        cores, 1 worker: 280 req/s with 1 connection, 214 with 8 when every request had its own
        thread). The event loop stays free meanwhile (health, reload); parallelism comes from
        `--workers` (processes).
        """
        if self._compute_limiter is None:  # created inside the running loop
            self._compute_limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self._compute_limiter)


# ---- errors -----------------------------------------------------------------------------------
def _error(status: int, error: str, details: list[tuple[str, str]]) -> JSONResponse:
    body = s.ErrorResponse(
        error=error, detail=[s.ErrorDetail(field=f, reason=r) for f, r in details]
    )
    return JSONResponse(body.model_dump(), status_code=status)


def _validation_details(errors: list[dict[str, Any]], drop_first: bool) -> list[tuple[str, str]]:
    out = []
    for e in errors:
        if e.get("type") == "json_invalid":
            where = e.get("ctx", {}).get("error") or ""
            out.append(
                (
                    "body",
                    f"not valid JSON{': ' + str(where) if where else ''} (at {list(e.get('loc', ()))[-1]})",
                )
            )
            continue
        loc = list(e.get("loc", ()))
        if drop_first and loc and loc[0] in ("body", "query", "path"):
            loc = loc[1:]
        out.append((".".join(str(p) for p in loc) or "body", str(e.get("msg", "invalid"))))
    return out


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(
            422, "invalid_request", _validation_details(list(exc.errors()), drop_first=True)
        )

    @app.exception_handler(RequestError)
    async def _bad(_: Request, exc: RequestError) -> JSONResponse:
        return _error(
            exc.status,
            "invalid_request" if exc.status == 422 else _reason(exc.status),
            [(exc.field, exc.reason)],
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(
            exc.status_code, _reason(exc.status_code), [(request.url.path, str(exc.detail))]
        )

    @app.exception_handler(PsrqError)
    async def _psrq(_: Request, exc: PsrqError) -> JSONResponse:
        return _error(422, "invalid_request", [("body", str(exc))])

    @app.exception_handler(Exception)
    async def _bug(
        request: Request, exc: Exception
    ) -> JSONResponse:  # a bug: JSON too, and logged by uvicorn
        logging.getLogger("psrq.serve").exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", [(request.url.path, f"{type(exc).__name__}: {exc}")])


def _reason(status: int) -> str:
    return {
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "too_large",
        415: "unsupported_media_type",
    }.get(status, "error")


class BodyLimit:
    """ASGI middleware: 413 for bodies over `limit` bytes (by Content-Length, or while streaming)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._reject(scope, receive, send)
            return
        # Chunked (or lying) bodies: read up to the limit here, then replay them to the app.
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await self._reject(scope, receive, send)
                return
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = _error(
            413, "too_large", [("body", f"request body exceeds the limit of {self.limit} bytes")]
        )
        await response(scope, receive, send)


# ---- the app ----------------------------------------------------------------------------------
def create_app(settings: ServeSettings, loaded: Loaded | None = None) -> FastAPI:
    """Load (and verify) the artifacts now, then return the app; loading errors raise here."""
    holder = ModelHolder(loaded if loaded is not None else load_artifacts(settings.spec))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = (
            asyncio.create_task(_follow_reloads(holder, settings.reload_file))
            if settings.reload_file
            else None
        )
        yield
        if watcher is not None:
            watcher.cancel()

    app = FastAPI(
        title="psrq serve",
        description="Semantic IDs for new tracks (PSRQ) and MCCA ranking with frozen artifacts. See docs/serving.md.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.state.settings = settings
    _install_error_handlers(app)
    _health_routes(app, holder)
    _sids_routes(app, holder, settings)
    _score_routes(app, holder, settings)
    _admin_routes(app, holder, settings)
    _explorer_routes(app, holder)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    _document_raw_bodies(app)
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """Routes that parse their body themselves (JSON or multipart) reference these schemas."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (s.SidsRequest, s.ReloadRequest):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(js.pop("$defs", {}))
                components[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from $PSRQ_SERVE_SETTINGS, token from $PSRQ_ADMIN_TOKEN."""
    settings = ServeSettings.from_json(os.environ[SETTINGS_ENV])
    settings.admin_token = os.environ.get(ADMIN_TOKEN_ENV) or None
    return create_app(settings)


def _version() -> str:
    from psrq import __version__

    return __version__


def _health_routes(app: FastAPI, holder: ModelHolder) -> None:
    @app.get("/healthz", response_model=s.Health, tags=["health"])
    def healthz() -> s.Health:
        """The process is up."""
        return s.Health(status="ok")

    @app.get("/readyz", response_model=s.Ready, tags=["health"])
    def readyz() -> s.Ready:
        """Models are loaded and verified (they are before the first request is accepted)."""
        cur = holder.current
        return s.Ready(
            ready=True,
            generation=cur.generation,
            quantizer=True,
            ranker=cur.ranker is not None,
            text_encoder=cur.text_encoder is not None,
            audio_encoder=cur.audio_encoder is not None,
        )

    @app.get("/v1/version", response_model=s.VersionResponse, tags=["health"])
    def version() -> s.VersionResponse:
        """Package version, model paths and fingerprints (of their manifests), when they were loaded."""
        return s.VersionResponse(**holder.current.version_info())


_SIDS_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SidsRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["item_id", "audio"],
                    "properties": {
                        "item_id": {"type": "string"},
                        "audio": {"type": "string", "format": "binary"},
                        "text": {"type": "string"},
                        "disambiguate": {"type": "boolean"},
                    },
                }
            },
        },
    }
}


_RELOAD_OPENAPI = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReloadRequest"}}},
    }
}


def _sids_routes(app: FastAPI, holder: ModelHolder, settings: ServeSettings) -> None:
    @app.post(
        "/v1/items/sids",
        response_model=s.SidsResponse,
        tags=["sids"],
        openapi_extra=_SIDS_OPENAPI,
        responses={422: {"model": s.ErrorResponse}, 413: {"model": s.ErrorResponse}},
    )
    async def item_sids(request: Request) -> s.SidsResponse:
        """Modal-specific and joint SIDs (+ suffixes with `disambiguate`) for new items.

        JSON: a batch of items, each with precomputed `embeddings` per modality and/or `text`.
        multipart/form-data: one item with an uploaded `audio` file (and optional `text`).
        """
        loaded = holder.current
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            body = _parse_json(await request.body(), s.SidsRequest)
            if len(body.items) > settings.max_batch:
                raise RequestError(
                    "items",
                    f"{len(body.items)} items; this service accepts at most {settings.max_batch} per request",
                )
            return await holder.compute(_sids_json, loaded, body)
        if kind == "multipart/form-data":
            return await _sids_multipart(request, holder, loaded)
        raise RequestError(
            "content-type",
            f"{kind or 'none'}: send application/json (embeddings, text) or multipart/form-data (audio file)",
            status=415,
        )


def _parse_json(raw: bytes, model: type[Any]) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        details = _validation_details(list(e.errors()), drop_first=False)
        field, reason = details[0] if details else ("body", "invalid JSON")
        if any(err.get("type") == "json_invalid" for err in e.errors()):
            field = "body"
        raise RequestError(
            field, reason + (f" (and {len(details) - 1} more)" if len(details) > 1 else "")
        ) from None


def _sids_json(loaded: Loaded, body: s.SidsRequest) -> s.SidsResponse:
    vectors, sources = gather_vectors(loaded, body.items)
    ids = [item.item_id for item in body.items]
    return sids_response(
        loaded, assign_sids(loaded, vectors, ids, disambiguate=body.disambiguate), sources
    )


async def _sids_multipart(request: Request, holder: ModelHolder, loaded: Loaded) -> s.SidsResponse:
    form = await request.form()
    item_id = form.get("item_id")
    if not isinstance(item_id, str) or not item_id:
        raise RequestError("item_id", "missing (a form field naming the uploaded item)")
    upload = form.get("audio")
    text = form.get("text")
    if upload is None or isinstance(upload, str):
        raise RequestError("audio", "missing: upload the audio file in a form field named 'audio'")
    if loaded.audio_encoder is None:
        raise RequestError(
            "audio",
            "this service has no audio encoder (start it with --audio-encoder); send embeddings.audio as JSON instead",
        )
    data = await upload.read()
    wave = await holder.compute(
        _decode_upload, data, upload.filename or "upload", loaded.audio_encoder.sample_rate
    )
    item = s.NewItem(item_id=item_id, text=text if isinstance(text, str) and text else None)
    disambiguate = str(form.get("disambiguate", "false")).lower() in ("1", "true", "yes")

    def work() -> s.SidsResponse:
        vectors, sources = gather_vectors(loaded, [item], [AudioUpload(item_id, wave)])
        return sids_response(
            loaded, assign_sids(loaded, vectors, [item_id], disambiguate=disambiguate), sources
        )

    return await holder.compute(work)


def _decode_upload(data: bytes, filename: str, sample_rate: int) -> Any:
    from psrq.features.audio_io import AudioDecodeError, decode_audio

    if not data:
        raise RequestError("audio", "the uploaded file is empty")
    suffix = Path(filename).suffix[:8] or ".bin"
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        try:
            return decode_audio(f.name, sample_rate)
        except AudioDecodeError as e:
            detail = e.detail.replace(f.name, filename)  # name the upload, not our temp file
            raise RequestError(
                "audio", f"{e.reason} audio" + (f" ({detail})" if detail else "")
            ) from None


def _score_routes(app: FastAPI, holder: ModelHolder, settings: ServeSettings) -> None:
    from psrq.serve.scoring import score

    @app.post(
        "/v1/score",
        response_model=s.ScoreResponse,
        tags=["score"],
        responses={422: {"model": s.ErrorResponse}, 409: {"model": s.ErrorResponse}},
    )
    async def score_route(body: s.ScoreRequest) -> s.ScoreResponse:
        """Rank candidates for a history, best first (top_k), flagging new and unknown items."""
        loaded = holder.current
        if loaded.ranker is None:
            raise RequestError(
                "ranker", "this service was started without a ranker (--ranker)", status=409
            )
        if len(body.candidates) > settings.max_candidates:
            raise RequestError(
                "candidates",
                f"{len(body.candidates)} candidates; at most {settings.max_candidates} per request",
            )
        if len(body.history) > settings.max_history:
            raise RequestError(
                "history", f"{len(body.history)} items; at most {settings.max_history} per request"
            )
        if len(body.new_items) > settings.max_batch:
            raise RequestError(
                "new_items",
                f"{len(body.new_items)} items; at most {settings.max_batch} per request",
            )
        return await holder.compute(score, loaded, body)


def _admin_routes(app: FastAPI, holder: ModelHolder, settings: ServeSettings) -> None:
    @app.post(
        "/admin/reload",
        response_model=s.ReloadResponse,
        tags=["admin"],
        openapi_extra=_RELOAD_OPENAPI,
        responses={
            401: {"model": s.ErrorResponse},
            404: {"model": s.ErrorResponse},
            422: {"model": s.ErrorResponse},
        },
    )
    async def reload(request: Request) -> s.ReloadResponse:
        """Load new model directories (default: the same paths again), verify them, then swap atomically."""
        _check_admin(request, settings)
        raw = await request.body()
        body = _parse_json(raw, s.ReloadRequest) if raw.strip() else s.ReloadRequest()
        async with holder.reload_lock:
            cur = holder.current
            spec = cur.spec.with_overrides(quantizer=body.quantizer, ranker=body.ranker)
            recorded = _read_reload_file(settings.reload_file)
            generation = max(cur.generation, int(recorded.get("generation", 0))) + 1
            try:
                new = await run_in_threadpool(load_artifacts, spec, generation=generation)
            except PsrqError as e:
                field = (
                    "ranker"
                    if body.ranker and body.ranker in str(e)
                    else "quantizer"
                    if body.quantizer
                    else "body"
                )
                raise RequestError(field, f"not loaded, the current models stay: {e}") from None
            holder.current = new
            if settings.reload_file:
                _write_reload_file(settings.reload_file, new)
        info = new.version_info()
        return s.ReloadResponse(
            generation=new.generation,
            loaded_at=new.loaded_at,
            load_seconds=info["load_seconds"],
            models=info["models"],
        )


def _read_reload_file(path: str | None) -> dict[str, Any]:
    if not path or not Path(path).is_file():
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_reload_file(path: str, loaded: Loaded) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(
        json.dumps({"generation": loaded.generation, "spec": loaded.spec.__dict__})
    )
    os.replace(tmp, path)


async def _follow_reloads(holder: ModelHolder, path: str, interval: float = 0.5) -> None:
    """Worker side of a multi-worker reload: load what another worker recorded, then swap."""
    while True:
        await asyncio.sleep(interval)
        recorded = _read_reload_file(path)
        generation = int(recorded.get("generation", 0))
        if generation <= holder.current.generation:
            continue
        async with holder.reload_lock:
            if generation <= holder.current.generation:
                continue
            try:
                holder.current = await run_in_threadpool(
                    load_artifacts, ServeSpec(**recorded["spec"]), generation=generation
                )
            except (
                PsrqError
            ) as e:  # keep serving the current models; the next change is tried again
                logging.getLogger("psrq.serve").warning(
                    "worker %s could not follow reload %s: %s", os.getpid(), generation, e
                )
                await asyncio.sleep(5.0)


def _check_admin(request: Request, settings: ServeSettings) -> None:
    if not settings.admin_token:
        raise RequestError(
            "path", f"admin routes are disabled (set {ADMIN_TOKEN_ENV} to enable them)", status=404
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.encode(), settings.admin_token.encode()
    ):
        raise RequestError("authorization", "missing or wrong bearer token", status=401)


def _explorer_routes(app: FastAPI, holder: ModelHolder) -> None:
    from psrq.serve.explorer import ExplorerIndex

    def index() -> ExplorerIndex:
        cur = holder.current
        with cur.explorer_lock:
            if cur.explorer is None:
                cur.explorer = ExplorerIndex.build(cur)
            return cur.explorer

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(
            resources.files("psrq.serve").joinpath("static/explorer.html").read_text()
        )

    @app.get("/v1/explorer/summary", response_model=s.ExplorerSummary, tags=["explorer"])
    def summary() -> s.ExplorerSummary:
        return s.ExplorerSummary(**index().summary())

    @app.get("/v1/explorer/codes", response_model=s.CodesResponse, tags=["explorer"])
    def codes(codebook: str = JOINT, prefix: str = "") -> s.CodesResponse:
        """The codes one level below `prefix` (comma-separated codes), largest cluster first."""
        return s.CodesResponse(**index().children(codebook, _prefix(prefix)))

    @app.get("/v1/explorer/items", response_model=s.ItemsResponse, tags=["explorer"])
    def items(
        codebook: str = JOINT,
        prefix: str = "",
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> s.ItemsResponse:
        """The items under a code prefix, with titles when the items file has them."""
        return s.ItemsResponse(
            **index().items(codebook, _prefix(prefix), limit=limit, offset=offset)
        )

    @app.get("/v1/explorer/search", response_model=list[s.ExplorerItem], tags=["explorer"])
    def search(q: str = Query(..., min_length=1, max_length=200)) -> list[s.ExplorerItem]:
        """Items whose ID equals `q` or whose title contains it."""
        return [s.ExplorerItem(**hit) for hit in index().search(q)]

    @app.get("/v1/explorer/items/{item_id}", response_model=s.ItemDetail, tags=["explorer"])
    def item(item_id: str, codebook: str = JOINT, k: int = Query(10, ge=1, le=100)) -> s.ItemDetail:
        """An item's code path and its nearest neighbours in code space and in embedding space."""
        return s.ItemDetail(**index().detail(item_id, codebook, k=k))

    @app.get("/v1/explorer/cluster-sizes.png", tags=["explorer"], response_class=Response)
    def cluster_sizes() -> Response:
        """The ID report's cluster-size plot for the loaded quantizer (PNG)."""
        return Response(index().cluster_sizes_png(), media_type="image/png")


def _prefix(text: str) -> list[int]:
    if not text.strip():
        return []
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        raise RequestError(
            "prefix", f"{text!r} is not a comma-separated list of integer codes"
        ) from None
    if any(v < 0 for v in values):
        raise RequestError("prefix", "codes are non-negative")
    return values
