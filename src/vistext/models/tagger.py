"""A trained multi-label tagger: a sigmoid head over image features, its tags and per-tag thresholds.

On disk a tagger is a directory: ``config.json`` (format version, registered backbone name, training method,
head settings, labels, calibrated thresholds, preprocessing, metrics) + ``model.safetensors`` (the head, and for a
fine-tuned backbone its weights too) + ``model.onnx`` when the tagger brings its own network (a fine-tuned
backbone, or a backbone other than the bundled encoder): pixels in, tag probabilities out.

Inference needs no PyTorch: the head runs in NumPy over the bundled encoder's features, or the whole network
runs in ONNX Runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vistext.encoders import ImageEncoder, ImageFeatures, Preprocessing, create_image_encoder
from vistext.encoders.onnx import open_session
from vistext.errors import ModelError, UsageError
from vistext.models.card import ONNX_FILE, WEIGHTS_FILE, read_card, resolve_model_dir, write_card

log = logging.getLogger(__name__)

HEAD_KINDS = ("linear", "mlp", "csra")  # csra: class-specific residual attention over the feature grid


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def head_logits(weights: dict[str, np.ndarray], head: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """The head's forward pass in NumPy: (N, D) pooled or (N, D, h, w) grid features -> (N, n_tags) logits.

    Mirrors ``vistext.models.heads.TagHead`` exactly (same parameter names), so the saved weights need no torch.
    """
    kind = head["kind"]
    x = np.asarray(features, dtype=np.float32)
    if kind == "csra":
        if x.ndim != 4:
            raise UsageError(f"a grid-feature tagger needs (N, D, h, w) features, got shape {x.shape}")
        x = x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)  # (N, positions, D)
        x = (x - weights["mean"]) / weights["std"]
        per_position = x @ weights["classifier.weight"].T + weights["classifier.bias"]  # (N, P, T)
        return per_position.mean(axis=1) + float(head.get("lam", 0.1)) * per_position.max(axis=1)
    if x.ndim == 4:
        x = x.mean(axis=(2, 3))
    x = (x - weights["mean"]) / weights["std"]
    if kind == "mlp":
        x = np.maximum(x @ weights["hidden.weight"].T + weights["hidden.bias"], 0.0)
    elif kind != "linear":
        raise ModelError(f"unknown tagger head kind {kind!r}; known: {', '.join(HEAD_KINDS)}")
    return x @ weights["classifier.weight"].T + weights["classifier.bias"]


def select_tags(
    scores: np.ndarray, labels: Sequence[str], thresholds: np.ndarray | None, k: int, threshold: bool
) -> list[list[tuple[str, float]]]:
    """Per image, the ``k`` best ``(tag, score)`` pairs; with ``threshold`` only tags at or above their
    calibrated threshold (at most ``k``, possibly none)."""
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    out = []
    for row in np.asarray(scores):
        order = np.argsort(-row, kind="stable")
        if threshold:
            if thresholds is None:
                raise UsageError("this tagger has no calibrated thresholds; use top-k mode")
            order = order[row[order] >= thresholds[order]]
        out.append([(labels[i], float(row[i])) for i in order[:k]])
    return out


@dataclass
class TaggerModel:
    """Labels, a head (NumPy weights) and calibrated thresholds; optionally its own ONNX network."""

    labels: list[str]
    weights: dict[str, np.ndarray]
    head: dict[str, Any]  # kind, in_dim, hidden, lam, feature ("pooled" | "grid")
    backbone: str = "efficientnet-lite0"
    method: str = "cached"
    thresholds: np.ndarray | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    onnx_file: Path | None = None  # set when the tagger runs its own network (pixels -> probabilities)
    extra_weights: dict[str, np.ndarray] = field(default_factory=dict)  # the fine-tuned backbone stages
    _session: Any = field(default=None, repr=False, compare=False)

    @property
    def n_tags(self) -> int:
        return len(self.labels)

    @property
    def needs_grid(self) -> bool:
        return self.head.get("feature") == "grid"

    @property
    def uses_encoder(self) -> bool:
        """True when the bundled image encoder's features feed the head (no own network)."""
        return self.onnx_file is None

    def scores_from_features(self, features: ImageFeatures | np.ndarray) -> np.ndarray:
        """Tag probabilities (N, n_tags) from the encoder's features (pooled, or grid for a grid head)."""
        if isinstance(features, ImageFeatures):
            array = features.grid if self.needs_grid else features.pooled
            if array is None:
                raise UsageError("this tagger needs grid features: encode with grid=True")
        else:
            array = features
        return _sigmoid(head_logits(self.weights, self.head, array)).astype(np.float32)

    def _onnx_session(self) -> Any:
        if self._session is None:
            self._session = open_session(str(self.onnx_file))
        return self._session

    def scores_from_pixels(self, batch: np.ndarray, encoder: ImageEncoder | None = None) -> np.ndarray:
        """Tag probabilities for a preprocessed (N, 3, H, W) batch (``self.preprocessing`` applied)."""
        if self.onnx_file is not None:
            session = self._onnx_session()
            return session.run(None, {"pixels": np.ascontiguousarray(batch, dtype=np.float32)})[0]
        encoder = encoder if encoder is not None else create_image_encoder(self.backbone)
        return self.scores_from_features(encoder.encode(batch, grid=self.needs_grid))

    def predict_scores(
        self, images: Sequence[Image.Image], encoder: ImageEncoder | None = None, batch_size: int = 32
    ) -> np.ndarray:
        """Tag probabilities (N, n_tags) for decoded RGB images."""
        if self.uses_encoder and encoder is not None and encoder.name != self.backbone:
            raise ModelError(f"this tagger was trained on {self.backbone!r} features, not {encoder.name!r}")
        if self.uses_encoder and encoder is None:
            encoder = create_image_encoder(self.backbone)
        prep = encoder.preprocess if self.uses_encoder and encoder is not None else self.preprocessing
        chunks = [np.empty((0, self.n_tags), np.float32)]
        for start in range(0, len(images), batch_size):
            batch = np.stack([prep(image.convert("RGB")) for image in images[start : start + batch_size]])
            chunks.append(self.scores_from_pixels(batch, encoder))
        return np.concatenate(chunks)

    def predict_images(
        self,
        images: Sequence[Image.Image],
        encoder: ImageEncoder | None = None,
        k: int = 5,
        threshold: bool = False,
    ) -> list[list[tuple[str, float]]]:
        """Per image, ``(tag, probability)`` pairs best first: top-``k``, or with ``threshold`` the tags at or
        above their calibrated thresholds (at most ``k``)."""
        return select_tags(self.predict_scores(images, encoder), self.labels, self.thresholds, k, threshold)

    # ---- save / load ---------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The card's fields (``write_card`` adds the format and its version)."""
        return {
            "backbone": self.backbone,
            "method": self.method,
            "head": self.head,
            "runtime": "encoder" if self.uses_encoder else "onnx",
            "preprocessing": self.preprocessing.to_dict(),
            "labels": list(self.labels),
            "thresholds": None if self.thresholds is None else [round(float(t), 6) for t in self.thresholds],
            "metrics": self.metrics,
            "training": self.training,
        }

    def save(self, directory: str | Path, onnx_bytes: bytes | None = None) -> Path:
        """Write the model directory (created if needed). ``onnx_bytes`` replaces the own network's file."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"head.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()}
        tensors.update({f"backbone.{k}": np.ascontiguousarray(v) for k, v in self.extra_weights.items()})
        save_file(tensors, str(directory / WEIGHTS_FILE))
        target = directory / ONNX_FILE
        if onnx_bytes is not None:
            target.write_bytes(onnx_bytes)
        elif self.onnx_file is not None and self.onnx_file.resolve() != target.resolve():
            target.write_bytes(self.onnx_file.read_bytes())
        if self.onnx_file is not None or onnx_bytes is not None:
            self.onnx_file = target
            self._session = None
        write_card(directory, "tagger", self.config())
        return directory


def load_tagger(directory: str | Path) -> TaggerModel:
    """Load a tagger written by ``TaggerModel.save``: a directory, or a name looked up in
    ``$VISTEXT_HOME/models`` (checks the format and version)."""
    from safetensors.numpy import load_file

    directory = resolve_model_dir(directory, "tagger")
    config = read_card(directory, "tagger")
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelError(f"{weights_path}: tagger weights missing")
    tensors = load_file(str(weights_path))
    onnx_file = directory / ONNX_FILE if config.get("runtime") == "onnx" else None
    if onnx_file is not None and not onnx_file.is_file():
        raise ModelError(f"{onnx_file}: this tagger's network is missing")
    thresholds = config.get("thresholds")
    return TaggerModel(
        labels=list(config["labels"]),
        weights={k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")},
        head=dict(config["head"]),
        backbone=config["backbone"],
        method=config.get("method", "cached"),
        thresholds=None if thresholds is None else np.asarray(thresholds, dtype=np.float32),
        preprocessing=Preprocessing(**config.get("preprocessing", {})),
        metrics=config.get("metrics", {}),
        training=config.get("training", {}),
        onnx_file=onnx_file,
        extra_weights={k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")},
    )
