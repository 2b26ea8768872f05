"""The collection as a list: ``/api/list``, ``/api/export``, ``/api/tags``, ``/api/facets``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from vistext.server import schemas
from vistext.server.context import ERRORS, ctx
from vistext.server.responses import JSONResponse
from vistext.server.routers.params import Filter, filter_openapi
from vistext.server.settings import ServerSettings

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def build_collection_router(settings: ServerSettings) -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

    @api.get(
        "/list",
        response_model=schemas.ListOut,
        summary="indexed photos passing the filters, newest first, with metadata",
        openapi_extra=filter_openapi(),
    )
    async def list_images(
        request: Request,
        filter: Filter,
        k: int = Query(50, ge=1, le=settings.max_k, description=f"photos per page (1-{settings.max_k})"),
        offset: int = Query(0, ge=0, le=settings.max_offset, description=f"skip this many (0-{settings.max_offset})"),
        cursor: str | None = Query(None, max_length=100, description="the next_cursor of the previous page"),
    ) -> JSONResponse:
        context = ctx(request)
        result = await context.call(lambda: context.service.list_images(filter, k, offset, cursor).to_dict())
        return JSONResponse(result)

    @api.get(
        "/export",
        response_class=StreamingResponse,
        responses={200: {"content": {t: {} for t in EXPORT_TYPES.values()}}},
        summary="every photo passing the filters as CSV or JSON Lines (path, tags, scores, metadata)",
        openapi_extra=filter_openapi(),
    )
    async def export(
        request: Request, filter: Filter, format: Literal["csv", "jsonl"] = Query("csv")
    ) -> StreamingResponse:
        context = ctx(request)
        lines = await context.call(lambda: context.service.export_lines(filter, format))
        headers = {"Content-Disposition": f'attachment; filename="vistext-export.{format}"'}
        return StreamingResponse(lines, media_type=EXPORT_TYPES[format], headers=headers)

    @api.get("/tags", response_model=schemas.TagCountsOut, summary="stored collection tags and how many photos")
    async def tags(request: Request) -> JSONResponse:
        context = ctx(request)
        return JSONResponse({"tags": await context.call(context.service.tag_counts)})

    @api.get("/models", response_model=schemas.ModelsOut, summary="CLIP-family models the catalogue was indexed with")
    async def models(request: Request) -> JSONResponse:
        context = ctx(request)
        found = await context.call(context.service.catalogue_models)
        fields = ("name", "key", "dim", "space")  # not the folder it came from: a path on the server
        return JSONResponse({"models": [{name: about.get(name) for name in fields} for about in found]})

    @api.get("/facets", response_model=schemas.FacetsOut, summary="cameras, folders, date range, GPS count, tags")
    async def facets(request: Request) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(context.service.facets))

    return api
