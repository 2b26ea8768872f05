"""The JSON API. Every handler parses, calls the service in a worker thread, and returns its ``to_dict()``.

The OpenAPI schema states the real limits (k, offset, ids, thumbnail sizes, topics), so a request the schema
allows is accepted, and one it does not gets a 4xx ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import unicodedata
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse

from vistext import __version__
from vistext.errors import UsageError
from vistext.paths import DB_DIRNAME
from vistext.server import schemas
from vistext.server.collection_routes import Filter, build_collection_router, keep_points
from vistext.server.files import open_indexed_file
from vistext.server.limits import check_upload, run_blocking, wait_for
from vistext.server.responses import JSONResponse
from vistext.server.settings import MAX_IMAGE_ID, ServerSettings
from vistext.server.warmup import WarmUp
from vistext.server.work import WorkQueue
from vistext.service import Service, Upload, parse_tag_sets, parse_vocabulary
from vistext.service.collection import THUMBNAIL_SIZES, UnknownImageError

log = logging.getLogger(__name__)
T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorOut, "description": "bad request or unreadable image"},
    401: {"model": schemas.ErrorOut, "description": "missing or wrong bearer token"},
    408: {"model": schemas.ErrorOut, "description": "the request head or body arrived too slowly"},
    413: {"model": schemas.ErrorOut, "description": "upload or image too large"},
    503: {"model": schemas.ErrorOut, "description": "no index yet, a model is missing, or the server is busy"},
    504: {"model": schemas.ErrorOut, "description": "the request took too long"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.ErrorOut, "description": "no indexed, readable image has this id"}
}
ImageFile = Annotated[
    UploadFile,
    File(description="an image (JPEG, PNG, WebP, GIF, HEIC...); not empty", json_schema_extra={"minLength": 1}),
]
ImageId = Annotated[int, Path(ge=1, le=MAX_IMAGE_ID, description="catalogue id of an indexed image")]
MAP_WAIT = 2.0  # seconds a map request waits for the layout before answering 202 "computing"
TOPICS_KEPT = 8  # topic fits (one per n) kept in memory


@dataclass
class ServerContext:
    """What the handlers share: one service (models load once), the limits, the work queues, map jobs."""

    service: Service
    settings: ServerSettings
    uploads: WorkQueue
    analysis: WorkQueue
    map_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="map"))
    map_jobs: dict[str, Future[dict[str, Any]]] = field(default_factory=dict)
    warm_up: WarmUp | None = None

    @classmethod
    def create(cls, service: Service, settings: ServerSettings) -> ServerContext:
        uploads = WorkQueue("upload", settings.upload_concurrency, settings.max_waiting_work)
        analysis = WorkQueue("analysis", 1, settings.max_waiting_work, keep=TOPICS_KEPT)
        return cls(service, settings, uploads, analysis, warm_up=WarmUp(service))

    def shutdown(self) -> None:
        self.map_pool.shutdown(wait=False, cancel_futures=True)
        self.uploads.shutdown()
        self.analysis.shutdown()

    async def call(self, fn: Callable[[], T]) -> T:
        """Cheap service work (catalogue look-ups, one search) in a worker thread, within the request timeout."""
        return await run_blocking(fn, self.settings.request_timeout)

    async def upload_work(self, request: Request, fn: Callable[[], T]) -> T:
        """A model run on an upload: queued behind at most ``upload_concurrency`` others (503 when full)."""
        return await self.uploads.run(fn, self.settings.request_timeout, request)

    async def analysis_work(self, request: Request, key: Hashable, fn: Callable[[], T]) -> T:
        """A collection-wide fit (topics): one at a time, shared by identical requests, result kept."""
        return await self.analysis.run(fn, self.settings.request_timeout, request, key=key)

    async def per_collection_state(self, request: Request, key: tuple[Hashable, ...], fn: Callable[[], T]) -> T:
        """A collection-wide analysis (topics, duplicates) computed once per catalogue version and ``key``, and
        kept (see ``analysis_work``): a repeated request costs nothing until the collection changes."""
        version = await self.call(lambda: self.service.store().version())
        full_key = (*key, version)
        cached = self.analysis.cached(full_key)
        return cached if cached is not None else await self.analysis_work(request, full_key, fn)

    async def wait(self, future: Future[T]) -> T:
        """Await a service future (e.g. a batched search) within the request timeout."""
        return await wait_for(future, self.settings.request_timeout)

    def collection_folder(self) -> FilePath | None:
        """The folder the catalogue belongs to (``DIR`` of ``DIR/.vistext/catalogue.sqlite``), if it has one."""
        db = self.service.db_path()
        return db.parent.parent.resolve() if db.parent.name == DB_DIRNAME else None


def ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _check_paging(context: ServerContext, k: int, offset: int) -> None:
    limits = context.settings
    if not 1 <= k <= limits.max_k:
        raise UsageError(f"k must be between 1 and {limits.max_k}, got {k}")
    if not 0 <= offset <= limits.max_offset:
        raise UsageError(f"offset must be between 0 and {limits.max_offset}, got {offset}")


def upload_name(raw: str | None) -> str:
    """The base name of an upload, fit to echo back: no client directory layout, no control characters
    (a NUL byte, a newline), at most 120 characters."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:120] or "upload"


async def _upload(file: UploadFile) -> Upload:
    return Upload(upload_name(file.filename), await file.read())


def build_router(settings: ServerSettings) -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)
    max_k, max_offset = settings.max_k, settings.max_offset
    k_doc = f"results per page (1-{max_k})"

    def k_param(default: int) -> Any:
        return Query(default, ge=1, le=max_k, description=k_doc)

    offset_param = Query(0, ge=0, le=max_offset, description=f"skip this many results (0-{max_offset})")
    min_score_param = Query(None, ge=0, le=1, description="drop results scoring below this (0-1 relevance)")

    @api.get("/health", response_model=schemas.HealthOut, summary="liveness check")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    @api.get("/info", summary="what is in the catalogue (same as `vistext info --json`)")
    async def info(request: Request) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: context.service.info().to_dict()))

    @api.get(
        "/status",
        summary="index status: image count, text search available, map computed, models still loading, captions",
    )
    async def status(request: Request) -> JSONResponse:
        context = ctx(request)
        answer = await context.call(lambda: context.service.status().to_dict())
        if context.warm_up is not None:
            answer.update(context.warm_up.to_dict())
        answer["captions"] = context.settings.captions is not None  # whether /api/caption can answer
        return JSONResponse(answer)

    @api.get("/search", response_model=schemas.SearchOut, summary="indexed images matching a text")
    async def search(
        request: Request,
        filter: Filter,
        q: str = Query(
            ..., min_length=1, max_length=500, pattern=schemas.NOT_BLANK, description="the text to search for"
        ),
        k: int = k_param(10),
        offset: int = offset_param,
        min_score: float | None = min_score_param,
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, offset)
        # the query joins the next batch of searches and no thread waits for it (see vistext.service.batching); only the
        # first search, which may load the text model, runs in a worker thread
        service = context.service
        if service.text_model_loaded and filter.empty:
            pending = service.search_later(q, k, offset=offset, min_score=min_score)
        else:  # a filter reads the catalogue first: not in the event loop
            pending = await context.call(
                lambda: service.search_later(q, k, offset=offset, min_score=min_score, filter=filter)
            )
        result = await context.wait(pending)
        if context.warm_up is not None:
            context.warm_up.text_ready = True
        return JSONResponse(result.to_dict())

    @api.get(
        "/similar/{image_id}",
        response_model=schemas.SearchOut,
        responses=NOT_FOUND,
        summary="images similar to an indexed one",
    )
    async def similar_to_indexed(
        request: Request,
        image_id: ImageId,
        filter: Filter,
        k: int = k_param(10),
        offset: int = offset_param,
        min_score: float | None = min_score_param,
        include_self: bool = Query(False, description="keep the query image itself in its answer"),
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, offset)

        result = await context.call(
            lambda: context.service.similar(
                image_id, k, offset=offset, min_score=min_score, include_self=include_self, filter=filter
            )
        )
        return JSONResponse(result.to_dict())

    @api.post("/similar", response_model=schemas.SearchOut, summary="indexed images similar to an uploaded image")
    async def similar_to_upload(
        request: Request,
        file: ImageFile,
        filter: Filter,
        k: int = k_param(10),
        offset: int = offset_param,
        min_score: float | None = min_score_param,
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, offset)
        upload = await _upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            return context.service.similar(upload, k, offset=offset, min_score=min_score, filter=filter).to_dict()

        return JSONResponse(await context.upload_work(request, work))

    @api.post("/tag", response_model=schemas.TagOut, summary="tag an uploaded image")
    async def tag(
        request: Request,
        file: ImageFile,
        k: int = k_param(5),
        tagger: str | None = Query(None, description="name of a trained tagger configured on the server"),
        vocab: str | None = Form(
            None,
            description=f"open vocabulary: comma- or newline-separated words (at most {settings.max_vocab})",
        ),
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, 0)
        model = None
        if tagger is not None:
            if tagger not in context.settings.taggers:
                known = ", ".join(sorted(context.settings.taggers)) or "none configured"
                raise UsageError(f"unknown tagger {tagger!r} (available: {known})")
            model = context.settings.taggers[tagger]
        words = parse_vocabulary(vocab, limit=context.settings.max_vocab) if vocab is not None else None
        upload = await _upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            result = context.service.tag([upload], k, model=model, vocab=words)[0]
            if result.error:
                raise UsageError(result.error)
            return result.to_dict()

        return JSONResponse(await context.upload_work(request, work))

    @api.post("/caption", response_model=schemas.CaptionOut, summary="closest known captions for an uploaded image")
    async def caption(request: Request, file: ImageFile, k: int = k_param(5)) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, 0)
        bank = context.settings.captions
        if bank is None:
            raise UsageError("this server has no caption bank (start it with `vistext serve --captions SPEC`)")
        upload = await _upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            return context.service.caption(upload, bank, k).to_dict()

        return JSONResponse(await context.upload_work(request, work))

    @api.post("/match", response_model=schemas.MatchOut, summary="which tag set fits an uploaded image best")
    async def match(
        request: Request,
        file: ImageFile,
        tag_sets: str = Form(..., description='one set per line ("dog, grass"), or JSON [["dog","grass"],["cat"]]'),
    ) -> JSONResponse:
        context = ctx(request)
        sets = parse_tag_sets(tag_sets, limit=context.settings.max_tag_sets)
        upload = await _upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            return context.service.match(upload, sets).to_dict()

        return JSONResponse(await context.upload_work(request, work))

    @api.get("/topics", summary="NMF topics of the collection: top words and typical images")
    async def topics(
        request: Request,
        n: int = Query(8, ge=1, le=settings.max_topics, description=f"number of topics (1-{settings.max_topics})"),
    ) -> JSONResponse:
        context = ctx(request)
        # one fit per collection state and n, kept in memory: a new n costs a fit once, not once per request
        return JSONResponse(
            await context.per_collection_state(request, ("topics", n), lambda: context.service.topics(n).to_dict())
        )

    @api.get(
        "/map",
        response_model=schemas.MapOut,
        responses={202: {"model": schemas.PendingOut, "description": "the layout is being computed"}},
        summary="2-D map coordinates of every indexed image, coloured by topic",
    )
    async def map_points(
        request: Request,
        filter: Filter,
        method: Literal["tsne", "pca"] | None = Query(None),
    ) -> Response:
        context = ctx(request)
        chosen: str = method or context.settings.map_method
        job = context.map_jobs.get(chosen)
        if job is None or job.done():
            job = context.map_pool.submit(lambda: context.service.map_points(chosen).to_dict())
            context.map_jobs[chosen] = job
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), MAP_WAIT)
        except TimeoutError:
            return JSONResponse({"status": "computing"}, status_code=202)
        if not filter.empty:  # the layout is the whole collection's; a filter shows only its photos
            ids = await context.call(lambda: context.service.store().ids_matching(filter))
            result = keep_points(result, set(ids.tolist()))
        return JSONResponse(result)

    @api.get(
        "/images/{image_id}",
        response_class=FileResponse,
        responses=NOT_FOUND,
        summary="the original file of an indexed image (a regular file still in the collection, never a link)",
    )
    async def image(request: Request, image_id: ImageId) -> StreamingResponse:
        context = ctx(request)

        def open_original() -> Any:
            path = context.service.image_file(image_id)
            return open_indexed_file(image_id, path, context.collection_folder())

        original = await context.call(open_original)
        return StreamingResponse(original.chunks(), media_type=original.media_type, headers=original.headers)

    @api.get(
        "/images/{image_id}/thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, **NOT_FOUND},
        summary="a JPEG thumbnail of an indexed image",
    )
    async def thumbnail(
        request: Request,
        image_id: ImageId,
        size: int = Query(256, description="longer side in pixels", json_schema_extra={"enum": list(THUMBNAIL_SIZES)}),
    ) -> Response:
        context = ctx(request)

        def make() -> bytes:
            # the original must still be a regular file at its indexed place (as for /api/images); one that is
            # gone may still have a cached thumbnail, which the service decides
            try:
                path = context.service.image_file(image_id)
            except UnknownImageError:
                path = None
            if path is not None:
                os.close(open_indexed_file(image_id, path, context.collection_folder()).fd)
            return context.service.thumbnail(image_id, size)

        data = await context.call(make)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    api.include_router(build_collection_router(settings))
    return api
