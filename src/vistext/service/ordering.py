"""The orders photos are shown in: search hits by relevance (best first) or by date (newest first), and the
collection newest first with cursor paging. A photo's date is the store's (``store.dates``): when it was taken,
else its file's modification time.

Sorting a search by date orders the matches, not the whole collection: the best ``DATE_POOL`` hits are taken
by relevance, the strong ones among them (at least the space's strong score, see
``LoadedModels.strong_score``) are put newest first, and the weak ones are left out. With no strong match at all
the hits stay closest first, and the page says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vistext.errors import UsageError
from vistext.service.filters import describe
from vistext.service.results import Hit, SearchResult

if TYPE_CHECKING:
    from vistext.store import Store
    from vistext.store.records import VectorHit

MAX_K = 1000  # the most hits one page may ask for
SORTS = ("relevance", "date")
DATE_POOL = 200  # the best matches a search sorted by date orders (its pages come from these)
_CURSOR_HELP = "give the next_cursor of a previous page"


def check_k(k: int) -> int:
    """``k`` when it is a page size a search may ask for (1 to ``MAX_K``), else a one-line ``UsageError``."""
    if not 1 <= k <= MAX_K:
        raise UsageError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def parse_sort(text: str) -> str:
    """``relevance`` or ``date`` (any case); anything else is a one-line ``UsageError``."""
    value = str(text).strip().lower()
    if value not in SORTS:
        raise UsageError(f"sort must be one of {', '.join(SORTS)}, got {text!r}")
    return value


def wanted_hits(sort: str, k: int, offset: int) -> int:
    """How many hits a search page sorted by ``sort`` needs from the vector index."""
    return k + offset if sort == "relevance" else max(DATE_POOL, k + offset)


def newest_matches(store: Store, hits: list[VectorHit], strong: float | None) -> list[VectorHit]:
    """``hits`` (best first) as a search sorted by date shows them: the strong ones (all when ``strong`` is
    None) newest first, ties best first; with none strong, ``hits`` as they are."""
    kept = [hit for hit in hits if strong is None or hit.score >= strong]
    if not kept:
        return hits
    dates = store.photo_dates([hit.id for hit in kept])
    rank = {hit.id: n for n, hit in enumerate(kept)}
    return sorted(kept, key=lambda hit: (-dates.get(hit.id, float("-inf")), rank[hit.id]))


@dataclass(frozen=True)
class ResultPage:
    """Which hits one page of a search shows, and how: ``k`` from ``offset`` of those scoring at least
    ``min_score`` (the query photo ``skip`` left out), in ``sort`` order; ``strong``: the score of a likely match
    (None: scores are not calibrated)."""

    query: str
    k: int
    offset: int = 0
    min_score: float | None = None
    skip: int | None = None
    sort: str = "relevance"
    strong: float | None = None

    def result(
        self, store: Store, hits: list[VectorHit], text_matches: dict[int, tuple[str, float]] | None = None
    ) -> SearchResult:
        """The page of ``hits`` (best first) merged with the photos whose text matched (``text_matches``, see
        ``service.photo_text.text_hits``), each with its metadata, tags, text and, for a copy of a photo shown
        before it, ``copy_of``."""
        from vistext.service.copies import copies_among
        from vistext.service.photo_text import merged

        matches = text_matches or {}
        hits = merged(hits, matches)
        shares = {image_id: share for image_id, (_, share) in matches.items()}
        if self.skip is not None:
            hits = [h for h in hits if h.id != self.skip]
        if self.min_score is not None:
            hits = [h for h in hits if h.score >= self.min_score]
        if self.sort == "date":
            hits = newest_matches(store, hits, self.strong)
        shown = hits[self.offset : self.offset + self.k]
        details = describe(store, [h.id for h in shown])
        copies = copies_among(store, [h.id for h in shown]) if len(shown) > 1 else {}
        results = [
            Hit(h.path, float(h.score), h.id, *details.get(h.id, (None, [], None)), shares.get(h.id), copies.get(h.id))
            for h in shown
        ]
        return SearchResult(self.query, results, self.offset, sort=self.sort, strong_score=self.strong)


def cursor_text(date: float, image_id: int) -> str:
    """The cursor of a listing page that ended at this photo (its date and id)."""
    return f"{date!r}:{image_id}"


def parse_cursor(text: str) -> tuple[float, int]:
    """(date, id) from ``cursor_text``; anything else is a one-line ``UsageError``."""
    date, _, image_id = str(text).strip().rpartition(":")
    try:
        when, ident = float(date), int(image_id)
    except ValueError:
        raise UsageError(f"cursor: {_CURSOR_HELP}, got {text!r}") from None
    if when != when or ident < 1:  # NaN, or no catalogue id
        raise UsageError(f"cursor: {_CURSOR_HELP}, got {text!r}")
    return when, ident
