"""The collection as a whole: ``/api/topics``, ``/api/duplicates``, ``/api/map`` and ``/api/map/attributes``.

Topics, duplicates and map layouts are collection-wide jobs: each runs in its queue with a deadline, once per
catalogue version (and parameters), and its result is kept until the collection changes.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from vistext.server import schemas
from vistext.server.context import ERRORS, UNKNOWN_MODEL, ServerContext, ctx
from vistext.server.responses import JSONResponse
from vistext.server.routers.params import Filter, ModelName, catalogue_model, filter_openapi
from vistext.server.settings import ServerSettings
from vistext.service import ImageFilter

MAP_WAIT = 2.0  # seconds a map request waits for the layout before answering 202 "computing"


def keep_points(answer: dict[str, Any], ids: set[int]) -> dict[str, Any]:
    """A map answer with only the points of these image ids (``count`` follows)."""
    points = answer["points"]
    rows = [i for i, image_id in enumerate(points["id"]) if image_id in ids]
    kept = {name: [values[i] for i in rows] for name, values in points.items()}
    return {**answer, "points": kept, "count": len(rows)}


async def _map(
    context: ServerContext, method: str, filter: ImageFilter, model: str | None = None
) -> dict[str, Any] | None:
    """The map of the collection as it is now (``None`` while it is still being computed), filtered; laid out by
    ``model``'s space when given."""
    service = context.service
    key = ("map", method, model, await context.call(service.version))
    result: dict[str, Any] | None = context.maps.cached(key)
    if result is None:
        job: Future[dict[str, Any]] = context.maps.submit(
            lambda: service.map_points(method, model=model).to_dict(), key
        )
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), MAP_WAIT)
        except TimeoutError:
            return None
    if not filter.empty:  # the layout is the whole collection's; a filter shows only its photos
        result = keep_points(result, await context.call(lambda: service.matching_ids(filter)))
    return result


def build_explore_router(settings: ServerSettings) -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

    @api.get("/topics", responses=UNKNOWN_MODEL, summary="NMF topics of the collection: top words and typical images")
    async def topics(
        request: Request,
        n: int = Query(8, ge=1, le=settings.max_topics, description=f"number of topics (1-{settings.max_topics})"),
        model: ModelName = None,
    ) -> JSONResponse:
        context = ctx(request)
        model = await catalogue_model(context, model)
        # one fit per collection state and n, kept in memory: a new n costs a fit once, not once per request
        return JSONResponse(
            await context.per_collection_state(
                request, ("topics", n, model), lambda: context.service.topics(n, model=model).to_dict()
            )
        )

    @api.get(
        "/map",
        response_model=schemas.MapOut,
        responses={202: {"model": schemas.PendingOut, "description": "the layout is being computed"}, **UNKNOWN_MODEL},
        summary="2-D map coordinates of every indexed image, coloured by topic",
        openapi_extra=filter_openapi(),
    )
    async def map_points(
        request: Request,
        filter: Filter,
        method: Literal["tsne", "pca"] | None = Query(None),
        model: ModelName = None,
    ) -> Response:
        context = ctx(request)
        model = await catalogue_model(context, model)
        result = await _map(context, method or context.settings.map_method, filter, model)
        if result is None:
            return JSONResponse({"status": "computing"}, status_code=202)
        return JSONResponse(result)

    _add_duplicates_and_attributes(api)
    return api


def _add_duplicates_and_attributes(api: APIRouter) -> None:
    @api.get(
        "/duplicates",
        response_model=schemas.DuplicatesOut,
        responses=UNKNOWN_MODEL,
        summary="groups of copies (one to keep) and of similar shots (same as `vistext duplicates --json`)",
    )
    async def duplicates(
        request: Request,
        threshold: float | None = Query(
            None, gt=0, le=1, description="image-feature similarity for similar shots (default: the calibrated 0.85)"
        ),
        model: ModelName = None,
    ) -> JSONResponse:
        context = ctx(request)
        model = await catalogue_model(context, model)

        def find() -> dict[str, Any]:
            return context.service.duplicates(threshold, model=model).to_dict()

        return JSONResponse(await context.per_collection_state(request, ("duplicates", threshold, model), find))

    @api.get(
        "/map/attributes",
        response_model=schemas.AttributesOut,
        summary="each indexed image passing the filters: path, folder (relative to the collection), tags (best "
        "first), date taken, camera and GPS position, as columns",
        openapi_extra=filter_openapi(),
    )
    async def attributes(request: Request, filter: Filter) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: context.service.map_attributes(filter)))
