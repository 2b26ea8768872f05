"""The service facade (layer 5): the only thing the CLI, HTTP server and bot call."""

from __future__ import annotations

from vistext.service.core import Service
from vistext.service.inputs import ImageInput, Upload
from vistext.service.results import (
    CaptionResult,
    Hit,
    MatchCandidate,
    MatchResult,
    ScoredCaption,
    ScoredTag,
    SearchResult,
    TagResult,
)

__all__ = [
    "CaptionResult",
    "Hit",
    "ImageInput",
    "MatchCandidate",
    "MatchResult",
    "ScoredCaption",
    "ScoredTag",
    "SearchResult",
    "Service",
    "TagResult",
    "Upload",
]
