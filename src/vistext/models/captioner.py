"""Captions composed from what the shipped models know, for when no caption bank is given.

No dataset is involved: sentences are built from ``caption_words`` (everyday subjects, actions, scenes) and the
image classifier's own class names, and ranked with the fused image-text space (``open_domain``). The steps, for
one photo:

1. subjects: the vocabulary's subject words scored as tags (as ``tag --vocab``); the few best are kept;
2. each subject is named as one or several ("a dog", "two dogs"), and each naming is scored as a sentence;
3. details: every action that fits the kind of subject and every scene is tried after the best naming; a detail
   is kept only when the longer sentence scores higher than the naming alone (the few best of those);
4. the kept details are combined ("a dog running in the snow") and scored; the classifier's confident classes
   ("a strawberry") are candidates too, except those a subject names in everyday words (dog breeds), and so are
   the photo's confident default tags that name one thing the subjects do not ("a cup": the tags gather the
   evidence of many classes, where a teacup's "cup" class alone may be unsure);
5. a sentence's score is the chance its subject is there (the subject's tag relevance, the class's
   probability, or the default tag's score) times the sentence's calibrated relevance (the 0-1 scale of search
   and bank captions); the best ``k`` are returned, and one scored below ``SURE`` reads "probably ...".

So a detail the models are unsure of is left out rather than made up, and a score says how well the sentence
fits. The models were trained on Flickr8k captions and ImageNet classes: what neither covers cannot be named.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vistext.encoders.base import ImageFeatures, softmax
from vistext.errors import ModelError
from vistext.models.caption_words import ACTIONS, NAMED_BY_SUBJECT, NOT_ONE_THING, SCENES, SUBJECTS, Subject

if TYPE_CHECKING:
    from vistext.models.default_tags import DefaultTagVocabulary
    from vistext.models.open_domain import OpenDomainModel

SUBJECT_TOP = 3  # subjects tried per photo
SUBJECT_FLOOR = 0.3  # tag relevance a subject needs beyond the best one
DETAIL_TOP = 3  # actions (and scenes) kept per subject
RUNNER_UP_SHARE = 0.5  # a caption scoring under half the best one's is left out: it guesses more than it sees
LABEL_FLOOR = 0.3  # classifier probability a class name needs to be a candidate
TAG_TOP = 2  # default tags tried per photo (those at or above the vocabulary's threshold)
SURE = 0.5  # score below which a caption reads "probably ..."
HEDGE = "probably "
CACHE_SIZE = 50_000  # sentence vectors kept (the vocabulary's pairs are ~6,000)


@dataclass(frozen=True)
class ComposedCaption:
    text: str  # hedged: "probably ..." below SURE
    score: float  # 0-1: the subject's chance of being there times the sentence's calibrated relevance


class CaptionComposer:
    """Composes and ranks captions for photos with the fused space ``fused``, the classifier's ``labels`` and,
    when given, the default tag vocabulary ``tags``."""

    def __init__(self, fused: OpenDomainModel, labels: Sequence[str], tags: DefaultTagVocabulary | None = None) -> None:
        self.fused = fused
        self.labels = list(labels)
        self.tags = tags
        subject_words = {subject.word for subject in SUBJECTS}
        self._tag_words = [] if tags is None else [
            n for n, word in enumerate(tags.words) if word not in subject_words and word not in NOT_ONE_THING
        ]  # fmt: skip
        self._subject_vectors = fused.tag_vectors([subject.word for subject in SUBJECTS])
        self._named = {index for classes in NAMED_BY_SUBJECT.values() for index in classes}
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def compose(self, features: ImageFeatures, k: int = 5) -> list[list[ComposedCaption]]:
        """The ``k`` best composed captions of each photo whose encoder ``features`` (with logits) are given."""
        if features.logits is None:
            raise ModelError("composing captions needs the image classifier's logits")
        images = self.fused.project(features)
        tag_images = self.fused.tag_image_vectors(features)
        subjects = self.fused.tag_relevance(self.fused.scores(self._subject_vectors, tag_images)).T
        tagged = self.tags.scores(features.logits) if self.tags is not None else np.zeros((len(images), 0))
        out = []
        for image, relevance, prob, tag_scores in zip(images, subjects, softmax(features.logits), tagged, strict=True):
            scored = self._thing_candidates(image, prob, tag_scores)
            for index in _top(relevance, SUBJECT_TOP, SUBJECT_FLOOR):
                sentences = self._subject_candidates(image, SUBJECTS[index])
                for text, score in sentences.items():  # a sentence two ways ("a ball") keeps its best score
                    scored[text] = max(scored.get(text, 0.0), score * float(relevance[index]))
            ranked = sorted(scored.items(), key=lambda item: -item[1])[:k]
            ranked = [item for item in ranked if item[1] >= RUNNER_UP_SHARE * ranked[0][1]]  # fewer, not invented
            out.append([ComposedCaption(hedged(text, score), score) for text, score in ranked])
        return out

    def _subject_candidates(self, image: np.ndarray, subject: Subject) -> dict[str, float]:
        namings = [subject.one] + ([subject.many] if subject.many else [])
        scores = self._score(image, namings)
        best = max(namings, key=scores.__getitem__)
        actions = [action.phrase for action in ACTIONS if subject.kind in action.kinds]
        kept_actions = self._better_details(image, best, scores[best], actions, scores)
        kept_scenes = self._better_details(image, best, scores[best], SCENES, scores)
        longer = [f"{naming} {detail}" for naming in namings for detail in kept_actions + kept_scenes]
        longer += [
            f"{naming} {action} {scene}" for naming in namings for action in kept_actions for scene in kept_scenes
        ]
        scores.update(self._score(image, longer))
        return scores

    def _better_details(
        self, image: np.ndarray, naming: str, base: float, details: Sequence[str], scores: dict[str, float]
    ) -> list[str]:
        """The best few ``details`` whose sentence after ``naming`` scores above ``base``; adds those scores."""
        sentences = self._score(image, [f"{naming} {detail}" for detail in details])
        scores.update(sentences)
        gains = np.array([sentences[f"{naming} {detail}"] - base for detail in details])
        return [details[i] for i in np.argsort(-gains, kind="stable")[:DETAIL_TOP] if gains[i] > 0]

    def _thing_candidates(self, image: np.ndarray, prob: np.ndarray, tag_scores: np.ndarray) -> dict[str, float]:
        """Things named alone ("a strawberry", "a cup"), each scored by the sentence's relevance times the chance it
        is there: the class's probability or the tag's score, the higher where both name it. One pass of the text
        model for both kinds."""
        chances: dict[str, float] = {}
        for text, chance in [*self._label_names(prob), *self._tag_names(tag_scores)]:
            chances[text] = max(chances.get(text, 0.0), chance)
        return {text: score * chances[text] for text, score in self._score(image, list(chances)).items()}

    def _label_names(self, prob: np.ndarray) -> list[tuple[str, float]]:
        """The classifier's confident classes as "a {class name}" with their probabilities; classes a vocabulary
        subject names (dog breeds) are left to it."""
        chosen = [i for i in _top(prob, 2, LABEL_FLOOR) if prob[i] >= LABEL_FLOOR and i not in self._named]
        return [(with_article(self.labels[i]), float(prob[i])) for i in chosen]

    def _tag_names(self, scores: np.ndarray) -> list[tuple[str, float]]:
        """The photo's confident default tags that name one thing ("a cup") with their scores."""
        if self.tags is None:
            return []
        ranked = sorted(self._tag_words, key=lambda n: -scores[n])[:TAG_TOP]
        words, threshold = self.tags.words, self.tags.threshold
        return [(with_article(words[n]), float(scores[n])) for n in ranked if scores[n] >= threshold]

    def _score(self, image: np.ndarray, sentences: Sequence[str]) -> dict[str, float]:
        """Each sentence's calibrated relevance to ``image`` (a stored fused vector)."""
        if not sentences:
            return {}
        unique = list(dict.fromkeys(sentences))
        with self._lock:
            found = {s: self._vectors[s] for s in unique if s in self._vectors}
        missing = [s for s in unique if s not in found]
        if missing:
            vectors = self.fused.text_vectors(missing)
            found.update(zip(missing, vectors, strict=True))
            with self._lock:
                if len(self._vectors) + len(missing) > CACHE_SIZE:
                    self._vectors.clear()
                self._vectors.update(zip(missing, vectors, strict=True))
        texts = np.stack([found[s] for s in sentences])
        relevance = self.fused.relevance(self.fused.scores(texts, image[None, :])[:, 0], texts)
        return {s: float(r) for s, r in zip(sentences, relevance, strict=True)}


def _top(scores: np.ndarray, n: int, floor: float) -> list[int]:
    """Indices of the ``n`` best scores at or above ``floor``, and the best one whatever its score."""
    order = [int(i) for i in np.argsort(-scores, kind="stable")[:n]]
    return [i for rank, i in enumerate(order) if rank == 0 or scores[i] >= floor]


def with_article(name: str) -> str:
    """A class name as a noun phrase: "basketball" -> "a basketball", "ice cream" -> "an ice cream"."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def hedged(text: str, score: float) -> str:
    """``text`` as said with ``score``'s confidence: "probably ..." below ``SURE``."""
    return text if score >= SURE else HEDGE + text
