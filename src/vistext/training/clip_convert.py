"""An open_clip checkpoint (``open_clip_config.json`` + weights) as a transformers ``CLIPModel``, without open_clip.

open_clip's plain ViT CLIP (the architecture of OpenAI's and LAION's ViT-B/32, B/16, L/14 ...) and transformers'
CLIPModel compute the same function with different parameter names: the attention's packed ``in_proj_weight``
splits into q, k and v, and the two projections are stored transposed. Text pooling agrees too: open_clip takes
the token with the largest id (the end-of-text token, last in the vocabulary), transformers the first end-of-text
token. Architectures this mapping does not cover (ResNet, timm or Hugging Face towers, SigLIP, CoCa, layer scale,
attentional pooling ...) are refused with the option that is in the way; they need open_clip itself.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import CLIPConfig, CLIPModel

from vistext.errors import ModelError

# open_clip options and the value at which the plain CLIP architecture holds; any other value is refused
_VISION_PLAIN: dict[str, Any] = {
    "ls_init_value": None, "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
    "final_ln_after_pool": False, "pool_type": "tok", "timm_model_name": None, "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
    "scale_fc": False, "act_kwargs": None, "norm_kwargs": None, "global_average_pool": False,
}  # fmt: skip
_TEXT_PLAIN: dict[str, Any] = {
    "ls_init_value": None, "embed_cls": False, "no_causal_mask": False, "final_ln_after_pool": False,
    "pool_type": "argmax", "proj_bias": False, "proj_type": "linear", "hf_model_name": None, "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
    "scale_fc": False, "act_kwargs": None, "norm_kwargs": None, "tokenizer_mode": None,
}  # fmt: skip
_MODEL_PLAIN: dict[str, Any] = {"init_logit_bias": None, "custom_text": False, "cast_dtype": None}


def _check_plain(section: dict[str, Any], plain: dict[str, Any], where: str, label: str) -> None:
    for key, value in plain.items():
        if key in section and section[key] != value and not (value is False and section[key] is None):
            raise ModelError(
                f"{where}: {label}{key}={section[key]!r} is outside the plain CLIP architecture vistext exports "
                "without open_clip"
            )


def hf_config(model_cfg: dict[str, Any], where: str) -> CLIPConfig:
    """transformers' CLIPConfig for open_clip's ``model_cfg`` (the ``model_cfg`` of open_clip_config.json)."""
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    if not isinstance(vision, dict) or not isinstance(text, dict) or "embed_dim" not in model_cfg:
        raise ModelError(f"{where}: model_cfg needs embed_dim, vision_cfg and text_cfg")
    if not isinstance(vision.get("layers", 12), int):
        raise ModelError(f"{where}: vision_cfg.layers={vision['layers']!r} is a ResNet tower; it needs open_clip")
    _check_plain(model_cfg, _MODEL_PLAIN, where, "")
    _check_plain(vision, _VISION_PLAIN, where, "vision_cfg.")
    _check_plain(text, _TEXT_PLAIN, where, "text_cfg.")
    vocab = text.get("vocab_size", 49408)
    width, text_width = vision.get("width", 768), text.get("width", 512)
    image_size = vision.get("image_size", 224)
    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    return CLIPConfig(
        projection_dim=model_cfg["embed_dim"],
        vision_config={
            "hidden_size": width,
            "intermediate_size": int(width * vision.get("mlp_ratio", 4.0)),
            "num_hidden_layers": vision.get("layers", 12),
            "num_attention_heads": width // vision.get("head_width", 64),
            "image_size": image_size[0] if isinstance(image_size, list | tuple) else image_size,
            "patch_size": vision.get("patch_size", 16),
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
        },
        text_config={
            "hidden_size": text_width,
            "intermediate_size": int(text_width * text.get("mlp_ratio", 4.0)),
            "num_hidden_layers": text.get("layers", 12),
            "num_attention_heads": text.get("heads", 8),
            "max_position_embeddings": text.get("context_length", 77),
            "vocab_size": vocab,
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "eos_token_id": vocab - 1,  # open_clip pools at the largest id: the end token, last in CLIP's order
            "bos_token_id": vocab - 2,
            "pad_token_id": 0,
        },
    )


def _tower(state: dict[str, torch.Tensor], source: str, target: str, layers: int) -> dict[str, torch.Tensor]:
    """The transformer blocks of one tower, renamed (``source`` and ``target`` are the key prefixes)."""
    out: dict[str, torch.Tensor] = {}
    for n in range(layers):
        old, new = f"{source}.resblocks.{n}.", f"{target}.layers.{n}."
        q, k, v = state[old + "attn.in_proj_weight"].chunk(3)
        qb, kb, vb = state[old + "attn.in_proj_bias"].chunk(3)
        out |= {new + "self_attn.q_proj.weight": q, new + "self_attn.k_proj.weight": k}
        out |= {new + "self_attn.v_proj.weight": v, new + "self_attn.q_proj.bias": qb}
        out |= {new + "self_attn.k_proj.bias": kb, new + "self_attn.v_proj.bias": vb}
        pairs = [
            ("attn.out_proj", "self_attn.out_proj"),
            ("ln_1", "layer_norm1"),
            ("ln_2", "layer_norm2"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        ]
        for a, b in pairs:
            out[f"{new}{b}.weight"], out[f"{new}{b}.bias"] = state[f"{old}{a}.weight"], state[f"{old}{a}.bias"]
    return out


def hf_state_dict(state: dict[str, torch.Tensor], config: CLIPConfig) -> dict[str, torch.Tensor]:
    """open_clip's parameter names -> transformers' CLIPModel names (a KeyError names a missing parameter)."""
    vision: Any = config.vision_config
    text: Any = config.text_config
    out = _tower(state, "visual.transformer", "vision_model.encoder", vision.num_hidden_layers)
    out |= _tower(state, "transformer", "text_model.encoder", text.num_hidden_layers)
    renamed = {
        "vision_model.embeddings.class_embedding": "visual.class_embedding",
        "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
        "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
        "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
        "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
        "vision_model.post_layernorm.weight": "visual.ln_post.weight",
        "vision_model.post_layernorm.bias": "visual.ln_post.bias",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
        "logit_scale": "logit_scale",
    }
    out |= {new: state[old] for new, old in renamed.items()}
    out["visual_projection.weight"] = state["visual.proj"].t().contiguous()
    out["text_projection.weight"] = state["text_projection"].t().contiguous()
    return out


def open_clip_to_hf(model_cfg: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> CLIPModel:
    """A transformers CLIPModel computing what open_clip's model of ``model_cfg`` with ``state`` computes."""
    config = hf_config(model_cfg, where)
    config._attn_implementation = "eager"
    model = CLIPModel(config)
    try:
        converted = hf_state_dict(state, config)
    except KeyError as error:
        raise ModelError(f"{where}: the weights lack {error.args[0]} (not an open_clip ViT CLIP checkpoint?)") from None
    except (RuntimeError, ValueError) as error:
        raise ModelError(f"{where}: unexpected weight shapes ({error})") from None
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False)
    except RuntimeError as error:
        raise ModelError(
            f"{where}: the weights do not fit open_clip_config.json ({str(error).splitlines()[0]})"
        ) from None
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(
            f"{where}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval()
