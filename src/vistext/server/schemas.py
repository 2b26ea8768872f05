"""Response shapes, for the generated OpenAPI documentation. Handlers return the service's ``to_dict()``
unchanged (one JSON shape for CLI, HTTP and bot); these models only describe it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

NOT_BLANK = r"\S"  # the pattern of a text that must hold a word: a 400 says "needs words, not only spaces"


class ErrorOut(BaseModel):
    error: str = Field(description="one line saying what was wrong and what to do")


class HealthOut(BaseModel):
    status: str = "ok"
    version: str


class PhotoMetaOut(BaseModel):
    taken_at: float | None = Field(None, description="date taken (EXIF), unix seconds read as UTC")
    taken: str | None = Field(None, description="date taken as ISO text (YYYY-MM-DDTHH:MM:SS)")
    camera_make: str | None = None
    camera_model: str | None = None
    latitude: float | None = Field(None, description="GPS latitude, degrees")
    longitude: float | None = Field(None, description="GPS longitude, degrees")
    width: int | None = None
    height: int | None = None
    orientation: int | None = Field(None, description="EXIF orientation 1-8")


class ScoredTagOut(BaseModel):
    tag: str
    score: float


class HitOut(BaseModel):
    path: str = Field(description="the image file on the server")
    score: float = Field(description="cosine similarity")
    id: int | None = Field(default=None, description="catalogue id: use it for /api/images/{id} and /api/similar/{id}")
    meta: PhotoMetaOut | None = Field(None, description="the photo's metadata; null when never read")
    tags: list[ScoredTagOut] = Field(default_factory=list, description="its stored collection tags, best first")
    text: str | None = Field(None, description="the text found in the photo (index --ocr), lines joined by ' / '")
    text_match: float | None = Field(
        None, description="share of the search's words the photo's text holds (present when its text matched)"
    )
    copy_of: int | None = Field(None, description="a copy of this photo shown before it on the page (its id)")


class ListedOut(BaseModel):
    id: int
    path: str
    meta: PhotoMetaOut | None = None
    tags: list[ScoredTagOut] = Field(default_factory=list)
    text: str | None = Field(None, description="the text found in the photo (index --ocr); absent when none")
    date: str | None = Field(None, description="the date it sorts by (ISO, UTC)")
    dated_by: Literal["taken", "file"] | None = Field(None, description="EXIF date taken, or the file's time")
    copy_of: int | None = Field(None, description="a copy of this photo shown before it on the page (its id)")


class TagsIn(BaseModel):
    tags: list[str] = Field(min_length=1, max_length=100, description="tags to add (each 1-64 printable characters)")


class PhotoTagsOut(BaseModel):
    id: int
    path: str
    tags: list[ScoredTagOut] = Field(description="the photo's tags after the edit (every source), best first")


class ListOut(BaseModel):
    total: int | None = Field(description="how many photos pass the filters (null on pages asked by cursor)")
    offset: int = 0
    filter: dict[str, Any] = Field(default_factory=dict, description="the filters applied (unix seconds for dates)")
    order: str = Field(description="the order of the photos: newest first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null: no more")
    results: list[ListedOut]


class TagCountsOut(BaseModel):
    tags: dict[str, int] = Field(description="stored collection tag -> photos carrying it, most common first")


class CatalogueModelOut(BaseModel):
    name: str = Field(description="what model= takes")
    key: str = Field(description="the model's name and a hash of its weights")
    dim: int = Field(description="embedding dimensions")
    space: str = Field(description="the catalogue space its vectors live in")


class ModelsOut(BaseModel):
    models: list[CatalogueModelOut] = Field(
        description="CLIP-family models the catalogue has spaces for; without model= the bundled models answer"
    )


class FacetsOut(BaseModel):
    folders: dict[str, int] = Field(description="collection-relative folder -> photos directly in it ('.': root)")
    cameras: dict[str, int] = Field(description="'make model' -> photos")
    date_range: list[float] | None = Field(None, description="[first, last] date taken, unix seconds")
    first: str | None = None
    last: str | None = None
    has_gps: int = Field(description="photos with a GPS position")
    with_meta: int = Field(description="photos whose metadata was read")
    tags: dict[str, int]


class SearchOut(BaseModel):
    query: str
    results: list[HitOut]
    offset: int = 0
    sort: Literal["relevance", "date"] = "relevance"
    strong_score: float | None = Field(None, description="from this score a hit is a likely match (text search)")


class TagOut(BaseModel):
    image: str
    tags: list[ScoredTagOut]
    error: str | None = None


class ScoredCaptionOut(BaseModel):
    text: str
    score: float


class CaptionOut(BaseModel):
    image: str
    source: str = Field(description='"bank": sentences of a caption bank; "composed": built from the models\' words')
    captions: list[ScoredCaptionOut]


class MatchCandidateOut(BaseModel):
    tags: list[str]
    score: float


class MatchOut(BaseModel):
    image: str
    candidates: list[MatchCandidateOut]
    best: int = Field(description="index of the best candidate tag set")


class MapPointsOut(BaseModel):
    id: list[int]
    x: list[float]
    y: list[float]
    name: list[str]
    topic: list[int] = Field(description="strongest NMF topic per image, -1 when unknown")


class MapTopicOut(BaseModel):
    id: int
    words: list[str]
    label: str = Field("", description="what the topic's photos show (empty in maps cached before labels)")


class MapOut(BaseModel):
    method: str
    key: str = Field(description="fingerprint of the collection state the layout was computed for")
    count: int
    points: MapPointsOut
    topics: list[MapTopicOut]


class PendingOut(BaseModel):
    status: str = Field(description="'computing': ask again in a few seconds")


InfoOut = dict[str, Any]


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
