"""F1-optimal per-tag thresholds on hand-made cases with known optima."""

from __future__ import annotations

import numpy as np
import pytest

from vistext.errors import UsageError
from vistext.evaluation.thresholds import best_threshold, f1_optimal_thresholds


def _f1(pred: np.ndarray, labels: np.ndarray) -> float:
    tp = float((pred & labels).sum())
    return 2 * tp / (pred.sum() + labels.sum()) if pred.sum() + labels.sum() else 0.0


def test_known_optimum() -> None:
    # keeping the top 4 (3 of 3 positives, 1 false positive) gives F1 = 6/7, better than any other cut
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 0, 0])
    threshold, f1 = best_threshold(scores, labels)
    assert threshold == pytest.approx(0.45)  # halfway between the last kept score and the next
    assert f1 == pytest.approx(6 / 7)
    assert _f1(scores >= threshold, labels.astype(bool)) == pytest.approx(6 / 7)


def test_tied_scores_are_kept_or_dropped_together() -> None:
    threshold, f1 = best_threshold(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0]))
    assert threshold == pytest.approx(0.3)
    assert f1 == pytest.approx(2 / 3)


def test_perfect_separation_and_no_positives() -> None:
    threshold, f1 = best_threshold(np.array([0.1, 0.95, 0.2, 0.9]), np.array([0, 1, 0, 1]))
    assert 0.2 < threshold < 0.9 and f1 == 1.0
    assert best_threshold(np.array([0.3, 0.4]), np.array([0, 0]), default=0.7) == (0.7, 0.0)


def test_matches_brute_force_on_random_tags() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random((200, 6)) < np.array([0.02, 0.1, 0.3, 0.5, 0.8, 0.0])
    scores = np.clip(labels * 0.3 + rng.random((200, 6)) * 0.8, 0, 1)
    thresholds = f1_optimal_thresholds(scores, labels, default=0.5)
    assert thresholds.shape == (6,) and thresholds.dtype == np.float32
    assert thresholds[5] == 0.5  # no positives: the default
    for j in range(5):
        best = max(_f1(scores[:, j] >= t, labels[:, j]) for t in np.unique(scores[:, j]))
        assert _f1(scores[:, j] >= thresholds[j], labels[:, j]) == pytest.approx(best, abs=1e-6)


def test_shape_errors() -> None:
    with pytest.raises(UsageError, match="n_images, n_tags"):
        f1_optimal_thresholds(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(UsageError, match="differ in length"):
        best_threshold(np.zeros(3), np.zeros(4))
