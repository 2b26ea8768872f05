"""``vistext.models.clip.ClipModel`` on an Immich-layout folder matches the transformers model it was exported
from (cosine >= 0.9999) on real photos and real captions, non-ASCII ones included; preprocessing is read from the
folder's config, and a broken folder is a one-line ModelError naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vistext.errors import ModelError
from vistext.models.clip import ClipModel, ClipPreprocess

NON_ASCII = ["Ein Hund läuft über die Wiese", "un chien qui court sur la plage", "犬が公園を走っている", "café crème"]


def _unit(array: Any) -> np.ndarray:
    array = getattr(array, "pooler_output", array).detach().numpy()
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_texts_match_the_reference(tiny_clip: tuple[Path, Any], flickr8k: Path) -> None:
    import torch
    from transformers import PreTrainedTokenizerFast

    folder, reference = tiny_clip
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t", 1)[1] for line in lines[5000:5296]] + NON_ASCII
    model = ClipModel(folder)
    ours = model.encode_texts(texts)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=reference.vistext_tokenizer, pad_token="<|endoftext|>")
    tokens = tokenizer(
        [" ".join(t.split()) for t in texts], padding="max_length", max_length=model.context_length,
        truncation=True, return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        theirs = _unit(reference.get_text_features(input_ids=tokens["input_ids"]))
    assert ours.shape == (300, model.dim) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() >= 0.9999


def test_images_match_the_reference(tiny_clip: tuple[Path, Any], real_jpegs: list[Path]) -> None:
    import torch
    from transformers import CLIPImageProcessor

    folder, reference = tiny_clip
    model = ClipModel(folder)
    pictures = [Image.open(path).convert("RGB") for path in real_jpegs[:12]]
    pre = model.preprocess
    processor = CLIPImageProcessor(
        size={"shortest_edge": pre.size}, crop_size={"height": pre.size, "width": pre.size},
        image_mean=list(pre.mean), image_std=list(pre.std), resample=Image.Resampling.BICUBIC,
    )  # fmt: skip
    with torch.no_grad():
        theirs = _unit(
            reference.get_image_features(pixel_values=processor(images=pictures, return_tensors="pt")["pixel_values"])
        )
    ours = model.encode_images(pictures)
    assert (ours * theirs).sum(axis=1).min() >= 0.9999


def test_key_names_the_weights(tiny_clip: tuple[Path, Any], tmp_path: Path) -> None:
    folder, _ = tiny_clip
    copy = shutil.copytree(folder, tmp_path / folder.name)
    assert ClipModel(copy).key == ClipModel(folder).key  # same name, same weights: same space
    with (copy / "visual" / "model.onnx").open("ab") as graph:
        graph.write(b"\0")  # other weights under the same name
    assert ClipModel(copy).key != ClipModel(folder).key
    assert ClipModel(folder).space == f"clip:{ClipModel(folder).key}"


def test_preprocessing_comes_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "preprocess_cfg.json"
    config.write_text(json.dumps({"size": 32, "mean": [0, 0, 0], "std": [1, 1, 1], "resize_mode": "squash"}))
    squash = ClipPreprocess.from_file(config)
    picture = Image.new("RGB", (100, 50), (255, 0, 0))
    assert squash.pixels(picture).shape == (32, 32, 3)
    config.write_text(json.dumps({"size": 32, "mean": [0, 0, 0], "std": [1, 1, 1], "resize_mode": "longest"}))
    padded = ClipPreprocess.from_file(config).pixels(picture)
    assert padded[0, 0].tolist() == [0, 0, 0] and padded[16, 16].tolist() == [255, 0, 0]
    config.write_text(json.dumps({"size": 32, "mean": [0, 0, 0], "std": [1, 1, 1], "resize_mode": "fancy"}))
    with pytest.raises(ModelError, match="preprocess_cfg.json: unknown resize_mode 'fancy'"):
        ClipPreprocess.from_file(config)


def test_a_folder_missing_a_graph_is_named(tiny_clip: tuple[Path, Any], tmp_path: Path) -> None:
    folder, _ = tiny_clip
    copy = shutil.copytree(folder, tmp_path / "broken")
    (copy / "textual" / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"textual/model.onnx: missing"):
        ClipModel(copy)


def test_a_fixed_length_int32_text_graph_as_immich_ships_it(tiny_clip: tuple[Path, Any], tmp_path: Path) -> None:
    """Immich's text graphs take int32 ids padded to the full context length; the same weights behind such an
    input give the same embeddings (texts are then padded to the context length, and cast to int32)."""
    import onnx
    from onnx import TensorProto, helper

    folder, _ = tiny_clip
    copy = shutil.copytree(folder, tmp_path / "immich-style")
    graph_file = copy / "textual" / "model.onnx"
    model = onnx.load(str(graph_file))
    graph = model.graph
    for node in graph.node:
        node.input[:] = ["text64" if name == "text" else name for name in node.input]
    graph.node.insert(0, helper.make_node("Cast", ["text"], ["text64"], to=TensorProto.INT64))
    context = ClipModel(folder).context_length
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("text", TensorProto.INT32, ["batch", context]))
    onnx.save(model, str(graph_file))
    immich_style = ClipModel(copy)
    inputs = immich_style.tokenize(["a dog", "Ein Hund läuft über die Wiese"])
    assert inputs["text"].dtype == np.int32 and inputs["text"].shape == (2, context)
    texts = ["a dog", "two children play in the snow", "犬が公園を走っている"]
    same = (immich_style.encode_texts(texts) * ClipModel(folder).encode_texts(texts)).sum(axis=1)
    assert same.min() >= 0.9999
