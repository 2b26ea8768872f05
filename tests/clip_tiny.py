"""Tiny CLIP models with random weights for the tests, in the three formats vistext reads: a Hugging Face
``CLIPModel`` folder, open_clip's checkpoint layout (``open_clip_config.json`` + ``open_clip_model.safetensors``
with open_clip's parameter names) and, through vistext's exporter, Immich's ONNX layout.

No CLIP vocabulary can be downloaded here, so the tokenizer is CLIP's algorithm (byte-level BPE, ``</w>`` word
ends, start and end tokens last) with merges learnt from Flickr8k captions; the end token is the largest id, as in
CLIP, so open_clip's argmax pooling and transformers' first-end-token pooling agree.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from vistext.training.clip_tokenizer import byte_stand_ins

WORD = re.compile(r"[^\W\d_]+|\d|[^\s\w]+")
CONTEXT = 77


def _merges(texts: list[str], count: int) -> list[tuple[str, str]]:
    alphabet = byte_stand_ins()
    words: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for word in WORD.findall(text.lower()):
            chars = [alphabet[b] for b in word.encode("utf-8")]
            words[tuple(chars[:-1] + [chars[-1] + "</w>"])] += 1
    merges = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        joined: Counter[tuple[str, ...]] = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            joined[tuple(out)] += n
        words = joined
    return merges


def tiny_tokenizer(texts: list[str], merges: int = 300) -> CLIPTokenizer:
    """CLIP's tokenizer over a small vocabulary learnt from ``texts`` (ids in CLIP's order: bytes, bytes + </w>,
    merges, start, end)."""
    learnt = _merges(texts, merges)
    alphabet = list(byte_stand_ins().values())
    words = alphabet + [v + "</w>" for v in alphabet] + ["".join(m) for m in learnt]
    words = list(dict.fromkeys(words)) + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={w: i for i, w in enumerate(words)}, merges=learnt)


def tiny_clip(vocab_size: int, seed: int = 0, image_size: int = 32, quick_gelu: bool = False) -> CLIPModel:
    """A random CLIPModel (ViT: 2 layers, width 64, patch 8; text: 2 layers, width 48; embed 32)."""
    torch.manual_seed(seed)
    act = "quick_gelu" if quick_gelu else "gelu"
    config = CLIPConfig(
        projection_dim=32,
        vision_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": image_size, "patch_size": 8, "hidden_act": act, "layer_norm_eps": 1e-5},
        text_config={"hidden_size": 48, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 3,
                     "max_position_embeddings": CONTEXT, "vocab_size": vocab_size, "hidden_act": act,
                     "layer_norm_eps": 1e-5, "eos_token_id": vocab_size - 1, "bos_token_id": vocab_size - 2,
                     "pad_token_id": 0},
    )  # fmt: skip
    model = CLIPModel(config).eval()
    with torch.no_grad():  # random layer norms and biases, so a wrong mapping of any of them shows
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "class_embedding" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def save_hf(model: CLIPModel, tokenizer: CLIPTokenizer, folder: Path, image_mean: list[float] | None = None) -> Path:
    """A Hugging Face CLIP folder: config.json, model.safetensors, tokenizer files, preprocessor_config.json."""
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    size = model.config.vision_config.image_size
    processor = {
        "do_resize": True, "size": {"shortest_edge": size}, "do_center_crop": True,
        "crop_size": {"height": size, "width": size}, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": image_mean or [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "do_convert_rgb": True,
        "image_processor_type": "CLIPImageProcessor",
    }  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")
    return folder


def _blocks(state: dict[str, torch.Tensor], hf: str, oc: str, layers: int) -> dict[str, torch.Tensor]:
    out = {}
    for n in range(layers):
        a, b = f"{hf}.layers.{n}.", f"{oc}.resblocks.{n}."
        out[b + "attn.in_proj_weight"] = torch.cat([state[a + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        out[b + "attn.in_proj_bias"] = torch.cat([state[a + f"self_attn.{x}_proj.bias"] for x in "qkv"])
        for new, old in [("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]:  # fmt: skip
            for part in ("weight", "bias"):
                out[f"{b}{new}.{part}"] = state[f"{a}{old}.{part}"]
    return out


def save_open_clip(model: CLIPModel, folder: Path, tokenizer: CLIPTokenizer | None = None) -> Path:
    """``model`` in open_clip's checkpoint layout (its parameter names, read from open_clip's model.py), with
    ``tokenizer``'s files beside it when given (open_clip's published folders carry them)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    vision, text = model.config.vision_config, model.config.text_config
    out = _blocks(state, "vision_model.encoder", "visual.transformer", vision.num_hidden_layers)
    out |= _blocks(state, "text_model.encoder", "transformer", text.num_hidden_layers)
    renamed = {"visual.class_embedding": "vision_model.embeddings.class_embedding",
               "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
               "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
               "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
               "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
               "visual.ln_post.weight": "vision_model.post_layernorm.weight",
               "visual.ln_post.bias": "vision_model.post_layernorm.bias",
               "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
               "positional_embedding": "text_model.embeddings.position_embedding.weight",
               "ln_final.weight": "text_model.final_layer_norm.weight",
               "ln_final.bias": "text_model.final_layer_norm.bias", "logit_scale": "logit_scale"}  # fmt: skip
    out |= {new: state[old] for new, old in renamed.items()}
    out["visual.proj"] = state["visual_projection.weight"].t()
    out["text_projection"] = state["text_projection.weight"].t()
    save_file({k: v.contiguous() for k, v in out.items()}, str(folder / "open_clip_model.safetensors"))
    model_cfg = {
        "embed_dim": model.config.projection_dim,
        "quick_gelu": vision.hidden_act == "quick_gelu",
        "vision_cfg": {"image_size": vision.image_size, "layers": vision.num_hidden_layers, "width": vision.hidden_size,
                       "head_width": vision.hidden_size // vision.num_attention_heads, "patch_size": vision.patch_size},
        "text_cfg": {"context_length": text.max_position_embeddings, "vocab_size": text.vocab_size,
                     "width": text.hidden_size, "heads": text.num_attention_heads, "layers": text.num_hidden_layers},
    }  # fmt: skip
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder
