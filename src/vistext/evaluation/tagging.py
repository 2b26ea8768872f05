"""Multi-label and classification metrics on arrays: average precision, mAP, F1, precision@K, top-1.

All are fractions (0-1).
"""

from __future__ import annotations

import numpy as np

from vistext.errors import UsageError


def _check_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise UsageError(f"scores and labels must both be (n_samples, n_labels); got {scores.shape}, {labels.shape}")
    return scores, labels.astype(bool)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of one ranking: ``scores`` (n,), binary ``labels`` (n,). NaN if there is no positive."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise UsageError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}")
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.sum() / n_pos)


def mean_average_precision(scores: np.ndarray, labels: np.ndarray, axis: str = "label") -> float:
    """mAP over labels (``axis="label"``: each column ranked over samples, the usual tagging mAP) or over
    samples (``axis="sample"``: each row's labels ranked). Columns/rows without positives are skipped."""
    scores, labels = _check_scores(scores, labels)
    if axis == "label":
        scores, labels = scores.T, labels.T
    elif axis != "sample":
        raise UsageError(f"axis must be 'label' or 'sample', got {axis!r}")
    aps = [average_precision(s, y) for s, y in zip(scores, labels, strict=True) if y.any()]
    return float(np.mean(aps)) if aps else float("nan")


def f1_scores(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(micro F1, macro F1) of binary predictions (n_samples, n_labels); macro averages over labels that
    occur in either the predictions or the truth."""
    pred = np.asarray(pred).astype(bool)
    labels = np.asarray(labels).astype(bool)
    if pred.shape != labels.shape or pred.ndim != 2:
        raise UsageError(f"pred and labels must both be (n_samples, n_labels); got {pred.shape}, {labels.shape}")
    tp = (pred & labels).sum(axis=0).astype(np.float64)
    fp = (pred & ~labels).sum(axis=0).astype(np.float64)
    fn = (~pred & labels).sum(axis=0).astype(np.float64)
    denom_micro = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / denom_micro) if denom_micro else 0.0
    denom = 2 * tp + fp + fn
    used = denom > 0
    macro = float((2 * tp[used] / denom[used]).mean()) if used.any() else 0.0
    return micro, macro


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean over samples of the share of the top-``k`` scored labels that are true."""
    scores, labels = _check_scores(scores, labels)
    if not 1 <= k <= scores.shape[1]:
        raise UsageError(f"k must be between 1 and {scores.shape[1]}, got {k}")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(labels, top, axis=1).mean())


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose top-scored class is right. ``labels`` is (n,) class indices or (n, C) binary
    (any true label counts)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    best = scores.argmax(axis=1)
    if labels.ndim == 1:
        if labels.shape[0] != scores.shape[0]:
            raise UsageError(f"{labels.shape[0]} labels for {scores.shape[0]} score rows")
        return float((best == labels).mean())
    scores, flags = _check_scores(scores, labels)
    return float(flags[np.arange(len(best)), best].mean())
