"""The torch-free query model: the shipped joint model's ONNX graphs (built from its weights without torch) give
the PyTorch model's numbers on real Flickr8k captions and photos, and a fresh query process never imports torch
or transformers."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vistext.encoders import create_image_encoder
from vistext.models.joint import JointModel, load_joint_model
from vistext.models.joint_onnx import (
    GRAPHS_CARD,
    OnnxJointModel,
    graph_directory,
    joint_directory,
    joint_graphs,
    load_query_model,
)
from vistext.service.loaded_models import LoadedModels

HEAVY = ("torch", "transformers", "sklearn", "scipy", "pandas", "pyarrow")


@pytest.fixture(scope="module")
def torch_model() -> JointModel:
    return load_joint_model()


@pytest.fixture(scope="module")
def onnx_model() -> OnnxJointModel:
    model = load_query_model()
    assert isinstance(model, OnnxJointModel)
    return model


@pytest.fixture(scope="module")
def captions(flickr8k: Path) -> list[str]:
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t", 1)[1] for line in lines[::97]][:300]
    # a one-word query, a tag prompt and a text longer than the pooling's 32 tokens (truncated the same way)
    return [*texts, "dog", "a stop sign", " ".join(texts[:6])]


@pytest.mark.parametrize("corrected", [True, False])
def test_text_embeddings_match_pytorch(
    torch_model: JointModel, onnx_model: OnnxJointModel, captions: list[str], corrected: bool
) -> None:
    # batches mix short and long texts, so padding and the mask are exercised; a batch of 250 runs on the
    # optimised session (as caption banks do), the remaining 53 on the quick-loading one (as queries do)
    expected = torch_model.encode_text(captions, batch_size=64, corrected=corrected)
    got = onnx_model.encode_text(captions, batch_size=250, corrected=corrected)
    assert got.shape == expected.shape == (len(captions), torch_model.output_dim if corrected else 512)
    assert np.abs(got - expected).max() < 1e-4
    single = onnx_model.encode_text([captions[0]], corrected=corrected)
    assert np.abs(single[0] - expected[0]).max() < 1e-4


def test_plain_minilm_output_matches_pytorch(onnx_model: OnnxJointModel, captions: list[str]) -> None:
    # the concept space meets queries in plain MiniLM's space: the text graph's second output must be exactly
    # MiniLMEncoder.encode (texts up to the graph's token limit; the long last caption is truncated there)
    from vistext.encoders.text_encoders import MiniLMEncoder

    texts = captions[:-1]
    expected = MiniLMEncoder().encode(texts).numpy()
    joint, plain = onnx_model.encode_text_and_minilm(texts, batch_size=250)
    assert plain.shape == expected.shape == (len(texts), 384)
    assert np.abs(plain - expected).max() < 1e-4
    assert np.abs(joint - onnx_model.encode_text(texts)).max() < 1e-6


@pytest.mark.parametrize("corrected", [True, False])
def test_image_embeddings_match_pytorch(
    torch_model: JointModel, onnx_model: OnnxJointModel, flickr8k_images: list[Path], corrected: bool
) -> None:
    from PIL import Image

    encoder = create_image_encoder()
    with Image.open(flickr8k_images[0]) as first, Image.open(flickr8k_images[1]) as second:
        features = encoder.encode(np.stack([encoder.preprocess(first), encoder.preprocess(second)]))
    expected = torch_model.encode_images(features, corrected=corrected)
    got = onnx_model.encode_images(features, corrected=corrected)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4


def test_tokenizer_matches_transformers(
    torch_model: JointModel, onnx_model: OnnxJointModel, captions: list[str]
) -> None:
    batch = torch_model.text_encoder.prepare(captions)
    ids, mask = onnx_model.text_encoder.tokenize(captions)
    assert np.array_equal(ids, batch["input_ids"].numpy())
    assert np.array_equal(mask, batch["attention_mask"].numpy())


def test_scales_and_key_match_the_pytorch_model(torch_model: JointModel, onnx_model: OnnxJointModel) -> None:
    assert onnx_model.plain_logit_scale == pytest.approx(torch_model.plain_logit_scale)
    assert onnx_model.logit_scale == pytest.approx(torch_model.logit_scale)
    assert onnx_model.needs_grid == torch_model.needs_grid and onnx_model.name == torch_model.name
    # index spaces and caption caches are keyed by the card: an existing index stays searchable
    assert onnx_model.metadata == torch_model.metadata
    digest = hashlib.sha1(json.dumps(torch_model.metadata, sort_keys=True, default=str).encode()).hexdigest()[:10]
    assert LoadedModels().joint_key == f"{torch_model.name}@{digest}"


def test_graphs_are_cached_and_keyed_by_the_weights(onnx_model: OnnxJointModel, tmp_path: Path) -> None:
    shipped = joint_directory(None)
    assert joint_graphs(None) == onnx_model.graphs
    assert (onnx_model.graphs / GRAPHS_CARD).is_file()
    copy = tmp_path / "copy"
    shutil.copytree(shipped, copy)
    assert graph_directory(copy) == onnx_model.graphs  # same content, same graphs
    card = json.loads((copy / "config.json").read_text())
    card["name"] = "retrained"
    (copy / "config.json").write_text(json.dumps(card))
    assert graph_directory(copy) != onnx_model.graphs


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_query_commands_never_import_torch(
    onnx_model: OnnxJointModel, tmp_path: Path, flickr8k_images: list[Path]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in flickr8k_images[:6]:
        shutil.copy(path, photos / path.name)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bank.txt").write_text("a dog runs on the grass\na man rides a bike\n")
    photo = photos / flickr8k_images[0].name
    commands = [
        ["index", str(tmp_path / "empty")],
        ["index", str(photos)],
        ["search", "--db", str(photos / ".vistext" / "catalogue.sqlite"), "a dog"],
        ["tag", "--vocab", "dog,bicycle,boat", str(photo)],
        ["caption", "--captions", str(tmp_path / "bank.txt"), str(photo)],
        ["match", "--model", "joint", str(photo), "dog,grass", "man,bike"],
        ["match", str(photo), "dog,grass", "man,bike"],  # writes the GloVe word list once (with pyarrow)
        ["match", str(photo), "dog,grass", "man,bike"],
    ]
    for number, argv in enumerate(commands, start=1):
        out = _run(
            "import sys; from vistext.cli import main; "
            f"code = main({[*argv, '--json', '--quiet']!r}); "
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules]); sys.exit(code)",
            tmp_path,
        )
        heavy = out.splitlines()[-1]
        assert "torch" not in heavy and "transformers" not in heavy, (argv, out)
        if number in (3, 4, 5, 8):  # search, tag, caption and a match with its caches written: nothing heavy
            assert heavy == "HEAVY []", (argv, out)
