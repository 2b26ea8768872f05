"""Query parameters several routers take: paging (``k``, ``offset``, ``min_score``), image ids, uploads, and
the photo filters (``after``, ``before``, ``camera``, ``near``, ``folder``, ``tag``, ``has_text``). A bad value is a 400
naming the parameter."""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any

from fastapi import Depends, File, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vistext.errors import UsageError
from vistext.server import schemas
from vistext.server.settings import MAX_IMAGE_ID, ServerSettings
from vistext.service import ImageFilter, Upload
from vistext.service.filters import DATE_PATTERN, MAX_TEXT, NEAR_PATTERN, parse_filter

ImageFile = Annotated[
    UploadFile,
    File(description="an image (JPEG, PNG, WebP, GIF, HEIC...); not empty", json_schema_extra={"minLength": 1}),
]
ImageId = Annotated[int, Path(ge=1, le=MAX_IMAGE_ID, description="catalogue id of an indexed image")]


class Paging:
    """The paging parameters as ``settings`` bound them (their limits are in the OpenAPI schema)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.max_k, self.max_offset = settings.max_k, settings.max_offset
        self.offset = Query(0, ge=0, le=self.max_offset, description=f"skip this many results (0-{self.max_offset})")
        self.min_score = Query(None, ge=0, le=1, description="drop results scoring below this (0-1 relevance)")

    def k(self, default: int) -> Any:
        return Query(default, ge=1, le=self.max_k, description=f"results per page (1-{self.max_k})")

    def check(self, k: int, offset: int) -> None:
        if not 1 <= k <= self.max_k:
            raise UsageError(f"k must be between 1 and {self.max_k}, got {k}")
        if not 0 <= offset <= self.max_offset:
            raise UsageError(f"offset must be between 0 and {self.max_offset}, got {offset}")


def upload_name(raw: str | None) -> str:
    """The base name of an upload, fit to echo back: no client directory layout, no control characters
    (a NUL byte, a newline), at most 120 characters."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:120] or "upload"


async def read_upload(file: UploadFile) -> Upload:
    return Upload(upload_name(file.filename), await file.read())


def _text(description: str) -> Any:
    return Field(None, min_length=1, max_length=MAX_TEXT, pattern=schemas.NOT_BLANK, description=description)


class FilterQuery(BaseModel):
    """The photo filters' query parameters and their limits."""

    model_config = ConfigDict(extra="ignore")

    after: str | None = Field(
        None, max_length=60, pattern=DATE_PATTERN, description="taken on or after this date (YYYY-MM-DD or ISO, UTC)"
    )
    before: str | None = Field(
        None, max_length=60, pattern=DATE_PATTERN, description="taken before this date (YYYY-MM-DD or ISO datetime)"
    )
    camera: str | None = _text("camera make/model contains this (case-insensitive)")
    near: str | None = Field(
        None, max_length=100, pattern=NEAR_PATTERN, description="LAT,LON,KM: within KM km of this GPS position"
    )
    folder: str | None = _text("in this folder or below (relative to the collection's folder)")
    tag: str | None = _text("has this stored collection tag (case-insensitive)")
    has_text: bool | None = Field(
        None, description="true: holds text read by `index --ocr` (signs, screenshots); false: holds none"
    )


def filter_openapi() -> dict[str, Any]:
    """The filters as OpenAPI query parameters, for the ``openapi_extra`` of each route that takes ``Filter``
    (which reads them by hand, so FastAPI does not list them itself)."""
    properties = FilterQuery.model_json_schema()["properties"]
    parameters = []
    for name, schema in properties.items():
        schema = {key: value for key, value in schema.items() if key != "default"}
        parameters.append(
            {"name": name, "in": "query", "required": False, "schema": schema, "description": schema["description"]}
        )
    return {"parameters": parameters}


async def image_filter(request: Request) -> ImageFilter:
    """The filter query parameters, checked against ``FilterQuery`` and parsed (a bad one is a 400 naming it).

    Read by hand rather than declared as seven parameters: FastAPI's per-parameter work ran in the event loop on
    every request, filters or not; reading them by hand took about a tenth off that thread's time per popular
    search (docs/benchmarks.md). A request without filters (most searches) costs seven dictionary lookups.
    Async: parsing reads nothing, so it runs in the event loop rather than costing every request a hop to a worker
    thread."""
    given = {name: value for name in FILTER_NAMES if (value := request.query_params.get(name)) is not None}
    if not given:
        return parse_filter()
    try:
        query = FilterQuery.model_validate(given)
    except ValidationError as error:
        raise RequestValidationError(
            [{**detail, "loc": ("query", *detail["loc"])} for detail in error.errors(include_url=False)]
        ) from None
    return parse_filter(query.after, query.before, query.camera, query.near, query.folder, query.tag, query.has_text)


FILTER_NAMES = tuple(FilterQuery.model_fields)
Filter = Annotated[ImageFilter, Depends(image_filter)]
ModelName = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="a CLIP-family model the catalogue was indexed with (its name, as /api/models lists them): "
        "answer in its space, scored by its plain cosines; default: the bundled models",
    ),
]


async def catalogue_model(context: Any, name: str | None) -> str | None:
    """``name`` checked against the catalogue's models in a worker thread (a 400 listing them otherwise)."""
    if name is None:
        return None
    return str(await context.call(lambda: context.service.catalogue_model(name)))
