"""Training the joint image–text model, top to bottom.

1. Open the caption dataset; cache the bundled image encoder's features of every train/dev/test image (one
   plain view for dev/test, exactly what indexing computes; several flips/crops for train), and, when the text
   encoder is frozen, its features of every caption.
2. Train heads (+ any trainable text part) with a registered loss; after ``hard_after`` epochs switch to
   hardest negatives (VSE++). Each step shows each branch its own random view of every image.
3. After every epoch: dev recall, a checkpoint (``checkpoint.pt`` in the out dir: a rerun resumes from it),
   early stopping on the dev recall sum.
4. The best epoch's several branches are reduced to ``reduced_dim`` principal directions, the hubness banks
   are filled from training images and captions, and the model is saved as a directory with its test metrics.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vistext.evaluation.retrieval import retrieval_metrics
from vistext.losses.ranking import get_loss
from vistext.models.heads import IMAGE_HEADS
from vistext.models.joint import JointModel
from vistext.paths import atomic_path
from vistext.training.data import SplitData, TrainingViews, cached_text_features, split_data

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


@dataclass
class JointTrainConfig:
    """Everything that defines a training run (saved in the checkpoint and the model card)."""

    data: str  # a caption dataset spec, e.g. "flickr8k:/path/to/flickr8k"
    out: str  # the output model directory (also holds the resumable checkpoint)
    text: str = "minilm"  # registered text encoder: minilm, glove-gru, glove-lstm
    loss: str = "infonce"  # registered loss: infonce, vse-hardest, hinge-sum, triplet-semihard
    image_head: str = "pooled-mlp"  # registered image head: pooled-mlp, grid-gpo, grid-attn
    dim: int = 512
    hidden: int = 1024
    dropout: float = 0.5
    epochs: int = 12
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    margin: float = 0.2
    views: str = "orig,flip,crop-tl,crop-br,crop-c"  # training views per image (dev/test always "orig")
    hard_after: int = -1  # switch the loss to vse-hardest from this epoch on (-1: never)
    patience: int = 3  # early stopping: epochs without a better dev recall sum
    branches: int = 1  # ensemble members trained together (one joint model)
    reduced_dim: int | None = 512  # several branches: joined embeddings reduced to this many dims (None: keep all)
    hubness_bank: int = 1000  # CSLS hubness correction: reference train images/captions kept (0: off)
    hubness_k: int = 10
    text_layers: int = 0  # MiniLM: fine-tune this many top layers
    text_lr: float = 5e-5
    text_width: int = 384  # minilm-gpo: width of the learned token pooling
    rnn_hidden: int = 1024  # GloVe encoders
    vectors: str = "glove-6b-50d"  # GloVe encoders: bundled vectors or a GloVe/word2vec text file
    freeze_embeddings: bool = False
    min_count: int = 1  # GloVe vocabulary: minimum word count in the training captions
    name: str | None = None  # the model's name (its index space is "joint:NAME"); default: the out dir's name
    seed: int = 0
    # torch CPU threads: the heads are small, and on a shared machine 2+ threads spend their time waiting on
    # each other (measured: 8 min vs 23 s per epoch); None keeps torch's default
    threads: int | None = 1
    max_train_images: int | None = None  # smoke runs: only the first N train images
    max_eval_images: int | None = None  # smoke runs: only the first N dev/test images
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    out: Path
    epochs_run: int
    best_epoch: int
    dev: dict[str, Any]
    test: dict[str, Any] | None
    seconds: float
    history: list[dict[str, Any]]


# ---- model, evaluation --------------------------------------------------------------------------------------


def build_model(config: JointTrainConfig, train_texts: list[str]) -> JointModel:
    """A fresh joint model for ``config`` (GloVe encoders build their vocabulary from ``train_texts``)."""
    text_args: dict[str, Any] = {}
    if config.text == "minilm":
        text_args = {"finetune_layers": config.text_layers}
    elif config.text == "minilm-gpo":
        text_args = {"width": config.text_width}
    elif config.text.startswith("glove-"):
        from vistext.text import Vocabulary, tokenize

        vocab = Vocabulary.build((tokenize(t) for t in train_texts), min_count=config.min_count)
        text_args = {
            "vocab": vocab,
            "hidden": config.rnn_hidden,
            "vectors": config.vectors,
            "freeze_embeddings": config.freeze_embeddings,
            "seed": config.seed,
        }
    return JointModel(
        {
            "name": config.name or Path(config.out).name or "joint",
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


def _text_batch(model: JointModel, data: SplitData, rows: np.ndarray) -> torch.Tensor:
    if data.text_features is not None:
        return model.text_encoder.pool(data.text_features[torch.from_numpy(rows)])
    return model.text_encoder(model.text_encoder.prepare([data.texts[r] for r in rows]))


@torch.no_grad()
def evaluate_split(model: JointModel, data: SplitData, corrected: bool = True) -> dict[str, Any]:
    """Retrieval metrics on a cached split (view 0 of each image = the plain view); ``corrected=False`` leaves
    out the hubness correction."""
    model.eval()
    images = _joined_images(model, data, np.arange(len(data.images)))
    texts = _joined_texts(model, data, np.arange(len(data.texts)))
    if corrected:
        images, texts = model.correct_images(images), model.correct_texts(texts)
    model.train()
    return retrieval_metrics((images @ texts.T).numpy(), data.owner)


def _image_batch(model: JointModel, data: SplitData, idx: torch.Tensor, rng: np.random.Generator) -> list[torch.Tensor]:
    """Each branch's embeddings of the images ``idx``, every branch seeing its own random view of each image
    (an ensemble whose members see different crops disagrees more, which is what makes it worth having)."""
    embs = []
    for branch in range(len(model.image_heads)):
        view = torch.from_numpy(rng.integers(data.pooled.shape[1], size=len(idx)))
        fmap = data.grid[idx, view].float() if data.grid is not None else None
        embs.append(model.image_branch(branch, data.pooled[idx, view], fmap))
    return embs


def _joined_images(model: JointModel, data: SplitData, rows: np.ndarray) -> torch.Tensor:
    """Joined (uncorrected) embeddings of the plain view of images ``rows``, 256 at a time."""
    out = []
    for s in range(0, len(rows), 256):
        idx = torch.from_numpy(rows[s : s + 256])
        g = data.grid[idx, 0].float() if data.grid is not None else None
        out.append(model.join(model.image_branches(data.pooled[idx, 0], g)))
    return torch.cat(out)


def _joined_texts(model: JointModel, data: SplitData, rows: np.ndarray) -> torch.Tensor:
    """Joined (uncorrected) embeddings of captions ``rows``, 256 at a time."""
    return torch.cat(
        [model.join(model.text_branches(_text_batch(model, data, rows[s : s + 256]))) for s in range(0, len(rows), 256)]
    )


@torch.no_grad()
def _training_sample(model: JointModel, data: SplitData, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Joined embeddings of ``size`` random training images (plain view) and as many random captions."""
    model.eval()
    rng = np.random.default_rng(seed)
    images = np.sort(rng.choice(len(data.images), min(size, len(data.images)), replace=False))
    captions = np.sort(rng.choice(len(data.texts), len(images), replace=False))
    sample = _joined_images(model, data, images), _joined_texts(model, data, captions)
    model.train()
    return sample


def build_hubness_banks(model: JointModel, data: SplitData, size: int, k: int, seed: int) -> None:
    """Give ``model`` reference banks of ``size`` random training images (plain view) and captions."""
    model.set_hubness_banks(*_training_sample(model, data, size, seed), k=k)


def reduce_branches(model: JointModel, data: SplitData, dim: int, seed: int) -> None:
    """Project a several-branch model's joined embeddings onto ``dim`` principal directions of the training
    images and as many captions."""
    model.fit_reduction(*_training_sample(model, data, len(data.images), seed), dim)


def recall_sum(metrics: dict[str, Any]) -> float:
    return float(sum(metrics[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))


# ---- the loop -----------------------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _optimizer(model: JointModel, config: JointTrainConfig) -> torch.optim.Optimizer:
    encoder = model.text_encoder
    text_params: list[torch.nn.Parameter] = []
    if config.text == "minilm" and config.text_layers:
        text_params = encoder.trainable_parameters()  # type: ignore[operator]
    elif not encoder.cacheable:
        text_params = [p for p in encoder.parameters() if p.requires_grad]
    ids = {id(p) for p in text_params}
    head_params = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": head_params, "lr": config.lr}]
    if text_params:
        # a pretrained transformer wants a much smaller step than freshly initialised heads; a GloVe RNN does not
        groups.append({"params": text_params, "lr": config.text_lr if config.text == "minilm" else config.lr})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _same_run(saved: dict[str, Any], config: JointTrainConfig) -> bool:
    keep = {k: v for k, v in asdict(config).items() if k not in ("epochs", "patience", "threads")}
    return {k: saved.get(k) for k in keep} == keep


def train_joint(config: JointTrainConfig, progress: bool = True) -> TrainResult:
    """Train (or resume) a joint model as described in the module docstring; returns where it went and how it did.

    Rerunning with the same config and out dir resumes from ``checkpoint.pt``; a finished run returns at once.
    """
    from vistext.datasets import open_caption_dataset

    start = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    get_loss(config.loss)  # fail fast on an unknown name
    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    dataset = open_caption_dataset(config.data)
    train_split = dataset.train_split() or "train"
    views = TrainingViews(config.views.split(","))
    grid = bool(getattr(IMAGE_HEADS.create(config.image_head, in_dim=8, out_dim=8, hidden=0), "needs_grid", False))
    train = split_data(dataset, train_split, config.max_train_images, views, grid, progress)
    dev = split_data(dataset, "dev", config.max_eval_images, None, grid, progress)
    model = build_model(config, train.texts)
    if model.text_encoder.cacheable:
        for data in (train, dev):
            data.text_features = cached_text_features(model, data.texts, progress)
    optimizer = _optimizer(model, config)
    steps_per_epoch = max(1, len(train.texts) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.1,
    )
    rng = np.random.default_rng(config.seed)
    state: dict[str, Any] = {
        "epoch": 0,
        "best": -1.0,
        "best_epoch": -1,
        "best_state": None,
        "history": [],
        "stale": 0,
        "seconds": 0.0,
    }
    ckpt_file = out / CHECKPOINT
    if ckpt_file.is_file():
        ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False)
        if _same_run(ckpt["config"], config):
            model.load_trainable_state(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            rng.bit_generator.state = ckpt["rng"]
            torch.set_rng_state(ckpt["torch_rng"])
            state = ckpt["state"]
            start -= state.get("wall", 0.0)  # count the earlier runs' time in the total
            log.info("resuming %s from epoch %d", out, state["epoch"])
        else:
            log.warning("%s belongs to a different config; starting over", ckpt_file)
    model.train()
    for epoch in range(state["epoch"], config.epochs):
        if state["stale"] >= config.patience:
            break
        t0 = time.monotonic()
        hard = 0 <= config.hard_after <= epoch
        loss_fn = get_loss("vse-hardest" if hard else config.loss)
        order = rng.permutation(len(train.texts))
        total = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        for step in bar:
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            owners = train.owner[rows]
            idx = torch.from_numpy(owners)
            image_embs = _image_batch(model, train, idx, rng)
            text_embs = model.text_branches(_text_batch(model, train, rows))
            scale = model.log_scale.exp().clamp(max=100.0)
            loss = sum(
                loss_fn(i, t, scale=scale, margin=config.margin, pair_ids=idx)
                for i, t in zip(image_embs, text_embs, strict=True)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())  # type: ignore[union-attr]
            bar.set_postfix(loss=f"{total / (step + 1):.3f}")
        metrics = evaluate_split(model, dev)
        score = recall_sum(metrics)
        row = {
            "epoch": epoch + 1,
            "loss": round(total / steps_per_epoch, 4),
            "loss_fn": loss_fn.__name__,
            "dev_rsum": round(score, 2),
            **{f"dev_{k}": v for k, v in metrics.items()},
            "seconds": round(time.monotonic() - t0, 1),
        }
        state["history"].append(row)
        log.info(
            "epoch %d: loss %.4f, dev i2t R@1 %.1f R@10 %.1f, t2i R@1 %.1f R@10 %.1f",
            epoch + 1,
            row["loss"],
            metrics["i2t_r1"],
            metrics["i2t_r10"],
            metrics["t2i_r1"],
            metrics["t2i_r10"],
        )
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: loss {row['loss']:.4f}  dev i2t {metrics['i2t_r1']}/{metrics['i2t_r5']}/"
                f"{metrics['i2t_r10']}  t2i {metrics['t2i_r1']}/{metrics['t2i_r5']}/{metrics['t2i_r10']}"
            )
        if score > state["best"]:
            state.update(best=score, best_epoch=epoch + 1, stale=0, best_state=model.trainable_state())
        else:
            state["stale"] += 1
        state["epoch"] = epoch + 1
        state["seconds"] += time.monotonic() - t0
        state["wall"] = time.monotonic() - start
        with atomic_path(ckpt_file) as tmp:
            torch.save(
                {
                    "config": asdict(config),
                    "model": model.trainable_state(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "state": state,
                },
                tmp,
            )
    if state["best_state"] is not None:
        model.load_trainable_state(state["best_state"])
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
        test_metrics = evaluate_split(model, test)
        if model.corrected:
            uncorrected = evaluate_split(model, test, corrected=False)
    best_dev: dict[str, Any] = next((r for r in state["history"] if r["epoch"] == state["best_epoch"]), {})
    seconds = time.monotonic() - start
    model.save(
        out,
        extra={
            "training": {
                "data": config.data,
                "dataset": dataset.name,
                "train_split": train_split,
                "early_stopping_split": "dev",
                "method": _method(config),
                "config": asdict(config),
                "best_epoch": state["best_epoch"],
                "epochs_run": state["epoch"],
                "seconds_total": round(seconds, 1),
                "history": state["history"],
            },
            "metrics": {
                "dev": {k.removeprefix("dev_"): v for k, v in best_dev.items() if k.startswith("dev_")},
                "test": test_metrics,
                **({"test_without_hubness_correction": uncorrected} if model.corrected and test else {}),
            },
        },
    )
    return TrainResult(out, state["epoch"], state["best_epoch"], best_dev, test_metrics, seconds, state["history"])


def _method(config: JointTrainConfig) -> str:
    hard = f", hardest negatives (VSE++) from epoch {config.hard_after + 1}" if config.hard_after >= 0 else ""
    text = "frozen MiniLM" if config.text == "minilm" and not config.text_layers else config.text
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
