"""The JSON API. Every handler parses, calls the service in a worker thread, and returns its ``to_dict()``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from vistext import __version__
from vistext.errors import UsageError
from vistext.server import schemas
from vistext.server.limits import check_upload, run_blocking, wait_for
from vistext.server.settings import ServerSettings
from vistext.service import Service, Upload, parse_tag_sets

log = logging.getLogger(__name__)
T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorOut, "description": "bad request or unreadable image"},
    401: {"model": schemas.ErrorOut, "description": "missing or wrong bearer token"},
    413: {"model": schemas.ErrorOut, "description": "upload or image too large"},
    503: {"model": schemas.ErrorOut, "description": "no index yet, or a model is missing"},
    504: {"model": schemas.ErrorOut, "description": "the request took too long"},
}
ImageFile = Annotated[UploadFile, File(description="an image (JPEG, PNG, WebP, GIF, HEIC...)")]
MAP_WAIT = 2.0  # seconds a map request waits for the layout before answering 202 "computing"


@dataclass
class ServerContext:
    """What the handlers share: one service (models load once), the limits, background map jobs."""

    service: Service
    settings: ServerSettings
    uploads: anyio.CapacityLimiter
    map_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="map"))
    map_jobs: dict[str, Future[dict[str, Any]]] = field(default_factory=dict)

    async def call(self, fn: Callable[[], T], upload: bool = False) -> T:
        limiter = self.uploads if upload else None
        return await run_blocking(fn, self.settings.request_timeout, limiter)

    async def wait(self, future: Future[T]) -> T:
        """Await a service future (e.g. a batched search) within the request timeout."""
        return await wait_for(future, self.settings.request_timeout)


def ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _check_paging(context: ServerContext, k: int, offset: int) -> None:
    limits = context.settings
    if not 1 <= k <= limits.max_k:
        raise UsageError(f"k must be between 1 and {limits.max_k}, got {k}")
    if not 0 <= offset <= limits.max_offset:
        raise UsageError(f"offset must be between 0 and {limits.max_offset}, got {offset}")


async def _upload(file: UploadFile) -> Upload:
    # only the base name is kept: it is echoed back in answers and must not carry a client's directory layout
    raw = file.filename or "upload"
    name = PureWindowsPath(PurePosixPath(raw).name).name[:120] or "upload"
    return Upload(name, await file.read())


def _split_words(text: str, limit: int, what: str) -> list[str]:
    words = [w.strip() for w in text.replace("\n", ",").split(",") if w.strip()]
    if not words:
        raise UsageError(f"the {what} is empty")
    if len(words) > limit:
        raise UsageError(f"too many entries in the {what} ({len(words)}; limit {limit})")
    if any(len(w) > 200 for w in words):
        raise UsageError(f"an entry of the {what} is longer than 200 characters")
    return words


def build_router() -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

    @api.get("/health", response_model=schemas.HealthOut, summary="liveness check")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    @api.get("/info", summary="what is in the catalogue (same as `vistext info --json`)")
    async def info(request: Request) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: context.service.info().to_dict()))

    @api.get("/status", summary="index status: image count, text search available, map computed")
    async def status(request: Request) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: context.service.status().to_dict()))

    @api.get("/search", response_model=schemas.SearchOut, summary="indexed images matching a text")
    async def search(
        request: Request,
        q: str = Query(..., min_length=1, max_length=500, description="the text to search for"),
        k: int = Query(10, description="results per page"),
        offset: int = Query(0, description="skip this many results (paging)"),
        min_score: float | None = Query(None, ge=-1, le=1, description="drop results below this similarity"),
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, offset)
        # the query joins the next batch of searches and no thread waits for it (see vistext.service.batching); only the
        # first search, which may load the text model, runs in a worker thread
        service = context.service
        if service.text_model_loaded:
            pending = service.search_later(q, k, offset=offset, min_score=min_score)
        else:
            pending = await context.call(lambda: service.search_later(q, k, offset=offset, min_score=min_score))
        result = await context.wait(pending)
        return JSONResponse(result.to_dict())

    @api.get("/similar/{image_id}", response_model=schemas.SearchOut, summary="images similar to an indexed one")
    async def similar_to_indexed(
        request: Request,
        image_id: int,
        k: int = Query(10),
        offset: int = Query(0),
        min_score: float | None = Query(None, ge=-1, le=1),
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, offset)

        result = await context.call(lambda: context.service.similar(image_id, k, offset=offset, min_score=min_score))
        return JSONResponse(result.to_dict())

    @api.post("/similar", response_model=schemas.SearchOut, summary="indexed images similar to an uploaded image")
    async def similar_to_upload(
        request: Request,
        file: ImageFile,
        k: int = Query(10),
        offset: int = Query(0),
        min_score: float | None = Query(None, ge=-1, le=1),
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, offset)
        upload = await _upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            return context.service.similar(upload, k, offset=offset, min_score=min_score).to_dict()

        return JSONResponse(await context.call(work, upload=True))

    @api.post("/tag", response_model=schemas.TagOut, summary="tag an uploaded image")
    async def tag(
        request: Request,
        file: ImageFile,
        k: int = Query(5),
        tagger: str | None = Query(None, description="name of a trained tagger configured on the server"),
        vocab: str | None = Form(None, description="open vocabulary: comma- or newline-separated words"),
    ) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, 0)
        model = None
        if tagger is not None:
            if tagger not in context.settings.taggers:
                known = ", ".join(sorted(context.settings.taggers)) or "none configured"
                raise UsageError(f"unknown tagger {tagger!r} (available: {known})")
            model = context.settings.taggers[tagger]
        words = _split_words(vocab, context.settings.max_vocab, "vocabulary") if vocab is not None else None
        upload = await _upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            result = context.service.tag([upload], k, model=model, vocab=words)[0]
            if result.error:
                raise UsageError(result.error)
            return result.to_dict()

        return JSONResponse(await context.call(work, upload=True))

    @api.post("/caption", response_model=schemas.CaptionOut, summary="closest known captions for an uploaded image")
    async def caption(request: Request, file: ImageFile, k: int = Query(5)) -> JSONResponse:
        context = ctx(request)
        _check_paging(context, k, 0)
        bank = context.settings.captions
        if bank is None:
            raise UsageError("this server has no caption bank (start it with `vistext serve --captions SPEC`)")
        upload = await _upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            return context.service.caption(upload, bank, k).to_dict()

        return JSONResponse(await context.call(work, upload=True))

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

        return JSONResponse(await context.call(work, upload=True))

    @api.get("/topics", summary="NMF topics of the collection: top words and typical images")
    async def topics(request: Request, n: int = Query(8, ge=1, le=50)) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: context.service.topics(n).to_dict()))

    @api.get(
        "/map",
        response_model=schemas.MapOut,
        responses={202: {"model": schemas.PendingOut, "description": "the layout is being computed"}},
        summary="2-D map coordinates of every indexed image, coloured by topic",
    )
    async def map_points(request: Request, method: str | None = Query(None, pattern="^(tsne|pca)$")) -> Response:
        context = ctx(request)
        method = method or context.settings.map_method
        job = context.map_jobs.get(method)
        if job is None or job.done():
            job = context.map_pool.submit(lambda: context.service.map_points(method).to_dict())
            context.map_jobs[method] = job
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), MAP_WAIT)
        except TimeoutError:
            return JSONResponse({"status": "computing"}, status_code=202)
        return JSONResponse(result)

    @api.get("/images/{image_id}", response_class=FileResponse, summary="the original file of an indexed image")
    async def image(request: Request, image_id: int) -> FileResponse:
        context = ctx(request)
        path = await context.call(lambda: context.service.image_file(image_id))
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    @api.get(
        "/images/{image_id}/thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
        summary="a JPEG thumbnail of an indexed image",
    )
    async def thumbnail(request: Request, image_id: int, size: int = Query(256)) -> Response:
        context = ctx(request)
        data = await context.call(lambda: context.service.thumbnail(image_id, size))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return api
