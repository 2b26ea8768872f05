"""Whether 0-1 scores mean what they say: reliability tables and the expected calibration error.

``reliability`` bins judged (score, relevant) pairs by score and gives each bin's share of relevant pairs; a
calibrated score has share ~= mean score in every bin, and ``expected_calibration_error`` is the count-weighted
mean gap. ``calibration_metrics`` adds what a person acting on a score relies on: the precision among pairs
scored >= 0.5 and >= 0.8 (what ``--min-score`` keeps), and how often a query's best result, when relevant,
still reaches 0.5 ("true matches not pushed under 0.5 when nothing better exists").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vistext.errors import UsageError

BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_score: float
    precision: float  # share of relevant pairs (NaN for an empty bin)


def _pairs(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    relevant = np.asarray(relevant).astype(bool).ravel()
    if len(scores) != len(relevant):
        raise UsageError(f"{len(scores)} scores but {len(relevant)} judgements")
    return scores, relevant


def reliability(scores: np.ndarray, relevant: np.ndarray, bins: tuple[float, ...] = BINS) -> list[ReliabilityBin]:
    """Score bin -> count, mean score and precision of the judged pairs in it (the last bin includes 1.0)."""
    scores, relevant = _pairs(scores, relevant)
    which = np.clip(np.searchsorted(bins, scores, side="right") - 1, 0, len(bins) - 2)
    out = []
    for i in range(len(bins) - 1):
        member = which == i
        n = int(member.sum())
        mean = float(scores[member].mean()) if n else float("nan")
        out.append(ReliabilityBin(bins[i], bins[i + 1], n, mean, float(relevant[member].mean()) if n else np.nan))
    return out


def expected_calibration_error(scores: np.ndarray, relevant: np.ndarray, bins: tuple[float, ...] = BINS) -> float:
    """Count-weighted mean |precision - mean score| over the bins (0 = perfectly calibrated)."""
    table = [b for b in reliability(scores, relevant, bins) if b.count]
    total = sum(b.count for b in table)
    if not total:
        raise UsageError("no judged pairs to measure calibration on")
    return float(sum(b.count * abs(b.precision - b.mean_score) for b in table) / total)


def precision_at_least(scores: np.ndarray, relevant: np.ndarray, threshold: float) -> tuple[float, int]:
    """(precision, count) of the pairs scored >= ``threshold`` (NaN precision when there are none)."""
    scores, relevant = _pairs(scores, relevant)
    kept = scores >= threshold
    n = int(kept.sum())
    return (float(relevant[kept].mean()) if n else float("nan")), n


def top_match_kept(scores: np.ndarray, judgements: np.ndarray) -> tuple[float, int]:
    """Over the queries (rows) whose best-scored judged photo is relevant: the share whose score is >= 0.5, and
    how many such queries there are. ``judgements``: 1 relevant, 0 irrelevant, -1 unjudged (ignored)."""
    scores = np.where(judgements >= 0, np.asarray(scores, dtype=np.float64), -np.inf)
    best = scores.argmax(axis=1)
    rows = np.arange(len(scores))
    hit = judgements[rows, best] == 1
    n = int(hit.sum())
    return (float((scores[rows, best][hit] >= 0.5).mean()) if n else float("nan")), n


def calibration_metrics(scores: np.ndarray, judgements: np.ndarray) -> dict[str, float]:
    """ECE, precision and count at >= 0.5 and >= 0.8, and the kept share of relevant top matches, over the
    judged pairs of a (texts, photos) score matrix."""
    judged = judgements >= 0
    s, r = np.asarray(scores)[judged], judgements[judged] == 1
    p5, n5 = precision_at_least(s, r, 0.5)
    p8, n8 = precision_at_least(s, r, 0.8)
    kept, n_top = top_match_kept(scores, judgements)
    return {"ece": expected_calibration_error(s, r), "p>=0.5": p5, "n>=0.5": float(n5), "p>=0.8": p8,
            "n>=0.8": float(n8), "top_kept": kept, "top_queries": float(n_top)}  # fmt: skip
