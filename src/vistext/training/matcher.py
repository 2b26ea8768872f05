"""Training the match classifier (image + tag set -> belong together?), through ``vistext.training.loop``.

Every epoch each training image is paired with its own tags (label 1), with the tags of a random other image
(label 0) and, with ``hard_negatives``, with the tags of one of its nearest neighbours in image-feature space
whose tags differ enough (label 0): a similar photo's tags are what a lazy model confuses, so they teach it to
read the details. Positives are shown with their tags shuffled and, sometimes, a few dropped, so the model
scores sets, not sequences, and partial sets still match.

The epoch with the best validation two-choice accuracy (``vistext.evaluation.matching``) is kept.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vistext.datasets import TaggedDataset, TaggedImage, open_tagged_dataset
from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation
from vistext.evaluation.matching import image_features, two_choice_eval, two_choice_evaluation
from vistext.models.matcher import MatcherSettings, MatchModel, TagBatch
from vistext.text import tokenize
from vistext.training.config import MatcherTrainConfig
from vistext.training.data import split_items
from vistext.training.loop import LoopSettings, checkpoint_file, fit

__all__ = ["MatcherTrainConfig", "MatcherTrainResult", "train_matcher"]

log = logging.getLogger(__name__)


@dataclass
class MatcherTrainResult:
    model: MatchModel
    out: Path
    metrics: dict[str, Any]  # two-choice accuracy on the validation split
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _hard_candidates(features: np.ndarray, tags: list[set[str]], k: int, max_overlap: float) -> list[list[int]]:
    """For each image, up to ``k`` nearest images (cosine) whose tags overlap less than ``max_overlap``."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    out: list[list[int]] = []
    for start in range(0, len(unit), 512):
        sims = unit[start : start + 512] @ unit.T
        order = np.argsort(-sims, axis=1)[:, : 4 * k + 1]
        for row, i in enumerate(range(start, min(start + 512, len(unit)))):
            picks = [int(j) for j in order[row] if j != i and _jaccard(tags[i], tags[j]) < max_overlap]
            out.append(picks[:k])
    return out


def _batch_examples(
    idx: np.ndarray,
    items: list[TaggedImage],
    hard: list[list[int]] | None,
    rng: np.random.Generator,
    config: MatcherTrainConfig,
) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    rows, sets, labels = [], [], []
    n = len(items)
    for i in idx:
        own = list(items[i].tags)
        rng.shuffle(own)
        keep = [t for t in own if rng.random() >= config.tag_dropout] or own[:1]
        rows.append(i)
        sets.append(keep)
        labels.append(1.0)
        negatives = [int(rng.integers(n))]
        if hard is not None and hard[i]:
            negatives.append(hard[i][int(rng.integers(len(hard[i])))])
        for j in negatives:
            other = list(items[j].tags)
            if j == i or not other or set(other) == set(own):
                continue
            rng.shuffle(other)
            rows.append(i)
            sets.append(other)
            labels.append(0.0)
    return np.array(rows), sets, np.array(labels, np.float32)


def _splits(dataset: TaggedDataset, config: MatcherTrainConfig) -> tuple[list[TaggedImage], list[TaggedImage]]:
    train, val = split_items(dataset, 0.1, config.seed, config.max_images)
    return [t for t in train if t.tags], [v for v in val if v.tags]


class _MatchModelTask:
    """What both phases share: the match model's state and mode, and its word fit's tag logits."""

    def __init__(self, model: MatchModel, x_train: np.ndarray, present: torch.Tensor, tag_batch: TagBatch) -> None:
        self.model, self.x_train, self.present, self.tag_batch = model, x_train, present, tag_batch

    def tagging_loss(self, images: np.ndarray) -> torch.Tensor:
        """Every tag at once for each of ``images``: binary cross-entropy summed over tags, mean over images."""
        logits = self.model.tag_logits(torch.from_numpy(self.x_train[images]), self.tag_batch)
        return F.binary_cross_entropy_with_logits(logits, self.present[images], reduction="sum") / len(images)

    def train_mode(self) -> None:
        self.model.train()

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


class _WordFitTask(_MatchModelTask):
    """Pre-training for the loop: the word fit (word -> tagger-weights network and word bias) as a plain tagger.
    Every image supervises every tag at once, so this dense signal converges in a fraction of the pair
    training's time. Nothing is held out: the last epoch is kept."""

    batch_size = 64

    def parameters(self) -> list[torch.nn.Parameter]:
        model = self.model
        return [*model.word.parameters(), *model.word_bias.parameters(), *model.word_table.parameters()]

    def steps_per_epoch(self) -> int:
        return -(-len(self.x_train) // self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        order = rng.permutation(len(self.x_train))
        for start in range(0, len(order), self.batch_size):
            yield np.sort(order[start : start + self.batch_size])

    def loss(self, idx: np.ndarray, epoch: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        return self.tagging_loss(idx), len(idx)

    def evaluate(self) -> None:
        return None


_Examples = tuple[np.ndarray, list[list[str]], np.ndarray]  # image rows, tag sets, labels


class _PairTask(_MatchModelTask):
    """Pair training for the loop: (image, tag set, belongs?) examples from ``_batch_examples``, binary
    cross-entropy plus the auxiliary tagging loss on the word fit; validation two-choice accuracy per epoch."""

    def __init__(self, model: MatchModel, x_train: np.ndarray, present: torch.Tensor, tag_batch: TagBatch,
                 train: list[TaggedImage], hard: list[list[int]] | None, x_val: np.ndarray,
                 val: list[TaggedImage], config: MatcherTrainConfig) -> None:  # fmt: skip
        super().__init__(model, x_train, present, tag_batch)
        self.train, self.hard, self.x_val, self.val, self.config = train, hard, x_val, val, config

    def steps_per_epoch(self) -> int:
        return -(-len(self.train) // self.config.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[_Examples]:
        order, size = rng.permutation(len(self.train)), self.config.batch_size
        for start in range(0, len(order), size):
            yield _batch_examples(order[start : start + size], self.train, self.hard, rng, self.config)

    def loss(self, batch: _Examples, epoch: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        rows, sets, labels = batch
        logits = self.model(torch.from_numpy(self.x_train[rows]), *self.model.embed_tag_sets(sets))
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels))
        if self.config.aux_weight > 0:
            loss = loss + self.config.aux_weight * self.tagging_loss(np.unique(rows))
        return loss, len(labels)

    def evaluate(self) -> Evaluation:
        return two_choice_evaluation(self.model, self.x_val, self.val, self.config.seed)


def train_matcher(config: MatcherTrainConfig, progress: bool = True) -> MatcherTrainResult:
    """Train a match model on a tagged dataset; the epoch with the best validation two-choice accuracy wins."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dataset = open_tagged_dataset(config.data) if isinstance(config.data, str) else config.data
    train, val = _splits(dataset, config)
    if len(train) < 2 or len(val) < 2:
        raise UsageError(f"{dataset.name}: too few tagged images to train a match model")
    started = time.perf_counter()
    x_train, x_val = image_features(train, progress), image_features(val, progress)
    hard = None
    if config.hard_negatives:
        hard = _hard_candidates(x_train, [set(t.tags) for t in train], config.neighbours, config.max_overlap)

    words = sorted({word for item in train for tag in item.tags for word in tokenize(tag)})
    settings = MatcherSettings(image_dim=x_train.shape[1], hidden=config.hidden, joint=config.joint, vocabulary=words)
    model = MatchModel(settings)
    model.image_mean.copy_(torch.from_numpy(x_train.mean(axis=0)))
    model.image_std.copy_(torch.from_numpy(x_train.std(axis=0) + 1e-3))
    model.vectors  # noqa: B018  (load GloVe before timing the epochs)
    vocabulary = sorted({tag for item in train for tag in item.tags})
    tag_index = {tag: j for j, tag in enumerate(vocabulary)}
    present = torch.zeros(len(train), len(vocabulary))
    for i, item in enumerate(train):
        present[i, [tag_index[t] for t in item.tags]] = 1.0
    tag_batch = model.embed_tag_sets([[tag] for tag in vocabulary])
    out = Path(config.out) if config.out is not None else Path(tempfile.mkdtemp(prefix="vistext-matcher-"))
    out.mkdir(parents=True, exist_ok=True)
    run = {k: v for k, v in asdict(config).items() if k not in ("data", "out")}
    data_name = config.data if isinstance(config.data, str) else dataset.name
    if config.pretrain_epochs > 0:
        word_fit = _WordFitTask(model, x_train, present, tag_batch)
        # as strong a weight decay as the tagger's; a constant learning rate
        optimizer = torch.optim.AdamW(word_fit.parameters(), lr=config.lr, weight_decay=0.05)
        loop = LoopSettings(epochs=config.pretrain_epochs, schedule="constant", desc="pre-training word fit",
                            progress=progress)  # fmt: skip
        fit(word_fit, optimizer, loop, rng)
    task = _PairTask(model, x_train, present, tag_batch, train, hard, x_val, val, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loop = LoopSettings(epochs=config.epochs, patience=config.patience, checkpoint=checkpoint_file(out),
                        run_key={**run, "data": data_name}, eval_prefix="val", desc="training matcher",
                        progress=progress)  # fmt: skip
    history = fit(task, optimizer, loop, rng).history
    model.eval()
    metrics = {"validation": two_choice_eval(model, x_val, val, config.seed)}
    seconds = time.perf_counter() - started
    settings.extra = {
        "metrics": metrics,
        "training": {
            **run,
            "data": data_name,
            "n_train": len(train),
            "train_seconds": round(seconds, 2),
        },
    }
    model.save(out)
    checkpoint_file(out).unlink(missing_ok=True)  # it only serves an interrupted run; the model directory ships
    return MatcherTrainResult(model, out, metrics, seconds, history)
