"""Training the joint image–text model, top to bottom.

1. Open the caption dataset; cache the bundled image encoder's features of every train/dev/test image (one
   plain view for dev/test, exactly what indexing computes; several flips/crops for train), and, when the text
   encoder is frozen, its features of every caption.
2. Train heads (+ any trainable text part) with a registered loss; after ``hard_after`` epochs switch to
   hardest negatives (VSE++). Each step shows each branch its own random view of every image.
3. The loop (``vistext.training.loop``): after every epoch dev recall, a checkpoint (``checkpoint.pt`` in the
   out dir: a rerun resumes from it), early stopping on the dev recall sum (``rsum``, the primary metric of
   ``vistext.evaluation.retrieval``).
4. The best epoch's several branches are reduced to ``reduced_dim`` principal directions, the hubness banks
   are filled from training images and captions, and the model is saved as a directory with its test metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistext.augment import ImageViews
from vistext.encoders import ImageFeatures, image_feature_dim
from vistext.evaluation.base import Evaluation
from vistext.evaluation.retrieval import retrieval_evaluation
from vistext.losses.ranking import get_loss
from vistext.models.heads import head_needs_grid
from vistext.models.joint import JointModel
from vistext.text import Vocabulary, tokenize
from vistext.training.config import BUNDLED, JointTrainConfig
from vistext.training.data import SplitData, cached_text_features, split_data
from vistext.training.loop import LoopSettings, checkpoint_file, fit, seed_everything

__all__ = ["JointTrainConfig", "TrainResult", "build_model", "evaluate_split", "train_joint"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    epochs_run: int
    best_epoch: int
    dev: dict[str, Any]
    test: dict[str, Any] | None
    seconds: float
    history: list[dict[str, Any]]


# ---- model ------------------------------------------------------------------------------------------------


def build_model(config: JointTrainConfig, train_texts: list[str]) -> JointModel:
    """A fresh joint model for ``config``. The text encoder gets every text setting and takes those it knows
    (a vocabulary of ``train_texts`` for GloVe encoders, the fine-tuned layers for MiniLM, ...)."""
    vocab = Vocabulary.build((tokenize(t) for t in train_texts), min_count=config.min_count)
    text_args: dict[str, Any] = {
        "finetune_layers": config.text_layers,
        "width": config.text_width,
        "hidden": config.rnn_hidden,
        "vectors": config.vectors,
        "freeze_embeddings": config.freeze_embeddings,
        "vocab": vocab,
        "seed": config.seed,
    }
    model = JointModel(
        {
            "name": config.name or Path(config.out).name or "joint",
            "image_encoder": BUNDLED,
            "image_dim": image_feature_dim(BUNDLED),
            "image_head": config.image_head,
            "image_head_args": {"hidden": config.hidden, "dropout": config.dropout},
            "text_encoder": config.text,
            "text_encoder_args": text_args,
            "text_hidden": config.hidden,
            "dropout": config.dropout,
            "dim": config.dim,
            "branches": config.branches,
        }
    )
    # the card keeps what the encoder says it was built with, not the settings it ignored
    used = model.text_encoder.config()
    model.config["text_encoder_args"] = {k: v for k, v in text_args.items() if k in used}
    return model


def _optimizer(model: JointModel, config: JointTrainConfig) -> torch.optim.Optimizer:
    encoder = model.text_encoder
    text_params: list[torch.nn.Parameter] = []
    if not encoder.cacheable:  # a trainable text encoder (a cacheable one's trainable part trains as a head)
        trainable = getattr(encoder, "trainable_parameters", encoder.parameters)()  # loads a lazy backbone
        text_params = [p for p in trainable if p.requires_grad]
    ids = {id(p) for p in text_params}
    head_params = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": head_params, "lr": config.lr}]
    if text_params:
        # fine-tuned pretrained transformer layers want a much smaller step than fresh weights (a GloVe RNN)
        groups.append({"params": text_params, "lr": config.text_lr if config.text_layers else config.lr})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


# ---- embeddings of a cached split ---------------------------------------------------------------------------


def _text_batch(model: JointModel, data: SplitData, rows: np.ndarray) -> torch.Tensor:
    if data.text_features is not None:
        return model.text_encoder.pool(data.text_features[torch.from_numpy(rows)])
    return model.text_encoder(model.text_encoder.prepare([data.texts[r] for r in rows]))


def _image_batch(model: JointModel, data: SplitData, idx: torch.Tensor, rng: np.random.Generator) -> list[torch.Tensor]:
    """Each branch's embeddings of the images ``idx``, every branch seeing its own random view of each image
    (an ensemble whose members see different crops disagree more, which is what makes it worth having)."""
    embs = []
    for branch in range(len(model.image_heads)):
        view = torch.from_numpy(rng.integers(data.pooled.shape[1], size=len(idx)))
        fmap = data.grid[idx, view].float() if data.grid is not None else None
        embs.append(model.image_branch(branch, data.pooled[idx, view], fmap))
    return embs


def _embed_images(model: JointModel, data: SplitData, rows: np.ndarray, corrected: bool) -> torch.Tensor:
    """The model's embeddings (``JointModel.encode_images``) of the plain view of images ``rows``."""
    out = [np.zeros((0, model.output_dim if corrected else model.joined_dim), np.float32)]
    for s in range(0, len(rows), 256):
        idx = torch.from_numpy(rows[s : s + 256])
        grid = data.grid[idx, 0].numpy() if data.grid is not None else None
        features = ImageFeatures(pooled=data.pooled[idx, 0].numpy(), grid=grid)
        out.append(model.encode_images(features, corrected=corrected))
    return torch.from_numpy(np.concatenate(out))


@torch.no_grad()
def _embed_texts(model: JointModel, data: SplitData, rows: np.ndarray, corrected: bool) -> torch.Tensor:
    """The model's embeddings of captions ``rows``, from their cached frozen features when there are any."""
    model.eval()
    joined = torch.cat(
        [model.join(model.text_branches(_text_batch(model, data, rows[s : s + 256]))) for s in range(0, len(rows), 256)]
    )
    return model.correct_texts(joined) if corrected else joined


def evaluate_split(model: JointModel, data: SplitData, corrected: bool = True) -> Evaluation:
    """Retrieval metrics on a cached split (view 0 of each image = the plain view); ``corrected=False`` leaves
    out the hubness correction."""
    images = _embed_images(model, data, np.arange(len(data.images)), corrected)
    texts = _embed_texts(model, data, np.arange(len(data.texts)), corrected)
    return retrieval_evaluation((images @ texts.T).numpy(), data.owner)


def _training_sample(model: JointModel, data: SplitData, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Joined embeddings of ``size`` random training images (plain view) and as many random captions."""
    rng = np.random.default_rng(seed)
    images = np.sort(rng.choice(len(data.images), min(size, len(data.images)), replace=False))
    captions = np.sort(rng.choice(len(data.texts), len(images), replace=False))
    return _embed_images(model, data, images, corrected=False), _embed_texts(model, data, captions, corrected=False)


def build_hubness_banks(model: JointModel, data: SplitData, size: int, k: int, seed: int) -> None:
    """Give ``model`` reference banks of ``size`` random training images (plain view) and captions."""
    model.set_hubness_banks(*_training_sample(model, data, size, seed), k=k)


def reduce_branches(model: JointModel, data: SplitData, dim: int, seed: int) -> None:
    """Project a several-branch model's joined embeddings onto ``dim`` principal directions of the training
    images and as many captions."""
    model.fit_reduction(*_training_sample(model, data, len(data.images), seed), dim)


# ---- training -----------------------------------------------------------------------------------------------


class _JointTask:
    """The joint model for the training loop: caption batches (each with its image), a registered ranking loss
    summed over the branches (hardest negatives from ``hard_after`` on), dev retrieval after every epoch."""

    def __init__(self, model: JointModel, train: SplitData, dev: SplitData, config: JointTrainConfig) -> None:
        self.model, self.train, self.dev, self.config = model, train, dev, config

    def steps_per_epoch(self) -> int:
        return max(1, len(self.train.texts) // self.config.batch_size)  # the last, partial batch is left out

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        order = rng.permutation(len(self.train.texts))
        size = self.config.batch_size
        for step in range(self.steps_per_epoch()):
            yield order[step * size : (step + 1) * size]

    def loss(self, rows: np.ndarray, epoch: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        model, config = self.model, self.config
        loss_fn = get_loss("vse-hardest" if 0 <= config.hard_after <= epoch else config.loss)
        idx = torch.from_numpy(self.train.owner[rows])
        image_embs = _image_batch(model, self.train, idx, rng)
        text_embs = model.text_branches(_text_batch(model, self.train, rows))
        scale = model.log_scale.exp().clamp(max=100.0)
        loss = sum(
            loss_fn(i, t, scale=scale, margin=config.margin, pair_ids=idx)
            for i, t in zip(image_embs, text_embs, strict=True)
        )
        return loss, 1  # type: ignore[return-value]

    def train_mode(self) -> None:
        self.model.train()

    def evaluate(self) -> Evaluation:
        return evaluate_split(self.model, self.dev)

    def state(self) -> dict[str, torch.Tensor]:
        return self.model.trainable_state()

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_trainable_state(state)


def train_joint(config: JointTrainConfig, progress: bool = True) -> TrainResult:
    """Train (or resume) a joint model as described in the module docstring; returns where it went and how it did.

    Rerunning with the same config and out dir resumes from ``checkpoint.pt``; a finished run trains nothing.
    """
    from vistext.datasets import open_caption_dataset

    start = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    get_loss(config.loss)  # fail fast on an unknown name
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    dataset = open_caption_dataset(config.data)
    train_split = dataset.train_split() or "train"
    views = ImageViews(config.views.split(","))
    grid = head_needs_grid(config.image_head)
    train = split_data(dataset, train_split, config.max_train_images, views, grid, progress)
    dev = split_data(dataset, "dev", config.max_eval_images, None, grid, progress)
    model = build_model(config, train.texts)
    if model.text_encoder.cacheable:
        for data in (train, dev):
            data.text_features = cached_text_features(model, data.texts, progress)
    optimizer = _optimizer(model, config)
    loop = LoopSettings(
        epochs=config.epochs,
        patience=config.patience,
        checkpoint=checkpoint_file(out),
        run_key=asdict(config),
        eval_prefix="dev",
        desc="training joint model",
        progress=progress,
    )
    fitted = fit(_JointTask(model, train, dev, config), optimizer, loop, np.random.default_rng(config.seed))

    if config.branches > 1 and config.reduced_dim:
        reduce_branches(model, train, config.reduced_dim, config.seed)
    if config.hubness_bank > 0:
        build_hubness_banks(model, train, config.hubness_bank, config.hubness_k, config.seed)
    del train
    test = (
        split_data(dataset, "test", config.max_eval_images, None, grid, progress)
        if "test" in dataset.splits()
        else None
    )
    test_metrics = uncorrected = None
    if test is not None:
        if model.text_encoder.cacheable:
            test.text_features = cached_text_features(model, test.texts, progress)
        test_metrics = evaluate_split(model, test).metrics
        if model.corrected:
            uncorrected = evaluate_split(model, test, corrected=False).metrics
    best_dev: dict[str, Any] = next((r for r in fitted.history if r["epoch"] == fitted.best_epoch), {})
    seconds = time.monotonic() - start + fitted.carried_seconds
    model.save(
        out,
        extra={
            "training": {
                "data": config.data,
                "dataset": dataset.name,
                "train_split": train_split,
                "early_stopping_split": "dev",
                "method": _method(config, model),
                "config": asdict(config),
                "best_epoch": fitted.best_epoch,
                "epochs_run": fitted.epochs_run,
                "seconds_total": round(seconds, 1),
                "history": fitted.history,
            },
            "metrics": {
                "dev": {k.removeprefix("dev_"): v for k, v in best_dev.items() if k.startswith("dev_")},
                "test": test_metrics,
                **({"test_without_hubness_correction": uncorrected} if model.corrected and test else {}),
            },
        },
    )
    return TrainResult(out, fitted.epochs_run, fitted.best_epoch, best_dev, test_metrics, seconds, fitted.history)


def _method(config: JointTrainConfig, model: JointModel) -> str:
    hard = f", hardest negatives (VSE++) from epoch {config.hard_after + 1}" if config.hard_after >= 0 else ""
    frozen = not any(p.requires_grad for p in model.text_encoder.parameters()) and not config.text_layers
    text = f"frozen {config.text}" if frozen else config.text
    hub = (
        f", CSLS hubness correction (k={config.hubness_k}) against {config.hubness_bank} train images/captions"
        if config.hubness_bank > 0
        else ""
    )
    reduced = (
        f" reduced to {config.reduced_dim} principal dims"
        if config.branches > 1 and config.reduced_dim and config.reduced_dim < config.branches * config.dim
        else ""
    )
    return (
        f"{config.image_head} head on frozen EfficientNet-Lite0 features ({config.views} views), {text} text "
        f"encoder, {config.branches} branch(es) of {config.dim}-d projections{reduced}, {config.loss} "
        f"loss{hard}{hub}"
    )
