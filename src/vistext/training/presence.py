"""Fitting the person head (``models.presence``) from captions and people-free photos.

Labels come from what people wrote: a Flickr8k photo is a positive when two or more of its five captions use a
word in ``PERSON_WORDS`` (man, girl, skier, crowd...), a negative when none does, and left out otherwise (one
caption may name someone in the background). ``extra_negatives`` are photos known to show no one (the bench
passes the people-free classes of opendomain-classes' dev half). The fit is an L2-regularised logistic
regression in which positives and negatives weigh half each, so its 0.5 does not lean on Flickr8k's share of
people photos (80 %).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from vistext.models.presence import PERSON_WORDS, PresenceModel

RELEVANT, IRRELEVANT, LEFT_OUT = 1, 0, -1


def person_label(captions: Sequence[str], least: int = 2) -> int:
    """1 when ``least`` or more captions name a person, 0 when none does, -1 (left out) in between."""
    naming = sum(1 for caption in captions if PERSON_WORDS.intersection(re.findall(r"[a-z]+", caption.lower())))
    return RELEVANT if naming >= least else IRRELEVANT if naming == 0 else LEFT_OUT


def fit_presence(
    pooled: np.ndarray,
    labels: np.ndarray,
    extra_negatives: np.ndarray | None = None,
    *,
    c: float = 0.01,
    encoder: str = "efficientnet-lite0",
    card: dict | None = None,
) -> PresenceModel:
    """A ``PresenceModel`` fitted on (n, d) ``pooled`` features with ``labels`` (1, 0, or -1: left out) and
    optional (m, d) ``extra_negatives``; ``c`` is the inverse L2 strength (chosen on Flickr8k dev)."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels)
    kept = labels >= 0
    x, y = np.asarray(pooled, dtype=np.float64)[kept], labels[kept].astype(int)
    if extra_negatives is not None and len(extra_negatives):
        x = np.concatenate([x, np.asarray(extra_negatives, dtype=np.float64)])
        y = np.concatenate([y, np.zeros(len(extra_negatives), int)])
    if len(set(y.tolist())) < 2:
        raise ValueError("the person head needs both photos with people and photos without")
    positive = y == 1
    weight = np.where(positive, 0.5 / positive.sum(), 0.5 / (~positive).sum()) * len(y)
    fitted = LogisticRegression(C=c, max_iter=5000).fit(x, y, sample_weight=weight)
    return PresenceModel(
        fitted.coef_[0].astype(np.float32), float(fitted.intercept_[0]), encoder, {"c": c, **(card or {})}
    )
