"""The two-choice test of a match model (image + tag set -> do they belong together?): for each image with
tags, its own tag set against another image's; a model is right when it scores its own set higher. The
primary metric is ``two_choice_accuracy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation

if TYPE_CHECKING:
    from vistext.datasets import TaggedDataset, TaggedImage
    from vistext.models.matcher import MatchModel

PRIMARY = "two_choice_accuracy"


def two_choice_pairs(items: list[TaggedImage], seed: int = 0) -> list[tuple[int, int]]:
    """(image i, image j) pairs for the two-choice test: every image with tags against a random other image
    whose tag set differs from its own (seeded, so every method faces the same pairs)."""
    rng = np.random.default_rng(seed)
    tagged = [i for i, item in enumerate(items) if item.tags]
    if len(tagged) < 2:
        raise UsageError("the two-choice test needs at least two images with tags")
    pairs = []
    for i in tagged:
        for _ in range(20):
            j = tagged[int(rng.integers(len(tagged)))]
            if j != i and set(items[j].tags) != set(items[i].tags):
                pairs.append((i, j))
                break
    return pairs


def two_choice_accuracy(own: np.ndarray, other: np.ndarray) -> float:
    """Share of pairs where the own tag set scores higher (a tie counts half)."""
    own, other = np.asarray(own, np.float64), np.asarray(other, np.float64)
    return float(np.mean((own > other) + 0.5 * (own == other)))


def matcher_scores(model: MatchModel, features: np.ndarray, tag_sets: list[list[str]], batch: int = 512) -> np.ndarray:
    """Row-aligned match probabilities for many (image, tag set) pairs, in batches."""
    return np.concatenate(
        [model.score(features[s : s + batch], tag_sets[s : s + batch]) for s in range(0, len(tag_sets), batch)]
    )


def two_choice_eval(model: MatchModel, features: np.ndarray, items: list[TaggedImage], seed: int = 0) -> dict:
    """Two-choice accuracy of ``model`` on ``items`` whose pooled ``features`` are given, and the pair count."""
    pairs = two_choice_pairs(items, seed)
    rows = np.array([i for i, _ in pairs])
    own = matcher_scores(model, features[rows], [items[i].tags for i, _ in pairs])
    other = matcher_scores(model, features[rows], [items[j].tags for _, j in pairs])
    return {PRIMARY: two_choice_accuracy(own, other), "n_pairs": len(pairs)}


def two_choice_evaluation(
    model: MatchModel, features: np.ndarray, items: list[TaggedImage], seed: int = 0
) -> Evaluation:
    """``two_choice_eval`` as an ``Evaluation``."""
    return Evaluation(two_choice_eval(model, features, items, seed), PRIMARY)


def image_features(items: list[TaggedImage], progress: bool = True) -> np.ndarray:
    """The bundled encoder's pooled features of the items' images (cached on disk)."""
    from vistext.encoders import create_image_encoder
    from vistext.features import encode_files

    return encode_files([item.image for item in items], create_image_encoder(), progress=progress).pooled


def evaluate(
    model: MatchModel,
    dataset: TaggedDataset | str,
    split: str | None = "test",
    seed: int = 0,
    progress: bool = True,
) -> Evaluation:
    """Two-choice accuracy of ``model`` on a split (None: the whole dataset) of a tagged dataset."""
    if isinstance(dataset, str):
        from vistext.datasets import open_tagged_dataset

        dataset = open_tagged_dataset(dataset)
    items = [item for item in dataset.items(split) if item.tags]
    return two_choice_evaluation(model, image_features(items, progress), items, seed)
