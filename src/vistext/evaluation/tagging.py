"""Multi-label and classification metrics on arrays (average precision, mAP, F1, precision@K, top-1; all
fractions 0-1), and ``evaluate``: a tagger on a tagged dataset split, with mAP as the primary metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.encoders import ImageEncoder, ImageFeatures, create_image_encoder
from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation

if TYPE_CHECKING:
    from vistext.datasets import TaggedDataset, TaggedImage
    from vistext.models.tagger import TaggerModel

PRIMARY = "map"


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


# ---- a tagger's scores against a dataset's tags ---------------------------------------------------------


def label_matrix(items: list[TaggedImage], labels: list[str]) -> np.ndarray:
    """(n_images, n_tags) float32 0/1 targets; tags outside ``labels`` are ignored."""
    index = {tag: j for j, tag in enumerate(labels)}
    y = np.zeros((len(items), len(labels)), np.float32)
    for i, item in enumerate(items):
        for tag in item.tags:
            if tag in index:
                y[i, index[tag]] = 1.0
    return y


def tag_metrics(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None, single_label: bool = False, k: int = 5
) -> dict[str, Any]:
    """map, micro_f1, macro_f1, p_at_k, accuracy (top-1), n_images, k: the keys ``vistext eval`` reports."""
    k = 1 if single_label else max(1, min(k, scores.shape[1]))
    if thresholds is None:
        pred = scores >= 0.5
    else:
        pred = scores >= thresholds[None, :]
    if single_label:  # exactly one tag per image: the best one
        pred = np.zeros_like(pred)
        pred[np.arange(len(scores)), scores.argmax(axis=1)] = True
    micro, macro = f1_scores(pred, labels)
    has_tags = labels.any(axis=1)
    return {
        "map": mean_average_precision(scores, labels),
        "micro_f1": micro,
        "macro_f1": macro,
        "p_at_k": precision_at_k(scores[has_tags], labels[has_tags], k) if has_tags.any() else 0.0,
        "accuracy": top1_accuracy(scores[has_tags], labels[has_tags]) if has_tags.any() else 0.0,
        "n_images": int(len(scores)),
        "k": k,
    }


def tag_evaluation(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None, single_label: bool = False, k: int = 5
) -> Evaluation:
    """``tag_metrics`` with mAP as the primary metric (NaN when no image has a tag)."""
    return Evaluation(tag_metrics(scores, labels, thresholds, single_label, k), PRIMARY)


class _OwnNetwork(ImageEncoder):
    """A tagger's own ONNX network seen as an encoder, so evaluation reuses the threaded batch pipeline."""

    def __init__(self, model: TaggerModel) -> None:
        self.model, self.name, self.dim = model, f"tagger-{model.method}", model.n_tags
        self.preprocessing = model.preprocessing

    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        return ImageFeatures(pooled=self.model.scores_from_pixels(batch))


def tagger_scores(model: TaggerModel, paths: list, progress: bool = True) -> np.ndarray:
    """Tag probabilities (N, n_tags) for image files; the bundled encoder's features come from the cache."""
    from vistext.features import encode_files

    if model.uses_encoder:
        arrays = encode_files(paths, create_image_encoder(model.backbone), grid=model.needs_grid, progress=progress)
        return model.scores_from_features(ImageFeatures(pooled=arrays.pooled, grid=arrays.grid))
    return encode_files(paths, _OwnNetwork(model), cache=False, progress=progress).pooled


def evaluate(
    model: TaggerModel, dataset: TaggedDataset | str, split: str | None = None, progress: bool = True, k: int = 5
) -> Evaluation:
    """Test metrics of ``model`` on ``dataset`` (the whole dataset when ``split`` is None).

    Metrics: map (mean AP over tags with a positive; the primary metric), micro_f1 and macro_f1 (calibrated
    thresholds), p_at_k, accuracy (top-1), n_images and k. Tags the model does not know are ignored.
    """
    if isinstance(dataset, str):
        from vistext.datasets import open_tagged_dataset

        dataset = open_tagged_dataset(dataset)
    items = dataset.items(split)
    if not items:
        raise UsageError(f"{dataset.name}: no images in split {split!r}")
    scores = tagger_scores(model, [item.image for item in items], progress=progress)
    labels = label_matrix(items, model.labels)
    return tag_evaluation(scores, labels, model.thresholds, dataset.single_label, k)
