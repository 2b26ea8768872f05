"""Training multi-label taggers on a user's labelled photos: three transfer-learning methods, one loop
(``vistext.training.loop``).

- ``cached``: the backbone's features are extracted once (and cached on disk); only the head trains.
- ``frozen-aug``: the backbone stays frozen but sees ``views`` augmented versions of every photo (random crops,
  flips, colour jitter); each epoch the head trains on a freshly drawn view of each photo.
- ``finetune``: the top ``top_stages`` stages of the backbone train with the head. The frozen prefix's
  activations are computed once per augmented view and cached, so each step runs only the top stages: this is
  what makes fine-tuning take minutes, not hours, on a CPU. The result is exported to ONNX for inference.

The head is a sigmoid layer (optionally with a hidden layer, or class-specific attention over the 7x7 grid),
trained with asymmetric or class-balanced loss. The epoch with the best validation mAP is kept and per-tag
thresholds are calibrated on the validation split (F1-optimal) and stored with the model.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vistext.augment import ImageViews
from vistext.datasets import TaggedImage, open_tagged_dataset
from vistext.encoders import ImageEncoder, Preprocessing, create_image_encoder, image_preprocessing
from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation
from vistext.evaluation.tagging import label_matrix, tag_evaluation, tag_metrics
from vistext.evaluation.thresholds import f1_optimal_thresholds
from vistext.losses.tagging import make_tag_loss
from vistext.models.backbones import TrainableBackbone, create_backbone
from vistext.models.heads import TagHead
from vistext.models.tagger import TaggerModel
from vistext.training.config import BUNDLED, DEFAULT_EPOCHS, METHODS, TaggerTrainConfig
from vistext.training.data import split_items
from vistext.training.export import ModuleEncoder, export_tagger_network
from vistext.training.loop import LoopSettings, checkpoint_file, fit

__all__ = ["TaggerTrainConfig", "TaggerTrainResult", "predict_network", "train_tagger"]

log = logging.getLogger(__name__)


@dataclass
class TaggerTrainResult:
    model: TaggerModel
    out: Path
    metrics: dict[str, Any]  # on the validation split
    train_seconds: float  # feature extraction + training + calibration
    feature_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Features:
    train: np.ndarray  # (N, ...) or (N, V, ...) when has_views
    val: np.ndarray
    has_views: bool


def _check(config: TaggerTrainConfig) -> None:
    if config.method not in METHODS:
        raise UsageError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    if config.feature not in ("pooled", "grid"):
        raise UsageError(f"feature must be 'pooled' or 'grid', got {config.feature!r}")
    if config.feature == "grid" and config.method != "cached":
        raise UsageError("grid features are supported with --method cached only (augmented grids do not fit in RAM)")
    if config.epochs is not None and config.epochs < 1:
        raise UsageError(f"epochs must be at least 1, got {config.epochs}")


def _frozen_features(
    config: TaggerTrainConfig, train: list[TaggedImage], val: list[TaggedImage], progress: bool
) -> tuple[_Features, TrainableBackbone | None]:
    """Backbone features for the cached and frozen-aug methods, and the backbone module when it is not the
    bundled encoder (its ONNX export then becomes part of the saved tagger)."""
    from vistext.features import encode_files

    module: TrainableBackbone | None = None
    encoder: ImageEncoder
    if config.backbone == BUNDLED:
        encoder = create_image_encoder(BUNDLED)
    else:
        module = create_backbone(config.backbone, pretrained=config.pretrained)
        encoder = ModuleEncoder(module, config.backbone, module.preprocessing)
    grid = config.feature == "grid"
    views = ImageViews.random(config.views, config.seed) if config.method == "frozen-aug" else None

    def pick(arrays: Any) -> np.ndarray:
        return arrays.grid if grid else arrays.pooled

    paths = [item.image for item in train]
    train_x = pick(encode_files(paths, encoder, grid=grid, views=views, progress=progress))
    val_x = pick(encode_files([item.image for item in val], encoder, grid=grid, progress=progress))
    return _Features(train_x, val_x, views is not None), module


class _TaggerTask:
    """The tagger for the training loop: shuffled mini-batches (one random view per photo when there are
    several), the tag loss, validation mAP after every epoch."""

    def __init__(self, network: nn.Module, features: _Features, y_train: np.ndarray, y_val: np.ndarray,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int,
                 single_label: bool) -> None:  # fmt: skip
        self.network, self.features, self.y_val, self.loss_fn = network, features, y_val, loss_fn
        self.targets = torch.from_numpy(y_train)
        self.batch_size, self.single_label = batch_size, single_label

    def steps_per_epoch(self) -> int:
        return max(1, -(-len(self.targets) // self.batch_size))

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        order = rng.permutation(len(self.targets))
        for start in range(0, len(order), self.batch_size):
            idx = np.sort(order[start : start + self.batch_size])
            batch = self.features.train[idx]
            if self.features.has_views:
                batch = batch[np.arange(len(idx)), rng.integers(0, batch.shape[1], len(idx))]
            yield torch.from_numpy(np.asarray(batch, dtype=np.float32)), idx

    def loss(self, batch: tuple[torch.Tensor, np.ndarray], epoch: int, rng: np.random.Generator
             ) -> tuple[torch.Tensor, int]:  # fmt: skip
        x, idx = batch
        return self.loss_fn(self.network(x), self.targets[idx]), len(idx)

    def train_mode(self) -> None:
        self.network.train()
        for module in self.network.modules():  # frozen batch statistics: mini-batches are small and data is scarce
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def evaluate(self) -> Evaluation:
        scores = predict_network(self.network, self.features.val, self.batch_size * 4)
        return tag_evaluation(scores, self.y_val, None, self.single_label)

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(state)


def predict_network(network: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Sigmoid scores of a training-time network over cached inputs, in eval mode."""
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.asarray(x[start : start + batch_size], dtype=np.float32))
            out.append(torch.sigmoid(network(batch)).numpy())
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


def _finetune_setup(
    config: TaggerTrainConfig, train: list[TaggedImage], val: list[TaggedImage], progress: bool
) -> tuple[_Features, TrainableBackbone, nn.Module]:
    """Cached prefix activations (train: augmented views) plus the backbone and its trainable top."""
    from vistext.features import encode_files

    backbone = create_backbone(config.backbone, pretrained=config.pretrained)
    prefix, top = backbone.split(config.top_stages)
    for parameter in prefix.parameters():
        parameter.requires_grad_(False)
    name = f"{config.backbone}-prefix{config.top_stages}"
    prefix_encoder = ModuleEncoder(prefix.eval(), name, backbone.preprocessing)
    views = ImageViews.random(min(config.views, 2), config.seed) if config.views > 1 else None
    train_x = encode_files([i.image for i in train], prefix_encoder, views=views, progress=progress).pooled
    val_x = encode_files([i.image for i in val], prefix_encoder, progress=progress).pooled
    return _Features(train_x, val_x, views is not None), backbone, top


def _head_statistics(top: nn.Module | None, features: _Features) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std of the head's input over the training set (standardised inputs train faster)."""
    x = features.train[:, 0] if features.has_views else features.train
    if top is not None:
        top.eval()
        with torch.inference_mode():
            x = np.concatenate(
                [top(torch.from_numpy(np.asarray(x[s : s + 256], np.float32))).numpy() for s in range(0, len(x), 256)]
            )
    x = np.asarray(x, dtype=np.float32)
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    return x.mean(axis=axes), x.std(axis=axes) + 1e-3


def train_tagger(config: TaggerTrainConfig, progress: bool = True) -> TaggerTrainResult:
    """Train, calibrate and save a tagger as ``config`` says; returns the model and its validation metrics."""
    _check(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    dataset = open_tagged_dataset(config.data) if isinstance(config.data, str) else config.data
    train, val = split_items(dataset, config.val_fraction, config.seed, config.max_images)
    labels = [t for t in dataset.vocabulary() if any(t in item.tags for item in train)]
    if not labels:
        raise UsageError(f"{dataset.name}: the training images have no tags")
    y_train, y_val = label_matrix(train, labels), label_matrix(val, labels)
    started = time.perf_counter()

    own_network: TrainableBackbone | None = None
    preprocessing: Preprocessing
    if config.method == "finetune":
        features, backbone, top = _finetune_setup(config, train, val, progress)
        own_network, preprocessing = backbone, backbone.preprocessing
    else:
        features, own_network = _frozen_features(config, train, val, progress)
        top = None
        if own_network is not None:
            preprocessing = own_network.preprocessing
        else:
            preprocessing = image_preprocessing(BUNDLED)
    feature_seconds = time.perf_counter() - started

    mean, std = _head_statistics(top, features)
    kind = "csra" if config.feature == "grid" else ("mlp" if config.hidden > 0 else "linear")
    head = TagHead(kind, len(mean), len(labels), config.hidden, config.dropout, mean, std, y_train.mean(axis=0))
    network: nn.Module = nn.Sequential(top, head) if top is not None else head
    groups: list[dict[str, Any]] = [{"params": list(head.parameters()), "lr": config.lr}]
    if top is not None:
        groups.append({"params": [p for p in top.parameters() if p.requires_grad], "lr": config.backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    loss_fn = make_tag_loss(config.loss, y_train.sum(axis=0), len(y_train))
    out = Path(config.out) if config.out is not None else Path(tempfile.mkdtemp(prefix="vistext-tagger-"))
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in asdict(config).items() if k not in ("data", "out")}
    data_name = config.data if isinstance(config.data, str) else dataset.name
    task = _TaggerTask(network, features, y_train, y_val, loss_fn, config.batch_size, dataset.single_label)
    loop = LoopSettings(
        epochs=config.epochs or DEFAULT_EPOCHS[config.method],
        patience=config.patience,
        checkpoint=checkpoint_file(out),
        run_key={**settings, "data": data_name, "labels": labels},
        eval_prefix="val",
        desc=f"training ({config.method})",
        progress=progress,
    )
    fitted = fit(task, optimizer, loop, np.random.default_rng(config.seed))
    history = fitted.history

    val_scores = predict_network(network, features.val)
    thresholds = f1_optimal_thresholds(val_scores, y_val)
    metrics = tag_metrics(val_scores, y_val, thresholds, dataset.single_label)
    train_seconds = time.perf_counter() - started
    model = TaggerModel(
        labels=labels,
        weights={k: v.detach().numpy().copy() for k, v in head.state_dict().items()},
        head={"kind": kind, "in_dim": len(mean), "hidden": config.hidden, "lam": head.lam, "feature": config.feature},
        backbone=config.backbone,
        method=config.method,
        thresholds=thresholds,
        preprocessing=preprocessing,
        metrics={"validation": metrics},
        training={
            **settings,
            "data": data_name,
            "n_train": len(train),
            "n_val": len(val),
            "epochs_run": fitted.epochs_run,
            "best_epoch": fitted.best_epoch or fitted.epochs_run,
            "train_seconds": round(train_seconds, 2),
            "feature_seconds": round(feature_seconds, 2),
        },
    )
    if config.method == "finetune" and own_network is not None:
        # only the stages that trained: the rest is the registered backbone's own pretrained weights
        cut = own_network.n_stages - max(1, min(config.top_stages, own_network.n_stages))
        trained = tuple(f"stages.{i}." for i in range(cut, own_network.n_stages))
        model.extra_weights = {
            k: v.detach().numpy().copy() for k, v in own_network.state_dict().items() if k.startswith(trained)
        }
    onnx_bytes = export_tagger_network(own_network, head, grid=kind == "csra") if own_network is not None else None
    model.save(out, onnx_bytes=onnx_bytes)
    checkpoint_file(out).unlink(missing_ok=True)  # it only serves an interrupted run; the model directory ships
    return TaggerTrainResult(model, out, metrics, train_seconds, feature_seconds, history)
