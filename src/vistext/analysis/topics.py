"""Topics in a collection: non-negative matrix factorisation of an images x words matrix.

``matrix`` (n_images, n_words) holds non-negative scores (tag probabilities, tag counts, or non-negative
features); NMF writes it as ``W @ H`` with ``W`` (n_images, n_topics) the image-to-topic weights and ``H``
(n_topics, n_words) the topics. A topic is shown by its top words and by its most typical images: those whose
weight vector is most concentrated on it, not merely those with the largest raw weight (a very "busy" image
scores high on every topic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vistext.errors import UsageError


@dataclass
class Topic:
    index: int
    words: list[tuple[str, float]]  # top words, heaviest first (weights normalised to sum 1 over the topic)
    images: list[Any]  # the most typical images' ids, most typical first
    weight: float  # the topic's share of the whole collection's weight

    @property
    def label(self) -> str:
        return " ".join(word for word, _ in self.words[:3])

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.index,
            "label": self.label,
            "weight": round(self.weight, 6),
            "words": [{"word": w, "weight": round(s, 6)} for w, s in self.words],
            "images": list(self.images),
        }


@dataclass
class TopicModel:
    """Topics plus the image-to-topic weights (rows sum to 1; all-zero rows stay zero)."""

    topics: list[Topic]
    image_weights: np.ndarray  # (n_images, n_topics) float32
    components: np.ndarray  # (n_topics, n_words) float32: H, each row summing to 1
    vocabulary: list[str]
    ids: list[Any] = field(default_factory=list)
    reconstruction_error: float = 0.0

    @property
    def n_topics(self) -> int:
        return len(self.topics)

    def image_topics(self) -> np.ndarray:
        """The dominant topic of every image (-1 for an image with no weight at all)."""
        best = self.image_weights.argmax(axis=1)
        return np.where(self.image_weights.max(axis=1) > 0, best, -1)

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Topic weights (n, n_topics), rows summing to 1, for new rows over the same vocabulary (NNLS via
        multiplicative updates with the topics fixed)."""
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.vocabulary) or (x < 0).any():
            raise UsageError(f"need a non-negative (n, {len(self.vocabulary)}) matrix, got shape {x.shape}")
        h = self.components.astype(np.float64)
        w = np.full((x.shape[0], h.shape[0]), 1.0 / h.shape[0])
        hht = h @ h.T
        for _ in range(200):
            w *= (x @ h.T) / np.maximum(w @ hht, 1e-12)
        return _normalise_rows(w).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_topics": self.n_topics,
            "n_images": int(self.image_weights.shape[0]),
            "reconstruction_error": round(self.reconstruction_error, 6),
            "topics": [topic.to_dict() for topic in self.topics],
        }


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    sums = x.sum(axis=1, keepdims=True)
    return np.divide(x, sums, out=np.zeros_like(x), where=sums > 0)


def fit_topics(
    matrix: np.ndarray,
    vocabulary: Sequence[str],
    n_topics: int = 20,
    seed: int = 0,
    *,
    ids: Sequence[Any] | None = None,
    top_words: int = 10,
    top_images: int = 8,
    max_iter: int = 400,
) -> TopicModel:
    """Fit ``n_topics`` NMF topics to a non-negative (n_images, n_words) matrix.

    ``ids`` names the rows (image ids or paths; default: row numbers) in ``Topic.images``. Topics are sorted by
    their share of the collection, largest first. Deterministic for a given ``seed``.
    """
    from sklearn.decomposition import NMF

    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(vocabulary):
        raise UsageError(f"the matrix must be (n_images, {len(vocabulary)} words), got shape {x.shape}")
    if not np.isfinite(x).all() or (x < 0).any():
        raise UsageError("NMF needs a finite, non-negative matrix (scores, counts or probabilities)")
    if not 1 <= n_topics <= min(x.shape):
        raise UsageError(f"n_topics must be between 1 and {min(x.shape)} for a {x.shape[0]} x {x.shape[1]} matrix")
    ids = list(range(x.shape[0])) if ids is None else list(ids)
    if len(ids) != x.shape[0]:
        raise UsageError(f"{len(ids)} ids for {x.shape[0]} rows")
    nmf = NMF(n_components=n_topics, init="nndsvda", random_state=seed, max_iter=max_iter, tol=1e-5)
    w = nmf.fit_transform(x)
    h = nmf.components_
    # scale so every topic's word weights sum to 1 and W carries the magnitude: W @ H is unchanged
    scale = h.sum(axis=1)
    scale[scale == 0] = 1.0
    h = h / scale[:, None]
    w = w * scale[None, :]
    share = w.sum(axis=0) / max(w.sum(), 1e-12)
    order = np.argsort(-share, kind="stable")
    w, h, share = w[:, order], h[order], share[order]
    weights = _normalise_rows(w)
    topics = []
    for t in range(n_topics):
        best_words = np.argsort(-h[t], kind="stable")[:top_words]
        words = [(str(vocabulary[j]), float(h[t, j])) for j in best_words if h[t, j] > 0]
        # typical = concentrated on this topic, then strong: rank by share, break ties by raw weight
        candidates = np.flatnonzero(weights[:, t] > 0)
        ranked = candidates[np.lexsort((-w[candidates, t], -weights[candidates, t]))][:top_images]
        topics.append(Topic(t, words, [ids[i] for i in ranked], float(share[t])))
    return TopicModel(
        topics=topics,
        image_weights=weights.astype(np.float32),
        components=h.astype(np.float32),
        vocabulary=[str(v) for v in vocabulary],
        ids=ids,
        reconstruction_error=float(nmf.reconstruction_err_),
    )


# ---- labels that say what the photos show -------------------------------------------------------------------
# Everyday words a topic label is chosen from: what people photograph and how captions name it (plural where
# captions say it so). ImageNet's classes are too fine ("Labrador retriever", "seashore") to read as a label.
EVERYDAY_WORDS: tuple[str, ...] = (
    # people
    "people", "man", "woman", "child", "children", "boy", "girl", "baby", "family", "crowd", "friends", "couple",
    "team", "players", "dancers", "musician", "rider", "climber", "surfer", "skier", "swimmer", "runner",
    # animals
    "dog", "dogs", "puppy", "cat", "horse", "cow", "sheep", "bird", "birds", "duck", "fish", "animal", "insect",
    "butterfly", "monkey", "elephant",
    # places and scenes
    "beach", "ocean", "sea", "waves", "lake", "river", "water", "pool", "waterfall", "mountain", "mountains",
    "hill", "rocks", "cliff", "desert", "sand", "forest", "trees", "park", "garden", "field", "grass", "meadow",
    "snow", "ice", "sky", "sunset", "night", "city", "street", "road", "building", "buildings", "house",
    "church", "bridge", "market", "shop", "restaurant", "kitchen", "room", "stage", "stadium", "playground",
    "countryside", "farm", "trail", "track", "fountain",
    # activities
    "sports", "football", "soccer", "basketball", "baseball", "tennis", "swimming", "surfing", "skiing",
    "snowboarding", "skateboarding", "cycling", "climbing", "running", "jumping", "dancing", "playing",
    "fishing", "boating", "hiking", "racing", "concert", "wedding", "parade", "party", "game",
    # things
    "ball", "toy", "bicycle", "motorcycle", "car", "cars", "bus", "truck", "train", "boat", "ship", "airplane",
    "skateboard", "surfboard", "kite", "tent", "umbrella", "flag", "sign", "food", "cake", "fruit", "flowers",
    "plants", "table", "chair", "bed", "computer", "phone", "book", "camera", "guitar", "hat", "costume",
    "uniform", "dress", "glasses", "bag", "helmet", "fence", "wall", "window", "statue", "painting",
)  # fmt: skip


def word_prompt(word: str) -> str:
    """A label word phrased as the joint model's captions phrase things: "a photo of dogs"."""
    return f"a photo of {word}"


def describe_topics(
    topic_vectors: np.ndarray, word_vectors: np.ndarray, words: Sequence[str], k: int = 3
) -> list[list[tuple[str, float]]]:
    """The ``k`` words that best describe each topic, best first, with their scores (``best_words``).

    ``topic_vectors`` (n_topics, d) are the topics' mean image embeddings and ``word_vectors`` (n_words, d) the
    words' embeddings in the same joint image-text space (unit rows): a word's fit to a topic is its cosine."""
    topics = np.asarray(topic_vectors, dtype=np.float64)
    vectors = np.asarray(word_vectors, dtype=np.float64)
    if topics.ndim != 2 or vectors.ndim != 2 or topics.shape[1] != vectors.shape[1] or len(vectors) != len(words):
        raise UsageError(
            f"topic vectors {topics.shape} and word vectors {vectors.shape} ({len(words)} words) do not match"
        )
    norms = np.linalg.norm(topics, axis=1, keepdims=True)
    topics = np.divide(topics, norms, out=np.zeros_like(topics), where=norms > 0)
    return best_words(topics @ vectors.T, vectors @ vectors.T, words, k)


def best_words(
    fit: np.ndarray,
    alike: np.ndarray,
    words: Sequence[str],
    k: int = 3,
    *,
    contrast: float = 0.5,
    redundancy: float = 0.8,
) -> list[list[tuple[str, float]]]:
    """The ``k`` words that best describe each topic, best first, with their scores.

    ``fit`` (n_topics, n_words) says how well each word fits each topic (a cosine, or the mean relevance of the
    word to the topic's photos); ``alike`` (n_words, n_words) how alike two words are (their embeddings' cosine).
    A word's score for a topic is its fit minus ``contrast`` times its mean fit to the other topics, so a word
    that fits every topic of the collection ("people" in a collection of people) does not label them all, while a
    word that fits only one still wins there. A word more alike than ``redundancy`` to a word already chosen is
    passed over ("dogs" after "dog", "ocean" after "sea"). Deterministic: ties keep the vocabulary's order."""
    scores = np.asarray(fit, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(words) or np.shape(alike) != (len(words), len(words)):
        raise UsageError(f"word fits {scores.shape} and likeness {np.shape(alike)} do not match {len(words)} words")
    if len(scores) > 1:  # each topic against the mean of the others
        scores = scores - contrast * (scores.sum(axis=0, keepdims=True) - scores) / (len(scores) - 1)
    described = []
    for t in range(len(scores)):
        chosen: list[int] = []
        for j in np.argsort(-scores[t], kind="stable").tolist():
            if all(alike[j, c] <= redundancy for c in chosen):
                chosen.append(j)
                if len(chosen) == k:
                    break
        described.append([(str(words[j]), round(float(scores[t, j]), 6)) for j in chosen])
    return described


def label_text(words: Sequence[str]) -> str:
    """A label from its best words: "dogs, grass and ball"."""
    words = list(dict.fromkeys(words))
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
