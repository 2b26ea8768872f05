"""Fitting the 0-1 readings of fused scores on out-of-domain dev data (``bench/calibration.py --write``).

Search: a logistic fit of relevance on ``AdaptiveFusion.calibration_features`` (the score, and the slope and
intercept quadratic in the query's concept weight), over the judged pairs of several dev sets, each set counting
equally. Unlike the earlier fit it is not re-weighted to balance relevant and irrelevant pairs: 0.5 is where a
result is as likely relevant as not at the base rate a query meets in a collection, which is what a person
filtering on 0.5 relies on. Tags (``tag --vocab``): the same for a word's score and its gap below the photo's
best other word (``models.open_domain.vocabulary_gap``), fitted over whole vocabularies; then, where a dev
vocabulary breaks a promise (``PROMISES``: of the words read >= 0.8 at least 80 % true, >= 0.5 at least half), the
readings above 0.5 are drawn toward it (a factor on the positive logit, the one with the lowest loss) until every
dev vocabulary keeps them. A fit that averages the sets can be right on average and wrong on one kind of photo
(landscapes whose glaciers the models read as mountains, with confidence), and a person reads the number on their
own kind of photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vistext.errors import UsageError
from vistext.evaluation.calibration import precision_at_least
from vistext.models.concepts import AdaptiveFusion
from vistext.models.open_domain import sure_logits, vocabulary_gap

C = 100.0  # weak regularisation: a handful of coefficients over tens of thousands of pairs
PROMISES = (0.5, 0.8)  # among pairs read >= t, at least a share t relevant, on every dev set
SCALES = np.linspace(1.0, 0.3, 71)  # the factors on a fitted positive logit tried to keep the promises


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
    """``{"calibration": [a, b], "competition": c, "sure_scale": k}`` for ``OpenDomainModel.vocabulary_relevance``
    from dev vocabularies: per set, (words, photos) fused tag scores and judgements."""
    features = [np.stack([s, vocabulary_gap(s)], axis=-1) for s in scores]
    a, c, b = fit_logistic(features, judgements, intercept=True)
    sure = sure_scale([x @ np.array([a, c]) + b for x in features], judgements)
    return {"calibration": [float(a), float(b)], "competition": float(c), "sure_scale": sure}


def keeps_promises(logits: Sequence[np.ndarray], judgements: Sequence[np.ndarray]) -> bool:
    """Whether sigmoid(``logits``) keeps ``PROMISES`` on every set (a set with no pair read that high keeps it)."""
    for logit, j in zip(logits, judgements, strict=True):
        judged = j >= 0
        p = 1.0 / (1.0 + np.exp(-logit[judged]))
        for t in PROMISES:
            precision, n = precision_at_least(p, j[judged] == 1, t)
            if n and precision < t:
                return False
    return True


def sure_scale(logits: Sequence[np.ndarray], judgements: Sequence[np.ndarray]) -> float:
    """The factor on fitted positive ``logits`` (one array per dev set) with the lowest loss, every set counting
    equally, that keeps ``PROMISES`` on every set; 1 when the fit keeps them already. Only readings above 0.5
    move, so which pairs read >= 0.5 (and whether a true top match does) stays the fit's. Refuses when no
    factor tried keeps them (the fit breaks the 0.5 promise on a set, which no factor changes)."""
    if keeps_promises(logits, judgements):
        return 1.0
    best: tuple[float, float] | None = None
    for scale in SCALES:
        moved = [sure_logits(z, scale) for z in logits]
        loss = sum(_log_loss(z, j) for z, j in zip(moved, judgements, strict=True))
        if (best is None or loss < best[0]) and keeps_promises(moved, judgements):
            best = (loss, float(scale))
    if best is None:
        raise UsageError("no factor on the fitted tag calibration keeps its promises on every dev set")
    return best[1]


def _log_loss(logit: np.ndarray, judgements: np.ndarray) -> float:
    judged = judgements >= 0
    z, y = logit[judged], judgements[judged] == 1
    return float(np.mean(np.logaddexp(0.0, np.where(y, -z, z))))
