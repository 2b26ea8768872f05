"""Understanding single images: tags (ImageNet, a trained tagger, or any words), captions, tag-set matching.

None of these needs an index; a caption for an already indexed image reuses its stored vector. Words are scored
with the shipped default (the joint model fused with the classifier's concept space, ``models.open_domain``) and
read on its 0-1 relevance scale, the same scale as search.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from vistext.encoders.base import softmax
from vistext.errors import ImageDecodeError, ModelError, UsageError
from vistext.evaluation.base import Evaluation
from vistext.service.clip_spaces import looks_like_clip, names_trained_model, rank_words, word_vectors
from vistext.service.collection import Collection
from vistext.service.inputs import ImageInput, decode, input_name
from vistext.service.loaded_models import LoadedModels, cosine_to_unit
from vistext.service.ordering import check_k
from vistext.service.results import (
    CaptionResult,
    MatchCandidate,
    MatchResult,
    ScoredCaption,
    ScoredTag,
    TagResult,
)

if TYPE_CHECKING:
    from vistext.models.clip import ClipModel

log = logging.getLogger(__name__)
# images decoded and scored at a time by ``tag``: the network runs on the whole chunk at once, and a batch of
# 3,000 photos held 24 GB of activations
TAG_CHUNK = 32


class Understanding:
    """Tagging, captioning and matching with ``models``; ``collection`` only supplies already indexed vectors."""

    def __init__(self, models: LoadedModels, collection: Collection) -> None:
        self.models = models
        self.collection = collection

    # ---- tags -------------------------------------------------------------------------------------------
    def tag(
        self,
        images: Iterable[ImageInput],
        k: int = 5,
        *,
        model: str | Path | None = None,
        vocab: Sequence[str] | None = None,
        threshold: bool = False,
    ) -> list[TagResult]:
        """Top-k tags per image: ImageNet (default), a trained tagger (``model``) or open vocabulary (``vocab``).

        An unreadable image gets a result with ``error`` set; the others are still tagged.
        """
        check_k(k)
        if model is not None and vocab is not None and names_trained_model(model):
            raise UsageError("give either a trained tagger model or a vocabulary, not both")
        results: list[TagResult] = []
        embedded: dict[tuple[str, ...], np.ndarray] = {}  # a vocabulary's word vectors, embedded once a call
        given = iter(images)  # any iterable (a folder's glob too), a chunk at a time: memory stays flat
        while chunk := list(islice(given, TAG_CHUNK)):
            results += self._tag_chunk(chunk, k, model, vocab, threshold, embedded)
        return results

    def _tag_chunk(
        self,
        images: Sequence[ImageInput],
        k: int,
        model: str | Path | None,
        vocab: Sequence[str] | None,
        threshold: bool,
        embedded: dict[tuple[str, ...], np.ndarray],
    ) -> list[TagResult]:
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
        if model is not None and vocab is not None:  # a CLIP-family model scores the words
            scored = self._tags_from_clip(pictures, model, vocab, k, embedded)
        elif model is not None:
            if not names_trained_model(model) and looks_like_clip(model):
                raise UsageError(f"{model}: a CLIP-family model tags with your words: give them with --vocab")
            scored = self._tags_from_model(pictures, model, k, threshold)
        elif vocab is not None:
            scored = self._tags_from_vocabulary(pictures, vocab, k, embedded)
        else:
            scored = self._tags_from_imagenet(pictures, k)
        for (position, _), tags in zip(readable, scored, strict=True):
            results[position].tags = tags
        return results

    def _tags_from_imagenet(self, pictures: Sequence[Image.Image], k: int) -> list[list[ScoredTag]]:
        labels = self.models.encoder.labels or []
        logits = self.models.features(pictures).logits
        if logits is None:
            raise ModelError(
                f"image encoder {self.models.encoder_name!r} has no classifier: give a tagger or a vocabulary"
            )
        probs = softmax(logits)
        return [[ScoredTag(labels[i], round(float(row[i]), 6)) for i in np.argsort(-row)[:k]] for row in probs]

    def _tags_from_vocabulary(
        self,
        pictures: Sequence[Image.Image],
        vocab: Sequence[str],
        k: int,
        embedded: dict[tuple[str, ...], np.ndarray],
    ) -> list[list[ScoredTag]]:
        """``embedded``: the fused vectors of word lists already embedded in this call (MiniLM over every
        prompt of every word, ~90 ms for six words), filled here."""
        words = list(dict.fromkeys(w.strip() for w in vocab if w.strip()))
        if not words:
            raise UsageError("the tag vocabulary is empty")
        top_k = min(k, len(words))
        fused = self.models.open_domain
        if fused is not None:
            # each word's 0-1 relevance calibrated over the vocabulary jointly: a word far below the photo's best
            # other word is not read as likely too (mutually exclusive scene words), two words alike keep theirs
            features = self.models.features(pictures, grid=self.models.words_need_grid)
            images = fused.tag_image_vectors(features)
            relevance = people_relevance(words, features.pooled)  # people words: the person head, if it reads them
            scored = np.flatnonzero(np.isnan(relevance[0])) if len(relevance) else np.arange(len(words))
            if len(scored):  # the other words compete with each other only: people go with anything
                competing = tuple(words[i] for i in scored)
                if competing not in embedded:
                    embedded[competing] = fused.tag_vectors(competing, vocabulary=True)
                relevance[:, scored] = fused.vocabulary_relevance(fused.scores(embedded[competing], images)).T
            return [
                [ScoredTag(words[i], round(float(row[i]), 6)) for i in np.argsort(-row, kind="stable")[:top_k]]
                for row in relevance
            ]
        joint = self.models.joint
        # plain cosines, not hubness-corrected ones: the correction's per-text penalty is for searching a
        # collection, and when texts compete for one image it lifts words no training photo resembles
        # ("pizza" over "dog" for a photo of dogs). Caption-like prompts ("a dog") suit a caption-trained model.
        # Measured on 300 Flickr8k caption tags: top-1 tag right 32.7% -> 39.4%, per-image mAP 0.211 -> 0.240.
        text = joint.encode_text([tag_prompt(w) for w in words], corrected=False)
        features = self.models.features(pictures, grid=joint.needs_grid)
        sims = joint.encode_images(features, corrected=False) @ text.T
        probs = softmax(sims * joint.plain_logit_scale)
        return [[ScoredTag(words[i], round(float(row[i]), 6)) for i in np.argsort(-row)[:top_k]] for row in probs]

    def _clip(self, model: str | Path) -> ClipModel:
        """The CLIP-family model ``model`` names (a name the catalogue recorded, or any model folder): commands on
        single photos need no space in the catalogue."""
        return self.models.clips.resolve(model, self.collection.store() if self.collection.exists() else None)

    def _tags_from_clip(
        self,
        pictures: Sequence[Image.Image],
        model: str | Path,
        vocab: Sequence[str],
        k: int,
        embedded: dict[tuple[str, ...], np.ndarray],
    ) -> list[list[ScoredTag]]:
        """``embedded``: the words' vectors once embedded in this call, filled here (as ``_tags_from_vocabulary``)."""
        words = list(dict.fromkeys(w.strip() for w in vocab if w.strip()))
        if not words:
            raise UsageError("the tag vocabulary is empty")
        clip = self._clip(model)
        if tuple(words) not in embedded:
            embedded[tuple(words)] = word_vectors(clip, words)
        ranked = rank_words(clip.encode_images(pictures), embedded[tuple(words)], words, min(k, len(words)))
        return [[ScoredTag(word, round(score, 6)) for word, score in row] for row in ranked]

    def _tags_from_model(
        self, pictures: Sequence[Image.Image], model: str | Path, k: int, threshold: bool
    ) -> list[list[ScoredTag]]:
        tagger = self.models.tagger(model)
        predictions = tagger.predict_images(pictures, encoder=self.models.encoder, k=k, threshold=threshold)
        return [[ScoredTag(tag, round(float(score), 6)) for tag, score in pred] for pred in predictions]

    # ---- captions -----------------------------------------------------------------------------------------
    def caption(
        self, image: ImageInput, bank: str | None = None, k: int = 5, *, model: str | Path | None = None
    ) -> CaptionResult:
        """The ``k`` captions of ``bank`` (FORMAT:PATH or a text file) closest to ``image`` in the joint space,
        or in the space of ``model`` (a CLIP-family model; its cosines); with no bank the ``k`` best captions
        composed from what the bundled models know (``models.captioner``)."""
        from vistext.service.captions import load_caption_bank

        check_k(k)
        if bank is None:
            if model is not None:
                raise UsageError(
                    f"captions with model {model} need a caption bank to rank (--captions); without one, captions "
                    "are composed by the bundled models (leave out --model)"
                )
            return self._composed_captions(image, k)
        if model is not None:
            return self._caption_with_clip(image, bank, k, model)
        fused = self.models.open_domain
        if fused is None:
            captions = load_caption_bank(bank, self.models.joint, self.models.joint_key)
        else:
            captions = load_caption_bank(bank, fused.text_vectors, fused.space)
        space = self.models.text_space
        vector = None
        if self.collection.exists():
            vector = self.collection.indexed_vector(image, space)
        if vector is None:
            vector = self._image_vector(image)
        if fused is None:
            scores = cosine_to_unit(captions.vectors @ vector)
        else:
            scores = fused.relevance(fused.scores(captions.vectors, vector[None, :])[:, 0], captions.vectors)
        top = np.argsort(-scores, kind="stable")[:k]
        found = [ScoredCaption(captions.texts[i], float(scores[i])) for i in top]
        return CaptionResult(input_name(image), found, source="bank")

    def _composed_captions(self, image: ImageInput, k: int) -> CaptionResult:
        composer = self.models.caption_composer
        if composer is None:
            raise ModelError(
                f"joint model {self.models.joint.name!r} cannot compose captions (it has no fused space): "
                "give a caption bank (--captions)"
            )
        [composed] = composer.compose(self.models.encode_images([image], grid=self.models.words_need_grid), k)
        found = [ScoredCaption(caption.text, caption.score) for caption in composed]
        return CaptionResult(input_name(image), found, source="composed")

    def _caption_with_clip(self, image: ImageInput, bank: str, k: int, model: str | Path) -> CaptionResult:
        from vistext.service.captions import load_caption_bank

        clip = self._clip(model)
        captions = load_caption_bank(bank, clip.encode_texts, clip.space)
        vector = self.collection.indexed_vector(image, clip.space) if self.collection.exists() else None
        if vector is None:
            vector = clip.encode_images([decode(image)])[0]
        scores = captions.vectors @ vector
        top = np.argsort(-scores, kind="stable")[:k]
        return CaptionResult(input_name(image), [ScoredCaption(captions.texts[i], float(scores[i])) for i in top])

    def _image_vector(self, image: ImageInput) -> np.ndarray:
        """``image`` in the text space (``LoadedModels.text_space``), encoded from its pixels."""
        fused = self.models.open_domain
        if fused is None:
            return self.models.joint_image_vector(image)
        return fused.project(self.models.encode_images([image], grid=self.models.words_need_grid))[0]

    # ---- matching tag sets ----------------------------------------------------------------------------------
    def match(
        self, image: ImageInput, tag_sets: Sequence[Sequence[str]], *, model: str | Path | None = None
    ) -> MatchResult:
        """How well each tag set fits ``image``, and the best one. Parse typed text with ``parse_tag_sets``.

        ``model``: None or ``"matcher"`` for the shipped match classifier, or a match classifier directory
        (probabilities); ``"fused"`` for the open-domain default (each set phrased as a tag, its 0-1 tag relevance);
        ``"joint"`` for the joint model's cosine similarity c (shown as (c + 1) / 2); a CLIP-family model's folder
        or name for its cosine between the photo and each set phrased as a prompt ensemble. The default is the fused
        space when it is installed (the classifier otherwise): in ``bench/matching.py``'s two-choice test the two
        tie on Flickr8k (the classifier's own training data), and on everyday photos (opendomain-classes) the
        classifier is near chance where the fused space is right 9 times in 10.
        """
        sets = [[tag.strip() for tag in tags if tag.strip()] for tags in tag_sets]
        if not sets or any(not tags for tags in sets):
            raise UsageError("give at least one non-empty tag set")
        if model is None:
            model = "fused" if self.models.open_domain is not None else "matcher"
        method, scores = self._match_scores(image, sets, model)
        best = int(np.argmax(scores))
        candidates = [MatchCandidate(tags, float(score)) for tags, score in zip(sets, scores, strict=True)]
        return MatchResult(input_name(image), candidates, best, method)

    def _match_scores(
        self, image: ImageInput, sets: list[list[str]], model: str | Path | None
    ) -> tuple[str, np.ndarray]:
        if model not in (None, "joint", "fused", "matcher") and not names_trained_model(model):
            clip = self._clip(model)
            words = [", ".join(tags) for tags in sets]
            image_vector = clip.encode_images([decode(image)])
            cosines = rank_words(image_vector, word_vectors(clip, words), words, len(words))[0]
            by_set = dict(cosines)
            return "clip", np.asarray([by_set[w] for w in words], dtype=np.float32)
        if model not in ("joint", "fused"):
            try:
                matcher = self.models.matcher(None if model == "matcher" else model)
            except ModelError:
                if model != "matcher":
                    raise
                log.info("no shipped match classifier; scoring tag sets in the fused space")
            else:
                return "matcher", matcher.score(self.models.encode_images([image]).pooled[0], sets)
        fused = self.models.open_domain if model != "joint" else None
        if fused is not None:
            # several sets compete for one photo, as tag words do: scored like open-vocabulary tags
            images = fused.tag_image_vectors(self.models.encode_images([image], grid=self.models.words_need_grid))
            texts = fused.tag_vectors([" ".join(tags) for tags in sets])
            return "fused", fused.tag_relevance(fused.scores(texts, images)[:, 0])
        vector = self.models.joint_image_vector(image)
        cosines = self.models.joint.encode_text([" ".join(tags) for tags in sets]) @ vector
        return "joint", cosine_to_unit(cosines)

    # ---- open-domain evaluation -----------------------------------------------------------------------------
    def evaluate_classes(self, spec: str, split: str = "test", template: str = "a photo of a {}") -> Evaluation:
        """Zero-shot top-1/top-5 and text-search P@10/mAP of the shipped default on ``classes:DIR``."""
        from vistext.evaluation.opendomain import evaluate_classes

        fused = self.models.open_domain
        if fused is None:
            raise ModelError(f"joint model {self.models.joint.name!r} has no open-domain (fused) space to evaluate")
        return evaluate_classes(fused, spec, split, template, progress=self.collection.progress)


def tag_prompt(word: str) -> str:
    """A tag as the joint model's captions phrase it: "dog" -> "a dog" (phrases with an article stay)."""
    return word if word.lower().startswith(("a ", "an ", "the ")) else f"a {word}"


def people_relevance(words: Sequence[str], pooled: np.ndarray) -> np.ndarray:
    """(photos, words): the person head's chance (as search reads it) in the columns of words that ask only for
    people ("people", "a person": ``query_syntax.PEOPLE_TERMS``), NaN in the others, and everywhere when the head
    cannot read these ``pooled`` features."""
    from vistext.models.presence import CHANCE_RANGE, shipped_presence
    from vistext.service.query_syntax import names_people

    out = np.full((len(pooled), len(words)), np.nan)
    columns = [i for i, word in enumerate(words) if names_people(word)]
    head = shipped_presence() if columns else None
    if head is not None and head.fits(np.shape(pooled)[-1]):
        out[:, columns] = np.clip(head.probability(pooled), *CHANCE_RANGE)[:, None]
    return out
