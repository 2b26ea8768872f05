"""The service facade (layer 5): the only thing the CLI, HTTP server and bot call.

``Service`` answers every request with a result object whose ``to_dict()`` is the JSON every surface shows;
``parse_tag_sets`` and ``parse_vocabulary`` are the one parsers of typed tag sets and vocabularies, so a request
gives the same answer everywhere.
"""

from __future__ import annotations

from vistext.service.collection import UnknownImageError
from vistext.service.core import Service
from vistext.service.inputs import ImageInput, Upload, parse_tag_sets, parse_vocabulary
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

__all__ = [
    "CaptionResult",
    "DuplicateGroup",
    "DuplicateImage",
    "DuplicatesResult",
    "Hit",
    "ImageInput",
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
    "Upload",
    "parse_tag_sets",
    "parse_vocabulary",
]
