"""What the service answers. Every surface (CLI, HTTP, bot) renders these same objects, so one request gives
the same answer everywhere; ``to_dict()`` is the JSON shape documented in docs/commands.md."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


def json_text(document: Any, *, compact: bool = False) -> str:
    """``document`` as JSON text that every surface can write, whatever its paths hold.

    A file name that is not valid UTF-8 (a Latin-1 byte) reaches Python as a lone surrogate, which UTF-8 output
    cannot carry; it is written as its JSON escape (``"caf\\udce9.jpg"``) instead, so the JSON stays valid and a
    client gets the exact name back (Python: ``os.fsencode(json.loads(...)["path"])``)."""
    separators = (",", ":") if compact else None
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=separators)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
    meta: dict[str, Any] | None = None  # the photo's metadata (see vistext.service.filters.meta_dict)
    tags: list[dict[str, Any]] | None = None  # its stored collection tags, [{tag, score}] best first
    text: str | None = None  # the text found in it (index --ocr), lines joined by " / "
    text_match: float | None = None  # share of a search's words its text holds (set when it matched)
    copy_of: int | None = None  # the id of a copy of this photo shown before it on the same page

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "score": round(float(self.score), 6)}
        if self.id is not None:
            out["id"] = self.id
        if self.id is not None or self.meta is not None:
            out["meta"] = self.meta
        if self.tags is not None or self.id is not None:
            out["tags"] = self.tags or []
        if self.text is not None:
            out["text"] = self.text
        if self.text_match:
            out["text_match"] = round(float(self.text_match), 6)
        if self.copy_of is not None:
            out["copy_of"] = self.copy_of
        return out


@dataclass
class SearchResult:
    """One page of hits; ``strong_score``: from this score a hit is a likely match (None: scores are not
    calibrated, as for similar images); ``sort``: ``relevance`` (best first) or ``date`` (newest first)."""

    query: str
    results: list[Hit]
    offset: int = 0
    sort: str = "relevance"
    strong_score: float | None = None
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def only_weak(self) -> bool:
        """Hits were found but none reaches ``strong_score``: they are the closest, not likely matches."""
        strong = self.strong_score
        return strong is not None and bool(self.results) and all(h.score < strong for h in self.results)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query, "results": [h.to_dict() for h in self.results]}
        if self.offset:
            out["offset"] = self.offset
        if self.sort != "relevance":
            out["sort"] = self.sort
        if self.strong_score is not None:
            out["strong_score"] = self.strong_score
        return out

    def to_json(self) -> bytes:
        """``to_dict`` as compact JSON (``json_text``), written once: a page kept by ``service.page_cache`` is
        sent again as it is."""
        if self._json is None:
            self._json = json_text(self.to_dict(), compact=True).encode("utf-8")
        return self._json


@dataclass
class ScoredCaption:
    text: str
    score: float


@dataclass
class CaptionResult:
    image: str
    captions: list[ScoredCaption]
    source: str = "bank"  # "bank": a caption bank's own sentences; "composed": built from the models' words

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "source": self.source,
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


@dataclass
class InfoResult:
    """Where the catalogue is and, when it exists, what the store says about it (counts, spaces, models)."""

    db: str
    exists: bool
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"db": self.db, "exists": self.exists, **self.details}


@dataclass
class StatusResult:
    """``info`` plus what the explore surfaces need: the image count, whether text search and a map are ready."""

    info: InfoResult
    images: int | None = None  # None when the collection could not be counted (see the log)
    text_search: bool = False
    map_ready: bool = False
    maps_cached: list[str] | None = None  # map methods with a layout on disk, when known

    def to_dict(self) -> dict[str, Any]:
        out = self.info.to_dict()
        out["text_search"] = self.text_search
        if self.images is not None:
            out["images"] = self.images
        if self.maps_cached is not None:
            out["maps_cached"] = list(self.maps_cached)
        out["map_ready"] = self.map_ready
        return out


@dataclass
class TopicSummary:
    """One NMF topic: its share of the collection, a label, top words with weights, and its most typical
    images (ids, and their files in ``paths``, in the same order).

    ``words`` are the ImageNet classes the topic was fitted on; ``label`` says what the typical photos show
    (the ``label_words`` that describe them best in the joint image-text space, or the top classes when the
    collection has no text-search embeddings)."""

    topic: int
    label: str
    weight: float
    words: list[tuple[str, float]]
    images: list[int]
    paths: list[str] = field(default_factory=list)
    label_words: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "label": self.label,
            "weight": self.weight,
            "words": [{"word": word, "weight": weight} for word, weight in self.words],
            "images": list(self.images),
            "paths": list(self.paths),
            "label_words": [{"word": word, "score": score} for word, score in self.label_words],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicSummary:
        words = [(str(w["word"]), float(w["weight"])) for w in data["words"]]
        label_words = [(str(w["word"]), float(w["score"])) for w in data.get("label_words", [])]
        return cls(
            int(data["topic"]),
            str(data["label"]),
            float(data["weight"]),
            words,
            list(data["images"]),
            [str(p) for p in data.get("paths", [])],
            label_words,
        )


@dataclass
class TopicsResult:
    """The collection's topics and each image's dominant topic (image id -> topic index)."""

    topics: list[TopicSummary]
    image_topics: dict[int, int]
    n_images: int
    reconstruction_error: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_topics": len(self.topics),
            "n_images": self.n_images,
            "reconstruction_error": self.reconstruction_error,
            "topics": [topic.to_dict() for topic in self.topics],
            "image_topics": {str(image): topic for image, topic in self.image_topics.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicsResult:
        return cls(
            topics=[TopicSummary.from_dict(topic) for topic in data["topics"]],
            image_topics={int(image): int(topic) for image, topic in data["image_topics"].items()},
            n_images=int(data["n_images"]),
            reconstruction_error=float(data["reconstruction_error"]),
        )


@dataclass
class MapResult:
    """2-D positions of every indexed image. ``points`` holds columns ``id``, ``x``, ``y``, ``name`` and
    ``topic`` (the image's strongest topic, or -1); ``topics`` the id and top words of each topic."""

    method: str
    key: str
    points: dict[str, list[Any]]
    topics: list[dict[str, Any]]

    @property
    def count(self) -> int:
        return len(self.points["id"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "key": self.key,
            "count": self.count,
            "points": {column: list(values) for column, values in self.points.items()},
            "topics": [dict(topic) for topic in self.topics],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MapResult:
        return cls(str(data["method"]), str(data["key"]), dict(data["points"]), list(data["topics"]))


@dataclass
class NeighbourTable:
    """Every indexed image's most similar images, best first: image id -> [(other id, cosine)]."""

    neighbours: dict[int, list[tuple[int, float]]]

    def to_dict(self) -> dict[str, Any]:
        return {str(image): [[other, score] for other, score in near] for image, near in self.neighbours.items()}


@dataclass
class DuplicateImage:
    """One member of a duplicate group: its catalogue id, path, image-feature similarity to the group's first
    image, and in a group of copies what it is: ``"keep"`` (the one suggested to keep), ``"exact"`` (the same
    bytes as it) or ``"copy"`` (re-encoded, resized, cropped...); empty in a group of similar shots."""

    id: int
    path: str
    score: float
    match: str = ""

    def to_dict(self) -> dict[str, Any]:
        found = {"id": self.id, "path": self.path, "score": round(float(self.score), 6)}
        return {**found, "match": self.match} if self.match else found


@dataclass
class DuplicateGroup:
    """``kind="copies"``: the same photo saved again, the one to keep (``keep``, by the rule in
    ``service.duplicates.KEEP_RULE``) first; ``"similar"``: distinct shots of one scene, in the order taken,
    with nothing suggested to keep."""

    kind: str
    images: list[DuplicateImage]
    keep: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "keep": self.keep, "images": [image.to_dict() for image in self.images]}


@dataclass
class SkippedFile:
    """A photo left out of the duplicates because it cannot be read now, and why (one line)."""

    id: int
    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "reason": self.reason}


@dataclass
class DuplicatesResult:
    """Every duplicate group of the collection, the image-feature similarity threshold of the similar shots,
    the most hash bits in which two copies may differ, and the photos that could not be read."""

    groups: list[DuplicateGroup]
    threshold: float
    copy_distance: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [group.to_dict() for group in self.groups],
            "threshold": self.threshold,
            "copy_distance": self.copy_distance,
            "skipped": [file.to_dict() for file in self.skipped],
        }
