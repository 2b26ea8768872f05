"""The workshop's ONNX export (vistext.training.export), the one session opener (vistext.encoders.onnx), and a
torch module run as an image encoder through them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vistext.encoders import Preprocessing, create_image_encoder, image_preprocessing
from vistext.encoders.efficientnet import PREPROCESSING
from vistext.encoders.onnx import open_session
from vistext.errors import ModelError
from vistext.features import encode_files
from vistext.training.export import ModuleEncoder, export_onnx, state_key


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_export_writes_atomically_and_runs_like_torch(tmp_path: Path) -> None:
    module = _tiny_cnn().train()
    path = tmp_path / "tiny.onnx"
    data = export_onnx(module, 32, path)
    assert path.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
    assert module.training  # exported from a copy: the caller's module keeps its mode
    session = open_session(path, threads=1)
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    x = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)  # batch size differs from export
    with torch.no_grad():
        expected = module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"pixels": x})[0], expected, atol=1e-5)
    assert export_onnx(module, 32) == data  # without a path: the same bytes, nothing written


def test_module_encoder_batches_through_the_feature_pipeline(flickr8k_images: list[Path]) -> None:
    module = _tiny_cnn()
    encoder = ModuleEncoder(module, "tiny:cnn/v1", Preprocessing(size=64, mean=0.5, std=0.5), threads=1)
    assert encoder.name == f"tiny-cnn-v1-{state_key(module)}" and encoder.dim == 4
    arrays = encode_files(flickr8k_images[:5], encoder, cache=False, progress=False)
    assert arrays.pooled.shape == (5, 4) and np.isfinite(arrays.pooled).all()


def test_registered_encoders_declare_their_preprocessing() -> None:
    assert image_preprocessing("efficientnet-lite0") == PREPROCESSING
    assert image_preprocessing("efficientnet-lite0-torch") == create_image_encoder("efficientnet-lite0").preprocessing
    with pytest.raises(ModelError, match="unknown image encoder 'no-such'"):
        image_preprocessing("no-such")


def test_a_graph_onnx_runtime_cannot_load_is_a_model_error_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07 not a model")
    with pytest.raises(ModelError, match=r"broken\.onnx: cannot load this ONNX graph"):
        open_session(broken)
