"""The collection as a list over HTTP: ``/api/list``, ``/api/export``, ``/api/tags``, ``/api/facets``, and the
photo filters (``after``, ``before``, ``camera``, ``near``, ``folder``, ``tag``) that these and the search,
similar and map routes take. A bad filter value is a 400 naming the parameter."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from vistext.server import schemas
from vistext.server.responses import JSONResponse
from vistext.server.settings import ServerSettings
from vistext.service.filters import DATE_PATTERN, MAX_TEXT, NEAR_PATTERN, parse_filter
from vistext.store.records import ImageFilter

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _text(description: str) -> Any:
    return Query(None, min_length=1, max_length=MAX_TEXT, pattern=schemas.NOT_BLANK, description=description)


def image_filter(
    after: str | None = Query(
        None, max_length=60, pattern=DATE_PATTERN, description="taken on or after this date (YYYY-MM-DD or ISO, UTC)"
    ),
    before: str | None = Query(
        None, max_length=60, pattern=DATE_PATTERN, description="taken before this date (YYYY-MM-DD or ISO datetime)"
    ),
    camera: str | None = _text("camera make/model contains this (case-insensitive)"),
    near: str | None = Query(
        None, max_length=100, pattern=NEAR_PATTERN, description="LAT,LON,KM: within KM km of this GPS position"
    ),
    folder: str | None = _text("in this folder or below (relative to the collection's folder)"),
    tag: str | None = _text("has this stored collection tag (case-insensitive)"),
) -> ImageFilter:
    """The filter query parameters, parsed (a bad one raises ``UsageError``: a 400)."""
    return parse_filter(after, before, camera, near, folder, tag)


Filter = Annotated[ImageFilter, Depends(image_filter)]


def keep_points(answer: dict[str, Any], ids: set[int]) -> dict[str, Any]:
    """A map answer with only the points of these image ids (``count`` follows)."""
    points = answer["points"]
    rows = [i for i, image_id in enumerate(points["id"]) if image_id in ids]
    kept = {name: [values[i] for i in rows] for name, values in points.items()}
    return {**answer, "points": kept, "count": len(rows)}


def build_collection_router(settings: ServerSettings) -> APIRouter:
    from vistext.server.routes import ctx

    api = APIRouter()

    @api.get("/list", response_model=schemas.ListOut, summary="indexed photos passing the filters, with metadata")
    async def list_images(
        request: Request,
        filter: Filter,
        k: int = Query(50, ge=1, le=settings.max_k, description=f"photos per page (1-{settings.max_k})"),
        offset: int = Query(0, ge=0, le=settings.max_offset, description=f"skip this many (0-{settings.max_offset})"),
    ) -> JSONResponse:
        context = ctx(request)
        result = await context.call(lambda: context.service.list_images(filter, k, offset).to_dict())
        return JSONResponse(result)

    @api.get(
        "/export",
        response_class=StreamingResponse,
        responses={200: {"content": {t: {} for t in EXPORT_TYPES.values()}}},
        summary="every photo passing the filters as CSV or JSON Lines (path, tags, scores, metadata)",
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

    @api.get("/facets", response_model=schemas.FacetsOut, summary="cameras, folders, date range, GPS count, tags")
    async def facets(request: Request) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(context.service.facets))

    return api
