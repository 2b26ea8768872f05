"""Retrieval and tagging metrics on hand-made arrays with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vistext.errors import UsageError
from vistext.evaluation.retrieval import (
    RETRIEVAL_KEYS,
    image_to_text_ranks,
    pair_accuracy,
    retrieval_metrics,
    text_to_image_ranks,
)
from vistext.evaluation.tagging import (
    average_precision,
    f1_scores,
    mean_average_precision,
    precision_at_k,
    top1_accuracy,
)

# 3 images, 6 captions (two each). sim[i, j] = image i vs caption j.
OWNER = np.array([0, 0, 1, 1, 2, 2])
SIM = np.array([
    [0.9, 0.1, 0.2, 0.3, 0.0, 0.0],  # image 0: its caption 0 is first -> rank 1
    [0.8, 0.5, 0.4, 0.3, 0.0, 0.0],  # image 1: best own 0.4 beaten by 0.8 and 0.5 -> rank 3
    [0.0, 0.0, 0.9, 0.0, 0.1, 0.2],  # image 2: best own 0.2, beaten by 0.9 -> rank 2
])  # fmt: skip


def test_ranks_by_hand() -> None:
    assert image_to_text_ranks(SIM, OWNER).tolist() == [1, 3, 2]
    # caption 0: own image 0 scores 0.9 (best) -> 1; caption 1: 0.1 vs 0.5 -> 2; caption 2: 0.4 vs 0.9 -> 2
    # caption 3: 0.3 vs 0.3 (tie counts against) -> 2; caption 4: 0.1 -> 1; caption 5: 0.2 -> 1
    assert text_to_image_ranks(SIM, OWNER).tolist() == [1, 2, 2, 2, 1, 1]


def test_retrieval_metrics_by_hand() -> None:
    m = retrieval_metrics(SIM, OWNER)
    assert list(m) == list(RETRIEVAL_KEYS)
    assert m["i2t_r1"] == pytest.approx(100 / 3, abs=0.01)
    assert m["i2t_r5"] == m["i2t_r10"] == 100.0
    assert m["i2t_medr"] == 2.0
    assert m["t2i_r1"] == pytest.approx(50.0)
    assert m["t2i_r5"] == 100.0
    assert m["t2i_medr"] == 1.0  # floor of median(1,1,1,2,2,2) = 1.5
    assert (m["n_images"], m["n_captions"]) == (3, 6)
    assert 0.0 <= m["pair_acc"] <= 100.0


def test_perfect_and_reversed_pair_accuracy() -> None:
    owner = np.repeat(np.arange(10), 5)
    perfect = (owner[None, :] == np.arange(10)[:, None]).astype(float)
    assert pair_accuracy(perfect, owner) == 100.0
    assert pair_accuracy(-perfect, owner) == 0.0
    m = retrieval_metrics(perfect + 0.01 * np.random.default_rng(0).random(perfect.shape), owner)
    assert m["i2t_r1"] == m["t2i_r1"] == 100.0 and m["i2t_medr"] == m["t2i_medr"] == 1.0


def test_random_scores_are_near_chance() -> None:
    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(200), 5)
    m = retrieval_metrics(rng.random((200, 1000)), owner)
    assert m["t2i_r10"] == pytest.approx(5.0, abs=2.0)  # 10 of 200 images
    assert m["pair_acc"] == pytest.approx(50.0, abs=4.0)


def test_bad_shapes_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="caption_to_image"):
        retrieval_metrics(SIM, OWNER[:3])
    with pytest.raises(UsageError, match="outside"):
        retrieval_metrics(SIM, np.array([0, 0, 1, 1, 2, 7]))


def test_average_precision_by_hand() -> None:
    # ranking: s=0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): precision at hits 1/1 and 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_mean_average_precision_over_labels_and_samples() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.7]])
    labels = np.array([[1, 0], [0, 1], [0, 0]])
    assert mean_average_precision(scores, labels) == pytest.approx(1.0)  # each label's positive ranks first
    # per sample: row0 AP 1, row1 AP 1, row2 no positive (skipped)
    assert mean_average_precision(scores, labels, axis="sample") == pytest.approx(1.0)
    labels2 = np.array([[0, 1], [0, 1], [1, 0]])
    # label 0: positive is row 2 (score 0.6), ranked 2nd of (0.9, 0.6, 0.2) -> AP 1/2
    # label 1: positives rows 0 (0.1) and 1 (0.8); ranking 0.8, 0.7, 0.1 -> hits at 1 and 3 -> (1 + 2/3)/2
    assert mean_average_precision(scores, labels2) == pytest.approx((0.5 + (1 + 2 / 3) / 2) / 2)


def test_f1_scores_by_hand() -> None:
    pred = np.array([[1, 0, 1], [1, 1, 0]])
    labels = np.array([[1, 0, 0], [0, 1, 0]])
    # label 0: tp1 fp1 fn0 -> 2/3; label 1: tp1 -> 1; label 2: fp1 -> 0.  micro: tp2 fp2 fn0 -> 4/6
    micro, macro = f1_scores(pred, labels)
    assert micro == pytest.approx(4 / 6)
    assert macro == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_precision_at_k_and_top1() -> None:
    scores = np.array([[0.9, 0.5, 0.1], [0.1, 0.2, 0.3]])
    labels = np.array([[1, 0, 1], [1, 0, 0]])
    assert precision_at_k(scores, labels, 1) == pytest.approx(0.5)
    assert precision_at_k(scores, labels, 2) == pytest.approx((0.5 + 0.0) / 2)
    assert top1_accuracy(scores, labels) == pytest.approx(0.5)
    assert top1_accuracy(scores, np.array([0, 2])) == pytest.approx(1.0)
    with pytest.raises(UsageError):
        precision_at_k(scores, labels, 4)
