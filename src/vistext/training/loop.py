"""The one training loop every trainer (joint, tagger, matcher) runs, readable top to bottom.

A trainer brings a ``Task``: its mini-batches, its loss, and its per-epoch evaluation on held-out data (an
``Evaluation`` whose primary metric picks the best epoch). The loop owns the rest, once:

1. the learning-rate schedule (``one-cycle``: 10% warm-up, then cosine annealing; ``constant``: none),
2. per epoch: train on every batch, evaluate, keep the best epoch's weights, stop early after ``patience``
   epochs without a better primary metric,
3. a checkpoint after every epoch (model, optimizer, schedule, random state, history): rerunning the same run
   resumes where it stopped, and a finished run trains nothing,
4. the best epoch's weights restored at the end.

Random draws come from the generator the trainer hands in (and torch's global one), in the order the task
makes them, so a run is reproducible and a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation
from vistext.paths import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
SCHEDULES = ("one-cycle", "constant")


class Task(Protocol):
    """What one kind of model brings to the loop."""

    def steps_per_epoch(self) -> int:
        """How many batches ``batches`` yields per epoch (the schedule's length depends on it)."""
        ...

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        """The mini-batches of one epoch (shuffled with ``rng``)."""
        ...

    def loss(self, batch: Any, epoch: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """The loss of one batch and its weight in the epoch's mean loss (e.g. its number of examples)."""
        ...

    def train_mode(self) -> None:
        """Put the model in training mode (and freeze whatever must stay frozen)."""
        ...

    def evaluate(self) -> Evaluation | None:
        """Metrics on held-out data after an epoch; the primary one picks the best epoch (None: no held-out
        data; every epoch is kept and the last one wins)."""
        ...

    def state(self) -> dict[str, torch.Tensor]:
        """A snapshot of the trainable weights."""
        ...

    def load_state(self, state: dict[str, torch.Tensor]) -> None: ...


@dataclass
class LoopSettings:
    epochs: int
    patience: int | None = None  # stop after this many epochs without a better primary metric (None: never)
    schedule: str = "one-cycle"
    warmup: float = 0.1  # one-cycle: share of the steps spent warming up
    checkpoint: Path | None = None  # written after every epoch; a run with the same ``run_key`` resumes from it
    run_key: dict[str, Any] = field(default_factory=dict)  # what makes two runs the same run
    eval_prefix: str = "dev"  # history keys: f"{eval_prefix}_{metric}"
    desc: str = "training"
    progress: bool = True


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int  # 1-based; 0 when no epoch had a usable primary metric (the last weights are kept)
    best_score: float
    epochs_run: int
    seconds: float  # time spent in epochs, by this process and any earlier one it resumed
    carried_seconds: float = 0.0  # the part of ``seconds`` spent before a resumption


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: LoopSettings, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if settings.schedule == "constant":
        return None
    if settings.schedule != "one-cycle":
        raise UsageError(f"unknown schedule {settings.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=settings.epochs * steps_per_epoch,
        pct_start=settings.warmup,
    )


def fit(task: Task, optimizer: torch.optim.Optimizer, settings: LoopSettings, rng: np.random.Generator) -> FitResult:
    """Train ``task`` for ``settings.epochs`` epochs (or until early stopping); see the module docstring."""
    if settings.epochs < 1:
        raise UsageError(f"epochs must be at least 1, got {settings.epochs}")
    steps = task.steps_per_epoch()
    scheduler = make_scheduler(optimizer, settings, steps)
    state: dict[str, Any] = {"epoch": 0, "best": -math.inf, "best_epoch": 0, "best_state": None, "history": [],
                             "stale": 0, "seconds": 0.0}  # fmt: skip
    _resume(settings, task, optimizer, scheduler, rng, state)
    carried = state["seconds"]

    for epoch in range(state["epoch"], settings.epochs):
        if settings.patience is not None and state["stale"] >= settings.patience:
            log.info("no better %s for %d epochs: stopping", settings.eval_prefix, settings.patience)
            break
        started = time.monotonic()
        task.train_mode()
        total, weight = 0.0, 0
        bar = tqdm(task.batches(epoch, rng), total=steps, desc=f"{settings.desc} {epoch + 1}/{settings.epochs}",
                   disable=not settings.progress, leave=False)  # fmt: skip
        for batch in bar:
            loss, n = task.loss(batch, epoch, rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total, weight = total + float(loss.detach()) * n, weight + n
            bar.set_postfix(loss=f"{total / weight:.3f}")

        evaluation = task.evaluate()
        metrics = evaluation.metrics if evaluation is not None else {}
        row = {"epoch": epoch + 1, "loss": round(total / max(weight, 1), 4),
               **{f"{settings.eval_prefix}_{k}": v for k, v in metrics.items()},
               "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
        state["history"].append(row)
        summary = f"{settings.eval_prefix} {evaluation.summary()}" if evaluation is not None else ""
        log.info("epoch %d: loss %.4f %s", epoch + 1, row["loss"], summary)
        if settings.progress and evaluation is not None:
            tqdm.write(f"{settings.desc} epoch {epoch + 1}: loss {row['loss']:.4f}  {summary}")
        score = evaluation.score if evaluation is not None else math.nan
        if not math.isnan(score) and score > state["best"]:
            state.update(best=score, best_epoch=epoch + 1, stale=0, best_state=task.state())
        elif evaluation is not None:
            state["stale"] += 1
        state["epoch"] = epoch + 1
        state["seconds"] += time.monotonic() - started
        _save_checkpoint(settings, task, optimizer, scheduler, rng, state)

    if state["best_state"] is not None:
        task.load_state(state["best_state"])
    return FitResult(state["history"], state["best_epoch"], state["best"], state["epoch"], state["seconds"], carried)


# ---- checkpoints --------------------------------------------------------------------------------------------


def _save_checkpoint(settings: LoopSettings, task: Task, optimizer: torch.optim.Optimizer,
                     scheduler: Any, rng: np.random.Generator, state: dict[str, Any]) -> None:  # fmt: skip
    if settings.checkpoint is None:
        return
    with atomic_path(settings.checkpoint) as tmp:
        torch.save(
            {
                "config": settings.run_key,
                "epochs": settings.epochs,
                "model": task.state(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "state": state,
            },
            tmp,
        )


def _resume(settings: LoopSettings, task: Task, optimizer: torch.optim.Optimizer, scheduler: Any,
            rng: np.random.Generator, state: dict[str, Any]) -> bool:  # fmt: skip
    file = settings.checkpoint
    if file is None or not file.is_file():
        return False
    ckpt = torch.load(file, map_location="cpu", weights_only=False)
    if ckpt.get("epochs") != settings.epochs or not same_run(ckpt.get("config", {}), settings.run_key):
        log.warning("%s belongs to a different run; starting over", file)
        return False
    task.load_state(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    rng.bit_generator.state = ckpt["rng"]
    torch.set_rng_state(ckpt["torch_rng"])
    state.update(ckpt["state"])
    log.info("resuming %s from epoch %d", file, state["epoch"])
    return True


# settings that may change between a run and its resumption (the epoch count may not: the schedule depends on it)
RESUMABLE_CHANGES = ("patience", "threads")


def same_run(saved: dict[str, Any], run_key: dict[str, Any]) -> bool:
    keep = {k: v for k, v in run_key.items() if k not in RESUMABLE_CHANGES}
    return {k: saved.get(k) for k in keep} == keep


def checkpoint_file(out: Path) -> Path:
    return Path(out) / CHECKPOINT
