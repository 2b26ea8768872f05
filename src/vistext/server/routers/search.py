"""Finding indexed photos: by text (``/api/search``), like an indexed one (``/api/similar/{id}``) or like an
upload (``POST /api/similar``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request

from vistext.server import schemas
from vistext.server.context import ERRORS, NOT_FOUND_OR_UNKNOWN_MODEL, UNKNOWN_MODEL, ctx
from vistext.server.responses import JSONResponse, WrittenJSON
from vistext.server.routers.params import (
    Filter,
    ImageFile,
    ImageId,
    ModelName,
    Paging,
    catalogue_model,
    filter_openapi,
    read_upload,
)
from vistext.server.settings import ServerSettings
from vistext.service import check_upload


def build_search_router(settings: ServerSettings) -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)
    paging = Paging(settings)
    _add_text_search(api, paging)
    _add_similar(api, paging)
    return api


def _add_text_search(api: APIRouter, paging: Paging) -> None:
    @api.get(
        "/search",
        response_model=schemas.SearchOut,
        responses=UNKNOWN_MODEL,
        summary="indexed images matching a text",
        openapi_extra=filter_openapi(),
    )
    async def search(
        request: Request,
        filter: Filter,
        q: str = Query(
            ..., min_length=1, max_length=500, pattern=schemas.NOT_BLANK, description="the text to search for"
        ),
        k: int = paging.k(10),
        offset: int = paging.offset,
        min_score: float | None = paging.min_score,
        sort: Literal["relevance", "date"] = Query(
            "relevance", description="best first, or strong matches newest first"
        ),
        model: ModelName = None,
    ) -> WrittenJSON:
        context = ctx(request)
        paging.check(k, offset)
        model = await catalogue_model(context, model)
        # the query joins the next batch of searches and no thread waits for it (see vistext.service.batching);
        # only the first search, which may load the text model, runs in a worker thread
        service = context.service
        if service.text_model_loaded and filter.empty and model is None:
            pending = service.search_later(q, k, offset=offset, min_score=min_score, sort=sort)
        else:  # a filter or a CLIP model reads the catalogue first: not in the event loop
            pending = await context.call(
                lambda: service.search_later(
                    q, k, offset=offset, min_score=min_score, filter=filter, sort=sort, model=model
                )
            )
        result = await context.wait(pending)
        if context.warm_up is not None:
            context.warm_up.text_ready = True
        return WrittenJSON(result.to_json())


def _add_similar(api: APIRouter, paging: Paging) -> None:
    @api.get(
        "/similar/{image_id}",
        response_model=schemas.SearchOut,
        responses=NOT_FOUND_OR_UNKNOWN_MODEL,
        summary="images similar to an indexed one",
        openapi_extra=filter_openapi(),
    )
    async def similar_to_indexed(
        request: Request,
        image_id: ImageId,
        filter: Filter,
        k: int = paging.k(10),
        offset: int = paging.offset,
        min_score: float | None = paging.min_score,
        include_self: bool = Query(False, description="keep the query image itself in its answer"),
        model: ModelName = None,
    ) -> JSONResponse:
        context = ctx(request)
        paging.check(k, offset)
        model = await catalogue_model(context, model)
        result = await context.call(
            lambda: context.service.similar(
                image_id, k, offset=offset, min_score=min_score, include_self=include_self, filter=filter, model=model
            )
        )
        return JSONResponse(result.to_dict())

    @api.post(
        "/similar",
        response_model=schemas.SearchOut,
        responses=UNKNOWN_MODEL,
        summary="indexed images similar to an uploaded image",
        openapi_extra=filter_openapi(),
    )
    async def similar_to_upload(
        request: Request,
        file: ImageFile,
        filter: Filter,
        k: int = paging.k(10),
        offset: int = paging.offset,
        min_score: float | None = paging.min_score,
        model: ModelName = None,
    ) -> JSONResponse:
        context = ctx(request)
        paging.check(k, offset)
        model = await catalogue_model(context, model)
        upload = await read_upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            result = context.service.similar(upload, k, offset=offset, min_score=min_score, filter=filter, model=model)
            return result.to_dict()

        return JSONResponse(await context.upload_work(request, work))
