"""Taggers: the NumPy head against its torch twin, tag selection, save/load, and real training on a few hundred
Flickr8k photos that must beat the frequency prior."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vistext.datasets import open_caption_dataset, open_tagged_dataset, tags_from_captions
from vistext.errors import ModelError, UsageError
from vistext.evaluation.tagging import evaluate, label_matrix, mean_average_precision, precision_at_k, tagger_scores
from vistext.images import open_image
from vistext.models.heads import TagHead
from vistext.models.tagger import TaggerModel, head_logits, load_tagger, select_tags
from vistext.training.tagger import TaggerTrainConfig, train_tagger

TINY = "tiny-cnn-test"  # registered by conftest.py


# ---- head, selection, save/load ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "mlp", "csra"])
def test_numpy_head_matches_torch(kind: str) -> None:
    torch.manual_seed(1)
    rng = np.random.default_rng(0)
    head = TagHead(kind, 16, 5, hidden=8, mean=rng.random(16), std=rng.random(16) + 0.5, prior=rng.random(5) * 0.5)
    head.eval()
    x = rng.random((3, 16, 2, 2)).astype(np.float32) if kind == "csra" else rng.random((3, 16)).astype(np.float32)
    with torch.no_grad():
        expected = head(torch.from_numpy(x)).numpy()
    weights = {k: v.numpy() for k, v in head.state_dict().items()}
    got = head_logits(weights, {"kind": kind, "lam": head.lam}, x)
    assert np.allclose(got, expected, atol=1e-5)


def test_select_tags_top_k_and_threshold() -> None:
    scores = np.array([[0.9, 0.2, 0.6], [0.1, 0.15, 0.3]])
    thresholds = np.array([0.5, 0.1, 0.7])
    labels = ["dog", "cat", "ball"]
    assert select_tags(scores, labels, thresholds, 2, False)[0] == [("dog", 0.9), ("ball", 0.6)]
    assert select_tags(scores, labels, thresholds, 5, True) == [[("dog", 0.9), ("cat", 0.2)], [("cat", 0.15)]]
    with pytest.raises(UsageError):
        select_tags(scores, labels, None, 3, True)


def _toy_model() -> TaggerModel:
    rng = np.random.default_rng(0)
    weights = {
        "mean": np.zeros(1280, np.float32),
        "std": np.ones(1280, np.float32),
        "classifier.weight": rng.normal(size=(3, 1280)).astype(np.float32),
        "classifier.bias": np.zeros(3, np.float32),
    }
    return TaggerModel(["a", "b", "c"], weights, {"kind": "linear", "feature": "pooled"}, thresholds=np.full(3, 0.4))


def test_save_load_roundtrip_and_version_check(tmp_path: Path) -> None:
    model = _toy_model()
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format"] == "vistext-tagger" and config["backbone"] == "efficientnet-lite0"
    assert {"format_version", "method", "labels", "thresholds", "metrics"} <= set(config)
    loaded = load_tagger(tmp_path / "m")
    x = np.random.default_rng(1).random((2, 1280)).astype(np.float32)
    assert np.allclose(loaded.scores_from_features(x), model.scores_from_features(x))
    assert loaded.labels == ["a", "b", "c"] and np.allclose(loaded.thresholds, 0.4)
    config["format_version"] = 99
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="version 99"):
        load_tagger(tmp_path / "m")
    with pytest.raises(ModelError, match="not a tagger"):
        load_tagger(tmp_path)


# ---- training on real photos ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tagged(flickr8k: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred real Flickr8k photos with caption-derived tags: 200 train, 50 dev, 80 test."""
    tagged = tags_from_captions(open_caption_dataset(f"flickr8k:{flickr8k}"), top_n=60)
    rows = []
    for split, n in (("train", 200), ("dev", 50), ("test", 80)):
        rows += [(item.image, "|".join(item.tags), split) for item in tagged.items(split) if item.tags][:n]
    path = tmp_path_factory.mktemp("tagged") / "small.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "tags", "split"])
        writer.writerows(rows)
    return path


@pytest.mark.slow
def test_cached_tagger_beats_frequency_prior(small_tagged: Path, tmp_path: Path) -> None:
    data = f"csv:{small_tagged}"
    result = train_tagger(TaggerTrainConfig(data=data, out=tmp_path / "tagger", epochs=15, threads=1), progress=False)
    assert (tmp_path / "tagger" / "model.safetensors").is_file()
    model = load_tagger(tmp_path / "tagger")
    assert model.thresholds is not None and model.thresholds.shape == (model.n_tags,)
    dataset = open_tagged_dataset(data)
    test = dataset.items("test")
    scores = tagger_scores(model, [item.image for item in test], progress=False)
    labels = label_matrix(test, model.labels)
    prior = np.tile(label_matrix(dataset.items("train"), model.labels).mean(axis=0), (len(test), 1))
    prior += np.random.default_rng(0).random(prior.shape) * 1e-6  # break ties fairly
    for axis in ("label", "sample"):
        assert mean_average_precision(scores, labels, axis) > mean_average_precision(prior, labels, axis) + 0.05
    assert precision_at_k(scores, labels, 3) > precision_at_k(prior, labels, 3)
    evaluation = evaluate(model, dataset, "test", progress=False)
    metrics = evaluation.metrics
    assert evaluation.primary == "map" and evaluation.score == metrics["map"]
    assert set(metrics) >= {"map", "micro_f1", "macro_f1", "p_at_k", "accuracy", "n_images"}
    assert metrics["n_images"] == len(test)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("map", "micro_f1", "macro_f1", "p_at_k", "accuracy"))
    assert metrics["map"] == pytest.approx(mean_average_precision(scores, labels))
    assert 1 <= len(result.history) <= 15 and result.train_seconds > 0
    assert all("val_map" in row for row in result.history)  # the loop evaluated every epoch on validation
    best = max(range(len(result.history)), key=lambda i: result.history[i]["val_map"]) + 1
    assert model.training["best_epoch"] == best and model.training["epochs_run"] == len(result.history)
    assert not (tmp_path / "tagger" / "checkpoint.pt").exists()  # the finished model directory ships without it
    # the service's path: decoded images in, (tag, score) pairs out
    images = [Image.open(item.image).convert("RGB") for item in test[:3]]
    predicted = model.predict_images(images, k=4)
    assert len(predicted) == 3 and all(len(p) == 4 for p in predicted)
    assert np.allclose([s for _, s in predicted[0]], np.sort(scores[0])[::-1][:4], atol=1e-4)


@pytest.mark.slow
def test_frozen_aug_and_grid_train(small_tagged: Path, tmp_path: Path) -> None:
    data = open_tagged_dataset(f"csv:{small_tagged}")
    aug = train_tagger(
        TaggerTrainConfig(data=data, out=tmp_path / "aug", method="frozen-aug", views=2, epochs=2, max_images=60),
        progress=False,
    )
    assert aug.model.method == "frozen-aug" and load_tagger(tmp_path / "aug").uses_encoder
    train_tagger(
        TaggerTrainConfig(data=data, out=tmp_path / "grid", feature="grid", epochs=2, max_images=60), progress=False
    )
    loaded = load_tagger(tmp_path / "grid")
    assert loaded.needs_grid and loaded.head["kind"] == "csra"
    image = Image.open(data.items("test")[0].image).convert("RGB")
    assert len(loaded.predict_images([image], k=3)[0]) == 3
    with pytest.raises(UsageError, match="grid"):
        train_tagger(TaggerTrainConfig(data=data, method="finetune", feature="grid"), progress=False)


@pytest.mark.parametrize("method", ["finetune", "cached"])
def test_own_backbone_exports_onnx(method: str, small_tagged: Path, tmp_path: Path) -> None:
    """A registered tiny random CNN: fine-tuned (or frozen) and exported; ONNX inference matches training."""
    data = open_tagged_dataset(f"csv:{small_tagged}")
    result = train_tagger(
        TaggerTrainConfig(data=data, out=tmp_path / method, method=method, backbone=TINY, epochs=2, max_images=80,
                          top_stages=2, views=2, pretrained=False),
        progress=False,
    )  # fmt: skip
    model = load_tagger(tmp_path / method)
    assert model.onnx_file is not None and model.onnx_file.is_file() and not model.uses_encoder
    assert model.backbone == TINY and model.preprocessing.size == 64
    if method == "finetune":
        assert any(k.startswith("stages.") for k in model.extra_weights)
    test = data.items("test")[:5]
    images = [open_image(item.image, min_side=64) for item in test]  # decoded as encode_files decodes
    from_files = tagger_scores(model, [item.image for item in test], progress=False)
    assert np.allclose(model.predict_scores(images), from_files, atol=1e-4)
    assert from_files.shape == (5, len(result.model.labels)) and np.isfinite(from_files).all()
