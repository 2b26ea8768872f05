"""The runtime's torch-free ONNX graphs (built from the weights with NumPy) against the workshop's torch export
of the same networks, on real Flickr8k photos and captions: every output the runtime reads agrees to 1e-5 (max
abs) or to a cosine of 0.99999 per row. Plus the checkpoint reader they are built from."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vistext.encoders.checkpoint import LEGACY_MAGIC, read_checkpoint
from vistext.encoders.efficientnet import PREPROCESSING, onnx_path, weights_path
from vistext.encoders.onnx import open_session
from vistext.errors import ModelError
from vistext.models.joint import JointModel, load_joint_model
from vistext.models.joint_onnx import IMAGE_GRAPH, TEXT_GRAPH, OnnxTextEncoder, build_joint_graphs, joint_directory
from vistext.training.export import export_efficientnet
from vistext.training.joint_export import export_image_graph, export_text_graph


def assert_same(got: np.ndarray, expected: np.ndarray, name: str) -> None:
    """Max abs difference <= 1e-5, or every row's cosine >= 0.99999 (large activations: the grid, logits)."""
    assert got.shape == expected.shape, name
    if np.abs(got - expected).max() <= 1e-5:
        return
    a, b = got.reshape(len(got), -1).astype(np.float64), expected.reshape(len(expected), -1).astype(np.float64)
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosines.min() >= 0.99999, (name, float(np.abs(got - expected).max()), float(cosines.min()))


@pytest.fixture(scope="module")
def pixels(flickr8k_images: list[Path]) -> np.ndarray:
    images = []
    for path in flickr8k_images[:: len(flickr8k_images) // 12][:12]:
        with Image.open(path) as image:
            images.append(PREPROCESSING.pixels(image.convert("RGB")))
    return np.stack(images)


@pytest.fixture(scope="module")
def captions(flickr8k: Path) -> list[str]:
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t", 1)[1] for line in lines[::211]][:40]
    return [*texts, "dog", "a stop sign", " ".join(texts[:6])]  # a word, a tag prompt, a truncated long text


@pytest.fixture(scope="module")
def efficientnet_reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return open_session(export_efficientnet(tmp_path_factory.mktemp("torch") / "efficientnet.onnx"))


def test_efficientnet_graphs_match_torch_export(pixels: np.ndarray, efficientnet_reference: Any) -> None:
    normalised = PREPROCESSING.normalise(pixels)
    expected = efficientnet_reference.run(None, {"pixels": normalised})
    built = open_session(onnx_path()).run(None, {"pixels": normalised})
    from_uint8 = open_session(onnx_path(uint8=True)).run(None, {"pixels_u8": pixels})
    for name, want, got, got_uint8 in zip(("pooled", "logits", "grid"), expected, built, from_uint8, strict=True):
        assert_same(got, want, name)
        assert_same(got_uint8, want, f"{name} (uint8 input)")
    assert (np.argmax(built[1], 1) == np.argmax(expected[1], 1)).all()


def _compare_joint(model: JointModel, directory: Path, out: Path, captions: list[str], pixels: np.ndarray) -> None:
    built = build_joint_graphs(directory, out / "built")
    (out / "torch").mkdir()
    export_text_graph(model, out / "torch" / TEXT_GRAPH)
    export_image_graph(model, out / "torch" / IMAGE_GRAPH)
    tokenizer = OnnxTextEncoder(built, int(getattr(model.text_encoder, "max_tokens", 64)))
    for batch in (captions[:1], captions[:17], captions):  # one text, and batches mixing lengths (padding)
        ids, mask = tokenizer.tokenize(batch)
        feed = {"input_ids": ids, "attention_mask": mask}
        want = open_session(out / "torch" / TEXT_GRAPH).run(["joined", "minilm"], feed)
        got = open_session(built / TEXT_GRAPH).run(["joined", "minilm"], feed)
        assert_same(got[0], want[0], "text joined")
        assert_same(got[1], want[1], "text minilm")
    features = open_session(onnx_path()).run(None, {"pixels": PREPROCESSING.normalise(pixels)})
    feed = {"pooled": features[0]} | ({"grid": features[2]} if model.needs_grid else {})
    want = open_session(out / "torch" / IMAGE_GRAPH).run(["joined"], feed)[0]
    assert_same(open_session(built / IMAGE_GRAPH).run(["joined"], feed)[0], want, "image joined")


def test_shipped_joint_model_graphs_match_torch_export(tmp_path: Path, captions: list[str], pixels: np.ndarray) -> None:
    directory = joint_directory(None)
    _compare_joint(load_joint_model(directory), directory, tmp_path, captions, pixels)


@pytest.mark.parametrize(
    "settings",
    [
        {"image_head": "grid-gpo", "text_encoder": "minilm", "text_encoder_args": {"finetune_layers": 1}},
        {"image_head": "grid-attn", "text_encoder": "minilm-gpo", "branches": 2, "text_hidden": 0},
    ],
    ids=["grid-gpo+tuned-minilm", "grid-attn+minilm-gpo"],
)
def test_other_architectures_match_torch_export(
    settings: dict[str, Any],
    joint_config: Callable[[dict[str, Any]], dict[str, Any]],
    tmp_path: Path,
    captions: list[str],
    pixels: np.ndarray,
) -> None:
    torch.manual_seed(0)
    fresh = JointModel(joint_config({"image_head_args": {"hidden": 64, "width": 96}, **settings}))
    for parameter in fresh.parameters():  # weights far from their initialisation: every layer matters
        parameter.data.add_(torch.randn_like(parameter) * 0.05)
    fresh.save(tmp_path / "model")
    _compare_joint(load_joint_model(tmp_path / "model"), tmp_path / "model", tmp_path, captions[:20], pixels[:4])


def test_checkpoint_reader_matches_torch_load(tmp_path: Path) -> None:
    bundled = weights_path()
    expected = torch.load(bundled, map_location="cpu", weights_only=True)  # the legacy (pre-zip) format
    got = read_checkpoint(bundled)
    assert list(got) == list(expected)
    assert all(np.array_equal(got[k], v.numpy()) for k, v in expected.items())
    torch.save({"t": torch.arange(6.0).reshape(2, 3).t(), "i": torch.tensor(7)}, tmp_path / "zip.pt")
    state = read_checkpoint(tmp_path / "zip.pt")  # the zip format, a transposed (strided) view, a scalar
    assert np.array_equal(state["t"], [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]) and state["i"] == 7


def test_checkpoint_reader_refuses_code_and_junk(tmp_path: Path) -> None:
    # a class a weights file never holds, first or after a valid legacy header: refused before it is built
    header = pickle.dumps(LEGACY_MAGIC) + pickle.dumps(1001) + pickle.dumps({"little_endian": True})
    for name, data in (("first.pth", b""), ("later.pth", header)):
        (tmp_path / name).write_bytes(data + pickle.dumps(Path("/etc/passwd")))
        with pytest.raises(ModelError, match=rf"{name}: checkpoint holds pathlib.*PosixPath"):
            read_checkpoint(tmp_path / name)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"junk\.pth: unreadable PyTorch checkpoint"):
        read_checkpoint(junk)
