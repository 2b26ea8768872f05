"""Builds a CLIP model with random weights in the Immich layout (the runtime form ``vistext.models.clip`` reads),
for the tests and bench/clip_cost.py: a transformers ``CLIPModel`` of any size, its two towers (each with its
projection) exported with ``torch.onnx.export``, a byte-level BPE tokenizer trained on a few hundred captions with
the ``tokenizers`` library (no CLIP vocabulary can be downloaded here), and the two configs Immich ships.

Real CLIP is argmax-pooled at its end-of-text token, which has the largest id; transformers pools at the first
``eos_token_id`` instead, which picks the same position when padding uses that token, as it does here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

TINY = {"embed_dim": 32, "width": 32, "layers": 2, "heads": 2, "patch": 16, "image": 64, "context": 24, "vocab": 600}
# ViT-B/32's shapes (open_clip's ViT-B-32.json); the text tower's vocabulary is kept small, which changes only the
# size of its token-embedding table (49,408 x 512 in the real model: 101 MB more on disk, nothing more per query)
VIT_B_32 = {
    "embed_dim": 512, "width": 768, "layers": 12, "heads": 12, "patch": 32, "image": 224,
    "text_width": 512, "text_layers": 12, "text_heads": 8, "context": 77, "vocab": 49408,
}  # fmt: skip


def train_tokenizer(texts: list[str], vocab: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, tokenizer.token_to_id(BOS)), (EOS, tokenizer.token_to_id(EOS))]
    )
    return tokenizer


def random_clip(dims: dict[str, Any], tokenizer: Any, seed: int = 0) -> Any:
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    width = dims.get("text_width", dims["width"])
    text = {
        "vocab_size": tokenizer.get_vocab_size(), "hidden_size": width,
        "intermediate_size": 4 * width, "num_hidden_layers": dims.get("text_layers", dims["layers"]),
        "num_attention_heads": dims.get("text_heads", dims["heads"]), "max_position_embeddings": dims["context"],
        "bos_token_id": tokenizer.token_to_id(BOS), "eos_token_id": tokenizer.token_to_id(EOS),
        "pad_token_id": tokenizer.token_to_id(EOS),
    }  # fmt: skip
    vision = {
        "hidden_size": dims["width"], "intermediate_size": 4 * dims["width"], "num_hidden_layers": dims["layers"],
        "num_attention_heads": dims["heads"], "image_size": dims["image"], "patch_size": dims["patch"],
    }  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=dims["embed_dim"])
    return CLIPModel(config).eval()


def _features(output: Any) -> Any:
    # transformers 5 hands back a model output whose pooler_output is the projected embedding; 4.x a tensor
    return output if hasattr(output, "shape") else output.pooler_output


def export_towers(model: Any, folder: Path, dims: dict[str, Any]) -> None:
    import torch

    class Tower(torch.nn.Module):  # the CLIP model is a submodule, so its weights export as initialisers
        def __init__(self, image_side: bool) -> None:
            super().__init__()
            self.clip, self.image_side = model, image_side

        def forward(self, x: Any) -> Any:
            if self.image_side:
                return _features(self.clip.get_image_features(pixel_values=x))
            return _features(self.clip.get_text_features(input_ids=x))

    image = torch.zeros(2, 3, dims["image"], dims["image"])
    text = torch.ones(2, dims["context"], dtype=torch.int64)
    # the text tower takes any length: a batch of texts is padded to its longest, not to the context length
    axes = {"visual": {0: "batch"}, "textual": {0: "batch", 1: "tokens"}}
    with torch.no_grad():
        for module, sample, name, side in (
            (Tower(True), image, "image", "visual"),
            (Tower(False), text, "text", "textual"),
        ):
            (folder / side).mkdir(parents=True, exist_ok=True)
            torch.onnx.export(
                module, (sample,), str(folder / side / "model.onnx"), input_names=[name], output_names=["embedding"],
                dynamic_axes={name: axes[side], "embedding": {0: "batch"}}, opset_version=17, dynamo=False,
            )  # fmt: skip


def build_clip(folder: Path, captions: list[str], dims: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """Write a random CLIP of ``dims`` (default ``TINY``) into ``folder`` in Immich's layout; returns the
    transformers model (the reference) with its tokenizer attached as ``model.vistext_tokenizer``."""
    dims = dict(TINY if dims is None else dims)
    tokenizer = train_tokenizer(captions, dims["vocab"])
    model = random_clip(dims, tokenizer, seed)
    export_towers(model, folder, dims)
    tokenizer.save(str(folder / "textual" / "tokenizer.json"))
    (folder / "textual" / "tokenizer_config.json").write_text(
        json.dumps({"pad_token": EOS, "bos_token": BOS, "eos_token": EOS, "model_max_length": dims["context"]})
    )
    (folder / "textual" / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": EOS, "bos_token": BOS, "eos_token": EOS, "unk_token": EOS})
    )
    # made from a Hugging Face model: its processor floors the centre crop's offset (vistext's exporter notes it so)
    (folder / "vistext-clip.json").write_text(json.dumps({"source_format": "huggingface", "crop_rounding": "floor"}))
    (folder / "visual" / "preprocess_cfg.json").write_text(
        json.dumps({
            "size": [dims["image"], dims["image"]], "mode": "RGB", "mean": CLIP_MEAN, "std": CLIP_STD,
            "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0,
        })
    )  # fmt: skip
    (folder / "config.json").write_text(
        json.dumps({
            "embed_dim": dims["embed_dim"],
            "vision_cfg": {"image_size": dims["image"], "layers": dims["layers"], "width": dims["width"],
                           "patch_size": dims["patch"]},
            "text_cfg": {"context_length": dims["context"], "vocab_size": tokenizer.get_vocab_size(),
                         "width": dims.get("text_width", dims["width"]), "heads": dims.get("text_heads", dims["heads"]),
                         "layers": dims.get("text_layers", dims["layers"])},
        })
    )  # fmt: skip
    model.vistext_tokenizer = tokenizer
    return model
