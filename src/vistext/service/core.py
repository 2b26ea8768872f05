"""The one facade every surface calls: index, tag, search, similar, caption, match, topics, map, info.

``Service`` composes small parts, each owning its state: ``models`` (lazily loaded encoder and joint model,
cached taggers and match classifiers), ``collection`` (store, index, search, similar, images by id),
``understanding`` (tag, caption, match), ``topics`` (NMF topics) and ``explore`` (status, map, neighbours,
contact sheets). Nothing loads until used, so ``vistext info`` never loads a network and ``vistext tag``
never opens a database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.service.collection import Collection
from vistext.service.collection_topics import CollectionTopics
from vistext.service.explore import Explore
from vistext.service.inputs import ImageInput
from vistext.service.loaded_models import MODEL_CACHE_SIZE, LoadedModels
from vistext.service.queries import QueryBatcher
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
    from vistext.encoders import ImageEncoder, ImageFeatures
    from vistext.indexing.local import IndexReport
    from vistext.models.joint import JointModel
    from vistext.models.joint_onnx import OnnxJointModel
    from vistext.service.collection_tags import CollectionTagReport
    from vistext.service.listing import ListResult
    from vistext.store import ImageRecord, Store
    from vistext.store.records import ImageFilter


class Service:
    """vistext's operations over one collection (``db``) with lazily loaded models.

    ``db=None`` uses the default catalogue (see ``vistext.paths.default_db_path``); ``index(folder)`` with no
    explicit db writes to ``folder/.vistext/``. ``model_cache`` bounds how many trained taggers and match
    classifiers stay loaded. ``read_only``: the catalogue is opened read-only (reading commands: nothing is
    written, migrated or created; a file that is not a vistext catalogue is refused).
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
        self.models = LoadedModels(encoder, joint_model, model_cache)
        self.collection = Collection(db, self.models, progress=progress, read_only=read_only)
        self.understanding = Understanding(self.models, self.collection)
        self.collection_topics = CollectionTopics(self.collection, self.models)
        self.explore = Explore(self.collection, self.models, self.collection_topics)

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- models -------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> ImageEncoder:
        return self.models.encoder

    @property
    def joint(self) -> JointModel | OnnxJointModel:
        return self.models.joint

    @property
    def joint_key(self) -> str:
        return self.models.joint_key

    @property
    def joint_space(self) -> str:
        return self.models.joint_space

    @property
    def text_model_loaded(self) -> bool:
        """Whether the joint model is in memory, so ``search_later`` returns at once instead of loading it."""
        return self.models.joint_loaded

    def encode_images(self, images: Sequence[ImageInput], grid: bool = False) -> ImageFeatures:
        return self.models.encode_images(images, grid=grid)

    # ---- the collection -------------------------------------------------------------------------------------
    @property
    def progress(self) -> bool:
        return self.collection.progress

    @progress.setter
    def progress(self, value: bool) -> None:
        self.collection.progress = value

    @property
    def queries(self) -> QueryBatcher:
        return self.collection.queries

    def db_path(self, folder: str | Path | None = None) -> Path:
        return self.collection.db_path(folder)

    def store(self, create: bool = False, folder: str | Path | None = None) -> Store:
        return self.collection.store(create, folder)

    def index(
        self,
        folder: str | Path,
        *,
        text_search: bool = True,
        tagger: str | Path | None = None,
        engine: str = "local",
        address: str | None = None,
    ) -> IndexReport:
        """Incrementally index ``folder`` (new files added, changed re-encoded, deleted removed); with
        ``tagger``, store that trained tagger's tags of every photo too; ``engine="ray"`` runs on a Ray cluster
        at ``address`` and reads ``s3://`` URLs too."""
        return self.collection.index(folder, text_search=text_search, tagger=tagger, engine=engine, address=address)

    def info(self) -> InfoResult:
        return self.collection.info()

    def similar(
        self,
        image: ImageInput | int,
        k: int = 10,
        *,
        offset: int = 0,
        min_score: float | None = None,
        include_self: bool = False,
        filter: ImageFilter | None = None,
    ) -> SearchResult:
        """Indexed images closest to ``image`` (an indexed id or path, or any image file/upload), among those
        passing ``filter``; an indexed query image is left out of its own answer unless ``include_self``."""
        return self.collection.similar(
            image, k, offset=offset, min_score=min_score, include_self=include_self, filter=filter
        )

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        offset: int = 0,
        min_score: float | None = None,
        filter: ImageFilter | None = None,
    ) -> SearchResult:
        """Indexed images (passing ``filter``) that best match ``text`` in the joint image-text space."""
        return self.collection.search_later(text, k, offset=offset, min_score=min_score, filter=filter).result()

    def search_later(
        self,
        text: str,
        k: int = 10,
        *,
        offset: int = 0,
        min_score: float | None = None,
        filter: ImageFilter | None = None,
    ) -> Future[SearchResult]:
        """``search`` as a future: the query joins the next batch and the caller's thread is free meanwhile
        (the server awaits it). Loads the joint model on first use."""
        return self.collection.search_later(text, k, offset=offset, min_score=min_score, filter=filter)

    # ---- the collection as a list (metadata and collection tags) ---------------------------------------------
    def list_images(self, filter: ImageFilter | None = None, k: int = 50, offset: int = 0) -> ListResult:
        """Photos passing ``filter`` (catalogue order) with their metadata and tags, ``k`` from ``offset``."""
        return self.collection.list_images(filter, k, offset)

    def export_lines(self, filter: ImageFilter | None = None, format: str = "csv") -> Iterator[str]:
        """Every photo passing ``filter`` as ``csv`` or ``jsonl`` text, line by line."""
        return self.collection.export_lines(filter, format)

    def facets(self) -> dict[str, Any]:
        """Cameras, folders, date range, GPS count and tag counts: what the filters can choose from."""
        return self.collection.facets()

    def tag_counts(self) -> dict[str, int]:
        """Stored collection tag -> photos carrying it."""
        return self.collection.store().tag_counts()

    def tag_collection(self, tagger: str | Path) -> CollectionTagReport:
        """Store a trained tagger's tags (above its thresholds) of every indexed photo, from stored features."""
        return self.collection.tag_collection(tagger)

    def image_record(self, image_id: int) -> ImageRecord:
        return self.collection.image_record(image_id)

    def image_file(self, image_id: int) -> Path:
        return self.collection.image_file(image_id)

    def thumbnail(self, image_id: int, size: int = 256) -> bytes:
        return self.collection.thumbnail(image_id, size)

    # ---- single images ----------------------------------------------------------------------------------------
    def tag(
        self,
        images: Sequence[ImageInput],
        k: int = 5,
        *,
        model: str | Path | None = None,
        vocab: Sequence[str] | None = None,
        threshold: bool = False,
    ) -> list[TagResult]:
        """Top-k tags per image: ImageNet (default), a trained tagger (``model``) or open vocabulary (``vocab``)."""
        return self.understanding.tag(images, k, model=model, vocab=vocab, threshold=threshold)

    def caption(self, image: ImageInput, bank: str, k: int = 5) -> CaptionResult:
        return self.understanding.caption(image, bank, k)

    def match(
        self, image: ImageInput, tag_sets: Sequence[Sequence[str]], *, model: str | Path | None = None
    ) -> MatchResult:
        """How well each tag set (see ``parse_tag_sets``) fits ``image``, and the best one."""
        return self.understanding.match(image, tag_sets, model=model)

    # ---- the collection as a whole ------------------------------------------------------------------------------
    def topics(self, n: int = 20, *, seed: int = 0, top_images: int = 8) -> TopicsResult:
        return self.collection_topics.topics(n, seed=seed, top_images=top_images)

    def topic_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return self.collection_topics.topic_weights()

    def topic_grids(self, result: TopicsResult, folder: str | Path, *, thumb: int = 192) -> list[Path]:
        """One contact sheet per topic of its typical images, written into ``folder``."""
        return self.collection_topics.grids(result, folder, thumb=thumb)

    def status(self) -> StatusResult:
        return self.explore.status()

    def map_points(self, method: str = "tsne", topics: int = 8, seed: int = 0) -> MapResult:
        return self.explore.map_points(method, topics, seed)

    def neighbour_table(self, k: int = 8) -> NeighbourTable:
        return self.explore.neighbour_table(k)

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
        return self.explore.grid(result, out_path, columns=columns, thumb=thumb, query_image=query_image)

    def duplicates(self, threshold: float | None = None, filter: ImageFilter | None = None) -> DuplicatesResult:
        """Groups of copies (perceptual hash; the one to keep first) and of similar shots (stored image features at
        cosine ``threshold`` or above; default measured by bench/duplicates.py); see ``service.duplicates``."""
        from vistext.service.duplicates import find_duplicates

        return find_duplicates(self.collection, threshold, self.collection.restrict(filter))
