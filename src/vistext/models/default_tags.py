"""Tags out of the box: everyday words scored from the bundled ImageNet classifier's logits, with no training.

The default vocabulary (``pretrained/default-tags``) maps each word (``dog``, ``beach``, ``car``...) to the
ImageNet-1k classes WordNet puts under it (all 118 dog breeds under ``dog``; a few scene classes by hand, see
``vistext.training.default_tags``). A photo's raw score for a word is the classifier's probability that the
photo shows one of the word's classes: the sum of ``softmax(logits)`` over them. A logistic fit on dev photos
(``bench/default_tags.py``) turns that into a calibrated 0-1 chance that the word is right, and the word is a tag
at or above the threshold chosen there. A word with enough dev photos has its own fit (``word_calibration``): a
word made of many classes (``dog``: 118 breeds) gathers probability from photos that show none of them (people
photos read as a spread of breeds), so the shared fit overstates it. Indexing stores the logits, so tags never
need a photo read again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vistext.errors import ModelError
from vistext.models.card import read_card, resolve_model_dir, write_card

VOCABULARY_FILE = "vocabulary.json"
SOURCE = "default"  # the catalogue's name for these tags' source (a trained tagger is stored under its own name)
USER = "user"  # tags added by hand
_EPS = 1e-6


@dataclass
class DefaultTagVocabulary:
    """Words, the classifier classes under each, the calibration ``sigmoid(a * logit(p) + b)`` (per word where
    ``word_calibration`` has the word, else the shared one) and the cut."""

    classes: dict[str, list[int]]
    calibration: tuple[float, float] = (1.0, 0.0)
    threshold: float = 0.5
    n_classes: int = 1000
    card: dict[str, Any] = field(default_factory=dict)
    word_calibration: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classes:
            raise ModelError("the default tag vocabulary has no words")
        self.words = list(self.classes)
        self.membership = np.zeros((self.n_classes, len(self.words)), np.float32)
        for column, word in enumerate(self.words):
            indices = self.classes[word]
            if not indices or min(indices) < 0 or max(indices) >= self.n_classes:
                raise ModelError(f"default tag {word!r}: class indices must lie in 0..{self.n_classes - 1}")
            self.membership[indices, column] = 1.0
        self.word_calibration = {w: (float(f[0]), float(f[1])) for w, f in self.word_calibration.items()}
        unknown = sorted(set(self.word_calibration) - set(self.classes))
        if unknown:
            raise ModelError(f"default tags: calibration for words not in the vocabulary: {', '.join(unknown)}")

    @property
    def fingerprint(self) -> str:
        """Changes whenever the tags it gives could: words, classes, calibration or threshold."""
        digest = hashlib.blake2b(digest_size=8)
        words = sorted(self.word_calibration.items())
        digest.update(repr((sorted(self.classes.items()), self.calibration, self.threshold)).encode())
        if words:  # a vocabulary without per-word fits keeps the fingerprint it always had
            digest.update(repr(words).encode())
        return digest.hexdigest()

    def raw_scores(self, logits: np.ndarray) -> np.ndarray:
        """(N, words) the classifier's probability that each photo shows one of each word's classes."""
        logits = np.asarray(logits, dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] != self.n_classes:
            raise ModelError(f"expected (N, {self.n_classes}) classifier logits, got {logits.shape}")
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return np.clip(p @ self.membership, 0.0, 1.0)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(N, words) calibrated 0-1 chance that each word names what the photo shows."""
        p = np.clip(self.raw_scores(logits), _EPS, 1 - _EPS)
        a, b = self.coefficients
        return (1.0 / (1.0 + np.exp(-(a * np.log(p / (1 - p)) + b)))).astype(np.float32)

    @property
    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(words,) slope and intercept of each word's calibration."""
        fits = [self.word_calibration.get(word, self.calibration) for word in self.words]
        return np.array([f[0] for f in fits]), np.array([f[1] for f in fits])

    def tags(self, logits: np.ndarray) -> list[list[tuple[str, float]]]:
        """Per photo, ``(word, score)`` at or above the threshold, best first."""
        out = []
        for row in self.scores(logits):
            kept = np.flatnonzero(row >= self.threshold)
            order = kept[np.argsort(-row[kept], kind="stable")]
            out.append([(self.words[i], round(float(row[i]), 4)) for i in order])
        return out

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the card (calibration, threshold, provenance) and the word -> classes file."""
        import json

        from vistext.paths import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / VOCABULARY_FILE) as tmp:
            Path(tmp).write_text(json.dumps(self.classes, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
        fields = {**self.card, **(extra or {})}  # write_card keeps its own format and version
        settings = {"calibration": list(self.calibration), "threshold": self.threshold, "classes": self.n_classes,
                    "words": len(self.words),
                    "word_calibration": {w: list(f) for w, f in sorted(self.word_calibration.items())}}  # fmt: skip
        write_card(directory, "default-tags", {**fields, **settings})
        return directory


def load_default_tags(path: str | Path | None = None) -> DefaultTagVocabulary:
    """The default tag vocabulary saved in ``path`` (a directory or a name; default: the shipped one)."""
    import json

    directory = resolve_model_dir(path, "default-tags")
    card = read_card(directory, "default-tags")
    file = directory / VOCABULARY_FILE
    try:
        classes = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{file}: unreadable default tag vocabulary ({error})") from None
    if not isinstance(classes, dict) or not all(isinstance(v, list) for v in classes.values()):
        raise ModelError(f"{file}: expected a JSON object of word -> class indices")
    a, b = card.get("calibration", (1.0, 0.0))
    words = {str(w): (float(f[0]), float(f[1])) for w, f in (card.get("word_calibration") or {}).items()}
    return DefaultTagVocabulary({str(k): [int(i) for i in v] for k, v in classes.items()}, (float(a), float(b)),
                                float(card.get("threshold", 0.5)), int(card.get("classes", 1000)), card,
                                words)  # fmt: skip
