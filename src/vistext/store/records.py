"""The values a store hands out: an indexed image, the cheap state of a file, and a search hit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vistext.photo_meta import PhotoMeta

IMAGE_SPACE = "image"  # the pooled encoder features, searched by cosine similarity
ID_RANGE = range(-(2**63), 2**63)  # a catalogue id is a signed 64-bit integer; any other is simply not there
USER_TAGGER = "user"  # the source of tags added by hand (Store.edit_tags); every other source is a tagger


@dataclass
class FileState:
    """What the indexer needs to decide whether a file changed: no vectors are loaded."""

    path: str
    size: int
    mtime: float
    sha: str
    model: str
    status: str


META_FIELDS = tuple(PhotoMeta.__dataclass_fields__)  # the catalogue's metadata columns, in this order
MAX_FOLDERS = 500  # folders listed by facets(), the most populated first


@dataclass
class ImageRecord:
    """One indexed file with its features. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why)."""

    path: str
    size: int
    mtime: float
    sha: str
    model: str
    status: str
    error: str | None
    pooled: np.ndarray | None
    logits: np.ndarray | None
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    id: int | None = None
    meta: PhotoMeta | None = None  # None: not read yet (a catalogue from before metadata, or a failed file)


@dataclass(frozen=True)
class VectorHit:
    """A store search hit: the image id, its path and the cosine similarity to the query."""

    id: int
    path: str
    score: float


EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class ImageFilter:
    """Which ok images a search or listing may return; every given condition must hold (None: no condition).

    ``after``/``before``: unix seconds bounds on ``taken_at`` (after inclusive, before exclusive; a photo with
    no date never passes a date bound). ``camera``: case-insensitive substring of "make model". ``near``:
    (latitude, longitude, km), great-circle distance at most km. ``folder``: the file is in this folder or
    below it, given relative to the collection's root ("trips/2024") or absolute. ``tag``: the photo has this
    stored collection tag (any tagger, case-insensitive). ``has_text``: True, the photo holds text found by
    ``index --ocr``; False, it was read and holds none, or was never read.
    """

    after: float | None = None
    before: float | None = None
    camera: str | None = None
    near: tuple[float, float, float] | None = None
    folder: str | None = None
    tag: str | None = None
    has_text: bool | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)

    def to_dict(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


def meta_from_row(values: Sequence[Any]) -> PhotoMeta | None:
    """A ``PhotoMeta`` from the metadata columns, or None when the row was never read (NULL width)."""
    meta = PhotoMeta(*values)
    return None if meta.width is None else meta


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km between two (latitude, longitude) points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def to_blob(vector: np.ndarray | None) -> bytes | None:
    if vector is None:
        return None
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(-1).tobytes()


def from_blob(blob: bytes | None) -> np.ndarray | None:
    if blob is None:
        return None
    # copy: frombuffer views are read-only and would pin the sqlite row buffer
    return np.frombuffer(blob, dtype=np.float32).copy()


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
