"""The match classifier at query time without torch: ``MatchModel.score`` in NumPy, from the same saved files.

A saved matcher is small (a bidirectional GRU over at most 32 words, a few linear layers) and `vistext match`
scores a handful of tag sets, so plain NumPy is as fast as the network and saves the 2-4 s of importing torch.
GloVe's 400,000 words are looked up through the word list shipped inside vistext (the kumo package ships them as
Parquet, whose reader alone costs more than the whole match). ``tests/test_matcher_numpy.py`` checks it gives the
PyTorch model's probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from vistext.errors import ModelError, UsageError
from vistext.models.card import WEIGHTS_FILE, read_card, resolve_model_dir
from vistext.text import glove_6b_50d, tokenize

MAX_WORDS = 32  # a tag set longer than this is cut: the GRU has seen nothing longer
WORD_VECTORS = "glove-6b-50d"


def parse_tag_set(text: str) -> list[str]:
    """``"dog, red ball"`` -> ``["dog", "red ball"]``; without commas every word is a tag: ``"dog ball"``."""
    parts = text.split(",") if "," in text else text.split()
    return [p.strip() for p in parts if p.strip()]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


@lru_cache(maxsize=1)
def glove() -> tuple[dict[str, int], np.ndarray]:
    """GloVe 6B 50d: word -> row, and the memory-mapped (400000, 50) matrix (see ``vistext.text.glove_6b_50d``)."""
    words, matrix = glove_6b_50d()
    # the first (most frequent) row wins on duplicates, as in WordVectors: build from the end
    return dict(zip(reversed(words), range(len(words) - 1, -1, -1), strict=True)), matrix


class NumpyMatcher:
    """A saved match classifier's ``score``, in NumPy (eval mode: dropout is the identity)."""

    def __init__(self, weights: dict[str, np.ndarray], vocabulary: list[str], image_dim: int) -> None:
        self.w = {k: v.astype(np.float32) for k, v in weights.items()}
        self.word_ids = {w: i + 1 for i, w in enumerate(vocabulary)}
        self.image_dim = image_dim

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _gru(self, x: np.ndarray, lengths: np.ndarray, suffix: str) -> np.ndarray:
        """One direction of the packed GRU: (N, L, D) -> (N, L, H), zero past each sequence's end."""
        w_ih, w_hh = self.w[f"gru.weight_ih_l0{suffix}"], self.w[f"gru.weight_hh_l0{suffix}"]
        b_ih, b_hh = self.w[f"gru.bias_ih_l0{suffix}"], self.w[f"gru.bias_hh_l0{suffix}"]
        n, steps, _ = x.shape
        size = w_hh.shape[1]
        out = np.zeros((n, steps, size), np.float32)
        gates_x = x @ w_ih.T + b_ih
        h = np.zeros((n, size), np.float32)
        order = range(steps - 1, -1, -1) if suffix else range(steps)
        for t in order:
            live = (t < lengths)[:, None]
            gx, gh = gates_x[:, t], h @ w_hh.T + b_hh
            r = _sigmoid(gx[:, :size] + gh[:, :size])
            z = _sigmoid(gx[:, size : 2 * size] + gh[:, size : 2 * size])
            cand = np.tanh(gx[:, 2 * size :] + r * gh[:, 2 * size :])
            h = np.where(live, (1 - z) * cand + z * h, h)  # the reverse pass starts at each sequence's own end
            out[:, t] = np.where(live, h, 0.0)
        return out

    def embed_tag_sets(
        self, tag_sets: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        words = [[w for tag in tags for w in tokenize(tag)][:MAX_WORDS] or [""] for tags in tag_sets]
        length = max(len(w) for w in words)
        index, matrix = glove()
        vectors = np.zeros((len(words), length, matrix.shape[1]), np.float32)
        known = np.zeros((len(words), length), np.float32)
        ids = np.zeros((len(words), length), np.int64)
        for i, sequence in enumerate(words):
            for j, word in enumerate(sequence):
                if word in index:
                    vectors[i, j] = matrix[index[word]]
                    known[i, j] = 1.0
                ids[i, j] = self.word_ids.get(word, 0)
        return vectors, known, ids, np.array([len(w) for w in words])

    def logits(self, features: np.ndarray, tag_sets: Sequence[Sequence[str]]) -> np.ndarray:
        vectors, known, ids, lengths = self.embed_tag_sets(tag_sets)
        x = (features - self.w["image_mean"]) / self.w["image_std"]
        image = np.maximum(self._linear("image.1", x), 0.0)
        vectors = vectors + (1 - known)[..., None] * self.w["unknown"]
        states = np.concatenate([self._gru(vectors, lengths, ""), self._gru(vectors, lengths, "_reverse")], axis=2)
        mask = (np.arange(vectors.shape[1])[None, :] < lengths[:, None]).astype(np.float32)[..., None]
        table = self.w["word_table.weight"][ids]
        hidden = np.maximum(self._linear("word.0", vectors), 0.0)
        weights = self._linear("word.2", hidden) + table[..., :-1]
        bias = self._linear("word_bias", vectors) + table[..., -1:]
        count = lengths[:, None].astype(np.float32)
        pooled = np.concatenate([(states * mask).sum(1) / count, (weights * mask).sum(1) / count], axis=1)
        text = np.maximum(self._linear("text.0", pooled), 0.0)
        fit = (weights * x[:, None, :]).sum(-1, keepdims=True)
        log_p = _log_sigmoid(fit + bias)
        llr = log_p - _log_sigmoid(bias)
        stats = np.concatenate([_pool(v, mask, count) for v in (fit, log_p, llr)], axis=1)
        skip = self.w["llr_scale"] * stats[:, 6] + self.w["llr_shift"]
        hidden = np.maximum(self._linear("classifier.1", np.concatenate([image, text, image * text, stats], 1)), 0)
        return self._linear("classifier.3", hidden)[:, 0] + skip

    def score(self, image_features: np.ndarray, tag_sets: Sequence[Sequence[str]]) -> np.ndarray:
        """Match probabilities (M,), as ``MatchModel.score``."""
        features = np.asarray(image_features, dtype=np.float32)
        if not tag_sets:
            raise UsageError("no tag sets to score")
        if features.ndim == 1:
            features = np.broadcast_to(features, (len(tag_sets), features.shape[0]))
        if features.shape != (len(tag_sets), self.image_dim):
            raise UsageError(
                f"image features of shape {features.shape} do not fit {len(tag_sets)} tag sets "
                f"of a matcher for {self.image_dim}-d features"
            )
        return _sigmoid(self.logits(features, tag_sets)).astype(np.float32)


def _pool(values: np.ndarray, mask: np.ndarray, count: np.ndarray) -> np.ndarray:
    mean = (values * mask).sum(1) / count
    best = np.where(mask == 0, -1e4, values).max(1)
    worst = np.where(mask == 0, 1e4, values).min(1)
    return np.concatenate([mean, best, worst], axis=1)


def load_numpy_matcher(directory: str | Path | None = None) -> NumpyMatcher:
    """A matcher by directory or name (default: the shipped one) for scoring without torch; errors as
    ``load_matcher``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = resolve_model_dir(directory, "matcher")
    config = read_card(directory, "matcher")
    if config.get("word_vectors", WORD_VECTORS) != WORD_VECTORS:
        raise ModelError(f"unknown word vectors {config.get('word_vectors')!r}; known: {WORD_VECTORS}")
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights}: match model weights missing")
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{weights}: unreadable weights ({error})") from None
    return NumpyMatcher(state, list(config.get("vocabulary", [])), int(config["dims"]["image"]))
