"""Evaluation: retrieval (recall@K, median rank), tagging (mAP, F1, P@K), matching (two-choice accuracy) and
threshold calibration, each on arrays and on a model over a dataset split."""
