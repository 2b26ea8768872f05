"""Fitting the 0-1 readings of fused scores on out-of-domain dev data (``bench/calibration.py --write``).

Search: a logistic fit of relevance on ``AdaptiveFusion.calibration_features`` (the score, and the slope and
intercept quadratic in the query's concept weight), over the judged pairs of several dev sets, each set counting
equally. Unlike the earlier fit it is not re-weighted to balance relevant and irrelevant pairs: 0.5 is where a
result is as likely relevant as not at the base rate a query meets in a collection, which is what a person
filtering on 0.5 relies on. Tags (``tag --vocab``): the same for a word's score and its gap below the photo's
best other word (``models.open_domain.vocabulary_gap``), fitted over whole vocabularies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vistext.errors import UsageError
from vistext.models.concepts import AdaptiveFusion
from vistext.models.open_domain import vocabulary_gap

C = 100.0  # weak regularisation: a handful of coefficients over tens of thousands of pairs


def fit_logistic(features: Sequence[np.ndarray], judgements: Sequence[np.ndarray], intercept: bool) -> np.ndarray:
    """Coefficients (and the intercept, last, when ``intercept``) of a logistic fit over judged pairs, every
    set weighted to count equally."""
    from sklearn.linear_model import LogisticRegression

    xs, ys, ws = [], [], []
    for x, j in zip(features, judgements, strict=True):
        judged = j.ravel() >= 0
        if not judged.any():
            continue
        xs.append(x.reshape(-1, x.shape[-1])[judged])
        ys.append(j.ravel()[judged] == 1)
        ws.append(np.full(int(judged.sum()), 1.0 / judged.sum()))
    if not xs:
        raise UsageError("calibration needs judged pairs")
    y = np.concatenate(ys)
    if y.all() or not y.any():
        raise UsageError("calibration needs relevant and irrelevant pairs")
    weights = np.concatenate(ws) * len(y)
    model = LogisticRegression(C=C, max_iter=2000, fit_intercept=intercept)
    model.fit(np.concatenate(xs), y, sample_weight=weights)
    coefficients = model.coef_[0].astype(np.float64)
    return np.append(coefficients, model.intercept_[0]) if intercept else coefficients


def fit_search_calibration(
    scores: Sequence[np.ndarray], weights: Sequence[np.ndarray], judgements: Sequence[np.ndarray]
) -> tuple[float, ...]:
    """The six-number calibration of ``AdaptiveFusion`` from dev sets: per set, (queries, photos) fused
    ``scores``, the (queries,) query ``weights`` and the judgements (1, 0, -1 unjudged)."""
    features = [AdaptiveFusion.calibration_features(s, np.asarray(w)[:, None]) for s, w in zip(scores, weights,
                                                                                              strict=True)]  # fmt: skip
    coefficients = fit_logistic(features, judgements, intercept=False)
    w = np.linspace(0.0, 1.0, 101)
    if (coefficients[0] + coefficients[1] * w + coefficients[2] * w * w <= 0).any():
        # a slope <= 0 would reverse a query's ranking when read as relevance: refuse rather than save it
        raise UsageError("the fitted calibration is not increasing in the score for every query weight")
    return tuple(float(c) for c in coefficients)


def fit_tag_calibration(scores: Sequence[np.ndarray], judgements: Sequence[np.ndarray]) -> dict[str, object]:
    """``{"calibration": [a, b], "competition": c}`` for ``OpenDomainModel.vocabulary_relevance`` from dev
    vocabularies: per set, (words, photos) fused tag scores and judgements."""
    features = [np.stack([s, vocabulary_gap(s)], axis=-1) for s in scores]
    a, c, b = fit_logistic(features, judgements, intercept=True)
    return {"calibration": [float(a), float(b)], "competition": float(c)}
