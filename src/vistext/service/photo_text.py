"""Text in photos, as the service uses it: whether a collection reads it at index time, and how a search text
that names words in a sign finds that photo.

Reading text (``index --ocr``) is remembered by the catalogue: once asked for, every later ``index`` of it reads
the text of new and changed photos too, until ``--no-ocr`` turns it off (the text already read stays searchable).
It is off until asked for: it costs more than the rest of indexing (docs/benchmarks.md).

What a text match scores (the one owner of that fact): the share of the query's words (``query_words``: no stop
words) found among the words of the photo's text (``text_share``), times ``TEXT_SCORE``; a hit's score is the
higher of that and its picture's relevance. A photo whose text holds every word of "open 24 hours" scores 0.9
whatever it shows; one holding one word of three, 0.3.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import UsageError, require_extra

if TYPE_CHECKING:
    from vistext.indexing.photo_text import TextReport
    from vistext.models.ocr import TextReader
    from vistext.store import Store
    from vistext.store.records import VectorHit

OCR_KEY = "ocr"  # store meta: whether indexing reads the text in photos (set by --ocr / --no-ocr)
TEXT_SCORE = 0.9  # the score of a photo whose text holds every word of the query
PREFIX_FROM = 4  # a query word this long also matches the words it starts


def check_ocr(ocr: bool | None, location: str | Path) -> None:
    """Fail at once, before any photo is indexed, when ``ocr`` asks for the OCR engine and its extra is missing
    (a look-up, not an import: the engine loads on the first photo it reads), or for photos it cannot read."""
    from vistext.indexing.sources import is_object_url

    if not ocr:
        return
    if is_object_url(location):
        raise UsageError(f"{location}: --ocr reads photos on this machine; photos in object storage are not read")
    require_extra("ocr", "reading text in photos (--ocr)", ("rapidocr_onnxruntime",))


def text_summary(store: Store) -> dict[str, Any]:
    """What ``info`` says of the text in photos: whether indexing reads it (``ocr``), photos holding text, and
    photos whose text was never read (``unread``: indexed before --ocr, or whose reading failed)."""
    from vistext.store.records import ImageFilter

    holding = store.ids_matching(ImageFilter(has_text=True))
    return {
        "ocr": bool(store.get_meta(OCR_KEY, False)),
        "with_text": len(holding),
        "unread": len(store.photo_texts_to_read()),
    }


def reads_text(store: Store, ocr: bool | None) -> bool:
    """Whether this indexing run reads text: ``ocr`` when given (and remembered for later runs), else what the
    catalogue remembers (off for a new one)."""
    if ocr is None:
        return bool(store.get_meta(OCR_KEY, False))
    if bool(store.get_meta(OCR_KEY, False)) != ocr:
        store.set_meta(OCR_KEY, ocr)
    return ocr


def index_text(store: Store, reader: TextReader, ocr: bool | None, *, progress: bool) -> TextReport | None:
    """The OCR step of an indexing run (None when the collection does not read text)."""
    if not reads_text(store, ocr):
        return None
    from vistext.indexing.photo_text import read_texts

    return read_texts(store, reader, progress=progress)


def text_share(query: list[str], stored: str) -> float:
    """The share of ``query``'s words (``query_words``) found among a photo's ``stored`` searchable words, 0-1: a
    word is found as itself, or, from ``PREFIX_FROM`` letters on, as the start of a longer one ("open" in
    "opening")."""
    if not query:
        return 0.0
    found = set(stored.split())
    return sum(_found(word, found) for word in query) / len(query)


def _found(word: str, found: set[str]) -> bool:
    return word in found or (len(word) >= PREFIX_FROM and any(other.startswith(word) for other in found))


def text_hits(store: Store, text: str, restrict: np.ndarray | None) -> dict[int, tuple[str, float]]:
    """Image id -> (path, share of the query's words its text holds) for photos whose text matches ``text``
    (only ids in ``restrict`` when given)."""
    # imported here: the store package loads FAISS, which a service that never searches should not pay for
    from vistext.store.photo_text import query_words

    query = query_words(text)
    if not query:
        return {}
    allowed = None if restrict is None else set(np.asarray(restrict, dtype=np.int64).tolist())
    found = {}
    for image_id, path, stored in store.text_matches(query):
        share = text_share(query, stored)
        if share > 0 and (allowed is None or image_id in allowed):
            found[image_id] = (path, share)
    return found


def merged(hits: Iterable[VectorHit], matches: dict[int, tuple[str, float]]) -> list[VectorHit]:
    """The picture hits and the text matches as one ranking, best first: each photo scores the higher of its
    picture's relevance and ``TEXT_SCORE`` times the share of the query's words its text holds."""
    if not matches:
        return list(hits)
    from vistext.store.records import VectorHit

    best = {hit.id: hit for hit in hits}
    for image_id, (path, share) in matches.items():
        score = TEXT_SCORE * share
        known = best.get(image_id)
        if known is None or known.score < score:
            best[image_id] = VectorHit(image_id, known.path if known else path, score)
    return sorted(best.values(), key=lambda hit: (-hit.score, hit.id))
