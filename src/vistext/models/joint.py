"""The joint image–text model: image head(s) on the bundled encoder's features + a text encoder + projection(s).

A saved model is a directory: ``config.json`` (format version, registered names, dims, preprocessing, training
data, metrics), ``model.safetensors`` (only the trainable parts: heads, projections, fine-tuned text layers,
never the bundled backbones) and the text encoder's assets (e.g. ``vocab.txt``).

A model may hold several *branches* (an ensemble trained together from different initialisations): each has
its own image head and text projection; the joint embedding is the concatenation of the branches' normalised
embeddings, renormalised, so its cosine similarity is the mean of the branches' similarities. After training,
that concatenation can be *reduced*: projected onto its top principal directions (fit on training images and
captions) and renormalised. On Flickr8k three 512-d branches reduced to 512 dims lose nothing measurable (test
R@1 within 0.1), and the index stays as small and fast as one branch's.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistext.encoders import ImageFeatures, image_preprocessing
from vistext.encoders.text_encoders import TEXT_ENCODERS, TextEncoder
from vistext.errors import ModelError
from vistext.models.card import CARD_FILE, WEIGHTS_FILE, read_card, resolve_model_dir, write_card
from vistext.models.heads import IMAGE_HEADS, Projection

log = logging.getLogger(__name__)

_RUNTIME_ARGS = {"vocab", "assets", "seed"}  # text encoder arguments that only exist while building
# A joint model's architecture comes from its card (written by training, whose config is the only home of the
# recipe's defaults); these keys are filled in only for cards written before they existed.
ARCHITECTURE = (
    "name", "image_encoder", "image_dim", "image_head", "image_head_args", "text_encoder", "text_encoder_args",
    "text_hidden", "dropout", "dim",
)  # fmt: skip
LATER_KEYS: dict[str, Any] = {
    "branches": 1,
    "reduced_dim": None,  # the joined branches projected onto this many principal directions (None: not reduced)
    "hubness": None,  # {"k": 10, "bank": 1000}: CSLS hubness correction against stored reference banks
}


class JointModel(nn.Module):
    """Images and texts embedded in one space where cosine similarity means "this caption fits this photo"."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        missing = [key for key in ARCHITECTURE if key not in config]
        if missing:
            raise ModelError(f"a joint model needs {', '.join(missing)} in its config")
        cfg = {**LATER_KEYS, **config}
        self.config = cfg
        self.name: str = cfg["name"]
        self.image_encoder_name: str = cfg["image_encoder"]
        self.dim = int(cfg["dim"])
        encoder = TEXT_ENCODERS.create(cfg["text_encoder"], **cfg["text_encoder_args"])
        if not isinstance(encoder, TextEncoder):
            raise ModelError(f"text encoder {cfg['text_encoder']!r} is not a TextEncoder")
        self.text_encoder = encoder
        self.metadata: dict[str, Any] = {}  # the model card of a loaded model (training data, method, metrics)
        n = int(cfg["branches"])
        self.image_heads = nn.ModuleList(
            IMAGE_HEADS.create(
                cfg["image_head"], in_dim=int(cfg["image_dim"]), out_dim=self.dim, **cfg["image_head_args"]
            )
            for _ in range(n)
        )
        self.text_projs = nn.ModuleList(
            Projection(self.text_encoder.dim, self.dim, int(cfg["text_hidden"]), float(cfg["dropout"]))
            for _ in range(n)
        )
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        reduced = cfg.get("reduced_dim")
        # joined branches -> principal directions (filled by fit_reduction, saved with the model)
        self.register_buffer("reducer", torch.zeros(self.dim * n, int(reduced)) if reduced else torch.zeros(0, 0))
        hub = cfg.get("hubness") or {}
        bank = int(hub.get("bank", 0))
        # reference embeddings of training captions/images (filled by set_hubness_banks, saved with the model)
        self.register_buffer("caption_bank", torch.zeros(bank, self.joined_dim))
        self.register_buffer("image_bank", torch.zeros(bank, self.joined_dim))
        self.register_buffer("hubness_norm", torch.tensor(1.0))
        self.hubness_k = int(hub.get("k", 10))

    # ---- properties others rely on --------------------------------------------------------------------------
    @property
    def needs_grid(self) -> bool:
        return bool(getattr(self.image_heads[0], "needs_grid", False))

    @property
    def logit_scale(self) -> float:
        """exp(learned log scale): multiply similarities by this before a softmax (the hubness correction
        shrinks similarities by ``hubness_norm``; the scale makes up for it)."""
        return self.plain_logit_scale * float(self.hubness_norm)

    @property
    def plain_logit_scale(self) -> float:
        """The scale for similarities of uncorrected embeddings (``corrected=False``)."""
        return float(self.log_scale.detach().exp().clamp(max=100.0))

    @property
    def corrected(self) -> bool:
        return self.caption_bank.shape[0] > 0

    @property
    def joined_dim(self) -> int:
        """Size of the joined branches (reduced, if they are), before any hubness correction."""
        return self.reducer.shape[1] if self.reducer.numel() else self.dim * len(self.image_heads)

    @property
    def output_dim(self) -> int:
        return self.joined_dim + (2 if self.corrected else 0)

    # ---- hubness correction (CSLS, Lample et al. 2018) folded into the embeddings -----------------------------
    # score'(i, t) = cos(i, t) - r_cap(i)/2 - r_img(t)/2, where r_cap(i) is image i's mean similarity to its k
    # nearest reference captions and r_img(t) caption t's to its k nearest reference images. Appending
    # (-r_cap/2, 1) to images and (1, -r_img/2) to texts makes it a dot product; after L2 normalisation the
    # rankings barely move (measured), so the embeddings stay unit vectors any index can search.
    def _penalty(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        k = min(self.hubness_k, bank.shape[0])
        return (x @ bank.T).topk(k, dim=1).values.mean(dim=1, keepdim=True)

    def correct_images(self, joined: torch.Tensor) -> torch.Tensor:
        if not self.corrected:
            return joined
        ones = torch.ones_like(joined[:, :1])
        return F.normalize(torch.cat([joined, -0.5 * self._penalty(joined, self.caption_bank), ones], 1), dim=-1)

    def correct_texts(self, joined: torch.Tensor) -> torch.Tensor:
        if not self.corrected:
            return joined
        ones = torch.ones_like(joined[:, :1])
        return F.normalize(torch.cat([joined, ones, -0.5 * self._penalty(joined, self.image_bank)], 1), dim=-1)

    @torch.no_grad()
    def set_hubness_banks(self, images: torch.Tensor, captions: torch.Tensor, k: int = 10) -> None:
        """Store reference embeddings (joined, uncorrected) of training images and captions."""
        self.image_bank = images.detach().float().clone()
        self.caption_bank = captions.detach().float().clone()
        self.hubness_k = int(k)
        self.hubness_norm = torch.tensor(1.0)
        self.config["hubness"] = {"k": self.hubness_k, "bank": int(images.shape[0])}
        if images.shape[0] != captions.shape[0]:
            raise ModelError("hubness banks must hold as many images as captions")
        # mean norm product of the uncorrected augmented vectors: how much the correction shrinks similarities
        x = torch.cat([images, -0.5 * self._penalty(images, captions), torch.ones_like(images[:, :1])], 1)
        y = torch.cat([captions, torch.ones_like(captions[:, :1]), -0.5 * self._penalty(captions, images)], 1)
        self.hubness_norm = x.norm(dim=1).mean() * y.norm(dim=1).mean()

    # ---- torch-level embeddings (used in training) -----------------------------------------------------------
    def image_branches(self, pooled: torch.Tensor, grid: torch.Tensor | None) -> list[torch.Tensor]:
        return [self.image_branch(b, pooled, grid) for b in range(len(self.image_heads))]

    def image_branch(self, branch: int, pooled: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
        return F.normalize(self.image_heads[branch](pooled, grid), dim=-1)

    def text_branches(self, text_features: torch.Tensor) -> list[torch.Tensor]:
        return [F.normalize(proj(text_features), dim=-1) for proj in self.text_projs]

    def join(self, branches: list[torch.Tensor]) -> torch.Tensor:
        if len(branches) == 1:
            return branches[0]
        joined = torch.cat(branches, dim=-1) / math.sqrt(len(branches))
        return F.normalize(joined @ self.reducer, dim=-1) if self.reducer.numel() else joined

    @torch.no_grad()
    def fit_reduction(self, images: torch.Tensor, captions: torch.Tensor, dim: int) -> None:
        """Reduce joined embeddings to the top ``dim`` principal directions of the given (joined, unreduced)
        training image and caption embeddings. Fit before the hubness banks, which hold reduced embeddings."""
        if self.corrected:
            raise ModelError("fit the reduction before the hubness banks")
        if len(self.image_heads) == 1 or dim >= images.shape[1]:
            return
        both = torch.cat([images, captions]).float()
        _, _, directions = torch.linalg.svd(both - both.mean(0), full_matrices=False)
        self.reducer = directions[:dim].T.contiguous()
        self.image_bank, self.caption_bank = torch.zeros(0, dim), torch.zeros(0, dim)  # (empty) in the new size
        self.config["reduced_dim"] = int(dim)

    # ---- numpy API ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, features: ImageFeatures, batch_size: int = 256, corrected: bool = True) -> np.ndarray:
        """(N, d) L2-normalised embeddings from the bundled image encoder's output for N images.

        ``corrected=False`` leaves out the hubness correction: for ranking texts against one image (tags, tag
        sets) rather than searching a collection; such vectors only compare with texts encoded the same way."""
        if self.needs_grid and features.grid is None:
            raise ModelError(f"joint model {self.name!r} needs the feature grid: encode images with grid=True")
        self.eval()
        pooled = np.asarray(features.pooled)
        out = []
        for s in range(0, len(pooled), batch_size):
            # copies: features read from the store are read-only, and torch warns about non-writable arrays
            p = torch.from_numpy(np.array(pooled[s : s + batch_size], dtype=np.float32))
            g = None
            if features.grid is not None and self.needs_grid:
                g = torch.from_numpy(np.array(features.grid[s : s + batch_size], dtype=np.float32))
            joined = self.join(self.image_branches(p, g))
            out.append(self.correct_images(joined) if corrected else joined)
        return torch.cat(out).numpy() if out else np.zeros((0, self._dim(corrected)), np.float32)

    def _dim(self, corrected: bool) -> int:
        return self.output_dim if corrected else self.joined_dim

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 256, corrected: bool = True) -> np.ndarray:
        """(N, d) L2-normalised embeddings of N texts (loads the text backbone on first use); ``corrected`` as
        in ``encode_images``."""
        self.eval()
        texts = [str(t) for t in texts]
        out = []
        for s in range(0, len(texts), batch_size):
            feats = self.text_encoder(self.text_encoder.prepare(texts[s : s + batch_size]))
            joined = self.join(self.text_branches(feats))
            out.append(self.correct_texts(joined) if corrected else joined)
        return torch.cat(out).numpy() if out else np.zeros((0, self._dim(corrected)), np.float32)

    # ---- persistence ------------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("text_encoder.")}
        state.update({f"text_encoder.{k}": v for k, v in self.text_encoder.trainable_state().items()})
        return {k: v.detach().clone() for k, v in state.items()}  # a snapshot, not views of live weights

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        text = {k.removeprefix("text_encoder."): v for k, v in state.items() if k.startswith("text_encoder.")}
        rest = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
        # buffers that are empty or defaulted without a hubness correction need not be in the file
        optional = {k for k, v in self.state_dict().items() if v.numel() == 0} | {"hubness_norm"}
        own = {k for k in self.state_dict() if not k.startswith("text_encoder.")}
        rest = {k: v for k, v in rest.items() if k in own or k not in optional}
        own -= optional - set(rest)
        if set(rest) != own:
            raise ModelError(
                f"weights do not fit the model: missing={sorted(own - set(rest))[:5]} "
                f"unexpected={sorted(set(rest) - own)[:5]}"
            )
        self.load_state_dict(rest, strict=False)
        self.text_encoder.load_trainable_state(text)

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write config.json + model.safetensors (+ text assets) into ``directory``. ``extra`` (training data,
        method, metrics...) is merged into the config."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        text_args = {k: v for k, v in self.config["text_encoder_args"].items() if k not in _RUNTIME_ARGS}
        config = {
            **self.config,
            "text_encoder_args": {**text_args, **self.text_encoder.config()},
            "output_dim": self.output_dim,
            "image_preprocessing": image_preprocessing(self.image_encoder_name).to_dict(),
            **(extra or {}),
        }
        self.config = {k: config[k] for k in self.config}
        # float16 on disk halves the shipped size; embeddings are normalised, so the rounding is harmless
        state = {
            k: v.half() if v.is_floating_point() and v.numel() > 1 else v for k, v in self.trainable_state().items()
        }
        save_file(state, str(out / WEIGHTS_FILE))
        self.text_encoder.save_assets(out)
        write_card(out, "joint", config)
        return out


def read_config(directory: Path) -> dict[str, Any]:
    """The checked config.json of a saved joint model."""
    file = directory / CARD_FILE
    config = read_card(directory, "joint")
    for key, registry in (("image_head", IMAGE_HEADS), ("text_encoder", TEXT_ENCODERS)):
        if config.get(key) not in registry:
            raise ModelError(f"{file}: unknown {key} {config.get(key)!r}; known: {', '.join(registry.names())}")
    return config


def _load_from(directory: Path) -> JointModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_config(directory)
    args = dict(config.get("text_encoder_args", {}))
    if (directory / "vocab.txt").is_file():
        args["assets"] = str(directory)
    config["text_encoder_args"] = args
    model = JointModel({k: config[k] for k in (*ARCHITECTURE, *LATER_KEYS) if k in config})
    model.metadata = config
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights}: weights file missing")
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{weights}: unreadable weights ({error})") from None
    model.load_trainable_state({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


def load_joint_model(path: str | Path | None = None) -> JointModel:
    """Load a saved joint model: a directory, or a name looked up in ``$VISTEXT_HOME/models`` and then among
    the models shipped with vistext (see ``vistext.models.card.resolve_model_dir``); ``None`` loads
    ``joint-default``."""
    return _load_from(resolve_model_dir(path, "joint"))
