"""Is the server up, and what does it serve: ``/api/health``, ``/api/info``, ``/api/status``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vistext import __version__
from vistext.server import schemas
from vistext.server.context import ERRORS, ctx
from vistext.server.responses import JSONResponse


def build_admin_router() -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

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
        bank = context.settings.captions is not None  # whether /api/caption can answer: a bank, or composing
        answer["captions"] = bank or await context.call(context.service.can_compose_captions)
        return JSONResponse(answer)

    return api
