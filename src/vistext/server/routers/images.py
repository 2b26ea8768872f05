"""Indexed photos by catalogue id, never by a path: ``/api/images/{id}`` (the original, only while it is still
a regular file inside the collection), ``/api/images/{id}/thumbnail``, and its tags edited by hand
(``POST /api/images/{id}/tags``, ``DELETE /api/images/{id}/tags/{tag}``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from vistext.server import schemas
from vistext.server.context import ERRORS, NOT_FOUND, ServerContext, ctx
from vistext.server.files import open_indexed_file
from vistext.server.responses import JSONResponse
from vistext.server.routers.params import ImageId
from vistext.service import THUMBNAIL_SIZES, UnknownImageError


def _check_original(context: ServerContext, image_id: int) -> None:
    """The original must still be a regular file at its indexed place (as for /api/images); one that is gone
    may still have a cached thumbnail, which the service decides."""
    try:
        path = context.service.image_file(image_id)
    except UnknownImageError:
        return
    os.close(open_indexed_file(image_id, path, context.service.location.collection_folder).fd)


def build_images_router() -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

    @api.get(
        "/images/{image_id}",
        response_class=FileResponse,
        responses=NOT_FOUND,
        summary="the original file of an indexed image (a regular file still in the collection, never a link)",
    )
    async def image(request: Request, image_id: ImageId) -> StreamingResponse:
        context = ctx(request)

        def open_original() -> Any:
            path: Path = context.service.image_file(image_id)
            return open_indexed_file(image_id, path, context.service.location.collection_folder)

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
            _check_original(context, image_id)
            return context.service.thumbnail(image_id, size)

        data = await context.call(make)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @api.post(
        "/images/{image_id}/tags",
        response_model=schemas.PhotoTagsOut,
        responses=NOT_FOUND,
        summary="add tags to an indexed photo by hand (stored with the source 'user')",
    )
    async def add_tags(request: Request, image_id: ImageId, body: schemas.TagsIn) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: context.service.edit_tags(image_id, add=body.tags).to_dict()))

    @api.delete(
        "/images/{image_id}/tags/{tag}",
        response_model=schemas.PhotoTagsOut,
        responses=NOT_FOUND,
        summary="remove a tag from an indexed photo (it stays removed when the collection is tagged again)",
    )
    async def remove_tag(request: Request, image_id: ImageId, tag: str) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: context.service.edit_tags(image_id, remove=[tag]).to_dict()))

    return api
