"""One indexed collection: its store, indexing, search, similar images, and its images by id.

The store opens on first use; without ``create`` a missing catalogue is an error, not an empty index. Indexed
images are only ever addressed by their catalogue id, so no caller (HTTP client, chat user) can make the
service read a path of its choosing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import ImageDecodeError, StoreError, UsageError
from vistext.service.batching import then_on
from vistext.service.collection_ray import check_engine, index_location_on_ray
from vistext.service.inputs import ImageInput, Upload, input_name
from vistext.service.loaded_models import Lazy, LoadedModels
from vistext.service.location import CatalogueLocation, indexes_below, locate, missing_message
from vistext.service.ordering import ResultPage, check_k, parse_sort, wanted_hits
from vistext.service.page_cache import PageCache
from vistext.service.person_chances import PresenceMemo
from vistext.service.photo_text import check_ocr, index_text, text_hits, text_summary
from vistext.service.queries import Query, QueryBatcher, query_maker
from vistext.service.query_syntax import parse_query
from vistext.service.results import InfoResult, SearchResult
from vistext.service.thumbnails import THUMBNAIL_SIZES, Thumbnails

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from vistext.indexing.local import IndexReport
    from vistext.models.clip import ClipModel
    from vistext.models.tagger import TaggerModel
    from vistext.service.collection_tags import CollectionTagReport
    from vistext.service.listing import ListResult
    from vistext.store import ImageRecord, Store
    from vistext.store.records import ImageFilter, VectorHit

PAGE_THREADS = 4  # search pages made at once, beside the one batch worker
LOOK_THREADS = 4  # kept pages looked up at once, on threads of their own: never queued behind pages being made


class UnknownImageError(UsageError):
    """No indexed, readable image has this id."""


class Collection:
    """The catalogue at ``db`` (None: the default one; see ``vistext.paths.default_db_path``)."""

    def __init__(
        self, db: str | Path | None, models: LoadedModels, *, progress: bool = True, read_only: bool = False
    ) -> None:
        self.db = db
        self.read_only = read_only  # a reading command: the catalogue is opened read-only, never written
        self.models = models
        self.progress = progress
        self._location: CatalogueLocation | None = None
        self._store: Store | None = None
        self._store_lock = threading.RLock()
        # the joint model loads on the first text to embed: ``similar`` alone never needs it
        self._queries: Lazy[QueryBatcher] = Lazy(
            lambda: QueryBatcher(self.store, self.models.encode_query_texts, readable=self.models.readable_scores)
        )
        self._thumbnails = Thumbnails()
        self._pages = ThreadPoolExecutor(PAGE_THREADS, thread_name_prefix="search-page")  # see batching.then_on
        self._looks = ThreadPoolExecutor(LOOK_THREADS, thread_name_prefix="search-look")
        self._answers: PageCache[SearchResult] = PageCache()  # text-search pages by catalogue version
        self._presence = PresenceMemo()  # photos' chance of showing a person, by catalogue version

    # ---- the store --------------------------------------------------------------------------------------
    @property
    def location(self) -> CatalogueLocation:
        """The catalogue this collection works on now: ``db``, or the folder last indexed, or the default one."""
        with self._store_lock:
            if self._location is None:
                self._location = locate(self.db)
            return self._location

    def store(self, create: bool = False) -> Store:
        """The collection's store; without ``create`` a missing catalogue is an error, not an empty index."""
        with self._store_lock:  # re-entrant: ``location`` takes it too
            if self._store is None:
                from vistext.store import open_store

                where = self.location
                if not create and not where.exists():
                    raise StoreError(missing_message(where.file, self.db is not None))
                # index needs write access; a reading command opens the catalogue read-only (never a byte
                # written, no migration); others write when they can and read a catalogue they cannot write
                readonly = False if create else (True if self.read_only else None)
                self._store = open_store(where.uri, readonly=readonly)
            return self._store

    def store_for(self, folder: str | Path | None) -> Store:
        """The store that indexing ``folder`` writes to, created if needed: ``db`` when one was given, else the
        folder's own catalogue, which becomes the collection's (so ``info`` and searches then read it)."""
        target = locate(self.db, folder)
        with self._store_lock:
            if target != self._location:
                if self._store is not None:
                    self._store.close()
                    self._store = None
                self._location = target
        return self.store(create=True)

    def exists(self) -> bool:
        return self._store is not None or self.location.exists()

    def close(self) -> None:
        for pool in (self._looks, self._pages):  # a page still queued finishes inline (see batching.then_on)
            pool.shutdown(wait=False)
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    @property
    def queries(self) -> QueryBatcher:
        """Cached query-text embeddings and batched searches (concurrent callers share one pass)."""
        return self._queries.get()

    # ---- building and describing it -----------------------------------------------------------------------
    def index(
        self,
        folder: str | Path,
        *,
        text_search: bool = True,
        tagger: str | Path | None = None,
        engine: str = "local",
        address: str | None = None,
        ocr: bool | None = None,
        model: str | Path | None = None,
        deadline: float | None = None,
    ) -> IndexReport:
        """Incrementally index ``folder`` (new files added, changed re-encoded, deleted removed); with
        ``tagger`` (a trained tagger's folder or name) also store its tags of every photo; with ``model`` (a
        CLIP-family model, see ``service.clip_spaces``) also give every photo a vector in that model's space;
        ``ocr``: read the text in photos, or not, from now on (None: as the catalogue remembers; see
        ``service.photo_text``).

        ``engine="ray"`` runs on a Ray cluster (``address``; default a private local one) and also reads
        ``s3://bucket/prefix`` URLs, ending the run when no photo finishes for ``deadline`` seconds; see
        ``vistext.indexing.ray_engine``."""
        check_engine(engine, address, folder, deadline)
        trained = self._collection_tagger(tagger) if tagger is not None else None  # a bad tagger fails first
        check_ocr(ocr, folder)  # and so does --ocr without its extra
        clip = self.models.clips.load(model) if model is not None else None  # and so does a bad model
        if engine == "ray":
            report = index_location_on_ray(
                str(folder),
                self.db,
                self.store_for,
                self.location,
                self.models,
                text_search=text_search,
                address=address,
                progress=self.progress,
                deadline=deadline,
            )
        else:
            report = self._index_locally(Path(folder), text_search)
        from vistext.service.default_tags import tags_after_pass  # loads the store package (FAISS)

        tags_after_pass(self.store(), self.models, report)
        if clip is not None:
            from vistext.service.clip_spaces import add_space

            added = add_space(self.store(), self.location, clip, folder, engine, (address, deadline), self.progress)
            report.model_space = {"model": clip.name, "space": clip.space, "added": added}
        if trained is not None and tagger is not None:
            report.tags = self.tag_collection(tagger).to_dict()
        text = index_text(self.store(), self.models.text_reader, ocr, progress=self.progress)
        report.text = None if text is None else text.to_dict()
        return report

    def _index_locally(self, folder: Path, text_search: bool) -> IndexReport:
        from vistext.indexing.local import index_folder

        projectors = self.models.text_projectors() if text_search else None
        derived = self.models.derived_spaces() if text_search else None
        store = self.store_for(folder)
        return index_folder(
            folder, store, self.models.encoder, projectors=projectors, derived=derived, progress=self.progress
        )

    def _collection_tagger(self, tagger: str | Path) -> TaggerModel:
        from vistext.service.collection_tags import check_tagger

        model = self.models.tagger(tagger)
        check_tagger(model, tagger)
        return model

    def tag_collection(self, tagger: str | Path) -> CollectionTagReport:
        """Store a trained tagger's tags (above its thresholds) of every indexed photo, from stored features."""
        from vistext.service.collection_tags import tag_collection, tagger_name

        model = self._collection_tagger(tagger)
        name = tagger_name(tagger) if Path(tagger).exists() else str(tagger)
        return tag_collection(self.store(), model, name, progress=self.progress)

    def info(self) -> InfoResult:
        where = self.location
        if not self.exists():
            below = [] if self.db is not None else indexes_below(Path.cwd())
            return InfoResult(str(where), False, {"indexes_below": [str(folder) for folder in below]} if below else {})
        from vistext.service.collection_tags import unfinished_tagging
        from vistext.service.listing import facets

        details = dict(self.store().info())
        details["space_models"] = self.store().space_models()  # which CLIP-family model made each such space
        details["metadata"] = {**facets(self.store()), "unfinished_tagging": unfinished_tagging(self.store())}
        details["metadata"]["text"] = text_summary(self.store())
        return InfoResult(str(where), True, details)

    # ---- the collection as a list ---------------------------------------------------------------------------
    def list_images(
        self, filter: ImageFilter | None = None, k: int = 50, offset: int = 0, cursor: str | None = None
    ) -> ListResult:
        """Photos passing ``filter`` newest first with their metadata and tags (see ``service.listing``)."""
        from vistext.service.listing import list_images

        return list_images(self.store(), filter, check_k(k), offset, cursor)

    def export_lines(self, filter: ImageFilter | None = None, format: str = "csv") -> Iterator[str]:
        """Every photo passing ``filter`` as CSV or JSON Lines text, line by line (see ``service.listing``)."""
        from vistext.service.listing import export_lines, parse_export_format

        return export_lines(self.store(), filter, parse_export_format(format))

    def facets(self) -> dict[str, Any]:
        """Cameras, folders, date range, GPS count and tag counts (what the filters can choose from)."""
        from vistext.service.listing import facets

        return facets(self.store())

    # ---- indexed images, by id only -----------------------------------------------------------------------
    def image_record(self, image_id: int) -> ImageRecord:
        """The catalogue record of an indexed, readable image; ``UnknownImageError`` otherwise."""
        if isinstance(image_id, bool) or not isinstance(image_id, int | np.integer):
            raise UsageError(f"an image id is a whole number, got {image_id!r}")
        record = self.store().get(int(image_id))
        if record is None or record.status != "ok":
            raise UnknownImageError(f"no indexed image with id {image_id}")
        return record

    def image_file(self, image_id: int) -> Path:
        """The file of indexed image ``image_id`` (never a caller-given path)."""
        path = Path(self.image_record(image_id).path)
        if not path.is_file():
            raise UnknownImageError(f"indexed image {image_id}: {path} no longer exists (re-run `vistext index`)")
        return path

    def thumbnail(self, image_id: int, size: int = 256) -> bytes:
        """A JPEG thumbnail of indexed image ``image_id`` whose longer side is ``size`` (one of THUMBNAIL_SIZES)."""
        if size not in THUMBNAIL_SIZES:
            raise UsageError(f"thumbnail size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}, got {size}")
        record = self.image_record(image_id)
        key = record.sha or f"{record.path}:{record.mtime}"
        try:
            return self._thumbnails.get(key, size, lambda: self.image_file(image_id))
        except ImageDecodeError as error:
            raise UnknownImageError(f"indexed image {image_id}: {error.reason}") from None

    def indexed_vector(self, image: ImageInput | int, space: str) -> np.ndarray | None:
        """The stored vector of an already indexed image (by id or path), so a query never re-reads it."""
        return self._indexed(image, space)[0]

    def _indexed(self, image: ImageInput | int, space: str) -> tuple[np.ndarray | None, int | None]:
        """``(stored vector or None, catalogue id or None)`` of ``image`` when it is indexed (by id or path)."""
        if isinstance(image, Upload):
            return None, None
        key: int | str = image if isinstance(image, int) else str(Path(image).resolve())
        record = self.store().get(key)
        if record is None or record.status != "ok":
            if isinstance(image, int):
                raise UnknownImageError(f"no indexed image with id {image}")
            return None, None
        vector = record.pooled if space == "image" else record.embeddings.get(space)
        return (None if vector is None else _unit(vector)), record.id

    # ---- searching ------------------------------------------------------------------------------------------
    def similar(
        self,
        image: ImageInput | int,
        k: int = 10,
        *,
        offset: int = 0,
        min_score: float | None = None,
        include_self: bool = False,
        filter: ImageFilter | None = None,
        model: str | Path | None = None,
    ) -> SearchResult:
        """Indexed images closest to ``image`` (an indexed id or path, or any image file/upload), among those
        passing ``filter`` when given (the k best of them, not the top k filtered); by the image features, or
        in ``model``'s space (a CLIP-family model the catalogue has a space for).

        When ``image`` is itself indexed (given by id or path) it is left out of the answer (it would always
        be first at 1.000) unless ``include_self``; an upload or an unindexed file is compared as it is."""
        clip = None if model is None else self.clip_model(model)
        space = "image" if clip is None else clip.space
        vector, own_id = self._indexed(image, space)
        if vector is None:
            if isinstance(image, int):
                raise UsageError(f"indexed image {image} has no vector in space {space}")
            if clip is not None:
                from vistext.service.inputs import decode

                vector = clip.encode_images([decode(image)])[0]
            else:
                vector = _unit(self.models.encode_images([image]).pooled)[0]
        name = f"#{image}" if isinstance(image, int) else input_name(image)
        skip = None if include_self else own_id
        wanted = k + offset + (skip is not None)
        search = Query(space, wanted, vector=vector, restrict=self.restrict(filter))
        return self._page(search, ResultPage(name, k, offset, min_score, skip=skip)).result()

    def search_later(
        self,
        text: str,
        k: int = 10,
        *,
        offset: int = 0,
        min_score: float | None = None,
        filter: ImageFilter | None = None,
        sort: str = "relevance",
        model: str | Path | None = None,
    ) -> Future[SearchResult]:
        """Indexed images that best match ``text`` in the joint image-text space, or in ``model``'s space (a
        CLIP-family model; its own text tower embeds the text), among those passing ``filter``, best first or by
        date (``service.ordering``), as a future: the query joins the next batch and the caller's thread is free
        meanwhile. Loads the model on first use."""
        if not text.strip():
            raise UsageError("the search text is empty")
        sort = parse_sort(sort)
        wanted = wanted_hits(sort, k, offset)
        parsed = parse_query(text)  # the search syntax: things, exclusions, attributes (service.query_syntax)

        def make() -> Future[SearchResult]:  # run on a look thread, when no page is kept for this request
            clip = None if model is None else self.clip_model(model)
            space = self.models.text_space if clip is None else clip.space
            query_for = query_maker(space, None if clip is None else clip.encode_texts)
            strong = None if clip is not None else self.models.strong_score(space)  # a CLIP space: plain cosines
            page = ResultPage(text, k, offset, min_score, sort=sort, strong=strong)
            search = query_for(parsed.wanted, wanted, self.restrict(filter))
            if not parsed.plain:
                from vistext.service.composed_search import composed_page

                return composed_page(self.store(), self.queries, self._pages, parsed, query_for, search, page,
                                     self._explain, self._presence)  # fmt: skip
            return self._page(search, page, words=text)

        key = (text, k, offset, min_score, filter, sort, None if model is None else str(model))
        return self._answers.answer(self._looks, key, self.store().version, make)

    def clip_model(self, model: str | Path) -> ClipModel:
        """The CLIP-family model ``model`` names, refused unless this catalogue has a space made by it."""
        return self.models.clips.for_catalogue(model, self.store(), self.location)

    def restrict(self, filter: ImageFilter | None) -> np.ndarray | None:
        """The ids a search may return under ``filter`` (None: no filter, all of them)."""
        return None if filter is None or filter.empty else self.store().ids_matching(filter)

    def _page(self, search: Query, page: ResultPage, *, words: str | None = None) -> Future[SearchResult]:
        """A page of ``search``'s hits with their details; ``words``: a search text also matched against the
        text found in photos (``service.photo_text``)."""
        check_k(page.k)
        if page.offset < 0:
            raise UsageError(f"offset must be >= 0, got {page.offset}")

        def shown(hits: list[VectorHit]) -> SearchResult:
            store = self.store()
            matches = {} if words is None else text_hits(store, words, search.restrict)
            return page.result(store, hits, matches)

        return then_on(self._pages, self.queries.submit(search), shown, lambda error: self._explain(error, search))

    def _explain(self, error: BaseException, search: Query) -> BaseException:
        # checked only on failure: a busy server must not pay a catalogue query per search
        if isinstance(error, StoreError) and search.text is not None and search.space not in self.store().spaces():
            clips = [about.get("name") for about in self.store().space_models().values()]
            hint = f" (it has a CLIP space: search it with --model {clips[0]})" if clips else ""
            return StoreError(
                f"{self.location}: this index has no text-search embeddings for model {self.models.joint.name!r}"
                f"{hint}; re-run `vistext index DIR` to add them"
            )
        return error


def _unit(vectors: np.ndarray) -> np.ndarray:
    # the store's l2_normalise, imported only here: importing the store package loads FAISS, which a query
    # that never opens the vector index (tag, match, caption) should not pay for
    from vistext.store.records import l2_normalise

    return l2_normalise(vectors)
