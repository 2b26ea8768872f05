"""CLIP-family models (issue 20): naming a model, exporting it once to Immich's ONNX layout, and the export
computing what the reference computes.

Tiny random CLIP models (transformers' CLIPModel, the reference) are saved as a Hugging Face folder and in open_clip's
checkpoint layout, exported by vistext, and run with ONNX Runtime + ``tokenizers`` on real Flickr8k photos (their
original, non-square sizes) and 300 real captions plus non-ASCII text: cosine >= 0.9999 and max abs diff <= 1e-4
per vector. The same check against open_clip itself (its model, preprocessing and tokenizer) is
bench/clip_reference.py, which needs an environment with open_clip installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import torch
from clip_tiny import save_hf, save_open_clip, tiny_clip, tiny_tokenizer
from PIL import Image
from tokenizers import Tokenizer
from transformers import CLIPImageProcessorPil

from vistext.cli import main
from vistext.errors import MissingExtraError, ModelError
from vistext.models.clip_preprocess import ClipPreprocess
from vistext.models.clip_sources import HUGGING_FACE, IMMICH, OPEN_CLIP, available_models, identify
from vistext.service.clip_models import prepare_clip_model

SRC = Path(__file__).resolve().parents[1] / "src"
NON_ASCII = [
    "Un café au bord de la mer, très ensoleillé", "Ein Hund läuft über die Straße", "niño jugando en la playa",
    "一只狗在草地上奔跑", "海辺の夕日と富士山", "강아지가 공원에서 뛰어요", "Собака бежит по снегу",
    "a dog 🐶 on the beach 🏖️", "“quoted” text with ‘curly’ quotes", "rock &amp; roll at night", "ＦＵＬＬ ｗｉｄｔｈ",
    "  many   spaces\tand\ttabs  ", "naïve façade résumé", "Ελληνικά γράμματα", "مرحبا بالعالم",
    "a " + "very " * 100 + "long caption",
]  # fmt: skip
# what open_clip's cleaning (ftfy, html.unescape) does to the lines above before tokenizing
OPEN_CLIP_CLEANED = {"“": '"', "”": '"', "‘": "'", "’": "'", "&amp;": "&"}


def _cos_and_diff(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(cos.min()), float(np.abs(got - want).max())


@pytest.fixture(scope="module")
def captions(flickr8k: Path) -> list[str]:
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1].strip() for line in lines[::5][:300]]


@pytest.fixture(scope="module")
def photos(flickr8k: Path) -> list[Path]:
    found = sorted((flickr8k / "originals").glob("*.jpg"))[:12]
    assert len(found) == 12, "the Flickr8k originals folder holds the photos at their own sizes"
    return found


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> dict[str, Any]:
    """The reference model and tokenizer, and the model saved in both formats vistext exports."""
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()[:800]
    tokenizer = tiny_tokenizer([line.split("\t", 1)[1] for line in lines], merges=150)
    model = tiny_clip(len(tokenizer), image_size=48)
    root = tmp_path_factory.mktemp("clip")
    hf = save_hf(model, tokenizer, root / "hf-clip")
    oc = save_open_clip(model, root / "oc-clip", tokenizer)
    return {"model": model, "tokenizer": tokenizer, "hf": hf, "open_clip": oc, "home": root / "home"}


def _reference_images(model: Any, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=torch.from_numpy(pixels)).pooler_output
        return torch.nn.functional.normalize(model.visual_projection(pooled), dim=-1).numpy()


def _reference_texts(model: Any, tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ids = tokenizer(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        pooled = model.text_model(input_ids=ids).pooler_output
        return ids.numpy(), torch.nn.functional.normalize(model.text_projection(pooled), dim=-1).numpy()


def _run_immich_style(folder: Path, texts: list[str], pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run an ONNX CLIP folder as Immich's runtime does: the tokenizer padded with tokenizer_config's pad token."""
    config = json.loads((folder / "textual" / "tokenizer_config.json").read_text(encoding="utf-8"))
    context = json.loads((folder / "config.json").read_text(encoding="utf-8"))["text_cfg"].get("context_length", 77)
    tokenizer = Tokenizer.from_file(str(folder / "textual" / "tokenizer.json"))
    pad = config["pad_token"]
    tokenizer.enable_padding(length=context, pad_token=pad, pad_id=tokenizer.token_to_id(pad))
    tokenizer.enable_truncation(max_length=context)
    ids = np.array([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int32)
    text = onnxruntime.InferenceSession(str(folder / "textual" / "model.onnx"), providers=["CPUExecutionProvider"])
    image = onnxruntime.InferenceSession(str(folder / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    return ids, text.run(None, {"text": ids})[0], image.run(None, {"image": pixels})[0]


def test_hf_folder_exports_to_what_transformers_computes(
    tiny: dict[str, Any], captions: list[str], photos: list[Path]
) -> None:
    source = identify(str(tiny["hf"]), tiny["home"])
    assert (source.kind, source.dims) == (HUGGING_FACE, 32)
    folder = prepare_clip_model(str(tiny["hf"]), tiny["home"])
    assert identify(str(folder)).kind == IMMICH

    images = [Image.open(p).convert("RGB") for p in photos]
    ours = ClipPreprocess.from_folder(folder).batch(images)
    theirs = np.stack(CLIPImageProcessorPil.from_pretrained(str(tiny["hf"]))(images)["pixel_values"])
    assert ours.shape == theirs.shape == (12, 3, 48, 48)
    assert np.abs(ours - theirs).max() < 1e-5  # same resize, crop (floored offsets) and normalisation

    texts = captions + NON_ASCII
    want_ids, want_text = _reference_texts(tiny["model"], tiny["tokenizer"], texts)
    ids, got_text, got_images = _run_immich_style(folder, texts, ours.astype(np.float32))
    assert (ids == want_ids).all()
    assert ids[-1, -1] == want_ids[-1, -1] and (ids[:, 0] == len(tiny["tokenizer"]) - 2).all()  # SOT first, EOT kept
    for got, want in [(got_text, want_text), (got_images, _reference_images(tiny["model"], theirs))]:
        cos, diff = _cos_and_diff(got, want)
        assert cos >= 0.9999 and diff <= 1e-4, (cos, diff)


def test_open_clip_folder_exports_to_the_same_model(
    tiny: dict[str, Any], captions: list[str], photos: list[Path]
) -> None:
    source = identify(str(tiny["open_clip"]), tiny["home"])
    assert (source.kind, source.dims, source.weights[0].name) == (OPEN_CLIP, 32, "open_clip_model.safetensors")
    folder = prepare_clip_model(str(tiny["open_clip"]), tiny["home"])
    preprocess = ClipPreprocess.from_folder(folder)
    assert (preprocess.size, preprocess.mean, preprocess.crop_rounding) == (48, (0.5, 0.5, 0.5), "round")
    pixels = preprocess.batch([Image.open(p) for p in photos]).astype(np.float32)

    texts = captions + NON_ASCII
    cleaned = []
    for text in texts:
        for old, new in OPEN_CLIP_CLEANED.items():
            text = text.replace(old, new)
        cleaned.append(text)
    want_ids, want_text = _reference_texts(tiny["model"], tiny["tokenizer"], cleaned)
    ids, got_text, got_images = _run_immich_style(folder, texts, pixels)
    eot = len(tiny["tokenizer"]) - 1
    after_eot = np.cumsum(want_ids == eot, axis=1) - (want_ids == eot) > 0
    assert (ids == np.where(after_eot, 0, want_ids)).all()  # open_clip's tokenizer pads with id 0
    for got, want in [(got_text, want_text), (got_images, _reference_images(tiny["model"], pixels))]:
        cos, diff = _cos_and_diff(got, want)
        assert cos >= 0.9999 and diff <= 1e-4, (cos, diff)


def test_an_export_is_made_once_and_any_batch_size_runs(tiny: dict[str, Any], photos: list[Path]) -> None:
    first = prepare_clip_model(str(tiny["hf"]), tiny["home"])
    stamp = (first / "visual" / "model.onnx").stat().st_mtime_ns
    again = prepare_clip_model(str(tiny["hf"]), tiny["home"])
    assert again == first and (again / "visual" / "model.onnx").stat().st_mtime_ns == stamp
    notes = json.loads((first / "vistext-clip.json").read_text(encoding="utf-8"))
    assert notes["format"] == HUGGING_FACE and first.name.endswith(notes["weights_sha256"][:12])
    pixels = ClipPreprocess.from_folder(first).batch([Image.open(p) for p in photos[:7]]).astype(np.float32)
    session = onnxruntime.InferenceSession(str(first / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    one_by_one = np.concatenate([session.run(None, {"image": pixels[i : i + 1]})[0] for i in range(7)])
    assert np.abs(session.run(None, {"image": pixels})[0] - one_by_one).max() < 1e-5


@pytest.mark.slow
def test_two_processes_exporting_at_once_end_with_one_whole_folder(tiny: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = (
        "import sys; from pathlib import Path; from vistext.service.clip_models import prepare_clip_model; "
        "print(prepare_clip_model(sys.argv[1], Path(sys.argv[2])))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    runs = [
        subprocess.Popen([sys.executable, "-c", code, str(tiny["open_clip"]), str(home)], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-1500:] for _, err in outputs]
    folders = {out.strip() for out, _ in outputs}
    assert len(folders) == 1
    exports = home / "models" / "onnx"
    assert sorted(p.name for p in exports.iterdir() if p.is_dir()) == [Path(folders.pop()).name]  # no temp left


def test_exporting_without_torch_names_the_train_extra(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"\[train\]"):
        prepare_clip_model(str(tiny["hf"]), tmp_path / "fresh-home")
    exported = prepare_clip_model(str(tiny["hf"]), tiny["home"])  # an Immich folder needs no torch
    assert prepare_clip_model(str(exported), tmp_path / "fresh-home") == exported


def test_bad_folders_and_names_get_one_line_errors(tiny: dict[str, Any], tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text('{"model_type": "bert"}')
    broken = tmp_path / "broken-open-clip"
    broken.mkdir()
    shutil.copy(tiny["open_clip"] / "open_clip_config.json", broken)
    half = tmp_path / "half-immich"
    (half / "visual").mkdir(parents=True)
    (half / "visual" / "model.onnx").write_bytes(b"")
    cases = {
        str(tmp_path / "notes"): "not a CLIP model folder",
        str(broken): "no weights (open_clip_model.safetensors or open_clip_pytorch_model.bin)",
        str(half): "textual/model.onnx",
        "no-such-model": "not found",
    }
    for spec, reason in cases.items():
        with pytest.raises(ModelError, match=re.escape(reason)) as caught:
            identify(spec, tmp_path)
        assert "\n" not in str(caught.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match=r"hf-hub:laion/CLIP-ViT-B-32.*not in the Hugging Face cache .*hub.*offline"):
        identify("hf-hub:laion/CLIP-ViT-B-32", tmp_path)


def test_available_models_lists_bundled_home_and_hub_cache(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    shutil.copytree(tiny["open_clip"], home / "models" / "my-open-clip")
    (home / "models" / "not-a-model").mkdir()
    snapshot = tmp_path / "hub" / "models--org--tiny-clip" / "snapshots" / "abc123"
    shutil.copytree(tiny["hf"], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    found = {source.name: source for source in available_models(home)}
    assert found["joint-default"].kind == "bundled"
    assert (found["my-open-clip"].kind, found["my-open-clip"].dims) == (OPEN_CLIP, 32)
    assert found["my-open-clip"].origin == "$VISTEXT_HOME/models"
    hub = found["org/tiny-clip"]
    assert (hub.kind, hub.spec, hub.origin) == (HUGGING_FACE, "hf-hub:org/tiny-clip", "Hugging Face cache")
    assert identify("my-open-clip", home).path == home / "models" / "my-open-clip"
    assert identify("hf-hub:org/tiny-clip", home).path == snapshot  # offline, found in the cache
    assert "not-a-model" not in found


def test_vistext_models_lists_them(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    shutil.copytree(tiny["hf"], home / "models" / "my-hf-clip")
    monkeypatch.setenv("VISTEXT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    kinds = {m["spec"]: (m["kind"], m["dims"], m["origin"]) for m in listing["models"]}
    assert kinds["my-hf-clip"] == (HUGGING_FACE, 32, "$VISTEXT_HOME/models")
    assert kinds["bundled"][0] == "bundled" and str(home / "models") in listing["looked_in"]
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "my-hf-clip" in table and "huggingface" in table and "looked in:" in table


def test_a_folder_in_immichs_own_form_is_used_as_it_is(
    tiny: dict[str, Any], captions: list[str], photos: list[Path], tmp_path: Path
) -> None:
    """As Immich's exporter writes it: no vistext-clip.json, a tokenizer.json without padding (the runtime pads with
    tokenizer_config's pad token), ``size`` a plain integer."""
    exported = prepare_clip_model(str(tiny["hf"]), tiny["home"])
    folder = shutil.copytree(exported, tmp_path / "ViT-tiny__immich")
    (folder / "vistext-clip.json").unlink()
    for name in ("tokenizer.json", "tokenizer_config.json"):  # as saved with the model, before any call padded
        shutil.copy(tiny["hf"] / name, folder / "textual" / name)
    config = {"size": 48, "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
              "interpolation": "bicubic", "resize_mode": "shortest"}  # fmt: skip
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps(config), encoding="utf-8")
    assert Tokenizer.from_file(str(folder / "textual" / "tokenizer.json")).padding is None
    source = identify(str(folder))
    assert (source.kind, source.dims, source.name) == (IMMICH, 32, "ViT-tiny__immich")
    assert prepare_clip_model(str(folder), tmp_path / "home") == folder  # nothing exported
    assert not (tmp_path / "home" / "models" / "onnx").exists()

    preprocess = ClipPreprocess.from_folder(folder)
    assert (preprocess.size, preprocess.crop_rounding) == (48, "round")  # open_clip's rounding by default
    pixels = preprocess.batch([Image.open(p) for p in photos]).astype(np.float32)
    want_ids, want_text = _reference_texts(tiny["model"], tiny["tokenizer"], captions)
    ids, got_text, got_images = _run_immich_style(folder, captions, pixels)
    assert (ids == want_ids).all()
    for got, want in [(got_text, want_text), (got_images, _reference_images(tiny["model"], pixels))]:
        cos, diff = _cos_and_diff(got, want)
        assert cos >= 0.9999 and diff <= 1e-4, (cos, diff)


def test_a_sharded_hugging_face_checkpoint_is_keyed_by_all_its_shards(tiny: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    tiny["model"].save_pretrained(str(folder), max_shard_size="200KB")
    tiny["tokenizer"].save_pretrained(str(folder))
    source = identify(str(folder))
    assert source.kind == HUGGING_FACE and len(source.weights) > 1
    assert all(w.name.startswith("model-") and w.suffix == ".safetensors" for w in source.weights)
    source.weights[-1].unlink()
    with pytest.raises(ModelError, match="weight shards missing"):
        identify(str(folder))
