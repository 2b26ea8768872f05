"""Open-domain evaluation: the folder-per-class reader (stratified dev/test halves) and the zero-shot / text-search
metrics, on hand-made score matrices with known answers and on the real opendomain-classes photos."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from vistext.datasets import open_tagged_dataset
from vistext.datasets.classes import ClassFolder
from vistext.errors import DatasetError, UsageError
from vistext.evaluation.opendomain import (
    average_precision_at,
    evaluate_open_domain,
    fit_relevance_calibration,
    search_metrics,
    zero_shot_accuracy,
)

# ---- metrics on hand-made scores --------------------------------------------------------------------------


def test_zero_shot_accuracy_known_answer() -> None:
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
    targets = [0, 1, 2, 1]
    # image 0 right; image 1: class 1 second; image 2: class 2 second; image 3: tie with the best counts as right
    assert zero_shot_accuracy(scores, targets, ks=(1, 2)) == {"top1": 0.5, "top2": 1.0}


def test_search_metrics_known_answer() -> None:
    targets = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1, 0.8, 0.7], [0.1, 0.2, 0.9, 0.8]])  # class 0: hits at ranks 1 and 4
    m = search_metrics(scores, targets, k=2, depth=3)
    assert m["p@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["map"] == pytest.approx(((1 + 2 / 4) / 2 + 1.0) / 2)
    assert m["ap@3"] == pytest.approx((1 / 2 + 1.0) / 2)  # class 0's second hit falls past depth 3


def test_average_precision_at_without_relevant_is_nan() -> None:
    assert math.isnan(average_precision_at(np.array([0.3, 0.2]), np.array([False, False]), 10))


def test_evaluate_open_domain_uses_both_templates() -> None:
    seen: list[list[str]] = []
    targets = [0, 1]

    def score(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return np.eye(2)  # text c scores image c highest: perfect

    m = evaluate_open_domain(score, targets, ["cup", "dog"], tag_template="{}", search_template="a photo of a {}")
    assert seen == [["cup", "dog"], ["a photo of a cup", "a photo of a dog"]]
    assert (m["top1"], m["p@10"], m["map"], m["primary"]) == (1.0, 0.5, 1.0, pytest.approx(2.5 / 3))
    with pytest.raises(UsageError, match="no '\\{\\}'"):
        evaluate_open_domain(score, targets, ["cup", "dog"], search_template="a photo")


def test_relevance_calibration_puts_one_half_between_the_groups() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.2, 0.05, 900), rng.normal(0.6, 0.05, 100)])
    relevant = np.arange(1000) >= 900
    a, b = fit_relevance_calibration(scores, relevant)
    assert a > 0 and 0.35 < -b / a < 0.45  # balanced classes: the midpoint of the two groups
    with pytest.raises(UsageError, match="relevant and irrelevant"):
        fit_relevance_calibration(scores[:10], relevant[:10])


def test_metrics_reject_wrong_shapes() -> None:
    with pytest.raises(UsageError, match="expected 3 class indices"):
        zero_shot_accuracy(np.zeros((3, 2)), [0, 1])
    with pytest.raises(UsageError, match="n_classes, n_images"):
        search_metrics(np.zeros(3), [0, 1, 2])


# ---- the folder-per-class reader ------------------------------------------------------------------------


@pytest.fixture
def small_classes(tmp_path: Path, flickr8k_images: list[Path]) -> Path:
    """Three class folders of real Flickr8k photos (5, 4 and 1 images) and a classes.csv naming two of them."""
    root = tmp_path / "classes"
    for folder, (start, n) in {"stop_sign": (0, 5), "dog": (5, 4), "ceiling_fan": (9, 1)}.items():
        (root / folder).mkdir(parents=True)
        for p in flickr8k_images[start : start + n]:
            shutil.copy(p, root / folder / p.name)
    (root / "classes.csv").write_text("folder,label\nstop_sign,stop sign\ndog,dog\n", encoding="utf-8")
    return root


def test_class_folder_labels_and_stratified_halves(small_classes: Path) -> None:
    ds = open_tagged_dataset(f"classes:{small_classes}?seed=3")
    assert isinstance(ds, ClassFolder) and ds.splits() == ["all", "dev", "test"]
    # labels from classes.csv; a folder missing from it falls back to its name with spaces
    assert ds.class_names == ["ceiling fan", "dog", "stop sign"]
    dev, test = set(ds.images("dev")), set(ds.images("test"))
    assert not dev & test and dev | test == set(ds.images("all"))
    assert (len(dev), len(test)) == (3 + 2 + 1, 2 + 2 + 0)  # per class: dev takes the odd image
    assert sorted(ds.targets("all")) == [0] + [1] * 4 + [2] * 5
    again = ClassFolder(small_classes, seed=3)
    assert again.images("dev") == ds.images("dev")
    assert ClassFolder(small_classes, seed=4).images("dev") != ds.images("dev")


def test_class_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="folder not found"):
        ClassFolder(tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders with images"):
        ClassFolder(tmp_path)
    (tmp_path / "classes.csv").write_text("name,text\na,b\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="folder,label"):
        ClassFolder(tmp_path)


def test_real_opendomain_halves(opendomain_classes: Path) -> None:
    ds = ClassFolder(opendomain_classes)
    assert len(ds.class_names) == 26 and "stop sign" in ds.class_names and "cell phone" in ds.class_names
    assert len(ds.images("all")) == 1034
    dev, test = ds.targets("dev"), ds.targets("test")
    assert len(dev) + len(test) == 1034 and len(dev) - len(test) == 2  # two classes have an odd count
    assert set(dev) == set(test) == set(range(26))
