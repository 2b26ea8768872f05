"""The one facade every surface calls: index, tag, search, similar, caption, match, topics, info.

Models and the store load lazily on first use, so ``vistext info`` never loads a network and ``vistext tag``
never opens a database.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vistext.encoders import ImageEncoder, ImageFeatures, create_image_encoder
from vistext.encoders.base import softmax
from vistext.errors import ImageDecodeError, StoreError, UsageError
from vistext.paths import default_db_path
from vistext.service.explore import ExploreMixin, UnknownImageError
from vistext.service.inputs import ImageInput, Upload, decode, input_name
from vistext.service.queries import Query, QueryBatcher
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
from vistext.service.topics import TopicsMixin

if TYPE_CHECKING:
    from vistext.indexing.local import IndexReport
    from vistext.models.joint import JointModel
    from vistext.models.joint_onnx import OnnxJointModel
    from vistext.store import Store
    from vistext.store.records import Hit as StoreHit

log = logging.getLogger(__name__)

MAX_K = 1000


def _check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise UsageError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _then(
    future: Future[list[StoreHit]],
    page: Callable[[list[StoreHit]], SearchResult],
    explain: Callable[[BaseException], BaseException],
) -> Future[SearchResult]:
    """A future of ``page(hits)`` (or of ``explain(error)``), resolved in the batch worker's thread."""
    result: Future[SearchResult] = Future()

    def done(source: Future[list[StoreHit]]) -> None:
        error = source.exception()
        try:
            if error is not None:
                raise explain(error)
            result.set_result(page(source.result()))
        except BaseException as failure:  # noqa: BLE001 - handed to whoever waits on the result
            result.set_exception(failure)

    future.add_done_callback(done)
    return result


class Service(TopicsMixin, ExploreMixin):
    """vistext's operations over one collection (``db``) with lazily loaded models.

    ``db=None`` uses the default catalogue (see ``vistext.paths.default_db_path``); ``index(folder)`` with no
    explicit db writes to ``folder/.vistext/``.
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        encoder: str = "efficientnet-lite0",
        joint_model: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        self._db = db
        self._encoder_name = encoder
        self._joint_path = joint_model
        self.progress = progress
        self._store: Store | None = None

    # ---- lazily built parts -------------------------------------------------------------------------------
    @cached_property
    def encoder(self) -> ImageEncoder:
        return create_image_encoder(self._encoder_name)

    @cached_property
    def joint(self) -> JointModel | OnnxJointModel:
        # ONNX Runtime when the model exports (once, then cached): queries never import torch
        from vistext.models.joint_onnx import load_query_model

        return load_query_model(self._joint_path)

    @cached_property
    def joint_key(self) -> str:
        """The joint model's name plus a fingerprint of its model card: a retrained model under the same name
        gets new index and cache entries instead of silently mixing with the old model's vectors."""
        card = getattr(self.joint, "metadata", None) or self.joint.config
        digest = hashlib.sha1(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.joint.name}@{digest}"

    @property
    def text_model_loaded(self) -> bool:
        """Whether the joint model is in memory, so ``search_later`` returns at once instead of loading it."""
        return "joint" in self.__dict__

    @property
    def joint_space(self) -> str:
        return f"joint:{self.joint_key}"

    def db_path(self, folder: str | Path | None = None) -> Path:
        if self._db is not None:
            text = str(self._db)
            return Path(text.split("://", 1)[1]) if "://" in text else Path(text)
        return default_db_path(folder)

    def store(self, create: bool = False, folder: str | Path | None = None) -> Store:
        """The collection's store; without ``create`` a missing catalogue is an error, not an empty index."""
        if self._store is None:
            from vistext.store import open_store

            path = self.db_path(folder)
            if not create and not path.exists():
                raise StoreError(f"{path}: no index here yet; run `vistext index DIR` first (or pass --db)")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._store = open_store(str(self._db) if self._db is not None else path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- encoding ---------------------------------------------------------------------------------------
    def encode_images(self, images: Sequence[ImageInput], grid: bool = False) -> ImageFeatures:
        batch = np.stack([self.encoder.preprocess(decode(image)) for image in images])
        return self.encoder.encode(batch, grid=grid)

    def _joint_projector(self) -> Any:
        joint = self.joint

        def project(features: ImageFeatures) -> np.ndarray:
            return joint.encode_images(features)

        project.needs_grid = joint.needs_grid  # type: ignore[attr-defined]
        return project

    # ---- collection ---------------------------------------------------------------------------------------
    def index(self, folder: str | Path, *, text_search: bool = True) -> IndexReport:
        """Incrementally index ``folder`` (new files added, changed re-encoded, deleted removed)."""
        from vistext.indexing.local import index_folder

        folder = Path(folder)
        if not folder.is_dir():
            raise UsageError(f"{folder}: not a folder")
        projectors = {self.joint_space: self._joint_projector()} if text_search else None
        store = self.store(create=True, folder=folder)
        return index_folder(folder, store, self.encoder, projectors=projectors, progress=self.progress)

    def info(self) -> dict[str, Any]:
        path = self.db_path()
        if not path.exists():
            return {"db": str(path), "exists": False}
        info = {"db": str(path), "exists": True}
        info.update(self.store().info())
        return info

    def _indexed_vector(self, image: ImageInput | int, space: str) -> np.ndarray | None:
        """The stored vector of an already indexed image (by id or path), so a query never re-reads it."""
        from vistext.store.records import l2_normalise  # here, not at the top: importing the store loads FAISS

        if isinstance(image, Upload):
            return None
        key: int | str = image if isinstance(image, int) else str(Path(image).resolve())
        record = self.store().get(key)
        if record is None or record.status != "ok":
            if isinstance(image, int):
                raise UnknownImageError(f"no indexed image with id {image}")
            return None
        if space == "image":
            return None if record.pooled is None else l2_normalise(record.pooled)
        vector = record.embeddings.get(space)
        return None if vector is None else l2_normalise(vector)

    @cached_property
    def queries(self) -> QueryBatcher:
        """Cached query-text embeddings and batched searches (concurrent callers share one pass)."""
        # the joint model loads on the first text to embed: ``similar`` alone never needs it
        return QueryBatcher(self.store, lambda texts: self.joint.encode_text(texts))

    def _page(self, query: str, search: Query, k: int, offset: int, min_score: float | None) -> SearchResult:
        return self._page_later(query, search, k, offset, min_score).result()

    def _page_later(
        self, query: str, search: Query, k: int, offset: int, min_score: float | None
    ) -> Future[SearchResult]:
        _check_k(k)
        if offset < 0:
            raise UsageError(f"offset must be >= 0, got {offset}")

        def page(hits: list[StoreHit]) -> SearchResult:
            if min_score is not None:
                hits = [h for h in hits if h.score >= min_score]
            results = [Hit(path=h.path, score=float(h.score), id=h.id) for h in hits[offset : offset + k]]
            return SearchResult(query=query, results=results, offset=offset, total=len(hits))

        return _then(self.queries.submit(search), page, lambda error: self._explain_store_error(error, search))

    def similar(
        self, image: ImageInput | int, k: int = 10, *, offset: int = 0, min_score: float | None = None
    ) -> SearchResult:
        """Indexed images closest to ``image`` (an indexed id or path, or any image file/upload)."""
        vector = self._indexed_vector(image, "image")
        if vector is None:
            from vistext.store.records import l2_normalise

            if isinstance(image, int):
                raise UsageError(f"indexed image {image} has no features")
            vector = l2_normalise(self.encode_images([image]).pooled)[0]
        name = f"#{image}" if isinstance(image, int) else input_name(image)
        return self._page(name, Query("image", k + offset, vector=vector), k, offset, min_score)

    def search(self, text: str, k: int = 10, *, offset: int = 0, min_score: float | None = None) -> SearchResult:
        """Indexed images that best match ``text`` in the joint image–text space."""
        return self.search_later(text, k, offset=offset, min_score=min_score).result()

    def search_later(
        self, text: str, k: int = 10, *, offset: int = 0, min_score: float | None = None
    ) -> Future[SearchResult]:
        """``search`` as a future: the query joins the next batch and the caller's thread is free meanwhile
        (the server awaits it). Loads the joint model on first use."""
        if not text.strip():
            raise UsageError("the search text is empty")
        return self._page_later(text, Query(self.joint_space, k + offset, text=text), k, offset, min_score)

    def _explain_store_error(self, error: BaseException, search: Query) -> BaseException:
        # checked only on failure: a busy server must not pay a catalogue query per search
        if isinstance(error, StoreError) and search.text is not None and search.space not in self.store().spaces():
            return StoreError(
                f"{self.db_path()}: this index has no text-search embeddings for model {self.joint.name!r}; "
                "re-run `vistext index DIR` to add them"
            )
        return error

    # ---- understanding single images ------------------------------------------------------------------------
    def tag(
        self,
        images: Sequence[ImageInput],
        k: int = 5,
        *,
        model: str | Path | None = None,
        vocab: Sequence[str] | None = None,
        threshold: bool = False,
    ) -> list[TagResult]:
        """Top-k tags per image: ImageNet (default), a trained tagger (``model``) or open vocabulary (``vocab``).

        An unreadable image gets a result with ``error`` set; the others are still tagged.
        """
        _check_k(k)
        if model is not None and vocab is not None:
            raise UsageError("give either a trained tagger model or a vocabulary, not both")
        results: list[TagResult] = []
        readable: list[tuple[int, Image.Image]] = []
        for position, image in enumerate(images):
            results.append(TagResult(input_name(image), []))
            try:
                readable.append((position, decode(image)))
            except ImageDecodeError as error:
                results[-1].error = str(error)
        if not readable:
            return results
        pictures = [picture for _, picture in readable]
        if model is not None:
            scored = self._tags_from_model(pictures, model, k, threshold)
        elif vocab is not None:
            scored = self._tags_from_vocabulary(pictures, vocab, k)
        else:
            scored = self._tags_from_imagenet(pictures, k)
        for (position, _), tags in zip(readable, scored, strict=True):
            results[position].tags = tags
        return results

    def _features(self, pictures: Sequence[Image.Image], grid: bool = False) -> ImageFeatures:
        return self.encoder.encode(np.stack([self.encoder.preprocess(p) for p in pictures]), grid=grid)

    def _tags_from_imagenet(self, pictures: Sequence[Image.Image], k: int) -> list[list[ScoredTag]]:
        labels = self.encoder.labels or []
        probs = softmax(self._features(pictures).logits)
        return [[ScoredTag(labels[i], round(float(row[i]), 6)) for i in np.argsort(-row)[:k]] for row in probs]

    def _tags_from_vocabulary(
        self, pictures: Sequence[Image.Image], vocab: Sequence[str], k: int
    ) -> list[list[ScoredTag]]:
        words = list(dict.fromkeys(w.strip() for w in vocab if w.strip()))
        if not words:
            raise UsageError("the tag vocabulary is empty")
        # plain cosines, not hubness-corrected ones: the correction's per-text penalty is for searching a
        # collection, and when texts compete for one image it lifts words no training photo resembles
        # ("pizza" over "dog" for a photo of dogs). Caption-like prompts ("a dog") suit a caption-trained model.
        # Measured on 300 Flickr8k caption tags: top-1 tag right 32.7% -> 39.4%, per-image mAP 0.211 -> 0.240.
        text = self.joint.encode_text([_tag_prompt(w) for w in words], corrected=False)
        features = self._features(pictures, grid=self.joint.needs_grid)
        sims = self.joint.encode_images(features, corrected=False) @ text.T
        probs = softmax(sims * self.joint.plain_logit_scale)
        top_k = min(k, len(words))
        return [[ScoredTag(words[i], round(float(row[i]), 6)) for i in np.argsort(-row)[:top_k]] for row in probs]

    def _tags_from_model(
        self, pictures: Sequence[Image.Image], model: str | Path, k: int, threshold: bool
    ) -> list[list[ScoredTag]]:
        from vistext.models.tagger import load_tagger

        tagger = load_tagger(model)
        predictions = tagger.predict_images(pictures, encoder=self.encoder, k=k, threshold=threshold)
        return [[ScoredTag(tag, round(float(score), 6)) for tag, score in pred] for pred in predictions]

    def caption(self, image: ImageInput, bank: str, k: int = 5) -> CaptionResult:
        """The ``k`` captions of ``bank`` (FORMAT:PATH or a text file) closest to ``image`` in the joint space."""
        from vistext.service.captions import load_caption_bank

        _check_k(k)
        captions = load_caption_bank(bank, self.joint, self.joint_key)
        vector = self._indexed_vector(image, self.joint_space) if self._has_store() else None
        if vector is None:
            vector = self.joint.encode_images(self.encode_images([image], grid=self.joint.needs_grid))[0]
        scores = captions.vectors @ vector
        top = np.argsort(-scores)[:k]
        return CaptionResult(input_name(image), [ScoredCaption(captions.texts[i], float(scores[i])) for i in top])

    def _has_store(self) -> bool:
        return self._store is not None or self.db_path().exists()

    def match(
        self, image: ImageInput, tag_sets: Sequence[Sequence[str]], *, model: str | Path | None = None
    ) -> MatchResult:
        """How well each tag set fits ``image``, and the best one.

        ``model``: a match classifier directory (scores are probabilities), ``"joint"`` for the joint model's
        cosine similarity, or None for the shipped match classifier (falling back to the joint model).
        """
        sets = [[tag.strip() for tag in tags if tag.strip()] for tags in tag_sets]
        if not sets or any(not tags for tags in sets):
            raise UsageError("give at least one non-empty tag set")
        method, scores = self._match_scores(image, sets, model)
        best = int(np.argmax(scores))
        candidates = [MatchCandidate(tags, float(score)) for tags, score in zip(sets, scores, strict=True)]
        return MatchResult(input_name(image), candidates, best, method)

    def _match_scores(
        self, image: ImageInput, sets: list[list[str]], model: str | Path | None
    ) -> tuple[str, np.ndarray]:
        if model != "joint":
            from vistext.errors import ModelError
            from vistext.models.matcher_numpy import load_numpy_matcher  # MatchModel.score without torch

            try:
                matcher = load_numpy_matcher(model)
            except ModelError:
                if model is not None:
                    raise
                log.info("no shipped match classifier; scoring tag sets with the joint model")
            else:
                return "matcher", matcher.score(self.encode_images([image]).pooled[0], sets)
        vector = self.joint.encode_images(self.encode_images([image], grid=self.joint.needs_grid))[0]
        return "joint", self.joint.encode_text([" ".join(tags) for tags in sets]) @ vector


def _tag_prompt(word: str) -> str:
    """A tag as the joint model's captions phrase it: "dog" -> "a dog" (phrases with an article stay)."""
    return word if word.lower().startswith(("a ", "an ", "the ")) else f"a {word}"
