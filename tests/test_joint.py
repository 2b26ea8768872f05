"""The joint model: save/load round trips, hubness correction, reduced branches, the shipped model, and a real
2-epoch training run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from vistext.encoders import ImageFeatures
from vistext.errors import ModelError
from vistext.models.joint import JointModel, load_joint_model
from vistext.text import Vocabulary, tokenize

CAPTIONS = ["A dog runs on the grass .", "Two children play football", "a red car", "zzqx unknownword"]


def _features(n: int, seed: int = 0) -> ImageFeatures:
    rng = np.random.default_rng(seed)
    return ImageFeatures(
        pooled=rng.random((n, 1280), dtype=np.float32), grid=rng.random((n, 1280, 7, 7), dtype=np.float32)
    )


@pytest.mark.parametrize(
    ("text", "card_args"),
    [("minilm-gpo", {"width": 384}), ("minilm", {"finetune_layers": 0}),
     ("glove-gru", {"hidden": 32, "vectors": "glove-6b-50d", "freeze_embeddings": False})],
)  # fmt: skip
def test_training_builds_each_text_encoder_from_one_config(text: str, card_args: dict, tmp_path: Path) -> None:
    """Every text setting goes to every encoder, which takes what it knows; the card keeps only that."""
    from vistext.training.joint import JointTrainConfig, build_model

    config = JointTrainConfig(data="unused", out=str(tmp_path / "m"), text=text, rnn_hidden=32, branches=2)
    model = build_model(config, CAPTIONS)
    assert model.config["text_encoder_args"] == card_args and model.text_encoder.name == text
    assert len(model.image_heads) == 2 and model.name == "m"
    if text.startswith("glove-"):
        assert len(model.text_encoder.vocab) > len("a red car".split())  # built from the training captions


def _tiny_vocab() -> Vocabulary:
    return Vocabulary.build(tokenize(t) for t in CAPTIONS[:3])


def test_save_load_round_trip_minilm(tmp_path: Path, joint_config: Callable) -> None:
    model = JointModel(
        joint_config(
            {
                "image_head": "grid-gpo",
                "image_head_args": {"hidden": 64, "width": 48},
                "text_hidden": 64,
                "dim": 32,
                "branches": 2,
                "name": "tiny",
            }
        )
    )
    f = _features(4)
    before_img, before_txt = model.encode_images(f), model.encode_text(CAPTIONS)
    assert before_img.shape == (4, 64) and np.allclose(np.linalg.norm(before_img, axis=1), 1, atol=2e-3)
    model.save(tmp_path / "m", extra={"metrics": {"test": {"i2t_r1": 1.0}}})
    assert not any(k.startswith("text_encoder.") for k in _weight_names(tmp_path / "m"))  # MiniLM never saved
    loaded = load_joint_model(tmp_path / "m")
    assert loaded.needs_grid and loaded.name == "tiny" and loaded.metadata["metrics"]["test"]["i2t_r1"] == 1.0
    np.testing.assert_allclose(loaded.encode_images(f), before_img, atol=2e-3)
    np.testing.assert_allclose(loaded.encode_text(CAPTIONS), before_txt, atol=2e-3)


def test_save_load_round_trip_glove(tmp_path: Path, joint_config: Callable) -> None:
    model = JointModel(
        joint_config(
            {
                "image_head": "pooled-mlp",
                "image_head_args": {"hidden": 0},
                "text_hidden": 0,
                "dim": 16,
                "text_encoder": "glove-lstm",
                "text_encoder_args": {"vocab": _tiny_vocab(), "hidden": 24},
            }
        )
    )
    with torch.no_grad():
        model.text_encoder.embedding.weight.add_(0.5)  # "fine-tuned" embeddings must survive the round trip
    expected = model.encode_text(CAPTIONS)
    model.save(tmp_path / "g")
    assert (tmp_path / "g" / "vocab.txt").is_file()
    loaded = load_joint_model(tmp_path / "g")
    np.testing.assert_allclose(loaded.encode_text(CAPTIONS), expected, atol=2e-3)
    assert not loaded.needs_grid
    with pytest.raises(ModelError, match="feature grid"):
        JointModel(joint_config({"image_head": "grid-attn"})).encode_images(
            ImageFeatures(pooled=np.zeros((1, 1280), np.float32))
        )


@pytest.mark.slow
def test_hubness_correction_penalises_hubs_and_round_trips(tmp_path: Path, joint_config: Callable) -> None:
    # the random head must not depend on which tests ran before (the hub check below holds for only some inits)
    torch.manual_seed(0)
    model = JointModel(
        joint_config({"image_head": "pooled-mlp", "image_head_args": {"hidden": 0}, "text_hidden": 0, "dim": 8})
    )
    f = _features(6)
    plain_img, plain_txt = model.encode_images(f), model.encode_text(CAPTIONS)
    captions = torch.nn.functional.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    hub = torch.from_numpy(plain_img[0])  # make image 0 a hub: every reference caption sits next to it
    captions = torch.nn.functional.normalize(captions * 0.1 + hub, dim=1)
    model.set_hubness_banks(torch.from_numpy(plain_img[:4].copy()).repeat(5, 1), captions, k=3)
    img, txt = model.encode_images(f), model.encode_text(CAPTIONS)
    assert img.shape == (6, 10) and txt.shape == (4, 10) and model.output_dim == 10
    np.testing.assert_allclose(model.encode_images(f, corrected=False), plain_img, atol=1e-6)  # opting out
    np.testing.assert_allclose(model.encode_text(CAPTIONS, corrected=False), plain_txt, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)

    # the hub ranks no better for any text query, and worse for some: compared by rank, because the
    # correction also rescales every similarity (a raw-score margin would shrink even with no correction)
    def hub_rank(images: np.ndarray, texts: np.ndarray) -> np.ndarray:
        scores = images @ texts.T  # (images, texts)
        return (scores > scores[0]).sum(axis=0)  # how many images beat the hub, per text

    before, after = hub_rank(plain_img, plain_txt), hub_rank(img, txt)
    assert (after >= before).all() and after.sum() > before.sum()
    model.save(tmp_path / "h")
    loaded = load_joint_model(tmp_path / "h")
    assert loaded.corrected and loaded.config["hubness"] == {"k": 3, "bank": 20}
    np.testing.assert_allclose(loaded.encode_images(f), img, atol=2e-3)
    np.testing.assert_allclose(loaded.encode_text(CAPTIONS), txt, atol=2e-3)
    assert loaded.logit_scale == pytest.approx(model.logit_scale, rel=1e-3)


def test_reduced_branches_keep_similarities_and_round_trip(tmp_path: Path, joint_config: Callable) -> None:
    model = JointModel(
        joint_config(
            {"image_head": "pooled-mlp", "image_head_args": {"hidden": 0}, "text_hidden": 0, "dim": 8, "branches": 3}
        )
    )
    # joined embeddings that live in a 5-dim subspace: 6 principal directions hold all of it, so every cosine
    # between such vectors must survive the reduction from 24 to 6 dims
    rng = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(24, 5, generator=rng)).Q
    joined = torch.nn.functional.normalize(torch.randn(40, 5, generator=rng) @ basis.T, dim=1)
    model.fit_reduction(joined[:25], joined[25:], 6)
    assert model.output_dim == 6 and model.config["reduced_dim"] == 6
    reduced = model.join(list((joined * 3**0.5).split(8, dim=1)))  # join() averages the branches: undo its scale
    torch.testing.assert_close(reduced @ reduced.T, joined @ joined.T, atol=1e-5, rtol=0)
    f = _features(3)
    expected = model.encode_images(f)
    assert expected.shape == (3, 6)
    model.save(tmp_path / "r")
    loaded = load_joint_model(tmp_path / "r")
    assert loaded.output_dim == 6
    np.testing.assert_allclose(loaded.encode_images(f), expected, atol=3e-3)
    model.set_hubness_banks(reduced[:10], reduced[10:20], k=3)
    with pytest.raises(ModelError, match="before the hubness banks"):
        model.fit_reduction(joined[:25], joined[25:], 6)


def _weight_names(directory: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return list(f.keys())


def test_load_rejects_other_versions_and_names(tmp_path: Path, joint_config: Callable) -> None:
    model = JointModel(joint_config({"image_head_args": {"hidden": 0, "width": 8}, "text_hidden": 0, "dim": 8}))
    model.save(tmp_path / "m")
    config_file = tmp_path / "m" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(ModelError, match="format version 99 is not supported"):
        load_joint_model(tmp_path / "m")
    config_file.write_text(json.dumps({**config, "text_encoder": "vistext.encoders.text.MiniLMEncoder"}))
    with pytest.raises(ModelError, match="unknown text_encoder"):
        load_joint_model(tmp_path / "m")
    with pytest.raises(ModelError, match="not found"):
        load_joint_model(tmp_path / "nope")


def test_shipped_model_loads_offline_without_minilm() -> None:
    model = load_joint_model()
    assert model.metadata["training"]["dataset"] and model.metadata["metrics"]["test"]["i2t_r1"] > 0
    vecs = model.encode_images(_features(2))
    assert vecs.shape == (2, model.output_dim)
    assert not model.text_encoder._backbone  # image embedding never loads the text backbone
    assert model.encode_text(["a dog"]).shape == (1, model.output_dim)


@pytest.mark.slow
def test_two_epochs_on_real_pairs_beat_chance(flickr8k: Path, tmp_path: Path) -> None:
    from vistext.training.joint import JointTrainConfig, train_joint

    config = JointTrainConfig(
        data=f"flickr8k:{flickr8k}",
        out=str(tmp_path / "run"),
        epochs=2,
        batch_size=64,
        views="orig",
        max_train_images=200,
        max_eval_images=100,
        dim=128,
        hidden=256,
        branches=2,
        reduced_dim=96,
    )
    result = train_joint(config, progress=False)
    assert result.epochs_run == 2 and len(result.history) == 2
    # chance: R@10 over 100 images = 10%, pair accuracy = 50%
    assert result.test is not None and result.test["t2i_r10"] > 25 and result.test["pair_acc"] > 70
    loaded = load_joint_model(tmp_path / "run")
    assert loaded.metadata["metrics"]["test"] == result.test
    assert loaded.output_dim == 96 + 2  # two 128-d branches reduced to 96 dims, plus the hubness correction
    again = train_joint(config, progress=False)  # resumes from the checkpoint: nothing left to train
    assert again.history == result.history and again.test == result.test
