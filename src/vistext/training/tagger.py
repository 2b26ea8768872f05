"""Training multi-label taggers on a user's labelled photos, three transfer-learning methods, one loop.

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

import copy
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vistext.augment import ImageViews
from vistext.datasets import TaggedDataset, TaggedImage, open_tagged_dataset
from vistext.encoders import ImageEncoder, ImageFeatures, Preprocessing, create_image_encoder
from vistext.encoders.module import ModuleEncoder
from vistext.errors import UsageError
from vistext.evaluation.tagging import f1_scores, mean_average_precision, precision_at_k, top1_accuracy
from vistext.evaluation.thresholds import f1_optimal_thresholds
from vistext.losses.tagging import make_tag_loss
from vistext.models.backbones import TrainableBackbone, create_backbone, export_tagger_network
from vistext.models.tagger import TaggerModel

log = logging.getLogger(__name__)

METHODS = ("cached", "frozen-aug", "finetune")
DEFAULT_EPOCHS = {"cached": 25, "frozen-aug": 25, "finetune": 6}
BUNDLED = "efficientnet-lite0"


@dataclass
class TaggerTrainConfig:
    """Everything ``train_tagger`` needs; the CLI fills it from ``vistext train tagger`` options."""

    data: str | TaggedDataset  # FORMAT:PATH or an opened dataset
    out: str | Path | None = None  # model directory (None: a fresh temporary directory)
    method: str = "cached"  # cached | frozen-aug | finetune
    backbone: str = BUNDLED  # a registered backbone name (see vistext.models.backbones)
    feature: str = "pooled"  # pooled | grid (grid: class-specific attention over the feature map; cached only)
    hidden: int = 0  # >0: a hidden layer of this size in the head
    loss: str = "bce"  # bce | cb-bce | asl (bench: same mAP, bce best P@k, cb-bce best macro-F1)
    epochs: int | None = None  # None: a per-method default
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr: float = 3e-4
    weight_decay: float = 0.05  # strong: 300 sigmoid outputs over 1280 features overfit a few thousand photos fast
    dropout: float = 0.5
    views: int = 4  # augmented views per photo (frozen-aug; finetune uses min(views, 2))
    top_stages: int = 2  # finetune: how many top backbone stages train
    patience: int | None = 5  # stop after this many epochs without a better validation mAP (None: never)
    val_fraction: float = 0.1  # held out of train when the dataset has no dev/val split
    pretrained: bool = True
    threads: int | None = None
    seed: int = 0
    max_images: int | None = None  # cap on training images (quick experiments)


@dataclass
class TaggerTrainResult:
    model: TaggerModel
    out: Path
    metrics: dict[str, Any]  # on the validation split
    train_seconds: float  # feature extraction + training + calibration
    feature_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


class TagHead(nn.Module):
    """The trainable head; ``vistext.tagger.head_logits`` is its NumPy twin (same parameter names).

    ``linear``/``mlp`` read pooled features; ``csra`` (class-specific residual attention, Zhu & Wu 2021) scores
    every grid position per tag and adds ``lam`` x the best position to the average, so a small object that
    fills a few cells of the 7x7 grid still counts.
    """

    def __init__(
        self,
        kind: str,
        in_dim: int,
        n_tags: int,
        hidden: int = 0,
        dropout: float = 0.2,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        prior: np.ndarray | None = None,
        lam: float = 0.1,
    ) -> None:
        super().__init__()
        self.kind, self.lam = kind, float(lam)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        mean = np.zeros(in_dim) if mean is None else mean
        std = np.ones(in_dim) if std is None else std
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.dropout = nn.Dropout(dropout)
        width = in_dim
        if kind == "mlp":
            self.hidden = nn.Linear(in_dim, hidden)
            width = hidden
        self.classifier = nn.Linear(width, n_tags)
        if prior is not None:  # start at the tag frequencies: no wasted epochs unlearning p = 0.5
            p = np.clip(np.asarray(prior, dtype=np.float64), 1e-4, 1 - 1e-4)
            bias = np.log(p / (1 - p)) / (1 + self.lam if kind == "csra" else 1)
            with torch.no_grad():
                self.classifier.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "csra":
            x = x.flatten(2).transpose(1, 2)  # (N, positions, D)
            scores = self.classifier(self.dropout((x - self.mean) / self.std))
            return scores.mean(dim=1) + self.lam * scores.amax(dim=1)
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))
        x = self.dropout((x - self.mean) / self.std)
        if self.kind == "mlp":
            x = torch.relu(self.hidden(x))
        return self.classifier(x)


def split_items(
    dataset: TaggedDataset, val_fraction: float, seed: int, max_images: int | None = None
) -> tuple[list[TaggedImage], list[TaggedImage]]:
    """(train, validation) items: the train and dev/val splits when present; otherwise ``val_fraction`` of the
    training images is held out (seeded). A test split is never used for training."""
    splits = dataset.splits()
    train_name = dataset.train_split()
    val_name = next((s for s in ("dev", "val", "valid", "validation") if s in splits), None)
    if train_name is not None:
        train = dataset.items(train_name)
    else:
        held = {item.image for s in splits if s.startswith("test") for item in dataset.items(s)}
        train = [item for item in dataset.items() if item.image not in held]
    if max_images is not None:
        train = [train[i] for i in sorted(np.random.default_rng(seed).permutation(len(train))[:max_images])]
    if val_name is not None:
        val = dataset.items(val_name)
    else:
        order = np.random.default_rng(seed).permutation(len(train))
        n_val = max(1, round(val_fraction * len(train)))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    if not train or not val:
        raise UsageError(f"{dataset.name}: too few images to train and validate a tagger ({len(train)} + {len(val)})")
    return train, val


def label_matrix(items: list[TaggedImage], labels: list[str]) -> np.ndarray:
    """(n_images, n_tags) float32 0/1 targets; tags outside ``labels`` are ignored."""
    index = {tag: j for j, tag in enumerate(labels)}
    y = np.zeros((len(items), len(labels)), np.float32)
    for i, item in enumerate(items):
        for tag in item.tags:
            if tag in index:
                y[i, index[tag]] = 1.0
    return y


def tag_metrics(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None, single_label: bool = False, k: int = 5
) -> dict[str, Any]:
    """map, micro_f1, macro_f1, p_at_k, accuracy (top-1), n_images, k: the keys ``vistext eval`` reports."""
    k = 1 if single_label else max(1, min(k, scores.shape[1]))
    if thresholds is None:
        pred = scores >= 0.5
    else:
        pred = scores >= thresholds[None, :]
    if single_label:  # exactly one tag per image: the best one
        pred = np.zeros_like(pred)
        pred[np.arange(len(scores)), scores.argmax(axis=1)] = True
    micro, macro = f1_scores(pred, labels)
    has_tags = labels.any(axis=1)
    return {
        "map": mean_average_precision(scores, labels),
        "micro_f1": micro,
        "macro_f1": macro,
        "p_at_k": precision_at_k(scores[has_tags], labels[has_tags], k) if has_tags.any() else 0.0,
        "accuracy": top1_accuracy(scores[has_tags], labels[has_tags]) if has_tags.any() else 0.0,
        "n_images": int(len(scores)),
        "k": k,
    }


class _OwnNetwork(ImageEncoder):
    """A tagger's own ONNX network seen as an encoder, so evaluation reuses the threaded batch pipeline."""

    def __init__(self, model: TaggerModel) -> None:
        self.model, self.name, self.dim = model, f"tagger-{model.method}", model.n_tags
        self.preprocessing = model.preprocessing

    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        return ImageFeatures(pooled=self.model.scores_from_pixels(batch))


def tagger_scores(model: TaggerModel, paths: list, progress: bool = True) -> np.ndarray:
    """Tag probabilities (N, n_tags) for image files; the bundled encoder's features come from the cache."""
    from vistext.features import encode_files

    if model.uses_encoder:
        arrays = encode_files(paths, create_image_encoder(model.backbone), grid=model.needs_grid, progress=progress)
        return model.scores_from_features(ImageFeatures(pooled=arrays.pooled, grid=arrays.grid))
    return encode_files(paths, _OwnNetwork(model), cache=False, progress=progress).pooled


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


def _fit(
    network: nn.Module,
    head: TagHead,
    features: _Features,
    y_train: np.ndarray,
    y_val: np.ndarray,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: TaggerTrainConfig,
    epochs: int,
    progress: bool,
) -> list[dict[str, float]]:
    """The training loop: shuffled mini-batches (one random view per photo), cosine learning rate, validation
    mAP after every epoch; the best epoch's weights are restored at the end."""
    rng = np.random.default_rng(config.seed)
    n = len(y_train)
    steps = epochs * max(1, -(-n // config.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=steps, pct_start=0.1
    )
    targets = torch.from_numpy(y_train)
    best_map, best_epoch, best_state, history = -1.0, 0, copy.deepcopy(network.state_dict()), []
    for epoch in tqdm(range(epochs), desc=f"training ({config.method})", disable=not progress, unit="epoch"):
        started = time.perf_counter()
        network.train()
        for module in network.modules():  # frozen batch statistics: mini-batches are small and data is scarce
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        total = 0.0
        order = rng.permutation(n)
        for start in range(0, n, config.batch_size):
            idx = np.sort(order[start : start + config.batch_size])
            batch = features.train[idx]
            if features.has_views:
                batch = batch[np.arange(len(idx)), rng.integers(0, batch.shape[1], len(idx))]
            logits = network(torch.from_numpy(np.asarray(batch, dtype=np.float32)))
            loss = loss_fn(logits, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        val_scores = predict_network(network, features.val, config.batch_size * 4)
        val_map = mean_average_precision(val_scores, y_val) if y_val.any() else float("nan")
        history.append(
            {"epoch": epoch + 1, "loss": total / n, "val_map": val_map, "seconds": time.perf_counter() - started}
        )
        log.info("epoch %d: loss %.4f, val mAP %.4f", epoch + 1, total / n, val_map)
        if not np.isnan(val_map) and val_map > best_map:
            best_map, best_epoch, best_state = val_map, epoch, copy.deepcopy(network.state_dict())
        elif config.patience is not None and epoch - best_epoch >= config.patience:
            log.info("no better validation mAP for %d epochs: stopping", config.patience)
            break
    network.load_state_dict(best_state)
    network.eval()
    return history


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
            preprocessing = create_image_encoder(BUNDLED).preprocessing
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
    epochs = config.epochs or DEFAULT_EPOCHS[config.method]
    history = _fit(network, head, features, y_train, y_val, loss_fn, optimizer, config, epochs, progress)

    val_scores = predict_network(network, features.val)
    thresholds = f1_optimal_thresholds(val_scores, y_val)
    metrics = tag_metrics(val_scores, y_val, thresholds, dataset.single_label)
    train_seconds = time.perf_counter() - started
    out = Path(config.out) if config.out is not None else Path(tempfile.mkdtemp(prefix="vistext-tagger-"))
    settings = {k: v for k, v in asdict(config).items() if k not in ("data", "out")}
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
            "data": config.data if isinstance(config.data, str) else dataset.name,
            "n_train": len(train),
            "n_val": len(val),
            "epochs_run": len(history),
            "best_epoch": int(np.nanargmax([h["val_map"] for h in history])) + 1 if y_val.any() else len(history),
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
    return TaggerTrainResult(model, out, metrics, train_seconds, feature_seconds, history)


def evaluate_tagger(
    model: TaggerModel, dataset: TaggedDataset | str, split: str | None = None, progress: bool = True, k: int = 5
) -> dict[str, Any]:
    """Test metrics of ``model`` on ``dataset`` (the whole dataset when ``split`` is None).

    Returns map (mean AP over tags with a positive), micro_f1 and macro_f1 (calibrated thresholds), p_at_k,
    accuracy (top-1), n_images and k. Tags the model does not know are ignored.
    """
    if isinstance(dataset, str):
        dataset = open_tagged_dataset(dataset)
    items = dataset.items(split)
    if not items:
        raise UsageError(f"{dataset.name}: no images in split {split!r}")
    scores = tagger_scores(model, [item.image for item in items], progress=progress)
    labels = label_matrix(items, model.labels)
    return tag_metrics(scores, labels, model.thresholds, dataset.single_label, k)
