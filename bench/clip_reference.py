"""vistext's CLIP export against open_clip itself: tokenizer, preprocessing and both encoders.

Needs an environment with open_clip installed (it needs torchvision, so it is not in vistext's own environment):

    /path/to/openclip-venv/bin/python bench/clip_reference.py [--quick]

For each model (a small custom ViT CLIP, the same with QuickGELU, and the ViT-B-32 architecture; random weights,
layer norms and biases jittered so every parameter matters), open_clip builds it, saves it in its checkpoint
layout (``open_clip_config.json`` + ``open_clip_model.safetensors``, no tokenizer files, so the exporter takes
CLIP's BPE vocabulary from the installed open_clip), and loads it back through ``local-dir:`` with its own
preprocessing and tokenizer: the reference. vistext exports the folder (``service.clip_models``) and runs the ONNX
folder with ONNX Runtime, ``tokenizers`` and its NumPy/PIL preprocessing from ``visual/preprocess_cfg.json``.
Printed: token ids equal (300 Flickr8k captions + non-ASCII lines), max |pixel diff|, and for images (real
Flickr8k photos at their own sizes) and texts the largest absolute difference and smallest cosine per vector.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from vistext.models.clip_preprocess import ClipPreprocess  # noqa: E402
from vistext.service.clip_models import prepare_clip_model  # noqa: E402

FLICKR8K = HERE.parents[1] / "shared" / "datasets" / "flickr8k"
NON_ASCII = [
    "Un café au bord de la mer, très ensoleillé", "Ein Hund läuft über die Straße", "niño jugando en la playa",
    "一只狗在草地上奔跑", "海辺の夕日と富士山", "강아지가 공원에서 뛰어요", "Собака бежит по снегу",
    "a dog 🐶 on the beach 🏖️", "“quoted” text with ‘curly’ quotes", "rock &amp; roll at night",
    "  many   spaces\tand\ttabs  ", "naïve façade résumé", "Ελληνικά γράμματα", "مرحبا بالعالم", "l'été dernier",
    "a " + "very " * 100 + "long caption",
]  # fmt: skip
SMALL = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 96, "heads": 3, "layers": 2},
}
PREPROCESS = {
    "mean": [0.5, 0.45, 0.4],
    "std": [0.25, 0.26, 0.27],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def _save_open_clip_folder(model_cfg: dict, folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ln" in name or name.endswith("bias") or "class_embedding" in name:
                param.add_(torch.randn_like(param) * 0.1)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    config = {"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def _ours(folder: Path, texts: list[str], images: list[Image.Image]) -> tuple[np.ndarray, ...]:
    tokenizer = Tokenizer.from_file(str(folder / "textual" / "tokenizer.json"))
    ids = np.array([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int32)
    pixels = ClipPreprocess.from_folder(folder).batch(images).astype(np.float32)
    options = onnxruntime.SessionOptions()
    text = onnxruntime.InferenceSession(str(folder / "textual" / "model.onnx"), options)
    image = onnxruntime.InferenceSession(str(folder / "visual" / "model.onnx"), options)
    text_out = np.concatenate([text.run(None, {"text": ids[i : i + 64]})[0] for i in range(0, len(ids), 64)])
    image_out = np.concatenate([image.run(None, {"image": pixels[i : i + 16]})[0] for i in range(0, len(pixels), 16)])
    return ids, pixels, text_out, image_out


def _reference(folder: Path, texts: list[str], images: list[Image.Image]) -> tuple[np.ndarray, ...]:
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    ids = tokenizer(texts)
    pixels = torch.stack([preprocess(image) for image in images])
    with torch.no_grad():
        text_out = torch.cat([model.encode_text(ids[i : i + 64], normalize=True) for i in range(0, len(ids), 64)])
        image_out = torch.cat(
            [model.encode_image(pixels[i : i + 16], normalize=True) for i in range(0, len(pixels), 16)]
        )
    return ids.numpy(), pixels.numpy(), text_out.numpy(), image_out.numpy()


def _compare(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(np.abs(got - want).max()), float(cos.min())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small models only, 20 photos")
    parser.add_argument("--photos", type=int, default=60, help="Flickr8k originals to encode (default 60)")
    args = parser.parse_args()
    lines = (FLICKR8K / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t", 1)[1].strip() for line in lines[::5][:300]] + NON_ASCII
    photos = sorted((FLICKR8K / "originals").glob("*.jpg"))[: 20 if args.quick else args.photos]
    images = [Image.open(p).convert("RGB") for p in photos]
    models = {"small ViT (2+2 layers)": SMALL, "small ViT, QuickGELU": {**SMALL, "quick_gelu": True}}
    if not args.quick:
        models["ViT-B-32 architecture"] = open_clip.get_model_config("ViT-B-32")
    print(f"open_clip {open_clip.__version__}, torch {torch.__version__}; {len(texts)} texts, {len(images)} photos")
    print("| model | token ids equal | max pixel diff | image max diff | image min cos | text max diff | text min cos |"
          " export s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        for seed, (label, cfg) in enumerate(models.items()):
            folder = Path(scratch) / f"model{seed}"
            _save_open_clip_folder(cfg, folder, seed)
            started = time.perf_counter()
            onnx_folder = prepare_clip_model(str(folder), Path(scratch) / "home")
            took = time.perf_counter() - started
            ids, pixels, text, image = _ours(onnx_folder, texts, images)
            ref_ids, ref_pixels, ref_text, ref_image = _reference(folder, texts, images)
            same = int((ids == ref_ids).all(axis=1).sum())
            image_diff, image_cos = _compare(image, ref_image)
            text_diff, text_cos = _compare(text, ref_text)
            pixel = float(np.abs(pixels - ref_pixels).max())
            print(f"| {label} | {same}/{len(texts)} | {pixel:.1e} | {image_diff:.1e} | {image_cos:.6f} | "
                  f"{text_diff:.1e} | {text_cos:.6f} | {took:.0f} |", flush=True)  # fmt: skip
            for row in np.flatnonzero(~(ids == ref_ids).all(axis=1))[:5]:
                print(f"  ids differ for {texts[row]!r}: {ids[row][:12].tolist()} vs {ref_ids[row][:12].tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
