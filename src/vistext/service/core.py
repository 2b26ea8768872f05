"""The one facade every surface calls: index, tag, search, similar, caption, match, topics, map, info.

``Service`` composes small parts, each owning its state: the loaded models (lazily loaded encoder and joint
model, cached taggers and match classifiers), the collection (where the catalogue is, its store, index,
search, similar, images by id), understanding (tag, caption, match), topics and explore (status, map,
neighbours, contact sheets). The parts are private: callers get results, never a part. Nothing loads until
used, so ``vistext info`` never loads a network and ``vistext tag`` never opens a database.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vistext.service.collection import Collection
from vistext.service.collection_topics import CollectionTopics
from vistext.service.explore import Explore
from vistext.service.inputs import ImageInput
from vistext.service.loaded_models import MODEL_CACHE_SIZE, LoadedModels
from vistext.service.location import CatalogueLocation
from vistext.service.results import (
    CaptionResult,
    DuplicatesResult,
    InfoResult,
    MapResult,
    MatchResult,
    NeighbourTable,
    SearchResult,
    StatusResult,
    TagResult,
    TopicsResult,
)
from vistext.service.understanding import Understanding

if TYPE_CHECKING:
    from vistext.evaluation.base import Evaluation
    from vistext.indexing.local import IndexReport
    from vistext.service.collection_tags import CollectionTagReport
    from vistext.service.default_tags import PhotoTags
    from vistext.service.listing import ListResult
    from vistext.store import Store
    from vistext.store.records import ImageFilter


class Service:
    """vistext's operations over one collection (``db``) with lazily loaded models.

    ``db=None`` uses the default catalogue (see ``vistext.service.location.locate``) until ``index(folder)``,
    which then writes to, and makes current, ``folder/.vistext/``. ``model_cache`` bounds how many trained
    taggers and match classifiers stay loaded. ``read_only``: the catalogue is opened read-only (reading
    commands: not a byte of it is written, migrated or created; a file that is not a vistext catalogue is
    refused). Caches beside it (vector index, topics and map files) are still kept where its folder is writable.
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        encoder: str = "efficientnet-lite0",
        joint_model: str | Path | None = None,
        progress: bool = True,
        model_cache: int = MODEL_CACHE_SIZE,
        read_only: bool = False,
    ) -> None:
        self._models = LoadedModels(encoder, joint_model, model_cache)
        self._collection = Collection(db, self._models, progress=progress, read_only=read_only)
        self._understanding = Understanding(self._models, self._collection)
        self._topics = CollectionTopics(self._collection, self._models)
        self._explore = Explore(self._collection, self._models, self._topics)

    def close(self) -> None:
        self._collection.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- where the catalogue is ---------------------------------------------------------------------------
    @property
    def location(self) -> CatalogueLocation:
        """The catalogue this service works on now (its file or server, its collection folder)."""
        return self._collection.location

    def open(self) -> bool:
        """Open the catalogue now when there is one (a server does so before its first request, so concurrent
        first requests do not race to open it); whether there is one."""
        if not self._collection.exists():
            return False
        self._collection.store()
        return True

    def store(self) -> Store:
        """The open catalogue, for tests, benches and tools that inspect what was stored. The surfaces (cli/,
        server/, bot) never use it: every question they have is a method here (tests/test_thin_surfaces.py
        checks)."""
        return self._collection.store()

    def version(self) -> int:
        """The catalogue's version: it changes whenever the collection does (for caching what is derived)."""
        return self._collection.store().version()

    def matching_ids(self, filter: ImageFilter) -> set[int]:
        """The catalogue ids of the photos passing ``filter``."""
        return {int(i) for i in self._collection.store().ids_matching(filter)}

    # ---- models ---------------------------------------------------------------------------------------------
    @property
    def text_model_loaded(self) -> bool:
        """Whether the joint model is in memory, so ``search_later`` returns at once instead of loading it."""
        return self._models.joint_loaded

    @property
    def image_encoder_loaded(self) -> bool:
        return self._models.encoder_loaded

    @property
    def cached_models(self) -> int:
        """How many trained taggers and match classifiers are loaded (at most ``model_cache``)."""
        return len(self._models.cache)

    def load_models(self, *, text: bool = True, image: bool = True) -> None:
        """Load the text model and the image encoder (running it once on a blank picture) now rather than on
        first use."""
        if text:
            _ = self._models.text_space
        if image:
            from PIL import Image

            self._models.features([Image.new("RGB", (64, 64), (128, 128, 128))])

    def has_text_embeddings(self) -> bool:
        """Whether the catalogue holds any joint model's text-search embeddings."""
        return any(space.startswith("joint:") for space in self._collection.store().spaces())

    def catalogue_models(self) -> list[dict[str, Any]]:
        """The CLIP-family models the catalogue has spaces for (name, key, dim, space, source): what ``model=``
        may name beside the bundled default."""
        from vistext.service.clip_spaces import recorded_models

        return recorded_models(self._collection.store()) if self._collection.exists() else []

    def catalogue_model(self, name: str) -> str:
        """``name``, checked to name one of ``catalogue_models`` (a ``UsageError`` listing them otherwise)."""
        from vistext.service.clip_spaces import check_recorded

        return check_recorded(self._collection.store() if self._collection.exists() else None, name)

    def answering_model(self, text: bool, model: str | Path | None = None) -> tuple[str, str]:
        """Which model answers a text (``text``) or an image query (with ``model``: that CLIP-family model), and
        the space it searches."""
        if model is not None:
            clip = self._collection.clip_model(model)
            return f"CLIP-family model {clip.name}", clip.space
        if text:
            return f"joint model {self._models.joint.name}", self._models.text_space
        return f"image encoder {self._models.encoder_name}", "image"

    # ---- the collection -------------------------------------------------------------------------------------
    @property
    def progress(self) -> bool:
        return self._collection.progress

    @progress.setter
    def progress(self, value: bool) -> None:
        self._collection.progress = value

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
        ``tagger``, store that trained tagger's tags of every photo too; with ``model`` (a CLIP-family model:
        a folder or name), a vector of every photo in that model's space too; ``engine="ray"`` runs on a Ray
        cluster at ``address`` and reads ``s3://`` URLs too, and ends with a ``ClusterError`` naming the cause
        when no photo finishes for ``deadline`` seconds (default 300). ``ocr=True`` reads the text in photos (signs,
        screenshots, documents) for search, in this run and every later one; ``False`` stops; None does as the
        catalogue remembers (off for a new one)."""
        return self._collection.index(
            folder, text_search=text_search, tagger=tagger, engine=engine, address=address, ocr=ocr, model=model,
            deadline=deadline,
        )  # fmt: skip

    def watch(
        self, folder: str | Path, *, text_search: bool = True, stop: threading.Event | None = None
    ) -> Generator[IndexReport, None, None]:
        """Index ``folder`` as ``index`` does, then keep the catalogue current with it: yields that pass's report,
        then one per batch of photos added, changed, moved or deleted (within seconds of the change, no rescan),
        until ``stop`` is set or the caller stops iterating. Holds the catalogue's writer lock meanwhile."""
        from vistext.service.watching import watch_folder

        return watch_folder(self._collection, folder, text_search=text_search, stop=stop)

    def info(self) -> InfoResult:
        return self._collection.info()

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
        passing ``filter``; an indexed query image is left out of its own answer unless ``include_self``.
        ``model``: compare in that CLIP-family model's space instead of by the image features."""
        return self._collection.similar(
            image, k, offset=offset, min_score=min_score, include_self=include_self, filter=filter, model=model
        )

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        offset: int = 0,
        min_score: float | None = None,
        filter: ImageFilter | None = None,
        sort: str = "relevance",
        model: str | Path | None = None,
    ) -> SearchResult:
        """Indexed images (passing ``filter``) that best match ``text`` in the joint image-text space, or in the
        space of ``model`` (a CLIP-family model the catalogue was indexed with; scores are its cosines), best
        first or (``sort="date"``) the strong matches newest first (see ``service.ordering``)."""
        return self.search_later(
            text, k, offset=offset, min_score=min_score, filter=filter, sort=sort, model=model
        ).result()

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
        """``search`` as a future: the query joins the next batch and the caller's thread is free meanwhile
        (the server awaits it). Loads the model on first use."""
        return self._collection.search_later(
            text, k, offset=offset, min_score=min_score, filter=filter, sort=sort, model=model
        )

    # ---- the collection as a list (metadata and collection tags) ---------------------------------------------
    def list_images(
        self, filter: ImageFilter | None = None, k: int = 50, offset: int = 0, cursor: str | None = None
    ) -> ListResult:
        """Photos passing ``filter``, newest first (date taken, else file time), with their metadata and tags,
        ``k`` from ``offset`` or after ``cursor`` (a previous page's ``next_cursor``)."""
        return self._collection.list_images(filter, k, offset, cursor)

    def export_lines(self, filter: ImageFilter | None = None, format: str = "csv") -> Iterator[str]:
        """Every photo passing ``filter`` as ``csv`` or ``jsonl`` text, line by line."""
        return self._collection.export_lines(filter, format)

    def facets(self) -> dict[str, Any]:
        """Cameras, folders, date range, GPS count and tag counts: what the filters can choose from."""
        return self._collection.facets()

    def tag_counts(self) -> dict[str, int]:
        """Stored collection tag -> photos carrying it."""
        return self._collection.store().tag_counts()

    def edit_tags(self, photo: int | str | Path, add: Sequence[str] = (), remove: Sequence[str] = ()) -> PhotoTags:
        """Add tags to one indexed photo (an id, or the path of an indexed file) by hand, or remove any of its
        tags: added ones carry the source ``user``; removed ones stay removed when the collection is tagged
        again (``vistext index``, ``tag --collection``). Both survive re-indexing."""
        from vistext.service.collection import UnknownImageError
        from vistext.service.default_tags import edit_photo_tags

        if isinstance(photo, int):
            record = self._collection.image_record(photo)
        else:
            found = self._collection.store().get(str(Path(photo).resolve()))
            if found is None or found.status != "ok":
                raise UnknownImageError(f"{photo}: not an indexed photo of {self.location}")
            record = found
        return edit_photo_tags(self._collection.store(), record, add, remove)

    def tag_collection(self, tagger: str | Path) -> CollectionTagReport:
        """Store a trained tagger's tags (above its thresholds) of every indexed photo, from stored features."""
        return self._collection.tag_collection(tagger)

    def image_file(self, image_id: int) -> Path:
        return self._collection.image_file(image_id)

    def thumbnail(self, image_id: int, size: int = 256) -> bytes:
        return self._collection.thumbnail(image_id, size)

    # ---- single images ----------------------------------------------------------------------------------------
    def tag(
        self,
        images: Iterable[ImageInput],
        k: int = 5,
        *,
        model: str | Path | None = None,
        vocab: Sequence[str] | None = None,
        threshold: bool = False,
    ) -> list[TagResult]:
        """Top-k tags per image: ImageNet (default), a trained tagger (``model``) or open vocabulary (``vocab``)."""
        return self._understanding.tag(images, k, model=model, vocab=vocab, threshold=threshold)

    def caption(
        self, image: ImageInput, bank: str | None = None, k: int = 5, *, model: str | Path | None = None
    ) -> CaptionResult:
        """Captions from ``bank`` (FORMAT:PATH or a text file), in the joint space or in ``model``'s (a
        CLIP-family model), or composed from the bundled models' words without a bank."""
        return self._understanding.caption(image, bank, k, model=model)

    def can_compose_captions(self) -> bool:
        """Whether ``caption`` answers without a bank (the fused space is there); loads no shipped model."""
        return self._models.can_compose_captions()

    def evaluate_classes(self, spec: str, split: str = "test", template: str = "a photo of a {}") -> Evaluation:
        """Zero-shot top-1/top-5 and text-search P@10/mAP of the open-domain space on ``classes:DIR``."""
        return self._understanding.evaluate_classes(spec, split, template)

    def match(
        self, image: ImageInput, tag_sets: Sequence[Sequence[str]], *, model: str | Path | None = None
    ) -> MatchResult:
        """How well each tag set (see ``parse_tag_sets``) fits ``image``, and the best one."""
        return self._understanding.match(image, tag_sets, model=model)

    # ---- the collection as a whole ------------------------------------------------------------------------------
    def topics(
        self, n: int = 20, *, seed: int = 0, top_images: int = 8, model: str | Path | None = None
    ) -> TopicsResult:
        """``n`` topics of the collection, labelled in words by the joint space, or by ``model`` (a CLIP-family
        model the catalogue has a space for)."""
        return self._topics.topics(n, seed=seed, top_images=top_images, model=model)

    def topic_grids(self, result: TopicsResult, folder: str | Path, *, thumb: int = 192) -> list[Path]:
        """One contact sheet per topic of its typical images, written into ``folder``."""
        return self._topics.grids(result, folder, thumb=thumb)

    def status(self) -> StatusResult:
        return self._explore.status()

    def map_points(
        self, method: str = "tsne", topics: int = 8, seed: int = 0, *, model: str | Path | None = None
    ) -> MapResult:
        """The collection's 2-D map (by the image features, or by ``model``'s vectors: a CLIP-family model)."""
        return self._explore.map_points(method, topics, seed, model)

    def map_attributes(self, filter: ImageFilter | None = None) -> dict[str, Any]:
        """Each photo passing ``filter`` (catalogue order): path, folder relative to the collection, tags, date
        taken, camera and GPS position, as columns (what a map colours and filters its points by)."""
        return self._explore.attributes(filter)

    def neighbour_table(self, k: int = 8, *, model: str | Path | None = None) -> NeighbourTable:
        return self._explore.neighbour_table(k, model)

    def grid(
        self,
        result: SearchResult,
        out_path: str | Path,
        *,
        columns: int | None = None,
        thumb: int = 192,
        query_image: str | Path | None = None,
    ) -> Path:
        """Draw ``result`` as a contact sheet (rank, score and file name under each thumbnail), led by
        ``query_image`` marked as the query when given."""
        return self._explore.grid(result, out_path, columns=columns, thumb=thumb, query_image=query_image)

    def duplicates(
        self, threshold: float | None = None, filter: ImageFilter | None = None, *, model: str | Path | None = None
    ) -> DuplicatesResult:
        """Groups of copies (perceptual hash; the one to keep first) and of similar shots (stored image features at
        cosine ``threshold`` or above; default measured by bench/duplicates.py; or ``model``'s space, a CLIP-family
        model's, at Immich's default 0.99); see ``service.duplicates``."""
        from vistext.service.duplicates import find_duplicates

        space = None if model is None else self._collection.clip_model(model).space
        return find_duplicates(self._collection, threshold, self._collection.restrict(filter), space)
