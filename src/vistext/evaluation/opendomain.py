"""Open-domain evaluation on a folder-per-class dataset: zero-shot tagging and text search by class name.

Any model that scores texts against images fits: ``evaluate_open_domain`` takes a function mapping N texts to an
(N, n_images) score matrix over the split's images. Two tasks, both from the class labels alone (no training):

- zero-shot tagging: each image against every class label (``tag_template``), top-1 and top-5 accuracy;
- text search: each class label as a query (``search_template``, e.g. ``"a photo of a {}"``) ranked over all the
  split's images: mean precision@10, mAP over the whole ranking and mean AP over the top 100.

All figures are fractions (0-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation
from vistext.evaluation.tagging import average_precision

if TYPE_CHECKING:
    from vistext.models.open_domain import OpenDomainModel

TextScorer = Callable[[list[str]], np.ndarray]


def _targets(targets: Sequence[int] | np.ndarray, n: int, what: str) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim != 1 or len(targets) != n:
        raise UsageError(f"{what}: expected {n} class indices, got shape {targets.shape}")
    return targets


def zero_shot_accuracy(scores: np.ndarray, targets: Sequence[int] | np.ndarray, ks: Sequence[int] = (1, 5)) -> dict:
    """``{"top1": ..., "top5": ...}``: the fraction of images (rows of ``scores``, (n_images, n_classes)) whose
    true class is among their ``k`` best-scored classes."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise UsageError(f"scores must be (n_images, n_classes); got {scores.shape}")
    targets = _targets(targets, len(scores), "zero_shot_accuracy")
    true = scores[np.arange(len(scores)), targets]
    # rank = how many classes score strictly higher; ties count in the image's favour, as argmax would
    rank = (scores > true[:, None]).sum(axis=1)
    return {f"top{k}": float((rank < k).mean()) if len(scores) else float("nan") for k in ks}


def average_precision_at(scores: np.ndarray, relevant: np.ndarray, depth: int) -> float:
    """AP of one ranking cut at ``depth``: sum of precision@i at the relevant hits among the first ``depth``
    results, divided by min(number relevant, depth). NaN without relevant items."""
    relevant = np.asarray(relevant).astype(bool)
    n_rel = int(relevant.sum())
    if n_rel == 0:
        return float("nan")
    hits = relevant[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:depth]]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / min(n_rel, depth))


def search_metrics(scores: np.ndarray, targets: Sequence[int] | np.ndarray, k: int = 10, depth: int = 100) -> dict:
    """Text search by class: ``scores`` (n_classes, n_images), row c the query for class c. Returns mean
    ``p@k``, ``map`` (AP of the full ranking) and ``ap@depth`` over the classes that have images."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise UsageError(f"scores must be (n_classes, n_images); got {scores.shape}")
    targets = _targets(targets, scores.shape[1], "search_metrics")
    p_at_k, aps, aps_cut = [], [], []
    for c, row in enumerate(scores):
        relevant = targets == c
        if not relevant.any():
            continue
        top = np.argsort(-row, kind="stable")[:k]
        p_at_k.append(relevant[top].mean())
        aps.append(average_precision(row, relevant))
        aps_cut.append(average_precision_at(row, relevant, depth))
    if not aps:
        raise UsageError("search_metrics: no class has an image")
    return {f"p@{k}": float(np.mean(p_at_k)), "map": float(np.mean(aps)), f"ap@{depth}": float(np.mean(aps_cut))}


def evaluate_open_domain(
    score_texts: TextScorer,
    targets: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    tag_template: str = "{}",
    search_template: str = "a photo of a {}",
    score_queries: TextScorer | None = None,
) -> dict[str, Any]:
    """Zero-shot top-1/top-5 and text-search P@10 / mAP / AP@100 of a model over one split.

    ``score_texts(texts)`` returns the (len(texts), n_images) scores of the split's images, in ``targets``
    order; ``class_names[c]`` is the label of class c. ``score_queries`` scores the search queries when a
    model ranks a collection differently from how it tags one image (default: ``score_texts``). The primary
    metric is the mean of top-1, P@10 and mAP."""
    names = list(class_names)
    if not names:
        raise UsageError("evaluate_open_domain: no class names")
    for template in (tag_template, search_template):
        if "{}" not in template:
            raise UsageError(f"prompt template {template!r} has no '{{}}' for the class label")
    tag_scores = np.asarray(score_texts([tag_template.format(n) for n in names]))
    metrics: dict[str, Any] = zero_shot_accuracy(tag_scores.T, targets)
    if search_template == tag_template and score_queries is None:
        query_scores = tag_scores
    else:
        query_scores = np.asarray((score_queries or score_texts)([search_template.format(n) for n in names]))
    metrics.update(search_metrics(query_scores, targets))
    metrics["primary"] = float(np.mean([metrics["top1"], metrics["p@10"], metrics["map"]]))
    metrics["images"] = int(len(np.asarray(targets)))
    return metrics


def fit_relevance_calibration(scores: np.ndarray, relevant: np.ndarray) -> tuple[float, float]:
    """(a, b) of P(relevant | score) = sigmoid(a * score + b) by logistic regression over (query, image) pairs,
    the relevant ones re-weighted to balance the classes, so 0.5 falls where a score is as likely relevant as
    not: what turns a model's raw scores into a 0-1 relevance a person can read."""
    from sklearn.linear_model import LogisticRegression

    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    relevant = np.asarray(relevant).astype(bool).ravel()
    if len(scores) != len(relevant) or relevant.all() or not relevant.any():
        raise UsageError("calibration needs as many labels as scores, with relevant and irrelevant pairs")
    model = LogisticRegression(class_weight="balanced").fit(scores, relevant)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def evaluate_classes(
    model: OpenDomainModel,
    spec: str,
    split: str = "test",
    template: str = "a photo of a {}",
    progress: bool = True,
) -> Evaluation:
    """Zero-shot tagging and text search on a folder-per-class dataset (``classes:DIR``) with the shipped
    default for words and photos (tags as ``tag --vocab`` scores them, search as ``search`` ranks stored
    vectors). The primary metric ``mean`` is the mean of top-1, P@10 and mAP."""
    from vistext.datasets import open_tagged_dataset
    from vistext.datasets.classes import ClassFolder
    from vistext.encoders import ImageFeatures, create_image_encoder
    from vistext.features import encode_files

    data = open_tagged_dataset(spec)
    if not isinstance(data, ClassFolder):
        raise UsageError(f"{spec}: open-domain evaluation needs a folder-per-class dataset (classes:DIR)")
    paths = data.images(split)
    if not paths:
        raise UsageError(f"{spec}: split {split!r} has no images (splits: all, dev, test)")
    arrays = encode_files(paths, create_image_encoder(model.concepts.image_encoder), progress=progress)
    features = ImageFeatures(pooled=arrays.pooled, logits=arrays.logits)
    tag_images, search_images = model.tag_image_vectors(features), model.project(features)
    metrics = evaluate_open_domain(
        lambda words: model.scores(model.tag_vectors(words, vocabulary=True), tag_images),
        data.targets(split),
        data.class_names,
        tag_template="{}",
        search_template=template,
        score_queries=lambda texts: model.scores(model.text_vectors(texts), search_images),
    )
    metrics["mean"] = metrics.pop("primary")
    metrics.update({"split": split, "template": template, "classes": len(data.class_names)})
    return Evaluation(metrics, "mean")
