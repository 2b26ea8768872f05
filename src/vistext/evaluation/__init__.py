"""Evaluation: retrieval (recall@K, median rank), tagging (mAP, F1, P@K), matching (two-choice accuracy) and
threshold calibration. Each of ``retrieval``, ``tagging`` and ``matching`` has metric functions on arrays and an
``evaluate(model, dataset, split, ...) -> Evaluation`` of a model over a dataset split. ``calibration`` says whether
0-1 scores mean what they say (reliability tables, ECE) over the judged sets ``relevance_sets`` builds."""

from __future__ import annotations

from vistext.evaluation.base import Evaluation

__all__ = ["Evaluation"]
