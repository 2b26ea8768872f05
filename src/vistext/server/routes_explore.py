"""JSON routes for the web page's collection views: duplicate groups, and each image's folder (what the map
colours points by and exports a selection with). Thin, as every route: parse, call the service, return its dict."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from vistext.server.responses import JSONResponse
from vistext.server.routes import ERRORS, ServerContext, ctx

ROOT_FOLDER = "."  # the folder name of photos directly in the collection folder


class DuplicateImageOut(BaseModel):
    id: int
    path: str
    score: float = Field(description="cosine similarity to the group's first image (the one to keep)")


class DuplicateGroupOut(BaseModel):
    kind: str = Field(description='"exact" (the same bytes) or "near" (resized, re-encoded, lightly cropped)')
    images: list[DuplicateImageOut]


class DuplicatesOut(BaseModel):
    groups: list[DuplicateGroupOut]
    threshold: float


class AttributesOut(BaseModel):
    id: list[int]
    path: list[str]
    folder: list[str] = Field(description='folder relative to the collection ("." for its top folder)')


def image_folders(paths: dict[int, str], collection: Path | None) -> dict[int, str]:
    """Each image's folder relative to ``collection`` (or, for a catalogue kept elsewhere, to the folder all
    the images share), POSIX-style; ``"."`` for the top folder itself."""
    if not paths:
        return {}
    parents = {image_id: os.path.dirname(path) for image_id, path in paths.items()}
    if collection is not None:
        base = str(collection)
    else:
        try:
            base = os.path.commonpath(list(parents.values()))
        except ValueError:  # paths on different drives: keep them as they are
            base = ""
    folders = {}
    for image_id, parent in parents.items():
        relative = os.path.relpath(parent, base) if base else parent
        folders[image_id] = ROOT_FOLDER if relative.startswith("..") else Path(relative).as_posix()
    return folders


def _attributes(context: ServerContext) -> dict[str, Any]:
    paths = {int(r.id): r.path for r in context.service.store().records() if r.id is not None}
    folders = image_folders(paths, context.collection_folder())
    ids = sorted(paths)
    return {"id": ids, "path": [paths[i] for i in ids], "folder": [folders[i] for i in ids]}


def build_explore_router() -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

    @api.get(
        "/duplicates",
        response_model=DuplicatesOut,
        summary="groups of exact copies and near-duplicates (same as `vistext duplicates --json`)",
    )
    async def duplicates(
        request: Request,
        threshold: float | None = Query(
            None, gt=0, le=1, description="cosine similarity for near-duplicates (default: the calibrated 0.85)"
        ),
    ) -> JSONResponse:
        context = ctx(request)
        version = await context.call(lambda: context.service.store().version())
        key = ("duplicates", threshold, version)
        cached = context.analysis.cached(key)
        if cached is None:
            cached = await context.analysis_work(request, key, lambda: context.service.duplicates(threshold).to_dict())
        return JSONResponse(cached)

    @api.get(
        "/map/attributes",
        response_model=AttributesOut,
        summary="each indexed image's path and folder (relative to the collection), as columns",
    )
    async def attributes(request: Request) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: _attributes(context)))

    return api
