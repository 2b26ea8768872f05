"""What the service answers. Every surface (CLI, HTTP, bot) renders these same objects, so one request gives
the same answer everywhere; ``to_dict()`` is the JSON shape documented in the README."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ScoredTag:
    tag: str
    score: float


@dataclass
class TagResult:
    image: str
    tags: list[ScoredTag]
    error: str | None = None  # set when this image could not be read; the other images are still tagged

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image, "tags": [asdict(t) for t in self.tags]}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class Hit:
    path: str
    score: float
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "score": round(float(self.score), 6)}
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass
class SearchResult:
    query: str
    results: list[Hit]
    offset: int = 0
    total: int | None = None  # how many hits passed the filters before paging, when known

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query, "results": [h.to_dict() for h in self.results]}
        if self.offset:
            out["offset"] = self.offset
        return out


@dataclass
class ScoredCaption:
    text: str
    score: float


@dataclass
class CaptionResult:
    image: str
    captions: list[ScoredCaption]

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "captions": [{"text": c.text, "score": round(float(c.score), 6)} for c in self.captions],
        }


@dataclass
class MatchCandidate:
    tags: list[str]
    score: float


@dataclass
class MatchResult:
    image: str
    candidates: list[MatchCandidate]
    best: int
    method: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "candidates": [{"tags": c.tags, "score": round(float(c.score), 6)} for c in self.candidates],
            "best": self.best,
            "method": self.method,
        }
