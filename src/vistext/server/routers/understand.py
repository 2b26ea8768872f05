"""What is in an uploaded photo: ``/api/tag``, ``/api/caption``, ``/api/match``. Each runs a model on the
upload in the upload queue, after its header passed the pixel cap."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Query, Request

from vistext.errors import UsageError
from vistext.server import schemas
from vistext.server.context import ERRORS, UNKNOWN_MODEL, ctx
from vistext.server.responses import JSONResponse
from vistext.server.routers.params import ImageFile, ModelName, Paging, catalogue_model, read_upload
from vistext.server.settings import ServerSettings
from vistext.service import check_upload, parse_tag_sets, parse_vocabulary


def _tagger(settings: ServerSettings, name: str | None) -> str | None:
    """The configured tagger called ``name`` (taggers are chosen by name only, never by a client's path)."""
    if name is None:
        return None
    if name not in settings.taggers:
        known = ", ".join(sorted(settings.taggers)) or "none configured"
        raise UsageError(f"unknown tagger {name!r} (available: {known})")
    return settings.taggers[name]


def build_understand_router(settings: ServerSettings) -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)
    paging = Paging(settings)
    _add_tag(api, paging, settings)
    _add_caption_and_match(api, paging)
    return api


def _add_tag(api: APIRouter, paging: Paging, settings: ServerSettings) -> None:
    @api.post("/tag", response_model=schemas.TagOut, responses=UNKNOWN_MODEL, summary="tag an uploaded image")
    async def tag(
        request: Request,
        file: ImageFile,
        k: int = paging.k(5),
        tagger: str | None = Query(None, description="name of a trained tagger configured on the server"),
        vocab: str | None = Form(
            None,
            description=f"open vocabulary: comma- or newline-separated words (at most {settings.max_vocab})",
        ),
        model: ModelName = None,
    ) -> JSONResponse:
        context = ctx(request)
        paging.check(k, 0)
        if model is not None and (vocab is None or tagger is not None):
            raise UsageError("model= scores an open vocabulary: give vocab (and no tagger)")
        model = await catalogue_model(context, model) if model is not None else _tagger(context.settings, tagger)
        words = parse_vocabulary(vocab, limit=context.settings.max_vocab) if vocab is not None else None
        upload = await read_upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            result = context.service.tag([upload], k, model=model, vocab=words)[0]
            if result.error:
                raise UsageError(result.error)
            return result.to_dict()

        return JSONResponse(await context.upload_work(request, work))


def _add_caption_and_match(api: APIRouter, paging: Paging) -> None:
    @api.post(
        "/caption",
        response_model=schemas.CaptionOut,
        responses=UNKNOWN_MODEL,
        summary="captions for an uploaded image: from the server's caption bank, or composed without one",
    )
    async def caption(request: Request, file: ImageFile, k: int = paging.k(5), model: ModelName = None) -> JSONResponse:
        context = ctx(request)
        paging.check(k, 0)
        model = await catalogue_model(context, model)
        bank = context.settings.captions
        upload = await read_upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            return context.service.caption(upload, bank, k, model=model).to_dict()

        return JSONResponse(await context.upload_work(request, work))

    @api.post(
        "/match",
        response_model=schemas.MatchOut,
        responses=UNKNOWN_MODEL,
        summary="which tag set fits an uploaded image best",
    )
    async def match(
        request: Request,
        file: ImageFile,
        tag_sets: str = Form(..., description='one set per line ("dog, grass"), or JSON [["dog","grass"],["cat"]]'),
        model: ModelName = None,
    ) -> JSONResponse:
        context = ctx(request)
        sets = parse_tag_sets(tag_sets, limit=context.settings.max_tag_sets)
        model = await catalogue_model(context, model)
        upload = await read_upload(file)

        def work() -> dict[str, Any]:
            check_upload(upload, context.settings.max_pixels)
            return context.service.match(upload, sets, model=model).to_dict()

        return JSONResponse(await context.upload_work(request, work))
