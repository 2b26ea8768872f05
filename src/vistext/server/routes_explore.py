"""JSON routes for the web page's collection views: duplicate groups, and each image's folder, tags and
metadata as columns (what the map colours points by, filters them with and exports a selection with)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from vistext.server.collection_routes import Filter
from vistext.server.responses import JSONResponse
from vistext.server.routes import ERRORS, ServerContext, ctx
from vistext.service.filters import meta_dict
from vistext.store.records import ImageFilter

ROOT_FOLDER = "."  # the folder name of photos directly in the collection folder


class DuplicateImageOut(BaseModel):
    id: int
    path: str
    score: float = Field(description="image-feature similarity to the group's first image")
    match: str | None = Field(
        None, description='in a group of copies: "keep" (the one to keep), "exact" (same bytes) or "copy"'
    )


class DuplicateGroupOut(BaseModel):
    kind: str = Field(
        description='"copies" (the same photo saved again: re-encoded, resized, cropped, rotated) or "similar" '
        "(distinct shots of one scene)"
    )
    keep: int | None = Field(None, description="id of the copy suggested to keep (copies only)")
    images: list[DuplicateImageOut]


class SkippedFileOut(BaseModel):
    id: int
    path: str
    reason: str


class DuplicatesOut(BaseModel):
    groups: list[DuplicateGroupOut]
    threshold: float = Field(description="image-feature similarity of similar shots")
    copy_distance: int = Field(description="most perceptual-hash bits (of 128) in which two copies differ")
    skipped: list[SkippedFileOut] = Field(description="photos that could not be read now, and why")


class AttributesOut(BaseModel):
    id: list[int]
    path: list[str]
    folder: list[str] = Field(description='folder relative to the collection ("." for its top folder)')
    tags: list[list[str]] = Field(description="stored collection tags, best first")
    taken: list[str | None] = Field(description="date taken, ISO text (UTC)")
    camera: list[str | None] = Field(description='"make model"')
    latitude: list[float | None]
    longitude: list[float | None]


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


def _attributes(context: ServerContext, filter: ImageFilter) -> dict[str, Any]:
    store = context.service.store()
    wanted = None if filter.empty else [int(i) for i in store.ids_matching(filter)]
    records = sorted((r for r in store.records(wanted) if r.id is not None), key=lambda r: int(r.id or 0))
    ids = [int(r.id or 0) for r in records]
    folders = image_folders({int(r.id or 0): r.path for r in records}, context.collection_folder())
    tags = store.tags_for(ids)
    metas = [meta_dict(r.meta) or {} for r in records]
    return {
        "id": ids,
        "path": [r.path for r in records],
        "folder": [folders[i] for i in ids],
        "tags": [[tag for tag, _ in tags.get(i, [])] for i in ids],
        "taken": [meta.get("taken") for meta in metas],
        "camera": [
            " ".join(str(v) for v in (meta.get("camera_make"), meta.get("camera_model")) if v) or None for meta in metas
        ],
        "latitude": [meta.get("latitude") for meta in metas],
        "longitude": [meta.get("longitude") for meta in metas],
    }


def build_explore_router() -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

    @api.get(
        "/duplicates",
        response_model=DuplicatesOut,
        summary="groups of copies (one to keep) and of similar shots (same as `vistext duplicates --json`)",
    )
    async def duplicates(
        request: Request,
        threshold: float | None = Query(
            None, gt=0, le=1, description="image-feature similarity for similar shots (default: the calibrated 0.85)"
        ),
    ) -> JSONResponse:
        context = ctx(request)

        def find() -> dict[str, Any]:
            return context.service.duplicates(threshold).to_dict()

        return JSONResponse(await context.per_collection_state(request, ("duplicates", threshold), find))

    @api.get(
        "/map/attributes",
        response_model=AttributesOut,
        summary="each indexed image passing the filters: path, folder (relative to the collection), tags (best "
        "first), date taken, camera and GPS position, as columns",
    )
    async def attributes(request: Request, filter: Filter) -> JSONResponse:
        context = ctx(request)
        return JSONResponse(await context.call(lambda: _attributes(context, filter)))

    return api
