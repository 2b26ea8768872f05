"""The interface every store backend implements; callers only ever see this."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from vistext.errors import StoreError
from vistext.store.records import (
    ID_RANGE,
    IMAGE_SPACE,
    MAX_FOLDERS,
    FileState,
    ImageFilter,
    ImageRecord,
    PhotoMeta,
    VectorHit,
)

SPACE_MODELS_KEY = "space_models"
RECORD_PAGE = 256  # records read per query by ``records_by_page``: a page of results (ten ids) is one query


class Store(ABC):
    """A catalogue of indexed images plus one vector index per embedding space.

    Spaces: ``"image"`` (the pooled encoder features) and every key of ``ImageRecord.embeddings`` ever stored.
    Scores are cosine similarities. Use as a context manager or call ``close()`` (which persists caches).
    """

    # whether ``search`` waits on another process (a database server) rather than computing in this one: a
    # caller may then do other work meanwhile (``service.queries`` embeds the next texts)
    searches_elsewhere: bool = False

    @abstractmethod
    def file_states(self, prefix: str | None = None) -> dict[str, FileState]:
        """Path -> (size, mtime, sha, model, status) of every file (whose path starts with ``prefix``), without
        loading vectors."""

    @abstractmethod
    def add(self, records: Sequence[ImageRecord]) -> None:
        """Insert or replace (by path) ``records`` in one transaction."""

    @abstractmethod
    def remove(self, paths: Sequence[str]) -> None:
        """Forget these files; features no other file shares are deleted with them."""

    @abstractmethod
    def features_for_hash(self, sha: str, model: str) -> ImageRecord | None:
        """An ok record with this content hash and model (to reuse its features), or None."""

    @abstractmethod
    def get(self, key: int | str) -> ImageRecord | None:
        """The record with this id (int) or path (str), or None."""

    @abstractmethod
    def search(
        self, space: str, queries: np.ndarray, k: int, restrict: np.ndarray | None = None
    ) -> list[list[VectorHit]]:
        """For each query row, up to ``k`` hits by cosine similarity, best first.

        ``restrict``: only these image ids (int64 array, e.g. from ``ids_matching``) may be returned, and the
        answer still holds ``min(k, how many of them have a vector in space)`` hits: the search is restricted,
        not filtered after the top k. ``None`` searches everything; an empty array returns no hits.
        """

    @abstractmethod
    def ids_matching(self, filter: ImageFilter) -> np.ndarray:
        """Sorted int64 ids of the ok images that pass every condition of ``filter`` (see ``ImageFilter``).

        A photo lacking a field a condition tests (no date, no GPS, no camera) fails that condition. An empty
        filter gives every ok image's id.
        """

    @abstractmethod
    def set_tags(self, tagger: str, tags: Mapping[int, Sequence[tuple[str, float]]]) -> None:
        """Store collection tags in one transaction: for each image id in ``tags``, ``tagger``'s previous tags
        of it are replaced by these ``(tag, score)`` pairs (an empty sequence just clears them). Ids not in the
        catalogue are skipped. Other taggers' tags are kept. Tags go with their image: ``remove`` deletes them,
        and re-indexing a file whose content changed (or that no longer reads) drops them."""

    @abstractmethod
    def ids_tagged_by(self, tagger: str) -> np.ndarray:
        """Sorted int64 ids of the images holding at least one tag from ``tagger``."""

    @abstractmethod
    def edit_tags(self, image_id: int, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Edit one ok photo's tags by hand, in one transaction: each of ``add`` is stored under the source
        ``USER_TAGGER`` (score 1), each of ``remove`` (any case) is deleted from every source and remembered, so
        ``set_tags`` never gives it to this photo again (until it is added by hand). Unknown ids are skipped.
        Hand edits go with the photo's content, as all its tags do."""

    @abstractmethod
    def tags_for(self, ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        """Image id -> its stored ``(tag, score)`` pairs (all taggers; a tag two taggers gave keeps its higher
        score), best score first, then by tag. Ids with no tags are absent."""

    @abstractmethod
    def tag_counts(self) -> dict[str, int]:
        """Tag -> number of ok images carrying it (any tagger), most common first, then by tag."""

    # ---- metadata: defaults built on the methods above; backends may answer them more cheaply ---------------
    def photo_metas(self, ids: Iterable[int]) -> dict[int, PhotoMeta | None]:
        """Image id -> its metadata (None: never read) for these ids, without loading features or vectors
        (what every search hit shows); unknown ids are absent."""
        return {r.id: r.meta for r in self.records(ids, status=None) if r.id is not None}

    def set_photo_meta(self, metas: Mapping[str, PhotoMeta]) -> None:
        """Set the metadata (``ImageRecord.meta``) of already indexed files by path, without touching their
        features; unknown paths are skipped. (``add`` stores a record's ``meta`` too; ``meta=None`` there keeps
        what is stored unless the file's content changed.)"""
        for path, meta in metas.items():
            record = self.get(path)
            if record is not None:
                record.meta = meta
                self.add([record])

    def paths_without_meta(self) -> set[str]:
        """Paths of ok images whose metadata was never read (indexed before metadata existed)."""
        return {record.path for record in self.records() if record.meta is None}

    def facets(self) -> dict[str, Any]:
        """JSON-able summary for filter choices: ``folders`` (collection-relative folder -> ok photos directly
        in it, "." for the root, at most 500, most populated first), ``cameras`` ("make model" -> photos),
        ``date_range`` ([first, last] taken_at unix seconds, or None), ``has_gps`` (photos with a position),
        ``with_meta`` (photos whose metadata was read) and ``tags`` (``tag_counts()``)."""
        folders: dict[str, int] = {}
        cameras: dict[str, int] = {}
        dates: list[float] = []
        gps = read = 0
        root = self.collection_root()
        for record in self.records():
            folder = os.path.dirname(os.path.relpath(record.path, root) if root else record.path) or "."
            folders[folder] = folders.get(folder, 0) + 1
            meta = record.meta
            if meta is None:
                continue
            read += 1
            camera = " ".join(p for p in (meta.camera_make, meta.camera_model) if p)
            if camera:
                cameras[camera] = cameras.get(camera, 0) + 1
            if meta.taken_at is not None:
                dates.append(meta.taken_at)
            gps += meta.latitude is not None
        return {
            "folders": dict(sorted(folders.items(), key=lambda item: (-item[1], item[0]))[:MAX_FOLDERS]),
            "cameras": dict(sorted(cameras.items(), key=lambda item: (-item[1], item[0]))),
            "date_range": [min(dates), max(dates)] if dates else None,
            "has_gps": gps,
            "with_meta": read,
            "tags": self.tag_counts(),
        }

    # ---- dates (store/dates.py: when a photo was taken, else its file's modification time) ----------------------
    def newest_first(
        self, filter: ImageFilter, k: int, *, offset: int = 0, after: tuple[float, int] | None = None
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (id, date) of the ok images passing ``filter``, newest first (ties: the first indexed
        first), skipping ``offset`` of them and, with ``after`` (the (date, id) last shown: a cursor), all up to
        it."""
        from vistext.store.dates import record_date

        ids = [int(i) for i in self.ids_matching(filter)]
        dated = sorted((-record_date(r), int(r.id)) for r in self.records(ids) if r.id is not None)
        if after is not None:
            dated = [(when, i) for when, i in dated if (when, i) > (-float(after[0]), int(after[1]))]
        return [(i, -when) for when, i in dated[offset : offset + k]]

    def photo_dates(self, ids: Iterable[int]) -> dict[int, float]:
        """Image id -> its date (unix seconds), without loading features; unknown ids are absent."""
        from vistext.store.dates import record_date

        return {r.id: record_date(r) for r in self.records(ids, status=None) if r.id is not None}

    # ---- which model made each space: the one record of it (models.clip spaces; bundled spaces name their model) --
    def space_models(self) -> dict[str, dict[str, Any]]:
        """Space -> what the model that made it recorded when it first wrote there (kind, name, key, dim, source)."""
        value = self.get_meta(SPACE_MODELS_KEY, {})
        return {str(space): dict(about) for space, about in value.items()} if isinstance(value, dict) else {}

    def record_space_model(self, space: str, about: Mapping[str, Any]) -> None:
        """Record (or update) which model made ``space``; a read-only store keeps what it has."""
        if self.readonly:
            return
        models = self.space_models()
        if models.get(space) != dict(about):
            models[space] = dict(about)
            self.set_meta(SPACE_MODELS_KEY, models)

    # ---- the perceptual-hash cache (store/picture_hashes.py); a backend without one recomputes every time ------
    def picture_hashes(self, shas: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Content hash -> its cached (dct, diff) perceptual hashes, for those of ``shas`` the cache holds."""
        return {}

    def set_picture_hashes(self, hashes: Mapping[str, tuple[int, int]]) -> None:
        """Cache perceptual hashes by content hash (a read-only store keeps none)."""
        return None

    # ---- the text found in photos (store/photo_text.py); a backend without it holds none ------------------------
    def photo_texts_to_read(self) -> dict[str, str]:
        """Content hash -> the path of one ok photo holding it, for every content whose text was never read."""
        return {}

    def set_photo_texts(self, texts: Mapping[str, Sequence[tuple[str, float]]]) -> None:
        """Store the text lines (each with its OCR confidence) read from each content hash, replacing what it had;
        an empty sequence records that the photo was read and holds no text."""
        raise StoreError(f"{type(self).__name__} keeps no text found in photos")

    def photo_texts(self, ids: Iterable[int]) -> dict[int, str]:
        """Image id -> the text found in it (lines joined by `` / ``), for those of ``ids`` holding any."""
        return {}

    def photo_text_lines(self, shas: Iterable[str]) -> dict[str, list[tuple[str, float]]]:
        """Content hash -> the lines read from it with their confidence, for those of ``shas`` whose text was read
        (an empty list: read, no text)."""
        return {}

    def text_matches(self, query: Sequence[str], limit: int = 2000) -> list[tuple[int, str, str]]:
        """(image id, path, the searchable words of its text, space-separated) of ok photos whose text holds a word
        starting with any of the ``query`` words (lower-case, as ``photo_text.query_words`` gives them), the
        backend's full-text ranking first, at most ``limit``."""
        return []

    def collection_root(self) -> str | None:
        """The folder collection-relative paths (``ImageFilter.folder``, facets) start from, if any."""
        return None

    @abstractmethod
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,), L2-normalised float32 matrix (n, d)) of every vector in ``space``, ordered by id."""

    def vectors_of(self, space: str, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """id -> the vector stored in ``space`` for those of ``ids`` that have one, as stored (not normalised):
        a few photos' small vectors without reading their whole records (a backend may answer it directly)."""
        found = {}
        for record in self.records(ids):
            vector = record.pooled if space == IMAGE_SPACE else record.embeddings.get(space)
            if record.id is not None and vector is not None:
                found[int(record.id)] = vector
        return found

    @abstractmethod
    def records(self, ids: Iterable[int] | None = None, status: str | None = "ok") -> Iterator[ImageRecord]:
        """Stream records (all, or these ids), optionally only those with ``status`` (None = any)."""

    @abstractmethod
    def spaces(self) -> list[str]:
        """``"image"`` plus every embedding space stored."""

    @abstractmethod
    def paths_missing(self, space: str) -> set[str]:
        """Paths of readable images without a vector in embedding ``space``."""

    @abstractmethod
    def version(self) -> int:
        """A number that changes whenever what a search or listing shows changes: the stored images, their
        vectors, tags, metadata or text found in them (cheap: no vectors are read). Caches of answers are kept
        under it (``service.page_cache``, the map)."""

    @abstractmethod
    def count(self, status: str | None = None) -> int:
        """Number of files (with this status)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """JSON-able summary: counts, models, spaces (dim, index kind, size), bytes on disk."""

    @abstractmethod
    def set_meta(self, key: str, value: Any) -> None:
        """Store a small JSON-able value under ``key``."""

    @abstractmethod
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""

    @abstractmethod
    def flush(self) -> None:
        """Persist caches (vector index files) now rather than at ``close()``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store."""

    @property
    def readonly(self) -> bool:
        """Whether the store was opened without write access (searches work, ``add``/``remove`` raise)."""
        return False

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Held by an indexing run: a second one fails at once with a ``StoreError`` naming the first.

        Backends whose server serialises writers need nothing here.
        """
        yield

    @contextmanager
    def bulk_load(self, rows: int) -> Iterator[None]:
        """Around writing about ``rows`` new or changed records (an indexing run, ``migrate``): a backend whose
        search indexes grow far slower a row at a time than they build over existing rows (PostgreSQL) may drop
        them first and build them when the load ends; a load that raises leaves them to the next one, and the
        catalogue stays searchable (exactly) meanwhile. The embedded store builds its in-memory indexes on first
        search and needs nothing here."""
        yield

    def mark_unsearched(self, spaces: Iterable[str]) -> None:  # noqa: B027 (a hint)
        """These spaces are only ever read whole (``vectors``), never searched by nearest neighbour (a derived
        space's source): a backend that keeps a search index per space on disk may keep none for them. The
        embedded store loads a space's index only when it is searched and needs nothing here."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def records_by_page(
    ids: Iterable[int] | None,
    read_ids: Callable[[list[int]], list[ImageRecord]],
    read_after: Callable[[int, int], list[ImageRecord]],
) -> Iterator[ImageRecord]:
    """``Store.records`` of a backend, a page at a time: ``ids`` in their order, up to ``RECORD_PAGE`` per
    ``read_ids(chunk)`` (records of those ids, any order; unknown ids left out), or every record by id through
    ``read_after(last id, RECORD_PAGE)`` (keyset paging). Each page is one short read, so nothing is held while
    the caller works on a page."""
    if ids is not None:
        wanted = [int(i) for i in ids if int(i) in ID_RANGE]
        for start in range(0, len(wanted), RECORD_PAGE):
            chunk = wanted[start : start + RECORD_PAGE]
            by_id = {record.id: record for record in read_ids(chunk)}
            yield from (by_id[i] for i in chunk if i in by_id)
        return
    last = ID_RANGE.start  # no id is below it
    while page := read_after(last, RECORD_PAGE):
        yield from page
        last = page[-1].id  # type: ignore[assignment]
