"""Topics of an indexed collection: NMF over each image's tag scores, cached beside the catalogue.

The tag scores are the bundled ImageNet classifier's probabilities, stored at indexing time, so topics never
re-read an image. Image-to-topic weights are kept (``topics-*.npz``) for maps and "more like this topic".
A topic's label says what the photos show rather than which ImageNet classes fired: the words (everyday words and
the default tag vocabulary, a few hundred short texts embedded once per fit) most relevant to the topic's images
in the fused text-search space, whose calibrated relevance holds on photos unlike the training data (a lamp, a
cup); in a catalogue without that space, the words closest to the mean stored joint (or CLIP) embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vistext.encoders.base import softmax
from vistext.errors import StoreError, UsageError, VistextError
from vistext.paths import atomic_path, atomic_write
from vistext.service.clip_spaces import PROMPTS, word_vectors
from vistext.service.collection import Collection
from vistext.service.loaded_models import LoadedModels
from vistext.service.results import TopicsResult

if TYPE_CHECKING:
    from vistext.models.clip import ClipModel
    from vistext.models.open_domain import OpenDomainModel

LABEL_WORDS = 3  # words in a topic's label
RELEVANCE_CHUNK = 4096  # images whose relevance to every label word is held at once (~8 MB for 250 words)
SUMMARY_VERSION = 3  # part of the cache key: bump when the cached summary changes (3: labels from the fused space)

log = logging.getLogger(__name__)


class CollectionTopics:
    """Topics of ``collection``, fitted on the ImageNet scores its images were indexed with."""

    def __init__(self, collection: Collection, models: LoadedModels) -> None:
        self.collection = collection
        self.models = models

    def _tag_matrix(self) -> tuple[list[int], np.ndarray, list[str], dict[int, str]]:
        """(ids, softmaxed ImageNet scores, class names, id -> file) of every indexed image with scores."""
        labels = list(self.models.encoder.labels or [])
        ids, rows, paths = [], [], {}
        for record in self.collection.store().records(status="ok"):
            if record.id is not None and record.logits is not None and len(record.logits) == len(labels):
                ids.append(int(record.id))
                rows.append(softmax(record.logits.astype(np.float64)))
                paths[int(record.id)] = str(record.path)
        if len(ids) < 2:
            raise UsageError(f"{self.collection.location}: topics need at least 2 indexed images, found {len(ids)}")
        return ids, np.stack(rows), labels, paths

    def topics(
        self, n: int = 20, *, seed: int = 0, top_images: int = 8, model: str | Path | None = None
    ) -> TopicsResult:
        """``n`` NMF topics of the collection: top words, most typical image ids, each image's dominant topic."""
        from vistext.analysis.topics import fit_topics, label_text

        if n < 1:
            raise UsageError(f"the number of topics must be at least 1, got {n}")
        clip = None if model is None else self.collection.clip_model(model)
        ids, matrix, labels, paths = self._tag_matrix()
        n = min(n, len(ids))
        # the stored spaces are part of the key: labels come from text-search embeddings once an index has them
        spaces = "+".join(sorted(self.collection.store().spaces()))
        labelled_by = "" if clip is None else clip.space
        settings = f"{n}:{seed}:{top_images}:v{SUMMARY_VERSION}:{spaces}:{labelled_by}".encode()
        key = hashlib.sha1(np.asarray(ids, dtype=np.int64).tobytes() + settings).hexdigest()[:16]
        folder = self.collection.location.cache_folder
        summary_file, weights_file = folder / f"topics-{key}.json", folder / f"topics-{key}.npz"
        if summary_file.is_file() and weights_file.is_file():
            return _with_paths(TopicsResult.from_dict(json.loads(summary_file.read_text(encoding="utf-8"))), paths)
        fitted = fit_topics(matrix, labels, n, seed=seed, ids=ids, top_images=top_images)
        dominant = fitted.image_topics()
        summary = fitted.to_dict()
        summary["image_topics"] = {str(i): int(t) for i, t in zip(ids, dominant.tolist(), strict=True)}
        described_topics = self._describe(ids, fitted.image_weights, clip)
        for topic, described in zip(summary["topics"], described_topics, strict=True):
            if described:
                topic["label"] = label_text([word for word, _ in described])
                topic["label_words"] = [{"word": word, "score": score} for word, score in described]
        try:  # only a cache: a read-only collection or a full disk still gets its topics
            for stale in folder.glob("topics-*.*"):
                stale.unlink(missing_ok=True)
            with atomic_path(weights_file) as tmp:
                np.savez_compressed(
                    tmp, ids=np.asarray(ids), weights=fitted.image_weights, components=fitted.components
                )
            atomic_write(summary_file, json.dumps(summary))
        except (OSError, StoreError) as error:
            log.warning("topics not cached: %s", error)
        return _with_paths(TopicsResult.from_dict(summary), paths)

    def _describe(
        self, ids: list[int], weights: np.ndarray, clip: ClipModel | None = None
    ) -> list[list[tuple[str, float]]]:
        """Each topic's best label words, from the images' stored text-search vectors weighted by their share in
        the topic; empty lists when the collection has no text-search embeddings (labels stay class names)."""
        from vistext.analysis.topics import EVERYDAY_WORDS, describe_topics, word_prompt

        empty: list[list[tuple[str, float]]] = [[] for _ in range(weights.shape[1])]
        store = self.collection.store()
        # a topic's images: those it dominates, weighted by their share in it (a broad topic's weight spread
        # thinly over every image would pull it to the collection's mean)
        dominant = weights.astype(np.float64)
        dominant = np.where(dominant == dominant.max(axis=1, keepdims=True), dominant, 0.0)
        try:
            fused = self.models.open_domain if clip is None else None
            if fused is not None and fused.space in store.spaces():
                return self._describe_by_relevance(fused, ids, dominant)
        except VistextError as error:
            log.warning("topic labels from ImageNet classes: %s", error)
            return empty
        try:
            space = self.models.joint_space if clip is None else clip.space
            if space not in store.spaces():
                log.info("topic labels: no %s embeddings in the index; labelled by ImageNet classes", space)
                return empty
            stored_ids, vectors = store.vectors(space)
            if clip is not None:
                words = word_vectors(clip, EVERYDAY_WORDS, PROMPTS[:1])  # one prompt: a thousand words
            else:
                words = self.models.joint.encode_text([word_prompt(w) for w in EVERYDAY_WORDS], corrected=False)
        except VistextError as error:
            log.warning("topic labels from ImageNet classes: %s", error)
            return empty
        row_of = {int(i): row for row, i in enumerate(np.asarray(stored_ids).tolist())}
        rows = [row_of.get(i, -1) for i in ids]
        have = np.asarray([r >= 0 for r in rows])
        if not have.any():
            return empty
        # stored vectors are hubness-corrected (two extra coordinates); their first d coordinates, renormalised,
        # are the plain embedding that compares with plain text embeddings
        plain = vectors[[r for r in rows if r >= 0], : words.shape[1]].astype(np.float64)
        plain /= np.maximum(np.linalg.norm(plain, axis=1, keepdims=True), 1e-12)
        return describe_topics(dominant[have].T @ plain, words, EVERYDAY_WORDS, k=LABEL_WORDS)

    def _describe_by_relevance(
        self, fused: OpenDomainModel, ids: list[int], dominant: np.ndarray
    ) -> list[list[tuple[str, float]]]:
        """Each topic's best label words: a word's fit is its mean calibrated relevance (``search``'s 0-1 score of
        "a photo of {word}") over the topic's images in the fused space, weighted by ``dominant``."""
        from vistext.analysis.topics import EVERYDAY_WORDS, best_words, word_prompt

        words = list(dict.fromkeys([*EVERYDAY_WORDS, *self.models.default_tags().words]))
        texts = fused.text_vectors([word_prompt(word) for word in words])
        stored_ids, vectors = self.collection.store().vectors(fused.space)
        row_of = {int(i): row for row, i in enumerate(np.asarray(stored_ids).tolist())}
        weighted = np.zeros((dominant.shape[1], len(words)))
        mass = np.zeros((dominant.shape[1], 1))
        for start in range(0, len(ids), RELEVANCE_CHUNK):  # a few thousand images at a time, whatever the size
            part = [(n, row_of[i]) for n, i in enumerate(ids[start : start + RELEVANCE_CHUNK], start) if i in row_of]
            if part:
                share = dominant[[n for n, _ in part]]
                relevance = fused.relevance(fused.scores(texts, vectors[[r for _, r in part]]), texts)
                weighted += share.T @ relevance.T
                mass += share.sum(axis=0)[:, None]
        if not mass.any():
            return [[] for _ in range(dominant.shape[1])]
        fit = np.divide(weighted, mass, out=np.zeros_like(weighted), where=mass > 0)
        unit = texts / np.maximum(np.linalg.norm(texts, axis=1, keepdims=True), 1e-12)
        return best_words(fit, unit @ unit.T, words, k=LABEL_WORDS)

    def grids(self, result: TopicsResult, folder: str | Path, *, thumb: int = 192) -> list[Path]:
        """One contact sheet per topic of its typical images (``folder/topic-00.png``...), titled by its label;
        returns the files written. Sheets left by an earlier run with more topics are removed."""
        from vistext.analysis.grid import SheetItem, render_contact_sheet

        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder}: --grid takes a folder for topics (one sheet per topic), not a file")
        written = []
        for topic in result.topics:
            items = [
                SheetItem(path, f"{rank}. #{image}", Path(path).name)
                for rank, (image, path) in enumerate(zip(topic.images, topic.paths, strict=True), start=1)
                if path
            ]
            if not items:
                continue
            title = f"topic {topic.topic} ({topic.weight:.1%}): {topic.label}"
            sheet = folder / f"topic-{topic.topic:02d}.png"
            written.append(render_contact_sheet(items, sheet, title=title, thumb=thumb))
        for stale in folder.glob("topic-*.png"):
            if stale not in written:
                stale.unlink(missing_ok=True)
        return written


def _with_paths(result: TopicsResult, paths: dict[int, str]) -> TopicsResult:
    """``result`` with each topic's typical images' files, read from the catalogue now (not from the cache)."""
    for topic in result.topics:
        topic.paths = [paths.get(int(image), "") for image in topic.images]
    return result
