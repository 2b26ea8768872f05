"""Export a CLIP model (open_clip checkpoint folder or Hugging Face CLIPModel folder) to the folder the runtime
runs: Immich's ONNX layout, so one loader serves both Immich's own exports and ours.

    config.json                      open_clip's model config (embed_dim, vision_cfg, text_cfg)
    visual/model.onnx                image float32 [N, 3, H, W] -> embedding float32 [N, D], L2-normalised
    visual/preprocess_cfg.json       size, mean, std, interpolation, resize_mode, fill_color (open_clip's keys)
    textual/model.onnx               text int32 [N, context_length] -> embedding float32 [N, D], L2-normalised
    textual/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
    vistext-clip.json                where it came from: format, path, weights SHA-256, versions, crop rounding

Both graphs take any batch size (Immich's take one) and are checked against the torch model before the folder is
written. The workshop's: torch and transformers ([train]).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import CLIPModel

from vistext.errors import ModelError
from vistext.models.clip_preprocess import ClipPreprocess
from vistext.models.clip_sources import (
    HUGGING_FACE,
    ONNX_CONFIG,
    OPEN_CLIP,
    OPEN_CLIP_CONFIG,
    PREPROCESS_CFG,
    PROVENANCE,
    TEXTUAL_ONNX,
    VISUAL_ONNX,
    ClipSource,
)
from vistext.training.clip_convert import open_clip_to_hf
from vistext.training.clip_tokenizer import load_clip_tokenizer, write_tokenizer

OPSET = 17
CHECK_TOLERANCE = 1e-4


class _ImageTower(torch.nn.Module):
    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=image).pooler_output
        return torch.nn.functional.normalize(self.model.visual_projection(pooled), dim=-1)


class _TextTower(torch.nn.Module):
    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        pooled = self.model.text_model(input_ids=text.long()).pooler_output
        return torch.nn.functional.normalize(self.model.text_projection(pooled), dim=-1)


def _load_weights(file: Path) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file fails in many ways: name it, whatever the library raised
        raise ModelError(f"{file}: cannot read the weights ({type(error).__name__}: {error})") from None
    return state.get("state_dict", state) if isinstance(state, dict) else {}


def _open_clip_model(source: ClipSource) -> tuple[CLIPModel, dict[str, Any], ClipPreprocess, str]:
    file = source.path / OPEN_CLIP_CONFIG
    config = json.loads(file.read_text(encoding="utf-8"))
    model_cfg = config.get("model_cfg", config)
    state = {k.removeprefix("module."): v for k, v in _load_weights(source.weights[0]).items()}
    model = open_clip_to_hf(model_cfg, state, str(file))
    vision: Any = model.config.vision_config
    preprocess = ClipPreprocess.from_config({"size": vision.image_size, **config.get("preprocess_cfg", {})}, file)
    return model, model_cfg, preprocess, "round"


def _hf_preprocess(folder: Path, size: int) -> ClipPreprocess:
    file = folder / "preprocessor_config.json"
    config = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    crop = config.get("crop_size", size)
    crop = crop.get("height", size) if isinstance(crop, dict) else crop
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "lanczos"}.get(config.get("resample", 3), "bicubic")
    fields = {"size": crop, "interpolation": resample, "resize_mode": "shortest"}
    fields |= {key: config[f"image_{key}"] for key in ("mean", "std") if f"image_{key}" in config}
    return ClipPreprocess.from_config(fields, file, "floor")


def _hf_model(source: ClipSource) -> tuple[CLIPModel, dict[str, Any], ClipPreprocess, str]:
    try:
        model = CLIPModel.from_pretrained(str(source.path), attn_implementation="eager")
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelError(f"{source.path}: cannot load it as a Hugging Face CLIPModel ({error})") from None
    vision: Any = model.config.vision_config
    text: Any = model.config.text_config
    model_cfg = {
        "embed_dim": model.config.projection_dim,
        "quick_gelu": vision.hidden_act == "quick_gelu",
        "vision_cfg": {
            "image_size": vision.image_size,
            "layers": vision.num_hidden_layers,
            "width": vision.hidden_size,
            "head_width": vision.hidden_size // vision.num_attention_heads,
            "patch_size": vision.patch_size,
        },
        "text_cfg": {
            "context_length": text.max_position_embeddings,
            "vocab_size": text.vocab_size,
            "width": text.hidden_size,
            "heads": text.num_attention_heads,
            "layers": text.num_hidden_layers,
        },
    }
    return model.eval(), model_cfg, _hf_preprocess(source.path, vision.image_size), "floor"


def _export_graph(tower: torch.nn.Module, example: torch.Tensor, name: str, file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tower,
            (example,),
            str(file),
            input_names=[name],
            output_names=["embedding"],
            dynamic_axes={name: {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _check_graph(tower: torch.nn.Module, example: torch.Tensor, name: str, file: Path) -> float:
    """Largest difference between the ONNX graph and torch on ``example``; a ModelError when over tolerance."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: example.numpy()})[0]
    with torch.no_grad():
        want = tower(example).numpy()
    diff = float(np.abs(got - want).max())
    if diff > CHECK_TOLERANCE:
        raise ModelError(
            f"{file}: the exported graph differs from the model by {diff:.2g} (tolerance {CHECK_TOLERANCE})"
        )
    return diff


def _versions() -> dict[str, str]:
    import onnx
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__}


def export_clip(source: ClipSource, out: Path, weights_sha256: str | None = None) -> Path:
    """Write the ONNX CLIP folder of ``source`` (an open_clip or Hugging Face folder) into ``out`` (created; the
    caller renames it into place); returns ``out``."""
    if source.kind == OPEN_CLIP:
        model, model_cfg, preprocess, rounding = _open_clip_model(source)
        pad_token = "!"  # id 0: open_clip pads with zeros
    elif source.kind == HUGGING_FACE:
        model, model_cfg, preprocess, rounding = _hf_model(source)
        pad_token = ""
    else:
        raise ModelError(f"{source.path}: a {source.kind} model is not exported (only open_clip and Hugging Face)")
    tokenizer = load_clip_tokenizer(source.path)
    pad_token = pad_token or str(tokenizer.pad_token or tokenizer.eos_token)
    text_config: Any = model.config.text_config
    context = int(text_config.max_position_embeddings)
    towers = [
        (_ImageTower(model), torch.randn(2, 3, preprocess.size, preprocess.size), "image", out / VISUAL_ONNX),
        (_TextTower(model), _example_ids(tokenizer, context), "text", out / TEXTUAL_ONNX),
    ]
    checks = {}
    for tower, example, name, file in towers:
        _export_graph(tower.eval(), example, name, file)
        checks[name] = _check_graph(tower, example, name, file)
    settings = write_tokenizer(tokenizer, out / TEXTUAL_ONNX.parent, context, pad_token, source.kind == OPEN_CLIP)
    (out / PREPROCESS_CFG).write_text(json.dumps(preprocess.to_config(), indent=2), encoding="utf-8")
    (out / ONNX_CONFIG).write_text(json.dumps(model_cfg, indent=2), encoding="utf-8")
    provenance = {
        "format": source.kind,
        "source": str(source.path),
        "spec": source.spec,
        "weights": [str(w) for w in source.weights],
        "weights_sha256": weights_sha256,
        "opset": OPSET,
        "crop_rounding": rounding,
        "text_input": "text",
        "tokenizer": settings,
        "export_check_max_abs_diff": checks,
        "versions": _versions(),
    }
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    return out


def _example_ids(tokenizer: Any, context: int) -> torch.Tensor:
    ids = tokenizer(["a photo of a dog", "two people on a beach at sunset"], padding="max_length", max_length=context)
    return torch.tensor(ids["input_ids"], dtype=torch.int32)
