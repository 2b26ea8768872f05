"""Object queries from caption nouns: "a dog" over a caption dataset's photos, judged by the other captions.

For each everyday object noun of ``OBJECT_NOUNS`` and each photo of a split, the photo is relevant to the query
``"a {noun}"`` when at least two of its captions name the noun (singular or plural), irrelevant when none does,
and left out of that query's ranking otherwise, as in every caption-judged set (``relevance_sets.judge``).
Objects are often a small part of a Flickr8k photo (a ball, a bicycle behind a rider), which is what the query
set is for. A noun is kept for a split when it has at least ``min_relevant`` relevant photos there.
``evaluate_object_queries`` ranks each query's photos with any scorer and reports mean P@5, P@10 and mAP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vistext.evaluation.relevance_sets import IRRELEVANT, MIN_RELEVANT, RELEVANT, forms, judge, tokenise
from vistext.evaluation.tagging import average_precision

# everyday objects people search their photos for, as Flickr8k's captions name them
OBJECT_NOUNS = (
    "dog", "cat", "horse", "cow", "sheep", "bird", "duck", "camel", "bicycle", "bike", "motorcycle", "car", "bus",
    "truck", "boat", "train", "airplane", "ball", "frisbee", "skateboard", "surfboard", "snowboard", "kite",
    "umbrella", "bench", "chair", "table", "guitar", "hat", "helmet", "sunglasses", "backpack", "flag", "fountain",
    "tent", "swing", "stick", "toy", "camera", "drum", "microphone", "book", "bottle", "stroller", "sign", "fence",
    "tree", "rock", "wave", "building",
)  # fmt: skip


@dataclass
class ObjectQuery:
    """One query over a split: its text, and the relevant and irrelevant photos' rows (the rest left out)."""

    noun: str
    text: str
    relevant: np.ndarray  # rows of the split's photos
    irrelevant: np.ndarray


def object_queries(
    captions: Sequence[Sequence[str]],
    nouns: Sequence[str] = OBJECT_NOUNS,
    min_relevant: int = MIN_RELEVANT,
    template: str = "a {}",
) -> list[ObjectQuery]:
    """The queries of one split from each photo's captions (``captions[i]``: photo i's captions), judged as
    every caption-judged set is (``relevance_sets.judge``)."""
    tokens = tokenise(captions)
    queries = []
    for noun in nouns:
        judged = judge(tokens, forms(noun))
        relevant, irrelevant = np.flatnonzero(judged == RELEVANT), np.flatnonzero(judged == IRRELEVANT)
        if len(relevant) >= min_relevant:
            queries.append(ObjectQuery(noun, template.format(noun), relevant, irrelevant))
    return queries


def evaluate_object_queries(score: Callable[[list[str]], np.ndarray], queries: Sequence[ObjectQuery]) -> dict:
    """Mean P@5, P@10 and mAP of the queries, ``score`` mapping N texts to (N, n_photos) scores."""
    if not queries:
        return {"queries": 0, "p@5": float("nan"), "p@10": float("nan"), "map": float("nan")}
    scores = np.asarray(score([q.text for q in queries]), dtype=np.float64)
    p5, p10, aps = [], [], []
    for row, query in zip(scores, queries, strict=True):
        judged = np.concatenate([query.relevant, query.irrelevant])
        labels = np.concatenate([np.ones(len(query.relevant), bool), np.zeros(len(query.irrelevant), bool)])
        order = labels[np.argsort(-row[judged], kind="stable")]
        p5.append(order[:5].mean())
        p10.append(order[:10].mean())
        aps.append(average_precision(row[judged], labels))
    return {"queries": len(queries), "p@5": float(np.mean(p5)), "p@10": float(np.mean(p10)), "map": float(np.mean(aps))}
