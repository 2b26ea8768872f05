"""Training the match classifier (image + tag set -> belong together?) and its two-choice test.

Every epoch each training image is paired with its own tags (label 1), with the tags of a random other image
(label 0) and, with ``hard_negatives``, with the tags of one of its nearest neighbours in image-feature space
whose tags differ enough (label 0): a similar photo's tags are what a lazy model confuses, so they teach it to
read the details. Positives are shown with their tags shuffled and, sometimes, a few dropped, so the model
scores sets, not sequences, and partial sets still match.

The two-choice test: for each test image, its own tag set against another image's; a model is right when it
scores its own set higher.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vistext.datasets import TaggedDataset, TaggedImage, open_tagged_dataset
from vistext.encoders import create_image_encoder
from vistext.errors import UsageError
from vistext.models.matcher import MatcherSettings, MatchModel, TagBatch
from vistext.text import tokenize

log = logging.getLogger(__name__)


@dataclass
class MatcherTrainConfig:
    data: str | TaggedDataset  # FORMAT:PATH or an opened dataset (multi-label tags per image)
    out: str | Path | None = None  # None: a fresh temporary directory
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    hidden: int = 128
    joint: int = 256
    hard_negatives: bool = True
    neighbours: int = 10  # hard negatives come from this many nearest images
    max_overlap: float = 0.5  # ...whose tag sets overlap (Jaccard) less than this
    tag_dropout: float = 0.2  # chance of dropping each tag of a positive (at least one kept)
    aux_weight: float = 0.1  # weight of the auxiliary tagging loss on the word fit (0: off)
    pretrain_epochs: int = 30  # epochs of the word fit alone as a tagger first (cheap: no GRU)
    threads: int | None = None
    seed: int = 0
    max_images: int | None = None


@dataclass
class MatcherTrainResult:
    model: MatchModel
    out: Path
    metrics: dict[str, Any]  # two-choice accuracy on the validation split
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def two_choice_pairs(items: list[TaggedImage], seed: int = 0) -> list[tuple[int, int]]:
    """(image i, image j) pairs for the two-choice test: every image with tags against a random other image
    whose tag set differs from its own (seeded, so every method faces the same pairs)."""
    rng = np.random.default_rng(seed)
    tagged = [i for i, item in enumerate(items) if item.tags]
    if len(tagged) < 2:
        raise UsageError("the two-choice test needs at least two images with tags")
    pairs = []
    for i in tagged:
        for _ in range(20):
            j = tagged[int(rng.integers(len(tagged)))]
            if j != i and set(items[j].tags) != set(items[i].tags):
                pairs.append((i, j))
                break
    return pairs


def two_choice_accuracy(own: np.ndarray, other: np.ndarray) -> float:
    """Share of pairs where the own tag set scores higher (a tie counts half)."""
    own, other = np.asarray(own, np.float64), np.asarray(other, np.float64)
    return float(np.mean((own > other) + 0.5 * (own == other)))


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


def _features(items: list[TaggedImage], progress: bool) -> np.ndarray:
    from vistext.features import encode_files

    return encode_files([item.image for item in items], create_image_encoder(), progress=progress).pooled


def matcher_scores(model: MatchModel, features: np.ndarray, tag_sets: list[list[str]], batch: int = 512) -> np.ndarray:
    """Row-aligned match probabilities for many (image, tag set) pairs, in batches."""
    return np.concatenate(
        [model.score(features[s : s + batch], tag_sets[s : s + batch]) for s in range(0, len(tag_sets), batch)]
    )


def two_choice_eval(model: MatchModel, features: np.ndarray, items: list[TaggedImage], seed: int = 0) -> dict:
    """Two-choice accuracy of ``model`` on ``items`` whose pooled ``features`` are given."""
    pairs = two_choice_pairs(items, seed)
    rows = np.array([i for i, _ in pairs])
    own = matcher_scores(model, features[rows], [items[i].tags for i, _ in pairs])
    other = matcher_scores(model, features[rows], [items[j].tags for _, j in pairs])
    return {"two_choice_accuracy": two_choice_accuracy(own, other), "n_pairs": len(pairs)}


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
    from vistext.training.tagger import split_items

    train, val = split_items(dataset, 0.1, config.seed, config.max_images)
    return [t for t in train if t.tags], [v for v in val if v.tags]


def _pretrain_fit(
    model: MatchModel,
    x_train: np.ndarray,
    present: torch.Tensor,
    tag_batch: TagBatch,
    config: MatcherTrainConfig,
    rng: np.random.Generator,
    progress: bool,
) -> None:
    """Train the word fit (the word -> tagger-weights network and the word bias) as a plain tagger: every image
    supervises every tag at once, so this dense signal converges in a fraction of the pair training's time."""
    parts = [*model.word.parameters(), *model.word_bias.parameters(), *model.word_table.parameters()]
    optimizer = torch.optim.AdamW(parts, lr=config.lr, weight_decay=0.05)  # as strong as the tagger's
    model.train()
    batch = 64
    for _ in tqdm(range(config.pretrain_epochs), desc="pre-training word fit", disable=not progress, unit="epoch"):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch):
            idx = np.sort(order[start : start + batch])
            logits = model.tag_logits(torch.from_numpy(x_train[idx]), tag_batch)
            loss = F.binary_cross_entropy_with_logits(logits, present[idx], reduction="sum") / len(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


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
    x_train, x_val = _features(train, progress), _features(val, progress)
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
    if config.pretrain_epochs > 0:
        _pretrain_fit(model, x_train, present, tag_batch, config, rng, progress)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * -(-len(train) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    best, best_state, history = -1.0, copy.deepcopy(model.state_dict()), []
    for epoch in tqdm(range(config.epochs), desc="training matcher", disable=not progress, unit="epoch"):
        epoch_start = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        order = rng.permutation(len(train))
        for start in range(0, len(order), config.batch_size):
            rows, sets, labels = _batch_examples(order[start : start + config.batch_size], train, hard, rng, config)
            logits = model(torch.from_numpy(x_train[rows]), *model.embed_tag_sets(sets))
            loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels))
            if config.aux_weight > 0:
                images = np.unique(rows)
                tag_logits = model.tag_logits(torch.from_numpy(x_train[images]), tag_batch)
                aux = F.binary_cross_entropy_with_logits(tag_logits, present[images], reduction="sum") / len(images)
                loss = loss + config.aux_weight * aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item() * len(labels), count + len(labels)
        accuracy = two_choice_eval(model, x_val, val, config.seed)["two_choice_accuracy"]
        history.append({"epoch": epoch + 1, "loss": total / count, "val_two_choice": accuracy,
                        "seconds": time.perf_counter() - epoch_start})  # fmt: skip
        log.info("epoch %d: loss %.4f, val two-choice %.4f", epoch + 1, total / count, accuracy)
        if accuracy > best:
            best, best_state = accuracy, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    metrics = {"validation": two_choice_eval(model, x_val, val, config.seed)}
    seconds = time.perf_counter() - started
    settings.extra = {
        "metrics": metrics,
        "training": {
            **{k: v for k, v in asdict(config).items() if k not in ("data", "out")},
            "data": config.data if isinstance(config.data, str) else dataset.name,
            "n_train": len(train),
            "train_seconds": round(seconds, 2),
        },
    }
    out = Path(config.out) if config.out is not None else Path(tempfile.mkdtemp(prefix="vistext-matcher-"))
    model.save(out)
    return MatcherTrainResult(model, out, metrics, seconds, history)


def evaluate_matcher(
    model: MatchModel, dataset: TaggedDataset | str, split: str | None = "test", seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Two-choice accuracy of ``model`` on a split (None: the whole dataset) of a tagged dataset."""
    if isinstance(dataset, str):
        dataset = open_tagged_dataset(dataset)
    items = [item for item in dataset.items(split) if item.tags]
    return two_choice_eval(model, _features(items, progress), items, seed)
