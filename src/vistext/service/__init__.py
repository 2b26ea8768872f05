"""The service facade (layer 5): the only thing the CLI, HTTP server and bot call.

``Service`` answers every request with a result object whose ``to_dict()`` is the JSON every surface shows;
``parse_tag_sets`` and ``parse_vocabulary`` are the one parsers of typed tag sets and vocabularies, so a request
gives the same answer everywhere; ``locate`` is the one answer to "which catalogue" (folder, ``--db`` or URI).

Its shape is a facade that hides its parts, not sub-objects as the API. The parts (loaded models, the
collection and its store, understanding, topics, explore) are private attributes: a caller asks the question
("search this", "is the text model loaded", "which catalogue is this") and gets a result, never a store or a
model cache it could use around the service. That keeps the CLI, the server and the bot thin and alike, lets
the parts be re-cut without touching them, and makes "who may read the catalogue" one reviewable list of
methods; ``tests/test_thin_surfaces.py`` checks that no surface reaches past it. ``Service.store()`` is the
one exception, kept for tests, benches and tools that inspect what was stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vistext.service.clip_spaces import UnknownModelError
from vistext.service.collection import UnknownImageError
from vistext.service.core import Service
from vistext.service.inputs import (
    MAX_PIXELS,
    ImageInput,
    ImageTooLargeError,
    Upload,
    check_upload,
    parse_tag_sets,
    parse_vocabulary,
)
from vistext.service.location import CatalogueLocation, locate
from vistext.service.results import (
    CaptionResult,
    DuplicateGroup,
    DuplicateImage,
    DuplicatesResult,
    Hit,
    InfoResult,
    MapResult,
    MatchCandidate,
    MatchResult,
    NeighbourTable,
    ScoredCaption,
    ScoredTag,
    SearchResult,
    StatusResult,
    TagResult,
    TopicsResult,
    TopicSummary,
)
from vistext.service.thumbnails import THUMBNAIL_SIZES

if TYPE_CHECKING:
    from vistext.store.records import ImageFilter


def __getattr__(name: str) -> Any:
    # the photo filter's type lives with the store; importing the store loads FAISS, which ``vistext tag``
    # and ``vistext info`` should not pay for, so it is handed out on first use
    if name == "ImageFilter":
        from vistext.store.records import ImageFilter

        return ImageFilter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_PIXELS",
    "THUMBNAIL_SIZES",
    "CatalogueLocation",
    "CaptionResult",
    "DuplicateGroup",
    "DuplicateImage",
    "DuplicatesResult",
    "Hit",
    "ImageFilter",
    "ImageInput",
    "ImageTooLargeError",
    "InfoResult",
    "MapResult",
    "MatchCandidate",
    "MatchResult",
    "NeighbourTable",
    "ScoredCaption",
    "ScoredTag",
    "SearchResult",
    "Service",
    "StatusResult",
    "TagResult",
    "TopicSummary",
    "TopicsResult",
    "UnknownImageError",
    "UnknownModelError",
    "Upload",
    "check_upload",
    "locate",
    "parse_tag_sets",
    "parse_vocabulary",
]
